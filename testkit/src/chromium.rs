//! Headless Chromium driven over W3C WebDriver through chromedriver, and what it sees of
//! the relay's player page: its status, its peer connection's inbound video stats.
//!
//! Needs `chromium` and `chromedriver` on PATH (`cargo xtask setup` installs them).
//!
//! A small hand-written WebDriver client over ureq rather than fantoccini: the kit uses
//! a dozen endpoints, ureq and serde_json are here already, its users are synchronous,
//! and fantoccini (async, plus a hyper-util connector to build it) adds ~25 crates and
//! over a minute of CPU to every clean test build; it also lacks chromedriver's
//! browser-log endpoint, which the failure report reads.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tempdir::TempDir;

pub const SETUP_HINT: &str = "run `cargo xtask setup` (it installs chromium and chromedriver)";

const DRIVER_LOG: &str = "chromedriver.log";
/// How long chromedriver has to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(10);
/// How long one WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

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
  remoteCandidate: null,
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
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const remote = pair && report.get(pair.remoteCandidateId);
        if (remote) state.remoteCandidate = remote.address + ":" + remote.port;
      }
    });
    done(state);
  }, (e) => { state.error = String(e); done(state); });
}
"#;

/// What [`Chromium::player`] reads of the player page in the current window.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PlayerState {
    pub status: Option<String>,
    pub video_width: u32,
    pub video_height: u32,
    pub inbound: Option<InboundVideo>,
    /// The relay's address on the selected candidate pair, `IP:PORT`.
    pub remote_candidate: Option<String>,
}

/// The fields of RTCInboundRtpStreamStats the kit's users check (some appear only once
/// the first frame is decoded, some only in newer Chromium: those are `None` until then).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct InboundVideo {
    pub frames_decoded: u64,
    pub frames_dropped: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub bytes_received: u64,
    pub nack_count: u64,
    pub pli_count: u64,
    pub freeze_count: u64,
    pub total_freezes_duration: f64,
    pub retransmitted_packets_received: Option<u64>,
    pub retransmitted_bytes_received: Option<u64>,
    pub codec: Option<String>,
}

impl PlayerState {
    pub fn frames_decoded(&self) -> u64 {
        self.inbound.as_ref().map_or(0, |v| v.frames_decoded)
    }

