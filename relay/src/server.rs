//! `relay serve`: wires the stages together from the config and runs until a signal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::{info, warn};

use crate::config::{parse_listen, Config};
use crate::http::{self, Created, Viewers, WhepError};
use crate::ingest::{self, IngestOptions, Source};
use crate::io::udp::{self, UdpOptions};
use crate::io::wake::Wakers;
use crate::metrics::Metrics;
use crate::session::{Session, SessionConfig};
use crate::worker::registry::{Path, Pending, Registry};
use crate::worker::{Worker, WorkerStats};

/// The HTTP side's handle on the relay.
struct Control {
    paths: HashMap<String, Arc<Path>>,
    registry: Arc<Registry>,
    session: SessionConfig,
}

impl Viewers for Control {
    fn create(&self, path: &str, offer: &str) -> Result<Created, WhepError> {
        let p = self
            .paths
            .get(path)
            .ok_or_else(|| WhepError::UnknownPath(path.to_string()))?;
        let readers = p.readers.fetch_add(1, Ordering::Relaxed);
        if p.max_readers != 0 && readers >= p.max_readers {
            p.readers.fetch_sub(1, Ordering::Relaxed);
            return Err(WhepError::TooManyReaders(path.to_string()));
        }
        let now = Instant::now();
        let (session, answer) =
            Session::viewer(now, offer, &p.tracks, &self.session).map_err(|e| {
                p.readers.fetch_sub(1, Ordering::Relaxed);
                WhepError::BadOffer(e.to_string())
            })?;
        let id = format!("{:032x}", fastrand::u128(..));
        info!(session = %id, path, "viewer answered");
        self.registry.add(Pending {
            id: id.clone(),
            path: p.clone(),
            session: Box::new(session),
            created: now,
        });
        Ok(Created { id, answer })
    }

    fn delete(&self, path: &str, id: &str) -> Result<(), WhepError> {
        if !self.paths.contains_key(path) {
            return Err(WhepError::UnknownPath(path.to_string()));
        }
        if self.registry.close(path, id) {
            Ok(())
        } else {
            Err(WhepError::UnknownSession(id.to_string()))
        }
    }

    fn has_path(&self, path: &str) -> bool {
        self.paths.contains_key(path)
    }
}

