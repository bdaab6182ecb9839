//! `relay serve`: wires the stages together from the config and runs until a signal.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU16, NonZeroU32};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use crate::api::{self, ApiOptions};
use crate::auth::Authenticator;
use crate::config::{
    additional_host, Config, Edit, EditError, Loaded, PathConfig, XdpMode as ConfigXdpMode,
};
use crate::hooks;
use crate::http::connections::{ConnectionLimits, Listeners};
use crate::http::{self, Created, Offer, Viewers, WhepError};
use crate::ingest::rtsp::{self, RtspOptions, RtspUrl, SpacedWakes};
use crate::ingest::{Ingest, IngestOptions, PathCounters, Reader, Source};
use crate::io::udp::{self, UdpOptions};
use crate::io::wake::Wakers;
use crate::io::xdp::{self, XdpError, XdpMode, XdpOptions, XdpProgram, XskOptions};
use crate::io::{Receiver, Sender};
use crate::lifeline::Lifeline;
use crate::metrics::{Metrics, Totals};
use crate::paths::{CloseViewers, PathError, PathLife, PathState, Paths, ServedPath};
use crate::reload::{self, ConfigSource, Reloader};
use crate::session::{Session, SessionConfig};
use crate::track::history::Retention;
use crate::worker::admission::PendingLimits;
use crate::worker::registry::{Place, Registry};
use crate::worker::session_info::SessionInfo;
use crate::worker::{Worker, WorkerStats};

/// The HTTP side's handle on the relay.
struct Control {
    paths: Arc<Paths>,
    registry: Arc<Registry>,
    reloader: Arc<Reloader>,
    session: SessionConfig,
    rng: SystemRandom,
}

impl Viewers for Control {
    fn create(&self, offer: &Offer) -> Result<Created, WhepError> {
        let path = offer.path;
        let (id, p) = self.new_session(path)?;
        let tracks = p
            .tracks()
            .ok_or_else(|| WhepError::NoStream(path.to_string(), p.state().to_string()))?;
        let now = Instant::now();
        let place = self.registry.admit(offer.client, now)?;
        if !p.add_reader() {
            return Err(WhepError::TooManyReaders(path.to_string()));
        }
        let (session, answer) =
            Session::viewer(now, offer.sdp, &tracks, &self.session).map_err(|e| {
                p.remove_reader();
                WhepError::BadOffer(e.to_string())
            })?;
        info!(session = %id, path, "viewer answered");
        Ok(register(place, id, &p, session, answer, offer.query))
    }

    fn publish(&self, offer: &Offer) -> Result<Created, WhepError> {
        let path = offer.path;
        let (id, p) = self.new_session(path)?;
        let now = Instant::now();
        // Before the offer is parsed and a publisher replaced.
        let place = self.registry.admit(offer.client, now)?;
        let (mut session, answer) = Session::publisher(now, offer.sdp, &self.session)
            .map_err(|e| WhepError::BadOffer(e.to_string()))?;
        p.claim_publisher(&id, TAKEOVER_WAIT, |old| {
            info!(session = %old, path, "publisher replaced (overridePublisher)");
            self.registry.close(path, old);
        })?;
        let writers = p.take_writers(&session.published_tracks());
        let tracks: Vec<_> = writers.iter().map(|w| w.track().clone()).collect();
        session.start_publishing(writers);
        info!(session = %id, path, "publisher answered");
        // Registered first: the path's runOnReady finds its publisher (MTX_QUERY).
        let created = register(place, id, &p, session, answer, offer.query);
        p.set_state(PathState::ready(tracks));
        Ok(created)
    }

    fn delete(&self, path: &str, id: &str) -> Result<(), WhepError> {
        if self.registry.close(path, id) {
            Ok(())
        } else {
            Err(WhepError::UnknownSession(id.to_string()))
        }
    }

    fn path(&self, path: &str) -> Result<Arc<ServedPath>, PathError> {
        self.paths.get(path)
    }
}

impl api::Backend for Control {
    fn paths(&self) -> Vec<Arc<ServedPath>> {
        self.paths.all()
    }

    fn path(&self, name: &str) -> Option<Arc<ServedPath>> {
        self.paths.find(name)
    }

    fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.registry.sessions()
    }

    fn session(&self, id: &str) -> Option<Arc<SessionInfo>> {
        self.registry.session(id)
    }

    fn kick(&self, id: &str) -> bool {
        self.registry
            .session(id)
            .is_some_and(|s| self.registry.close(&s.path, id))
    }

    fn config(&self) -> Arc<Config> {
        self.reloader.config()
    }

    fn edit(&self, edit: Edit) -> Result<(), EditError> {
        self.reloader.edit(edit).map(drop)
    }
}

