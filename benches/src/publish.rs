//! `relay-bench publish`: N H264 streams pushed over RTP/UDP in real time from one
//! thread, to any server that ingests RTP (relay's `udp+rtp://` paths, Janus streaming
//! mountpoints, MediaMTX).
//!
//! A recorded clip is packetized once at start (relay's demo `Clip`: RFC 6184 single NAL
//! units and FU-A). Each stream loops it with continuous sequence numbers and timestamps
//! and its own SSRC; sending a packet writes those three into a 12-byte header and points
//! the kernel at the clip's payload (two iovecs), so the send loop neither encodes nor
//! copies nor allocates per packet. Before every access unit goes a stamp (`stamp.rs`:
//! stream, frame, send time) so that viewers can measure end-to-end latency. The streams
//! are staggered over the frame interval, and all datagrams due at a wake-up leave in one
//! `sendmmsg`.

use std::io;
use std::mem;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay::ingest::demo::{Clip, DemoPlayer, FPS, PACKET_OVERHEAD};
use relay::track::h264;
use serde::Serialize;

use crate::procfs;
use crate::stamp::{self, Stamp, MAX_NAL_LEN};

const TICKS_PER_FRAME: u32 = 90_000 / FPS;
const FRAME_NS: u64 = 1_000_000_000 / FPS as u64;
const RTP_HEADER: usize = 12;
/// Room after the RTP header for a stamp's NAL unit.
const STAMP_ROOM: usize = MAX_NAL_LEN;
/// A wake-up this long after the tick it was for counts as late.
const LATE: Duration = Duration::from_millis(2);
/// Frame intervals a stalled thread catches up at once; later than that, whole intervals
/// are skipped: a stall shows as a pause, not as a burst of old video.
const MAX_CATCH_UP: u64 = 3;
/// The kernel takes at most UIO_MAXIOV messages per `sendmmsg`.
const MAX_MMSG: usize = 1024;

/// The default clip, as ffmpeg makes it: ~2 Mbit/s of 1280x720 at 30 fps, baseline, no
/// B-frames, IDR with SPS/PPS every `gop` frames (2 s unless asked), lasting the whole
/// number of GOPs nearest above 10 s: looped, it keeps its GOP across the loop point.
const DEFAULT_CLIP: &str = "testsrc2-1280x720-30fps-2M";
/// Frames from one IDR to the next in the default clip.
pub const DEFAULT_GOP: u32 = 60;
/// The default clip's least length, in frames (10 s).
const DEFAULT_CLIP_FRAMES: u32 = 300;
const FFMPEG_INPUT: &str = "-hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30";
const FFMPEG_CODEC: &str = "-c:v libx264 -profile:v baseline -tune zerolatency -bf 0 \
    -b:v 2M -maxrate 2M -bufsize 1M -x264-params repeat-headers=1 -f h264";

/// What to publish, where, for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Stream 0's destination, HOST:PORT; stream i goes to PORT + i * port-step.
    #[arg(long, value_parser = resolve)]
    pub target: SocketAddr,
    #[arg(long, default_value_t = 2)]
    pub port_step: u16,
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// How long to publish, in seconds.
    #[arg(long = "duration", value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub duration: Duration,
    /// An Annex B H264 file (played at 30 fps), or `demo` for relay's built-in clip.
    /// Default: 1280x720 30 fps ~2 Mbit/s, made once with ffmpeg and kept in the target dir.
    #[arg(long, value_name = "FILE|demo")]
    pub clip: Option<ClipSource>,
    /// Frames from one keyframe to the next in the default clip (ffmpeg's `-g`): 120 is
    /// a 4 s GOP. Files and the demo keep their own.
    #[arg(long, value_name = "FRAMES", default_value_t = DEFAULT_GOP,
          value_parser = clap::value_parser!(u32).range(1..=3000))]
    pub gop: u32,
    #[arg(long, default_value_t = 96)]
    pub payload_type: u8,
    /// Largest RTP payload, in bytes (FU-A fragments beyond it).
    #[arg(long, default_value_t = 1200)]
    pub max_payload: usize,
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s}: not a positive number of seconds"))
}

