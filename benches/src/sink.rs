//! WHEP viewers that sink media cheaply, all driven from one thread with mio.
//!
//! Each sink is a test kit `Client` (str0m on its own UDP socket): str0m offers, runs
//! ICE (it is the controlling agent, the relay is ICE-lite) and DTLS, and keeps sending
//! consent checks. Media never reaches str0m: RTP and RTCP datagrams (RFC 7983: first byte
//! 128-191) are counted by size and dropped undecrypted, so that a hundred sinks cost
//! the load tool little next to the relay they measure. (With a sink program in
//! front, `sink_program`, media does not even reach the socket.) A verifying sink hands
//! media to str0m as well, which decrypts it, and checks every packet (`verify`):
//! continuity, H264 packetization, latency from the publisher's stamps, time to the
//! first whole keyframe.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use relay_testkit::client::{Client, Offer};
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::{Event, IceConnectionState};

use crate::stamp::unix_ns;
use crate::verify::Verifier;

/// Largest datagram counted by size; anything longer lands in the last bucket.
pub const MAX_SIZE: usize = 2048;
/// Socket receive buffer of every sink: a full batch of the baseline (see `baseline`)
/// to one sink fits many times over.
const RECV_BUFFER: usize = 4 << 20;
/// Datagrams taken from one socket before the others get a turn.
const DRAIN_LIMIT: usize = 256;
/// Latencies are counted in buckets of this many microseconds...
pub const LATENCY_BUCKET_US: u64 = 100;
/// ...up to this many buckets (2 s); longer ones land in the last.
const LATENCY_BUCKETS: usize = 20_000;
/// Longest sleep of the driver: how quickly it notices `stop`.
const IDLE: Duration = Duration::from_millis(50);
const WAKER: Token = Token(usize::MAX);

/// What a datagram reaching a sink is, by its first bytes (RFC 7983, RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rtp,
    Rtcp,
    /// STUN, DTLS or anything else: str0m's.
    Other,
}

pub fn classify(data: &[u8]) -> Kind {
    match data {
        [128..=191, 192..=223, ..] => Kind::Rtcp,
        [128..=191, _, ..] => Kind::Rtp,
        _ => Kind::Other,
    }
}

/// Counters of one sink, written by the driver thread.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// str0m reported ICE and DTLS complete.
    pub connected: AtomicBool,
    /// str0m failed, or ICE went disconnected.
    pub failed: AtomicBool,
    pub rtp: AtomicU64,
    pub rtp_bytes: AtomicU64,
    pub rtcp: AtomicU64,
    /// Verifying sinks: RTP packets str0m decrypted.
    pub decrypted: AtomicU64,
    /// Verifying sinks: sequence numbers skipped between decrypted packets (per SSRC).
    pub gaps: AtomicU64,
    /// Verifying sinks: decrypted packets at or behind the highest sequence number seen.
    pub disorder: AtomicU64,
    /// Verifying sinks: packets that are not valid H264 RTP.
    pub malformed: AtomicU64,
    /// Verifying sinks: published frames whose stamps never came.
    pub frames_missing: AtomicU64,
    /// Microseconds from the offer to ICE and DTLS complete; 0 until then.
    pub connected_us: AtomicU64,
    /// Verifying sinks: microseconds from the offer to the first whole keyframe; 0 until then.
    pub first_keyframe_us: AtomicU64,
}

/// Counters of all sinks of one run.
#[derive(Debug)]
pub struct Counters {
    pub sinks: Box<[SinkCounters]>,
    /// RTP datagrams of all sinks, by size (index: bytes).
    pub sizes: Box<[AtomicU64]>,
    /// RTP datagrams of all sinks together.
    pub rtp: AtomicU64,
    /// Verifying sinks: end-to-end latencies of the publisher's stamps, by
    /// `LATENCY_BUCKET_US` buckets.
    pub latency: Box<[AtomicU64]>,
    recording: AtomicBool,
    /// The RTP datagrams sink 0 received while recording, in order.
    pattern: Mutex<Recording>,
}

/// An RTP datagram sink 0 received: when, from the start of the recording, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: Duration,
    pub size: u16,
}

#[derive(Debug)]
struct Recording {
    since: Instant,
    arrivals: Vec<Arrival>,
}

