//! End to end in portable mode: the relay binary, a WHEP viewer built on str0m over
//! loopback, the built-in demo stream.

mod common;

use std::time::Duration;

use common::{
    assert_demo_stream, check_late_joiner, check_nack_recovery, eventually, Relay, Viewer,
};

const DEMO: &str = "  demo:\n    source: demo\n";

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

#[test]
fn late_viewer_starts_on_a_keyframe_and_the_first_loses_nothing() {
    let relay = Relay::start("late", DEMO);
    let first = Viewer::connect(&relay.http, "demo");
    check_late_joiner(first, || Viewer::connect(&relay.http, "demo"));
}

#[test]
fn lost_packets_are_recovered_by_nack_from_the_shared_ring() {
    let relay = Relay::start("nack", DEMO);
    let v = Viewer::connect(&relay.http, "demo");
    check_nack_recovery(&relay, v, Duration::from_secs(4));
}

#[test]
fn sessions_end_on_delete_and_when_a_viewer_vanishes() {
    let relay = Relay::start(
        "lifecycle",
        "  demo:\n    source: demo\n    maxReaders: 2\n",
    );
    let mut polite = Viewer::connect(&relay.http, "demo");
    let mut vanishing = Viewer::connect(&relay.http, "demo");
    polite.run_for(Duration::from_millis(800));
    vanishing.run_for(Duration::from_millis(800));
    assert!(polite.connected && vanishing.connected);
    assert_eq!(relay.metric("relay_sessions"), 2.0);

    // maxReaders: a third viewer is refused while two are there.
    let (_, _, offer, _, _) = common::whep_offer(true, false);
    let (status, _, body) = common::post_offer(&relay.http, "demo", &offer.to_sdp_string());
    assert_eq!(status, 503, "{body}");

    assert_eq!(polite.delete(&relay.http), 200);
    assert!(eventually(Duration::from_secs(2), || relay
        .metric("relay_sessions")
        == 1.0));
    assert_eq!(polite.delete(&relay.http), 404, "deleting twice");

    // A viewer that stops answering (tab closed, no DELETE) is dropped once ICE consent lapses.
    drop(vanishing);
    assert!(
        eventually(Duration::from_secs(40), || relay.metric("relay_sessions")
            == 0.0),
        "the vanished viewer's session was never closed"
    );
    assert_eq!(relay.metric("relay_path_readers"), 0.0);
}

#[test]
fn a_viewer_stays_past_the_consent_timeout() {
    let relay = Relay::start("consent", DEMO);
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
    assert_eq!(relay.metric("relay_sessions"), 1.0);
}
