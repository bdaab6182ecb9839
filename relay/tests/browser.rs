//! A real browser plays the demo: headless Chromium, driven over W3C WebDriver through
//! chromedriver, opens the relay's player page and decodes the stream, first in one tab,
//! then in two at once.
//!
//! Needs `chromium` and `chromedriver` on PATH (`cargo xtask setup` installs them): the
//! test fails, not skips, without them.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use relay_testkit::process::RelayProcess;
use relay_testkit::tempdir::TempDir;

use common::{demo_config, start};
/// How long a player may take to connect and show its first decoded frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(20);
/// The window over which decoding must keep going.
const DECODE_WINDOW: Duration = Duration::from_secs(2);
/// The demo is 30 fps: a player that decodes fewer than half its frames is stalling.
const MIN_FRAMES_IN_WINDOW: u64 = 30;

const DRIVER_LOG: &str = "chromedriver.log";
const SETUP_HINT: &str = "run `cargo xtask setup` (it installs chromium and chromedriver)";

const CHROME_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
];

/// The player page's state and its inbound video stats, read in one async script.
const PLAYER_STATE_JS: &str = r#"
const done = arguments[arguments.length - 1];
const pc = window.relayPlayer && window.relayPlayer.pc;
const video = document.getElementById("video");
const status = document.getElementById("status");
const state = {
  status: status && status.textContent,
  connection: pc && pc.connectionState,
  ice: pc && pc.iceConnectionState,
  videoWidth: video ? video.videoWidth : 0,
  videoHeight: video ? video.videoHeight : 0,
  offer: pc && pc.localDescription && pc.localDescription.sdp,
  answer: pc && pc.remoteDescription && pc.remoteDescription.sdp,
  inbound: null,
};
if (!pc) {
  done(state);
} else {
  pc.getStats().then((report) => {
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        state.inbound = s;
        const codec = report.get(s.codecId);
        state.inbound.codec = codec ? codec.mimeType + " " + (codec.sdpFmtpLine || "") : null;
      }
    });
    done(state);
  }, (e) => { state.error = String(e); done(state); });
}
"#;

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct PlayerState {
    status: Option<String>,
    video_width: u32,
    video_height: u32,
    inbound: Option<InboundVideo>,
}

/// The fields of RTCInboundRtpStreamStats this test checks (some appear only once
/// the first frame is decoded).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct InboundVideo {
    frames_decoded: u64,
    frame_width: u32,
    frame_height: u32,
    packets_received: u64,
    packets_lost: i64,
    codec: Option<String>,
}

impl PlayerState {
    fn frames_decoded(&self) -> u64 {
        self.inbound.as_ref().map_or(0, |v| v.frames_decoded)
    }
    fn inbound(&self) -> &InboundVideo {
        self.inbound.as_ref().expect("inbound-rtp video stats")
    }
}