impl Control {
    /// A new session's id, and the path it is for.
    fn new_session(&self, path: &str) -> Result<(String, Arc<ServedPath>), WhepError> {
        // getrandom(2) does not fail once the kernel's pool is seeded; if it did, the panic
        // is the request's 500, before any reader is counted.
        let id = session_id(&self.rng).expect("the OS random number generator failed");
        Ok((id, self.paths.get(path)?))
    }
}

/// Hands an answered session to the workers, which claim it at its first check.
fn register(
    place: Place<'_>,
    id: String,
    path: &Arc<ServedPath>,
    session: Session,
    answer: String,
    query: &str,
) -> Created {
    place.park(id.clone(), path.clone(), session, query.to_owned());
    Created { id, answer }
}

/// How long a new publisher waits for the one it replaces to leave (its worker closes
/// it on the next turn).
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// A new session id: 128 bits from `rng`, in hex. The id is the only capability for a
/// session's WHEP DELETE and PATCH, so it must not be guessable: the relay passes ring's
/// `SystemRandom` (the kernel's CSPRNG, getrandom(2)).
fn session_id(rng: &dyn SecureRandom) -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs the relay with the config `loaded` from `source` until SIGINT or SIGTERM (or a
/// data-plane thread dies: an error).
pub fn serve(source: ConfigSource, loaded: Loaded) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    raise_open_files(&config);
    // Go samples its heap from the start; relay does too, when it serves profiles.
    if config.pprof_address.is_some() {
        if let Err(e) = crate::heap::start_sampling() {
            warn!("heap profiles will be empty: {e}");
        }
    }
    let xdp = config.xdp_interface.as_deref();
    let workers = worker_count(&config)?;
    let ports = Ports::take(&config)?;
    // The DTLS certificate every session shares is made now, not in the first viewer's
    // request: making it seeds aws-lc's entropy pool, tens of ms once per process.
    crate::session::keys::certificate();
    match (xdp, crate::io::xdp::program()) {
        (Some(_), _) => {}
        (None, Ok(_)) => info!("portable mode (UDP sockets); set xdpInterface for kernel bypass"),
        (None, Err(why)) => info!("portable mode (UDP sockets); XDP unavailable: {why}"),
    }

    let wakers = Arc::new(Wakers::new(workers)?);
    let lifeline = Arc::new(Lifeline::default());
    let registry = Arc::new(Registry::new(
        wakers.clone(),
        PendingLimits {
            per_address: config.webrtc_max_pending_sessions_per_ip,
            total: config.webrtc_max_pending_sessions,
            timeout: config.webrtc_handshake_timeout,
        },
    ));
    let Sources {
        ingest,
        hosted,
        pulled,
        paths,
    } = start_sources(&config, workers, &wakers, &registry, &lifeline)?;
    let stop = Arc::new(AtomicBool::new(false));
    let threads = Threads {
        stop: stop.clone(),
        lifeline: lifeline.clone(),
    };
    let media_addr = config.webrtc_local_udp_address;
    let crew = Crew {
        registry: &registry,
        wakers: &wakers,
        threads: &threads,
        ingest: hosted,
    };
    let plane = match xdp {
        Some(iface) => xdp_plane(&config, iface, media_addr, workers, crew)?,
        None => portable_plane(&config, media_addr, workers, crew)?,
    };
    let candidates = candidates(&config, plane.media_addr, xdp)?;
    if candidates.is_empty() {
        bail!("no address to advertise to viewers: set webrtcAdditionalHosts or enable webrtcIPsFromInterfaces");
    }
    info!(media = %plane.media_addr, workers, candidates = ?candidates, "media port ready");
    let DataPlane {
        stats,
        threads,
        xdp: xdp_program,
        ..
    } = plane;
    let listeners = Arc::new(Listeners::new(ConnectionLimits {
        per_address: config.http_max_connections_per_ip,
        total: config.http_max_connections,
    }));
    let metrics = Metrics::new(
        stats,
        paths.clone(),
        ingest.counters(),
        xdp_program,
        registry.clone(),
        listeners.clone(),
    );
    let auth = Arc::new(Authenticator::new(config.auth.clone(), config.read_timeout));
    let reloader = Reloader::new(source, loaded, paths.clone(), auth.clone());
    let control = Arc::new(Control {
        paths,
        registry,
        reloader: Arc::new(reloader),
        session: SessionConfig {
            candidates,
            mtu: config.udp_max_payload_size,
            handshake_timeout: config.webrtc_handshake_timeout,
            allow_legacy_srtp: config.webrtc_allow_legacy_srtp,
            keyframe_request_interval: config.keyframe_request_interval,
        },
        rng: SystemRandom::new(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(control_plane(
        &config, ports.http, control, auth, metrics, &listeners, &lifeline,
    ));
    info!("shutting down");
    bound_shutdown(SHUTDOWN_LIMIT);
    // The pulled sources and the hooks' tasks end first; the hooks' commands get SIGINT
    // and are waited for, as MediaMTX waits for them.
    drop(pulled);
    crate::hooks::end_all(HOOKS_EXIT_WAIT);
    stop.store(true, Ordering::Relaxed);
    wakers.wake(u64::MAX);
    for t in threads {
        // The lifeline has reported any end but the one asked for.
        let _ = t.join();
    }
    drop(ingest);
    result
}

/// How long the hooks' commands are given to exit after SIGINT at shutdown: within
/// [`SHUTDOWN_LIMIT`], with time left for the rest.
const HOOKS_EXIT_WAIT: Duration = Duration::from_secs(3);

/// The longest a shutdown may take: workers close their sessions in one turn, but a
/// source stuck in a blocking call (an RTSP camera's socket, say) must not keep a
/// supervisor waiting for its SIGKILL.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Exits the process if the shutdown under way is not over within `limit`. The kernel
/// detaches XDP and closes every socket of a process that exits, so nothing is left
/// behind either way.
fn bound_shutdown(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::error!("shutdown took longer than {limit:?}; exiting now");
        // The hooks' commands would outlive the relay: SIGINT, not waited for.
        crate::hooks::end_all(Duration::ZERO);
        std::process::exit(1);
    });
}

/// Raises the soft limit of open files to the hard one, as Go's runtime does for
/// MediaMTX: the usual soft default, 1024, is below what `httpMaxConnections` lets the
/// WHEP listener alone hold, and accept fails for everyone once descriptors run out.
/// Warns when even the hard limit is below that.
fn raise_open_files(config: &Config) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        warn!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
        return;
    }
    // The WHEP listener's connections, and as many again for sockets, files and the
    // other listeners.
    let wanted = (config.http_max_connections as u64).saturating_mul(2);
    if limit.rlim_cur < wanted {
        warn!(
            open_files = limit.rlim_cur,
            httpMaxConnections = config.http_max_connections,
            "the open files limit (ulimit -n, LimitNOFILE) is below twice httpMaxConnections: \
             connections may fail for want of descriptors before the limit refuses them"
        );
    }
}

