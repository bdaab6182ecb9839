//! Sources of tracks: the built-in demo clip, RTP pushed over UDP (MediaMTX's
//! `udp+rtp://` sources described by `rtpSDP`) and RTSP cameras pulled (`rtsp://`,
//! in [`rtsp`], async tasks on the control plane's runtime).
//!
//! One [`Reader`] serves every demo and RTP source: an epoll set over the RTP sockets
//! (batched `recvmmsg`) with the demo's next frame as its timeout, on a thread of its own
//! or, with one worker, in that worker's loop. Each pass over the sockets wakes
//! the workers reading the tracks it fed once, not once per packet or stream, and a busy
//! ingest passes at most once per `ingestBatchWindow` ([`Spacing`]); the RTSP sources'
//! wake-ups are spaced the same way ([`rtsp::SpacedWakes`]). Sources are added and
//! removed while it runs ([`Ingest::add`], [`Ingest::remove`]): the caller binds, the
//! reader is handed the socket through a channel and its waker, and owns it from then on.

pub mod demo;
pub mod rtp;
pub mod rtsp;
pub mod sdp;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::io::udp::{self, RecvBatch, UdpInput, UdpOptions};
use crate::io::wake::Wakers;
use crate::lifeline::Lifeline;
use crate::track::history::Retention;
use crate::track::{Track, TrackWriter};
use demo::{Clip, DemoPlayer};
pub use rtp::Counters;
use rtp::RtpDemux;
use rtsp::RtspUrl;
use sdp::{RtpSdp, SdpError};

/// Where a path's tracks come from (`source` in the config, with `rtpSDP`), read once
/// when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in H264 clip, looped.
    Demo,
    /// A WHIP publisher (MediaMTX's default): the path waits for one.
    Publisher,
    /// RTP pushed to `listen`, payload formats described by `sdp` (`rtpSDP`).
    Rtp { listen: SocketAddr, sdp: RtpSdp },
    /// An RTSP camera or server, pulled.
    Rtsp(RtspUrl),
}

/// Why a `source` (or the `rtpSDP` it needs) cannot be read. `MissingSdp` and `Sdp` are
/// about the `rtpSDP`, the others about the `source`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "relay cannot read '{0}': write 'publisher', 'demo', 'udp+rtp://IP:PORT' or \
         'rtsp://[user:pass@]host[:port]/path' (MediaMTX's other sources, such as \
         srt://, are not supported)"
    )]
    Unsupported(String),
    #[error("relay cannot read '{given}': {reason}")]
    BadAddress { given: String, reason: String },
    #[error("'{0}' needs rtpSDP, the SDP describing what is sent to it")]
    MissingSdp(String),
    #[error(transparent)]
    Sdp(#[from] SdpError),
}