/// Runs the relay until SIGINT or SIGTERM.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(64);
    let media_addr =
        parse_listen(&config.webrtc_local_udp_address).context("webrtcLocalUDPAddress")?;
    let http_addr = parse_listen(&config.webrtc_address).context("webrtcAddress")?;
    // Take the listeners before starting anything, so a busy port fails fast.
    let http_listener = std::net::TcpListener::bind(http_addr).with_context(|| {
        format!("cannot listen on {http_addr} (webrtcAddress): is another relay running?")
    })?;
    http_listener.set_nonblocking(true)?;
    if media_addr.port() != 0 {
        // SO_REUSEPORT would let a second relay share the port and split the traffic:
        // a plain bind first proves nobody holds it.
        std::net::UdpSocket::bind(media_addr).with_context(|| {
            format!("cannot bind the media port {media_addr} (webrtcLocalUDPAddress): is another relay running?")
        })?;
    }

    match crate::io::xdp::program() {
        Ok(object) => info!(bytes = object.len(), "XDP program embedded; the AF_XDP data plane is not enabled in this version, running portable (UDP sockets)"),
        Err(why) => info!("XDP unavailable ({why}); running portable (UDP sockets)"),
    }

    let wakers = Arc::new(Wakers::new(workers)?);
    let mut sources = Vec::new();
    for name in config.paths.keys() {
        let pc = config.path(name).expect("configured path");
        let source = pc.source.as_deref().unwrap_or("publisher");
        let source = Source::parse(source, pc.rtp_sdp.as_deref())
            .with_context(|| format!("paths.{name}.source"))?;
        sources.push((name.clone(), source));
    }
    let (ingest, published) = ingest::start(
        sources,
        wakers.clone(),
        IngestOptions {
            max_payload: config.udp_max_payload_size,
            recv_buffer: config.udp_read_buffer_size,
        },
    )?;
    let paths: HashMap<String, Arc<Path>> = published
        .into_iter()
        .map(|p| {
            let max_readers = config
                .path(&p.path)
                .and_then(|c| c.max_readers)
                .unwrap_or(0);
            let path = Arc::new(Path {
                name: p.path.clone(),
                tracks: p.tracks,
                max_readers,
                readers: AtomicUsize::new(0),
            });
            (p.path, path)
        })
        .collect();

    // Every worker's socket on the same port (SO_REUSEPORT); port 0 picks one for all.
    let opts = UdpOptions {
        reuse_port: true,
        recv_buffer: config.udp_read_buffer_size,
        ..UdpOptions::default()
    };
    let mut media_addr = media_addr;
    let mut sockets = Vec::new();
    for _ in 0..workers {
        let (rx, tx) = udp::bind(media_addr, &opts).with_context(|| {
            format!("cannot bind the media port {media_addr} (webrtcLocalUDPAddress)")
        })?;
        media_addr = rx.local_addr();
        sockets.push((rx, tx));
    }
    let candidates = candidates(&config, media_addr)?;
    if candidates.is_empty() {
        bail!("no address to advertise to viewers: set webrtcAdditionalHosts or enable webrtcIPsFromInterfaces");
    }
    info!(media = %media_addr, workers, candidates = ?candidates, "media port ready");
    let registry = Arc::new(Registry::new(wakers.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut stats = Vec::new();
    let mut threads = Vec::new();
    for (id, (rx, tx)) in sockets.into_iter().enumerate() {
        let worker_stats = Arc::new(WorkerStats::default());
        stats.push(worker_stats.clone());
        let worker = Worker::new(id, rx, tx, registry.clone(), wakers.clone(), worker_stats);
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    pin_to_core(id);
                    worker.run(&stop)
                })?,
        );
    }

    let metrics = Metrics::new(stats, paths.values().cloned().collect(), ingest.counters());
    let control = Arc::new(Control {
        paths: paths.clone(),
        registry: registry.clone(),
        session: SessionConfig {
            candidates,
            mtu: config.udp_max_payload_size,
            handshake_timeout: config.webrtc_handshake_timeout,
            allow_legacy_srtp: config.webrtc_allow_legacy_srtp,
        },
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(http_listener)?;
        let registry_metrics = config.metrics.then(|| Arc::new(metrics.registry()));
        let mut http_opts = http::HttpOptions {
            allow_origins: config.webrtc_allow_origins.clone(),
            metrics: None,
        };
        if !config.metrics_address.is_empty() {
            if let Some(reg) = registry_metrics.clone() {
                let addr = parse_listen(&config.metrics_address).context("metricsAddress")?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metricsAddress)"))?;
                tokio::spawn(http::serve_metrics(l, reg));
            }
        } else {
            http_opts.metrics = registry_metrics;
        }
        let local = listener.local_addr()?;
        let mut names: Vec<&String> = paths.keys().collect();
        names.sort();
        for name in names {
            let host = if local.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                local.ip().to_string()
            };
            info!(
                "path '{name}': watch at http://{host}:{}/{name}/",
                local.port()
            );
            println!(
                "relay: watch '{name}' at http://{host}:{}/{name}/",
                local.port()
            );
        }
        let housekeeping = {
            let registry = registry.clone();
            let timeout = config.webrtc_handshake_timeout;
            tokio::spawn(async move {
                for tick in 1u64.. {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    registry.expire(Instant::now(), timeout);
                    if tick % 10 == 0 {
                        // A session sheds str0m (~70 KB) once live; a burst of joins leaves
                        // that much freed heap behind, which malloc keeps unless asked.
                        // SAFETY: plain glibc call, safe at any time from any thread.
                        unsafe { libc::malloc_trim(0) };
                    }
                }
            })
        };
        let served = tokio::select! {
            r = http::serve(listener, control, http_opts) => r,
            _ = shutdown_signal() => Ok(()),
        };
        housekeeping.abort();
        served
    });
    info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    wakers.wake(u64::MAX);
    for t in threads {
        match t.join() {
            Ok(Err(e)) => warn!("worker ended with an error: {e}"),
            Err(_) => warn!("worker panicked"),
            Ok(Ok(())) => {}
        }
    }
    drop(ingest);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
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
/// address (or on the bound address), plus `webrtcAdditionalHosts`. Never mDNS.
fn candidates(config: &Config, media: SocketAddr) -> anyhow::Result<Vec<SocketAddr>> {
    let port = media.port();
    let mut ips: Vec<IpAddr> = Vec::new();
    if !media.ip().is_unspecified() {
        ips.push(media.ip());
    } else if config.webrtc_ips_from_interfaces {
        let wanted = &config.webrtc_ips_from_interfaces_list;
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
    for host in &config.webrtc_additional_hosts {
        let resolved = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("webrtcAdditionalHosts: cannot resolve '{host}'"))?;
        ips.extend(resolved.map(|a| a.ip()));
    }
    let mut seen = Vec::new();
    for ip in ips {
        let addr = SocketAddr::new(ip, port);
        if !seen.contains(&addr) {
            seen.push(addr);
        }
    }
    Ok(seen)
}