/// A clip other than the default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipSource {
    /// relay's embedded demo clip: 640x360, 30 fps, 6 s.
    Demo,
    /// An Annex B H264 file.
    File(PathBuf),
}

impl std::fmt::Display for ClipSource {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ClipSource::Demo => f.write_str("demo"),
            ClipSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for ClipSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "demo" => ClipSource::Demo,
            file => ClipSource::File(file.into()),
        })
    }
}

/// The clip packetized once: the RTP payloads of one loop, and which of them make each
/// access unit.
#[derive(Debug)]
pub struct Recording {
    clip: Arc<Clip>,
    frames: Vec<Range<usize>>,
}

impl Recording {
    /// Loads `clip` (None: the default clip with a keyframe every `gop` frames, made with
    /// ffmpeg if not made yet), with RTP payloads of at most `max_payload` bytes.
    pub fn load(
        clip: Option<&ClipSource>,
        gop: u32,
        max_payload: usize,
    ) -> anyhow::Result<Recording> {
        // Clip's budget is what remains of a viewer's datagram after the relay's overhead.
        let budget = max_payload + PACKET_OVERHEAD;
        let clip = match clip {
            Some(ClipSource::Demo) => Clip::demo(budget)?,
            Some(ClipSource::File(path)) => read_clip(path, budget)?,
            None => read_clip(&default_clip(gop)?, budget)?,
        };
        Ok(Recording::new(clip))
    }

    fn new(clip: Clip) -> Recording {
        let clip = Arc::new(clip);
        // The demo player, given one frame interval per call, plays one access unit per
        // call, in order: that splits the clip's packets into frames.
        let t0 = Instant::now();
        let mut player = DemoPlayer::new(clip.clone(), t0, 0, 0, 0);
        let mut frames = Vec::with_capacity(clip.frames());
        let mut next = 0;
        for k in 0..clip.frames() as u64 {
            let due = t0 + Duration::from_nanos(k * 1_000_000_000 / FPS as u64);
            let count = player.play(due, &mut |_| {});
            frames.push(next..next + count);
            next += count;
        }
        assert_eq!(
            next,
            clip.packets().len(),
            "one access unit per frame interval"
        );
        Recording { clip, frames }
    }

    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Frames from the clip's first keyframe to its next (the whole clip if it has only
    /// one).
    fn gop(&self) -> usize {
        (1..self.frames())
            .find(|&f| self.is_idr(f))
            .unwrap_or(self.frames())
    }

    /// Whether access unit `frame` starts a keyframe, as the relay's track sees it.
    fn is_idr(&self, frame: usize) -> bool {
        self.frames[frame]
            .clone()
            .any(|i| h264::summarize(&self.clip.packets()[i]).keyframe)
    }

    /// RTP packets of one loop of the clip, stamps not counted.
    pub fn packets(&self) -> usize {
        self.clip.packets().len()
    }

    /// One loop's play time at 30 fps.
    pub fn duration(&self) -> Duration {
        self.clip.duration()
    }

    /// Mean rate of one stream's RTP payloads, stamps not counted.
    pub fn payload_mbit_per_s(&self) -> f64 {
        let bytes: usize = self.clip.packets().iter().map(|p| p.len()).sum();
        bytes as f64 * 8.0 / self.duration().as_secs_f64() / 1e6
    }
}

fn read_clip(path: &Path, budget: usize) -> anyhow::Result<Clip> {
    let annexb = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Clip::new(annexb.into(), budget).with_context(|| format!("{}", path.display()))
}

