//! Janus Gateway (Debian's `janus`, 1.1) as the peer the relay is measured against:
//! its streaming plugin with RTP mountpoints (or RTSP ones, pulling cameras), run by
//! the bench with a config of its own, and viewers that watch through its JSON API over
//! HTTP.
//!
//! Janus gathers ICE candidates only on interfaces not flagged loopback (src/ice.c),
//! with no setting to change that. A `getifaddrs` preload shim that clears
//! IFF_LOOPBACK (`benches/janus/loopback_ifaddrs.c`), with `ice_enforce_list =
//! "127.0.0.1"`, gives it a host candidate on 127.0.0.1. (An address on a veth does not
//! help: its ICE library pins sockets to the interface it gathered on.)
//!
//! Janus offers and the viewer answers (`relay_testkit::client::Client::answer`). Janus
//! is the full ICE agent that controls; the viewer's str0m is full ICE too, controlled.

use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_testkit::client::Client;
use relay_testkit::http::agent;
use relay_testkit::log::Log;
use relay_testkit::tempdir::TempDir;
use serde_json::{json, Value};

use crate::sink::Sink;

/// The binary Debian's package installs.
pub const JANUS: &str = "/usr/bin/janus";
/// Where Debian's package puts the plugins and transports.
const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// The one plugin and the one transport the bench loads; the rest are disabled.
const STREAMING: &str = "libjanus_streaming.so";
const HTTP: &str = "libjanus_http.so";
const SHIM_SOURCE: &str = include_str!("../janus/loopback_ifaddrs.c");
/// Lines of Janus's log kept to explain a failure.
const LOG_TAIL: usize = 40;
/// How long Janus may take to answer its HTTP API after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Janus has to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the JSEP offer after `watch`.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// What Janus serves and how it runs.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    /// RTP mountpoints 1..=N: mountpoint i+1 takes H264 (payload type 96) on
    /// 127.0.0.1, port `base_port + i * port_step`.
    pub mountpoints: usize,
    pub base_port: u16,
    pub port_step: u16,
    /// Janus's `event_loops`: threads shared by all handles. 0 is Janus's default, a
    /// thread per handle; 2 is the tuned setting (0.34 cores at 100 viewers of a
    /// 2 Mbit/s stream against 0.59, and no collapse at 300).
    pub event_loops: usize,
    /// Ports Janus's ICE agent binds for viewers (`rtp_port_range`); keep the
    /// mountpoints' ports out of it.
    pub ice_ports: RangeInclusive<u16>,
    /// RTSP mountpoints instead of RTP ones: mountpoint i+1 pulls this URL with
    /// `{stream}` replaced by i (video only; Janus's RTSP client takes RTP over UDP
    /// only). `base_port` and `port_step` are then unused.
    pub rtsp: Option<String>,
}

impl Default for JanusOptions {
    fn default() -> JanusOptions {
        JanusOptions {
            mountpoints: 1,
            base_port: 5004,
            port_step: 2,
            event_loops: 2,
            ice_ports: 40000..=49999,
            rtsp: None,
        }
    }
}

impl JanusOptions {
    /// The port mountpoint `id` (from 1) takes RTP on.
    pub fn video_port(&self, id: u64) -> u16 {
        self.base_port + (id as u16 - 1) * self.port_step
    }
}

/// Janus in a child process with its config folder in a temporary directory, stopped
/// on drop.
pub struct JanusProcess {
    child: Child,
    /// Its JSON API: `http://127.0.0.1:PORT/janus`.
    pub http: String,
    /// Its config folder.
    _dir: TempDir,
    log: Log,
}

impl JanusProcess {
    /// Writes the config, starts Janus with the loopback shim preloaded, and waits (up
    /// to 20 s) until its API answers `info`.
    pub fn start(opts: &JanusOptions) -> anyhow::Result<JanusProcess> {
        if !Path::new(JANUS).exists() {
            bail!("{JANUS} not found: install Debian's janus package (cargo xtask setup)");
        }
        let shim = loopback_shim()?;
        let dir = TempDir::new("janus");
        let port = free_tcp_port()?;
        write_config(dir.path(), opts, port)?;
        let mut child = Command::new(JANUS)
            .arg("--configs-folder")
            .arg(dir.path())
            .arg("--disable-colors")
            .env("LD_PRELOAD", &shim)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {JANUS}"))?;
        let log = Log::default();
        log.follow(child.stdout.take().expect("piped"), None);
        log.follow(child.stderr.take().expect("piped"), None);
        let mut janus = JanusProcess {
            child,
            http: format!("http://127.0.0.1:{port}/janus"),
            _dir: dir,
            log,
        };
        janus.wait_ready()?;
        Ok(janus)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let agent = agent(Duration::from_secs(1));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "janus exited ({status}) on start; its log:\n{}",
                    self.log_tail()
                );
            }
            let info = agent
                .get(&format!("{}/info", self.http))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|body| serde_json::from_str::<Value>(&body).ok());
            if info.is_some_and(|i| i["janus"] == "server_info") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "janus did not answer {}/info within {START_TIMEOUT:?}; its log:\n{}",
                    self.http,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines Janus logged.
    pub fn log_tail(&self) -> String {
        self.log.tail(LOG_TAIL)
    }

    /// SIGTERM, then SIGKILL if Janus is still there after 5 s; waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill only sends a signal, to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Writes janus.jcfg, its HTTP transport's and its streaming plugin's config into `dir`.