impl Source {
    /// Parses `publisher`, `demo` or `udp+rtp://ip:port` (`:port` listens on every IPv4 address; one
    /// trailing `/`, a URL's empty path, is allowed), and for the latter its `rtp_sdp`.
    pub fn parse(source: &str, rtp_sdp: Option<&str>) -> Result<Source, SourceError> {
        let source = source.trim();
        match source {
            "demo" => return Ok(Source::Demo),
            "publisher" => return Ok(Source::Publisher),
            _ => {}
        }
        let bad = |reason: &str| SourceError::BadAddress {
            given: source.into(),
            reason: reason.into(),
        };
        if source.starts_with("rtsp://") || source.starts_with("rtsps://") {
            return RtspUrl::parse(source)
                .map(Source::Rtsp)
                .map_err(|e| bad(&e));
        }
        let Some(address) = source.strip_prefix("udp+rtp://") else {
            return Err(SourceError::Unsupported(source.into()));
        };
        let address = address.strip_suffix('/').unwrap_or(address);
        let listen: SocketAddr = match address.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p))
                .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
            None => address
                .parse()
                .map_err(|_| bad("expected an IP address and a port, e.g. 0.0.0.0:5004"))?,
        };
        if listen.port() == 0 {
            return Err(bad(
                "port 0 is not an address to receive on (the kernel would pick a port no \
                 sender knows): write the port the RTP is sent to, e.g. udp+rtp://0.0.0.0:5004",
            ));
        }
        if listen.ip().is_multicast() {
            return Err(bad(
                "multicast groups are not supported yet: write an address of this host, \
                 e.g. udp+rtp://0.0.0.0:5004",
            ));
        }
        let sdp = rtp_sdp
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| SourceError::MissingSdp(source.into()))?;
        Ok(Source::Rtp {
            listen,
            sdp: RtpSdp::parse(sdp)?,
        })
    }

    /// The `rtpSDP` that goes with the source, if it needs one.
    pub fn rtp_sdp(&self) -> Option<&str> {
        match self {
            Source::Demo | Source::Publisher | Source::Rtsp(_) => None,
            Source::Rtp { sdp, .. } => Some(sdp.text()),
        }
    }

    /// MediaMTX's name of this kind of source: the API's `source.type` and the hooks'
    /// `MTX_SOURCE_TYPE` (for a publisher, once one publishes). `demoSource` is relay's
    /// own.
    pub fn mediamtx_type(&self) -> &'static str {
        match self {
            Source::Publisher => "webRTCSession",
            Source::Rtsp(_) => "rtspSource",
            Source::Rtp { .. } => "rtpSource",
            Source::Demo => "demoSource",
        }
    }
}

/// The source as a config writes it (what [`Source::parse`] reads back).
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Demo => f.write_str("demo"),
            Source::Publisher => f.write_str("publisher"),
            Source::Rtp { listen, .. } => write!(f, "udp+rtp://{listen}"),
            Source::Rtsp(url) => write!(f, "{url}"),
        }
    }
}

/// A path's tracks, as the rest of the relay sees them.
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct Published {
    pub path: String,
    pub tracks: Vec<Arc<Track>>,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// udpMaxPayloadSize: the demo's packets are cut to fit it once relayed.
    pub max_payload: usize,
    /// udpReadBufferSize: SO_RCVBUF of the RTP sockets, 0: the system default.
    pub recv_buffer: usize,
    /// historyDuration, historyMaxBytes, keyframeCache: what each track keeps.
    pub history: Retention,
    /// ingestBatchWindow: passes over the RTP sockets at most this often while busy.
    pub batch_window: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_payload: 1452,
            recv_buffer: 0,
            history: Retention::default(),
            batch_window: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    pub path: String,
    /// RTP packets handed to a track (for the demo: packets played).
    pub received: u64,
    /// Datagrams that were neither RTP nor RTCP.
    pub malformed: u64,
    /// RTP packets whose payload type the SDP does not announce.
    pub unknown_payload_type: u64,
    /// RTCP packets on the RTP port, ignored.
    pub rtcp: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub paths: Vec<PathStats>,
}

/// The ingest's counters, one set per path it was given, readable from any thread
/// (metrics). The lock is taken to add, remove and list paths, never to count.
#[derive(Clone, Default)]
pub struct IngestCounters(Arc<Mutex<BTreeMap<String, PathCounters>>>);

impl IngestCounters {
    /// The counters of `path`, to count from another thread (an RTSP task).
    pub fn of(&self, path: &str) -> Option<PathCounters> {
        self.paths().get(path).cloned()
    }

    pub fn stats(&self) -> IngestStats {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        IngestStats {
            paths: self
                .paths()
                .iter()
                .map(|(path, c)| PathStats {
                    path: path.clone(),
                    received: load(&c.received),
                    malformed: load(&c.malformed),
                    unknown_payload_type: load(&c.unknown_payload_type),
                    rtcp: load(&c.rtcp),
                })
                .collect(),
        }
    }

    /// New counters for `path`, listed until [`IngestCounters::close`]; an error if
    /// `path` has some already.
    fn open(&self, path: &str) -> anyhow::Result<PathCounters> {
        match self.paths().entry(path.to_owned()) {
            Entry::Occupied(_) => bail!("path '{path}' is in the ingest already"),
            Entry::Vacant(entry) => Ok(entry.insert(PathCounters::unlisted()).clone()),
        }
    }