/// The default clip's file with a keyframe every `gop` frames, made with ffmpeg the first
/// time, kept under the cargo target dir (`target/bench-assets/`).
pub fn default_clip(gop: u32) -> anyhow::Result<PathBuf> {
    let dir = assets_dir()?;
    let name = format!("{DEFAULT_CLIP}-g{gop}.h264");
    let path = dir.join(&name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::report::progress(&format!(
        "making the default clip with ffmpeg: {}",
        path.display()
    ));
    // Made under another name and renamed: a concurrent run never reads half a clip.
    let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
    let frames = DEFAULT_CLIP_FRAMES.div_ceil(gop) * gop;
    let made = Command::new("ffmpeg")
        .args(FFMPEG_INPUT.split_whitespace())
        .args(["-frames:v", &frames.to_string(), "-g", &gop.to_string()])
        .args(FFMPEG_CODEC.split_whitespace())
        .arg(&partial)
        .stdin(Stdio::null())
        .output();
    let made = match made {
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "ffmpeg is not installed, and it makes the default clip: run `cargo xtask setup` \
             (or pass --clip FILE, or --clip demo)"
        ),
        made => made.context("cannot run ffmpeg")?,
    };
    if !made.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "ffmpeg could not make the default clip ({}): {}; `cargo xtask setup` installs \
             an ffmpeg with libx264",
            made.status,
            String::from_utf8_lossy(&made.stderr).trim()
        );
    }
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// `bench-assets` in the target dir this executable was built in: the nearest ancestor
/// holding cargo's `.rustc_info.json` (`target/release/relay-bench`, and test binaries in
/// `target/release/deps/`); next to the executable if there is none.
fn assets_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe.parent().context("executable without a directory")?;
    let target = dir
        .ancestors()
        .find(|d| d.join(".rustc_info.json").exists())
        .unwrap_or(dir);
    Ok(target.join("bench-assets"))
}

/// The `rtpSDP` a relay path needs for one published stream on `port`.
pub fn sdp(payload_type: u8, port: u16) -> String {
    format!(
        "v=0\r\n\
         o=- 0 0 IN IP4 127.0.0.1\r\n\
         s=relay-bench publish\r\n\
         c=IN IP4 127.0.0.1\r\n\
         t=0 0\r\n\
         m=video {port} RTP/AVP {payload_type}\r\n\
         a=rtpmap:{payload_type} H264/90000\r\n\
         a=fmtp:{payload_type} packetization-mode=1;profile-level-id=42e01f\r\n"
    )
}

/// What the publishing thread has sent so far, for a progress line while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub frames: AtomicU64,
    pub late_ticks: AtomicU64,
}

/// What a run sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    pub streams: usize,
    /// RTP datagrams sent, stamps included.
    pub packets: u64,
    /// UDP payload bytes of those.
    pub bytes: u64,
    /// Access units sent, all streams together.
    pub frames: u64,
    /// Datagrams the kernel refused (full send buffer): counted, not retried.
    pub refused: u64,
    /// Wake-ups that found datagrams due; each sent them in one `sendmmsg` (more only
    /// past UIO_MAXIOV datagrams).
    pub ticks: u64,
    /// Wake-ups more than 2 ms late.
    pub late_ticks: u64,
    pub send_calls: u64,
    pub elapsed_s: f64,
    /// CPU time of the publishing thread (user + system).
    pub thread_cpu_s: f64,
}

impl PublishReport {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed_s.max(1e-9) / 1e6
    }

    pub fn packets_per_s(&self) -> f64 {
        self.packets as f64 / self.elapsed_s.max(1e-9)
    }

    pub fn cpu_percent(&self) -> f64 {
        self.thread_cpu_s / self.elapsed_s.max(1e-9) * 100.0
    }
}

/// The publishing thread: started with `start`, it ends by itself after the duration,
/// or when stopped or dropped.
pub struct Publisher {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    /// Taken by `stop`.
    thread: Option<JoinHandle<anyhow::Result<PublishReport>>>,
}

