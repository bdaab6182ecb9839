//! Loss between the relay and a real browser: headless Chromium plays the demo through a
//! lossy UDP forwarder in this process, which the relay advertises as its only candidate
//! (`webrtcAdditionalHosts: [127.0.0.1:PORT]`, media bound to all addresses). The
//! forwarder passes STUN, DTLS and RTCP untouched and drops a seeded-random share of the
//! relay's SRTP to Chromium: none while the player connects, then 1 %, then 5 %. Chromium
//! NACKs; the relay resends from its history ring. Per window the test checks, from
//! Chromium's inbound-rtp stats, the forwarder's counts and the relay's metrics, that
//! recovery acted (NACKs sent and answered, most dropped packets delivered again) and
//! that the video kept decoding at its frame rate with few freezes; and prints the
//! recovered fraction and the bytes retransmission cost.
//!
//! Needs `chromium` and `chromedriver` on PATH (`cargo xtask setup` installs them).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use relay::config::Config;
use relay_testkit::chromium::{Chromium, InboundVideo};
use relay_testkit::config::{demo, loopback, paths};
use relay_testkit::process::RelayProcess;

use common::{start, WORKERS};

const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(20);
/// Each loss rate is measured over this long: at the demo's ~95 packets/s, some 20
/// drops at 1 %.
const WINDOW: Duration = Duration::from_secs(20);
/// The demo is 30 fps.
const FPS: f64 = 30.0;
const SEED: u64 = 0x10_55;
/// How often the forwarder's threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What the forwarder saw of the relay's SRTP to Chromium.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// SRTP datagrams from the relay, dropped or passed, retransmissions included.
    srtp: u64,
    srtp_bytes: u64,
    dropped: u64,
    /// Packets (SSRC, sequence number) dropped the first time they came.
    lost_first: u64,
    /// Of those, how many came again and were passed.
    recovered: u64,
    /// Datagrams whose packet had come before: retransmissions.
    resent: u64,
    resent_bytes: u64,
}

impl Counts {
    fn since(&self, before: &Counts) -> Counts {
        Counts {
            srtp: self.srtp - before.srtp,
            srtp_bytes: self.srtp_bytes - before.srtp_bytes,
            dropped: self.dropped - before.dropped,
            lost_first: self.lost_first - before.lost_first,
            recovered: self.recovered - before.recovered,
            resent: self.resent - before.resent,
            resent_bytes: self.resent_bytes - before.resent_bytes,
        }
    }
}

#[derive(Default)]
struct Seen {
    counts: Counts,
    /// Every (SSRC, sequence number) passed or dropped so far.
    packets: HashSet<(u32, u16)>,
    /// Those dropped the first time and not passed since.
    missing: HashSet<(u32, u16)>,
    /// The SSRCs of the media, as sent while nothing is dropped; any other SSRC after
    /// that carries repairs (RTX, RFC 4588: own SSRC and numbering, encrypted OSN).
    media: HashSet<u32>,
}

/// A UDP forwarder on 127.0.0.1 standing for the relay: each address that sends to it
/// gets a socket of its own towards the relay (as a NAT would), so the relay's answers
/// find their way back. It drops `loss` of the relay's SRTP (RFC 7983 first byte
/// 128-191, and not RTCP: packet type 192-223), decided by a seeded generator.
struct Forwarder {
    addr: SocketAddr,
    /// Parts per million of SRTP dropped.
    loss_ppm: Arc<AtomicU32>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    fn start(relay: SocketAddr) -> Forwarder {
        let public = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        public.set_read_timeout(Some(POLL)).unwrap();
        let forwarder = Forwarder {
            addr: public.local_addr().unwrap(),
            loss_ppm: Arc::default(),
            seen: Arc::default(),
            stop: Arc::default(),
            threads: Arc::default(),
        };
        let (loss, seen, stop, threads) = (
            forwarder.loss_ppm.clone(),
            forwarder.seen.clone(),
            forwarder.stop.clone(),
            forwarder.threads.clone(),
        );
        let inbound = std::thread::spawn(move || {
            let mut flows: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = [0; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = public.recv_from(&mut buf) else {
                    continue;
                };
                let upstream = flows.entry(from).or_insert_with(|| {
                    let up = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                    up.connect(relay).unwrap();
                    up.set_read_timeout(Some(POLL)).unwrap();
                    let back = Back {
                        from: up.try_clone().unwrap(),
                        to: from,
                        public: public.try_clone().unwrap(),
                        loss: loss.clone(),
                        seen: seen.clone(),
                        stop: stop.clone(),
                        rng: fastrand::Rng::with_seed(SEED),
                    };
                    threads
                        .lock()
                        .unwrap()
                        .push(std::thread::spawn(move || back.run()));
                    up
                });
                // Chromium's datagrams all reach the relay (a closed port's refusal
                // would only show as loss).
                let _ = upstream.send(&buf[..n]);
            }
        });
        forwarder.threads.lock().unwrap().push(inbound);
        forwarder
    }