fn write_config(dir: &Path, opts: &JanusOptions, http_port: u16) -> anyhow::Result<()> {
    let disabled = |kind: &str, keep: &str| -> anyhow::Result<String> {
        let folder = Path::new(LIBRARY).join(kind);
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .with_context(|| format!("reading {}", folder.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".so") && n != keep)
            .collect();
        names.sort();
        Ok(names.join(","))
    };
    let (ice_first, ice_last) = (opts.ice_ports.start(), opts.ice_ports.end());
    let janus = format!(
        r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{LIBRARY}/plugins"
	transports_folder = "{LIBRARY}/transports"
	events_folder = "{LIBRARY}/events"
	loggers_folder = "{LIBRARY}/loggers"
	log_to_stdout = true
	debug_level = 3
	# Viewers send no keepalives: their sessions live until Janus stops.
	session_timeout = 0
	event_loops = {event_loops}
}}
media: {{
	rtp_port_range = "{ice_first}-{ice_last}"
}}
nat: {{
	ice_lite = false
	ice_tcp = false
	# Candidates in the offer: viewers need no trickle.
	full_trickle = false
	# With the loopback shim: a host candidate on 127.0.0.1 and no other.
	ice_enforce_list = "127.0.0.1"
}}
plugins: {{
	disable = "{plugins}"
}}
transports: {{
	disable = "{transports}"
}}
loggers: {{
	disable = "{loggers}"
}}
events: {{
	broadcast = false
}}
"#,
        dir = dir.display(),
        event_loops = opts.event_loops,
        plugins = disabled("plugins", STREAMING)?,
        transports = disabled("transports", HTTP)?,
        loggers = disabled("loggers", "")?,
    );
    let http = format!(
        r#"general: {{
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {http_port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"#
    );
    // RTSP mountpoints take their RTP on ports from this range: out of the viewers' ICE
    // range, the publisher's ports (30000 up) and the sink viewers' (20000 up).
    let mut streaming = String::from("general: {\n\trtp_port_range = \"50000-59999\"\n}\n");
    for id in 1..=opts.mountpoints as u64 {
        let source = match &opts.rtsp {
            // Janus's default reconnect delay, written out: 5 s without media.
            Some(url) => format!(
                r#"	type = "rtsp"
	url = "{url}"
	rtsp_reconnect_delay = 5
"#,
                url = url.replace("{stream}", &(id - 1).to_string())
            ),
            None => format!(
                r#"	type = "rtp"
	videoiface = "127.0.0.1"
	videoport = {port}
	videopt = 96
	videocodec = "h264"
	videofmtp = "profile-level-id=42e01f;packetization-mode=1"
"#,
                port = opts.video_port(id)
            ),
        };
        streaming += &format!(
            r#"mountpoint-{id}: {{
	id = {id}
	audio = false
	video = true
{source}}}
"#
        );
    }
    std::fs::write(dir.join("janus.jcfg"), janus)?;
    std::fs::write(dir.join("janus.transport.http.jcfg"), http)?;
    std::fs::write(dir.join("janus.plugin.streaming.jcfg"), streaming)?;
    Ok(())
}

