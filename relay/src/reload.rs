//! Hot reload, as MediaMTX does it: the config file edited (or SIGHUP), or a change
//! through the control API, applied while the relay runs. Paths added are started,
//! paths removed end with their sessions, a changed path is started anew; paths whose
//! settings did not change go on untouched, their viewers with them. A config that
//! does not load changes nothing: the running one stays, and the log (or the API's
//! answer) says why.
//!
//! What reloads: the paths (and `pathDefaults`, through them) and authentication.
//! The other keys (listeners, the media port, workers, XDP...) are read at start: a
//! change to them is reported as waiting for a restart, and the running config keeps
//! its old value, so that the API shows what is in effect.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::{Config, Document, Edit, EditError, Loaded, Overrides};
use crate::paths::{Changes, Paths};

/// Where the config came from: a file and `relay serve`'s flags, which stay in place
/// of the file's keys at every reload.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    /// The file and what it makes, with the flags in place of their keys.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        Config::load_document(self.file.as_deref(), &self.overrides)
    }
}

/// Applies new configs to the running relay.
pub struct Reloader {
    source: ConfigSource,
    /// Held while a change is applied: changes come one at a time.
    state: Mutex<State>,
    /// The config in effect.
    current: ArcSwap<Config>,
    paths: Arc<Paths>,
    auth: Arc<Authenticator>,
}

/// What the running config was made of.
struct State {
    /// Its keys as written; the API edits them.
    document: Document,
    /// The file's text when last read, loaded or not.
    file_text: Option<String>,
}

impl Reloader {
    /// `loaded` from `source` is running: its paths are started already.
    pub fn new(
        source: ConfigSource,
        loaded: Loaded,
        paths: Arc<Paths>,
        auth: Arc<Authenticator>,
    ) -> Reloader {
        let state = State {
            document: loaded.document,
            file_text: loaded.text,
        };
        Reloader {
            source,
            state: Mutex::new(state),
            current: ArcSwap::from_pointee(loaded.config),
            paths,
            auth,
        }
    }

    /// The config in effect.
    pub fn config(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// The file's path, if the relay runs from one.
    pub fn file(&self) -> Option<&Path> {
        self.source.file.as_deref()
    }

    /// Whether the file's text is other than when it was last read.
    pub fn file_changed(&self) -> bool {
        // Unreadable (being replaced, say): looked at again later.
        let Some(Ok(text)) = self.file().map(std::fs::read_to_string) else {
            return false;
        };
        self.lock().file_text.as_ref() != Some(&text)
    }

    /// Reads the file again and applies it. An error says why it was not: the running
    /// config is unchanged.
    pub fn reload_file(&self) -> anyhow::Result<Changes> {
        let mut state = self.lock();
        let Some(file) = self.file() else {
            return Ok(Changes::default());
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the config file {}", file.display()))?;
        // A file that fails is said once, not at each look.
        state.file_text = Some(text.clone());
        let loaded = Config::load_text(text, &self.source.overrides)
            .with_context(|| format!("config file {}", file.display()))?;
        if !loaded.not_run.is_empty() {
            warn!("{}", loaded.not_run);
        }
        let changes = self.apply(loaded.config);
        state.document = loaded.document;
        Ok(changes)
    }

    /// Makes `edit` to the running config's keys and applies the result, if it loads
    /// and changes only what reloads. The file is not written: as in MediaMTX, its
    /// next reload replaces API changes.
    pub fn edit(&self, edit: Edit) -> Result<Changes, EditError> {
        let mut state = self.lock();
        let (document, config) = state.document.edited(edit, &self.source.overrides)?;
        let waiting = changed_keys(&self.effective(&config), &config);
        if !waiting.is_empty() {
            return Err(EditError::NeedsRestart(waiting));
        }
        let changes = self.apply(config);
        state.document = document;
        Ok(changes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config in effect once `new` is applied: its paths (and pathDefaults) and
    /// authentication, the running config's other keys.
    fn effective(&self, new: &Config) -> Config {
        Config {
            auth: new.auth.clone(),
            paths: new.paths.clone(),
            path_patterns: new.path_patterns.clone(),
            path_defaults: new.path_defaults.clone(),
            ..(*self.current.load_full()).clone()
        }
    }

    /// Puts what reloads of `new` in effect, says what waits for a restart.
    fn apply(&self, new: Config) -> Changes {
        let old = self.current.load_full();
        let effective = self.effective(&new);
        let waiting = changed_keys(&effective, &new);
        if !waiting.is_empty() {
            warn!(
                "config: {} changed; relay applies {} at its next start (paths and \
                 authentication apply now)",
                waiting.join(", "),
                if waiting.len() == 1 { "it" } else { "them" }
            );
        }
        if effective.auth != old.auth {
            self.auth.replace(effective.auth.clone());
            info!("config: authentication changed");
        }
        let changes = self
            .paths
            .configure(&effective.paths, &effective.path_patterns);
        let Changes {
            added,
            changed,
            removed,
            failed,
        } = &changes;
        if !(added.is_empty() && changed.is_empty() && removed.is_empty()) {
            info!(?added, ?changed, ?removed, "config: paths applied");
        }
        for (name, why) in failed {
            warn!(path = %name, "config: the path cannot start: {why}");
        }
        self.current.store(Arc::new(effective));
        changes
    }
}

/// The top-level keys whose values differ between `a` and `b`.
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let keys = |c: &Config| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(keys)) => keys,
        other => unreachable!("a config serializes to a map, not {other:?}"),
    };
    let (a, b) = (keys(a), keys(b));
    let mut changed: Vec<String> = a
        .iter()
        .filter(|(key, value)| b.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect();
    changed.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    changed
}

/// How often the file is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Reloads the config whenever its file's text changes, until dropped. The file is
/// read once a second rather than watched with inotify: an editor's save (a new file
/// renamed over the old one) and a Kubernetes ConfigMap update (a symlink swapped two
/// levels up) replace the file rather than write it, which a watch on the file misses;
/// reading it finds both, for the cost of reading a small file once a second. A file
/// caught half-written fails to load and changes nothing; the rest of the write is
/// another change.
pub async fn watch_file(reloader: Arc<Reloader>) {
    let Some(file) = reloader.file().map(Path::to_path_buf) else {
        return;
    };
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if reloader.file_changed() {
            info!(file = %file.display(), "config file changed: reloading");
            reload_now(&reloader).await;
        }
    }
}

/// Reloads the file off the async threads (a changed path may bind a port, stop an
/// RTP source): logs what happened.
pub async fn reload_now(reloader: &Arc<Reloader>) {
    let reloader = reloader.clone();
    let result = tokio::task::spawn_blocking(move || reloader.reload_file())
        .await
        .context("the reload panicked");
    match result.and_then(|r| r) {
        Ok(_) => {}
        Err(e) => warn!("config not reloaded, the running one stays: {e:#}"),
    }
}
