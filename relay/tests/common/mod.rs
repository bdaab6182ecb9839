//! Test harness: the relay binary in a child process, and a WHEP viewer built on str0m.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A relay process with its own config, killed on drop.
pub struct Relay {
    child: Child,
    pub http: String,
    pub stderr: mpsc::Receiver<String>,
    /// Every line the relay wrote to stderr so far, without terminal colours.
    log: Arc<Mutex<Vec<String>>>,
    /// The network namespace it runs in, if not this process's.
    netns: Option<String>,
    _dir: tempdir::TempDir,
}

pub mod tempdir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "relay-test-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Relay {
    /// Starts the relay with `paths` (YAML under `paths:`) on free ports, loopback only.
    pub fn start(tag: &str, paths_yaml: &str) -> Relay {
        Relay::start_with(tag, paths_yaml, "")
    }

    pub fn start_with(tag: &str, paths_yaml: &str, extra: &str) -> Relay {
        Relay::launch(
            tag,
            &format!(
                "webrtcAddress: 127.0.0.1:0\nwebrtcLocalUDPAddress: 127.0.0.1:0\n\
                 webrtcIPsFromInterfaces: false\nworkers: 2\n{extra}\npaths:\n{paths_yaml}"
            ),
            None,
        )
    }

    /// Starts the relay with this whole config, inside network namespace `netns` if any.
    pub fn launch(tag: &str, config_yaml: &str, netns: Option<&str>) -> Relay {
        Relay::launch_through(tag, config_yaml, netns, &[])
    }

    /// `launch` through `wrapper` (see `serve_command`).
    pub fn launch_through(
        tag: &str,
        config_yaml: &str,
        netns: Option<&str>,
        wrapper: &[&str],
    ) -> Relay {
        let dir = tempdir::TempDir::new(tag);
        let mut child = serve_command(&dir, config_yaml, netns, wrapper)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relay");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("[relay] {line}");
                kept.lock().unwrap().push(strip_ansi(&line));
                let _ = etx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("relay printed its URL");
        let url = line.split(" at ").nth(1).expect("url in line").trim();
        let http = url
            .trim_end_matches('/')
            .rsplit_once('/')
            .unwrap()
            .0
            .to_string();
        Relay {
            child,
            http,
            stderr: erx,
            log,
            netns: netns.map(str::to_owned),
            _dir: dir,
        }
    }

    /// Runs the relay with this config (inside `netns` if any, through `wrapper`, see
    /// `serve_command`) expecting it to refuse to start: its exit code and what it wrote
    /// to stderr. Panics if it is still running after 10 s.
    pub fn refuse(
        config_yaml: &str,
        netns: Option<&str>,
        wrapper: &[&str],
    ) -> (Option<i32>, String) {
        let dir = tempdir::TempDir::new("refused");
        let mut child = serve_command(&dir, config_yaml, netns, wrapper)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relay");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the relay still runs 10 s after starting with:\n{config_yaml}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), stderr)
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the relay with SIGKILL (no destructor, no signal handler runs) and reaps it.
    pub fn kill(&mut self) -> std::process::ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// The Prometheus text, fetched from inside the relay's namespace.
    pub fn metrics(&self) -> String {
        match &self.netns {
            Some(netns) => {
                let (netns, http) = (netns.clone(), self.http.clone());
                std::thread::spawn(move || {
                    netns::enter_netns(&netns);
                    fetch_metrics(&http)
                })
                .join()
                .unwrap()
            }
            None => fetch_metrics(&self.http),
        }
    }

    /// Sum of a metric's samples; panics if the relay has no such metric. `selector` is
    /// a name (all label sets count) or a name with its first labels, in the order the
    /// relay writes them: `relay_xdp_packets_total{action="dropped",reason="stun"}`.
    pub fn metric(&self, selector: &str) -> f64 {
        metric(&self.metrics(), selector)
    }

    /// The lines the relay has written to stderr so far, without terminal colours.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The worker that took session `id` live, from its `viewer live` log line.
    pub fn worker_of(&self, id: &str) -> Option<usize> {
        let session = format!("session={id} ");
        self.log()
            .iter()
            .filter(|l| l.contains("viewer live") && l.contains(&session))
            .find_map(|l| log_field(l, "worker")?.parse().ok())
    }
}