impl Publisher {
    /// Loads the clip and opens the socket (errors come back here), then publishes from a
    /// thread of its own until `args.duration` has passed or `stop` is called.
    pub fn start(args: &PublishArgs) -> anyhow::Result<Publisher> {
        if args.streams == 0 {
            bail!("no streams to publish");
        }
        if args.payload_type > 127 {
            bail!("payload type {} is not from 0 to 127", args.payload_type);
        }
        if !(3..=65_000).contains(&args.max_payload) {
            bail!(
                "a payload of at most {} bytes: not from 3 to 65000",
                args.max_payload
            );
        }
        let destinations = destinations(args.target, args.streams, args.port_step)?;
        let recording = Recording::load(args.clip.as_ref(), args.gop, args.max_payload)?;
        let socket = bind_for(&destinations)?;
        let streams = streams(&recording, args.streams, args.payload_type);
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let duration = args.duration;
        let thread = std::thread::Builder::new().name("publish".into()).spawn({
            let (progress, stop) = (progress.clone(), stop.clone());
            move || {
                let sender = Sender::new(socket, &destinations);
                publish(&recording, streams, sender, duration, &stop, &progress)
            }
        })?;
        Ok(Publisher {
            progress,
            stop,
            thread: Some(thread),
        })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The duration has passed (or sending failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops publishing if it still runs; what was sent.
    pub fn stop(mut self) -> anyhow::Result<PublishReport> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("stop runs once");
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the publishing thread panicked"))?
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Stream i's destination: the target's port + i * step.
fn destinations(target: SocketAddr, streams: usize, step: u16) -> anyhow::Result<Vec<SocketAddr>> {
    (0..streams)
        .map(|i| {
            let port = target.port() as usize + i * step as usize;
            let port = u16::try_from(port)
                .with_context(|| format!("stream {i} would go to port {port}: past 65535"))?;
            Ok(SocketAddr::new(target.ip(), port))
        })
        .collect()
}

fn publish(
    recording: &Recording,
    mut streams: Vec<Stream>,
    mut sender: Sender,
    duration: Duration,
    stop: &AtomicBool,
    progress: &Progress,
) -> anyhow::Result<PublishReport> {
    let cpu_start = procfs::thread_cpu();
    let start = Instant::now();
    let end = start + duration;
    let mut schedule = Schedule::new(start, streams.len());
    let largest_frame = recording.frames.iter().map(|f| f.len()).max().unwrap_or(0);
    // Room for a whole round (one frame of every stream, and its stamp): what a late
    // wake-up may find due. More grows it once.
    let mut batch = Vec::with_capacity(streams.len() * (largest_frame + 1));
    let mut report = PublishReport {
        streams: streams.len(),
        ..PublishReport::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = schedule.next_due();
        if due > now {
            std::thread::sleep((due - now).min(end - now));
            continue;
        }
        let late = now - due > LATE;
        let sent_unix_ns = stamp::unix_ns();
        batch.clear();
        let mut frames = 0;
        while let Some(i) = schedule.pop(now) {
            streams[i].push_frame(recording, sent_unix_ns, &mut batch);
            frames += 1;
        }
        let sent = sender.send(&batch)?;
        report.ticks += 1;
        report.late_ticks += late as u64;
        report.frames += frames;
        report.packets += sent.datagrams;
        report.bytes += sent.bytes;
        report.refused += sent.refused;
        report.send_calls += sent.calls;
        progress
            .packets
            .fetch_add(sent.datagrams, Ordering::Relaxed);
        progress.bytes.fetch_add(sent.bytes, Ordering::Relaxed);
        progress.frames.fetch_add(frames, Ordering::Relaxed);
        progress
            .late_ticks
            .fetch_add(late as u64, Ordering::Relaxed);
    }
    report.elapsed_s = start.elapsed().as_secs_f64();
    report.thread_cpu_s = (procfs::thread_cpu() - cpu_start).as_secs_f64();
    Ok(report)
}

/// `count` streams of `recording`, each with a random SSRC, first sequence number and
/// timestamp (RFC 3550 5.1). Cameras' keyframes fall where they may, not all in one frame
/// interval: each stream starts its loop of the clip further into a GOP, so that their
/// keyframes (and what a server lets go at each) spread evenly over the GOP.
fn streams(recording: &Recording, count: usize, payload_type: u8) -> Vec<Stream> {
    let gop = recording.gop();
    (0..count)
        .map(|i| {
            let (ssrc, seq, ts) = (fastrand::u32(..), fastrand::u16(..), fastrand::u32(..));
            let mut stream = Stream::new(i as u32, payload_type, ssrc, seq, ts);
            stream.first_frame = (i * gop / count) as u64;
            stream
        })
        .collect()
}

/// When each stream sends its frames: stream i of N sends frame f at
/// `anchor + (f + i / N) / fps`, so that N streams do not burst at the same instant.
/// Every deadline is counted from one anchor, so nothing drifts. (Not relay's per-stream
/// `Pacer`: its restart after a stall would bring every stream into one phase.)
#[derive(Debug)]
struct Schedule {
    anchor: Instant,
    streams: u64,
    /// Tick k is stream k % N's next frame.
    next: u64,
    /// Whole frame intervals skipped after stalls.
    skipped: u64,
}

impl Schedule {
    fn new(anchor: Instant, streams: usize) -> Schedule {
        Schedule {
            anchor,
            streams: streams as u64,
            next: 0,
            skipped: 0,
        }
    }

    fn next_due(&self) -> Instant {
        let slot = (self.next + self.skipped * self.streams) as u128;
        let ns = slot * 1_000_000_000 / (FPS as u128 * self.streams as u128);
        self.anchor + Duration::from_nanos(ns as u64)
    }

    /// The stream whose frame is due by `now`, if any.
    fn pop(&mut self, now: Instant) -> Option<usize> {
        let behind = now.checked_duration_since(self.next_due())?;
        let intervals = behind.as_nanos() as u64 / FRAME_NS;
        if intervals >= MAX_CATCH_UP {
            // Whole intervals keep every stream's phase.
            self.skipped += intervals;
        }
        let stream = self.next % self.streams;
        self.next += 1;
        Some(stream as usize)
    }
}

/// One stream's numbering: a prebuilt header with its SSRC, the next sequence number,
/// the access units sent.
#[derive(Debug)]
struct Stream {
    index: u32,
    header: [u8; RTP_HEADER],
    seq: u16,
    first_timestamp: u32,
    /// The clip's frame it sent first.
    first_frame: u64,
    frames_sent: u64,
}

/// One datagram of a batch: the RTP header (for a stamp, the header and the stamp)
/// written for this send, and the clip's payload after it.
#[derive(Debug, Clone, Copy)]
struct Datagram<'a> {
    head: [u8; RTP_HEADER + STAMP_ROOM],
    head_len: usize,
    body: &'a [u8],
    stream: usize,
}

impl Datagram<'_> {
    fn len(&self) -> usize {
        self.head_len + self.body.len()
    }
}

impl Stream {
    fn new(index: u32, payload_type: u8, ssrc: u32, seq: u16, timestamp: u32) -> Stream {
        let mut header = [0; RTP_HEADER];
        header[0] = 0x80; // version 2
        header[1] = payload_type & 0x7f;
        header[8..].copy_from_slice(&ssrc.to_be_bytes());
        Stream {
            index,
            header,
            seq,
            first_timestamp: timestamp,
            first_frame: 0,
            frames_sent: 0,
        }
    }

