//! The worker core in virtual time, as str0m's tests drive two peers: real str0m
//! viewers (ICE, DTLS, SRTP, RTCP) trade datagrams in memory with two cores, a source
//! writes a track, and the clock is whatever the test says. Minutes pass in
//! milliseconds, the same way every run.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use str0m::change::SdpAnswer;

use crate::track::history::Retention;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::admission::PendingLimits;
use super::egress::{retransmit_budget, FULL_LAG, REPORT_INTERVAL};
use super::registry::Registry;
use super::{Core, WorkerStats};
use crate::io::memory::MemorySender;
use crate::io::wake::Wakers;
use crate::io::Datagram;
use crate::paths::{PathState, ServedPath};
use crate::session::consent::CONSENT_TIMEOUT;
use crate::session::{Session, SessionConfig};
use crate::track::{h264, h265, keyframes, Codec, SourcePacket, Track, TrackInfo, TrackWriter};

const RELAY: &str = "10.1.0.1:8189";
const FRAME: Duration = Duration::from_micros(33_333);
const WALL_START: Duration = Duration::from_secs(1_800_000_000);
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);

/// A 30 fps H264 source: every `gop` frames a keyframe (SPS, PPS, IDR), the rest
/// delta frames, `packets` packets each.
struct Source {
    writer: TrackWriter,
    frame: u64,
    seq: u16,
    next: Instant,
    gop: u64,
    packets: usize,
    /// Each slice payload padded to this many bytes (at least 4).
    size: usize,
    /// Packets of the stream's start the track never gets (a camera joined mid-unit).
    unseen: usize,
}

impl Source {
    fn due(&mut self, now: Instant) {
        while self.next <= now {
            let keyframe = self.frame.is_multiple_of(self.gop);
            let mut nals: Vec<Vec<u8>> = Vec::new();
            if keyframe {
                nals.push(vec![0x67, 0x42, 0xe0, 0x1f]);
                nals.push(vec![0x68, 0xce, 0x3c, 0x80]);
            }
            let kind = if keyframe { 0x65 } else { 0x41 };
            for i in 0..self.packets {
                // The first slice opens the picture (first_mb_in_slice 0: its top bit).
                let slice = if i == 0 { 0x80 } else { i as u8 };
                let mut nal = vec![kind, slice, (self.frame >> 8) as u8, self.frame as u8];
                nal.resize(self.size.max(4), 0);
                nals.push(nal);
            }
            let last = nals.len() - 1;
            for (i, nal) in nals.into_iter().enumerate() {
                if self.unseen > 0 {
                    self.unseen -= 1;
                    self.seq = self.seq.wrapping_add(1);
                    continue;
                }
                self.writer.push(SourcePacket {
                    ssrc: 42,
                    seq: self.seq,
                    timestamp: (self.frame * 3000) as u32,
                    marker: i == last,
                    payload: &nal,
                    arrival: self.next,
                });
                self.seq = self.seq.wrapping_add(1);
            }
            self.frame += 1;
            self.next += FRAME;
        }
    }
}

/// A str0m peer on its own address: a viewer, or a publisher when it has `frames`.
struct Viewer {
    rtc: Rtc,
    /// Its one video m-line.
    mid: Mid,
    /// A publisher's H264 frames, sent through str0m once connected.
    frames: Option<Frames>,
    /// PLI/FIR that reached it (a publisher).
    keyframe_requests: usize,
    addr: SocketAddr,
    /// The worker the kernel hands this viewer's datagrams to (SO_REUSEPORT picks by
    /// address; a test may move it, as a second candidate pair would).
    worker: usize,
    /// The relay's ICE ufrag for this viewer's session.
    relay_ufrag: String,
    connected: bool,
    /// Media received, in order: (extended sequence number, RTP timestamp, payload).
    got: Vec<(u64, u32, Vec<u8>)>,
    /// When each of its sender reports arrived; the newest one str0m has read, and
    /// when it arrived.
    reports: Vec<Instant>,
    last_report: Option<(SenderInfo, Instant)>,
    /// When it last sent a connectivity check.
    last_check: Instant,
    /// Decides, by RTP sequence number, which media datagrams are lost on the way.
    lose: Box<dyn FnMut(u16) -> bool>,
    /// Sends nothing any more (gone without a word).
    silent: bool,
    /// When its str0m wants the time again.
    timeout: Instant,
    /// Datagrams it sent while receiving, for the relay.
    pending: Vec<Vec<u8>>,
    /// Datagrams that reached it.
    received: usize,
}

impl Viewer {
    fn new(
        rtc: Rtc,
        mid: Mid,
        addr: SocketAddr,
        worker: usize,
        relay_ufrag: String,
        now: Instant,
    ) -> Viewer {
        Viewer {
            rtc,
            mid,
            frames: None,
            keyframe_requests: 0,
            addr,
            worker,
            relay_ufrag,
            connected: false,
            got: Vec::new(),
            reports: Vec::new(),
            last_report: None,
            last_check: now,
            lose: Box::new(|_| false),
            silent: false,
            timeout: now,
            pending: Vec::new(),
            received: 0,
        }
    }

    /// A datagram from the relay, unless it is media the network loses.
    fn receive(&mut self, now: Instant, data: &[u8]) {
        let relay: SocketAddr = RELAY.parse().unwrap();
        self.received += 1;
        let media = (128..=191).contains(&data[0]) && data.len() > 12;
        if media && data[1] == 200 {
            self.reports.push(now);
        } else if media && (self.lose)(u16::from_be_bytes([data[2], data[3]])) {
            return;
        }
        let r = Receive::new(Protocol::Udp, relay, self.addr, data).unwrap();
        self.rtc.handle_input(Input::Receive(now, r)).unwrap();
        // str0m wants its output taken after every input.
        let sent = self.drain();
        self.pending = sent;
    }

    /// Everything str0m has to say; returns the datagrams it sends (none if silent).
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = std::mem::take(&mut self.pending);
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    if !self.silent {
                        out.push(t.contents.to_vec());
                    }
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(Event::RtpPacket(p)) => {
                    if let Some(info) = p.last_sender_info {
                        if self.last_report.is_none_or(|(last, _)| last != info) {
                            let at = *self.reports.last().expect("a report arrived");
                            self.last_report = Some((info, at));
                        }
                    }
                    self.got
                        .push((*p.seq_no, p.header.timestamp, p.payload.to_vec()));
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    self.timeout = t;
                    return out;
                }
            }
        }
    }
}

