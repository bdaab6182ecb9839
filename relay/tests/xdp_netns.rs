//! The XDP program attached to a real interface: a veth pair between two network
//! namespaces this test makes (unique names, deleted on drop; addresses only inside
//! them). The program runs in native mode on the relay's end; the client's end sends
//! ping, TCP, UDP to another port and datagrams to the media port. Needs root.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use relay::io::xdp::{Counter, XdpError, XdpMode, XdpProgram};
use relay_testkit::netns::{run, within, Pair};

use common::netns::{
    check_other_traffic, net, wait_until_detached, xdp_on_relay_interface, CLIENT4, CLIENT6,
    RELAY4, RELAY6, RELAY_IF,
};
use common::xdp::{options, MEDIA_PORT};

fn attach(net: &Pair, mode: XdpMode) -> Result<XdpProgram, XdpError> {
    net.relay
        .enter(|| XdpProgram::attach(RELAY_IF, &options(mode, 10, 5)))
}

/// Receives one datagram within `timeout`, if one comes.
fn recv(socket: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buffer = [0u8; 2048];
    socket.recv(&mut buffer).ok().map(|n| buffer[..n].to_vec())
}

fn counters(program: &XdpProgram) -> Vec<(Counter, u64)> {
    program.counters().expect("read the counters")
}

fn datagram(first_byte: u8, seq: u8) -> [u8; 20] {
    let mut datagram = [seq; 20];
    datagram[0] = first_byte;
    datagram
}

#[test]
fn attached_program_leaves_other_traffic_alone_and_admits_only_sessions() {
    let net = net(2);
    let program = attach(&net, XdpMode::Native).unwrap_or_else(|error| panic!("{error}"));
    let xdp = xdp_on_relay_interface(&net);
    assert!(
        xdp.as_deref()
            .is_some_and(|word| word.starts_with("prog/xdp") || word == "xdp"),
        "native XDP on {RELAY_IF}: {xdp:?}"
    );

    // Ping, TCP, UDP to another port, through the interface.
    check_other_traffic(&net, 7000, 7001);
    let seen = counters(&program);
    let taken =
        |counter: Counter| counter.action() != "passed" || counter == Counter::PassedNoSocket;
    assert!(
        seen.iter().all(|&(counter, n)| n == 0 || !taken(counter)),
        "XDP took or dropped some of the above: {seen:?}"
    );

    // The media port. No AF_XDP socket is registered here, so what the program
    // redirects falls back to the kernel: this socket sees exactly what XDP let through.
    for (relay, client) in [(RELAY4, CLIENT4), (RELAY6, CLIENT6)] {
        let media = net
            .relay
            .enter(|| UdpSocket::bind((relay, MEDIA_PORT)).unwrap());
        let viewer = net.client.enter(|| UdpSocket::bind((client, 0)).unwrap());
        let viewer_addr = viewer.local_addr().unwrap();
        let send = |first_byte, seq| {
            viewer
                .send_to(&datagram(first_byte, seq), (relay, MEDIA_PORT))
                .unwrap()
        };
        send(0x80, 1); // RTP from an unknown source: dropped in XDP
        send(0x00, 2); // STUN from it: let through
        assert_eq!(
            recv(&media, Duration::from_secs(2)),
            Some(datagram(0x00, 2).to_vec()),
            "the STUN datagram from {client}, not the RTP before it"
        );
        let mut admission = program.admission().unwrap();
        admission.admit(viewer_addr).unwrap();
        send(0x80, 3);
        assert_eq!(
            recv(&media, Duration::from_secs(2)),
            Some(datagram(0x80, 3).to_vec())
        );
        admission.revoke(viewer_addr).unwrap();
        send(0x80, 4);
        assert_eq!(
            recv(&media, Duration::from_millis(300)),
            None,
            "revoked {viewer_addr}"
        );
    }
    // Other counters (not ours, IPv6 extension headers) move with the namespaces'
    // own traffic (MLD reports carry a hop-by-hop header).
    let seen = counters(&program);
    for (counter, n) in &seen {
        let expected = match counter {
            Counter::DroppedUnknownSource | Counter::PassedNoSocket => 4,
            Counter::PassedNotOurs | Counter::PassedIpv6Extension => continue,
            _ => 0,
        };
        assert_eq!(*n, expected, "{} in {seen:?}", counter.name());
    }

    drop(program);
    assert_eq!(xdp_on_relay_interface(&net), None, "detached on drop");
}

