//! The relay in XDP mode, end to end: the relay binary runs in one network namespace
//! with `xdpInterface` on its veth end, str0m WHEP viewers in the other (an attacker, in
//! a third, reaches the same interface through the viewers' namespace). The same checks
//! as portable mode (whep.rs), what XDP adds (floods dropped in the kernel, other
//! traffic untouched), and its life cycle (kill -9, restart, refused configs). Needs
//! root; about 20 s.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use relay::config::{Config, LogLevel, XdpMode};
use relay_common::LOG_TARGET;
use relay_testkit::config::{demo, paths, to_yaml, LOOPBACK_ANY_PORT};
use relay_testkit::metrics::exported;
use relay_testkit::netns::{Netns, Pair};
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;

use common::netns::{
    attacker, check_other_traffic, net, wait_until_detached, xdp_on_relay_interface, ATTACKER4,
    CLIENT4, CLIENT6, RELAY4, RELAY_IF,
};
use common::{assert_demo_stream, check_late_joiner, check_nack_recovery, RELAY};

const MEDIA_PORT: u16 = 8189;
/// What server.rs lets an unknown address send as STUN through XDP (STUN_RATE, STUN_BURST).
const STUN_RATE: f64 = 50.0;
const STUN_BURST: f64 = 100.0;

const REDIRECTED: &str = r#"relay_xdp_packets_total{action="redirected"}"#;
const DROPPED_UNKNOWN_SOURCE: &str =
    r#"relay_xdp_packets_total{action="dropped",reason="unknown_source"}"#;
const DROPPED_STUN_RATE_LIMIT: &str =
    r#"relay_xdp_packets_total{action="dropped",reason="stun_rate_limit"}"#;
const PASSED_NOT_OURS: &str = r#"relay_xdp_packets_total{action="passed",reason="not_ours"}"#;
/// What the workers took from their AF_XDP sockets.
const RECEIVED: &str = "relay_datagrams_received_total";

/// Tests that flood or count CPU-sensitive losses run one at a time: two floods on two
/// cores would starve the viewers they watch.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A relay config: HTTP on the relay's address, metrics on the namespace's loopback,
/// media on port 8189 of every address (`[::]`: IPv4 and IPv6), XDP on the relay's veth
/// end, the demo at /demo/.
fn config() -> Config {
    Config {
        webrtc_address: format!("{RELAY4}:0").parse().unwrap(),
        webrtc_local_udp_address: format!("[::]:{MEDIA_PORT}").parse().unwrap(),
        xdp_interface: Some(RELAY_IF.into()),
        paths: paths([("demo", demo())]),
        metrics: true,
        metrics_address: LOOPBACK_ANY_PORT,
        ..Config::default()
    }
}

/// The relay with `config` in the relay's namespace of `net`.
fn in_net(net: &Pair, config: &Config) -> Launch {
    common::launch(config).in_netns(&net.relay)
}

fn launch(net: &Pair) -> RelayProcess {
    in_net(net, &config()).start().expect("the relay starts")
}

fn client4() -> IpAddr {
    CLIENT4.parse().unwrap()
}

/// A viewer in the client's namespace, its socket bound to `ip`.
fn viewer(net: &Pair, relay: &RelayProcess, ip: IpAddr) -> Viewer {
    let http = relay.http.clone();
    net.client
        .enter(move || Viewer::connect_from(&http, "demo", ip))
}

/// The relay namespace's kernel UDP datagrams, IPv4 and IPv6 together: (in, out).
fn kernel_udp(net: &Pair) -> (u64, u64) {
    let (in4, in6) = net.relay.udp_counter("InDatagrams").unwrap();
    let (out4, out6) = net.relay.udp_counter("OutDatagrams").unwrap();
    (in4 + in6, out4 + out6)
}

/// Asserts that the viewer got the demo through AF_XDP, not the kernel's UDP stack,
/// given the kernel's counters before and after; returns how many packets it got.
fn assert_through_af_xdp(
    relay: &RelayProcess,
    v: &Viewer,
    before: (u64, u64),
    after: (u64, u64),
) -> usize {
    assert!(v.connected, "ICE and DTLS completed over AF_XDP");
    let n = assert_demo_stream(v);
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
    // Everything the workers received (STUN, DTLS, SRTCP) was redirected by XDP.
    let metrics = relay.metrics().unwrap();
    let redirected = exported(&metrics, REDIRECTED).unwrap();
    let received = exported(&metrics, RECEIVED).unwrap();
    assert!(
        received >= 5.0 && redirected >= received,
        "XDP redirected {redirected}, workers received {received}:\n{metrics}"
    );
    assert!(exported(&metrics, "relay_rtp_packets_sent_total").unwrap() >= n as f64);
    n
}