/// A publisher's 30 fps video (a keyframe every 30 frames), as str0m sends it.
struct Frames {
    codec: Codec,
    pt: u8,
    seq: u64,
    frame: u64,
    next: Instant,
}

/// One frame's RTP payloads: H264 as single NAL units (SPS, PPS, IDR for a keyframe),
/// the others one packet with the payload descriptor that marks a keyframe (or not).
fn frame_payloads(codec: Codec, keyframe: bool, n: u8) -> Vec<Vec<u8>> {
    match (codec, keyframe) {
        (Codec::H264, true) => vec![
            vec![0x67, 0x42, 0xe0, 0x1f],
            vec![0x68, 0xce, 0x3c, 0x80],
            vec![0x65, 0x88, n],
        ],
        (Codec::H264, false) => vec![vec![0x41, 0x9a, n]],
        // Two-byte NAL headers: VPS, SPS, PPS, IDR_W_RADL; TRAIL_R between keyframes.
        (Codec::H265, true) => vec![
            vec![0x40, 0x01, 0x0c],
            vec![0x42, 0x01, 0x01],
            vec![0x44, 0x01, 0xc1],
            // first_slice_segment_in_pic_flag set.
            vec![0x26, 0x01, 0x80 | n],
        ],
        (Codec::H265, false) => vec![vec![0x02, 0x01, n]],
        // S, partition 0; the frame header's P bit clear on key frames.
        (Codec::Vp8, key) => vec![vec![0x10, 0x50 | !key as u8, n]],
        // B and E; P (inter-predicted) on delta frames.
        (Codec::Vp9, key) => vec![vec![0x0c | (!key as u8) << 6, n]],
        // One OBU (W=1); N on the first packet of a coded video sequence.
        (Codec::Av1, key) => vec![vec![0x10 | (key as u8) << 3, 0x32, n]],
        (other, _) => panic!("no test frames for {other:?}"),
    }
}

impl Viewer {
    /// A publisher's frames due by `now`, written to its str0m.
    fn send_due(&mut self, now: Instant) {
        let Some(f) = self.frames.as_mut().filter(|_| self.connected) else {
            return;
        };
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx_by_mid(self.mid, None).expect("a send stream");
        while f.next <= now {
            let payloads = frame_payloads(f.codec, f.frame % 30 == 0, f.frame as u8);
            let last = payloads.len() - 1;
            for (i, nal) in payloads.into_iter().enumerate() {
                f.seq += 1;
                let time = (f.frame * 3000) as u32;
                let rtp = RtpWrite::new(f.pt.into(), f.seq.into(), time, f.next, nal);
                stream.write_rtp(rtp.marker(i == last));
            }
            f.frame += 1;
            f.next += FRAME;
        }
    }

    /// Asks the relay for a keyframe on its video m-line (a viewer).
    fn request_keyframe(&mut self) {
        let mut api = self.rtc.direct_api();
        let stream = api
            .stream_rx_by_mid(self.mid, None)
            .expect("receiving video");
        stream.request_keyframe(KeyframeRequestKind::Pli);
    }
}

struct Net {
    now: Instant,
    start: Instant,
    cores: Vec<Core<MemorySender>>,
    stats: Vec<Arc<WorkerStats>>,
    registry: Arc<Registry>,
    path: Arc<ServedPath>,
    /// Writes the track directly; None when a publisher's session feeds it.
    source: Option<Source>,
    viewers: Vec<Viewer>,
}

impl Net {
    /// Two workers, a path with one H264 track fed by a source `packets` per frame.
    fn new(gop: u64, packets: usize) -> Net {
        Net::keeping(gop, packets, Retention::default())
    }

    /// As `new`, the track keeping what `retention` says.
    fn keeping(gop: u64, packets: usize, retention: Retention) -> Net {
        let start = Instant::now();
        let (track, writer) = Track::new(
            TrackInfo {
                codec: Codec::H264,
                fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
            },
            retention,
        );
        let wakers = Arc::new(Wakers::new(2).unwrap());
        let registry = Arc::new(Registry::new(wakers, PendingLimits::default()));
        let wall = SystemTime::UNIX_EPOCH + WALL_START;
        let (cores, stats) = Core::in_memory(2, &registry, start, wall);
        Net {
            now: start,
            start,
            cores,
            stats,
            registry,
            path: Arc::new(ServedPath::ready("cam", 0, vec![track])),
            source: Some(Source {
                writer,
                frame: 0,
                seq: 1000,
                next: start,
                gop,
                packets,
                size: 4,
                unseen: 0,
            }),
            viewers: Vec::new(),
        }
    }

    /// Two workers and a path waiting for a publisher.
    fn for_publisher() -> Net {
        let mut net = Net::new(30, 1);
        net.source = None;
        net.path = Arc::new(ServedPath::for_publisher("cam", 0, true));
        net
    }

    fn session_config() -> SessionConfig {
        SessionConfig {
            candidates: vec![RELAY.parse().unwrap()],
            mtu: 1200,
            handshake_timeout: Duration::from_secs(10),
            allow_legacy_srtp: false,
            keyframe_request_interval: KEYFRAME_INTERVAL,
        }
    }

    /// A str0m publisher of H264 over WHIP (as `server::Control` takes one), its
    /// datagrams going to `worker`. Returns its index among the peers.
    fn publish(&mut self, worker: usize) -> usize {
        self.publish_video(worker, Codec::H264)
    }

