//! Paths made from the config's patterns, end to end: the relay binary with MediaMTX's
//! `all_others` (what its own mediamtx.yml ends with), a str0m WHIP publisher on a name
//! the config never names, a str0m WHEP viewer of it, and the path gone once both left.

mod common;

use std::thread;
use std::time::Duration;

use relay::config::Config;
use relay_testkit::publisher::{self as whip, Publisher};
use relay_testkit::viewer::Viewer;
use relay_testkit::{http, wait, whep};
use str0m::media::MediaKind;

use common::{start, WORKERS};

/// The loopback relay of these tests with the `paths` of `yaml`.
fn with_paths(yaml: &str) -> Config {
    let paths = Config::from_yaml(yaml).expect("a config the relay takes");
    Config {
        paths: paths.paths,
        path_patterns: paths.path_patterns,
        ..relay_testkit::config::loopback(WORKERS)
    }
}

/// Whether any metric names path `name` (relay's label `path`, MediaMTX's `name` on
/// its paths family).
fn mentioned(relay: &relay_testkit::process::RelayProcess, name: &str) -> bool {
    let text = relay.metrics().unwrap();
    text.contains(&format!("path=\"{name}\"")) || text.contains(&format!("name=\"{name}\""))
}

#[test]
fn all_others_takes_a_publisher_on_any_name_and_forgets_the_path_after() {
    let relay = start(&with_paths("paths:\n  all_others:\n"));
    let agent = http::agent(Duration::from_secs(10));
    let name = "lobby/door-1";
    let early = whep::post_offer(&agent, &whep::endpoint(&relay.http, name), "v=0\r\n").unwrap();
    assert_eq!(early.status, 404, "{}", early.body);
    assert!(
        early.body.contains("waiting for a publisher"),
        "{}",
        early.body
    );

    let mut publisher = Publisher::connect(&relay.http, name).expect("all_others takes it");
    let publishing = thread::spawn(move || {
        publisher.run_for(Duration::from_secs(5));
        publisher
    });
    thread::sleep(Duration::from_millis(1500));
    let mut viewer = Viewer::connect(&relay.http, name);
    viewer.run_for(Duration::from_millis(2500));
    assert!(viewer.connected);
    let video = viewer
        .ssrc_of(MediaKind::Video)
        .expect("video reaches the viewer");
    let stream = &viewer.received.streams[&video];
    assert!(stream.len() >= 40, "only {} video packets", stream.len());
    let readers = format!("relay_path_readers{{path=\"{name}\"}}");
    assert_eq!(relay.metric(&readers).unwrap(), 1.0);
    assert_eq!(
        relay
            .metric(&format!("paths_readers{{name=\"{name}\"}}"))
            .unwrap(),
        1.0
    );

    let publisher = publishing.join().unwrap();
    assert_eq!(publisher.delete(), 200);
    assert_eq!(viewer.delete(), 200);
    let gone = || wait::eventually(Duration::from_secs(5), || !mentioned(&relay, name));
    assert!(
        gone(),
        "{name}'s metrics stay:\n{}",
        relay.metrics().unwrap()
    );
    common::eventually_404(&relay.http, name, "waiting for a publisher");
    // That offer made the path for a moment: it goes again.
    assert!(gone(), "{name} made by a refused offer stays");
}

#[test]
fn names_a_pattern_matches_keep_the_rules_of_path_names() {
    let relay = start(&with_paths("paths:\n  '~^cam(\\d+)$':\n"));
    let agent = http::agent(Duration::from_secs(10));
    let post = |path: &str| {
        let offer = "v=0\r\n";
        whep::post_offer(&agent, &whip::endpoint(&relay.http, path), offer).unwrap()
    };
    let check = |reply: whep::Reply, status: u16, reason: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(reply.body.contains(reason), "{}", reply.body);
    };
    check(
        post("cam1/whep/x"),
        400,
        "'cam1/whep/x' is not a path name: 'whep' cannot be part of a path name",
    );
    check(post("cam%201"), 400, "'%' is not allowed in a path name");
    check(post("door"), 404, "no path named 'door' is configured");
    // A name the pattern matches reaches the offer's own check.
    check(post("cam7"), 400, "the SDP offer was refused");
}

#[test]
fn a_regex_path_pulls_the_camera_its_groups_name_while_watched() {
    let camera =
        relay_testkit::rtsp_server::RtspServer::start(relay_testkit::rtsp_server::RtspAuth::None)
            .expect("GStreamer's RTSP server starts");
    let relay = start(&with_paths(
        "paths:\n  '~^cam(\\d+)/(h264|h265)$':\n    source: rtsp://127.0.0.1:$G1/$G2\n    \
         sourceOnDemand: yes\n    sourceOnDemandStartTimeout: 15s\n    \
         sourceOnDemandCloseAfter: 1s\n",
    ));
    let name = format!("cam{}/h264", camera.port);
    // The offer waits for the camera (sourceOnDemandStartTimeout).
    let mut viewer = Viewer::connect(&relay.http, &name);
    viewer.run_for(Duration::from_secs(2));
    let video = viewer
        .ssrc_of(MediaKind::Video)
        .expect("the camera's video");
    let stream = &viewer.received.streams[&video];
    assert!(stream.len() > 20, "only {} video packets", stream.len());
    let ready = format!("relay_path_state{{path=\"{name}\",state=\"ready\"}}");
    assert_eq!(relay.metric(&ready).unwrap(), 1.0);

    assert_eq!(viewer.delete(), 200);
    let gone = wait::eventually(Duration::from_secs(10), || !mentioned(&relay, &name));
    assert!(gone, "{name}'s metrics stay:\n{}", relay.metrics().unwrap());
    let log = relay.log().join("\n");
    assert!(log.contains("no viewers: closing the source"), "{log}");
}