/// A TCP port on 127.0.0.1 free a moment ago (Janus's HTTP transport cannot take 0).
fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The shim compiled with gcc into the build's output directory, once per version of
/// its source.
fn loopback_shim() -> anyhow::Result<PathBuf> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SHIM_SOURCE.hash(&mut hasher);
    let dir = Path::new(env!("OUT_DIR"));
    let library = dir.join(format!("loopback_ifaddrs-{:016x}.so", hasher.finish()));
    if library.exists() {
        return Ok(library);
    }
    let source = dir.join("loopback_ifaddrs.c");
    std::fs::write(&source, SHIM_SOURCE)?;
    // Built under a name of its own, then renamed: tests that start Janus at once
    // never load a half-written library.
    let partial = library.with_extension(format!("{}.partial", std::process::id()));
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&partial)
        .arg(&source)
        .arg("-ldl")
        .output()
        .context(
            "cannot run gcc to build the Janus loopback shim: install gcc (cargo xtask setup)",
        )?;
    if !out.status.success() {
        bail!(
            "gcc failed to build the Janus loopback shim (install gcc: cargo xtask setup):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&partial, &library)?;
    Ok(library)
}

/// A viewer of mountpoint `mountpoint` of the Janus at `http` (`JanusProcess::http`),
/// on a socket bound to `local`: a session of its own, `watch`, the offer answered by
/// str0m, `start`. Returns the sink for `Driver::add` and the session's URL (for
/// `leave`). The session lives without keepalives (`session_timeout = 0`).
pub fn janus_viewer(
    agent: &ureq::Agent,
    http: &str,
    mountpoint: u64,
    local: SocketAddr,
    verify: bool,
) -> anyhow::Result<(Sink, String)> {
    // Setup time counts from the first request, as a user waits from there.
    let started = Instant::now();
    let session = format!(
        "{http}/{}",
        id_of(&request(agent, http, json!({"janus": "create"}))?)?
    );
    let attached = request(
        agent,
        &session,
        json!({"janus": "attach", "plugin": "janus.plugin.streaming"}),
    )?;
    let handle = format!("{session}/{}", id_of(&attached)?);
    request(
        agent,
        &handle,
        json!({"janus": "message", "body": {"request": "watch", "id": mountpoint}}),
    )?;
    let offer = wait_offer(agent, &session)?;
    // Without the shim Janus still offers candidates, on the other interfaces.
    let loopback = |l: &str| l.starts_with("a=candidate:") && l.contains(" 127.0.0.1 ");
    if !offer.lines().any(loopback) {
        bail!(
            "Janus offered no candidate on 127.0.0.1 (is the loopback shim preloaded?):\n{offer}"
        );
    }
    let (client, answer) = Client::answer(&offer, local)?;
    let sink = Sink::new(client, verify, started)?;
    request(
        agent,
        &handle,
        json!({
            "janus": "message",
            "body": {"request": "start"},
            "jsep": {"type": "answer", "sdp": answer},
        }),
    )?;
    Ok((sink, session))
}

/// Ends a viewer's session (its URL from `janus_viewer`): Janus hangs up its
/// PeerConnection.
pub fn leave(agent: &ureq::Agent, session: &str) -> anyhow::Result<()> {
    request(agent, session, json!({"janus": "destroy"}))?;
    Ok(())
}

/// POSTs a Janus API request to `url`; its reply, unless it is an error.
fn request(agent: &ureq::Agent, url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = json!(fastrand::u64(..).to_string());
    let mut resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("POST {url}"))?;
    let text = resp.body_mut().read_to_string()?;
    let reply: Value =
        serde_json::from_str(&text).with_context(|| format!("POST {url}: not JSON: {text}"))?;
    if reply["janus"] == "error" {
        bail!("POST {url} {body}: {}", reply["error"]);
    }
    Ok(reply)
}

/// `data.id` of a `success` reply (a session's or a handle's).
fn id_of(reply: &Value) -> anyhow::Result<u64> {
    reply["data"]["id"]
        .as_u64()
        .with_context(|| format!("no id in Janus's reply {reply}"))
}

/// Long-polls the session's events until the one carrying the JSEP offer; an error
/// from the plugin ends the wait.
fn wait_offer(agent: &ureq::Agent, session: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + OFFER_TIMEOUT;
    while Instant::now() < deadline {
        let mut resp = agent
            .get(&format!("{session}?maxev=1"))
            .call()
            .with_context(|| format!("GET {session}"))?;
        let text = resp.body_mut().read_to_string()?;
        let event: Value = serde_json::from_str(&text)
            .with_context(|| format!("GET {session}: not JSON: {text}"))?;
        let data = &event["plugindata"]["data"];
        if data.get("error").is_some() {
            bail!("the streaming plugin refused: {data}");
        }
        if let Some(sdp) = event["jsep"]["sdp"].as_str() {
            return Ok(sdp.to_string());
        }
    }
    bail!("no offer from Janus within {OFFER_TIMEOUT:?} ({session})")
}