    /// A str0m publisher of `codec` (H264, H265, VP8, VP9 or AV1) over WHIP.
    fn publish_video(&mut self, worker: usize, codec: Codec) -> usize {
        let n = self.viewers.len();
        let addr: SocketAddr = format!("10.3.0.{}:{}", n + 1, 6000 + n).parse().unwrap();
        let builder = Rtc::builder().set_rtp_mode(true).clear_codecs();
        let mut rtc = match codec {
            Codec::H264 => builder.enable_h264(true),
            Codec::H265 => builder.enable_h265(true),
            Codec::Vp8 => builder.enable_vp8(true),
            Codec::Vp9 => builder.enable_vp9(true),
            Codec::Av1 => builder.enable_av1(true),
            other => panic!("no test publisher for {other:?}"),
        }
        .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (mut session, answer) =
            Session::publisher(self.now, &offer.to_sdp_string(), &Net::session_config()).unwrap();
        let id = format!("publisher-{n}");
        self.path
            .claim_publisher(&id, Duration::ZERO, |_| panic!("nobody to replace"))
            .unwrap();
        let writers = self.path.take_writers(&session.published_tracks());
        let tracks: Vec<_> = writers.iter().map(|w| w.track().clone()).collect();
        session.start_publishing(writers);
        self.path.set_state(PathState::ready(tracks));
        let relay_ufrag = session.ufrag().to_string();
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let name = format!(" {}/", format!("{codec:?}").to_uppercase());
        let pt: u8 = answer
            .lines()
            .find_map(|l| {
                l.strip_prefix("a=rtpmap:")?
                    .split_once(&name)?
                    .0
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{codec:?} in the answer: {answer}"));
        let place = self.registry.admit(addr.ip(), self.now).unwrap();
        place.park(id, self.path.clone(), session, String::new());
        self.viewers.push(Viewer {
            frames: Some(Frames {
                codec,
                pt,
                seq: 0,
                frame: 0,
                next: self.now,
            }),
            ..Viewer::new(rtc, mid, addr, worker, relay_ufrag, self.now)
        });
        n
    }

    /// A viewer on its own address answered over WHEP (as `server::Control` does),
    /// its datagrams going to `worker`. Returns its index.
    fn join(&mut self, worker: usize) -> usize {
        let n = self.viewers.len();
        let addr: SocketAddr = format!("10.2.0.{}:{}", n + 1, 5000 + n).parse().unwrap();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (session, answer) = Session::viewer(
            self.now,
            &offer.to_sdp_string(),
            &self.path.tracks().unwrap(),
            &Net::session_config(),
        )
        .unwrap();
        let relay_ufrag = session.ufrag().to_string();
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        assert!(self.path.add_reader());
        let place = self.registry.admit(addr.ip(), self.now).unwrap();
        place.park(
            format!("viewer-{n}"),
            self.path.clone(),
            session,
            String::new(),
        );
        self.viewers
            .push(Viewer::new(rtc, mid, addr, worker, relay_ufrag, self.now));
        n
    }

    /// Runs everything until `d` from now, event by event: the source's frames, the
    /// viewers' and the cores' timers, and every datagram in between.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            if let Some(source) = &mut self.source {
                source.due(self.now);
            }
            for v in &mut self.viewers {
                v.send_due(self.now);
            }
            self.exchange();
            let frames = self.viewers.iter().filter_map(|v| v.frames.as_ref());
            let next = self
                .viewers
                .iter()
                .map(|v| v.timeout)
                .chain(self.cores.iter().map(|c| c.next_deadline()))
                .chain(self.source.as_ref().map(|s| s.next))
                .chain(frames.map(|f| f.next))
                .chain([end])
                .min()
                .unwrap()
                .max(self.now);
            if self.now >= end {
                return;
            }
            // A timer already due (str0m asks for "now") still moves time on a little.
            self.now = if next == self.now {
                self.now + Duration::from_millis(1)
            } else {
                next
            }
            .min(end);
            for v in &mut self.viewers {
                v.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
        }
    }

    /// Datagrams back and forth until nobody has anything more to send, and every
    /// fan-out is done.
    fn exchange(&mut self) {
        let mut moved = true;
        while moved {
            moved = self.send_to_workers(None) > 0;
            for worker in 0..self.cores.len() {
                let turn = self.end_turn(worker);
                moved |= turn.behind || turn.datagrams > 0;
            }
        }
    }

    /// One turn of `worker`, as its thread takes it: the datagrams its viewers have
    /// for it, then the end of its turn.
    fn turn(&mut self, worker: usize) -> Turn {
        let datagrams = self.send_to_workers(Some(worker));
        let turn = self.end_turn(worker);
        Turn {
            datagrams: datagrams + turn.datagrams,
            ..turn
        }
    }

    /// What the viewers have to send, to their workers (or to `only` this one's);
    /// returns how many datagrams.
    fn send_to_workers(&mut self, only: Option<usize>) -> usize {
        let relay: SocketAddr = RELAY.parse().unwrap();
        let mut n = 0;
        for v in &mut self.viewers {
            if only.is_some_and(|w| w != v.worker) {
                continue;
            }
            for data in v.drain() {
                n += 1;
                if data[0] <= 3 {
                    v.last_check = self.now;
                }
                let d = Datagram {
                    source: v.addr,
                    destination: relay,
                    data: &data,
                };
                self.cores[v.worker].on_datagram(self.now, d);
            }
        }
        n
    }

    /// The commands `worker` has, then the end of its turn: what it sent reaches the
    /// viewers.
    fn end_turn(&mut self, worker: usize) -> Turn {
        let relay: SocketAddr = RELAY.parse().unwrap();
        let core = &mut self.cores[worker];
        core.on_commands();
        let mut turn = Turn {
            behind: core.finish_turn(self.now),
            ..Turn::default()
        };
        for sent in core.sender().sent.drain(..) {
            turn.datagrams += 1;
            assert_eq!(sent.source, relay, "the relay answers from its address");
            let Some(v) = self.viewers.iter_mut().find(|v| v.addr == sent.destination) else {
                panic!("sent to {}, no viewer's address", sent.destination);
            };
            v.receive(self.now, &sent.data);
        }
        turn
    }

    fn sessions(&self, worker: usize) -> u64 {
        self.stats[worker].sessions.load(Ordering::Relaxed)
    }

