//! Network namespaces, made with names of their own and deleted (with their interfaces)
//! on drop, and veth pairs that join them. Needs root.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};

/// Fails, saying so, unless this process is root: `what` makes network namespaces,
/// loads XDP programs or opens AF_XDP sockets.
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
    /// A new namespace named `PREFIX-PID-N-ROLE` (`ip netns list | grep PREFIX` finds
    /// what a killed run left behind), with `lo` up.
    pub fn new(prefix: &str, role: &str) -> anyhow::Result<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        require_root("making a network namespace")?;
        let name = format!(
            "{prefix}-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip -n <this> args...`: its output, or an error with ip's message.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n <this> -batch -` with `commands`, one per line.
    pub fn ip_batch(&self, commands: &str) -> anyhow::Result<()> {
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

    /// `ip netns exec <this> program`: a command to run inside the namespace (with the
    /// namespace's own /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program args...` inside the namespace: its output, or an error with its
    /// message.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there, and threads it
    /// starts, stay in the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        within(&self.name, f)
    }

    /// A permanent neighbour entry for `ip` on `interface`: no ARP or neighbour
    /// discovery in the way.
    fn neighbour(&self, interface: &str, ip: IpAddr, mac: [u8; 6]) -> anyhow::Result<()> {
        #[rustfmt::skip]
        self.ip(&[
            "neigh", "replace", &ip.to_string(), "lladdr", &mac_str(mac), "dev", interface,
            "nud", "permanent",
        ])?;
        Ok(())
    }

    /// Makes this namespace route IPv4 between its interfaces.
    pub fn forward_ipv4(&self) -> anyhow::Result<()> {
        self.enter(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .context("enabling IPv4 forwarding")
    }

    /// The kernel's UDP counter `name` ("InDatagrams", "InErrors", ...) in this
    /// namespace: (IPv4, IPv6).
    pub fn udp_counter(&self, name: &str) -> anyhow::Result<(u64, u64)> {
        let (snmp, snmp6) = self.enter(|| {
            (
                std::fs::read_to_string("/proc/thread-self/net/snmp"),
                std::fs::read_to_string("/proc/thread-self/net/snmp6"),
            )
        });
        let v4 = udp_counter(&snmp?, name).with_context(|| format!("no Udp {name} in snmp"))?;
        let v6 = udp6_counter(&snmp6?, name).with_context(|| format!("no Udp6{name} in snmp6"))?;
        Ok((v4, v6))
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

/// Runs `f` on a thread inside the namespace named `name`.
///
/// Panics if the thread cannot enter it: a namespace this process made (it is root)
/// and has not deleted can always be entered.
pub fn within<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                move_thread_to(name).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into the namespace named `name`.
fn move_thread_to(name: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening network namespace {name}"))?;
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `program args...`: its output, or an error with its message.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
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

/// `02:77:00:00:00:01`.
pub fn mac_str(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// One end of a veth pair: its interface's name and MAC, and its addresses with their
/// prefix lengths (IPv6 ones skip duplicate address detection).
pub struct End {
    pub interface: &'static str,
    pub mac: [u8; 6],
    pub addresses: Vec<(IpAddr, u8)>,
}

/// Joins `a` (in namespace `a_ns`) and `b` (in `b_ns`) with a veth pair of `queues` RX
/// and TX queues each way: both ends up, with their addresses and permanent neighbour
/// entries for the other end's (no ARP or neighbour discovery in the way).
pub fn veth(a_ns: &Netns, a: &End, b_ns: &Netns, b: &End, queues: usize) -> anyhow::Result<()> {
    let queues = queues.to_string();
    let (a_mac, b_mac) = (mac_str(a.mac), mac_str(b.mac));
    #[rustfmt::skip]
    a_ns.ip(&[
        "link", "add", a.interface, "numrxqueues", &queues, "numtxqueues", &queues,
        "address", &a_mac, "type", "veth", "peer", "name", b.interface, "netns", &b_ns.name,
        "numrxqueues", &queues, "numtxqueues", &queues, "address", &b_mac,
    ])?;
    for (netns, end, peer) in [(a_ns, a, b), (b_ns, b, a)] {
        netns.ip(&["link", "set", end.interface, "up"])?;
        for (ip, prefix_len) in &end.addresses {
            let address = format!("{ip}/{prefix_len}");
            let mut args = vec!["addr", "add", &address, "dev", end.interface];
            if ip.is_ipv6() {
                args.push("nodad");
            }
            netns.ip(&args)?;
        }
        for (ip, _) in &peer.addresses {
            netns.neighbour(end.interface, *ip, peer.mac)?;
        }
    }
    Ok(())
}

/// Two namespaces joined by a veth pair: the relay's and its clients'.
pub struct Pair {
    pub relay: Netns,
    pub client: Netns,
}

impl Pair {
    /// The namespaces (named `PREFIX-...-relay` and `PREFIX-...-client`) and the
    /// [`veth`] pair between their ends `relay` and `client`.
    pub fn new(prefix: &str, relay: &End, client: &End, queues: usize) -> anyhow::Result<Pair> {
        let pair = Pair {
            relay: Netns::new(prefix, "relay")?,
            client: Netns::new(prefix, "client")?,
        };
        veth(&pair.relay, relay, &pair.client, client, queues)?;
        Ok(pair)
    }
}

/// Counter `name` of the `Udp:` lines (names, then values) of /proc/net/snmp.
pub fn udp_counter(snmp: &str, name: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Counter `Udp6<name>` of /proc/net/snmp6.
pub fn udp6_counter(snmp6: &str, name: &str) -> Option<u64> {
    snmp6
        .lines()
        .find_map(|l| l.strip_prefix("Udp6")?.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_counters_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
                    Udp: 120 3 0 4500 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams\n\
                    UdpLite: 9 9 9 9\n";
        assert_eq!(udp_counter(snmp, "InDatagrams"), Some(120));
        assert_eq!(udp_counter(snmp, "OutDatagrams"), Some(4500));
        assert_eq!(udp_counter(snmp, "NoSuch"), None);
        assert_eq!(udp_counter("Ip: a\nIp: 1\n", "InDatagrams"), None);
        let snmp6 = "Ip6InReceives 5\nUdp6InDatagrams                 \t17\nUdp6InErrors 2\n\
                     UdpLite6InDatagrams 9\n";
        assert_eq!(udp6_counter(snmp6, "InDatagrams"), Some(17));
        assert_eq!(udp6_counter(snmp6, "InErrors"), Some(2));
        assert_eq!(udp6_counter(snmp6, "OutDatagrams"), None);
        // This process's namespace has the counters too: the real file parses.
        let real = std::fs::read_to_string("/proc/self/net/snmp").unwrap();
        assert!(udp_counter(&real, "InDatagrams").is_some());
    }

    #[test]
    fn macs_are_written_as_ip_reads_them() {
        assert_eq!(mac_str([0x02, 0x77, 0, 0, 0, 0xab]), "02:77:00:00:00:ab");
    }
}