impl Counters {
    fn new(capacity: usize) -> Counters {
        Counters {
            sinks: (0..capacity).map(|_| SinkCounters::default()).collect(),
            sizes: (0..=MAX_SIZE).map(|_| AtomicU64::new(0)).collect(),
            rtp: AtomicU64::new(0),
            latency: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            recording: AtomicBool::new(false),
            pattern: Mutex::new(Recording {
                since: Instant::now(),
                arrivals: Vec::new(),
            }),
        }
    }

    /// Starts (or stops) recording what sink 0 receives.
    pub fn record_pattern(&self, on: bool) {
        if on {
            let mut r = self.pattern.lock().unwrap();
            r.arrivals.clear();
            r.since = Instant::now();
        }
        self.recording.store(on, Ordering::Release);
    }

    /// What sink 0 received while recording, in order of arrival.
    pub fn pattern(&self) -> Vec<Arrival> {
        self.pattern.lock().unwrap().arrivals.clone()
    }

    /// Snapshot of the latency histogram.
    pub fn latency_histogram(&self) -> Vec<u64> {
        self.latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Snapshot of the size histogram.
    pub fn size_histogram(&self) -> Vec<u64> {
        self.sizes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn count(&self, sink: usize, kind: Kind, len: usize) {
        let c = &self.sinks[sink];
        match kind {
            Kind::Rtcp => {
                c.rtcp.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Rtp => {
                c.rtp.fetch_add(1, Ordering::Relaxed);
                c.rtp_bytes.fetch_add(len as u64, Ordering::Relaxed);
                self.sizes[len.min(MAX_SIZE)].fetch_add(1, Ordering::Relaxed);
                self.rtp.fetch_add(1, Ordering::Relaxed);
                if sink == 0 && self.recording.load(Ordering::Relaxed) {
                    let mut r = self.pattern.lock().unwrap();
                    let at = r.since.elapsed();
                    r.arrivals.push(Arrival {
                        at,
                        size: len as u16,
                    });
                }
            }
            Kind::Other => {}
        }
    }
}

/// A viewer that has made its offer and waits for the answer.
pub struct Offering {
    client: Client,
    offer: Offer,
    verify: bool,
    started: Instant,
}

impl Offering {
    /// A receive-only offer for video and audio, as a browser makes, from a new socket
    /// on 127.0.0.1.
    pub fn new() -> io::Result<Offering> {
        Offering::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false)
    }

    /// The same offer from a socket bound to `local`; a `verify`ing sink decrypts its
    /// media and checks its continuity.
    pub fn bind(local: SocketAddr, verify: bool) -> io::Result<Offering> {
        let started = Instant::now();
        let (client, offer) = Client::offer(local, &[MediaKind::Video, MediaKind::Audio])?;
        Ok(Offering {
            client,
            offer,
            verify,
            started,
        })
    }

    /// The SDP offer to POST.
    pub fn sdp(&self) -> &str {
        &self.offer.sdp
    }

    /// Takes the relay's SDP answer; the sink is ready for the driver.
    pub fn accept(mut self, answer: &str) -> anyhow::Result<Sink> {
        self.client.accept(self.offer, answer)?;
        Sink::new(self.client, self.verify, self.started)
    }
}

/// A connected (or connecting) viewer, owned by the driver thread.
pub struct Sink {
    /// Its socket non-blocking, registered with the driver's poll by its descriptor.
    client: Client,
    /// When str0m wants the time next.
    next: Instant,
    /// When the viewer made its offer (or got one): setup times count from here.
    started: Instant,
    /// Verifying sinks only: their checks, and the payload types that are H264.
    verifier: Option<(Verifier, Vec<u8>)>,
}

impl Sink {
    /// A negotiated viewer, ready for the driver; a `verify`ing one decrypts and checks
    /// its media.
    pub fn new(client: Client, verify: bool, started: Instant) -> anyhow::Result<Sink> {
        client.socket.set_nonblocking(true)?;
        set_recv_buffer(&client.socket, RECV_BUFFER);
        let h264 = client
            .rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| p.spec().codec == Codec::H264)
            .map(|p| *p.pt())
            .collect();
        Ok(Sink {
            client,
            next: Instant::now(),
            started,
            verifier: verify.then(|| (Verifier::default(), h264)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.client.local_addr()
    }

    /// Reads what waits on the socket (up to `DRAIN_LIMIT`); true if more may wait.
    fn drain(&mut self, index: usize, counters: &Counters, buf: &mut [u8]) -> bool {
        let mut handled = 0;
        let more = loop {
            if handled == DRAIN_LIMIT {
                break true;
            }
            let (n, from) = match self.client.socket.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                // An ICMP error surfaced on the socket: it is consumed, read on.
                Err(_) => {
                    handled += 1;
                    continue;
                }
            };
            handled += 1;
            let data = &buf[..n];
            let kind = classify(data);
            if kind != Kind::Other {
                counters.count(index, kind, n);
                if self.verifier.is_none() {
                    continue;
                }
            }
            if self.client.receive(from, data).is_err() {
                counters.sinks[index].failed.store(true, Ordering::Relaxed);
            }
            // A verifying sink's str0m has decrypted media to hand over.
            if self.verifier.is_some() {
                self.pump(index, counters);
            }
        };
        self.pump(index, counters);
        more
    }

    fn on_timeout(&mut self, index: usize, counters: &Counters, now: Instant) {
        if self.client.tick(now).is_err() {
            counters.sinks[index].failed.store(true, Ordering::Relaxed);
        }
        self.pump(index, counters);
    }

    /// Sends what str0m has to send and notes its events and when it wants the time.
    fn pump(&mut self, index: usize, counters: &Counters) {
        let c = &counters.sinks[index];
        let (started, verifier) = (self.started, &mut self.verifier);
        let polled = self.client.poll(|event| match event {
            Event::Connected => {
                c.connected_us
                    .store(micros_since(started), Ordering::Relaxed);
                c.connected.store(true, Ordering::Relaxed);
            }
            Event::RtpPacket(p) => {
                let Some((verifier, h264)) = verifier.as_mut() else {
                    return;
                };
                let seen = verifier.on_rtp(
                    *p.header.ssrc,
                    *p.seq_no,
                    p.header.marker,
                    &p.payload,
                    h264.contains(&*p.header.payload_type),
                    unix_ns(),
                );
                c.decrypted.fetch_add(1, Ordering::Relaxed);
                c.gaps.fetch_add(seen.skipped, Ordering::Relaxed);
                c.disorder
                    .fetch_add(u64::from(seen.behind), Ordering::Relaxed);
                c.malformed
                    .fetch_add(u64::from(seen.malformed), Ordering::Relaxed);
                c.frames_missing
                    .fetch_add(seen.frames_missing, Ordering::Relaxed);
                if seen.first_keyframe {
                    c.first_keyframe_us
                        .store(micros_since(started), Ordering::Relaxed);
                }
                if let Some(us) = seen.latency_us {
                    let bucket = (us / LATENCY_BUCKET_US) as usize;
                    counters.latency[bucket.min(LATENCY_BUCKETS - 1)]
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                c.failed.store(true, Ordering::Relaxed)
            }
            _ => {}
        });
        self.next = polled.unwrap_or_else(|_| {
            c.failed.store(true, Ordering::Relaxed);
            // Look again in a while, not in a busy loop.
            Instant::now() + IDLE
        });
    }
}

/// What the driver thread is told.
enum Command {
    /// A new sink: it becomes sink number (sinks added before it).
    Add(Box<Sink>),
    /// Sink number: its socket closes, its counters stay.
    Remove(usize),
}

/// The thread that drives every sink of a run.
pub struct Driver {
    pub counters: Arc<Counters>,
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    /// Starts the driver for up to `capacity` sinks, pinned to `core` if given.
    pub fn start(capacity: usize, core: Option<usize>) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let counters = Arc::new(Counters::new(capacity));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sinks".into())
                .spawn(move || {
                    if let Some(core) = core {
                        crate::procfs::pin_thread(core);
                    }
                    drive(poll, rx, &counters, &stop);
                })?
        };
        Ok(Driver {
            counters,
            commands: tx,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Hands a sink to the driver thread: it is sink number (sinks added before it).
    pub fn add(&self, sink: Sink) {
        self.command(Command::Add(Box::new(sink)));
    }

    /// Closes sink number `index` (a viewer leaving); its counters keep their values.
    pub fn remove(&self, index: usize) {
        self.command(Command::Remove(index));
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Stops the thread; the sinks' sockets close.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.halt();
    }
}

fn drive(
    mut poll: Poll,
    commands: mpsc::Receiver<Command>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    // Removed sinks leave a hole: tokens and counters are sink numbers.
    let mut sinks: Vec<Option<Sink>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; MAX_SIZE + 1];
    let mut ready: Vec<usize> = Vec::new();
    let mut again: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let timeout = if again.is_empty() {
            sinks
                .iter()
                .flatten()
                .map(|s| s.next.saturating_duration_since(now))
                .min()
                .unwrap_or(IDLE)
                .min(IDLE)
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("sinks: poll failed: {e}");
                return;
            }
        }
        ready.append(&mut again);
        for event in &events {
            if event.token() == WAKER {
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Add(sink) => add(&poll, &mut sinks, *sink, counters),
                        Command::Remove(index) => {
                            if let Some(sink) = sinks.get_mut(index).and_then(Option::take) {
                                let fd = sink.client.socket.as_raw_fd();
                                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                            }
                        }
                    }
                }
            } else {
                ready.push(event.token().0);
            }
        }
        for &i in &ready {
            let Some(sink) = &mut sinks[i] else { continue };
            if sink.drain(i, counters, &mut buf) && !again.contains(&i) {
                again.push(i);
            }
        }
        ready.clear();
        let now = Instant::now();
        for (i, sink) in sinks.iter_mut().enumerate() {
            if let Some(sink) = sink.as_mut().filter(|s| s.next <= now) {
                sink.on_timeout(i, counters, now);
            }
        }
    }
}