    fn count(&self, counter: fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.stats
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// What one turn of a worker did.
#[derive(Debug, Default)]
struct Turn {
    /// Its fan-out stopped short of its budget.
    behind: bool,
    /// Datagrams in and out.
    datagrams: usize,
}

/// The viewer got every media packet from its first on, once each, in order.
fn assert_continuous(v: &Viewer) {
    assert!(!v.got.is_empty(), "the viewer got no media");
    let seqs: BTreeSet<u64> = v.got.iter().map(|(s, ..)| *s).collect();
    let (first, last) = (*seqs.first().unwrap(), *seqs.last().unwrap());
    assert_eq!(seqs.len() as u64, last - first + 1, "a gap in the media");
}

#[test]
fn a_session_is_claimed_by_the_worker_of_its_first_valid_check() {
    let mut net = Net::new(30, 2);
    let v = net.join(1);
    // A stranger's check naming the session's ufrag, signed without its password,
    // reaches worker 0 first: it claims nothing.
    let username = format!("{}:x", net.viewers[v].relay_ufrag);
    let forged = crate::session::ice::tests::check(&username, "not-the-password-of-22c", true);
    let stranger = Datagram {
        source: "10.9.9.9:9".parse().unwrap(),
        destination: RELAY.parse().unwrap(),
        data: &forged,
    };
    net.cores[0].on_datagram(net.now, stranger);
    assert_eq!(net.stats[0].unauthenticated.load(Ordering::Relaxed), 1);
    net.run_for(Duration::from_secs(3));
    assert!(net.viewers[v].connected);
    assert_eq!((net.sessions(0), net.sessions(1)), (0, 1));
    assert!(
        net.viewers[v].got.len() > 100,
        "{} packets",
        net.viewers[v].got.len()
    );
    assert_continuous(&net.viewers[v]);
    assert_eq!(net.count(|s| &s.forwarded), 0);
}

#[test]
fn an_address_that_moves_to_the_other_worker_is_forwarded_to_the_owner() {
    let mut net = Net::new(30, 2);
    let v = net.join(0);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.sessions(0), 1);
    // From now on the kernel hands this viewer's datagrams to worker 1.
    net.viewers[v].worker = 1;
    let before = net.viewers[v].got.len();
    // Minutes: consent checks and receiver reports go through worker 1 to worker 0.
    net.run_for(Duration::from_secs(120));
    assert_eq!((net.sessions(0), net.sessions(1)), (1, 0));
    assert!(net.stats[1].forwarded.load(Ordering::Relaxed) > 20);
    assert!(net.viewers[v].got.len() > before + 120 * 50);
    assert_continuous(&net.viewers[v]);
}

#[test]
fn lost_packets_are_resent_within_the_budget_and_counted_past_it() {
    // 10 packets a frame: 300 a second.
    let mut net = Net::new(30, 10);
    let light = net.join(0);
    let heavy = net.join(0);
    // Light: one packet in 20 lost once. Heavy: every other one, well over the budget.
    let mut lost = BTreeSet::new();
    net.viewers[light].lose = Box::new(move |seq| seq % 20 == 7 && lost.insert(seq));
    let mut lost = BTreeSet::new();
    net.viewers[heavy].lose = Box::new(move |seq| seq % 2 == 0 && lost.insert(seq));
    net.run_for(Duration::from_secs(10));
    // Resends on RTX have numbers of their own, which the network may lose too: the
    // last ones are answered with nothing lost any more.
    for v in [light, heavy] {
        net.viewers[v].lose = Box::new(|_| false);
    }
    net.run_for(Duration::from_secs(1));
    assert!(net.count(|s| &s.nacks) > 0);
    // The light one lost nothing to the heavy one's abuse: every loss recovered.
    assert_continuous(&net.viewers[light]);
    assert!(net.viewers[light].got.len() > 2000);
    let (retransmitted, limited) = (
        net.count(|s| &s.retransmitted),
        net.count(|s| &s.retransmit_limited),
    );
    assert!(limited > 0, "the heavy viewer's NACKs went past its budget");
    // Each viewer is held to its budget per report interval.
    let intervals = 11 * Duration::from_secs(1).as_millis() / REPORT_INTERVAL.as_millis() + 1;
    let budget = u64::from(retransmit_budget(REPORT_INTERVAL));
    assert!(
        retransmitted <= 2 * budget * intervals as u64,
        "{retransmitted} resent in {intervals} intervals"
    );
    // str0m offers RTX, as browsers do: every resend went on the RTX stream.
    assert_eq!(net.count(|s| &s.rtx_packets), retransmitted);
    assert_eq!(
        net.count(|s| &s.rtx_bytes),
        net.count(|s| &s.retransmitted_bytes)
    );
}

#[test]
fn report_blocks_give_each_stream_a_round_trip_and_the_path_its_histograms() {
    let mut net = Net::new(30, 2);
    let v = net.join(1);
    net.run_for(Duration::from_secs(10));
    assert!(!net.viewers[v].got.is_empty());
    let blocks = net.count(|s| &s.report_blocks);
    assert!(blocks >= 5, "{blocks} report blocks");
    assert_eq!(
        net.count(|s| &s.report_blocks_dropped),
        0,
        "every block named an SR we sent"
    );
    // Datagrams cross in no time here: the round trip is what the viewer's delay
    // since our SR cancels exactly, to the 1/65536 s of the fields.
    let rtt = &net.path.reception.rtt;
    let (count, sum) = rtt.totals();
    assert!(count >= 3, "{count} round trips");
    assert!(
        sum < count as f64 * 2.0 / 65536.0,
        "round trips sum to {sum} s"
    );
    let (lost, _) = net.path.reception.fraction_lost.totals();
    assert_eq!(lost, blocks, "every block is a loss observation");
}

#[test]
fn a_viewer_that_goes_silent_is_dropped_once_consent_lapses() {
    let mut net = Net::new(30, 2);
    let quiet = net.join(0);
    let other = net.join(0);
    // Long enough for the sessions to drop str0m and answer consent themselves.
    net.run_for(Duration::from_secs(15));
    assert_eq!(net.sessions(0), 2);
    net.viewers[quiet].silent = true;
    // Consent lapses 20 s after its last check (the session's timers are on a 100 ms
    // grid): not a moment before.
    let lapse = net.viewers[quiet].last_check + CONSENT_TIMEOUT;
    net.run_for(lapse - net.now - Duration::from_millis(1));
    assert_eq!(net.sessions(0), 2, "consent has not lapsed yet");
    net.run_for(Duration::from_millis(101));
    assert_eq!(net.sessions(0), 1, "the silent viewer's consent lapsed");
    assert_eq!(net.path.readers(), 1, "its place is free");
    // Nothing more is sent to it; the other goes on for a quarter of an hour.
    let received = net.viewers[quiet].received;
    net.run_for(Duration::from_secs(900));
    assert_eq!(net.viewers[quiet].received, received);
    assert_eq!(net.sessions(0), 1);
    assert!(net.viewers[other].got.len() > 900 * 60);
    assert_continuous(&net.viewers[other]);
}

#[test]
fn sender_reports_come_every_interval_with_a_true_clock_mapping() {
    let mut net = Net::new(30, 2);
    let v = net.join(1);
    net.run_for(Duration::from_secs(20));
    let viewer = &net.viewers[v];
    assert!(
        viewer.reports.len() >= 15,
        "{} reports",
        viewer.reports.len()
    );
    for pair in viewer.reports.windows(2) {
        assert_eq!(pair[1] - pair[0], REPORT_INTERVAL);
    }
    // The report's NTP time is its send time on the wall clock; its RTP time is the
    // media time then: a frame every 3000 ticks of 90 kHz, the newest packet's own.
    let (report, at) = viewer
        .last_report
        .expect("a packet after a report carries it");
    let wall = SystemTime::UNIX_EPOCH + WALL_START + (at - net.start);
    let ntp_error = report
        .ntp_time
        .duration_since(wall)
        .unwrap_or_else(|e| e.duration());
    assert!(ntp_error < Duration::from_micros(1), "{ntp_error:?}");
    let sent = net.count(|s| &s.rtcp_out);
    assert_eq!(
        sent,
        viewer.reports.len() as u64,
        "every report sent arrived"
    );
    // The newest frame sent by then is frame k, at start + k frames with RTP time
    // 3000 k (plus the viewer's random offset, which any packet shows); the report
    // adds the time since, at 90 kHz.
    let (_, ts, payload) = viewer.got.last().unwrap();
    let frame = u32::from(u16::from_be_bytes([payload[2], payload[3]]));
    let offset = ts.wrapping_sub(3000 * frame);
    let k = ((at - net.start).as_nanos() / FRAME.as_nanos()) as u32;
    let since = (at - net.start) - FRAME * k;
    let expected = offset
        .wrapping_add(3000 * k)
        .wrapping_add((since.as_secs_f64() * 90_000.0) as u32);
    let rtp = report.rtp_time.numer() as u32;
    assert!(
        rtp.wrapping_sub(expected).min(expected.wrapping_sub(rtp)) <= 1,
        "the report says RTP time {rtp}, the media clock {expected}"
    );
}

/// The source frame a slice payload of `Source` carries; None for parameter sets.
fn frame_of(payload: &[u8]) -> Option<u64> {
    matches!(payload[0] & 0x1f, 1 | 5).then(|| u64::from(payload[2]) << 8 | u64::from(payload[3]))
}

#[test]
fn without_the_keyframe_cache_a_late_viewer_starts_on_the_next_keyframe() {
    // A keyframe every 2 s; the viewer joins 0.5 s into a GOP.
    let no_cache = Retention {
        keyframe_cache: false,
        ..Retention::default()
    };
    let mut net = Net::keeping(60, 3, no_cache);
    let early = net.join(0);
    net.run_for(Duration::from_millis(2500));
    let late = net.join(1);
    net.run_for(Duration::from_secs(4));
    let got = &net.viewers[late].got;
    // Parameter sets, then the IDR: nothing of the GOP it joined in.
    let kinds: Vec<u8> = got.iter().take(5).map(|(.., p)| p[0] & 0x1f).collect();
    assert_eq!(kinds, [7, 8, 5, 5, 5], "{kinds:?}");
    assert_eq!(
        frame_of(&got[2].2),
        Some(120),
        "the keyframe after it joined"
    );
    assert_continuous(&net.viewers[late]);
    assert_continuous(&net.viewers[early]);
    assert_eq!((net.sessions(0), net.sessions(1)), (1, 1));
    assert_eq!(net.count(|s| &s.instant_starts), 0);
}

#[test]
fn with_the_keyframe_cache_a_late_viewer_starts_at_once_on_the_gop_paced_then_live() {
    // A 4 s GOP of 3 kB frames (~90 kB/s); the viewer joins 3.5 s into it.
    let mut net = Net::new(120, 3);
    net.source.as_mut().unwrap().size = 1000;
    let early = net.join(0);
    net.run_for(Duration::from_millis(3500));
    let late = net.join(1);
    net.run_for(Duration::from_millis(100));
    let got = &net.viewers[late].got;
    let kinds: Vec<u8> = got.iter().take(5).map(|(.., p)| p[0] & 0x1f).collect();
    assert_eq!(kinds, [7, 8, 5, 5, 5], "{kinds:?}");
    assert_eq!(
        frame_of(&got[2].2),
        Some(0),
        "the GOP it joined in, from its keyframe"
    );
    // Paced: at 4x the stream's rate, 0.1 s is some 36 kB of the GOP's 315 kB.
    let frames: BTreeSet<u64> = got.iter().filter_map(|(.., p)| frame_of(p)).collect();
    assert!(
        (3..30).contains(&frames.len()),
        "{} frames in 100 ms",
        frames.len()
    );
    // 315 kB at 360 kB/s while the stream goes on at 90 kB/s: live within ~1.2 s.
    net.run_for(Duration::from_millis(1500));
    let newest = |v: &Viewer| v.got.iter().filter_map(|(.., p)| frame_of(p)).max();
    assert_eq!(
        newest(&net.viewers[late]),
        newest(&net.viewers[early]),
        "live"
    );
    assert_continuous(&net.viewers[late]);
    assert_continuous(&net.viewers[early]);
    assert_eq!(net.stats[1].instant_starts.load(Ordering::Relaxed), 1);
    assert_eq!(net.count(|s| &s.skipped_to_keyframe), 0);
}

/// A track that began after its first unit's SPS: a viewer starting on that unit gets
/// the parameter sets first (in one aggregate, numbered just before it), then the unit
/// as it came, with no gap.
#[test]
fn a_viewer_starting_on_a_unit_joined_after_its_sps_gets_the_sets_first() {
    let mut net = Net::new(60, 2);
    let source = net.source.as_mut().unwrap();
    source.unseen = 1;
    source
        .writer
        .set_parameter_sets(crate::track::ParameterSets {
            vps: None,
            sps: Bytes::from_static(&[0x67, 0x42, 0xe0, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        });
    net.run_for(Duration::from_millis(500));
    let late = net.join(1);
    net.run_for(Duration::from_millis(500));
    let got = &net.viewers[late].got;
    let kinds: Vec<u8> = got.iter().take(5).map(|(.., p)| p[0] & 0x1f).collect();
    assert_eq!(kinds, [24, 8, 5, 5, 1], "{kinds:?}");
    let sets = h264::summarize(&Bytes::copy_from_slice(&got[0].2));
    assert!(sets.sps.is_some() && sets.pps.is_some(), "{sets:?}");
    assert_eq!(frame_of(&got[2].2), Some(0), "the unit it joined in");
    assert_continuous(&net.viewers[late]);
}

#[test]
fn a_publishers_packets_reach_viewers_on_both_workers_and_its_end_frees_the_path() {
    let mut net = Net::for_publisher();
    let publisher = net.publish(0);
    net.run_for(Duration::from_secs(1));
    assert!(
        net.viewers[publisher].connected,
        "ICE and DTLS with the publisher"
    );
    let (near, far) = (net.join(0), net.join(1));
    net.run_for(Duration::from_secs(3));
    for v in [near, far] {
        assert!(net.viewers[v].connected);
        assert!(
            net.viewers[v].got.len() > 60,
            "{} frames",
            net.viewers[v].got.len()
        );
        assert_continuous(&net.viewers[v]);
        let first = &net.viewers[v].got[0].2;
        assert_eq!(
            first[0] & 0x1f,
            7,
            "a viewer starts on a keyframe (its SPS first)"
        );
    }
    let track = net.path.tracks().unwrap()[0].clone();
    assert_eq!(track.info.codec, Codec::H264);

    net.registry.close("cam", "publisher-0");
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.path.state(), PathState::WaitingForPublisher);
    let got = net.viewers[far].got.len();
    // The next publisher with the same codec writes the same track: viewers go on.
    let next = net.publish(1);
    net.run_for(Duration::from_secs(2));
    assert!(net.viewers[next].connected);
    assert!(Arc::ptr_eq(&net.path.tracks().unwrap()[0], &track));
    assert!(net.viewers[far].got.len() > got + 30, "the viewer goes on");
    assert_continuous(&net.viewers[far]);
}

#[test]
fn h265_vp8_vp9_and_av1_publishers_reach_viewers_who_start_on_a_keyframe() {
    type StartsKeyframe = fn(&[u8]) -> bool;
    // H265's keyframe opens with its parameter sets (VPS first).
    let h265: StartsKeyframe = |p| h265::summarize(&Bytes::copy_from_slice(p)).vps.is_some();
    let codecs: [(Codec, StartsKeyframe); 4] = [
        (Codec::H265, h265),
        (Codec::Vp8, keyframes::vp8),
        (Codec::Vp9, keyframes::vp9),
        (Codec::Av1, keyframes::av1),
    ];
    for (codec, starts_keyframe) in codecs {
        let mut net = Net::for_publisher();
        let publisher = net.publish_video(0, codec);
        // Joining after the first keyframe: the viewer waits for the next one.
        net.run_for(Duration::from_millis(1500));
        assert!(net.viewers[publisher].connected, "{codec:?} publisher");
        let viewer = net.join(1);
        net.run_for(Duration::from_secs(3));
        let v = &net.viewers[viewer];
        assert!(v.got.len() > 60, "{codec:?}: {} frames", v.got.len());
        assert_continuous(v);
        assert!(
            starts_keyframe(&v.got[0].2),
            "{codec:?} starts on a keyframe"
        );
        assert!(!starts_keyframe(&v.got[1].2));
        assert_eq!(net.path.tracks().unwrap()[0].info.codec, codec);
    }
}

#[test]
fn fifty_viewers_asking_for_a_keyframe_at_once_cost_the_publisher_one_pli_per_interval() {
    let mut net = Net::for_publisher();
    let publisher = net.publish(0);
    net.run_for(Duration::from_secs(1));
    let viewers: Vec<usize> = (0..50).map(|i| net.join(i % 2)).collect();
    net.run_for(Duration::from_secs(2));
    assert!(viewers
        .iter()
        .all(|&v| net.viewers[v].connected && !net.viewers[v].got.is_empty()));
    // Each viewer that went live asked for a keyframe to start on: one reached it.
    assert_eq!(
        net.viewers[publisher].keyframe_requests, 1,
        "fifty joins, one PLI"
    );

    for &v in &viewers {
        net.viewers[v].request_keyframe();
    }
    net.run_for(Duration::from_millis(300));
    assert_eq!(
        net.count(|s| &s.keyframe_requests),
        50,
        "every viewer's PLI arrived"
    );
    assert_eq!(net.viewers[publisher].keyframe_requests, 2, "one for fifty");

    // Asked again within the interval: held until it ends, then one more.
    for &v in &viewers {
        net.viewers[v].request_keyframe();
    }
    net.run_for(Duration::from_millis(400));
    assert_eq!(
        net.viewers[publisher].keyframe_requests, 2,
        "within the interval"
    );
    net.run_for(KEYFRAME_INTERVAL);
    assert_eq!(
        net.viewers[publisher].keyframe_requests, 3,
        "at the interval's end"
    );
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        net.viewers[publisher].keyframe_requests, 3,
        "nobody asked since"
    );
}

#[test]
fn a_viewers_handshake_waits_for_no_timer() {
    let mut net = Net::new(30, 2);
    // Between two points of the workers' 100 ms timer grid.
    net.run_for(Duration::from_millis(1037));
    let v = net.join(0);
    // Every step of ICE, DTLS and the keys follows a datagram at once: the handshake
    // is over at the instant the viewer starts it, before anybody's timer (a step left
    // to a timer would wait for the grid).
    net.run_for(Duration::from_micros(1));
    assert!(net.viewers[v].connected, "DTLS is not done");
    assert_eq!(net.count(|s| &s.sessions), 1);
}

/// A path's setup histogram times each viewer from its answer to DTLS done, on the
/// core's clock (not read in it): a viewer that starts its checks 40 ms after its answer
/// took 40 ms.
#[test]
fn a_viewers_setup_is_timed_from_its_answer_on_the_time_the_core_is_given() {
    let mut net = Net::new(30, 2);
    net.run_for(Duration::from_millis(1037));
    let v = net.join(0);
    net.now += Duration::from_millis(40);
    net.run_for(Duration::from_micros(1));
    assert!(net.viewers[v].connected, "DTLS is not done");
    let (count, sum) = net.path.reception.setup.totals();
    assert_eq!(count, 1);
    assert!((sum - 0.040).abs() < 1e-5, "{sum} s");
}

#[test]
fn a_late_viewer_gets_the_cached_keyframe_as_it_goes_live_not_at_the_next_packet() {
    // One packet a frame at 30 fps, a keyframe every second: joined 10 ms after the
    // keyframe of frame 30, 23 ms before the track's next packet.
    let mut net = Net::new(30, 1);
    net.run_for(Duration::from_millis(1010));
    let v = net.join(0);
    net.run_for(Duration::from_micros(1));
    assert!(net.viewers[v].connected, "DTLS is not done");
    let got = &net.viewers[v].got;
    let first = got
        .first()
        .expect("nothing sent before the track's next packet");
    assert_eq!(first.2[0] & 0x1f, 7, "starts on the keyframe's SPS");
    let frames: BTreeSet<u64> = got.iter().filter_map(|(.., p)| frame_of(p)).collect();
    assert_eq!(frames, BTreeSet::from([30]), "the cached keyframe, alone");
}

#[test]
fn a_viewer_whose_link_cannot_take_the_stream_skips_to_the_next_keyframe_alone() {
    // 10 packets a frame (300 a second), a keyframe every second; both viewers on one
    // worker, fanned out from the same batches.
    let mut net = Net::new(30, 10);
    let fine = net.join(0);
    let slow = net.join(0);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.count(|s| &s.congestion_skips), 0, "no loss, no skip");
    // Its link lets one packet in four through (resends alike): far more lost than the
    // retransmission budget mends, report after report.
    net.viewers[slow].lose = Box::new(|seq| !seq.is_multiple_of(4));
    let lossy_since = net.now;
    while net.count(|s| &s.congestion_skips) == 0 {
        assert!(
            net.now - lossy_since < Duration::from_secs(5),
            "never judged slow"
        );
        net.run_for(Duration::from_millis(1));
    }
    assert!(
        net.now - lossy_since > REPORT_INTERVAL,
        "judged on one report"
    );
    // Judged: its link is fine again from here, what it lost stays lost.
    net.viewers[slow].lose = Box::new(|_| false);
    let before = net.viewers[slow].got.len();
    let newest_before = net.viewers[slow]
        .got
        .iter()
        .map(|(s, ..)| *s)
        .max()
        .unwrap();
    let (resent, nacks) = (net.count(|s| &s.retransmitted), net.count(|s| &s.nacks));
    // It waits for the next keyframe, sent nothing, its NACKs for what it lost not
    // answered.
    while net.viewers[slow].got.len() == before {
        assert!(
            net.now - lossy_since < Duration::from_secs(10),
            "never resumed"
        );
        net.run_for(Duration::from_millis(1));
    }
    assert_eq!(
        net.count(|s| &s.retransmitted),
        resent,
        "resent while it waited"
    );
    assert!(
        net.count(|s| &s.nacks) > nacks,
        "it NACKed what it lost while it waited"
    );
    // It goes on at the keyframe (its SPS first), numbered on from what it was sent.
    let resumed = &net.viewers[slow].got[before..];
    assert_eq!(resumed[0].2[0] & 0x1f, 7, "resumes on a keyframe's SPS");
    let frame = frame_of(&resumed[2].2).unwrap();
    assert!(frame.is_multiple_of(30), "frame {frame} is no keyframe");
    assert!(
        (1..=4).contains(&(resumed[0].0 - newest_before)),
        "numbering unbroken: {} after {newest_before}",
        resumed[0].0
    );
    // Its reports are good again: it plays on, no more skips.
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.count(|s| &s.congestion_skips), 1);
    let seqs: BTreeSet<u64> = net.viewers[slow].got[before..]
        .iter()
        .map(|(s, ..)| *s)
        .collect();
    assert_eq!(
        seqs.len() as u64,
        seqs.last().unwrap() - seqs.first().unwrap() + 1,
        "a gap after it resumed"
    );
    // A link that stays too narrow skips again and again (each skip counted, once
    // logged), and never costs the other viewer a packet.
    net.viewers[slow].lose = Box::new(|seq| !seq.is_multiple_of(4));
    net.run_for(Duration::from_secs(10));
    assert!(
        net.count(|s| &s.congestion_skips) >= 3,
        "{} skips",
        net.count(|s| &s.congestion_skips)
    );
    assert_continuous(&net.viewers[fine]);
    let track = &net.path.tracks().unwrap()[0];
    assert_eq!(
        net.viewers[fine].got.len() as u64,
        track.head(),
        "the other viewer got every packet the track holds"
    );
}