/// Workers to run: one per RX queue with XDP (each owns that queue's AF_XDP socket),
/// else `workers`, 0 meaning one per core.
fn worker_count(config: &Config) -> anyhow::Result<usize> {
    let workers = match (config.xdp_interface.as_deref(), config.workers) {
        (Some(iface), _) => rx_queues(iface)?,
        (None, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        (None, n) => n,
    };
    Ok(workers.min(64))
}

/// The ports taken before anything starts, so that a busy one fails fast.
struct Ports {
    http: std::net::TcpListener,
    /// With XDP, the media port held in the kernel (never read): the program takes the
    /// media, and no other process may bind the port meanwhile.
    _media: Option<std::net::UdpSocket>,
}

impl Ports {
    fn take(config: &Config) -> anyhow::Result<Ports> {
        let http_addr = config.webrtc_address;
        let http = std::net::TcpListener::bind(http_addr).with_context(|| {
            format!("cannot listen on {http_addr} (webrtcAddress): is another relay running?")
        })?;
        http.set_nonblocking(true)?;
        // SO_REUSEPORT would let a second relay share the port and split the traffic: a
        // plain bind first proves nobody holds it.
        let media_addr = config.webrtc_local_udp_address;
        let media = match media_addr.port() {
            0 => None,
            _ => {
                let socket = std::net::UdpSocket::bind(media_addr).with_context(|| {
                    format!("cannot bind the media port {media_addr} (webrtcLocalUDPAddress): is another relay running?")
                })?;
                config.xdp_interface.is_some().then_some(socket)
            }
        };
        Ok(Ports {
            http,
            _media: media,
        })
    }
}

/// What [`start_sources`] started.
struct Sources {
    ingest: Arc<Ingest>,
    /// The ingest's reader, for the one worker to run.
    hosted: Option<Reader>,
    pulled: tokio::runtime::Runtime,
    paths: Arc<Paths>,
}

/// The ingest for every configured path, the runtime of the pulled (RTSP) sources and
/// of the hooks, and the paths as the rest of the relay shares them, started. With one
/// worker the ingest's reader is returned for that worker to run: a thread of its own
/// would wake, then wake the worker, at every pass. With more, it gets its own thread,
/// so that no worker's fan-out delays the others' packets.
fn start_sources(
    config: &Config,
    workers: usize,
    wakers: &Arc<Wakers>,
    registry: &Arc<Registry>,
    lifeline: &Arc<Lifeline>,
) -> anyhow::Result<Sources> {
    let opts = IngestOptions {
        max_payload: config.udp_max_payload_size,
        recv_buffer: config.udp_read_buffer_size,
        history: config.history,
        batch_window: config.ingest_batch_window,
    };
    let (ingest, hosted) = match workers {
        1 => Ingest::hosted(opts).map(|(ingest, reader)| (ingest, Some(reader)))?,
        _ => (Ingest::spawn(wakers.clone(), opts, lifeline.clone())?, None),
    };
    let ingest = Arc::new(ingest);
    // RTSP sessions are async (retina runs on tokio). They get a runtime of their own,
    // not the HTTP one: every camera's media goes through it all the time, while HTTP
    // work comes in bursts (an offer costs str0m's SDP and DTLS setup), and neither
    // should make the other wait (a late read overflows a camera's UDP socket). The
    // paths' hooks, which only wait, run there too.
    let pulled = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rtsp")
        .enable_all()
        .build()
        .context("starting the runtime of the RTSP sources")?;
    let rtsp_wakes = SpacedWakes::new(wakers.clone(), config.ingest_batch_window);
    pulled.spawn(rtsp_wakes.clone().run());
    let starter = PathStarter {
        history: config.history,
        read_timeout: config.read_timeout,
        max_payload: config.udp_max_payload_size,
        rtsp_wakes,
        registry: registry.clone(),
        ingest: ingest.clone(),
        pulled: pulled.handle().clone(),
    };
    let paths = Arc::new(Paths::new(Box::new(starter)));
    let changes = paths.configure(&config.paths, &config.path_patterns);
    if let Some((name, why)) = changes.failed.first() {
        bail!("path '{name}' cannot start: {why}");
    }
    Ok(Sources {
        ingest,
        hosted,
        pulled,
        paths,
    })
}

/// How the relay starts and stops a path: its source, then its hooks.
struct PathStarter {
    history: Retention,
    read_timeout: Duration,
    max_payload: usize,
    /// The RTSP sources wake the workers through it, spaced as the ingest's passes.
    rtsp_wakes: Arc<SpacedWakes>,
    /// Knows the sessions of a path: hooks follow its viewers, a stop ends them.
    registry: Arc<Registry>,
    /// Reads the RTP and demo sources, and counts what every named path receives.
    ingest: Arc<Ingest>,
    /// The runtime of the RTSP sources and of the hooks.
    pulled: tokio::runtime::Handle,
}

impl PathLife for PathStarter {
    fn start(&self, name: &str, path: &PathConfig, made: bool) -> anyhow::Result<Arc<ServedPath>> {
        // The ingest lists the named paths' counters (a made path's live and go with its
        // sessions), and binds an RTP source's port here, so that a busy one is said now.
        let tracks = match made {
            true => Vec::new(),
            false => self.ingest.add(name, &path.source)?,
        };
        let served = match &path.source {
            Source::Publisher => self.start_publisher(name, path, made),
            Source::Rtsp(url) => self.start_rtsp(name, path, url, made),
            Source::Demo | Source::Rtp { .. } => {
                Arc::new(ServedPath::ready(name, path.max_readers, tracks))
            }
        };
        if !path.hooks.is_empty() {
            self.pulled.spawn(hooks::watch_path(
                name.to_owned(),
                served.subscribe(),
                path.source.mediamtx_type(),
                path.hooks.clone(),
                self.registry.clone(),
            ));
        }
        Ok(served)
    }

    fn stop(&self, path: &ServedPath) {
        path.close();
        // Blocks until the ingest thread closed an RTP source's socket: a changed path
        // binds the port again next.
        self.ingest.remove(&path.name);
        let closed = self.registry.close_path(&path.name);
        info!(path = %path.name, sessions = closed, "path stopped");
    }
}

impl PathStarter {
    /// Ends a path's viewers whose tracks a new source replaced.
    fn viewer_closer(&self) -> CloseViewers {
        let registry = self.registry.clone();
        Box::new(move |name| registry.close_viewers(name))
    }

    /// A `publisher` path, with its `runOnDemand` command if it has one.
    fn start_publisher(&self, name: &str, path: &PathConfig, made: bool) -> Arc<ServedPath> {
        let mut served = ServedPath::for_publisher(name, path.max_readers, path.override_publisher)
            .with_retention(self.history)
            .with_close_viewers(self.viewer_closer());
        let Some(demand) = path.hooks.on_demand.clone() else {
            return Arc::new(served);
        };
        served = served.with_on_demand(demand.start_timeout);
        let served = Arc::new(served);
        self.pulled
            .spawn(hooks::run_on_demand(served.clone(), demand, made));
        served
    }

    /// A camera's path, its source pulled from now (or from its first viewer, on
    /// demand).
    fn start_rtsp(
        &self,
        name: &str,
        path: &PathConfig,
        url: &RtspUrl,
        made: bool,
    ) -> Arc<ServedPath> {
        let initial = match path.on_demand {
            Some(_) => PathState::Idle,
            None => PathState::Connecting,
        };
        let mut served = ServedPath::new(name, path.max_readers, initial)
            .with_retention(self.history)
            .with_close_viewers(self.viewer_closer());
        if let Some(on_demand) = path.on_demand {
            served = served.with_on_demand(on_demand.start_timeout);
        }
        let served = Arc::new(served);
        let opts = RtspOptions {
            transport: path.rtsp_transport,
            close_after: path.on_demand.map(|o| o.close_after),
            read_timeout: self.read_timeout,
            max_payload: self.max_payload,
            ends_unwatched: made,
        };
        let counters = match made {
            true => None,
            false => self.ingest.counters().of(name),
        };
        self.pulled.spawn(rtsp::run(
            served.clone(),
            url.clone(),
            opts,
            self.rtsp_wakes.clone(),
            counters.unwrap_or_else(PathCounters::unlisted),
        ));
        served
    }
}

/// HTTP (WHEP, pages, metrics, the API) and housekeeping, until a signal or a dead
/// data-plane thread.
async fn control_plane(
    config: &Config,
    listener: std::net::TcpListener,
    control: Arc<Control>,
    auth: Arc<Authenticator>,
    metrics: Metrics,
    listeners: &Listeners,
    lifeline: &Lifeline,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let http_opts = http::HttpOptions {
        allow_origins: config.webrtc_allow_origins.clone(),
        read_timeout: config.read_timeout,
        auth: auth.clone(),
        connections: listeners.webrtc.clone(),
    };
    if config.metrics {
        let addr = config.metrics_address;
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} (metricsAddress): is another relay or MediaMTX \
                     using it? Give metricsAddress a free port"
            )
        })?;
        let local = l.local_addr()?;
        info!("metrics at http://{local}/metrics");
        // Before the paths' URLs, as the API's.
        crate::logs::say(format_args!("relay: metrics at http://{local}"));
        let registry = Arc::new(metrics.clone());
        tokio::spawn(http::serve_metrics(
            l,
            registry,
            config.read_timeout,
            auth.clone(),
            listeners.metrics.clone(),
        ));
    }
    if let Some(addr) = config.pprof_address {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (pprofAddress)"))?;
        info!(
            address = %l.local_addr()?,
            "CPU profiles at /debug/pprof/profile, heap profiles at /debug/pprof/heap"
        );
        tokio::spawn(http::serve_pprof(
            l,
            config.read_timeout,
            auth.clone(),
            listeners.pprof.clone(),
        ));
    }
    if config.api {
        let addr = config.api_address;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (apiAddress)"))?;
        let local = l.local_addr()?;
        info!("control API at http://{local}/v3/");
        // Before the paths' URLs: tests and scripts read it from stdout until those.
        crate::logs::say(format_args!("relay: API at http://{local}"));
        let opts = ApiOptions {
            allow_origins: config.api_allow_origins.clone(),
            read_timeout: config.read_timeout,
            auth: auth.clone(),
            connections: listeners.api.clone(),
        };
        tokio::spawn(api::serve(l, control.clone(), opts));
    }
    announce(config, listener.local_addr()?);
    let watch = tokio::spawn(reload::watch_file(control.reloader.clone()));
    let hangups = tokio::spawn(reload_on_hangup(control.reloader.clone()));
    let housekeeping = tokio::spawn(housekeeping(
        control.registry.clone(),
        control.paths.clone(),
        config.webrtc_handshake_timeout,
        metrics,
    ));
    let served = tokio::select! {
        () = http::serve(listener, control, http_opts) => Ok(()),
        () = shutdown_signal() => Ok(()),
        why = lifeline.ended() => Err(anyhow::anyhow!("{why}")),
    };
    housekeeping.abort();
    watch.abort();
    hangups.abort();
    served
}