    fn close(&self, path: &str) {
        self.paths().remove(path);
    }

    fn paths(&self) -> MutexGuard<'_, BTreeMap<String, PathCounters>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One path's counters, shared by whatever counts for it and the metrics.
#[derive(Clone)]
pub struct PathCounters(Arc<Counters>);

impl PathCounters {
    /// Counters no metrics list: a publisher's, or a path's made from a `paths`
    /// pattern.
    pub fn unlisted() -> PathCounters {
        PathCounters(Arc::default())
    }
}

impl std::ops::Deref for PathCounters {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.0
    }
}

/// The running ingest thread, to which sources are added and from which they are
/// removed at any time; dropping it stops the thread.
pub struct Ingest {
    /// Sources for the thread (and their removals), each followed by a wake.
    commands: mpsc::Sender<Command>,
    waker: Waker,
    /// Registers a new source's socket on the caller's thread, so that the caller gets
    /// the error.
    registry: Registry,
    next_token: AtomicUsize,
    udp: UdpOptions,
    opts: IngestOptions,
    /// Cut when the first demo path is added, then kept for every later one.
    clip: Mutex<Option<Arc<Clip>>>,
    counters: IngestCounters,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ingest {
    /// Starts the ingest thread, reading no source yet.
    pub fn spawn(
        wakers: Arc<Wakers>,
        opts: IngestOptions,
        lifeline: Arc<Lifeline>,
    ) -> anyhow::Result<Ingest> {
        let (mut ingest, reader) = Ingest::hosted(opts)?;
        let stop = ingest.stop.clone();
        let thread = std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                lifeline.guard("ingest", &stop, || {
                    run(reader, &wakers, &stop);
                    Ok::<(), std::convert::Infallible>(())
                })
            })
            .context("ingest: spawning thread")?;
        ingest.thread = Some(thread);
        Ok(ingest)
    }

    /// The ingest, reading no source yet, and its reader for a worker to run in its own
    /// loop ([`Reader::on_turn`]) rather than on a thread of its own.
    pub fn hosted(opts: IngestOptions) -> anyhow::Result<(Ingest, Reader)> {
        let poll = Poll::new().context("ingest: creating epoll")?;
        let registry = poll
            .registry()
            .try_clone()
            .context("ingest: sharing epoll")?;
        let waker = Waker::new(poll.registry(), WAKE).context("ingest: creating waker")?;
        let (commands, inbox) = mpsc::channel();
        let reader = Reader {
            poll,
            inbox,
            events: Events::with_capacity(64),
            slots: RecvBatch::new(RECV_BATCH),
            inputs: Inputs::default(),
            spacing: Spacing::new(opts.batch_window),
            not_before: None,
            ready: true,
        };
        let udp = UdpOptions {
            recv_buffer: opts.recv_buffer,
            send_buffer: 0,
            ..UdpOptions::default()
        };
        let ingest = Ingest {
            commands,
            waker,
            registry,
            next_token: AtomicUsize::new(0),
            udp,
            opts,
            clip: Mutex::new(None),
            counters: IngestCounters::default(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        Ok((ingest, reader))
    }

    /// Starts reading `source` for path `name`, listing its counters, and returns its
    /// tracks. An RTP source's port is bound before this returns: an error (the port is
    /// taken...) comes back here, naming the path, and leaves nothing behind. Publisher
    /// and RTSP paths get counters only (their tracks are written by a session or an
    /// RTSP task, which counts with [`IngestCounters::of`]) and no tracks. A name the
    /// ingest has already is an error: a changed source is removed, then added.
    pub fn add(&self, name: &str, source: &Source) -> anyhow::Result<Vec<Arc<Track>>> {
        let counters = self.counters.open(name)?;
        let tracks = self
            .read(name, source, counters)
            .with_context(|| format!("path '{name}'"));
        if tracks.is_err() {
            self.counters.close(name);
        }
        tracks
    }

    /// Stops reading path `name`'s source and forgets its counters. When this returns
    /// the ingest thread has let go of it: an RTP source's socket is closed (its port
    /// can be bound again), a demo's track gets no more packets. It waits for one turn
    /// of the thread's loop at most. A name the ingest does not have changes nothing.
    pub fn remove(&self, name: &str) {
        let (done, gone) = mpsc::sync_channel(1);
        let path = name.to_owned();
        if self.tell(Command::Remove { path, done }).is_ok() {
            // An error: the thread ended, and its sources with it.
            let _ = gone.recv();
        }
        self.counters.close(name);
    }

    pub fn stats(&self) -> IngestStats {
        self.counters.stats()
    }

    pub fn counters(&self) -> IngestCounters {
        self.counters.clone()
    }

    /// Binds or starts what the thread will read for `source`; its tracks.
    fn read(
        &self,
        name: &str,
        source: &Source,
        counters: PathCounters,
    ) -> anyhow::Result<Vec<Arc<Track>>> {
        let path = name.to_owned();
        let (input, tracks) = match source {
            // A publisher's packets are written by the worker holding its session, an
            // RTSP camera's by its task.
            Source::Publisher | Source::Rtsp(_) => return Ok(Vec::new()),
            Source::Demo => {
                let clip = self.clip()?;
                let (track, writer) = Track::new(clip.info.clone(), self.opts.history);
                writer.set_parameter_sets(clip.parameter_sets.clone());
                let player = DemoPlayer::random(clip, Instant::now());
                let input = DemoInput {
                    path,
                    counters,
                    player,
                    writer,
                };
                (Input::Demo(input), vec![track])
            }
            Source::Rtp { listen, sdp } => {
                let receiver = udp::bind_input(*listen, &self.udp)
                    .with_context(|| format!("listening on udp {listen}"))?;
                let token = Token(self.next_token.fetch_add(1, Ordering::Relaxed));
                self.registry
                    .register(&mut SourceFd(&receiver.fd()), token, Interest::READABLE)
                    .context("ingest: epoll_ctl")?;
                let (tracks, writers) = sdp
                    .tracks()
                    .iter()
                    .map(|t| {
                        let (track, writer) = Track::new(t.info.clone(), self.opts.history);
                        if let Some(sets) = t.parameter_sets.clone() {
                            writer.set_parameter_sets(sets);
                        }
                        (track, (t.payload_type, writer))
                    })
                    .unzip();
                let input = RtpInput {
                    path,
                    counters,
                    receiver,
                    demux: RtpDemux::new(writers),
                };
                (Input::Rtp(token, input), tracks)
            }
        };
        self.tell(Command::Read(Box::new(input)))?;
        Ok(tracks)
    }

    fn clip(&self) -> anyhow::Result<Arc<Clip>> {
        let mut clip = self.clip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(clip) = &*clip {
            return Ok(clip.clone());
        }
        let cut = Clip::demo(self.opts.max_payload).context("demo")?;
        Ok(clip.insert(Arc::new(cut)).clone())
    }

    fn tell(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow!("the ingest thread has ended"))?;
        self.waker.wake().context("waking the ingest thread")
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Command {
    Read(Box<Input>),
    /// Drop `path`'s input, then say so on `done`.
    Remove {
        path: String,
        done: mpsc::SyncSender<()>,
    },
}

enum Input {
    Rtp(Token, RtpInput),
    Demo(DemoInput),
}

struct RtpInput {
    path: String,
    counters: PathCounters,
    receiver: UdpInput,
    demux: RtpDemux,
}

struct DemoInput {
    path: String,
    counters: PathCounters,
    player: DemoPlayer,
    writer: TrackWriter,
}

/// Every source the ingest thread reads; only it touches them.
#[derive(Default)]
struct Inputs {
    rtp: HashMap<Token, RtpInput>,
    demos: Vec<DemoInput>,
    /// Sockets that may hold datagrams: readable, or left with some after MAX_BATCHES
    /// (epoll is edge-triggered in mio).
    pending: Vec<Token>,
}

impl Inputs {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Read(input) => match *input {
                Input::Rtp(token, input) => {
                    self.rtp.insert(token, input);
                    // Datagrams that came before the input did may have raised the only
                    // event they will.
                    self.pending.push(token);
                }
                Input::Demo(input) => self.demos.push(input),
            },
            Command::Remove { path, done } => {
                // Dropping the socket closes it, which also takes it out of epoll (it has
                // no other descriptor); its token, never reused, is left out of `pending`
                // at the next drain.
                self.rtp.retain(|_, input| input.path != path);
                self.demos.retain(|demo| demo.path != path);
                let _ = done.send(());
            }
        }
    }
}

