//! Network namespaces for the XDP tests, made by each test with unique names and deleted
//! on drop: the relay's and a client's, joined by a veth pair (addresses only inside
//! them), and on demand an attacker's, routed through the client's. Needs root.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

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

/// These tests make network namespaces and load XDP programs: without root they fail
/// with this message instead of passing for nothing.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "these tests need root (network namespaces, XDP, AF_XDP sockets): run them as root, \
         e.g. `sudo -E cargo test -p relay --test xdp_relay`"
    );
}

pub fn mac_str(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "relay-xdp-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n <this> args...`, which must succeed; its output.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `program args...` run inside this namespace, which must succeed; its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there stay in it.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_netns(&self.name);
                    f()
                })
                .join()
                .expect("thread in the namespace")
        })
    }

    /// The kernel's UDP counter `name` ("InDatagrams", "InErrors", ...) in this
    /// namespace: (IPv4, IPv6).
    pub fn udp_counter(&self, name: &str) -> (u64, u64) {
        self.enter(|| {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
            let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
            let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
            let v4 = names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or_else(|| panic!("no Udp {name} in /proc/net/snmp"));
            let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap();
            let v6 = snmp6
                .lines()
                .find_map(|l| l.strip_prefix(&format!("Udp6{name}")))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or_else(|| panic!("no Udp6{name} in /proc/net/snmp6"));
            (v4, v6)
        })
    }

    /// Makes this namespace route IPv4 between its interfaces.
    fn forward_ipv4(&self) {
        self.enter(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .expect("enable IPv4 forwarding");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the named namespace.
pub fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open the namespace");
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Joins `a` (interface `a_if`) and `b` (`b_if`) with a veth pair of `queues` queues
/// each way, the given MACs, up.
fn veth(a: &Netns, a_if: &str, a_mac: [u8; 6], b: &Netns, b_if: &str, b_mac: [u8; 6], queues: u32) {
    let queues = queues.to_string();
    let (a_mac, b_mac) = (mac_str(a_mac), mac_str(b_mac));
    #[rustfmt::skip]
    a.ip(&[
        "link", "add", a_if, "numrxqueues", &queues, "numtxqueues", &queues, "address", &a_mac,
        "type", "veth", "peer", "name", b_if, "netns", &b.name,
        "numrxqueues", &queues, "numtxqueues", &queues, "address", &b_mac,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// A permanent neighbour entry: no ARP or neighbour discovery in the way.
fn neighbour(netns: &Netns, interface: &str, ip: &str, mac: [u8; 6]) {
    #[rustfmt::skip]
    netns.ip(&[
        "neigh", "replace", ip, "lladdr", &mac_str(mac), "dev", interface, "nud", "permanent",
    ]);
}

/// Two namespaces joined by a veth pair: the relay's end `RELAY_IF`, the client's
/// `CLIENT_IF`, with IPv4 and IPv6 addresses.
pub struct Net {
    pub relay: Netns,
    pub client: Netns,
}

impl Net {
    /// With two queues each way (the relay then runs two workers).
    pub fn new() -> Net {
        Net::with_queues(2)
    }

    pub fn with_queues(queues: u32) -> Net {
        require_root();
        let relay = Netns::new("r");
        let client = Netns::new("c");
        veth(
            &relay, RELAY_IF, RELAY_MAC, &client, CLIENT_IF, CLIENT_MAC, queues,
        );
        for (netns, interface, v4, v6, peer4, peer6, peer_mac) in [
            (
                &relay, RELAY_IF, RELAY4, RELAY6, CLIENT4, CLIENT6, CLIENT_MAC,
            ),
            (
                &client, CLIENT_IF, CLIENT4, CLIENT6, RELAY4, RELAY6, RELAY_MAC,
            ),
        ] {
            netns.ip(&["addr", "add", &format!("{v4}/24"), "dev", interface]);
            #[rustfmt::skip]
            netns.ip(&["addr", "add", &format!("{v6}/64"), "dev", interface, "nodad"]);
            for peer in [peer4, peer6] {
                neighbour(netns, interface, peer, peer_mac);
            }
        }
        Net { relay, client }
    }

    /// A third namespace with the addresses `ATTACKER4`, whose IPv4 traffic to the
    /// relay the client's namespace forwards: it reaches `RELAY_IF` as the client's
    /// does, from addresses the relay has never heard of. Deleted when dropped.
    pub fn attacker(&self) -> Netns {
        let attacker = Netns::new("a");
        let (attacker_mac, gateway_mac) =
            ([0x02, 0x77, 1, 0, 0, 0x02], [0x02, 0x77, 1, 0, 0, 0x01]);
        veth(
            &attacker,
            ATTACKER_IF,
            attacker_mac,
            &self.client,
            GATEWAY_IF,
            gateway_mac,
            1,
        );
        for ip in ATTACKER4 {
            attacker.ip(&["addr", "add", &format!("{ip}/24"), "dev", ATTACKER_IF]);
            neighbour(&self.client, GATEWAY_IF, ip, attacker_mac);
        }
        let gateway = format!("{ATTACKER_GATEWAY4}/24");
        self.client
            .ip(&["addr", "add", &gateway, "dev", GATEWAY_IF]);
        neighbour(&attacker, ATTACKER_IF, ATTACKER_GATEWAY4, gateway_mac);
        attacker.ip(&["route", "add", "default", "via", ATTACKER_GATEWAY4]);
        self.client.forward_ipv4();
        // Only for the kernel's answers: the relay's own go back to the MAC the
        // datagrams came from.
        self.relay
            .ip(&["route", "add", "10.77.1.0/24", "via", CLIENT4]);
        attacker
    }

    /// What `ip -d link` says of the relay's interface about XDP (`None`: no program):
    /// "prog/xdp" (native), "prog/xdpgeneric", ...
    pub fn xdp_on_relay_interface(&self) -> Option<String> {
        let link = self.relay.ip(&["-d", "link", "show", "dev", RELAY_IF]);
        link.split_whitespace()
            .find(|word| word.starts_with("xdp") || word.starts_with("prog/xdp"))
            .map(str::to_owned)
    }

    /// Waits until the relay's interface has no XDP program and the program `id` is
    /// unloaded, failing 5 s after `since`; how long after `since` that was.
    pub fn wait_until_detached(&self, id: &str, since: Instant) -> Duration {
        loop {
            let attached = self.xdp_on_relay_interface();
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

    /// Checks that the kernel still carries everything else over the veth pair, as
    /// without XDP: ping both ways of addressing (IPv4, IPv6), a TCP connection to
    /// `tcp_port` (request and response) and a UDP datagram to `udp_port` for each
    /// family, from the client to the relay's namespace.
    pub fn check_other_traffic(&self, tcp_port: u16, udp_port: u16) {
        for peer in [RELAY4, RELAY6] {
            let output = Command::new("ip")
                .args(["netns", "exec", &self.client.name])
                .args(["ping", "-c", "2", "-i", "0.2", "-W", "2", peer])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "ping {peer} through {RELAY_IF}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }

        let listener = self
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
        let mut stream = self.client.enter(|| {
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
            let other = self
                .relay
                .enter(|| UdpSocket::bind((relay, udp_port)).unwrap());
            let sender = self.client.enter(|| UdpSocket::bind((client, 0)).unwrap());
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
}
