//! A real browser plays the demo: headless Chromium, driven over W3C WebDriver through
//! chromedriver, opens the relay's player page and decodes the stream, first in one tab,
//! then in two at once; and a fake camera published from the publish page by WHIP is
//! decoded by a player in a second tab.
//!
//! The browser is the test kit's (`relay_testkit::chromium`). Needs `chromium` and
//! `chromedriver` on PATH (`cargo xtask setup` installs them): the
//! test fails, not skips, without them.

mod common;

use std::time::{Duration, Instant};

use relay::config::Config;
use relay_testkit::chromium::{Chromium, PlayerState};
use relay_testkit::config::{loopback, paths, publisher};
use relay_testkit::process::RelayProcess;

use common::{demo_config, start, WORKERS};
/// How long a player may take to connect and show its first decoded frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(20);
/// The window over which decoding must keep going.
const DECODE_WINDOW: Duration = Duration::from_secs(2);
/// The demo is 30 fps: a player that decodes fewer than half its frames is stalling.
const MIN_FRAMES_IN_WINDOW: u64 = 30;

/// Asserts that a player went on decoding the demo between two samples.
fn assert_plays(tab: &str, before: &PlayerState, after: &PlayerState) {
    let decoded = after.frames_decoded() - before.frames_decoded();
    assert!(
        decoded > MIN_FRAMES_IN_WINDOW,
        "{tab}: only {decoded} frames decoded in {DECODE_WINDOW:?}: {after:?}"
    );
    let v = after.inbound();
    assert_eq!(
        (v.frame_width, v.frame_height),
        (640, 360),
        "{tab}: decoded size"
    );
    assert_eq!(
        (after.video_width, after.video_height),
        (640, 360),
        "{tab}: <video> size"
    );
    // Loopback loses nothing: lost packets mean gaps in the relay's sequence numbers.
    assert!(
        v.packets_lost * 100 <= v.packets_received as i64,
        "{tab}: {} of {} packets lost",
        v.packets_lost,
        v.packets_received
    );
    assert_eq!(after.status.as_deref(), Some("playing"), "{tab}: status");
}

/// Asserts that the relay's metrics counted at least the packets the players received.
/// Read after the players' stats: the relay has sent at least that much by then.
fn assert_counted(relay: &RelayProcess, players: &[&PlayerState]) {
    let received: u64 = players.iter().map(|p| p.inbound().packets_received).sum();
    let sent = relay.metric("relay_rtp_packets_sent_total").unwrap();
    assert!(
        received > 0 && sent >= received as f64,
        "relay counted {sent} packets sent, the players received {received}"
    );
}

#[test]
fn chromium_plays_the_demo_in_one_then_two_tabs() {
    let relay = start(&demo_config());
    let chromium = Chromium::start(&[]).unwrap();
    let page = format!("{}/demo/", relay.http);
    let started = Instant::now();

    chromium.goto(&page).unwrap();
    let first_tab = chromium.window().unwrap();
    chromium.wait_for_first_frame(FIRST_FRAME_WITHIN).unwrap();
    eprintln!("first frame after {:?}", started.elapsed());
    let before = chromium.player().unwrap();
    std::thread::sleep(DECODE_WINDOW);
    let after = chromium.player().unwrap();
    assert_plays("tab 1", &before, &after);
    let codec = after.inbound().codec.clone().unwrap_or_default();
    assert!(codec.starts_with("video/H264"), "codec: {codec}");
    assert_counted(&relay, &[&after]);

    // A second player beside the first: both decode at once.
    let second_tab = chromium.new_tab().unwrap();
    chromium.switch_to(&second_tab).unwrap();
    chromium.goto(&page).unwrap();
    chromium.wait_for_first_frame(FIRST_FRAME_WITHIN).unwrap();
    let tabs = [("tab 1", &first_tab), ("tab 2", &second_tab)];
    let sample = || -> Vec<PlayerState> {
        tabs.iter()
            .map(|(_, w)| {
                chromium.switch_to(w).unwrap();
                chromium.player().unwrap()
            })
            .collect()
    };
    let before = sample();
    std::thread::sleep(DECODE_WINDOW);
    let after = sample();
    for (i, (tab, _)) in tabs.iter().enumerate() {
        assert_plays(tab, &before[i], &after[i]);
    }
    assert_counted(&relay, &after.iter().collect::<Vec<_>>());
    for (i, (tab, _)) in tabs.iter().enumerate() {
        let (b, a) = (before[i].inbound(), after[i].inbound());
        eprintln!(
            "{tab}: {} frames in {DECODE_WINDOW:?}, {} packets received, {} lost",
            a.frames_decoded - b.frames_decoded,
            a.packets_received,
            a.packets_lost
        );
    }

    // Past the relay's consent timeout (20 s), the first tab still plays: Chrome's
    // consent checks are answered once str0m is gone from the session.
    std::thread::sleep(Duration::from_secs(24).saturating_sub(started.elapsed()));
    chromium.switch_to(&first_tab).unwrap();
    let before = chromium.player().unwrap();
    std::thread::sleep(DECODE_WINDOW);
    let after = chromium.player().unwrap();
    assert_plays("tab 1 after 24 s", &before, &after);
    eprintln!("done after {:?}", started.elapsed());
}