#[test]
fn a_viewer_gets_the_demo_through_af_xdp_not_the_kernel_udp_stack() {
    let net = net(2);
    let relay = launch(&net);
    let before = kernel_udp(&net);
    let mut v = viewer(&net, &relay, client4());
    v.run_for(Duration::from_secs(3));
    let after = kernel_udp(&net);
    let n = assert_through_af_xdp(&relay, &v, before, after);
    assert!(n > 100, "only {n} packets in ~2.5 s of a 30 fps stream");
    assert_eq!(net.client.enter(|| v.delete()), 200);
}

#[test]
fn an_ipv6_viewer_gets_the_demo_through_af_xdp() {
    let net = net(2);
    let relay = launch(&net);
    let before = kernel_udp(&net);
    let mut v = viewer(&net, &relay, CLIENT6.parse().unwrap());
    v.run_for(Duration::from_secs(3));
    let after = kernel_udp(&net);
    let n = assert_through_af_xdp(&relay, &v, before, after);
    assert!(n > 100, "only {n} packets over IPv6");
}

#[test]
fn a_late_viewer_starts_on_a_keyframe_and_the_first_loses_nothing() {
    let net = net(2);
    let relay = launch(&net);
    let first = viewer(&net, &relay, client4());
    check_late_joiner(first, || viewer(&net, &relay, client4()));
}

#[test]
fn lost_packets_are_recovered_by_nack_through_af_xdp() {
    let net = net(2);
    let relay = launch(&net);
    let v = viewer(&net, &relay, client4());
    check_nack_recovery(&relay, v, Duration::from_secs(3));
}

#[test]
fn ping_tcp_and_other_udp_pass_through_the_interface_while_the_relay_runs() {
    let net = net(2);
    let relay = launch(&net);
    let passed = relay.metric(PASSED_NOT_OURS).unwrap();
    // TCP to the media port's number too: XDP takes only UDP.
    check_other_traffic(&net, MEDIA_PORT, MEDIA_PORT + 1);
    // 4 echo requests, 2 datagrams, a TCP connection's segments: all seen and passed.
    let seen = relay.metric(PASSED_NOT_OURS).unwrap() - passed;
    assert!(seen >= 10.0, "XDP passed {seen} packets");
    assert_eq!(
        relay.metric(REDIRECTED).unwrap(),
        0.0,
        "XDP took some of it"
    );
    assert_eq!(
        relay.metric(RECEIVED).unwrap(),
        0.0,
        "the workers got some of it"
    );
}

/// The relay's metrics `selectors` (see `RelayProcess::metric`), read at once.
fn read<const N: usize>(relay: &RelayProcess, selectors: [&str; N]) -> [f64; N] {
    let metrics = relay.metrics().unwrap();
    selectors.map(|selector| exported(&metrics, selector).unwrap())
}

/// Sends `count` datagrams to `to` from `sockets` in turn, each made by `datagram(i)`,
/// at most `rate` a second and for at most `limit`. Returns how many were sent and how
/// long it took.
fn flood(
    sockets: &[UdpSocket],
    to: SocketAddr,
    count: u64,
    rate: f64,
    limit: Duration,
    datagram: impl Fn(u64) -> Vec<u8>,
) -> (u64, Duration) {
    let started = Instant::now();
    let mut sent = 0;
    for i in 0..count {
        if i % 256 == 0 {
            let elapsed = started.elapsed();
            if elapsed > limit {
                break;
            }
            let due = Duration::from_secs_f64(i as f64 / rate);
            thread::sleep(due.saturating_sub(elapsed));
        }
        let socket = &sockets[i as usize % sockets.len()];
        if socket.send_to(&datagram(i), to).is_ok() {
            sent += 1;
        }
    }
    (sent, started.elapsed())
}