/// SIGHUP reloads the config file, as for MediaMTX.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot handle SIGHUP: edit the config file to reload it");
        return;
    };
    while hangups.recv().await.is_some() {
        match reloader.file() {
            Some(file) => info!(file = %file.display(), "SIGHUP: reloading the config"),
            None => info!("SIGHUP: relay runs without a config file; nothing to reload"),
        }
        if reloader.file().is_some() {
            reload::reload_now(&reloader).await;
        }
    }
}

/// Says where each path can be watched, in the log and on stdout (tests and scripts
/// read the URL there): the named ones, then the names each pattern stands for.
fn announce(config: &Config, local: SocketAddr) {
    let host = match local.ip().is_unspecified() {
        true => "localhost".to_string(),
        false => local.ip().to_string(),
    };
    let origin = format!("http://{host}:{}", local.port());
    for name in config.paths.keys() {
        let url = format!("{origin}/{name}/");
        info!("path '{name}': watch at {url}");
        crate::logs::say(format_args!("relay: watch '{name}' at {url}"));
    }
    for pattern in &config.path_patterns {
        let key = &pattern.key;
        let url = format!("{origin}/NAME/");
        info!("paths matching '{key}': publish to and watch any such NAME at {url}");
        crate::logs::say(format_args!("relay: watch paths matching '{key}' at {url}"));
    }
}

