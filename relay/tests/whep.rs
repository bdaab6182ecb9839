//! End to end in portable mode: the relay binary, a WHEP viewer built on str0m over
//! loopback, the built-in demo stream.

mod common;

use std::time::Duration;

use common::{Relay, Viewer};
use relay::ingest::demo::Clip;

const DEMO: &str = "  demo:\n    source: demo\n";

/// Checks that `seqs` (sorted) are contiguous, and that the payloads follow the demo
/// clip's packets in order, looping. Returns how many packets were checked.
fn assert_demo_stream(v: &Viewer) -> usize {
    let clip = Clip::demo(1452).unwrap();
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
    let payloads: Vec<&[u8]> = seqs.iter().map(|s| &stream[s].0[..]).collect();
    let nal = payloads[0][0] & 0x1f;
    assert!(
        nal == 7 || nal == 5,
        "viewer starts on a keyframe (SPS or IDR), got NAL {nal}"
    );
    // Keyframes share their SPS: anchor on the first few packets together.
    let probe = payloads.len().min(8);
    let start = (0..expected.len())
        .find(|&s| (0..probe).all(|i| expected[(s + i) % expected.len()][..] == *payloads[i]))
        .expect("the first packets are a run of the clip's packets");
    for (i, got) in payloads.iter().enumerate() {
        let want = &expected[(start + i) % expected.len()];
        assert!(
            want[..] == **got,
            "payload of packet {i} (seq {}) differs from the clip",
            seqs[i]
        );
    }
    seqs.len()
}

#[test]
fn demo_viewer_receives_every_packet_in_order() {
    let relay = Relay::start("demo", DEMO);
    let mut v = Viewer::connect(&relay.http, "demo");
    v.run_for(Duration::from_secs(4));
    assert!(v.connected, "ICE and DTLS completed");
    let n = assert_demo_stream(&v);
    assert!(n > 150, "only {n} packets in ~3 s of a 30 fps stream");
    assert_eq!(v.delete(&relay.http), 200);
}