/// Sockets in `attacker` on each of its addresses, two ports each.
fn attacker_sockets(attacker: &Netns) -> Vec<UdpSocket> {
    attacker.enter(|| {
        ATTACKER4
            .iter()
            .flat_map(|ip| [ip; 2])
            .map(|ip| UdpSocket::bind((*ip, 0)).unwrap())
            .collect()
    })
}

#[test]
fn an_unknown_source_flood_is_dropped_in_xdp_and_the_viewer_loses_nothing() {
    let _alone = alone();
    let net = net(2);
    let attacker = attacker(&net);
    let relay = launch(&net);
    let mut v = viewer(&net, &relay, client4());
    v.run_for(Duration::from_secs(1));
    assert!(v.connected);

    let watched = [
        DROPPED_UNKNOWN_SOURCE,
        RECEIVED,
        "relay_dropped_unknown_source_total",
        "relay_nacks_received_total",
    ];
    let before = read(&relay, watched);
    let kernel_before = (kernel_udp(&net), net.relay.udp_counter("InErrors").unwrap());
    let sockets = attacker_sockets(&attacker);
    // RTP, RTCP, DTLS, and of no class: none of it STUN.
    let first_bytes = [0x80, 0x81, 0x90, 22, 0x40, 0xff];
    let to = SocketAddr::new(RELAY4.parse().unwrap(), MEDIA_PORT);
    let (v, (sent, took)) = thread::scope(|scope| {
        let watching = scope.spawn(move || {
            v.run_for(Duration::from_secs(5));
            v
        });
        let datagram = |i: u64| {
            let mut d = vec![i as u8; 200];
            d[0] = first_bytes[i as usize % first_bytes.len()];
            d
        };
        let limit = Duration::from_secs(5);
        let flooded = flood(&sockets, to, 200_000, 60_000.0, limit, datagram);
        (watching.join().unwrap(), flooded)
    });
    let after = read(&relay, watched);
    let kernel_after = (kernel_udp(&net), net.relay.udp_counter("InErrors").unwrap());
    let [dropped, received, unknown_in_workers, nacks]: [f64; 4] =
        std::array::from_fn(|i| after[i] - before[i]);
    eprintln!(
        "flood: {sent} datagrams in {took:?}; XDP dropped {dropped}, workers received \
         {received}, the viewer NACKed {nacks}"
    );
    assert_eq!(sent, 200_000, "the flood took {took:?}");
    assert!(
        dropped >= sent as f64 * 0.99 && dropped <= sent as f64,
        "XDP dropped {dropped} of {sent} unknown-source datagrams"
    );
    // None of it reached the workers (they took only the viewer's RTCP and STUN) or
    // the kernel's UDP stack.
    assert!(received < 100.0, "the workers received {received}");
    assert_eq!(
        unknown_in_workers, 0.0,
        "unknown sources reached the workers"
    );
    assert!(
        kernel_after.0 .0 - kernel_before.0 .0 < 5 && kernel_after.1 == kernel_before.1,
        "kernel UDP (in, out), errors: {kernel_before:?} -> {kernel_after:?}"
    );
    // Nothing lost: continuous, and nothing had to be recovered.
    let n = assert_demo_stream(&v);
    assert!(n > 150, "the viewer got {n} packets in 6 s");
    assert_eq!(nacks, 0.0, "the viewer lost packets during the flood");
}

/// A STUN binding request for an ICE ufrag the relay never gave out.
fn guessed_binding_request(i: u64) -> Vec<u8> {
    // USERNAME "guess:x", padded to 8 bytes.
    let username = [
        0x00, 0x06, 0, 7, b'g', b'u', b'e', b's', b's', b':', b'x', 0,
    ];
    let mut d = vec![0x00, 0x01, 0, username.len() as u8];
    d.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]); // magic cookie
    d.extend_from_slice(&[0; 4]);
    d.extend_from_slice(&i.to_be_bytes()); // transaction id
    d.extend_from_slice(&username);
    d
}

