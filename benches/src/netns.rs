//! The network namespaces of the XDP benchmarks (made with the test kit, deleted on
//! drop): the relay's and the viewers', joined by a veth pair, addresses only inside
//! them; and what the tools read of them. Needs root.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context};
use relay_testkit::netns::{End, Netns, Pair};

/// The relay's end of the pair, in the relay's namespace.
pub const RELAY_IF: &str = "rb-relay";
/// The viewers' end, in the viewers' namespace.
pub const VIEWERS_IF: &str = "rb-view";
pub const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
pub const VIEWERS_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
pub const RELAY_MAC: [u8; 6] = [0x02, 0x79, 0, 0, 0, 0x01];
pub const VIEWERS_MAC: [u8; 6] = [0x02, 0x79, 0, 0, 0, 0x02];
/// Both ends' prefix length: 10.79.0.0/16 holds the viewers' extra addresses.
const PREFIX: u8 = 16;
/// The names of the tools' namespaces begin so (`ip netns list | grep relay-bench`).
const NETNS_PREFIX: &str = "relay-bench";

/// The relay's namespace and the viewers' (`client`), the veth pair between them with
/// `queues` RX and TX queues each way, IPv4 addresses in 10.79.0.0/16 and permanent
/// neighbour entries (no ARP).
pub fn pair(queues: usize) -> anyhow::Result<Pair> {
    let end = |interface, mac, ip: Ipv4Addr| End {
        interface,
        mac,
        addresses: vec![(IpAddr::V4(ip), PREFIX)],
    };
    Pair::new(
        NETNS_PREFIX,
        &end(RELAY_IF, RELAY_MAC, RELAY_IP),
        &end(VIEWERS_IF, VIEWERS_MAC, VIEWERS_IP),
        queues,
    )
}

/// Gives the viewers' end `count` more addresses, 10.79.1.1 and up, each with a
/// permanent neighbour entry on the relay's side; returns them.
pub fn add_viewer_addresses(pair: &Pair, count: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
    if count > 250 * 250 {
        bail!("{count} viewer addresses: at most {}", 250 * 250);
    }
    let ips: Vec<Ipv4Addr> = (0..count)
        .map(|k| Ipv4Addr::new(10, 79, 1 + (k / 250) as u8, 1 + (k % 250) as u8))
        .collect();
    let mac = relay_testkit::netns::mac_str(VIEWERS_MAC);
    let (mut viewers, mut relay) = (String::new(), String::new());
    for ip in &ips {
        viewers.push_str(&format!("addr add {ip}/{PREFIX} dev {VIEWERS_IF}\n"));
        relay.push_str(&format!(
            "neigh replace {ip} lladdr {mac} dev {RELAY_IF} nud permanent\n"
        ));
    }
    pair.client.ip_batch(&viewers)?;
    pair.relay.ip_batch(&relay)?;
    Ok(ips)
}

/// Packets `interface` of `netns` dropped so far: (received, transmitted), from
/// `ip -s link`.
pub fn link_drops(netns: &Netns, interface: &str) -> anyhow::Result<(u64, u64)> {
    let json = netns.ip(&["-s", "-j", "link", "show", "dev", interface])?;
    let links: serde_json::Value = serde_json::from_str(&json)?;
    let stats = &links[0]["stats64"];
    let dropped = |dir: &str| stats[dir]["dropped"].as_u64();
    dropped("rx")
        .zip(dropped("tx"))
        .with_context(|| format!("no drop counters for {interface} in {json}"))
}

/// Packets the root qdisc of `interface` of `netns` dropped so far, from `tc -s qdisc`.
pub fn qdisc_drops(netns: &Netns, interface: &str) -> anyhow::Result<u64> {
    let json = netns.exec("tc", &["-s", "-j", "qdisc", "show", "dev", interface])?;
    let qdiscs: serde_json::Value = serde_json::from_str(&json)?;
    Ok(qdiscs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["drops"].as_u64())
        .sum())
}

/// Writes `value` to `/sys/class/net/<interface>/<attribute>` of `netns`.
pub fn write_sys(
    netns: &Netns,
    interface: &str,
    attribute: &str,
    value: &str,
) -> anyhow::Result<()> {
    let path = format!("/sys/class/net/{interface}/{attribute}");
    netns
        .exec("sh", &["-c", &format!("echo {value} > {path}")])
        .with_context(|| format!("writing {value} to {path} in {}", netns.name))?;
    Ok(())
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