    /// Appends its next access unit to `batch`, after a stamp saying it was sent at
    /// `sent_unix_ns`.
    fn push_frame<'a>(
        &mut self,
        recording: &'a Recording,
        sent_unix_ns: u64,
        batch: &mut Vec<Datagram<'a>>,
    ) {
        let frames = &recording.frames;
        let at = (self.first_frame + self.frames_sent) % frames.len() as u64;
        let frame = frames[at as usize].clone();
        let timestamp = self
            .first_timestamp
            .wrapping_add((self.frames_sent as u32).wrapping_mul(TICKS_PER_FRAME));
        let mut nal = [0; MAX_NAL_LEN];
        let len = Stamp {
            stream: self.index,
            frame: self.frames_sent,
            sent_unix_ns,
        }
        .write_nal(&mut nal);
        let mut stamp = self.datagram(timestamp, false, &[]);
        stamp.head[RTP_HEADER..][..len].copy_from_slice(&nal[..len]);
        stamp.head_len += len;
        batch.push(stamp);
        let packets = recording.clip.packets();
        let last = frame.end - 1;
        for i in frame {
            batch.push(self.datagram(timestamp, i == last, &packets[i]));
        }
        self.frames_sent += 1;
    }

    fn datagram<'a>(&mut self, timestamp: u32, marker: bool, body: &'a [u8]) -> Datagram<'a> {
        let mut head = [0; RTP_HEADER + STAMP_ROOM];
        head[..RTP_HEADER].copy_from_slice(&self.header);
        head[1] |= (marker as u8) << 7;
        head[2..4].copy_from_slice(&self.seq.to_be_bytes());
        head[4..8].copy_from_slice(&timestamp.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        Datagram {
            head,
            head_len: RTP_HEADER,
            body,
            stream: self.index as usize,
        }
    }
}

