//! Network namespaces for the XDP tests: two made by the test, joined by a veth pair
//! with two queues each way, addresses only inside them. Needs root.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

pub const RELAY_IF: &str = "xr0";
pub const CLIENT_IF: &str = "xc0";
pub const RELAY4: &str = "10.77.0.1";
pub const CLIENT4: &str = "10.77.0.2";
pub const RELAY6: &str = "fd77::1";
pub const CLIENT6: &str = "fd77::2";

/// These tests make network namespaces and load XDP programs: without root they fail
/// with this message instead of passing for nothing.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (network namespaces, XDP, AF_XDP): run it as root"
    );
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

/// Two namespaces joined by a veth pair with two queues each way.
pub struct Net {
    pub relay: Netns,
    pub client: Netns,
}

impl Net {
    pub fn new() -> Net {
        require_root();
        let relay = Netns::new("r");
        let client = Netns::new("c");
        let (relay_mac, client_mac) = ("02:77:00:00:00:01", "02:77:00:00:00:02");
        relay.ip(&[
            "link",
            "add",
            RELAY_IF,
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
            "address",
            relay_mac,
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_IF,
            "netns",
            &client.name,
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
            "address",
            client_mac,
        ]);
        for (netns, interface, v4, v6, peer4, peer6, peer_mac) in [
            (
                &relay, RELAY_IF, RELAY4, RELAY6, CLIENT4, CLIENT6, client_mac,
            ),
            (
                &client, CLIENT_IF, CLIENT4, CLIENT6, RELAY4, RELAY6, relay_mac,
            ),
        ] {
            netns.ip(&["addr", "add", &format!("{v4}/24"), "dev", interface]);
            netns.ip(&[
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                interface,
                "nodad",
            ]);
            netns.ip(&["link", "set", interface, "up"]);
            // Permanent neighbours: no ARP or neighbour discovery in the way.
            for peer in [peer4, peer6] {
                netns.ip(&[
                    "neigh",
                    "replace",
                    peer,
                    "lladdr",
                    peer_mac,
                    "dev",
                    interface,
                    "nud",
                    "permanent",
                ]);
            }
        }
        Net { relay, client }
    }
}