/// Stop, or commands to take: the ingest's waker.
const WAKE: Token = Token(usize::MAX);
/// Batches taken from one socket per wakeup before the others (and the demo) get a turn.
const MAX_BATCHES: usize = 16;
/// Datagrams per receive call (as a worker's): a source sends a frame's packets at once.
const RECV_BATCH: usize = 64;

/// Starts the ingest thread and adds every source ([`Ingest::add`]); returns the tracks
/// of the paths it reads (demo and RTP).
#[cfg(test)]
pub fn start(
    sources: Vec<(String, Source)>,
    wakers: Arc<Wakers>,
    opts: IngestOptions,
    lifeline: Arc<Lifeline>,
) -> anyhow::Result<(Ingest, Vec<Published>)> {
    let ingest = Ingest::spawn(wakers, opts, lifeline)?;
    let mut published = Vec::new();
    for (path, source) in sources {
        let tracks = ingest.add(&path, &source)?;
        // Publisher and RTSP paths have none here: the server makes theirs.
        if !tracks.is_empty() {
            published.push(Published { path, tracks });
        }
    }
    Ok((ingest, published))
}

/// The ingest's thread: passes until `stop`, sleeping between them as [`Spacing`] says.
fn run(mut reader: Reader, wakers: &Wakers, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let timeout = reader.timeout(Instant::now());
        if let Err(e) = reader.pass(timeout, wakers, None) {
            tracing::error!("ingest: epoll failed, stopping: {e}");
            return;
        }
        if let Some(until) = reader.not_before {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
    }
}

