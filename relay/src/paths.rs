//! The paths the relay serves: what the HTTP side, the sources, the workers and the
//! metrics share of each.
//!
//! A path's tracks are not known until its source delivers them (an RTSP camera after
//! DESCRIBE, a WHIP publisher with its offer), and they can go away and come back. So a
//! path has a [`PathState`] that its source sets and everyone else reads: viewers are
//! answered only while it is `Ready`, and the state says why not otherwise (the player
//! page shows that reason instead of a black video). The writers of a path's tracks are
//! kept here between sources ([`ServedPath::take_writers`]): a camera that reconnects or
//! a publisher that comes back with the same codecs goes on writing the same tracks, so
//! viewers already watching need not renegotiate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::config::{check_path_name, PathConfig, PathPattern};
use crate::ingest::SourceError;
use crate::metrics::ReceptionHistograms;
use crate::track::history::Retention;
use crate::track::{Track, TrackInfo, TrackWriter};

/// Why no path answers to a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("no path named '{0}' is configured")]
    Unknown(String),
    #[error("'{name}' is not a path name: {rule}")]
    BadName { name: String, rule: String },
    /// A pattern's source, its groups filled, is not one relay reads.
    #[error("path '{name}' (from paths.{key}): {error}")]
    BadSource {
        name: String,
        key: String,
        error: SourceError,
    },
    /// Its source could not start (a port taken since the config was checked, say).
    #[error("path '{name}' cannot start: {why}")]
    NotStarted { name: String, why: String },
}

/// How paths begin and end: their sources and hooks. The relay's is in server.rs;
/// tests give simpler ones.
pub trait PathLife: Send + Sync {
    /// The path `name` with `config`'s source started. `made` from a pattern, its source
    /// ends once unwatched, and with it the path.
    fn start(&self, name: &str, config: &PathConfig, made: bool)
        -> anyhow::Result<Arc<ServedPath>>;
    /// `path` is gone from the config: end its sessions and its source. Called with
    /// the table locked, so that no request finds the path meanwhile; it must not ask
    /// the table for anything.
    fn stop(&self, path: &ServedPath);
}

/// The paths the relay serves, found by name as MediaMTX finds them: the path of that
/// name in the config, else one made from the first [`PathPattern`] that matches it
/// (`~regex`, `all_others`). A made path lives while it is used and is removed by
/// [`Paths::remove_unused`]. [`Paths::configure`] applies a (new) config: paths it
/// does not change go on untouched.
pub struct Paths {
    life: Box<dyn PathLife>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Named in the config: they live until a config leaves them out or changes them.
    named: HashMap<String, Entry>,
    /// In match order.
    patterns: Vec<PathPattern>,
    /// Made from a pattern and not yet found unused.
    made: HashMap<String, Entry>,
}

/// A path and the settings it was started with.
struct Entry {
    config: PathConfig,
    path: Arc<ServedPath>,
}

/// What [`Paths::configure`] did, by path name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Named paths whose source could not start, and why.
    pub failed: Vec<(String, String)>,
}

impl fmt::Debug for Paths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.lock();
        f.debug_struct("Paths")
            .field("named", &table.named.len())
            .field("patterns", &table.patterns.len())
            .field("made", &table.made.len())
            .finish()
    }
}