#[test]
fn an_interface_without_native_xdp_is_refused_with_the_way_out() {
    let net = net(2);
    // Loopback has no native XDP (and this kernel has no dummy driver); this is the
    // namespace's own.
    let attach = |mode| {
        net.relay
            .enter(|| XdpProgram::attach("lo", &options(mode, 10, 5)))
    };
    let error = attach(XdpMode::Native).unwrap_err();
    assert!(matches!(error, XdpError::NoNativeXdp { .. }), "{error:?}");
    let message = error.to_string();
    for needed in [
        "driver of lo",
        "no native XDP",
        "generic XDP mode",
        "without --xdp",
    ] {
        assert!(message.contains(needed), "{needed:?} not in: {message}");
    }
    let program = attach(XdpMode::Generic).unwrap_or_else(|error| panic!("{error}"));
    let link = net.relay.ip(&["link", "show", "dev", "lo"]).unwrap();
    assert!(link.contains("xdpgeneric"), "{link}");
    drop(program);
    let link = net.relay.ip(&["link", "show", "dev", "lo"]).unwrap();
    assert!(!link.contains("xdp"), "{link}");
}

/// Set for the child process of `kill_9_...`: the namespace to attach in.
const HOLDER_NETNS: &str = "RELAY_XDP_HOLDER_NETNS";

#[test]
fn kill_9_leaves_no_program_attached_and_the_next_attach_works() {
    let net = net(2);
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holds_an_attachment_until_killed", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(HOLDER_NETNS, &net.relay.name)
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, stdout) = mpsc::channel();
    let holder_stdout = holder.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(holder_stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let program_id = loop {
        let line = stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the holder attaches within 30 s");
        // libtest prints "test <name> ... " first, on the same line.
        if let Some((_, id)) = line.split_once("ATTACHED ") {
            break id.trim().to_owned();
        }
    };
    assert!(
        xdp_on_relay_interface(&net).is_some(),
        "the holder's program"
    );
    run("bpftool", &["prog", "show", "id", &program_id]).unwrap();

    // While it is held, another relay is told the interface is taken.
    let error = attach(&net, XdpMode::Native).unwrap_err();
    assert!(matches!(error, XdpError::Busy { .. }), "{error:?}");
    assert!(
        error.to_string().contains("already has an XDP program"),
        "{error}"
    );

    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    let gone = wait_until_detached(&net, &program_id, Instant::now());
    println!("detached and unloaded {gone:?} after the holder died");

    let program = attach(&net, XdpMode::Native).unwrap_or_else(|error| panic!("{error}"));
    assert!(xdp_on_relay_interface(&net).is_some(), "attached again");
    drop(program);
    assert_eq!(xdp_on_relay_interface(&net), None);
}

/// The child process of `kill_9_...`: attaches, reports, and waits to be killed
/// (at most 60 s, or until its stdin closes).
#[test]
#[ignore = "a helper process that kill_9_leaves_no_program_attached_and_the_next_attach_works starts"]
fn holds_an_attachment_until_killed() {
    let Some(netns) = std::env::var_os(HOLDER_NETNS) else {
        return;
    };
    let netns = netns.into_string().unwrap();
    let program = within(&netns, || {
        XdpProgram::attach(RELAY_IF, &options(XdpMode::Native, 10, 5))
    })
    .unwrap_or_else(|error| panic!("{error}"));
    println!("ATTACHED {}", program.info().unwrap().id());
    let (done, wait) = mpsc::channel();
    thread::spawn(move || {
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        let _ = done.send(());
    });
    let _ = wait.recv_timeout(Duration::from_secs(60));
    drop(program);
}