#[test]
fn a_stun_flood_from_one_address_is_rate_limited_in_xdp_not_the_viewers_stun() {
    let _alone = alone();
    let net = net(2);
    let attacker = attacker(&net);
    let relay = launch(&net);
    // The attacker's checks that reach the workers are counted there: no session has
    // that ufrag.
    let watched = [DROPPED_STUN_RATE_LIMIT, "relay_dropped_unknown_ufrag_total"];
    let before = read(&relay, watched);
    let socket = attacker.enter(|| UdpSocket::bind((ATTACKER4[0], 0)).unwrap());
    let to = SocketAddr::new(RELAY4.parse().unwrap(), MEDIA_PORT);
    // A viewer joins from another address meanwhile: its ICE checks have their own
    // bucket.
    let (v, (sent, took)) = thread::scope(|scope| {
        let flooding = scope.spawn(|| {
            flood(
                std::slice::from_ref(&socket),
                to,
                20_000,
                10_000.0,
                Duration::from_secs(3),
                guessed_binding_request,
            )
        });
        thread::sleep(Duration::from_millis(200));
        let mut v = viewer(&net, &relay, client4());
        v.run_for(Duration::from_millis(2500));
        (v, flooding.join().unwrap())
    });
    let after = read(&relay, watched);
    let [rate_limited, reached]: [f64; 2] = std::array::from_fn(|i| after[i] - before[i]);
    let allowed = STUN_BURST + STUN_RATE * took.as_secs_f64() + 2.0;
    eprintln!(
        "STUN flood: {sent} in {took:?}; XDP let {reached} through (at most {allowed:.0}), \
         dropped {rate_limited}"
    );
    assert_eq!(sent, 20_000);
    assert!(
        reached >= STUN_BURST * 0.9 && reached <= allowed,
        "{reached} of the attacker's STUN reached the workers"
    );
    assert!(
        rate_limited >= sent as f64 * 0.99 - reached && rate_limited <= sent as f64 - reached,
        "XDP dropped {rate_limited} of {sent} over the rate"
    );
    assert!(v.connected, "the viewer's ICE went through meanwhile");
    assert_demo_stream(&v);
}

/// Sends, from a fresh port of the client, what an unknown source may and may not send:
/// RTP (dropped in XDP) and a STUN check (redirected to a worker). Returns the port.
fn rtp_then_stun_from_the_client(net: &Pair) -> u16 {
    let socket = net.client.enter(|| UdpSocket::bind((CLIENT4, 0)).unwrap());
    let to = SocketAddr::new(RELAY4.parse().unwrap(), MEDIA_PORT);
    socket.send_to(&[0x80; 20], to).unwrap();
    socket.send_to(&guessed_binding_request(1), to).unwrap();
    socket.local_addr().unwrap().port()
}

/// The relay at `logLevel: debug` logs the XDP program's decisions through aya-log,
/// with the source of each datagram (IPv4 as the program keys it: v4-mapped).
fn decisions_are_logged_at_debug_level(structured: bool) {
    let net = net(2);
    let debug = Config {
        log_level: LogLevel::Debug,
        log_structured: structured,
        ..config()
    };
    let relay = in_net(&net, &debug).start().expect("the relay starts");
    let port = rtp_then_stun_from_the_client(&net);
    let source = format!("::ffff:{CLIENT4} port {port}");
    let expected = [
        format!("dropped a datagram from {source}: unknown source, and not STUN"),
        format!("redirected STUN from {source} to the socket of queue"),
    ];
    let logged = |line: &String, message: &str| {
        line.contains(message)
            && line.contains(LOG_TARGET)
            && line.contains("DEBUG")
            && line.starts_with('{') == structured
    };
    let all_logged = eventually(Duration::from_secs(5), || {
        let log = relay.log();
        expected
            .iter()
            .all(|message| log.iter().any(|line| logged(line, message)))
    });
    assert!(all_logged, "{expected:?} not logged:\n{}", relay.log_tail());
}

#[test]
fn at_debug_level_the_programs_decisions_are_in_the_log() {
    decisions_are_logged_at_debug_level(false);
}

#[test]
fn at_debug_level_the_programs_decisions_are_in_the_structured_log() {
    decisions_are_logged_at_debug_level(true);
}

#[test]
fn at_the_default_level_the_program_logs_nothing() {
    let net = net(2);
    let relay = launch(&net);
    let watched = [DROPPED_UNKNOWN_SOURCE, REDIRECTED];
    let before = read(&relay, watched);
    rtp_then_stun_from_the_client(&net);
    let decided = eventually(Duration::from_secs(5), || {
        let after = read(&relay, watched);
        (0..watched.len()).all(|i| after[i] > before[i])
    });
    assert!(
        decided,
        "XDP dropped and redirected: {:?}",
        read(&relay, watched)
    );
    let program_lines: Vec<String> = relay
        .log()
        .into_iter()
        .filter(|line| line.contains(LOG_TARGET))
        .collect();
    assert!(program_lines.is_empty(), "{program_lines:#?}");
}

