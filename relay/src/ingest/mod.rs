//! Sources of tracks: the built-in demo clip, RTP pushed over UDP (MediaMTX's
//! `udp+rtp://` sources described by `rtpSDP`) and RTSP cameras pulled (`rtsp://`,
//! in [`rtsp`], async tasks on the control plane's runtime).
//!
//! One ingest thread serves every demo and RTP source: an epoll set over the RTP sockets (batched
//! `recvmmsg`) with the demo's next frame as its timeout. Each received batch wakes the
//! workers reading the tracks it fed once, not once per packet.

pub mod demo;
pub mod rtp;
pub mod rtsp;
pub mod sdp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::io::udp::{self, UdpOptions, UdpReceiver};
use crate::io::wake::Wakers;
use crate::io::Receiver;
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
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_payload: 1452,
            recv_buffer: 0,
            history: Retention::default(),
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

/// The ingest's counters, readable from any thread (metrics).
#[derive(Clone)]
pub struct IngestCounters(Arc<[(String, Counters)]>);

impl IngestCounters {
    /// The counters of `path`, to count from another thread (an RTSP task).
    pub fn of(&self, path: &str) -> Option<PathCounters> {
        let index = self.0.iter().position(|(p, _)| p == path)?;
        Some(PathCounters {
            all: self.clone(),
            index,
        })
    }

    pub fn stats(&self) -> IngestStats {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        IngestStats {
            paths: self
                .0
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
}

/// One path's counters, held apart from the others'.
#[derive(Clone)]
pub struct PathCounters {
    all: IngestCounters,
    index: usize,
}

impl PathCounters {
    /// Counters of their own, for a path made after the ingest started (from a `paths`
    /// pattern): its metrics do not list them.
    pub fn unlisted(path: &str) -> PathCounters {
        PathCounters {
            all: IngestCounters(Arc::new([(path.to_owned(), Counters::default())])),
            index: 0,
        }
    }
}

impl std::ops::Deref for PathCounters {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.all.0[self.index].1
    }
}

/// The running ingest thread; dropping it stops the thread.
pub struct Ingest {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    counters: IngestCounters,
}

impl Ingest {
    pub fn stats(&self) -> IngestStats {
        self.counters.stats()
    }