/// The value of `name=value` in a tracing log line.
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// `line` without ANSI escape sequences (tracing colours its output even into a pipe).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sum of the samples `selector` (see [`Relay::metric`]) picks in Prometheus text.
pub fn metric(text: &str, selector: &str) -> f64 {
    let (prefix, next): (&str, &[char]) = match selector.strip_suffix('}') {
        Some(labels) => (labels, &[',', '}']),
        None => (selector, &['{', ' ']),
    };
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(next))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    assert!(
        !samples.is_empty(),
        "the relay exports no metric {selector}:\n{text}"
    );
    samples.iter().sum()
}

/// Sum of every sample whose metric name starts with `prefix` and whose labels include
/// `label` (`worker="0"`, say; "" for all), 0 if there is none: for a family of counters
/// that may grow new members, like `relay_dropped_`.
pub fn metric_prefix_sum(text: &str, prefix: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `relay serve` with `config_yaml` written into `dir`, inside `netns` if any, through
/// `wrapper` (a command that runs the rest of the line, e.g. `setpriv ...`) if any.
fn serve_command(
    dir: &tempdir::TempDir,
    config_yaml: &str,
    netns: Option<&str>,
    wrapper: &[&str],
) -> Command {
    let config: PathBuf = dir.0.join("relay.yml");
    std::fs::write(&config, config_yaml).unwrap();
    let mut line: Vec<&str> = match netns {
        Some(ns) => vec!["ip", "netns", "exec", ns],
        None => Vec::new(),
    };
    line.extend_from_slice(wrapper);
    line.push(env!("CARGO_BIN_EXE_relay"));
    let mut command = Command::new(line[0]);
    command
        .args(&line[1..])
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    command
}

/// The Prometheus text a relay at `http` serves.
pub fn fetch_metrics(http: &str) -> String {
    ureq::get(&format!("{http}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap()
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a viewer received: per SSRC, payloads by extended sequence number.
#[derive(Default, Debug)]
pub struct Received {
    pub streams: BTreeMap<u32, BTreeMap<u64, Vec<u8>>>,
}

/// A WHEP viewer: str0m in RTP mode on a loopback UDP socket.
pub struct Viewer {
    pub rtc: Rtc,
    socket: UdpSocket,
    pub location: String,
    /// The relay's media address, from the answer's candidate.
    pub relay_media: SocketAddr,
    /// The relay's ICE ufrag for this session, from the answer.
    pub relay_ufrag: String,
    pub connected: bool,
    /// STUN binding success responses received: the relay answered our ICE checks.
    pub stun_answers: usize,
    pub received: Received,
    /// Drop the first arrival of every `n`th RTP sequence number (0: none), to make NACKs.
    pub drop_every: u16,
    dropped: HashSet<(u32, u16)>,
    pub dropped_count: usize,
    kinds_by_mid: BTreeMap<str0m::media::Mid, MediaKind>,
}

/// A client, its socket, its offer, and what each of its m-lines receives.
pub type Offering = (
    Rtc,
    UdpSocket,
    SdpOffer,
    str0m::change::SdpPendingOffer,
    BTreeMap<str0m::media::Mid, MediaKind>,
);

pub fn whep_offer(video: bool, audio: bool) -> Offering {
    whep_offer_from("127.0.0.1".parse().unwrap(), video, audio)
}

/// An offer from a client on `ip` (its UDP socket is bound there).
pub fn whep_offer_from(ip: std::net::IpAddr, video: bool, audio: bool) -> Offering {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mut kinds = BTreeMap::new();
    if video {
        kinds.insert(
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None),
            MediaKind::Video,
        );
    }
    if audio {
        kinds.insert(
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None),
            MediaKind::Audio,
        );
    }
    let (offer, pending) = change.apply().unwrap();
    (rtc, socket, offer, pending, kinds)
}

/// POSTs an SDP offer; returns (status, Location, body).
pub fn post_offer(http: &str, path: &str, sdp: &str) -> (u16, Option<String>, String) {
    let resp = ureq::post(&format!("{http}/{path}/whep"))
        .header("Content-Type", "application/sdp")
        .config()
        .http_status_as_error(false)
        .build()
        .send(sdp);
    let mut resp = resp.expect("HTTP request");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, location, body)
}

impl Viewer {
    pub fn connect(http: &str, path: &str) -> Viewer {
        Viewer::connect_from(http, path, "127.0.0.1".parse().unwrap())
    }

    /// A viewer whose media socket is bound to `ip`.
    pub fn connect_from(http: &str, path: &str, ip: std::net::IpAddr) -> Viewer {
        let (mut rtc, socket, offer, pending, kinds_by_mid) = whep_offer_from(ip, true, true);
        let (status, location, body) = post_offer(http, path, &offer.to_sdp_string());
        assert_eq!(status, 201, "WHEP answer: {body}");
        let relay_media = body
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split(' ').collect();
                format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
            })
            .expect("a host candidate in the answer");
        let relay_ufrag = body
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .expect("a=ice-ufrag in the answer")
            .trim()
            .to_string();
        let answer = SdpAnswer::from_sdp_string(&body).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        Viewer {
            rtc,
            socket,
            location: location.expect("Location header"),
            relay_media,
            relay_ufrag,
            connected: false,
            stun_answers: 0,
            received: Received::default(),
            drop_every: 0,
            dropped: HashSet::new(),
            dropped_count: 0,
            kinds_by_mid,
        }
    }

    /// Drives the session for `d` (bounded), collecting media.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 2000];
        while Instant::now() < end {
            let timeout = loop {
                match self.rtc.poll_output().expect("rtc output") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        self.socket.send_to(&t.contents, t.destination).unwrap();
                    }
                    Output::Event(e) => self.on_event(e),
                }
            };
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.socket.set_read_timeout(Some(wait)).unwrap();
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let data = &buf[..n];
                    if self.should_drop(data) {
                        continue;
                    }
                    if data.len() >= 20 && data[..2] == [0x01, 0x01] {
                        self.stun_answers += 1;
                    }
                    let to: SocketAddr = self.socket.local_addr().unwrap();
                    if let Ok(r) = Receive::new(Protocol::Udp, from, to, data) {
                        self.rtc
                            .handle_input(Input::Receive(Instant::now(), r))
                            .expect("input");
                    }
                }
                Err(_) => {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .expect("timeout");
                }
            }
        }
    }

    fn should_drop(&mut self, data: &[u8]) -> bool {
        if self.drop_every == 0
            || data.len() < 12
            || !(128..=191).contains(&data[0])
            || (192..=223).contains(&data[1])
        {
            return false;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        // Nothing before the stream is under way: a receiver cannot NACK what it never
        // knew existed (the very first packet).
        let under_way = self
            .received
            .streams
            .get(&ssrc)
            .is_some_and(|s| s.len() > 10);
        if under_way && seq.is_multiple_of(self.drop_every) && self.dropped.insert((ssrc, seq)) {
            self.dropped_count += 1;
            return true;
        }
        false
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => {
                let stream = self.received.streams.entry(*p.header.ssrc).or_default();
                stream.insert(*p.seq_no, p.payload.to_vec());
            }
            _ => {}
        }
    }

    /// The SSRC the relay sends this kind on (from the answer's a=ssrc lines).
    pub fn ssrc_of(&mut self, kind: MediaKind) -> Option<u32> {
        let mid = *self.kinds_by_mid.iter().find(|(_, k)| **k == kind)?.0;
        self.rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .map(|s| *s.ssrc())
    }

    /// The session's id, as the relay's log names it (the end of the WHEP Location).
    pub fn session_id(&self) -> &str {
        self.location.rsplit('/').next().unwrap()
    }

    /// Media packets received so far, every stream together.
    pub fn packets(&self) -> usize {
        self.received.streams.values().map(|s| s.len()).sum()
    }

    /// Asks the relay for a keyframe (RTCP PLI) on the video stream, at the next drive.
    pub fn request_keyframe(&mut self) {
        let mid = *self
            .kinds_by_mid
            .iter()
            .find(|(_, k)| **k == MediaKind::Video)
            .expect("a video m-line")
            .0;
        self.rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("the video stream is known")
            .request_keyframe(str0m::media::KeyframeRequestKind::Pli);
    }

    /// Sends raw bytes to the relay's media port from this viewer's own address.
    pub fn send_raw(&self, data: &[u8]) {
        self.socket.send_to(data, self.relay_media).unwrap();
    }

    pub fn delete(&self, http: &str) -> u16 {
        let base = http.trim_end_matches('/');
        let origin = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        ureq::delete(&format!("{origin}{}", self.location))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .status()
            .as_u16()
    }
}
/// Checks what `v` received: one video stream, its sequence numbers contiguous, its
/// payloads the demo clip's packets in order (looping), starting on a keyframe. Returns
/// how many packets were checked.
pub fn assert_demo_stream(v: &Viewer) -> usize {
    let clip = relay::ingest::demo::Clip::demo(1452).unwrap();
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
    let payloads: Vec<&[u8]> = seqs.iter().map(|s| &stream[s][..]).collect();
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

/// The late-joiner check of both modes: `first` plays for 1.5 s, then a second viewer
/// (made by `connect`) joins and both play for 3 s. Each gets the demo from a keyframe,
/// contiguous, under its own SSRC; the first got more.
pub fn check_late_joiner(mut first: Viewer, connect: impl FnOnce() -> Viewer) {
    first.run_for(Duration::from_millis(1500));
    let second = connect();
    let viewers = run_all(vec![first, second], Duration::from_secs(3));
    let (a, b) = (
        assert_demo_stream(&viewers[0]),
        assert_demo_stream(&viewers[1]),
    );
    assert!(
        a > b,
        "the first viewer got more ({a}) than the late one ({b})"
    );
    assert!(b > 60, "the late viewer got {b} packets");
    // Different SSRCs and numbering per viewer (RFC 3550 5.1).
    let ssrc = |v: &Viewer| *v.received.streams.keys().next().unwrap();
    assert_ne!(ssrc(&viewers[0]), ssrc(&viewers[1]));
}

/// The loss-recovery check of both modes: `v` drops the first arrival of every 9th
/// packet for `d`, then plays 0.5 s more without dropping. What it got is the demo,
/// contiguous, and `relay` resent at least as many packets as were dropped. Returns `v`.
pub fn check_nack_recovery(relay: &Relay, mut v: Viewer, d: Duration) -> Viewer {
    v.drop_every = 9;
    v.run_for(d);
    // Let the last NACKs be answered without dropping anything more.
    v.drop_every = 0;
    v.run_for(Duration::from_millis(500));
    let n = assert_demo_stream(&v);
    assert!(
        v.dropped_count * 15 > n,
        "dropped {} of {n}",
        v.dropped_count
    );
    let resent = relay.metric("relay_retransmitted_packets_total");
    assert!(
        resent >= v.dropped_count as f64,
        "relay resent {resent} packets for {} dropped",
        v.dropped_count
    );
    v
}

/// Drives several viewers at once, each in its own thread, for `d`.
pub fn run_all(viewers: Vec<Viewer>, d: Duration) -> Vec<Viewer> {
    let handles: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            std::thread::spawn(move || {
                v.run_for(d);
                v
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A viewer driven in a thread of its own until stopped (or dropped), so that it keeps
/// draining its socket and answering the relay while the test does something else.
pub struct Driven {
    viewer: Arc<Mutex<Viewer>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Driven {
    pub fn start(viewer: Viewer) -> Driven {
        let viewer = Arc::new(Mutex::new(viewer));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (viewer.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Alone with the viewer: the test dropped its `Driven`.
            while !s.load(Ordering::Relaxed) && Arc::strong_count(&v) > 1 {
                v.lock().unwrap().run_for(Duration::from_millis(20));
                // Unlocked for a moment: the test thread gets its turn at the viewer.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Driven {
            viewer,
            stop,
            thread,
        }
    }

    /// Runs `f` on the viewer between two slices of driving.
    pub fn with<T>(&self, f: impl FnOnce(&mut Viewer) -> T) -> T {
        f(&mut self.viewer.lock().unwrap())
    }

    /// Stops driving and hands the viewer back.
    pub fn stop(self) -> Viewer {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the viewer's driving thread");
        let viewer = Arc::into_inner(self.viewer).expect("the thread let go of the viewer");
        viewer.into_inner().unwrap()
    }
}

/// A STUN Binding Request as a controlling ICE agent sends it, `username` in USERNAME,
/// its MESSAGE-INTEGRITY keyed with `password`, and a FINGERPRINT.
pub fn binding_request(username: &str, password: &str) -> Vec<u8> {
    use hmac::Mac;
    use is::stun::{StunMessage, TransId};
    fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
    let mut buf = [0u8; 256];
    let n = StunMessage::binding_request(username, TransId::new(), true, 7, 100, false)
        .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
        .unwrap();
    buf[..n].to_vec()
}

/// Polls `cond` every 100 ms for up to `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

pub mod netns;
pub mod xdp;