/// Sends batches with `sendmmsg` from one unconnected, non-blocking UDP socket, each
/// datagram to its stream's destination. Hand-written over libc: std has no batched
/// send, and the header and payload go out as two iovecs, uncopied.
struct Sender {
    socket: UdpSocket,
    destinations: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    /// Grown to the largest batch, then reused.
    iovs: Vec<[libc::iovec; 2]>,
    msgs: Vec<libc::mmsghdr>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Sent {
    datagrams: u64,
    bytes: u64,
    refused: u64,
    calls: u64,
}

/// A non-blocking UDP socket of the destinations' address family, any port.
fn bind_for(destinations: &[SocketAddr]) -> io::Result<UdpSocket> {
    let any: SocketAddr = match destinations.first() {
        Some(SocketAddr::V6(_)) => "[::]:0".parse().expect("an address"),
        _ => "0.0.0.0:0".parse().expect("an address"),
    };
    let socket = UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl Sender {
    /// Made on the sending thread: its scratch arrays hold raw pointers.
    fn new(socket: UdpSocket, destinations: &[SocketAddr]) -> Sender {
        Sender {
            socket,
            destinations: destinations.iter().map(|&a| sockaddr(a)).collect(),
            iovs: Vec::new(),
            msgs: Vec::new(),
        }
    }

    fn send(&mut self, batch: &[Datagram]) -> io::Result<Sent> {
        let n = batch.len();
        if self.msgs.len() < n {
            // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
            self.iovs.resize(n, unsafe { mem::zeroed() });
            self.msgs.resize(n, unsafe { mem::zeroed() });
        }
        for (j, d) in batch.iter().enumerate() {
            self.iovs[j] = [
                libc::iovec {
                    iov_base: d.head.as_ptr().cast_mut().cast(),
                    iov_len: d.head_len,
                },
                libc::iovec {
                    iov_base: d.body.as_ptr().cast_mut().cast(),
                    iov_len: d.body.len(),
                },
            ];
            let (name, name_len) = &self.destinations[d.stream];
            let h = &mut self.msgs[j].msg_hdr;
            h.msg_name = ptr::from_ref(name).cast_mut().cast();
            h.msg_namelen = *name_len;
            h.msg_iov = self.iovs[j].as_mut_ptr();
            h.msg_iovlen = if d.body.is_empty() { 1 } else { 2 };
        }
        let fd = self.socket.as_raw_fd();
        let mut sent = Sent::default();
        let mut k = 0;
        while k < n {
            let count = (n - k).min(MAX_MMSG);
            // SAFETY: messages k..k+count point into `batch`, `iovs` and `destinations`,
            // which outlive the call; the kernel only reads them (and writes msg_len).
            let r = unsafe {
                libc::sendmmsg(fd, self.msgs[k..].as_mut_ptr(), count as libc::c_uint, 0)
            };
            sent.calls += 1;
            if r > 0 {
                let r = r as usize;
                sent.datagrams += r as u64;
                sent.bytes += batch[k..k + r].iter().map(|d| d.len() as u64).sum::<u64>();
                k += r;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A full buffer: the rest of the batch is dropped, as a live source would.
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    sent.refused += (n - k) as u64;
                    break;
                }
                _ => return Err(e),
            }
        }
        Ok(sent)
    }
}

/// `addr` as sendmmsg takes it, in its own family (the socket is bound to match).
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut storage = relay::io::udp::zeroed_storage();
    let len = relay::io::udp::to_storage(addr, false, &mut storage);
    (storage, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay::ingest::rtp;

    fn demo() -> Recording {
        Recording::load(Some(&ClipSource::Demo), DEFAULT_GOP, 1200).unwrap()
    }

    fn bytes(d: &Datagram) -> Vec<u8> {
        [&d.head[..d.head_len], d.body].concat()
    }

    /// `frames` access units of one stream, as the datagrams it sends.
    fn play(recording: &Recording, stream: &mut Stream, frames: usize) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        for _ in 0..frames {
            stream.push_frame(recording, 42, &mut batch);
        }
        batch.iter().map(bytes).collect()
    }