impl Paths {
    /// No paths yet: [`Paths::configure`] adds them.
    pub fn new(life: Box<dyn PathLife>) -> Paths {
        Paths {
            life,
            table: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the served paths those of `named` and `patterns`: paths whose settings
    /// are the same go on as they are; the others are stopped (their sessions end) and
    /// started anew. A path made from a pattern is stopped when the pattern that would
    /// make it now gives other settings, or a named path takes its name; the next
    /// request makes it again.
    pub fn configure(
        &self,
        named: &BTreeMap<String, PathConfig>,
        patterns: &[PathPattern],
    ) -> Changes {
        let mut changes = Changes::default();
        let mut stopped = Vec::new();
        let mut table = self.lock();
        let old: Vec<String> = table.named.keys().cloned().collect();
        for name in old {
            match named.get(&name) {
                Some(config) if *config == table.named[&name].config => {}
                new => {
                    let entry = table.named.remove(&name).expect("listed above");
                    stopped.push(entry.path);
                    match new {
                        Some(_) => changes.changed.push(name),
                        None => changes.removed.push(name),
                    }
                }
            }
        }
        table.patterns = patterns.to_vec();
        let made: Vec<String> = table.made.keys().cloned().collect();
        for name in made {
            let now = PathPattern::first_match(&table.patterns, &name).and_then(|(_, c)| c.ok());
            let same =
                !named.contains_key(&name) && now.as_ref() == Some(&table.made[&name].config);
            if !same {
                let entry = table.made.remove(&name).expect("listed above");
                stopped.push(entry.path);
                changes.removed.push(name);
            }
        }
        // Before the new ones start: a changed RTP source binds the same port again.
        for path in stopped {
            self.life.stop(&path);
        }
        for (name, config) in named {
            if table.named.contains_key(name) {
                continue;
            }
            match self.life.start(name, config, false) {
                Ok(path) => {
                    let entry = Entry {
                        config: config.clone(),
                        path,
                    };
                    table.named.insert(name.clone(), entry);
                    if !changes.changed.contains(name) {
                        changes.added.push(name.clone());
                    }
                }
                Err(e) => changes.failed.push((name.clone(), format!("{e:#}"))),
            }
        }
        drop(table);
        changes.added.sort();
        changes.changed.sort();
        changes.removed.sort();
        changes
    }

    /// The path `name`, made now if a pattern stands for it and it does not exist.
    /// Requested names keep to the rules of configured ones ([`check_path_name`]).
    pub fn get(&self, name: &str) -> Result<Arc<ServedPath>, PathError> {
        let mut table = self.lock();
        if let Some(entry) = table.named.get(name) {
            return Ok(entry.path.clone());
        }
        // One only this table holds has no source left (a made path's source ends when
        // unwatched): a new one takes its place.
        if let Some(entry) = table
            .made
            .get(name)
            .filter(|e| Arc::strong_count(&e.path) > 1)
        {
            return Ok(entry.path.clone());
        }
        check_path_name(name).map_err(|rule| PathError::BadName {
            name: name.to_owned(),
            rule,
        })?;
        let (pattern, config) = PathPattern::first_match(&table.patterns, name)
            .ok_or_else(|| PathError::Unknown(name.to_owned()))?;
        let config = config.map_err(|error| PathError::BadSource {
            name: name.to_owned(),
            key: pattern.key.clone(),
            error,
        })?;
        let key = pattern.key.clone();
        let path = self
            .life
            .start(name, &config, true)
            .map_err(|e| PathError::NotStarted {
                name: name.to_owned(),
                why: format!("{e:#}"),
            })?;
        tracing::debug!(path = name, pattern = %key, "path made");
        let entry = Entry {
            config,
            path: path.clone(),
        };
        table.made.insert(name.to_owned(), entry);
        Ok(path)
    }

    /// The path served now under `name`, if any: unlike [`Paths::get`], asking does
    /// not make one (nor start its source).
    pub fn find(&self, name: &str) -> Option<Arc<ServedPath>> {
        let table = self.lock();
        let entry = table.named.get(name).or_else(|| table.made.get(name))?;
        Some(entry.path.clone())
    }

    /// Every path that exists now, by name.
    pub fn all(&self) -> Vec<Arc<ServedPath>> {
        let table = self.lock();
        let entries = table.named.values().chain(table.made.values());
        let mut all: Vec<_> = entries.map(|e| e.path.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes the made paths no one uses: none of its sessions (publisher, viewers,
    /// pending ones), no source task and no request holds it. Only this table can hand
    /// the path out again, and it does so under the same lock, so a path found unused
    /// here stays unused.
    pub fn remove_unused(&self) {
        self.lock().made.retain(|name, entry| {
            let used = Arc::strong_count(&entry.path) > 1;
            if !used {
                tracing::debug!(path = %name, "path removed: no publisher, viewer or source");
            }
            used
        });
    }
}

/// Where a path's source stands.
#[derive(Debug, Clone)]
pub enum PathState {
    /// `source: publisher`: no one publishes yet.
    WaitingForPublisher,
    /// `sourceOnDemand`: the source starts when a viewer arrives.
    Idle,
    /// Reaching the source (RTSP: connecting, DESCRIBE, SETUP, PLAY).
    Connecting,
    /// Media flows into these tracks. `left_out`: the source's streams that viewers
    /// cannot be given, each with why (e.g. AAC audio), said once with the state.
    Ready {
        tracks: Arc<[Arc<Track>]>,
        left_out: Arc<[String]>,
    },
    /// The source failed; it is tried again after `retry_in` (from when this was set).
    Failed { reason: String, retry_in: Duration },
    /// The path left the config (or changed): its source and hooks end, and it stays
    /// so whatever its source still sets.
    Removed,
}

/// Ready states are equal when they hold the same tracks (the same `Arc`s) and leave
/// out the same.
impl PartialEq for PathState {
    fn eq(&self, other: &Self) -> bool {
        use PathState::*;
        match (self, other) {
            (
                Ready {
                    tracks: a,
                    left_out: x,
                },
                Ready {
                    tracks: b,
                    left_out: y,
                },
            ) => {
                x == y
                    && a.len() == b.len()
                    && a.iter().zip(b.iter()).all(|(x, y)| Arc::ptr_eq(x, y))
            }
            (
                Failed {
                    reason: a,
                    retry_in: x,
                },
                Failed {
                    reason: b,
                    retry_in: y,
                },
            ) => a == b && x == y,
            (WaitingForPublisher, WaitingForPublisher)
            | (Idle, Idle)
            | (Connecting, Connecting)
            | (Removed, Removed) => true,
            _ => false,
        }
    }
}

impl PathState {
    /// Ready with `tracks`, leaving nothing out.
    pub fn ready(tracks: impl Into<Arc<[Arc<Track>]>>) -> PathState {
        PathState::Ready {
            tracks: tracks.into(),
            left_out: Arc::new([]),
        }
    }

    /// MediaMTX's two states (`paths{state=...}`, API `ready`).
    pub fn is_ready(&self) -> bool {
        matches!(self, PathState::Ready { .. })
    }

    /// One word, for metrics and the API.
    pub fn name(&self) -> &'static str {
        match self {
            PathState::WaitingForPublisher => "waitingForPublisher",
            PathState::Idle => "idle",
            PathState::Connecting => "connecting",
            PathState::Ready { .. } => "ready",
            PathState::Failed { .. } => "failed",
            PathState::Removed => "removed",
        }
    }
}

/// In words, for the log and for a viewer turned away.
impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathState::WaitingForPublisher => f.write_str("waiting for a publisher"),
            PathState::Idle => f.write_str("idle until a viewer asks (sourceOnDemand)"),
            PathState::Connecting => f.write_str("connecting to the source"),
            PathState::Ready { tracks, left_out } => {
                f.write_str("ready: ")?;
                for (i, t) in tracks.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{:?}", t.info.codec)?;
                }
                for why in left_out.iter() {
                    write!(f, "; left out: {why}")?;
                }
                Ok(())
            }
            PathState::Failed { reason, retry_in } => {
                write!(f, "source error: {reason} (next try in {retry_in:.0?})")
            }
            PathState::Removed => f.write_str("removed from the config"),
        }
    }
}

