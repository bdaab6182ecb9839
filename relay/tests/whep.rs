//! End to end in portable mode: the relay binary, a WHEP viewer built on str0m over
//! loopback, the built-in demo stream.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use relay::config::{Config, PathConfig};
use relay_testkit::client::Client;
use relay_testkit::config::{demo, loopback, paths};
use relay_testkit::viewer::Viewer;
use relay_testkit::wait::eventually;
use relay_testkit::{http, whep};
use str0m::media::MediaKind;

use common::{
    assert_demo_stream, check_late_joiner, check_nack_recovery, demo_config, start, WORKERS,
};

#[test]
fn demo_viewer_receives_every_packet_in_order() {
    let relay = start(&demo_config());
    let mut v = Viewer::connect(&relay.http, "demo");
    v.run_for(Duration::from_secs(4));
    assert!(v.connected, "ICE and DTLS completed");
    let n = assert_demo_stream(&v);
    assert!(n > 150, "only {n} packets in ~3 s of a 30 fps stream");
    assert_eq!(v.delete(), 200);
}

#[test]
fn late_viewer_starts_on_a_keyframe_and_the_first_loses_nothing() {
    let relay = start(&demo_config());
    let first = Viewer::connect(&relay.http, "demo");
    check_late_joiner(first, || Viewer::connect(&relay.http, "demo"));
}

#[test]
fn lost_packets_are_recovered_by_nack_from_the_shared_ring() {
    let relay = start(&demo_config());
    let v = Viewer::connect(&relay.http, "demo");
    check_nack_recovery(&relay, v, Duration::from_secs(4));
}

#[test]
fn sessions_end_on_delete_and_when_a_viewer_vanishes() {
    let demo = PathConfig {
        max_readers: 2,
        ..demo()
    };
    let relay = start(&Config {
        paths: paths([("demo", demo)]),
        ..loopback(WORKERS)
    });
    let mut polite = Viewer::connect(&relay.http, "demo");
    let mut vanishing = Viewer::connect(&relay.http, "demo");
    polite.run_for(Duration::from_millis(800));
    vanishing.run_for(Duration::from_millis(800));
    assert!(polite.connected && vanishing.connected);
    assert_eq!(relay.metric("relay_sessions").unwrap(), 2.0);

    // maxReaders: a third viewer is refused while two are there.
    let (_, offer) = Client::offer(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        &[MediaKind::Video],
    )
    .unwrap();
    let agent = http::agent(Duration::from_secs(10));
    let endpoint = whep::endpoint(&relay.http, "demo");
    let reply = whep::post_offer(&agent, &endpoint, &offer.sdp).unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);

    assert_eq!(polite.delete(), 200);
    let sessions = || relay.metric("relay_sessions").unwrap();
    assert!(eventually(Duration::from_secs(2), || sessions() == 1.0));
    assert_eq!(polite.delete(), 404, "deleting twice");

    // A viewer that stops answering (tab closed, no DELETE) is dropped once ICE consent lapses.
    drop(vanishing);
    assert!(
        eventually(Duration::from_secs(40), || sessions() == 0.0),
        "the vanished viewer's session was never closed"
    );
    assert_eq!(relay.metric("relay_path_readers").unwrap(), 0.0);
}

#[test]
fn a_viewer_stays_past_the_consent_timeout() {
    let relay = start(&demo_config());
    let mut v = Viewer::connect(&relay.http, "demo");
    // Longer than relay::session::consent::CONSENT_TIMEOUT: consent checks keep it alive
    // after str0m is gone from the session.
    v.run_for(Duration::from_secs(25));
    let before = assert_demo_stream(&v);
    v.run_for(Duration::from_secs(2));
    let after = assert_demo_stream(&v);
    assert!(
        after > before + 100,
        "media still flows after 25 s ({before} -> {after})"
    );
    assert_eq!(relay.metric("relay_sessions").unwrap(), 1.0);
}

#[test]
fn sigterm_closes_every_session_and_exits_cleanly_in_bounded_time() {
    let mut relay = start(&demo_config());
    let mut viewers: Vec<Viewer> = (0..2)
        .map(|_| Viewer::connect(&relay.http, "demo"))
        .collect();
    for v in &mut viewers {
        v.run_for(Duration::from_millis(800));
        assert!(v.connected);
    }
    // Bounded by the relay's own limit (5 s) and a margin for a busy machine.
    let status = relay.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit status {status}");
    let log = relay.log().join("\n");
    assert!(log.contains("shutting down"), "{log}");
    for v in &viewers {
        let closed = format!("session={}", v.session_id());
        assert!(
            log.lines()
                .any(|l| l.contains("viewer closed") && l.contains(&closed)),
            "{closed} was not closed:\n{log}"
        );
    }
}

/// POSTs `sdp` to `path`'s WHEP endpoint on `http` over a connection from `from`: the
/// status line and headers of the answer.
fn post_offer_from(http: &str, path: &str, sdp: &str, from: Ipv4Addr) -> String {
    use std::io::{Read, Write};
    let server: SocketAddr = http.trim_start_matches("http://").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.into(), 0).into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream = std::net::TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "POST /{path}/whep HTTP/1.1\r\nHost: relay\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{sdp}",
        sdp.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn offers_one_address_never_connects_are_limited_and_others_still_watch() {
    const LIMIT: usize = 4;
    let relay = start(&Config {
        webrtc_max_pending_sessions_per_ip: LIMIT,
        ..demo_config()
    });
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let (_, offer) = Client::offer(
        SocketAddr::new(flooder.into(), 0),
        &[MediaKind::Video, MediaKind::Audio],
    )
    .unwrap();
    // Answered, never connected: each holds its place until webrtcHandshakeTimeout.
    for _ in 0..LIMIT {
        let reply = post_offer_from(&relay.http, "demo", &offer.sdp, flooder);
        assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    }
    for _ in 0..3 {
        let reply = post_offer_from(&relay.http, "demo", &offer.sdp, flooder);
        assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
        assert!(reply.contains("webrtcMaxPendingSessionsPerIP"), "{reply}");
        let retry: u64 = (reply.lines())
            .find_map(|l| l.strip_prefix("retry-after: "))
            .unwrap_or_else(|| panic!("no Retry-After: {reply}"))
            .trim()
            .parse()
            .unwrap();
        assert!((1..=10).contains(&retry), "Retry-After {retry}");
    }

    // Another address connects, and its place frees when it does.
    let mut v = Viewer::connect(&relay.http, "demo");
    v.run_for(Duration::from_secs(2));
    assert!(v.connected, "ICE and DTLS completed");
    assert!(
        assert_demo_stream(&v) > 30,
        "the honest viewer gets the stream"
    );
    let text = relay_testkit::metrics::fetch(relay.metrics_http().unwrap()).unwrap();
    let metric = |selector| relay_testkit::metrics::exported(&text, selector).unwrap();
    assert_eq!(
        metric("relay_pending_refused_total{reason=\"address\"}"),
        3.0
    );
    assert_eq!(metric("relay_pending_sessions"), LIMIT as f64);
    assert_eq!(
        metric("relay_pending_sessions_most_of_one_ip"),
        LIMIT as f64
    );
}