/// Finds an executable on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// chromedriver and the Chromium it starts, in a process group of their own so that
/// drop ends all of them; with a fresh profile directory, removed on drop.
///
/// A small hand-written WebDriver client over ureq rather than fantoccini: the test
/// uses eight endpoints, ureq and serde_json are here already, the harness is
/// synchronous, and fantoccini (async, plus a hyper-util connector to build it) adds
/// ~25 crates and over a minute of CPU to every clean test build; it also lacks
/// chromedriver's browser-log endpoint, which the failure report reads.
struct Chromium {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    dir: TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        let chromedriver =
            on_path("chromedriver").unwrap_or_else(|| panic!("no chromedriver: {SETUP_HINT}"));
        let browser = on_path("chromium").unwrap_or_else(|| panic!("no chromium: {SETUP_HINT}"));
        let dir = TempDir::new("chromium");
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .arg(format!(
                "--log-path={}",
                dir.path().join(DRIVER_LOG).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start chromedriver: {e}: {SETUP_HINT}"));
        // Port 0: chromedriver picks a free port and says which on stdout.
        let stdout = BufReader::new(driver.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(wait)
                .unwrap_or_else(|_| panic!("chromedriver did not say its port: {SETUP_HINT}"));
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').parse::<u16>().expect("port");
            }
        };
        let mut chromium = Chromium {
            driver,
            session: String::new(),
            dir,
        };
        let profile = chromium.dir.path().join("profile");
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 10_000, "pageLoad": 20_000},
        }}});
        let created = webdriver(
            "POST",
            &format!("http://127.0.0.1:{port}/session"),
            Some(&capabilities),
        )
        .unwrap_or_else(|e| {
            panic!(
                "new session: {e}\n{}\n{SETUP_HINT}",
                chromium.driver_log_tail(40)
            )
        });
        let id = created["sessionId"].as_str().expect("sessionId");
        chromium.session = format!("http://127.0.0.1:{port}/session/{id}");
        chromium
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        webdriver(method, &format!("{}{path}", self.session), body.as_ref())
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    fn window(&self) -> String {
        self.cmd("GET", "/window", None)
            .unwrap()
            .as_str()
            .unwrap()
            .into()
    }

    fn windows(&self) -> Result<Vec<String>, String> {
        let v = self.cmd("GET", "/window/handles", None)?;
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn new_tab(&self) -> String {
        let v = self
            .cmd("POST", "/window/new", Some(json!({ "type": "tab" })))
            .expect("new tab");
        v["handle"].as_str().expect("handle").into()
    }

    fn switch_to(&self, window: &str) -> Result<(), String> {
        self.cmd("POST", "/window", Some(json!({ "handle": window })))
            .map(drop)
    }

    /// The player's state in the current window, as raw JSON.
    fn player_json(&self) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({ "script": PLAYER_STATE_JS, "args": [] })),
        )
    }

    fn player(&self) -> PlayerState {
        let v = self.player_json().expect("read player state");
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("player state {v}: {e}"))
    }

    /// Polls the current window until its player has decoded a frame and the video
    /// element knows its size.
    fn wait_for_first_frame(&self) {
        let deadline = Instant::now() + FIRST_FRAME_WITHIN;
        loop {
            let state = self.player();
            if state.frames_decoded() > 0 && state.video_width > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no decoded frame within {FIRST_FRAME_WITHIN:?}: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// chromedriver's collected console messages of the current window.
    fn console_log(&self) -> Result<Vec<String>, String> {
        let v = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                format!("{} {}", field("level"), field("message"))
            })
            .collect())
    }

    fn driver_log(&self) -> PathBuf {
        self.dir.path().join(DRIVER_LOG)
    }

    fn driver_log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.driver_log()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Everything that helps tell why a player did not play: per window the status
    /// text, connection state, SDP offer and answer, inbound stats and console messages,
    /// then chromedriver's warnings. Never panics.
    fn failure_report(&self) -> String {
        let mut out = String::from("==== browser report ====\n");
        for window in self.windows().unwrap_or_default() {
            out += &format!("---- window {window}\n");
            if let Err(e) = self.switch_to(&window) {
                out += &format!("switch: {e}\n");
                continue;
            }
            match self.player_json() {
                Ok(mut v) => {
                    for sdp in ["offer", "answer"] {
                        let text = v[sdp].take();
                        out += &format!("{sdp}:\n{}\n", text.as_str().unwrap_or("(none)"));
                    }
                    out += &format!(
                        "state:\n{}\n",
                        serde_json::to_string_pretty(&v).unwrap_or_default()
                    );
                }
                Err(e) => out += &format!("player state: {e}\n"),
            }
            match self.console_log() {
                Ok(lines) => out += &format!("console:\n{}\n", lines.join("\n")),
                Err(e) => out += &format!("console: {e}\n"),
            }
        }
        // Its INFO lines only echo the commands above.
        let log = std::fs::read_to_string(self.driver_log()).unwrap_or_default();
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("][WARNING]:") || l.contains("][SEVERE]:"))
            .collect();
        out + &format!("---- chromedriver warnings\n{}\n", problems.join("\n"))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Ends the session, which quits Chromium; then the group, should anything remain.
        if !self.session.is_empty() {
            if std::thread::panicking() {
                eprintln!("{}", self.failure_report());
            }
            let _ = self.cmd("DELETE", "", None);
        }
        // SAFETY: kill(2) on the process group of a child we started (its PGID is its PID).
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

/// One W3C WebDriver command: its `value`, or the error chromedriver gave.
fn webdriver(method: &str, url: &str, body: Option<&Value>) -> Result<Value, String> {
    let timeout = Some(Duration::from_secs(30));
    let response = match (method, body) {
        ("POST", Some(body)) => ureq::post(url)
            .config()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .content_type("application/json")
            .send(body.to_string()),
        ("GET", None) => ureq::get(url)
            .config()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .call(),
        ("DELETE", None) => ureq::delete(url)
            .config()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .call(),
        _ => unreachable!("{method} with body {body:?}"),
    };
    let mut response = response.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let mut reply: Value =
        serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}: {text}"))?;
    let value = reply["value"].take();
    if status == 200 {
        Ok(value)
    } else {
        Err(format!(
            "{method} {url}: HTTP {status}: {}: {}",
            value["error"], value["message"]
        ))
    }
}

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
    let chromium = Chromium::start();
    let page = format!("{}/demo/", relay.http);
    let started = Instant::now();

    chromium.goto(&page);
    let first_tab = chromium.window();
    chromium.wait_for_first_frame();
    eprintln!("first frame after {:?}", started.elapsed());
    let before = chromium.player();
    std::thread::sleep(DECODE_WINDOW);
    let after = chromium.player();
    assert_plays("tab 1", &before, &after);
    let codec = after.inbound().codec.clone().unwrap_or_default();
    assert!(codec.starts_with("video/H264"), "codec: {codec}");
    assert_counted(&relay, &[&after]);

    // A second player beside the first: both decode at once.
    let second_tab = chromium.new_tab();
    chromium.switch_to(&second_tab).unwrap();
    chromium.goto(&page);
    chromium.wait_for_first_frame();
    let tabs = [("tab 1", &first_tab), ("tab 2", &second_tab)];
    let sample = || -> Vec<PlayerState> {
        tabs.iter()
            .map(|(_, w)| {
                chromium.switch_to(w).unwrap();
                chromium.player()
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
    let before = chromium.player();
    std::thread::sleep(DECODE_WINDOW);
    let after = chromium.player();
    assert_plays("tab 1 after 24 s", &before, &after);
    eprintln!("done after {:?}", started.elapsed());
}
