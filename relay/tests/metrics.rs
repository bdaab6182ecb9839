//! MediaMTX's metrics of paths and WebRTC sessions, scraped from the relay binary while
//! a WHIP publisher streams to a WHEP viewer: their counters agree with what the two
//! clients sent and received, and MediaMTX's filters select as they do there.

mod common;

use std::thread;
use std::time::Duration;

use relay::config::Config;
use relay_testkit::config::{loopback, paths, publisher};
use relay_testkit::metrics::{exported, fetch_filtered, samples};
use relay_testkit::publisher::Publisher;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;

use common::{start, WORKERS};

#[test]
fn path_and_session_counters_agree_with_the_clients() {
    let relay = start(&Config {
        paths: paths([("live", publisher(false))]),
        // Counters reach the metrics at each report: often, so the test waits little.
        rtcp_sender_report_interval: Duration::from_millis(200),
        ..loopback(WORKERS)
    });
    let metrics = relay.metrics_http().unwrap();
    let mut p = Publisher::connect(&relay.http, "live").expect("the publisher is taken");
    let publisher_id = p.session.rsplit('/').next().unwrap().to_owned();
    let publishing = thread::spawn(move || {
        p.run_for(Duration::from_secs(4));
        p
    });
    thread::sleep(Duration::from_millis(500));
    let v = Viewer::connect(&relay.http, "live");
    let viewer_id = v.session_id().to_owned();
    // Driven all along: a viewer not read from loses what overflows its socket.
    let v = Driven::start(v);
    thread::sleep(Duration::from_secs(2));
    let during = fetch_filtered(metrics, "").unwrap();
    let p = publishing.join().unwrap();
    // The publisher is silent now: what it sent reaches the viewer and the counters.
    thread::sleep(Duration::from_secs(1));
    let v = v.stop();
    let received: usize = v.received.streams.values().map(|s| s.len()).sum();
    assert!(received > 100, "the viewer got {received} packets");

    let session = |id: &str, name: &str| -> f64 {
        let text = fetch_filtered(metrics, &format!("webrtc_session={id}")).unwrap();
        exported(&text, name).unwrap()
    };
    // Settled: the relay published its counts after the last packet.
    let sent = || session(&viewer_id, "webrtc_sessions_outbound_rtp_packets");
    assert!(
        eventually(Duration::from_secs(5), || sent() >= received as f64),
        "the relay counts {} packets sent, the viewer got {received}",
        sent()
    );
    let sent = sent();
    assert!(
        sent <= received as f64 * 1.01 + 5.0,
        "counted {sent} sent for {received} received; {}",
        fetch_filtered(metrics, "type=relay").unwrap()
    );
    // Settled too: a busy machine may still be handing the last datagrams over. And its
    // first packets may come before the relay has its keys (on a loaded machine its last
    // DTLS step can lag the publisher's by ~0.1 s: 12 of 566 packets once): those are
    // dropped, not counted.
    let inbound = || session(&publisher_id, "webrtc_sessions_inbound_rtp_packets");
    let published = p.sent as f64;
    let agree =
        |inbound: f64| inbound <= published * 1.01 + 5.0 && inbound >= published * 0.95 - 5.0;
    assert!(
        eventually(Duration::from_secs(5), || agree(inbound())),
        "the publisher sent {}, the relay counts {} received",
        p.sent,
        inbound()
    );
    assert!(session(&viewer_id, "webrtc_sessions_outbound_rtcp_packets") > 0.0);
    assert!(session(&viewer_id, "webrtc_sessions_inbound_rtcp_packets") > 0.0);

    // Labels as MediaMTX writes them.
    let text = fetch_filtered(metrics, "type=webrtc_sessions").unwrap();
    let sessions = samples(&text, "webrtc_sessions");
    assert_eq!(sessions.len(), 2, "{text}");
    let viewer = sessions
        .iter()
        .find(|(labels, _)| labels.contains(&viewer_id))
        .expect("the viewer's session");
    assert!(viewer.0.contains("state=\"read\""), "{}", viewer.0);
    assert!(viewer.0.contains("path=\"live\""), "{}", viewer.0);
    assert!(viewer.0.contains("remoteAddr=\"127.0.0.1:"), "{}", viewer.0);
    assert!(
        !text.contains("relay_"),
        "type=webrtc_sessions shows only sessions"
    );
    assert!(
        !text.contains("\npaths{"),
        "type=webrtc_sessions shows only sessions"
    );

    let paths_text = fetch_filtered(metrics, "type=paths&path=live").unwrap();
    assert_eq!(
        exported(&paths_text, "paths{name=\"live\",state=\"ready\"}").unwrap(),
        1.0
    );
    assert_eq!(
        exported(
            &paths_text,
            "paths_readers{name=\"live\",state=\"ready\",readerType=\"webRTCSession\"}"
        )
        .unwrap(),
        1.0
    );
    let inbound_bytes = exported(&paths_text, "paths_inbound_bytes").unwrap();
    assert!(inbound_bytes > 10_000.0, "{paths_text}");
    let outbound = exported(&paths_text, "paths_outbound_bytes").unwrap();
    assert_eq!(
        outbound,
        session(&viewer_id, "webrtc_sessions_outbound_bytes")
    );
    assert!(!paths_text.contains("webrtc_sessions"), "{paths_text}");
    // The counters moved while the stream ran, and relay's own are there unfiltered.
    assert!(during.contains("relay_rtp_packets_sent_total"));
    assert!(exported(&during, "paths_inbound_bytes").unwrap() < inbound_bytes);

    let agent = relay_testkit::http::agent(Duration::from_secs(5));
    let bad = agent
        .get(format!("{metrics}/metrics?type=hls_muxers"))
        .call()
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Only on metricsAddress, as MediaMTX.
    let on_whep = agent.get(format!("{}/metrics", relay.http)).call().unwrap();
    assert_eq!(on_whep.status(), 404);

    // A viewer that leaves is gone from the metrics.
    assert_eq!(v.delete(), 200);
    let gone = || {
        let text = fetch_filtered(metrics, "type=webrtc_sessions").unwrap();
        !text.contains(&viewer_id)
    };
    assert!(
        eventually(Duration::from_secs(5), gone),
        "the viewer's session stays"
    );
}