    fn set_loss(&self, fraction: f64) {
        self.loss_ppm
            .store((fraction * 1e6) as u32, Ordering::Relaxed);
    }

    fn counts(&self) -> Counts {
        self.seen.lock().unwrap().counts
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Flows may still be added while the first thread ends: take the list after.
        let first = self.threads.lock().unwrap().remove(0);
        let _ = first.join();
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// One flow's way back: from the relay to one of Chromium's addresses.
struct Back {
    from: UdpSocket,
    to: SocketAddr,
    public: UdpSocket,
    loss: Arc<AtomicU32>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    rng: fastrand::Rng,
}

impl Back {
    fn run(mut self) {
        let mut buf = [0; 2048];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok(n) = self.from.recv(&mut buf) else {
                continue;
            };
            if self.passes(&buf[..n]) {
                let _ = self.public.send_to(&buf[..n], self.to);
            }
        }
    }

    /// Counts an SRTP datagram and decides its fate; everything else passes.
    fn passes(&mut self, d: &[u8]) -> bool {
        let srtp = d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]);
        if !srtp {
            return true;
        }
        let key = (
            u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            u16::from_be_bytes([d[2], d[3]]),
        );
        let loss = self.loss.load(Ordering::Relaxed);
        let drop = self.rng.u32(..1_000_000) < loss;
        let mut seen = self.seen.lock().unwrap();
        let Seen {
            counts,
            packets,
            missing,
            media,
        } = &mut *seen;
        if loss == 0 {
            media.insert(key.0);
        } else if !media.contains(&key.0) {
            counts.srtp += 1;
            counts.srtp_bytes += d.len() as u64;
            counts.resent += 1;
            counts.resent_bytes += d.len() as u64;
            counts.dropped += u64::from(drop);
            return !drop;
        }
        let first = packets.insert(key);
        counts.srtp += 1;
        counts.srtp_bytes += d.len() as u64;
        if !first {
            counts.resent += 1;
            counts.resent_bytes += d.len() as u64;
        }
        if drop {
            counts.dropped += 1;
            if first {
                counts.lost_first += 1;
                missing.insert(key);
            }
        } else if missing.remove(&key) {
            counts.recovered += 1;
        }
        !drop
    }
}

/// The relay's NACK counters: (NACK items received, packets resent, NACKed packets not
/// in the ring, NACKed packets over the viewer's budget).
fn relay_counters(relay: &RelayProcess) -> [f64; 4] {
    [
        "relay_nacks_received_total",
        "relay_retransmitted_packets_total",
        "relay_retransmit_missing_total",
        "relay_retransmit_limited_total",
    ]
    .map(|m| relay.metric(m).unwrap())
}

