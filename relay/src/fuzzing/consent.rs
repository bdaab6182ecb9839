//! `consent_datagrams`: a live viewer's session on two worker cores, fed datagrams from
//! the viewer and from strangers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use is::stun::{StunMessage, TransId};
use str0m::media::Mid;

use crate::io::memory::MemorySender;
use crate::io::wake::Wakers;
use crate::io::{Datagram, MAX_DATAGRAM};
use crate::paths::ServedPath;
use crate::session::ice::{hmac_sha1, IceCredentials};
use crate::session::{Binding, Route, Session};
use crate::srtp::{MasterKey, Outbound, Profile};
use crate::track::{Codec, SourcePacket, Track, TrackInfo, TrackWriter};
use crate::worker::admission::PendingLimits;
use crate::worker::registry::Registry;
use crate::worker::{Core, WorkerStats};

use super::{records, start};

const RELAY: &str = "10.9.0.2:8189";
/// The viewer, from two addresses (it holds the ICE password), and two strangers (they
/// know the ufrag: it crosses the wire in clear).
const SOURCES: [&str; 4] = [
    "10.9.0.1:5000",
    "10.9.0.66:4444",
    "10.9.0.1:5001",
    "10.9.0.67:4445",
];
const UFRAG: &str = "fuzzufrag";
const PASSWORD: &str = "fuzzpassword0123456789ab";

fn is_stranger(source: usize) -> bool {
    source % 2 == 1
}

/// A live viewer whose str0m is gone, claimed by one of two workers in memory, then
/// fed datagrams from the viewer and from strangers, on either worker, as the bytes say.
///
/// The bytes are records: an op byte, a length byte, then that many bytes of payload.
/// The op's bits: 0-1 which source sends; 2 which worker receives; 3-4 what is sent (the
/// payload raw; sealed as the viewer's SRTCP under an RTCP header; a check signed with
/// the password, from the viewer only; a check with a wrong one); 5 USE-CANDIDATE on a
/// check; 6-7 time passing first (none, 20 ms, 1 s with a new packet, 25 s).
///
/// Whatever the bytes, nothing may panic, nothing may be sent to a stranger, and
/// nothing a stranger sends may end the session.
pub fn consent_datagrams(data: &[u8]) {
    let mut run = ConsentRun::new();
    for (op, payload) in records(data) {
        run.step(op, payload);
    }
}

struct ConsentRun {
    now: Instant,
    cores: Vec<Core<MemorySender>>,
    stats: Vec<Arc<WorkerStats>>,
    writer: TrackWriter,
    next_seq: u16,
    /// Seals the viewer's SRTCP, as the viewer would.
    viewer_srtcp: Outbound,
}

impl ConsentRun {
    fn new() -> ConsentRun {
        let now = start();
        let (track, mut writer) = Track::new(
            TrackInfo {
                codec: Codec::H264,
                fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
            },
            crate::track::history::Retention::default(),
        );
        for (i, nal) in [0x65u8, 0x41, 0x41, 0x41].into_iter().enumerate() {
            push(&mut writer, i as u16, nal, now);
        }
        let ice = IceCredentials {
            ufrag: UFRAG.into(),
            password: PASSWORD.into(),
        };
        let key = |k: u8| MasterKey::new(Profile::AeadAes128Gcm, &[k; 16], &[k; 12]).unwrap();
        let (relay_key, viewer_key) = (key(1), key(2));
        let route = Route {
            local: RELAY.parse().unwrap(),
            remote: source(0),
        };
        let binding = Binding {
            mid: Mid::from("0"),
            track: track.clone(),
            ssrc: 0x1234,
            pt: 96,
            // Resends take the RTX path, the one with more header to write.
            rtx: Some((0x5678, 97)),
            cname: "fuzz".into(),
        };
        let session =
            Session::live_without_str0m(now, ice, route, (&relay_key, &viewer_key), vec![binding]);
        let wakers = wakers();
        let registry = Arc::new(Registry::new(wakers.clone(), PendingLimits::default()));
        let path = {
            let path = ServedPath::ready("fuzz", 0, vec![track]);
            path.add_reader();
            Arc::new(path)
        };
        let place = registry
            .admit(source(0).ip(), now)
            .expect("the first place");
        place.park("fuzz".into(), path, session, String::new());
        let (cores, stats) = Core::in_memory(2, &registry, now, SystemTime::UNIX_EPOCH);
        let mut run = ConsentRun {
            now,
            cores,
            stats,
            writer,
            next_seq: 4,
            viewer_srtcp: Outbound::new(&viewer_key),
        };
        // The viewer's first check claims the session for worker 0.
        run.deliver(0, 0, &check(PASSWORD, true));
        assert_eq!(run.sessions(), 1, "the viewer's check claimed the session");
        run
    }