fn add(poll: &Poll, sinks: &mut Vec<Option<Sink>>, mut sink: Sink, counters: &Counters) {
    let index = sinks.len();
    if index >= counters.sinks.len() {
        return; // more than the run asked for: dropped, socket closed
    }
    let fd = sink.client.socket.as_raw_fd();
    let registered = poll
        .registry()
        .register(&mut SourceFd(&fd), Token(index), Interest::READABLE);
    if registered.is_err() {
        counters.sinks[index].failed.store(true, Ordering::Relaxed);
    }
    sink.pump(index, counters);
    sinks.push(Some(sink));
}

/// Where the viewers of a run stand while they join.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub connected: usize,
    pub receiving: usize,
    pub failed: usize,
}

impl Counters {
    /// Sinks `..n` connected and failed; `receiving` is left to the caller, who knows
    /// where media is counted (sockets, the sink program).
    pub fn readiness(&self, n: usize) -> Readiness {
        let sinks = &self.sinks[..n];
        let count = |f: fn(&SinkCounters) -> bool| sinks.iter().filter(|s| f(s)).count();
        Readiness {
            connected: count(|s| s.connected.load(Ordering::Relaxed)),
            receiving: 0,
            failed: count(|s| s.failed.load(Ordering::Relaxed)),
        }
    }
}