/// The id of the XDP program on the relay's interface (`ip -d link`: "prog/xdp id N").
fn xdp_program_id(net: &Pair) -> Option<String> {
    let link = net
        .relay
        .ip(&["-d", "link", "show", "dev", RELAY_IF])
        .unwrap();
    let mut words = link.split_whitespace();
    words.find(|w| w.starts_with("prog/xdp"))?;
    (words.next()? == "id").then(|| words.next().map(str::to_owned))?
}

#[test]
fn kill_9_leaves_no_program_attached_and_a_restarted_relay_serves() {
    let net = net(2);
    let mut relay = launch(&net);
    assert_eq!(
        xdp_on_relay_interface(&net).as_deref(),
        Some("xdp"),
        "native XDP"
    );
    let id = xdp_program_id(&net).expect("the program's id");
    let status = relay.kill().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let gone = wait_until_detached(&net, &id, Instant::now());
    eprintln!("detached and unloaded {gone:?} after kill -9");

    let relay = launch(&net);
    assert!(xdp_on_relay_interface(&net).is_some());
    let mut v = viewer(&net, &relay, client4());
    v.run_for(Duration::from_secs(2));
    assert!(v.connected, "a viewer of the restarted relay");
    assert!(assert_demo_stream(&v) > 30);
}

/// The id of the BPF link that holds XDP program `program` (`bpftool link show`:
/// "N: xdp  prog M").
fn xdp_link_of(program: &str) -> Option<String> {
    let out = std::process::Command::new("bpftool")
        .args(["link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [id, "xdp", "prog", prog, ..] if prog == program => {
                    Some(id.trim_end_matches(':').to_string())
                }
                _ => None,
            }
        })
}

/// The kernel refuses `ip link set dev IFACE xdp off` while the relay's link holds the
/// interface; a link detached anyway (`bpftool link detach`) is found within a second
/// and the program attached again, logged and counted. Meanwhile the viewer watching
/// goes on (AF_XDP transmits without the program), and afterwards a new one connects
/// through XDP.
#[test]
fn xdp_detached_by_hand_is_attached_again_and_viewers_go_on() {
    // The viewer's NACKs lost while detached must be answered after: not beside a flood.
    let _alone = alone();
    let net = net(2);
    let relay = launch(&net);
    let watching = Driven::start(viewer(&net, &relay, client4()));
    assert!(eventually(Duration::from_secs(5), || watching
        .with(|v| v.packets() > 30)));
    let program = xdp_program_id(&net).expect("the program's id");

    let off = net
        .relay
        .ip(&["link", "set", "dev", RELAY_IF, "xdp", "off"]);
    assert!(off.is_err(), "the kernel keeps a linked program: {off:?}");
    assert_eq!(xdp_program_id(&net).as_deref(), Some(program.as_str()));

    let link = xdp_link_of(&program).expect("the relay's XDP link");
    let detached = std::process::Command::new("bpftool")
        .args(["link", "detach", "id", &link])
        .status()
        .unwrap();
    assert!(detached.success(), "bpftool link detach id {link}");
    let again = eventually(Duration::from_secs(5), || {
        xdp_program_id(&net).as_deref() == Some(program.as_str())
    });
    assert!(again, "the relay attached its program again");
    assert!(relay.logs_eventually("attached it again"));
    assert_eq!(relay.metric("relay_xdp_reattached_total").unwrap(), 1.0);

    let before = watching.with(|v| v.packets());
    let mut late = viewer(&net, &relay, client4());
    late.run_for(Duration::from_secs(2));
    assert!(
        late.connected,
        "a new viewer's checks reach the relay through XDP"
    );
    assert!(assert_demo_stream(&late) > 30);
    let watched = watching.stop();
    assert!(watched.packets() > before + 30, "the first viewer goes on");
    assert_demo_stream(&watched);
}

