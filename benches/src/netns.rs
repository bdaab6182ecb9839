//! Network namespaces for the XDP benchmarks: made by the tool with names of its own,
//! joined by a veth pair, addresses only inside them, deleted on drop. Needs root.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};

/// Fails with a clear message unless this process is root (namespaces, XDP, AF_XDP).
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces, XDP, AF_XDP): run it as root");
    }
    Ok(())
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `relay-bench-PID-N-role`, with `lo` up.
    pub fn new(role: &str) -> anyhow::Result<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "relay-bench-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip -n <this> args...`; its output, or an error with ip's message.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <this> program args...`: a command to run inside the namespace
    /// (with the namespace's own /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there, and threads it
    /// starts, stay in the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_netns(&self.name)?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `program args...` inside the namespace; its output, or an error with its
    /// message.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `ip -n <this> -batch -` with `commands`, one per line.
    pub fn ip_batch(&self, commands: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running ip -batch")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(commands.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} -batch: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Packets `interface` dropped so far: (received, transmitted), from `ip -s link`.
    pub fn link_drops(&self, interface: &str) -> anyhow::Result<(u64, u64)> {
        let json = self.ip(&["-s", "-j", "link", "show", "dev", interface])?;
        let links: serde_json::Value = serde_json::from_str(&json)?;
        let stats = &links[0]["stats64"];
        let dropped = |dir: &str| stats[dir]["dropped"].as_u64();
        dropped("rx")
            .zip(dropped("tx"))
            .with_context(|| format!("no drop counters for {interface} in {json}"))
    }

    /// Packets the root qdisc of `interface` dropped so far, from `tc -s qdisc`.
    pub fn qdisc_drops(&self, interface: &str) -> anyhow::Result<u64> {
        let json = self.exec("tc", &["-s", "-j", "qdisc", "show", "dev", interface])?;
        let qdiscs: serde_json::Value = serde_json::from_str(&json)?;
        Ok(qdiscs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q["drops"].as_u64())
            .sum())
    }

    /// Writes `value` to `/sys/class/net/<interface>/<attribute>` of this namespace.
    pub fn write_sys(&self, interface: &str, attribute: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/sys/class/net/{interface}/{attribute}");
        let out = self
            .command("sh")
            .args(["-c", &format!("echo {value} > {path}")])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "writing {value} to {path} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the named namespace.
fn enter_netns(name: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening network namespace {name}"))?;
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The relay's end of the pair, in the relay's namespace.
pub const RELAY_IF: &str = "rb-relay";
/// The viewers' end, in the viewers' namespace.
pub const VIEWERS_IF: &str = "rb-view";
pub const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
pub const VIEWERS_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
/// Both ends' prefix length: 10.79.0.0/16 holds the viewers' extra addresses.
const PREFIX: u8 = 16;
const RELAY_MAC: &str = "02:79:00:00:00:01";
const VIEWERS_MAC: &str = "02:79:00:00:00:02";

/// Two namespaces joined by a veth pair: the relay's and the viewers'.
pub struct Pair {
    pub relay: Netns,
    pub viewers: Netns,
}

impl Pair {
    /// The namespaces and the veth pair with `queues` RX and TX queues each way,
    /// IPv4 addresses in 10.79.0.0/16 and permanent neighbour entries (no ARP).
    pub fn new(queues: usize) -> anyhow::Result<Pair> {
        let relay = Netns::new("relay")?;
        let viewers = Netns::new("viewers")?;
        let queues = queues.to_string();
        relay.ip(&[
            "link",
            "add",
            RELAY_IF,
            "numrxqueues",
            &queues,
            "numtxqueues",
            &queues,
            "address",
            RELAY_MAC,
            "type",
            "veth",
            "peer",
            "name",
            VIEWERS_IF,
            "netns",
            &viewers.name,
            "numrxqueues",
            &queues,
            "numtxqueues",
            &queues,
            "address",
            VIEWERS_MAC,
        ])?;
        for (netns, interface, ip, peer, peer_mac) in [
            (&relay, RELAY_IF, RELAY_IP, VIEWERS_IP, VIEWERS_MAC),
            (&viewers, VIEWERS_IF, VIEWERS_IP, RELAY_IP, RELAY_MAC),
        ] {
            netns.ip(&["addr", "add", &format!("{ip}/{PREFIX}"), "dev", interface])?;
            netns.ip(&["link", "set", interface, "up"])?;
            netns.ip(&[
                "neigh",
                "replace",
                &peer.to_string(),
                "lladdr",
                peer_mac,
                "dev",
                interface,
                "nud",
                "permanent",
            ])?;
        }
        Ok(Pair { relay, viewers })
    }

    /// Gives the viewers' end `count` more addresses, 10.79.1.1 and up, each with a
    /// permanent neighbour entry on the relay's side; returns them.
    pub fn add_viewer_addresses(&self, count: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
        if count > 250 * 250 {
            bail!("{count} viewer addresses: at most {}", 250 * 250);
        }
        let ips: Vec<Ipv4Addr> = (0..count)
            .map(|k| Ipv4Addr::new(10, 79, 1 + (k / 250) as u8, 1 + (k % 250) as u8))
            .collect();
        let (mut viewers, mut relay) = (String::new(), String::new());
        for ip in &ips {
            viewers.push_str(&format!("addr add {ip}/{PREFIX} dev {VIEWERS_IF}\n"));
            relay.push_str(&format!(
                "neigh replace {ip} lladdr {VIEWERS_MAC} dev {RELAY_IF} nud permanent\n"
            ));
        }
        self.viewers.ip_batch(&viewers)?;
        self.relay.ip_batch(&relay)?;
        Ok(ips)
    }

    /// The MAC addresses of the relay's end and the viewers' end.
    pub fn macs() -> ([u8; 6], [u8; 6]) {
        (parse_mac(RELAY_MAC), parse_mac(VIEWERS_MAC))
    }
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0; 6];
    for (byte, part) in mac.iter_mut().zip(s.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    mac
}

/// The kernel threads whose name starts with `prefix` (threaded NAPI pollers are
/// `napi/<interface>-<id>`), from /proc.
pub fn kernel_threads(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with(prefix))
        })
        .collect()
}

/// CPU time of the kernel threads whose name starts with `prefix`.
pub fn kernel_threads_cpu(prefix: &str) -> Duration {
    kernel_threads(prefix)
        .into_iter()
        .filter_map(|pid| crate::procfs::process_cpu(pid).ok())
        .sum()
}