    pub fn counters(&self) -> IngestCounters {
        self.counters.clone()
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

struct RtpInput {
    path: usize,
    receiver: UdpReceiver,
    /// Datagrams per receive call: a shorter batch means the socket was emptied.
    batch: usize,
    demux: RtpDemux,
}

struct DemoInput {
    path: usize,
    player: DemoPlayer,
    writer: TrackWriter,
}

const STOP: Token = Token(usize::MAX);
/// Batches taken from one socket per wakeup before the others (and the demo) get a turn.
const MAX_BATCHES: usize = 16;

/// Binds every RTP source, builds every track and starts the ingest thread. RTSP
/// sources only get their counters here (their tasks run on tokio).
pub fn start(
    sources: Vec<(String, Source)>,
    wakers: Arc<Wakers>,
    opts: IngestOptions,
    lifeline: Arc<Lifeline>,
) -> anyhow::Result<(Ingest, Vec<Published>)> {
    let poll = Poll::new().context("ingest: creating epoll")?;
    let waker = Arc::new(Waker::new(poll.registry(), STOP).context("ingest: creating waker")?);
    let mut clip: Option<Arc<Clip>> = None;
    let mut rtp_inputs = Vec::new();
    let mut demos = Vec::new();
    let mut published = Vec::new();
    let mut counters = Vec::new();
    let udp_opts = UdpOptions {
        recv_buffer: opts.recv_buffer,
        send_buffer: 0,
        // A source sends a frame's packets at a time; sockets are drained in turns of
        // up to MAX_BATCHES batches. Each socket's buffer is batch x 2 KiB: with dozens
        // of sources, the workers' 64 would be megabytes that hold nothing.
        batch: 16,
        ..UdpOptions::default()
    };
    let now = Instant::now();
    for (index, (path, source)) in sources.into_iter().enumerate() {
        match source {
            // A publisher's packets are written by the worker holding its session.
            Source::Publisher => {}
            Source::Demo => {
                let clip = match &clip {
                    Some(c) => c.clone(),
                    None => clip
                        .insert(Arc::new(
                            Clip::demo(opts.max_payload)
                                .with_context(|| format!("path '{path}': demo"))?,
                        ))
                        .clone(),
                };
                let (track, writer) = Track::new(clip.info.clone(), opts.history);
                writer.set_parameter_sets(clip.parameter_sets.clone());
                demos.push(DemoInput {
                    path: index,
                    player: DemoPlayer::random(clip, now),
                    writer,
                });
                published.push(Published {
                    path: path.clone(),
                    tracks: vec![track],
                });
            }
            Source::Rtp { listen, sdp } => {
                let (receiver, _) = udp::bind(listen, &udp_opts)
                    .with_context(|| format!("path '{path}': listening on udp {listen}"))?;
                poll.registry()
                    .register(
                        &mut SourceFd(&receiver.fd()),
                        Token(rtp_inputs.len()),
                        Interest::READABLE,
                    )
                    .context("ingest: epoll_ctl")?;
                let mut tracks = Vec::new();
                let mut writers = Vec::new();
                for t in sdp.tracks() {
                    let (track, writer) = Track::new(t.info.clone(), opts.history);
                    if let Some(sets) = t.parameter_sets.clone() {
                        writer.set_parameter_sets(sets);
                    }
                    tracks.push(track);
                    writers.push((t.payload_type, writer));
                }
                rtp_inputs.push(RtpInput {
                    path: index,
                    receiver,
                    batch: udp_opts.batch,
                    demux: RtpDemux::new(writers),
                });
                published.push(Published {
                    path: path.clone(),
                    tracks,
                });
            }
            Source::Rtsp(_) => {}
        }
        counters.push((path, Counters::default()));
    }
    let counters: Arc<[(String, Counters)]> = counters.into();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (stop, counters) = (stop.clone(), counters.clone());
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                lifeline.guard("ingest", &stop, || {
                    run(poll, rtp_inputs, demos, &wakers, &counters, &stop);
                    Ok::<(), std::convert::Infallible>(())
                })
            })
            .context("ingest: spawning thread")?
    };
    let ingest = Ingest {
        stop,
        waker,
        thread: Some(thread),
        counters: IngestCounters(counters),
    };
    Ok((ingest, published))
}

fn run(
    mut poll: Poll,
    mut rtp_inputs: Vec<RtpInput>,
    mut demos: Vec<DemoInput>,
    wakers: &Wakers,
    counters: &[(String, Counters)],
    stop: &AtomicBool,
) {
    let mut events = Events::with_capacity(64);
    // Sockets left with datagrams after MAX_BATCHES (epoll is edge-triggered in mio).
    let mut pending: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let timeout = if pending.is_empty() {
            demos
                .iter()
                .map(|d| d.player.next_due())
                .min()
                .map(|due| due.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("ingest: epoll failed, stopping: {e}");
                return;
            }
        }
        for event in events.iter() {
            if event.token() != STOP && !pending.contains(&event.token().0) {
                pending.push(event.token().0);
            }
        }
        pending.retain(|&i| drain(&mut rtp_inputs[i], wakers, counters));
        let now = Instant::now();
        let mut wake = 0;
        for d in &mut demos {
            let writer = &mut d.writer;
            let sent = d.player.play(now, &mut |p| {
                writer.push(p);
            });
            if sent > 0 {
                let c = &counters[d.path].1;
                c.received.fetch_add(sent as u64, Ordering::Relaxed);
                wake |= writer.track().readers();
            }
        }
        if wake != 0 {
            wakers.wake(wake);
        }
    }
}

/// Takes up to MAX_BATCHES batches from one socket; true when more may be waiting.
fn drain(input: &mut RtpInput, wakers: &Wakers, counters: &[(String, Counters)]) -> bool {
    let c = &counters[input.path].1;
    let demux = &mut input.demux;
    for _ in 0..MAX_BATCHES {
        let arrival = Instant::now();
        let result = input
            .receiver
            .recv(&mut |d| demux.on_datagram(d.data, arrival, c));
        let wake = demux.take_wake_mask();
        if wake != 0 {
            wakers.wake(wake);
        }
        match result {
            Ok(n) if n < input.batch => return false,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("ingest: receiving for '{}': {e}", counters[input.path].0);
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