#[test]
fn generic_mode_works_when_asked() {
    let net = net(2);
    let generic = Config {
        xdp_mode: XdpMode::Generic,
        ..config()
    };
    let relay = in_net(&net, &generic).start().expect("the relay starts");
    assert_eq!(xdp_on_relay_interface(&net).as_deref(), Some("xdpgeneric"));
    let warned = relay
        .log()
        .iter()
        .any(|line| line.contains("WARN") && line.contains("generic mode"));
    assert!(warned, "a warning says what generic mode costs");
    let before = kernel_udp(&net);
    let mut v = viewer(&net, &relay, client4());
    v.run_for(Duration::from_secs(2));
    let after = kernel_udp(&net);
    assert_through_af_xdp(&relay, &v, before, after);
}

/// Asserts that `launch` was refused with exit code 1 and a message holding each of
/// `says`; returns the message.
fn assert_refused(launch: Launch, says: &[&str]) -> String {
    let started = Instant::now();
    let (code, stderr) = launch.refused().unwrap();
    assert_eq!(code, Some(1), "exit code; stderr: {stderr}");
    for needed in says {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?} to refuse",
        started.elapsed()
    );
    stderr
}

#[test]
fn bad_xdp_configs_fail_fast_saying_why_and_how_to_run_without_xdp() {
    let net = net(2);
    let portable = "without --xdp";
    let on = |xdp_interface: &str| Config {
        xdp_interface: Some(xdp_interface.into()),
        ..config()
    };
    assert_refused(
        in_net(&net, &on("nosuch0")),
        &["nosuch0", "ip link", portable],
    );
    // Loopback has no native XDP.
    assert_refused(
        in_net(&net, &on("lo")),
        &[
            "driver of lo",
            "no native XDP",
            "xdpMode: generic",
            portable,
        ],
    );
    let lo = net.relay.ip(&["link", "show", "dev", "lo"]).unwrap();
    assert!(!lo.contains("xdp"));
    let any_port = Config {
        webrtc_local_udp_address: "[::]:0".parse().unwrap(),
        ..config()
    };
    assert_refused(in_net(&net, &any_port), &["fixed media port"]);
    // A mode the type cannot hold: written into the file by hand.
    let fast = to_yaml(&config()).replace("xdpMode: native\n", "xdpMode: fast\n");
    assert!(fast.contains("xdpMode: fast"), "{fast}");
    assert_refused(
        Launch::yaml(RELAY, fast).in_netns(&net.relay),
        &["xdpMode", "native", "generic"],
    );
    // Not privileged: the same config as root works (every other test here).
    let nobody = as_nobody_with(&[]);
    let nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    assert_refused(
        in_net(&net, &config()).through(&nobody),
        &["CAP_BPF", portable],
    );
    assert_eq!(xdp_on_relay_interface(&net), None);
}

/// The capabilities relay's errors and docs name for XDP without root.
const XDP_CAPABILITIES: [&str; 5] = ["bpf", "perfmon", "net_admin", "net_raw", "ipc_lock"];

/// A `setpriv` line that runs the rest as user nobody with only `capabilities`.
fn as_nobody_with(capabilities: &[&str]) -> Vec<String> {
    let mut line: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .map(String::from)
    .into();
    if !capabilities.is_empty() {
        let caps: Vec<String> = capabilities.iter().map(|c| format!("+{c}")).collect();
        line.push(format!("--inh-caps={}", caps.join(",")));
        line.push(format!("--ambient-caps={}", caps.join(",")));
    }
    line
}

#[test]
fn the_capabilities_the_errors_name_are_enough_without_root() {
    let net = net(2);
    // Each one left out is named by the error.
    for (missing, says) in [("perfmon", "CAP_PERFMON"), ("ipc_lock", "CAP_IPC_LOCK")] {
        let caps: Vec<&str> = XDP_CAPABILITIES
            .into_iter()
            .filter(|c| *c != missing)
            .collect();
        let line = as_nobody_with(&caps);
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        let launch = in_net(&net, &config()).through(&line);
        let stderr = assert_refused(launch, &[says, "without --xdp"]);
        assert!(!stderr.contains("bug in the relay"), "{stderr}");
    }
    let line = as_nobody_with(&XDP_CAPABILITIES);
    let line: Vec<&str> = line.iter().map(String::as_str).collect();
    let relay = in_net(&net, &config()).through(&line).start().unwrap();
    let mut v = viewer(&net, &relay, client4());
    v.run_for(Duration::from_secs(2));
    assert!(v.connected && assert_demo_stream(&v) > 30);
    assert!(relay.metric(REDIRECTED).unwrap() > 0.0);
}