#[test]
fn chromium_recovers_from_1_and_5_percent_loss_by_nack() {
    // The relay's media port, on every address: a bound address would be advertised too,
    // and Chromium could reach the relay around the forwarder.
    let media_port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forwarder = Forwarder::start((Ipv4Addr::LOCALHOST, media_port).into());
    let relay = start(&Config {
        webrtc_local_udp_address: (Ipv4Addr::UNSPECIFIED, media_port).into(),
        webrtc_additional_hosts: vec![forwarder.addr.to_string()],
        paths: paths([("demo", demo())]),
        ..loopback(WORKERS)
    });
    let chromium = Chromium::start(&[]).unwrap();
    chromium.goto(&format!("{}/demo/", relay.http)).unwrap();
    let connected = chromium.wait_for_first_frame(FIRST_FRAME_WITHIN).unwrap();
    assert_eq!(
        connected.remote_candidate,
        Some(forwarder.addr.to_string()),
        "Chromium's media comes through the forwarder"
    );

    for loss in [0.01, 0.05] {
        forwarder.set_loss(loss);
        let (b, f0, r0) = (
            chromium.player().unwrap(),
            forwarder.counts(),
            relay_counters(&relay),
        );
        std::thread::sleep(WINDOW);
        forwarder.set_loss(0.0);
        // Recovery of the window's last drops: a few round trips.
        std::thread::sleep(Duration::from_millis(500));
        let (a, f1, r1) = (
            chromium.player().unwrap(),
            forwarder.counts(),
            relay_counters(&relay),
        );
        let f = f1.since(&f0);
        let [nacks, resent, missing, limited] = [0, 1, 2, 3].map(|i| r1[i] - r0[i]);
        let (v0, v1): (&InboundVideo, &InboundVideo) = (b.inbound(), a.inbound());
        let secs = WINDOW.as_secs_f64();
        let fps = (v1.frames_decoded - v0.frames_decoded) as f64 / secs;
        let freezes = v1.freeze_count - v0.freeze_count;
        let chromium_nacks = v1.nack_count - v0.nack_count;
        // Resent on the media SSRC, the forwarder sees them; as RTX, Chromium counts them.
        let rtx_received = v1.retransmitted_packets_received.unwrap_or(0)
            - v0.retransmitted_packets_received.unwrap_or(0);
        let recovered = (f.recovered + rtx_received) as f64 / f.lost_first.max(1) as f64;
        let extra = f.resent_bytes as f64 / (f.srtp_bytes - f.resent_bytes).max(1) as f64;
        eprintln!(
            "loss {:.0} % over {secs} s: forwarder: {} SRTP datagrams, {} dropped ({} first \
             sends), {} recovered ({:.1} %), {} resent ({} bytes, {:.2} % extra bytes); \
             relay: {nacks} NACK items, {resent} resent ({:.1} % of first-send drops), \
             {missing} missing, {limited} over budget; Chromium: {chromium_nacks} NACKs, \
             packetsLost +{}, retransmittedPacketsReceived +{}, {fps:.1} fps decoded, \
             {freezes} freezes ({:.2} s), framesDropped +{}, PLIs +{}",
            loss * 100.0,
            f.srtp,
            f.dropped,
            f.lost_first,
            f.recovered + rtx_received,
            recovered * 100.0,
            f.resent,
            f.resent_bytes,
            extra * 100.0,
            resent / f.lost_first.max(1) as f64 * 100.0,
            v1.packets_lost - v0.packets_lost,
            v1.retransmitted_packets_received.unwrap_or(0)
                - v0.retransmitted_packets_received.unwrap_or(0),
            v1.total_freezes_duration - v0.total_freezes_duration,
            v1.frames_dropped - v0.frames_dropped,
            v1.pli_count - v0.pli_count,
        );
        let pct = loss * 100.0;
        assert!(f.lost_first > 0, "{pct} %: the forwarder dropped nothing");
        assert!(chromium_nacks > 0, "{pct} %: Chromium sent no NACK");
        assert!(nacks > 0.0, "{pct} %: the relay counted no NACK");
        // Each NACKed packet is in the ring (seconds of history, NACKs within a round
        // trip): most drops come again. Some are not asked for (Chromium gives up on a
        // frame it has already skipped past), hence not all.
        assert!(
            recovered >= 0.5,
            "{pct} %: only {} of {} dropped packets came again",
            f.recovered + rtx_received,
            f.lost_first
        );
        // Throughput, not latency: two thirds of the frames in the window were decoded.
        assert!(
            fps >= FPS * 2.0 / 3.0,
            "{pct} %: {fps:.1} fps decoded: {v1:?}"
        );
        // A freeze is a frame later than three times the mean interval: one in 5 s at
        // most, whatever a busy machine adds.
        assert!(
            freezes as f64 <= secs / 5.0,
            "{pct} %: {freezes} freezes in {secs} s"
        );
    }
}