/// The player page's status line.
const STATUS_JS: &str = "return document.getElementById('status').textContent;";

/// The publish page's state (`window.publishState()`).
const PUBLISH_STATE_JS: &str = "return window.publishState ? window.publishState().state : null;";

#[test]
fn chromium_publishes_a_fake_camera_from_the_publish_page_and_another_tab_decodes_it() {
    let relay = start(&Config {
        paths: paths([
            ("live", publisher(true)),
            ("vp8", publisher(true)),
            ("vp9", publisher(true)),
            ("av1", publisher(true)),
        ]),
        ..loopback(WORKERS)
    });
    let chromium = Chromium::start(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ])
    .unwrap();
    // Before anyone publishes, the player page shows the path's state, not a black video.
    let early = chromium.new_tab().unwrap();
    chromium.switch_to(&early).unwrap();
    chromium.goto(&format!("{}/live/", relay.http)).unwrap();
    let deadline = Instant::now() + FIRST_FRAME_WITHIN;
    loop {
        let status = chromium.execute(STATUS_JS).expect("player status");
        let status = status.as_str().unwrap_or_default().to_string();
        if status.contains("waiting for a publisher") {
            eprintln!("player before publishing: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "player status: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let publisher = chromium.new_tab().unwrap();
    chromium.switch_to(&publisher).unwrap();

    // The page's default (H264), then each codec chosen in the URL, on a path of its own.
    publish_and_watch(&chromium, &format!("{}/live", relay.http), "", "video/H264");
    // The early player retried on its own and plays.
    chromium.switch_to(&early).unwrap();
    chromium.wait_for_first_frame(FIRST_FRAME_WITHIN).unwrap();
    for codec in ["VP8", "VP9", "AV1"] {
        let publisher = chromium.new_tab().unwrap();
        chromium.switch_to(&publisher).unwrap();
        let path = format!("{}/{}", relay.http, codec.to_lowercase());
        let query = format!("&codec={codec}");
        publish_and_watch(&chromium, &path, &query, &format!("video/{codec}"));
    }
}

/// Opens `path`'s publish page in the current tab, waits until it publishes, then
/// watches the path in a new tab and asserts that it decodes `codec`.
fn publish_and_watch(chromium: &Chromium, path: &str, query: &str, codec: &str) {
    chromium
        .goto(&format!("{path}/publish?autostart{query}"))
        .unwrap();
    let deadline = Instant::now() + FIRST_FRAME_WITHIN;
    loop {
        let state = chromium.execute(PUBLISH_STATE_JS).expect("publish state");
        let state = state.as_str().unwrap_or_default().to_string();
        if state.starts_with("publishing") {
            eprintln!("publish page {path}: {state}");
            break;
        }
        assert!(!state.starts_with("error"), "publish page {path}: {state}");
        assert!(
            Instant::now() < deadline,
            "{path}: not publishing within {FIRST_FRAME_WITHIN:?}: {state}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let player = chromium.new_tab().unwrap();
    chromium.switch_to(&player).unwrap();
    chromium.goto(&format!("{path}/")).unwrap();
    chromium.wait_for_first_frame(FIRST_FRAME_WITHIN).unwrap();
    let before = chromium.player().unwrap();
    std::thread::sleep(DECODE_WINDOW);
    let after = chromium.player().unwrap();
    let decoded = after.frames_decoded() - before.frames_decoded();
    let v = after.inbound();
    eprintln!(
        "player {path}: {decoded} frames in {DECODE_WINDOW:?}, {}x{}, codec {:?}",
        v.frame_width, v.frame_height, v.codec
    );
    // Chromium's fake camera runs at 20 fps or more.
    assert!(
        decoded >= 20,
        "{path}: only {decoded} frames decoded in {DECODE_WINDOW:?}: {after:?}"
    );
    let got = v.codec.clone().unwrap_or_default();
    assert!(
        got.starts_with(codec),
        "{path}: decoded {got}, expected {codec}"
    );
}