/// What reads every demo and RTP source: an epoll set over their sockets and the
/// waker of the ingest's commands. It runs on the ingest's thread ([`Ingest::spawn`])
/// or inside a worker's loop ([`Ingest::hosted`]): with one worker, a thread of its own
/// only added a wake-up to every pass (the ingest's, then the worker's).
pub struct Reader {
    poll: Poll,
    inbox: mpsc::Receiver<Command>,
    events: Events,
    /// One for every source: they are read in turn, and their payloads copied out at once.
    slots: RecvBatch,
    inputs: Inputs,
    spacing: Spacing,
    /// A busy reader's next pass, not before ([`Spacing`]).
    not_before: Option<Instant>,
    /// Its epoll set may have something since the last pass (a worker's epoll set says
    /// so once, edge-triggered). True at first: commands may be waiting.
    ready: bool,
}

impl Reader {
    /// The reader's epoll set, for a worker's own: readable when a source or a command
    /// is waiting.
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// How long a pass may wait for its epoll set: until the next demo frame, not at all
    /// while sockets may hold datagrams.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.inputs.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        self.next_demo()
            .map(|due| due.saturating_duration_since(now))
    }

    fn next_demo(&self) -> Option<Instant> {
        self.inputs.demos.iter().map(|d| d.player.next_due()).min()
    }

    /// When the worker running the reader must call [`Reader::on_turn`] next: at the end
    /// of the window while passes keep reading (it passes then whatever its epoll set
    /// says, see [`Reader::listens`]), at once if something is waiting, else at the
    /// next demo frame.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        let waiting = self.ready || !self.inputs.pending.is_empty();
        let work = match self.not_before {
            Some(t) => Some(t.max(now)),
            None => waiting.then_some(now),
        };
        match (work, self.next_demo()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the worker running the reader should have its epoll set in its own: not
    /// while a busy reader waits for its window, when every datagram arriving would
    /// wake the worker for nothing. Its next pass is due at the window's end anyway.
    pub fn listens(&self) -> bool {
        self.not_before.is_none()
    }

    /// A turn of the worker `host` running the reader (`ready`: its epoll set said so):
    /// a pass if one is due. The workers reading what it fed are woken, but `host`,
    /// which fans out next in the same turn.
    pub fn on_turn(
        &mut self,
        now: Instant,
        ready: bool,
        wakers: &Wakers,
        host: usize,
    ) -> std::io::Result<()> {
        self.ready |= ready;
        if self.next_due(now).is_none_or(|due| due > now) {
            return Ok(());
        }
        self.ready = false;
        self.pass(Some(Duration::ZERO), wakers, Some(host))
    }

    /// Takes what epoll reports within `timeout` (commands first), reads every socket
    /// that may hold datagrams and plays the demo frames due, then wakes each worker
    /// reading what it fed once (but `host`, if any), however many streams fed it.
    fn pass(
        &mut self,
        timeout: Option<Duration>,
        wakers: &Wakers,
        host: Option<usize>,
    ) -> std::io::Result<()> {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in self.events.iter() {
            match event.token() {
                WAKE => self.inbox.try_iter().for_each(|c| self.inputs.apply(c)),
                token if !self.inputs.pending.contains(&token) => self.inputs.pending.push(token),
                _ => {}
            }
        }
        let Inputs {
            rtp,
            demos,
            pending,
        } = &mut self.inputs;
        let read = !pending.is_empty();
        let started = Instant::now();
        let slots = &mut self.slots;
        let mut wake = 0;
        pending.retain(|token| {
            rtp.get_mut(token)
                .is_some_and(|i| drain(i, slots, &mut wake))
        });
        let now = Instant::now();
        for d in demos {
            let writer = &mut d.writer;
            let sent = d.player.play(now, &mut |p| {
                writer.push(p);
            });
            if sent > 0 {
                d.counters
                    .received
                    .fetch_add(sent as u64, Ordering::Relaxed);
                wake |= writer.track().readers();
            }
        }
        if let Some(host) = host {
            wake &= !(1 << host);
        }
        if wake != 0 {
            wakers.wake(wake);
        }
        // A pass that read nothing ends a busy spell.
        self.not_before = match read {
            true => self.spacing.after_pass(started),
            false => None,
        };
        Ok(())
    }
}

