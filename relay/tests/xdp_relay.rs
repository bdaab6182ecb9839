//! The relay in XDP mode, end to end: the relay runs in one network namespace with
//! `xdpInterface` on its veth end, a str0m WHEP viewer in the other. Needs root.

mod common;

use std::time::Duration;

use common::netns::{Net, CLIENT4, RELAY4, RELAY_IF};
use common::{Relay, Viewer};

/// The kernel's UDP datagram counters in a namespace: (InDatagrams, OutDatagrams).
fn kernel_udp(net: &Net) -> (u64, u64) {
    let snmp = common::netns::run(
        "ip",
        &["netns", "exec", &net.relay.name, "cat", "/proc/net/snmp"],
    );
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let field = |name: &str| {
        let i = names.split_whitespace().position(|n| n == name).unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    (field("InDatagrams"), field("OutDatagrams"))
}

#[test]
fn a_viewer_gets_the_demo_through_af_xdp_not_the_kernel_udp_stack() {
    let net = Net::new();
    let relay = Relay::launch(
        "xdp",
        &format!(
            "webrtcAddress: {RELAY4}:0\nwebrtcLocalUDPAddress: {RELAY4}:8189\n\
             xdpInterface: {RELAY_IF}\npaths:\n  demo:\n    source: demo\n"
        ),
        Some(&net.relay.name),
    );
    let before = kernel_udp(&net);
    let http = relay.http.clone();
    let v = net.client.enter(|| {
        let mut v = Viewer::connect_from(&http, "demo", CLIENT4.parse().unwrap());
        v.run_for(Duration::from_secs(4));
        v
    });
    let after = kernel_udp(&net);
    assert!(v.connected, "ICE and DTLS completed over AF_XDP");
    let (_, stream) = v.received.streams.iter().next().expect("video");
    let seqs: Vec<u64> = stream.keys().copied().collect();
    assert_eq!(seqs.last().unwrap() - seqs[0] + 1, seqs.len() as u64, "gap");
    assert!(seqs.len() > 150, "only {} packets", seqs.len());
    // The media went out through the AF_XDP socket and the viewer's STUN, DTLS and
    // SRTCP came in through it: the kernel's UDP stack carried next to nothing.
    assert!(
        after.0 - before.0 < 5,
        "kernel UDP in: {before:?} -> {after:?}"
    );
    assert!(
        after.1 - before.1 < 5,
        "kernel UDP out: {before:?} -> {after:?}"
    );
    let metrics = net.client.enter(|| common::fetch_metrics(&http));
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Everything the workers received (STUN, DTLS, SRTCP) was redirected by XDP.
    let redirected = sum("relay_xdp_packets_total{action=\"redirected\"");
    let received = sum("relay_datagrams_received_total");
    assert!(
        received >= 8.0 && redirected >= received,
        "XDP redirected {redirected}, workers received {received}:\n{metrics}"
    );
    assert!(sum("relay_rtp_packets_sent_total") >= seqs.len() as f64);
}