/// Once a second: drop sessions no viewer reached in time and the paths made from
/// patterns that are no longer used, and attach XDP again if someone detached it;
/// every ten, the stats line and heap trimming.
async fn housekeeping(
    registry: Arc<Registry>,
    paths: Arc<Paths>,
    handshake_timeout: Duration,
    metrics: Metrics,
) {
    let mut last = metrics.totals();
    let xdp = metrics.xdp();
    let mut reattach_failed = false;
    for tick in 1u64.. {
        tokio::time::sleep(Duration::from_secs(1)).await;
        registry.expire(Instant::now(), handshake_timeout);
        paths.remove_unused();
        if let Some(xdp) = &xdp {
            keep_xdp_attached(xdp, &mut reattach_failed);
        }
        if tick % 10 == 0 {
            let now = metrics.totals();
            log_stats(&last, &now, 10);
            last = now;
        }
    }
}

/// Attaches the XDP program again if its link was detached by hand: until then the
/// media port's traffic (viewers' ICE checks, RTCP, new viewers) goes to the kernel,
/// which holds the port and reads nothing. Media to viewers goes on meanwhile (AF_XDP
/// transmits without the program). A failure is logged once and tried every second.
fn keep_xdp_attached(xdp: &Mutex<XdpProgram>, failed: &mut bool) {
    let mut program = xdp.lock().unwrap_or_else(|e| e.into_inner());
    let interface = program.interface().unwrap_or_default().to_string();
    match program.reattach_if_detached() {
        Ok(false) => {}
        Ok(true) => {
            *failed = false;
            warn!(
                interface = %interface,
                "the XDP program was detached from its interface by someone else; attached it again"
            );
        }
        Err(e) if !*failed => {
            *failed = true;
            tracing::error!(
                interface = %interface,
                "the XDP program was detached from its interface by someone else, and \
                 attaching it again failed (retrying every second): {e}"
            );
        }
        Err(_) => {}
    }
}