#[test]
fn a_fan_out_over_its_budget_yields_to_handshakes_and_loses_nothing() {
    // 4 packets a frame to 12 viewers: with a budget of 4 packets, a viewer a turn.
    let mut net = Net::new(30, 4);
    for _ in 0..12 {
        net.join(0);
    }
    net.run_for(Duration::from_secs(1));
    let got = |net: &Net| net.viewers.iter().map(|v| v.got.len()).collect::<Vec<_>>();
    let before = got(&net);
    assert!(before.iter().all(|&n| n > 0), "every viewer is live");
    net.cores[0].set_fan_out_budget(4);

    let source = net.source.as_mut().unwrap();
    net.now = source.next;
    source.due(net.now);
    let first = net.turn(0);
    assert!(first.behind, "12 viewers x 4 packets are over the budget");
    assert_eq!(
        got(&net).iter().sum::<usize>(),
        before.iter().sum::<usize>() + 4
    );
    // Mid-way, viewer 0 (served already) leaves, and a new one starts its handshake.
    assert!(net.registry.close("cam", "viewer-0"));
    let late = net.join(0);
    let now = net.now;
    net.viewers[late]
        .rtc
        .handle_input(Input::Timeout(now))
        .unwrap();
    let mut turns = 1;
    let mut connected_while_behind = false;
    loop {
        let earlier: usize = got(&net)[..12].iter().sum();
        let turn = net.turn(0);
        turns += 1;
        let sent = got(&net)[..12].iter().sum::<usize>() - earlier;
        assert!(
            sent <= 4,
            "a turn sent {sent} media packets to the earlier viewers"
        );
        connected_while_behind |= turn.behind && net.viewers[late].connected;
        if !turn.behind && turn.datagrams == 0 {
            break;
        }
        assert!(turns < 100, "the fan-out never ends");
    }
    assert!(
        connected_while_behind,
        "the new viewer's ICE and DTLS went on between the fan-out's slices"
    );
    assert_eq!(net.sessions(0), 12);
    // Everybody else got the frame, once: nobody was skipped when viewer 0 left.
    let after = got(&net);
    for v in 1..12 {
        assert_eq!(after[v] - before[v], 4, "viewer {v}");
        assert_continuous(&net.viewers[v]);
    }
    assert_eq!(
        net.count(|s| &s.retransmitted),
        0,
        "nothing was lost to resend"
    );
}