/// Why a publisher was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("path '{0}' takes no publisher: its source is set in the config (source: publisher takes one)")]
    NotPublisherPath(String),
    #[error("someone is already publishing to path '{0}' (overridePublisher: no)")]
    Busy(String),
    #[error("path '{0}': the current publisher did not leave in time for the new one")]
    TakeoverTimedOut(String),
}

/// `source: publisher`: who publishes, and whether a newcomer may take over.
#[derive(Debug, Default)]
struct PublisherSeat {
    override_publisher: bool,
    /// The session id of the publisher, if any.
    current: Mutex<Option<String>>,
    left: Condvar,
}

/// A configured path and what is published on it.
pub struct ServedPath {
    pub name: String,
    /// 0: no limit.
    pub max_readers: usize,
    /// `sourceOnDemand`: viewers arriving while the path is not ready wait this long
    /// (`sourceOnDemandStartTimeout`) for the source to start.
    pub on_demand: Option<Duration>,
    /// Viewers answered or connected.
    readers: AtomicUsize,
    state: watch::Sender<PathState>,
    /// When the path last became ready, while it is (the API's `readyTime`).
    ready_since: Mutex<Option<SystemTime>>,
    /// Wakes an on-demand source when the first viewer arrives or the last one leaves.
    demand: Notify,
    /// The writers of the tracks last published, while no source holds them.
    writers: Mutex<Vec<TrackWriter>>,
    /// What the tracks made for the path's sources keep.
    retention: Retention,
    /// The reason of the last failure since the path was last ready or idle.
    last_failure: Mutex<Option<String>>,
    /// None unless the path's source is `publisher`.
    publisher: Option<PublisherSeat>,
    /// What its viewers report receiving (metrics).
    pub reception: ReceptionHistograms,
    /// Ends the viewers of path NAME (how many): those of tracks a source replaced.
    close_viewers: Option<CloseViewers>,
}

