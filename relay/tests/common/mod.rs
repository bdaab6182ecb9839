//! What relay's integration tests share beyond the test kit (`relay-testkit`, which
//! runs the relay and its viewers for them and for the load tools): the relay binary
//! cargo built for these tests, the config most of them run, and the checks of what a
//! viewer of the demo got.
#![allow(dead_code)]

use std::time::Duration;

use relay::config::Config;
use relay_testkit::config::{demo, loopback, paths};
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::viewer::{run_all, Loss, Viewer};

pub mod netns;
pub mod rtp;
pub mod xdp;

/// The relay binary cargo built for these tests.
pub const RELAY: &str = env!("CARGO_BIN_EXE_relay");
/// The workers of the relay most tests run.
pub const WORKERS: usize = 2;

/// The demo clip at `demo`, on loopback, with [`WORKERS`] workers.
pub fn demo_config() -> Config {
    Config {
        paths: paths([("demo", demo())]),
        ..loopback(WORKERS)
    }
}

/// The relay of these tests with `config`, its log in the test's output.
pub fn launch(config: &Config) -> Launch {
    Launch::new(RELAY, config).echo_log()
}

/// Waits (bounded) until a WHEP offer to `path` is answered 404 with `reason`: the
/// path has no stream.
pub fn eventually_404(http: &str, path: &str, reason: &str) {
    let agent = relay_testkit::http::agent(Duration::from_secs(10));
    let endpoint = relay_testkit::whep::endpoint(http, path);
    let answered = relay_testkit::wait::eventually(Duration::from_secs(5), || {
        let reply = relay_testkit::whep::post_offer(&agent, &endpoint, "v=0\r\n").unwrap();
        reply.status == 404 && reply.body.contains(reason)
    });
    assert!(answered, "{path} never answered 404 '{reason}'");
}

/// [`launch`]ed and serving.
pub fn start(config: &Config) -> RelayProcess {
    launch(config).start().expect("the relay starts")
}

/// Checks what `v` received: one video stream, its sequence numbers contiguous, its
/// payloads the demo clip's packets in order (looping), starting on a keyframe. A viewer
/// still catching up on the cached GOP when a newer keyframe arrives goes on from that
/// keyframe (instant start), so the payloads may jump once, onto a keyframe. Returns how
/// many packets were checked.
pub fn assert_demo_stream(v: &Viewer) -> usize {
    let clip = relay::ingest::demo::Clip::demo(1452).unwrap();
    let expected = clip.packets();
    assert_eq!(v.received.streams.len(), 1, "one video stream");
    let (_, stream) = v.received.streams.iter().next().unwrap();
    let seqs: Vec<u64> = stream.keys().copied().collect();
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    assert_eq!(
        last - first + 1,
        seqs.len() as u64,
        "sequence numbers {first}..={last} have gaps"
    );
    let payloads: Vec<&[u8]> = seqs.iter().map(|s| &stream[s][..]).collect();
    let is_keyframe = |p: &[u8]| matches!(p[0] & 0x1f, 7 | 5);
    assert!(
        is_keyframe(payloads[0]),
        "viewer starts on a keyframe (SPS or IDR), got NAL {}",
        payloads[0][0] & 0x1f
    );
    // Keyframes share their SPS: anchor on the next few packets together.
    let anchor = |from: usize| {
        let probe = (payloads.len() - from).min(8);
        (0..expected.len()).find(|&s| {
            (0..probe).all(|i| expected[(s + i) % expected.len()][..] == *payloads[from + i])
        })
    };
    let mut at = anchor(0).expect("the first packets are a run of the clip's packets");
    let mut jumped = false;
    for (i, got) in payloads.iter().enumerate() {
        if expected[at % expected.len()][..] != **got {
            let jump = (!jumped && is_keyframe(got)).then(|| anchor(i)).flatten();
            at = jump.unwrap_or_else(|| {
                panic!(
                    "payload of packet {i} (seq {}) differs from the clip",
                    seqs[i]
                )
            });
            jumped = true;
        }
        at += 1;
    }
    seqs.len()
}

/// The late-joiner check of both modes: `first` plays for 1.5 s, then a second viewer
/// (made by `connect`) joins and both play for 3 s. Each gets the demo from a keyframe,
/// contiguous, under its own SSRC; the first got more.
pub fn check_late_joiner(mut first: Viewer, connect: impl FnOnce() -> Viewer) {
    first.run_for(Duration::from_millis(1500));
    let second = connect();
    let viewers = run_all(vec![first, second], Duration::from_secs(3));
    let (a, b) = (
        assert_demo_stream(&viewers[0]),
        assert_demo_stream(&viewers[1]),
    );
    assert!(
        a > b,
        "the first viewer got more ({a}) than the late one ({b})"
    );
    assert!(b > 60, "the late viewer got {b} packets");
    // Different SSRCs and numbering per viewer (RFC 3550 5.1).
    let ssrc = |v: &Viewer| *v.received.streams.keys().next().unwrap();
    assert_ne!(ssrc(&viewers[0]), ssrc(&viewers[1]));
}

/// The loss-recovery check of both modes: `v` drops the first arrival of every 9th
/// packet for `d`, then plays 0.5 s more without dropping. What it got is the demo,
/// contiguous, and `relay` resent at least as many packets as were dropped. Returns `v`.
pub fn check_nack_recovery(relay: &RelayProcess, mut v: Viewer, d: Duration) -> Viewer {
    v.loss = Loss::Every(9);
    v.run_for(d);
    // Let the last NACKs be answered without dropping anything more.
    v.loss = Loss::None;
    v.run_for(Duration::from_millis(500));
    let n = assert_demo_stream(&v);
    assert!(
        v.dropped_count * 15 > n,
        "dropped {} of {n}",
        v.dropped_count
    );
    let resent = relay.metric("relay_retransmitted_packets_total").unwrap();
    assert!(
        resent >= v.dropped_count as f64,
        "relay resent {resent} packets for {} dropped",
        v.dropped_count
    );
    v
}

/// A STUN Binding Request as a controlling ICE agent sends it, `username` in USERNAME,
/// its MESSAGE-INTEGRITY keyed with `password`, and a FINGERPRINT.
pub fn binding_request(username: &str, password: &str) -> Vec<u8> {
    use hmac::Mac;
    use is::stun::{StunMessage, TransId};
    fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
    let mut buf = [0u8; 256];
    let n = StunMessage::binding_request(username, TransId::new(), true, 7, 100, false)
        .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
        .unwrap();
    buf[..n].to_vec()
}