/// A source of 4 packets a frame, and `viewers` of it on worker 0, live for a second.
fn watched_by(viewers: usize) -> Net {
    let mut net = Net::new(30, 4);
    for _ in 0..viewers {
        net.join(0);
    }
    net.run_for(Duration::from_secs(1));
    net
}

/// A frame's packets arrive, then the worker takes one turn, `frames` times: whether
/// each turn's fan-out was cut short, and whether the worker then admitted an offer.
fn turn_a_frame(net: &mut Net, frames: usize) -> Vec<(Instant, bool, Result<(), &'static str>)> {
    let client = "10.9.0.1".parse().unwrap();
    (0..frames)
        .map(|_| {
            let source = net.source.as_mut().unwrap();
            net.now = source.next;
            source.due(net.now);
            let behind = net.turn(0).behind;
            let admitted = net
                .registry
                .admit(client, net.now)
                .map(drop)
                .map_err(|refusal| refusal.reason());
            (net.now, behind, admitted)
        })
        .collect()
}

#[test]
fn a_worker_cut_short_turn_after_turn_but_keeping_up_stays_open() {
    let mut net = watched_by(6);
    // 20 packets a turn against 24 a frame: every turn stops short, yet each sends
    // whole batches to a viewer at a time and so keeps within a frame of the source.
    net.cores[0].set_fan_out_budget(20);
    let turns = turn_a_frame(&mut net, 90);
    assert!(
        turns[2..].iter().all(|&(_, behind, _)| behind),
        "the budget cut every fan-out short after the first two"
    );
    assert!(
        turns.iter().all(|(_, _, admitted)| admitted.is_ok()),
        "a worker within a frame of its source refused an offer"
    );
    assert_eq!(net.registry.workers_full(), 0);
    for v in &net.viewers {
        assert_continuous(v);
    }
}