/// Ends the viewer sessions of a path, given its name; returns how many.
pub type CloseViewers = Box<dyn Fn(&str) -> usize + Send + Sync>;

impl fmt::Debug for ServedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedPath")
            .field("name", &self.name)
            .field("state", &*self.state.borrow())
            .field("readers", &self.readers())
            .finish()
    }
}

impl ServedPath {
    pub fn new(name: impl Into<String>, max_readers: usize, initial: PathState) -> ServedPath {
        ServedPath {
            name: name.into(),
            max_readers,
            on_demand: None,
            readers: AtomicUsize::new(0),
            ready_since: Mutex::new(initial.is_ready().then(SystemTime::now)),
            state: watch::Sender::new(initial),
            demand: Notify::new(),
            writers: Mutex::new(Vec::new()),
            retention: Retention::default(),
            last_failure: Mutex::new(None),
            publisher: None,
            reception: ReceptionHistograms::default(),
            close_viewers: None,
        }
    }

    /// A source whose tracks are not the previous source's (another codec, a track
    /// more or less) ends the path's viewers with `close`: they watch tracks nothing
    /// writes any more, and must offer again to get the new ones.
    pub fn with_close_viewers(self, close: CloseViewers) -> Self {
        ServedPath {
            close_viewers: Some(close),
            ..self
        }
    }

    /// Tracks made for this path's sources keep what `retention` says.
    pub fn with_retention(self, retention: Retention) -> Self {
        ServedPath { retention, ..self }
    }

    /// A `source: publisher` path: waits for a WHIP publisher; with `override_publisher`
    /// a new one takes the place of the current one.
    pub fn for_publisher(
        name: impl Into<String>,
        max_readers: usize,
        override_publisher: bool,
    ) -> Self {
        ServedPath {
            publisher: Some(PublisherSeat {
                override_publisher,
                ..PublisherSeat::default()
            }),
            ..ServedPath::new(name, max_readers, PathState::WaitingForPublisher)
        }
    }

    /// Makes publisher `id` the path's, if it takes publishers and none is there, or the
    /// current one may be replaced: then `evict` is called with its id, and the new one
    /// waits up to `wait` for it to leave ([`ServedPath::publisher_left`]).
    pub fn claim_publisher(
        &self,
        id: &str,
        wait: Duration,
        evict: impl FnOnce(&str),
    ) -> Result<(), PublishRefused> {
        let seat = self
            .publisher
            .as_ref()
            .ok_or_else(|| PublishRefused::NotPublisherPath(self.name.clone()))?;
        let old = {
            let mut current = seat.current.lock().unwrap_or_else(|e| e.into_inner());
            match current.clone() {
                None => {
                    *current = Some(id.to_string());
                    return Ok(());
                }
                Some(_) if !seat.override_publisher => {
                    return Err(PublishRefused::Busy(self.name.clone()))
                }
                Some(old) => old,
            }
        };
        // Unlocked: evicting a publisher that has not connected yet gives its seat back
        // right away, from this thread.
        evict(&old);
        let current = seat.current.lock().unwrap_or_else(|e| e.into_inner());
        let (mut current, _) = seat
            .left
            .wait_timeout_while(current, wait, |c| c.is_some())
            .unwrap_or_else(|e| e.into_inner());
        if current.is_some() {
            return Err(PublishRefused::TakeoverTimedOut(self.name.clone()));
        }
        *current = Some(id.to_string());
        Ok(())
    }

    /// Publisher `id` ended: its writers wait for the next one and the path waits for
    /// a publisher again.
    pub fn publisher_left(&self, id: &str, writers: Vec<TrackWriter>) {
        let Some(seat) = &self.publisher else {
            return;
        };
        let mut current = seat.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_deref() != Some(id) {
            return;
        }
        *current = None;
        self.return_writers(writers);
        self.set_state(PathState::WaitingForPublisher);
        seat.left.notify_all();
    }

    /// Makes the source start on demand; viewers wait up to `start_timeout` for it.
    pub fn with_on_demand(mut self, start_timeout: Duration) -> ServedPath {
        self.on_demand = Some(start_timeout);
        self
    }