    /// The inbound video stats; panics (for tests) if there are none yet.
    pub fn inbound(&self) -> &InboundVideo {
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
/// drop ends all of them; with a fresh profile directory, removed on drop. Dropped
/// while the thread panics, it prints [`Chromium::failure_report`] first.
pub struct Chromium {
    driver: Child,
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    dir: TempDir,
}

impl Chromium {
    /// Chromium with the kit's switches and `extra` ones.
    pub fn start(extra: &[&str]) -> anyhow::Result<Chromium> {
        let chromedriver =
            on_path("chromedriver").context(format!("no chromedriver: {SETUP_HINT}"))?;
        let browser = on_path("chromium").context(format!("no chromium: {SETUP_HINT}"))?;
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
            .with_context(|| format!("start chromedriver: {SETUP_HINT}"))?;
        // Port 0: chromedriver picks a free port and says which on stdout.
        let stdout = BufReader::new(driver.stdout.take().expect("piped"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut chromium = Chromium {
            driver,
            agent: crate::http::agent(COMMAND_TIMEOUT),
            session: String::new(),
            dir,
        };
        let deadline = Instant::now() + DRIVER_START;
        let port = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(wait)
                .map_err(|_| anyhow!("chromedriver did not say its port: {SETUP_HINT}"))?;
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').parse::<u16>().context("port")?;
            }
        };
        let profile = chromium.dir.path().join("profile");
        let mut args: Vec<String> = CHROME_ARGS
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 10_000, "pageLoad": 20_000},
        }}});
        let created = chromium
            .webdriver(
                "POST",
                &format!("http://127.0.0.1:{port}/session"),
                Some(&capabilities),
            )
            .map_err(|e| {
                anyhow!(
                    "new session: {e}\n{}\n{SETUP_HINT}",
                    chromium.driver_log_tail(40)
                )
            })?;
        let id = created["sessionId"].as_str().context("sessionId")?;
        chromium.session = format!("http://127.0.0.1:{port}/session/{id}");
        Ok(chromium)
    }

    /// One command of this session: `path` after `/session/ID`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.webdriver(method, &format!("{}{path}", self.session), body.as_ref())
    }

    /// Opens `url` in the current window; returns once it has loaded.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .with_context(|| format!("open {url}"))
            .map(drop)
    }

    pub fn window(&self) -> anyhow::Result<String> {
        let v = self.cmd("GET", "/window", None)?;
        v.as_str().map(Into::into).context("window handle")
    }

    pub fn windows(&self) -> anyhow::Result<Vec<String>> {
        let v = self.cmd("GET", "/window/handles", None)?;
        Ok(serde_json::from_value(v)?)
    }

    pub fn new_tab(&self) -> anyhow::Result<String> {
        let v = self.cmd("POST", "/window/new", Some(json!({ "type": "tab" })))?;
        v["handle"].as_str().map(Into::into).context("handle")
    }

    pub fn switch_to(&self, window: &str) -> anyhow::Result<()> {
        self.cmd("POST", "/window", Some(json!({ "handle": window })))
            .map(drop)
    }

    /// Runs `script` (a function body) in the current window; what it returns.
    pub fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Has every document the current tab opens from now on run `script` before its
    /// own scripts (DevTools' `Page.addScriptToEvaluateOnNewDocument`, through
    /// chromedriver): it sees the page from its first moment, whatever WebDriver's
    /// round trips cost.
    pub fn on_new_document(&self, script: &str) -> anyhow::Result<()> {
        let params = json!({ "cmd": "Page.addScriptToEvaluateOnNewDocument",
                             "params": { "source": script } });
        self.cmd("POST", "/goog/cdp/execute", Some(params))
            .map(drop)
    }

    /// The player's state in the current window, as raw JSON.
    pub fn player_json(&self) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({ "script": PLAYER_STATE_JS, "args": [] })),
        )
    }

    pub fn player(&self) -> anyhow::Result<PlayerState> {
        let v = self.player_json().context("read player state")?;
        serde_json::from_value(v.clone()).with_context(|| format!("player state {v}"))
    }

    /// Polls the current window until its player has decoded a frame and the video
    /// element knows its size.
    pub fn wait_for_first_frame(&self, within: Duration) -> anyhow::Result<PlayerState> {
        let deadline = Instant::now() + within;
        loop {
            let state = self.player()?;
            if state.frames_decoded() > 0 && state.video_width > 0 {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                bail!("no decoded frame within {within:?}: {state:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// chromedriver's collected console messages of the current window.
    pub fn console_log(&self) -> anyhow::Result<Vec<String>> {
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

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(DRIVER_LOG)).unwrap_or_default()
    }

    fn driver_log_tail(&self, lines: usize) -> String {
        let log = self.driver_log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Everything that helps tell why a player did not play: per window the status
    /// text, connection state, SDP offer and answer, inbound stats and console messages,
    /// then chromedriver's warnings. Never panics.
    pub fn failure_report(&self) -> String {
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
        let log = self.driver_log();
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("][WARNING]:") || l.contains("][SEVERE]:"))
            .collect();
        out + &format!("---- chromedriver warnings\n{}\n", problems.join("\n"))
    }

    /// One W3C WebDriver command: its `value`, or the error chromedriver gave.
    fn webdriver(&self, method: &str, url: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let response = match (method, body) {
            ("POST", Some(body)) => self
                .agent
                .post(url)
                .content_type("application/json")
                .send(body.to_string()),
            ("GET", None) => self.agent.get(url).call(),
            ("DELETE", None) => self.agent.delete(url).call(),
            _ => bail!("{method} with body {body:?}: not a WebDriver command"),
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let mut reply: Value =
            serde_json::from_str(&text).with_context(|| format!("{method} {url}: {text}"))?;
        let value = reply["value"].take();
        if status != 200 {
            bail!(
                "{method} {url}: HTTP {status}: {}: {}",
                value["error"],
                value["message"]
            );
        }
        Ok(value)
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