/// The stats line an operator sees every few seconds: what flows, and what XDP does.
fn log_stats(before: &Totals, now: &Totals, seconds: u64) {
    if before == now && now.sessions == 0 {
        return; // idle: nothing to say
    }
    let rate = |a: u64, b: u64| b.saturating_sub(a) / seconds;
    let xdp = match (before.xdp, now.xdp) {
        (Some(b), Some(n)) => format!(
            ", xdp redirected {}/s dropped {}/s passed {}/s",
            rate(b.0, n.0),
            rate(b.1, n.1),
            rate(b.2, n.2)
        ),
        _ => String::new(),
    };
    info!(
        "stats: {} sessions, media out {} pkt/s ({} resent), in {} pkt/s{xdp}",
        now.sessions,
        rate(before.rtp_out, now.rtp_out),
        rate(before.retransmitted, now.retransmitted),
        rate(before.datagrams_in, now.datagrams_in),
    );
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The workers and what they send and receive with.
struct DataPlane {
    /// The media address, with the port the kernel chose if it was 0.
    media_addr: SocketAddr,
    stats: Vec<Arc<WorkerStats>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Attached while this lives (the link detaches when it drops or the process dies).
    xdp: Option<Arc<Mutex<XdpProgram>>>,
}

/// One worker's share of `xdpSTUNGlobalRate` and `xdpSTUNGlobalBurst` (a burst of at
/// least one), as the XDP program shares them over its queues: checks from addresses
/// no session has yet that may go on to a claim.
fn claim_share(config: &Config, workers: usize) -> (f64, f64) {
    let n = workers.max(1) as f64;
    let rate = f64::from(config.xdp_stun_global_rate.get()) / n;
    let burst = (f64::from(config.xdp_stun_global_burst.get()) / n).max(1.0);
    (rate, burst)
}

/// Portable mode: one UDP socket per worker on the same port (SO_REUSEPORT); the kernel
/// spreads viewers over them by address. Port 0 picks one port for all.
fn portable_plane(
    config: &Config,
    media_addr: SocketAddr,
    workers: usize,
    mut crew: Crew,
) -> anyhow::Result<DataPlane> {
    let opts = UdpOptions {
        reuse_port: true,
        recv_buffer: config.udp_read_buffer_size,
        ..UdpOptions::default()
    };
    let mut media_addr = media_addr;
    let mut plane = DataPlane {
        media_addr,
        stats: Vec::new(),
        threads: Vec::new(),
        xdp: None,
    };
    for id in 0..workers {
        let (rx, tx) = udp::bind(media_addr, &opts).with_context(|| {
            format!("cannot bind the media port {media_addr} (webrtcLocalUDPAddress)")
        })?;
        media_addr = rx.local_addr();
        let (rate, burst) = claim_share(config, workers);
        let worker = Worker::new(
            id,
            (rx, tx),
            crew.registry.clone(),
            crew.wakers.clone(),
            plane.stat(),
            config.rtcp_sender_report_interval,
        )
        .with_claim_budget(rate, burst);
        plane.spawn(id, crew.with_ingest(worker), crew.threads)?;
    }
    plane.media_addr = media_addr;
    Ok(plane)
}

/// XDP mode: the program on `iface` steers the media port into one AF_XDP socket per RX
/// queue, each served by its own worker; the kernel keeps everything else.
fn xdp_plane(
    config: &Config,
    iface: &str,
    media_addr: SocketAddr,
    queues: usize,
    mut crew: Crew,
) -> anyhow::Result<DataPlane> {
    let media_port = NonZeroU16::new(media_addr.port()).context(
        "xdpInterface needs a fixed media port: set webrtcLocalUDPAddress to e.g. :8189",
    )?;
    let options = XdpOptions {
        media_port,
        mode: match config.xdp_mode {
            ConfigXdpMode::Native => XdpMode::Native,
            ConfigXdpMode::Generic => XdpMode::Generic,
        },
        stun_rate: config.xdp_stun_rate,
        stun_burst: config.xdp_stun_burst,
        stun_global_rate: config.xdp_stun_global_rate,
        stun_global_burst: config.xdp_stun_global_burst,
        queues: NonZeroU32::new(queues as u32).context("the interface has no RX queue")?,
        // logLevel debug, or RUST_LOG naming the target: read once, as logs are set up once.
        debug_logs: tracing::enabled!(target: relay_common::LOG_TARGET, tracing::Level::DEBUG),
    };
    let mut program = XdpProgram::attach(iface, &options)?;
    let sockets = XskOptions {
        busy_poll: config.xdp_busy_poll,
        ..XskOptions::default()
    };
    let mut plane = DataPlane {
        media_addr,
        stats: Vec::new(),
        threads: Vec::new(),
        xdp: None,
    };
    for queue in 0..queues {
        let (rx, tx) = xdp::open(iface, queue as u32, media_addr, &sockets)?;
        // SAFETY: the descriptor stays open inside `rx`, which the worker keeps alive.
        program.register_socket(queue as u32, unsafe { BorrowedFd::borrow_raw(rx.raw_fd()) })?;
        let tx = tx.with_admission(program.admission()?);
        let (rate, burst) = claim_share(config, queues);
        let worker = Worker::new(
            queue,
            (rx, tx),
            crew.registry.clone(),
            crew.wakers.clone(),
            plane.stat(),
            config.rtcp_sender_report_interval,
        )
        .with_claim_budget(rate, burst)
        .with_busy_poll(config.xdp_busy_poll);
        plane.spawn(queue, crew.with_ingest(worker), crew.threads)?;
    }
    info!(
        interface = iface,
        queues,
        mode = ?config.xdp_mode,
        busy_poll = config.xdp_busy_poll,
        "XDP attached: the media port's traffic goes to AF_XDP sockets"
    );
    plane.xdp = Some(Arc::new(Mutex::new(program)));
    Ok(plane)
}

impl DataPlane {
    fn stat(&mut self) -> Arc<WorkerStats> {
        let stats = Arc::new(WorkerStats::default());
        self.stats.push(stats.clone());
        stats
    }

    fn spawn<R, S>(
        &mut self,
        id: usize,
        worker: Worker<R, S>,
        threads: &Threads,
    ) -> anyhow::Result<()>
    where
        R: Receiver + Send + 'static,
        S: Sender + Send + 'static,
    {
        let Threads { stop, lifeline } = threads.clone();
        let name = format!("worker-{id}");
        self.threads.push(
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    pin_to_core(id);
                    lifeline.guard(&name, &stop, || worker.run(&stop));
                })?,
        );
        Ok(())
    }
}