    fn step(&mut self, op: u8, payload: &[u8]) {
        let (from, worker) = (usize::from(op & 3), usize::from(op >> 2 & 1));
        let nominates = op & 0x20 != 0;
        let elapsed = match op >> 6 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(20),
            2 => Duration::from_secs(1),
            _ => Duration::from_secs(25),
        };
        if elapsed >= Duration::from_secs(1) {
            let seq = self.next_seq;
            self.next_seq = seq.wrapping_add(1);
            let nal = if seq.is_multiple_of(8) { 0x65 } else { 0x41 };
            push(&mut self.writer, seq, nal, self.now);
        }
        self.now += elapsed;
        let datagram = match op >> 3 & 3 {
            0 => payload.to_vec(),
            1 => self.sealed_rtcp(payload),
            2 if !is_stranger(from) => check(PASSWORD, nominates),
            _ => check("a-wrong-password-22chars", nominates),
        };
        let before = self.sessions();
        self.deliver(worker, from, &datagram);
        if is_stranger(from) && elapsed.is_zero() {
            assert_eq!(
                self.sessions(),
                before,
                "a stranger's datagram ended the session"
            );
        }
    }

    /// `data` from source `from` to worker `worker`, then a turn of both workers (the
    /// other may have been forwarded something).
    fn deliver(&mut self, worker: usize, from: usize, data: &[u8]) {
        let d = Datagram {
            source: source(from),
            destination: RELAY.parse().unwrap(),
            data,
        };
        self.cores[worker].on_datagram(self.now, d);
        for core in &mut self.cores {
            core.on_commands();
            core.finish_turn(self.now);
            for sent in core.sender().sent.drain(..) {
                let to = SOURCES
                    .iter()
                    .position(|s| sent.destination == s.parse().unwrap());
                assert!(
                    to.is_some_and(|to| !is_stranger(to)),
                    "sent to {}: {:x?}",
                    sent.destination,
                    sent.data
                );
            }
        }
    }

    fn sessions(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.sessions.load(Ordering::Relaxed))
            .sum()
    }

    /// `payload` under an RTCP header (version 2, a packet type of 200-207), sealed as
    /// the viewer's SRTCP: the fuzzer's bytes reach the RTCP parser behind the tag.
    fn sealed_rtcp(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = payload.len().clamp(8, MAX_DATAGRAM - 64);
        buf[..payload.len().min(len)].copy_from_slice(&payload[..payload.len().min(len)]);
        buf[0] = 0x80 | (buf[0] & 0x3f);
        buf[1] = 200 + (buf[1] & 7);
        match self.viewer_srtcp.protect_rtcp(&mut buf, len) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => payload.to_vec(),
        }
    }
}

/// One set of eventfds for every run: a fuzzer runs millions.
fn wakers() -> Arc<Wakers> {
    static WAKERS: OnceLock<Arc<Wakers>> = OnceLock::new();
    WAKERS
        .get_or_init(|| Arc::new(Wakers::new(2).expect("eventfds")))
        .clone()
}

fn source(i: usize) -> SocketAddr {
    SOURCES[i].parse().unwrap()
}

/// Pushes a one-packet frame, a NAL unit of type `nal`.
fn push(writer: &mut TrackWriter, seq: u16, nal: u8, arrival: Instant) {
    writer.push(SourcePacket {
        ssrc: 7,
        seq,
        timestamp: u32::from(seq) * 3000,
        marker: true,
        payload: &[nal, 0xab, 0xcd, seq as u8],
        arrival,
    });
}

/// A binding request naming our ufrag, signed with `password`.
fn check(password: &str, use_candidate: bool) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let username = format!("{UFRAG}:viewer");
    let n = StunMessage::binding_request(&username, TransId::new(), true, 1, 100, use_candidate)
        .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
        .expect("a check fits 256 bytes");
    buf[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runts of the security report, from each source to each worker, between
    /// the viewer's own checks and SRTCP: the run's checks hold.
    #[test]
    fn runts_from_everyone_to_both_workers() {
        let mut input = Vec::new();
        for op in 0..8u8 {
            for runt in [
                &[][..],
                &[0x15],
                &[0x00],
                &[0x80],
                &[0x80, 0xc9],
                &[0x16, 0xfe],
            ] {
                input.extend([op, runt.len() as u8]);
                input.extend_from_slice(runt);
            }
            // A signed check from this op's source, and an RR sealed by the viewer.
            input.extend([op | 0x10, 0, op | 0x08, 8, 0x81, 201, 0, 1, 0, 0, 0, 1]);
        }
        consent_datagrams(&input);
    }
}