    #[test]
    fn numbering_is_continuous_across_the_loop_point() {
        let recording = demo();
        // Start near the wrap of both counters.
        let mut stream = Stream::new(3, 96, 0xdead_beef, 65_000, u32::MAX - 10_000);
        let datagrams = play(&recording, &mut stream, recording.frames() + 2);
        let packets: Vec<rtp::RtpPacket> =
            datagrams.iter().map(|d| rtp::parse(d).unwrap()).collect();
        assert!(packets
            .iter()
            .all(|p| p.ssrc == 0xdead_beef && p.payload_type == 96));
        for w in packets.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
            assert!(step == 0 || step == 3000, "timestamp step {step}");
            assert_eq!(step == 3000, w[0].marker, "the marker ends each frame");
        }
        // One loop is every packet of the clip and a stamp per frame; then it starts over.
        let per_loop = recording.packets() + recording.frames();
        let (last, stamp, first_again) = (
            &packets[per_loop - 1],
            &packets[per_loop],
            &packets[per_loop + 1],
        );
        assert!(last.marker);
        assert_eq!(stamp.timestamp, last.timestamp.wrapping_add(3000));
        assert_eq!(first_again.payload, packets[1].payload, "the clip again");
        assert_eq!(
            packets[0].timestamp,
            u32::MAX - 10_000,
            "the first timestamp"
        );
        assert!(datagrams.iter().all(|d| d.len() <= RTP_HEADER + 1200));
    }

    #[test]
    fn every_access_unit_follows_a_stamp_whose_frame_counter_increments() {
        let recording = demo();
        let mut stream = Stream::new(5, 96, 1, 0, 0);
        let frames = recording.frames() + 10;
        let datagrams = play(&recording, &mut stream, frames);
        let mut clip = recording.clip.packets().iter().cycle();
        let mut stamps = 0u64;
        let mut frame_start = true;
        for d in &datagrams {
            let packet = rtp::parse(d).unwrap();
            let stamp = Stamp::from_nal(packet.payload);
            if frame_start {
                let expected = Stamp {
                    stream: 5,
                    frame: stamps,
                    sent_unix_ns: 42,
                };
                assert_eq!(stamp, Some(expected));
                assert!(!packet.marker);
                stamps += 1;
            } else {
                assert_eq!(stamp, None);
                assert_eq!(
                    packet.payload,
                    &clip.next().unwrap()[..],
                    "the clip in order"
                );
            }
            frame_start = packet.marker;
        }
        assert_eq!(stamps, frames as u64);
    }

    #[test]
    fn streams_are_staggered_over_the_frame_interval() {
        let t0 = Instant::now();
        let ns = Duration::from_nanos;
        let mut schedule = Schedule::new(t0, 4);
        assert_eq!(schedule.pop(t0), Some(0));
        assert_eq!(
            schedule.pop(t0),
            None,
            "stream 1 is a quarter interval later"
        );
        assert_eq!(schedule.next_due(), t0 + ns(8_333_333));
        let mut order = Vec::new();
        while let Some(i) = schedule.pop(t0 + ns(40_000_000)) {
            order.push(i);
        }
        assert_eq!(order, [1, 2, 3, 0], "stream 0's second frame at 33.3 ms");

        // No drift: 10 s on a 1 ms clock send exactly 300 frames per stream.
        let mut schedule = Schedule::new(t0, 4);
        let mut frames = [0; 4];
        for ms in 0..10_000 {
            while let Some(i) = schedule.pop(t0 + Duration::from_millis(ms)) {
                frames[i] += 1;
            }
        }
        assert_eq!(frames, [300; 4]);

        // A 1 s stall: what is due within a frame interval goes out, the rest is skipped,
        // and every stream keeps its phase.
        let stalled = t0 + Duration::from_secs(11) + ns(10_000_000);
        let mut caught_up = 0;
        while schedule.pop(stalled).is_some() {
            caught_up += 1;
        }
        assert!(caught_up <= 4, "{caught_up} frames at once");
        let next = schedule.next_due();
        assert!(next > stalled && next - stalled <= ns(FRAME_NS));
        let stream = schedule.next % 4;
        // Where in its frame interval the next tick falls, in billionths of one.
        let phase = ((next - t0).as_nanos() * FPS as u128 % 1_000_000_000) as u64;
        let expected = stream * 1_000_000_000 / 4;
        assert!(
            phase.abs_diff(expected) <= 100,
            "stream {stream} at {phase}"
        );
    }

    /// Needs ffmpeg with libx264 (`cargo xtask setup`), as the default clip does.
    #[test]
    fn the_default_clip_keeps_its_gop_across_the_loop_point() {
        let recording = Recording::load(None, 120, 1200).unwrap();
        assert_eq!(recording.frames(), 360, "12 s: three whole 4 s GOPs");
        let idrs: Vec<usize> = (0..recording.frames())
            .filter(|&f| recording.is_idr(f))
            .collect();
        assert_eq!(idrs, [0, 120, 240]);
    }

    /// Needs ffmpeg with libx264, as above. Streams that all started on a keyframe would
    /// send their keyframes in the same frame interval for as long as they run.
    #[test]
    fn streams_send_their_keyframes_spread_over_the_gop() {
        let recording = Recording::load(None, 60, 1200).unwrap();
        assert_eq!(recording.gop(), 60);
        let streams = streams(&recording, 4, 96);
        let frames = recording.frames() as u64;
        // The frame interval, counted from the start, of each stream's first keyframe.
        let first_keyframes: Vec<u64> = streams
            .iter()
            .map(|s| {
                (0..60)
                    .find(|k| recording.is_idr(((s.first_frame + k) % frames) as usize))
                    .expect("a keyframe in every GOP")
            })
            .collect();
        assert_eq!(first_keyframes, [0, 45, 30, 15]);
    }

    #[test]
    fn sdp_is_what_relay_reads_from_rtp_sdp() {
        let sdp = relay::ingest::sdp::RtpSdp::parse(&sdp(97, 5004)).unwrap();
        let tracks = sdp.tracks();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].payload_type, 97);
        assert_eq!(tracks[0].info.codec, relay::track::Codec::H264);
        assert!(tracks[0].info.fmtp.contains("packetization-mode=1"));
    }

    #[test]
    fn batches_reach_each_stream_destination_whole() {
        let sinks: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &sinks {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
        let recording = demo();
        let mut streams = [Stream::new(0, 96, 1, 0, 0), Stream::new(1, 96, 2, 0, 0)];
        let mut batch = Vec::new();
        for s in &mut streams {
            s.push_frame(&recording, 7, &mut batch);
        }
        let mut sender = Sender::new(bind_for(&addrs).unwrap(), &addrs);
        let sent = sender.send(&batch).unwrap();
        assert_eq!(sent.datagrams, batch.len() as u64);
        assert_eq!(sent.calls, 1);
        assert_eq!(
            sent.bytes,
            batch.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        let mut buf = [0; 2048];
        for d in &batch {
            let n = sinks[d.stream].recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &bytes(d)[..]);
        }
    }

    #[test]
    fn ports_step_from_the_target() {
        let target: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ports: Vec<u16> = destinations(target, 3, 2)
            .unwrap()
            .iter()
            .map(SocketAddr::port)
            .collect();
        assert_eq!(ports, [5000, 5002, 5004]);
        let high: SocketAddr = "127.0.0.1:65534".parse().unwrap();
        assert!(destinations(high, 2, 2).is_err());
    }
}