/// What the workers are started with, besides their sockets.
struct Crew<'a> {
    registry: &'a Arc<Registry>,
    wakers: &'a Arc<Wakers>,
    threads: &'a Threads,
    /// The ingest's reader, for the first worker to run (one worker only).
    ingest: Option<Reader>,
}

impl Crew<'_> {
    /// `worker`, running the ingest's reader if it is the first.
    fn with_ingest<R: Receiver, S: Sender>(&mut self, worker: Worker<R, S>) -> Worker<R, S> {
        match self.ingest.take() {
            Some(reader) => worker.with_ingest(reader),
            None => worker,
        }
    }
}

/// What every data-plane thread is given: the flag that asks it to stop, and the
/// lifeline it reports an unasked end on.
#[derive(Clone)]
struct Threads {
    stop: Arc<AtomicBool>,
    lifeline: Arc<Lifeline>,
}

/// RX queues of a network interface, from sysfs (in this network namespace).
fn rx_queues(iface: &str) -> anyhow::Result<usize> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(XdpError::NoSuchInterface {
                interface: iface.to_owned(),
            }
            .into())
        }
        entries => entries.with_context(|| format!("xdpInterface {iface}: reading {dir}"))?,
    };
    let queues = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(queues.max(1))
}

/// Pins worker `id` to a core: its sessions' state then stays in that core's caches.
fn pin_to_core(id: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(id % cores, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The host candidates viewers are told about: the media port on every interface
/// address (or on the bound address), plus `webrtcAdditionalHosts` (on their own port if
/// they name one). Never mDNS.
fn candidates(
    config: &Config,
    media: SocketAddr,
    xdp: Option<&str>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let port = media.port();
    let mut ips: Vec<IpAddr> = Vec::new();
    if !media.ip().is_unspecified() {
        ips.push(media.ip());
    } else if config.webrtc_ips_from_interfaces {
        // With XDP, media is only served on the XDP interface.
        let wanted: Vec<String> = match xdp {
            Some(iface) => vec![iface.to_string()],
            None => config.webrtc_ips_from_interfaces_list.clone(),
        };
        for iface in if_addrs::get_if_addrs().context("listing network interfaces")? {
            if !wanted.is_empty() && !wanted.contains(&iface.name) {
                continue;
            }
            let ip = iface.ip();
            let v4_only = media.is_ipv4();
            let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if link_local || (v4_only && ip.is_ipv6()) {
                continue;
            }
            ips.push(ip);
        }
        // Reachable addresses first; loopback last (it only helps a browser on this host).
        ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    }
    let mut addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| (ip, port).into()).collect();
    for entry in &config.webrtc_additional_hosts {
        // Checked when the config was loaded.
        let (host, forwarded) = additional_host(entry).map_err(anyhow::Error::msg)?;
        let resolved = (host, forwarded.unwrap_or(port))
            .to_socket_addrs()
            .with_context(|| format!("webrtcAdditionalHosts: cannot resolve '{host}'"))?;
        addrs.extend(resolved);
    }
    let mut seen = Vec::new();
    for addr in addrs {
        if !seen.contains(&addr) {
            seen.push(addr);
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additional_hosts_are_advertised_on_the_media_port_or_their_own() {
        let config = Config {
            webrtc_ips_from_interfaces: false,
            webrtc_additional_hosts: ["192.0.2.7", "127.0.0.1:9000", "[::1]:9001"]
                .map(String::from)
                .to_vec(),
            ..Config::default()
        };
        let media = "0.0.0.0:8189".parse().unwrap();
        let want: Vec<SocketAddr> = ["192.0.2.7:8189", "127.0.0.1:9000", "[::1]:9001"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(candidates(&config, media, None).unwrap(), want);
    }

    #[test]
    #[allow(deprecated)] // ring's fixed-output SecureRandom: its trait is sealed.
    fn session_ids_are_the_generators_bytes_in_hex() {
        let bytes: Vec<u8> = (0xf0..=0xff).collect();
        let fixed = ring::test::rand::FixedSliceRandom { bytes: &bytes };
        assert_eq!(
            session_id(&fixed).unwrap(),
            "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        );
    }

    #[test]
    fn session_ids_from_the_system_generator_are_128_distinct_bits() {
        let rng = SystemRandom::new();
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| session_id(&rng).unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
        }
    }
}