#[test]
fn a_worker_late_with_its_media_refuses_new_sessions_until_it_catches_up() {
    let mut net = watched_by(12);
    // A viewer a turn and a turn a frame: a frame's fan-out takes 12 frames' time, and
    // the next covers the 12 frames that came meanwhile.
    net.cores[0].set_fan_out_budget(1);
    let first_late = net.source.as_ref().unwrap().next;
    let turns = turn_a_frame(&mut net, 60);
    let refused = turns
        .iter()
        .position(|(_, _, admitted)| admitted.is_err())
        .expect("a worker 12 frames behind its source still admits offers");
    // What it had not sent arrived at `first_late` or after: it is refused only once
    // that can be FULL_LAG old, and from then on while it stays late.
    let (refused_at, _, refusal) = turns[refused];
    assert_eq!(refusal, Err("full"));
    let late = refused_at - first_late;
    assert!(
        (FULL_LAG..FULL_LAG * 2).contains(&late),
        "refused {late:?} after falling behind"
    );
    assert!(
        turns[refused..]
            .iter()
            .all(|(_, _, admitted)| admitted.is_err()),
        "opened again while still late"
    );
    assert_eq!(net.registry.workers_full(), 1);
    // Given its budget back, it catches up and admits again.
    net.cores[0].set_fan_out_budget(super::egress::FAN_OUT_BUDGET);
    assert!(!net.turn(0).behind);
    assert_eq!(net.registry.workers_full(), 0);
    assert!(net
        .registry
        .admit("10.9.0.1".parse().unwrap(), net.now)
        .is_ok());
}