    /// A path whose tracks are fixed from the start (demo, RTP push).
    pub fn ready(name: impl Into<String>, max_readers: usize, tracks: Vec<Arc<Track>>) -> Self {
        ServedPath::new(name, max_readers, PathState::ready(tracks))
    }

    pub fn state(&self) -> PathState {
        self.state.borrow().clone()
    }

    /// The tracks, while the path is ready.
    pub fn tracks(&self) -> Option<Arc<[Arc<Track>]>> {
        match &*self.state.borrow() {
            PathState::Ready { tracks, .. } => Some(tracks.clone()),
            _ => None,
        }
    }

    /// Sets the state and logs the change: once per change, and a source retrying
    /// after the same failure (connecting, failing alike) only at debug level.
    pub fn set_state(&self, state: PathState) {
        let retrying = {
            let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
            match &state {
                PathState::Failed { reason, .. } => {
                    last.replace(reason.clone()).as_ref() == Some(reason)
                }
                PathState::Connecting => last.is_some(),
                _ => {
                    *last = None;
                    false
                }
            }
        };
        let changed = self.state.send_if_modified(|old| {
            if *old == PathState::Removed {
                return false;
            }
            let same = match (&*old, &state) {
                (PathState::Failed { reason: a, .. }, PathState::Failed { reason: b, .. }) => {
                    a == b
                }
                (a, b) => a == b,
            };
            *old = state.clone();
            !same
        });
        if changed {
            let mut since = self.ready_since.lock().unwrap_or_else(|e| e.into_inner());
            // New tracks while ready (a publisher's takeover) keep the time.
            *since = state
                .is_ready()
                .then(|| since.unwrap_or_else(SystemTime::now));
        }
        match (&state, changed, retrying) {
            (_, false, _) => {}
            (_, true, true) => tracing::debug!(path = %self.name, "{state}"),
            (PathState::Failed { .. }, true, false) => tracing::warn!(path = %self.name, "{state}"),
            (_, true, false) => tracing::info!(path = %self.name, "{state}"),
        }
    }

    /// Ends the path: its state becomes [`PathState::Removed`] for good, which ends its
    /// source and hooks.
    pub fn close(&self) {
        self.set_state(PathState::Removed);
    }

    /// Returns once the path is [closed](ServedPath::close).
    pub async fn closed(&self) {
        let mut states = self.subscribe();
        // The sender lives in `self`: it cannot close while this waits.
        let _ = states.wait_for(|s| *s == PathState::Removed).await;
    }