/// Waits until `n` viewers are connected and receiving media, as `read` tells, showing
/// progress under `tag`; fails at the first failed viewer or after `limit`, with
/// `server_log()` in the error.
pub fn wait_until_receiving(
    tag: &str,
    n: usize,
    limit: Duration,
    mut read: impl FnMut() -> anyhow::Result<Readiness>,
    server_log: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let Readiness {
            connected,
            receiving,
            failed,
        } = read()?;
        if connected >= n && receiving >= n {
            return Ok(());
        }
        if failed > 0 || Instant::now() > deadline {
            anyhow::bail!(
                "{tag}: of {n} viewers {connected} connected, {receiving} received media, \
                 {failed} failed; server log:\n{}",
                server_log()
            );
        }
        crate::report::progress(&format!(
            "{tag}: {connected}/{n} connected, {receiving} receiving"
        ));
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// At least 1: 0 means "not yet" in the counters.
fn micros_since(start: Instant) -> u64 {
    (start.elapsed().as_micros() as u64).max(1)
}

/// The value at quantile `q` (0..=1) of a histogram of `bucket`-wide buckets: the upper
/// edge of the bucket it falls in; None if the histogram is empty.
pub fn quantile(histogram: &[u64], bucket: u64, q: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    histogram
        .iter()
        .position(|&n| {
            seen += n;
            seen >= rank
        })
        .map(|i| (i as u64 + 1) * bucket)
}

/// SO_RCVBUFFORCE (root) past net.core.rmem_max, else SO_RCVBUF up to it.
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    let fd = socket.as_raw_fd();
    let v = bytes as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads an int from a pointer valid for the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(&v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7983_demultiplexing() {
        assert_eq!(classify(&[0x80, 96, 0, 1]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 96]), Kind::Rtp, "marker bit set");
        assert_eq!(classify(&[0x80, 200, 0, 6]), Kind::Rtcp, "sender report");
        assert_eq!(classify(&[0x81, 205]), Kind::Rtcp, "NACK");
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), Kind::Other, "STUN request");
        assert_eq!(classify(&[22, 0xfe, 0xfd]), Kind::Other, "DTLS handshake");
        assert_eq!(classify(&[0x80]), Kind::Other, "too short to tell");
        assert_eq!(classify(&[]), Kind::Other);
    }

    #[test]
    fn counts_by_size_and_records_sink_zero() {
        let c = Counters::new(2);
        c.count(0, Kind::Rtp, 1200);
        c.record_pattern(true);
        c.count(0, Kind::Rtp, 1440);
        c.count(1, Kind::Rtp, 1440);
        c.count(0, Kind::Rtp, 300);
        c.count(1, Kind::Rtcp, 80);
        c.record_pattern(false);
        c.count(0, Kind::Rtp, 999);
        let sizes: Vec<u16> = c.pattern().iter().map(|a| a.size).collect();
        assert_eq!(sizes, vec![1440, 300], "sink 0 while recording only");
        assert!(c.pattern()[0].at <= c.pattern()[1].at);
        let h = c.size_histogram();
        assert_eq!((h[1440], h[1200], h[300], h[80]), (2, 1, 1, 0));
        assert_eq!(c.rtp.load(Ordering::Relaxed), 5);
        assert_eq!(c.sinks[1].rtcp.load(Ordering::Relaxed), 1);
        assert_eq!(
            c.sinks[0].rtp_bytes.load(Ordering::Relaxed),
            1200 + 1440 + 300 + 999
        );
    }

    #[test]
    fn quantiles_of_a_histogram() {
        assert_eq!(quantile(&[0, 0], 100, 0.5), None);
        let h = [0, 90, 9, 0, 1]; // 100 values
        assert_eq!(quantile(&h, 100, 0.5), Some(200));
        assert_eq!(quantile(&h, 100, 0.9), Some(200));
        assert_eq!(quantile(&h, 100, 0.99), Some(300));
        assert_eq!(quantile(&h, 100, 1.0), Some(500));
        assert_eq!(quantile(&h, 100, 0.0), Some(200), "the smallest value");
    }

    /// Media reaching a sink is counted without str0m, from any sender.
    #[test]
    fn driver_counts_datagrams_on_real_sockets() {
        let driver = Driver::start(2, None).unwrap();
        let offers = [Offering::new().unwrap(), Offering::new().unwrap()];
        let addrs: Vec<SocketAddr> = offers.iter().map(|o| o.client.local_addr()).collect();
        // No answer is needed to count: register the sinks as they are.
        for o in offers {
            driver.add(Sink::new(o.client, false, o.started).unwrap());
        }
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rtp = vec![0u8; 1000];
        rtp[0] = 0x80;
        for i in 0..300 {
            sender.send_to(&rtp[..500 + i % 2], addrs[i % 2]).unwrap();
        }
        sender
            .send_to(&[0x80, 200, 0, 1, 0, 0, 0, 0], addrs[1])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let c = &driver.counters;
        while c.rtp.load(Ordering::Relaxed) < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.sinks[0].rtp.load(Ordering::Relaxed), 150);
        assert_eq!(c.sinks[1].rtp.load(Ordering::Relaxed), 150);
        assert_eq!(c.sinks[1].rtcp.load(Ordering::Relaxed), 1);
        assert_eq!(c.size_histogram()[500], 150);
        assert_eq!(c.size_histogram()[501], 150);
        // A viewer leaves: its socket closes, the other one still counts.
        driver.remove(1);
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..20 {
            let _ = sender.send_to(&rtp[..500], addrs[i % 2]);
        }
        while c.sinks[0].rtp.load(Ordering::Relaxed) < 160 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.sinks[0].rtp.load(Ordering::Relaxed), 160);
        assert_eq!(c.sinks[1].rtp.load(Ordering::Relaxed), 150, "removed");
        driver.stop();
    }
}