#[test]
fn a_check_flood_from_many_addresses_stops_at_the_claim_budget_and_viewers_go_on() {
    let mut net = Net::new(30, 2);
    let watching = net.join(0);
    net.run_for(Duration::from_secs(1));
    net.cores[0].set_claim_budget(100.0, 10.0);
    // 5,000 checks with made-up ufrags, each from an address of its own, at once.
    let relay: SocketAddr = RELAY.parse().unwrap();
    for i in 0..5000u32 {
        let check = super::demux::tests::check(&format!("guess{i}:x"));
        let [_, _, hi, lo] = i.to_be_bytes();
        let d = Datagram {
            source: SocketAddr::from(([10, 9, hi, lo], 5000)),
            destination: relay,
            data: &check,
        };
        net.cores[0].on_datagram(net.now, d);
    }
    // The burst went on to the registry (and found nothing), the rest stopped there.
    assert_eq!(net.count(|s| &s.unknown_ufrag), 10);
    assert_eq!(net.count(|s| &s.stun_global_limit), 4990);
    // The budget refills at its rate: a viewer joining after lets its checks through.
    net.run_for(Duration::from_millis(500));
    let late = net.join(0);
    net.run_for(Duration::from_secs(1));
    assert!(net.viewers[late].connected, "the new viewer got in");
    assert_eq!(net.sessions(0), 2);
    assert_continuous(&net.viewers[watching]);
}