    /// When the path last became ready, if it is ready.
    pub fn ready_since(&self) -> Option<SystemTime> {
        *self.ready_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the state.
    pub fn subscribe(&self) -> watch::Receiver<PathState> {
        self.state.subscribe()
    }

    /// The tracks to answer a viewer with. An on-demand source is asked to start and
    /// waited for up to its start timeout; otherwise (or then) the state says why not.
    pub async fn wait_ready(&self) -> Result<Arc<[Arc<Track>]>, PathState> {
        if let Some(tracks) = self.tracks() {
            return Ok(tracks);
        }
        let Some(start_timeout) = self.on_demand else {
            return Err(self.state());
        };
        let mut state = self.subscribe();
        self.demand.notify_one();
        let ready = state.wait_for(PathState::is_ready);
        // Timing out, or the path gone: the state says why.
        let _ = tokio::time::timeout(start_timeout, async { ready.await.is_ok() }).await;
        self.tracks().ok_or_else(|| self.state())
    }

    /// Takes a reader's place; false when `max_readers` is reached.
    pub fn add_reader(&self) -> bool {
        let before = self.readers.fetch_add(1, Ordering::Relaxed);
        if self.max_readers != 0 && before >= self.max_readers {
            self.readers.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if before == 0 {
            self.demand.notify_one();
        }
        true
    }

    pub fn remove_reader(&self) {
        if self.readers.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.demand.notify_one();
        }
    }

    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// Returns when a viewer asked for the stream or the last one left since the
    /// previous call (a change before the first call counts too): an on-demand source
    /// then looks at `readers()` and `state()`.
    pub async fn demand_changed(&self) {
        self.demand.notified().await
    }

    /// Writers for tracks described by `infos`: the ones kept from the previous source
    /// when it had the same tracks, so that their viewers go on; new ones otherwise,
    /// and then the previous source's viewers are ended ([`ServedPath::with_close_viewers`]).
    pub fn take_writers(&self, infos: &[TrackInfo]) -> Vec<TrackWriter> {
        let mut kept = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let same =
            kept.len() == infos.len() && kept.iter().zip(infos).all(|(w, i)| &w.track().info == i);
        if same {
            return std::mem::take(&mut *kept);
        }
        let replaced = std::mem::take(&mut *kept);
        drop(kept);
        if let (false, Some(close)) = (replaced.is_empty(), &self.close_viewers) {
            let closed = close(&self.name);
            tracing::info!(
                path = %self.name,
                viewers = closed,
                "the new source's tracks are not the last one's: its viewers were closed, to offer again"
            );
        }
        infos
            .iter()
            .map(|i| Track::new(i.clone(), self.retention).1)
            .collect()
    }

    /// Gives the writers back when the source stops, for the next one.
    pub fn return_writers(&self, writers: Vec<TrackWriter>) {
        *self.writers.lock().unwrap_or_else(|e| e.into_inner()) = writers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Codec;

    fn info(codec: Codec) -> TrackInfo {
        TrackInfo {
            codec,
            fmtp: String::new(),
        }
    }

    /// Starts every path as a publisher's and remembers what it stopped.
    #[derive(Default)]
    struct Publishers {
        stopped: Mutex<Vec<String>>,
    }

    impl PathLife for Arc<Publishers> {
        fn start(&self, name: &str, path: &PathConfig, _: bool) -> anyhow::Result<Arc<ServedPath>> {
            anyhow::ensure!(name != "broken", "its port is taken");
            Ok(Arc::new(ServedPath::for_publisher(
                name,
                path.max_readers,
                true,
            )))
        }

        fn stop(&self, path: &ServedPath) {
            path.close();
            self.stopped.lock().unwrap().push(path.name.clone());
        }
    }

    /// The paths of `yaml`, started by `life`.
    fn configured(yaml: &str, life: &Arc<Publishers>) -> Paths {
        let config = crate::config::Config::from_yaml(yaml).unwrap();
        let paths = Paths::new(Box::new(life.clone()));
        paths.configure(&config.paths, &config.path_patterns);
        paths
    }

    /// The paths of `yaml`: its named ones waiting for publishers, made ones alike.
    fn paths(yaml: &str) -> Paths {
        configured(yaml, &Arc::default())
    }

    /// Applies `yaml` to `paths`.
    fn reconfigure(paths: &Paths, yaml: &str) -> Changes {
        let config = crate::config::Config::from_yaml(yaml).unwrap();
        paths.configure(&config.paths, &config.path_patterns)
    }

    #[test]
    fn a_new_config_restarts_only_the_paths_it_changes() {
        let life = Arc::<Publishers>::default();
        let paths = configured(
            "paths:\n  same:\n  changed:\n  gone:\n  '~^cam(\\d+)$':\n  all_others:\n",
            &life,
        );
        let same = paths.get("same").unwrap();
        let changed = paths.get("changed").unwrap();
        let gone = paths.get("gone").unwrap();
        let cam1 = paths.get("cam1").unwrap();
        let lobby = paths.get("lobby").unwrap();

        let changes = reconfigure(
            &paths,
            "paths:\n  same:\n  changed:\n    maxReaders: 4\n  new:\n  cam1:\n  \
             '~^cam(\\d+)$':\n  all_others:\n    maxReaders: 2\n",
        );
        let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            changes,
            Changes {
                added: names(&["cam1", "new"]),
                changed: names(&["changed"]),
                removed: names(&["cam1", "gone", "lobby"]),
                failed: Vec::new(),
            }
        );
        let mut stopped = life.stopped.lock().unwrap().clone();
        stopped.sort();
        assert_eq!(stopped, ["cam1", "changed", "gone", "lobby"]);
        assert!(Arc::ptr_eq(&same, &paths.get("same").unwrap()), "untouched");
        assert_eq!(same.state(), PathState::WaitingForPublisher);
        for old in [&changed, &gone, &cam1, &lobby] {
            assert_eq!(old.state(), PathState::Removed, "{}", old.name);
        }
        assert_eq!(paths.get("changed").unwrap().max_readers, 4);
        assert_eq!(paths.get("gone").unwrap().max_readers, 2, "all_others' now");
        assert!(
            !Arc::ptr_eq(&cam1, &paths.get("cam1").unwrap()),
            "named now"
        );
        assert!(
            paths.find("lobby").is_none(),
            "made again only when asked for"
        );

        // A path that cannot start is said, and the others go on.
        let changes = reconfigure(&paths, "paths:\n  same:\n  broken:\n");
        assert_eq!(changes.failed.len(), 1);
        assert_eq!(changes.failed[0].0, "broken");
        assert!(changes.failed[0].1.contains("its port is taken"));
        assert!(Arc::ptr_eq(&same, &paths.get("same").unwrap()));
        assert_eq!(
            paths.get("broken").unwrap_err(),
            PathError::Unknown("broken".into())
        );
    }

    #[test]
    fn a_removed_path_stays_removed_whatever_its_source_sets() {
        let p = ServedPath::new("cam", 0, PathState::Connecting);
        p.close();
        p.set_state(PathState::Connecting);
        assert_eq!(p.state(), PathState::Removed);
    }

    #[test]
    fn a_named_path_wins_over_patterns_and_made_ones_last_while_held() {
        let paths = paths("paths:\n  all_others:\n  '~^cam(\\d+)$':\n    maxReaders: 2\n  cam1:\n");
        let cam1 = paths.get("cam1").unwrap();
        assert_eq!(cam1.max_readers, 0, "the named entry, not ~^cam");
        assert!(Arc::ptr_eq(&cam1, &paths.get("cam1").unwrap()));
        let cam2 = paths.get("cam2").unwrap();
        assert_eq!(cam2.max_readers, 2, "made from ~^cam(\\d+)$");
        let other = paths.get("lobby/door").unwrap();
        assert_eq!(other.max_readers, 0, "made from all_others");
        let names =
            |paths: &Paths| -> Vec<String> { paths.all().iter().map(|p| p.name.clone()).collect() };
        assert_eq!(names(&paths), ["cam1", "cam2", "lobby/door"]);
        assert!(
            Arc::ptr_eq(&cam2, &paths.get("cam2").unwrap()),
            "one path per name"
        );

        drop(other);
        paths.remove_unused();
        assert_eq!(names(&paths), ["cam1", "cam2"], "cam2 is still held");
        drop(cam2);
        drop(cam1);
        paths.remove_unused();
        assert_eq!(names(&paths), ["cam1"], "named paths stay");
    }

    #[test]
    fn requested_names_keep_the_rules_of_path_names() {
        let paths = paths("paths:\n  '~^cam':\n");
        assert!(matches!(
            paths.get("cam/whep/x").unwrap_err(),
            PathError::BadName { rule, .. } if rule.contains("'whep' cannot be part of a path name")
        ));
        assert!(matches!(
            paths.get("cam/../x").unwrap_err(),
            PathError::BadName { rule, .. } if rule.contains("'..'")
        ));
        assert_eq!(
            paths.get("door").unwrap_err(),
            PathError::Unknown("door".into())
        );
        assert!(paths.all().is_empty(), "nothing made for refused names");
    }

    #[test]
    fn readers_are_capped_and_counted() {
        let p = ServedPath::new("cam", 2, PathState::Idle);
        assert!(p.add_reader());
        assert!(p.add_reader());
        assert!(!p.add_reader(), "maxReaders 2");
        assert_eq!(p.readers(), 2);
        p.remove_reader();
        assert!(p.add_reader());
    }

    #[test]
    fn writers_are_kept_for_a_source_with_the_same_tracks() {
        let closes = Arc::new(AtomicUsize::new(0));
        let counted = closes.clone();
        let p = ServedPath::new("cam", 0, PathState::Connecting).with_close_viewers(Box::new(
            move |name| {
                assert_eq!(name, "cam");
                counted.fetch_add(1, Ordering::Relaxed)
            },
        ));
        let infos = [info(Codec::H264), info(Codec::Opus)];
        let writers = p.take_writers(&infos);
        let first = writers[0].track().clone();
        p.return_writers(writers);
        let again = p.take_writers(&infos);
        assert!(Arc::ptr_eq(again[0].track(), &first), "same track goes on");
        p.return_writers(again);
        assert_eq!(
            closes.load(Ordering::Relaxed),
            0,
            "the first source and the same tracks strand no viewer"
        );
        let other = p.take_writers(&[info(Codec::H265)]);
        assert!(
            !Arc::ptr_eq(other[0].track(), &first),
            "new codec, new track"
        );
        assert_eq!(
            closes.load(Ordering::Relaxed),
            1,
            "the old track's viewers are ended"
        );
    }

    #[tokio::test]
    async fn the_first_viewer_and_the_last_leaving_wake_the_source() {
        let p = ServedPath::new("cam", 0, PathState::Idle);
        let p = Arc::new(p.with_on_demand(Duration::from_secs(10)));
        assert!(p.add_reader());
        // Notified before anyone waited: the permit is kept.
        p.demand_changed().await;
        assert_eq!(p.readers(), 1);
        p.remove_reader();
        p.demand_changed().await;
        assert_eq!(p.readers(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_viewer_waits_for_an_on_demand_source() {
        let p = ServedPath::new("cam", 0, PathState::Idle);
        let p = Arc::new(p.with_on_demand(Duration::from_secs(10)));
        let source = {
            let p = p.clone();
            tokio::spawn(async move {
                p.demand_changed().await;
                p.set_state(PathState::Connecting);
                tokio::time::sleep(Duration::from_secs(3)).await;
                let writers = p.take_writers(&[info(Codec::H264)]);
                p.set_state(PathState::ready(vec![writers[0].track().clone()]));
            })
        };
        let tracks = p
            .wait_ready()
            .await
            .expect("ready within the start timeout");
        assert_eq!(tracks.len(), 1);
        source.await.unwrap();

        let slow = ServedPath::new("cam2", 0, PathState::Idle);
        let slow = slow.with_on_demand(Duration::from_secs(10));
        // Nobody starts it: the viewer is told the state after the timeout.
        assert_eq!(slow.wait_ready().await.unwrap_err(), PathState::Idle);
        let fixed = ServedPath::new("cam3", 0, PathState::WaitingForPublisher);
        assert_eq!(
            fixed.wait_ready().await.unwrap_err(),
            PathState::WaitingForPublisher,
            "not on demand: no wait"
        );
    }

    #[test]
    fn a_second_publisher_is_refused_or_takes_over_as_configured() {
        let wait = Duration::from_secs(1);
        let strict = ServedPath::for_publisher("cam", 0, false);
        assert_eq!(
            strict.claim_publisher("a", wait, |_| panic!("no eviction")),
            Ok(())
        );
        assert_eq!(
            strict.claim_publisher("b", wait, |_| panic!("no eviction")),
            Err(PublishRefused::Busy("cam".into()))
        );
        let writers = strict.take_writers(&[info(Codec::H264)]);
        strict.set_state(PathState::ready(vec![writers[0].track().clone()]));
        strict.publisher_left("b", Vec::new());
        assert!(
            strict.state().is_ready(),
            "only the publisher's own leaving counts"
        );
        strict.publisher_left("a", writers);
        assert_eq!(strict.state(), PathState::WaitingForPublisher);
        assert_eq!(
            strict.claim_publisher("b", wait, |_| panic!("no eviction")),
            Ok(())
        );

        let open = Arc::new(ServedPath::for_publisher("cam", 0, true));
        open.claim_publisher("a", wait, |_| panic!("no eviction"))
            .unwrap();
        let evicted = Mutex::new(None);
        let path = open.clone();
        open.claim_publisher("b", wait, |old| {
            *evicted.lock().unwrap() = Some(old.to_string());
            path.publisher_left(old, Vec::new());
        })
        .unwrap();
        assert_eq!(evicted.into_inner().unwrap().as_deref(), Some("a"));
        let stuck = open.claim_publisher("c", Duration::ZERO, |_| {});
        assert_eq!(stuck, Err(PublishRefused::TakeoverTimedOut("cam".into())));

        let fixed = ServedPath::new("demo", 0, PathState::Connecting);
        assert_eq!(
            fixed.claim_publisher("a", wait, |_| {}),
            Err(PublishRefused::NotPublisherPath("demo".into()))
        );
    }

    #[test]
    fn a_repeated_failure_is_one_change() {
        let p = ServedPath::new("cam", 0, PathState::Connecting);
        let mut rx = p.subscribe();
        rx.mark_unchanged();
        let failed = |s: u64| PathState::Failed {
            reason: "connection refused".into(),
            retry_in: Duration::from_secs(s),
        };
        p.set_state(failed(1));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        p.set_state(failed(2));
        assert!(!rx.has_changed().unwrap(), "same reason, later retry");
        assert_eq!(p.state(), failed(2), "but the retry time is current");
    }
}