/// Spaces the ingest's passes over its sockets while streams keep it busy. Without it,
/// 64 cameras at 30 fps, staggered, wake the ingest and the workers they feed ~2,000
/// times a second each, for one frame of one stream each time: on a VM a wake-up costs
/// as much as tens of packets. A pass that follows the one before by less than two
/// windows is followed by a sleep to one window after it started, so that a busy
/// ingest makes at most one pass per window, each serving every stream that sent
/// meanwhile; a lone stream's frames, further apart, are read at once. A packet waits
/// at most a window longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spacing {
    window: Duration,
    last: Option<Instant>,
}

impl Spacing {
    pub(crate) fn new(window: Duration) -> Spacing {
        Spacing { window, last: None }
    }

    /// A pass that read sockets started at `started`: until when to sleep, if at all.
    pub(crate) fn after_pass(&mut self, started: Instant) -> Option<Instant> {
        let busy = self
            .last
            .is_some_and(|last| started.saturating_duration_since(last) < 2 * self.window);
        self.last = Some(started);
        (busy && !self.window.is_zero()).then(|| started + self.window)
    }
}

/// Takes up to MAX_BATCHES batches from one socket, adding the workers to wake to
/// `wake`; true when more may be waiting.
fn drain(input: &mut RtpInput, slots: &mut RecvBatch, wake: &mut u64) -> bool {
    let (demux, counters) = (&mut input.demux, &input.counters);
    for _ in 0..MAX_BATCHES {
        let arrival = Instant::now();
        let result = input
            .receiver
            .recv_into(slots, &mut |d| demux.on_datagram(d.data, arrival, counters));
        *wake |= demux.take_wake_mask();
        match result {
            Ok(n) if n < slots.capacity() => return false,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("ingest: receiving for '{}': {e}", input.path);
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
