//! The network namespaces of the XDP tests, made by each test with the test kit
//! (`relay_testkit::netns`) and deleted on drop: the relay's and a client's, joined by a
//! veth pair (addresses only inside them), and on demand an attacker's, routed through
//! the client's. Needs root.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use relay_testkit::netns::{veth, End, Netns, Pair};

pub const RELAY_IF: &str = "xr0";
pub const CLIENT_IF: &str = "xc0";
pub const RELAY_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
pub const RELAY4: &str = "10.77.0.1";
pub const CLIENT4: &str = "10.77.0.2";
pub const RELAY6: &str = "fd77::1";
pub const CLIENT6: &str = "fd77::2";
/// The attacker's addresses (a subnet of its own behind the client's namespace).
pub const ATTACKER4: [&str; 2] = ["10.77.1.2", "10.77.1.3"];
const ATTACKER_GATEWAY4: &str = "10.77.1.1";
const ATTACKER_IF: &str = "xa0";
const GATEWAY_IF: &str = "xg0";
/// The names of these tests' namespaces begin so.
const NETNS_PREFIX: &str = "relay-xdp";

/// These tests make network namespaces and load XDP programs: without root they fail
/// saying so instead of passing for nothing.
pub fn require_root() {
    relay_testkit::netns::require_root("this test").unwrap_or_else(|e| panic!("{e}"));
}

fn ip(address: &str) -> IpAddr {
    address.parse().expect("an IP address")
}

/// The relay's namespace and the client's, joined by a veth pair of `queues` queues
/// each way (the relay runs a worker per queue): the relay's end `RELAY_IF`, the
/// client's `CLIENT_IF`, each with an IPv4 and an IPv6 address.
pub fn net(queues: usize) -> Pair {
    require_root();
    let end = |interface, mac, v4, v6| End {
        interface,
        mac,
        addresses: vec![(ip(v4), 24), (ip(v6), 64)],
    };
    Pair::new(
        NETNS_PREFIX,
        &end(RELAY_IF, RELAY_MAC, RELAY4, RELAY6),
        &end(CLIENT_IF, CLIENT_MAC, CLIENT4, CLIENT6),
        queues,
    )
    .expect("the namespaces and their veth pair")
}

/// A third namespace with the addresses `ATTACKER4`, whose IPv4 traffic to the relay
/// the client's namespace forwards: it reaches `RELAY_IF` as the client's does, from
/// addresses the relay has never heard of. Deleted when dropped.
pub fn attacker(net: &Pair) -> Netns {
    let attacker = Netns::new(NETNS_PREFIX, "attacker").unwrap();
    let attacker_end = End {
        interface: ATTACKER_IF,
        mac: [0x02, 0x77, 1, 0, 0, 0x02],
        addresses: ATTACKER4.iter().map(|a| (ip(a), 24)).collect(),
    };
    let gateway_end = End {
        interface: GATEWAY_IF,
        mac: [0x02, 0x77, 1, 0, 0, 0x01],
        addresses: vec![(ip(ATTACKER_GATEWAY4), 24)],
    };
    veth(&attacker, &attacker_end, &net.client, &gateway_end, 1).unwrap();
    attacker
        .ip(&["route", "add", "default", "via", ATTACKER_GATEWAY4])
        .unwrap();
    net.client.forward_ipv4().unwrap();
    // Only for the kernel's answers: the relay's own go back to the MAC the
    // datagrams came from.
    net.relay
        .ip(&["route", "add", "10.77.1.0/24", "via", CLIENT4])
        .unwrap();
    attacker
}

/// What `ip -d link` says of the relay's interface about XDP (`None`: no program):
/// "prog/xdp" (native), "prog/xdpgeneric", ...
pub fn xdp_on_relay_interface(net: &Pair) -> Option<String> {
    let link = net
        .relay
        .ip(&["-d", "link", "show", "dev", RELAY_IF])
        .unwrap();
    link.split_whitespace()
        .find(|word| word.starts_with("xdp") || word.starts_with("prog/xdp"))
        .map(str::to_owned)
}

/// Waits until the relay's interface has no XDP program and the program `id` is
/// unloaded, failing 5 s after `since`; how long after `since` that was.
pub fn wait_until_detached(net: &Pair, id: &str, since: Instant) -> Duration {
    loop {
        let attached = xdp_on_relay_interface(net);
        let loaded = Command::new("bpftool")
            .args(["prog", "show", "id", id])
            .output()
            .unwrap()
            .status
            .success();
        if attached.is_none() && !loaded {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "after 5 s: XDP on {RELAY_IF}: {attached:?}, program {id} loaded: {loaded}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that the kernel still carries everything else over the veth pair, as without
/// XDP: ping both ways of addressing (IPv4, IPv6), a TCP connection to `tcp_port`
/// (request and response) and a UDP datagram to `udp_port` for each family, from the
/// client to the relay's namespace.
pub fn check_other_traffic(net: &Pair, tcp_port: u16, udp_port: u16) {
    for peer in [RELAY4, RELAY6] {
        let output = net
            .client
            .command("ping")
            .args(["-c", "2", "-i", "0.2", "-W", "2", peer])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ping {peer} through {RELAY_IF}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    let listener = net
        .relay
        .enter(|| TcpListener::bind((RELAY4, tcp_port)).unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = [0u8; 5];
        stream.read_exact(&mut request).unwrap();
        stream.write_all(b"pong:").unwrap();
        stream.write_all(&request).unwrap();
    });
    let mut stream = net.client.enter(|| {
        TcpStream::connect_timeout(
            &format!("{RELAY4}:{tcp_port}").parse().unwrap(),
            Duration::from_secs(5),
        )
        .expect("TCP connect through the XDP interface")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"hello").unwrap();
    let mut response = [0u8; 10];
    stream.read_exact(&mut response).expect("TCP response");
    assert_eq!(&response, b"pong:hello");
    server.join().unwrap();

    for (relay, client) in [(RELAY4, CLIENT4), (RELAY6, CLIENT6)] {
        let other = net
            .relay
            .enter(|| UdpSocket::bind((relay, udp_port)).unwrap());
        let sender = net.client.enter(|| UdpSocket::bind((client, 0)).unwrap());
        let datagram = [0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        sender.send_to(&datagram, (relay, udp_port)).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buffer = [0u8; 64];
        let n = other
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("UDP to port {udp_port} on {relay}: {e}"));
        assert_eq!(&buffer[..n], &datagram, "UDP to port {udp_port} on {relay}");
    }
}
