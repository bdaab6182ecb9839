//! What the XDP program (`relay-ebpf`) and userspace (`relay`) must agree on: the
//! RFC 7983 classification of the relay's UDP traffic, the layout of the config the
//! loader patches into the program, the keys and values of its maps, and the names and
//! indices of its counters.
#![cfg_attr(not(test), no_std)]

use core::net::{IpAddr, SocketAddr};
use core::num::NonZeroU32;

/// The XDP program's name in the object (its function name in `relay-ebpf`).
pub const PROGRAM: &str = "relay";
/// The global [`Config`] the loader patches with `EbpfLoader::override_global`.
pub const CONFIG_GLOBAL: &str = "RELAY_CONFIG";
/// The log target of the program's own records (its decisions, at debug level), as
/// aya-log forwards them to userspace's `log`: under `relay`, so `RUST_LOG=relay=debug`
/// shows them, and `relay::xdp_program=debug` shows them alone.
pub const LOG_TARGET: &str = "relay::xdp_program";
/// `XSKMAP` from RX queue index to the AF_XDP socket bound on that queue.
pub const XSK_MAP: &str = "XSKS";
/// Per-CPU `u64` packet counters, indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Entries in [`COUNTERS_MAP`].
pub const COUNTERS_LEN: u32 = Counter::ALL.len() as u32;
/// `HASH` of the remotes (address and UDP port) of accepted sessions: [`Remote`] ->
/// [`ADMITTED_VALUE`]. Their datagrams reach userspace whatever their class.
pub const ADMITTED_MAP: &str = "ADMITTED";
/// Capacity of [`ADMITTED_MAP`]: sessions (viewers and publishers) per relay.
pub const ADMITTED_LEN: u32 = 65_536;
/// The value stored for an admitted remote (the map is used as a set).
pub const ADMITTED_VALUE: u8 = 1;
/// `LRU_HASH` of STUN token buckets of unknown sources: [`RemoteIp`] -> the bucket's
/// theoretical arrival time in ns of `bpf_ktime_get_ns` (see [`gcra`]).
pub const STUN_BUCKETS_MAP: &str = "STUN_BUCKETS";
/// Capacity of [`STUN_BUCKETS_MAP`]; the least recently used bucket makes room.
pub const STUN_BUCKETS_LEN: u32 = 16_384;
/// `ARRAY` of the global STUN budget of unknown sources, split evenly among the RX
/// queues: RX queue index -> that queue's share, a token bucket kept as in
/// [`STUN_BUCKETS_MAP`]. Only the queue's own NAPI context updates its share, so CPUs do
/// not contend for it. The loader sizes it to the number of queues.
pub const STUN_GLOBAL_MAP: &str = "STUN_GLOBAL";

/// Set at load time; read once per packet from the program's read-only data, so the
/// port and the STUN rate cost no map lookup.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Nanoseconds between two STUN datagrams an unknown source may send (1 / rate).
    pub stun_interval_ns: u64,
    /// How far ahead of its rate a source may be: `(burst - 1) * stun_interval_ns`.
    pub stun_tolerance_ns: u64,
    /// The same for one RX queue's share of the global budget ([`STUN_GLOBAL_MAP`]).
    pub stun_global_interval_ns: u64,
    pub stun_global_tolerance_ns: u64,
    /// UDP destination port of the relay's media, host byte order. 0 (the value in
    /// the object before patching) matches nothing: every packet passes.
    pub media_port: u16,
    /// Explicit padding, always zero: the loader copies every byte into the object.
    pub reserved: [u8; 6],
}

impl Config {
    /// The config for `media_port` that lets each unknown source send `stun_rate` STUN
    /// datagrams per second, `stun_burst` at once, and all of them together
    /// `global_rate` a second, `global_burst` at once, split evenly among `queues` RX
    /// queues (each queue's share rounded up to at least one datagram at once).
    pub const fn new(
        media_port: u16,
        stun_rate: NonZeroU32,
        stun_burst: NonZeroU32,
        global_rate: NonZeroU32,
        global_burst: NonZeroU32,
        queues: NonZeroU32,
    ) -> Config {
        let stun_interval_ns = 1_000_000_000 / stun_rate.get() as u64;
        let queues = queues.get() as u64;
        let stun_global_interval_ns = 1_000_000_000 * queues / global_rate.get() as u64;
        let share_burst = (global_burst.get() as u64).div_ceil(queues);
        Config {
            stun_interval_ns,
            stun_tolerance_ns: stun_interval_ns * (stun_burst.get() as u64 - 1),
            stun_global_interval_ns,
            stun_global_tolerance_ns: stun_global_interval_ns * (share_burst - 1),
            media_port,
            reserved: [0; 6],
        }
    }
}

/// A remote's IP address as the program sees it: IPv6 as is, IPv4 v4-mapped
/// (`::ffff:a.b.c.d`), so that both families share one key layout.
pub type RemoteIp = [u8; 16];

/// Key of [`ADMITTED_MAP`]: a remote's address and UDP port, both as on the wire.
/// The rest of the 5-tuple is implied: UDP, to the media port, on the attached interface.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    pub ip: RemoteIp,
    /// Network byte order.
    pub port: [u8; 2],
}

impl Remote {
    /// The IPv4 address `ip` (network byte order), v4-mapped.
    #[inline(always)]
    pub const fn v4_mapped(ip: [u8; 4]) -> RemoteIp {
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ip[0], ip[1], ip[2], ip[3],
        ]
    }
}

impl From<SocketAddr> for Remote {
    /// An IPv4 peer and the same peer seen through an IPv6 socket (`::ffff:a.b.c.d`)
    /// give the same key, as they give the same packets on the wire.
    fn from(addr: SocketAddr) -> Remote {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => Remote::v4_mapped(v4.octets()),
            IpAddr::V6(v6) => v6.octets(),
        };
        Remote {
            ip,
            port: addr.port().to_be_bytes(),
        }
    }
}

// SAFETY: these are `repr(C)` with no padding (see the size tests) and every bit
// pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Remote {}

/// One step of a token bucket kept as a single timestamp (GCRA, the generic cell rate
/// algorithm): `tat` is when the bucket would be full again (0 for a new bucket). A
/// datagram at `now` conforms when `tat` is at most `tolerance` ahead of `now`; then
/// this returns the new `tat`, else `None` (and the bucket stays as it was).
#[inline(always)]
pub const fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
    let tat = if tat > now { tat } else { now };
    if tat - now > tolerance {
        None
    } else {
        Some(tat.saturating_add(interval))
    }
}

/// RFC 7983 demultiplexing of datagrams that share one UDP port, by their first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 0..=3: STUN (ICE connectivity checks).
    Stun,
    /// 20..=63: DTLS (the handshake that keys SRTP).
    Dtls,
    /// 128..=191: RTP or RTCP (SRTP and SRTCP on the wire).
    Rtp,
    /// Anything else (ZRTP, TURN channels, QUIC, junk) and empty datagrams.
    Other,
}

/// Classifies a datagram by its first payload byte (RFC 7983, section 7).
#[inline(always)]
pub const fn classify(first_byte: u8) -> Class {
    match first_byte {
        0..=3 => Class::Stun,
        20..=63 => Class::Dtls,
        128..=191 => Class::Rtp,
        _ => Class::Other,
    }
}

/// What the program did with a packet, and why: one per-CPU counter each, at index
/// `self as u32` of [`COUNTERS_MAP`]. The indices are stable: append, never reorder.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// To the media port, redirected to the RX queue's AF_XDP socket: STUN from an
    /// admitted remote or, within its source's bucket and the global budget, from an
    /// unknown one.
    RedirectedStun = 0,
    /// DTLS from an admitted remote, redirected.
    RedirectedDtls = 1,
    /// RTP or RTCP from an admitted remote, redirected.
    RedirectedRtp = 2,
    /// To the media port from an unknown remote, not STUN: dropped.
    DroppedUnknownSource = 3,
    /// STUN to the media port from an unknown remote over its source's rate: dropped.
    DroppedStunRateLimit = 4,
    /// Not UDP to the media port (including malformed IP headers): passed.
    PassedNotOurs = 5,
    /// An IPv4 UDP fragment (later fragments carry no port, so any port): passed.
    PassedFragment = 6,
    /// IPv6 with an extension header before any UDP header (any port): passed.
    PassedIpv6Extension = 7,
    /// A header (Ethernet, VLAN, IP, UDP) cut short: passed.
    PassedTruncated = 8,
    /// To the media port from an admitted remote but of no RFC 7983 class: passed.
    PassedOtherClass = 9,
    /// Would have been redirected, but no AF_XDP socket is registered for its RX queue:
    /// passed to the kernel (the redirect's fallback).
    PassedNoSocket = 10,
    /// To the media port, but the UDP length runs past the IP packet (or is under 8), or
    /// the IP packet's length past the frame: passed, for the kernel to drop and count.
    PassedBadLength = 11,
    /// STUN to the media port from an unknown remote within its source's rate, but over
    /// the global budget of all unknown sources (its RX queue's share): dropped.
    DroppedStunGlobalLimit = 12,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::RedirectedStun,
        Counter::RedirectedDtls,
        Counter::RedirectedRtp,
        Counter::DroppedUnknownSource,
        Counter::DroppedStunRateLimit,
        Counter::PassedNotOurs,
        Counter::PassedFragment,
        Counter::PassedIpv6Extension,
        Counter::PassedTruncated,
        Counter::PassedOtherClass,
        Counter::PassedNoSocket,
        Counter::PassedBadLength,
        Counter::DroppedStunGlobalLimit,
    ];

    /// Index of this counter in [`COUNTERS_MAP`].
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The counter for redirecting a datagram of `class` (`None`: `Other` is never redirected).
    #[inline(always)]
    pub const fn redirected(class: Class) -> Option<Counter> {
        match class {
            Class::Stun => Some(Counter::RedirectedStun),
            Class::Dtls => Some(Counter::RedirectedDtls),
            Class::Rtp => Some(Counter::RedirectedRtp),
            Class::Other => None,
        }
    }

    /// A stable snake_case name for stats and metrics: `<action>_<reason>`.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RedirectedStun => "redirected_stun",
            Counter::RedirectedDtls => "redirected_dtls",
            Counter::RedirectedRtp => "redirected_rtp",
            Counter::DroppedUnknownSource => "dropped_unknown_source",
            Counter::DroppedStunRateLimit => "dropped_stun_rate_limit",
            Counter::PassedNotOurs => "passed_not_ours",
            Counter::PassedFragment => "passed_fragment",
            Counter::PassedIpv6Extension => "passed_ipv6_extension",
            Counter::PassedTruncated => "passed_truncated",
            Counter::PassedOtherClass => "passed_other_class",
            Counter::PassedNoSocket => "passed_no_socket",
            Counter::PassedBadLength => "passed_bad_length",
            Counter::DroppedStunGlobalLimit => "dropped_stun_global_limit",
        }
    }

    /// What happened to the packet: "redirected", "dropped" or "passed" (a metric label).
    pub const fn action(self) -> &'static str {
        match self {
            Counter::RedirectedStun | Counter::RedirectedDtls | Counter::RedirectedRtp => {
                "redirected"
            }
            Counter::DroppedUnknownSource
            | Counter::DroppedStunRateLimit
            | Counter::DroppedStunGlobalLimit => "dropped",
            _ => "passed",
        }
    }

    /// Why, the name without its action: "stun", "unknown_source", "not_ours", ...
    pub fn reason(self) -> &'static str {
        let name = self.name();
        &name[self.action().len() + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn classifies_the_edges_of_each_range() {
        let edges = [
            (0, Class::Stun),
            (3, Class::Stun),
            (4, Class::Other),
            (19, Class::Other),
            (20, Class::Dtls),
            (63, Class::Dtls),
            (64, Class::Other),
            (127, Class::Other),
            (128, Class::Rtp),
            (191, Class::Rtp),
            (192, Class::Other),
            (255, Class::Other),
        ];
        for (byte, class) in edges {
            assert_eq!(classify(byte), class, "first byte {byte}");
        }
    }

    #[test]
    fn classifies_real_first_bytes() {
        // STUN Binding Request: message type 0x0001.
        assert_eq!(classify(0x00), Class::Stun);
        // DTLS handshake record (content type 22) and application data (23).
        assert_eq!(classify(22), Class::Dtls);
        assert_eq!(classify(23), Class::Dtls);
        // RTP version 2, no padding/extension/CSRC: 0x80; with marker-free extension: 0x90.
        assert_eq!(classify(0x80), Class::Rtp);
        assert_eq!(classify(0x90), Class::Rtp);
        // RTCP sender report with one report block: 0x81.
        assert_eq!(classify(0x81), Class::Rtp);
        // ZRTP (16..=19), TURN channel data (64..=79), QUIC long header (0xc0..): not ours.
        assert_eq!(classify(16), Class::Other);
        assert_eq!(classify(64), Class::Other);
        assert_eq!(classify(0xc0), Class::Other);
    }

    #[test]
    fn counter_indices_are_stable_distinct_and_fit_the_map() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), i as u32, "{counter:?} moved");
            assert!(counter.index() < COUNTERS_LEN);
        }
        let names: HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::ALL.len(), "names are distinct");
        // Metrics are named after these: renaming one breaks dashboards.
        assert_eq!(Counter::DroppedUnknownSource.index(), 3);
        assert_eq!(
            Counter::DroppedUnknownSource.name(),
            "dropped_unknown_source"
        );
    }

    #[test]
    fn counter_names_split_into_action_and_reason() {
        for counter in Counter::ALL {
            let joined = format!("{}_{}", counter.action(), counter.reason());
            assert_eq!(joined, counter.name());
            assert!(["redirected", "dropped", "passed"].contains(&counter.action()));
        }
        assert_eq!(Counter::DroppedStunRateLimit.reason(), "stun_rate_limit");
    }

    #[test]
    fn only_stun_dtls_and_rtp_are_redirected() {
        assert_eq!(
            Counter::redirected(Class::Stun),
            Some(Counter::RedirectedStun)
        );
        assert_eq!(
            Counter::redirected(Class::Dtls),
            Some(Counter::RedirectedDtls)
        );
        assert_eq!(
            Counter::redirected(Class::Rtp),
            Some(Counter::RedirectedRtp)
        );
        assert_eq!(Counter::redirected(Class::Other), None);
    }

    #[test]
    fn shared_types_have_no_padding() {
        // The loader copies these structs' bytes into the kernel: padding would leak
        // uninitialised memory, and the program's layout would disagree.
        assert_eq!(core::mem::size_of::<Config>(), 4 * 8 + 2 + 6);
        assert_eq!(core::mem::size_of::<Remote>(), 16 + 2);
        assert_eq!(core::mem::align_of::<Remote>(), 1);
    }

    #[test]
    fn remote_keys_are_v4_mapped_with_the_port_on_the_wire() {
        let v4 = SocketAddr::from((Ipv4Addr::new(10, 77, 0, 2), 0x1234));
        let key = Remote::from(v4);
        assert_eq!(
            key.ip,
            Ipv4Addr::new(10, 77, 0, 2).to_ipv6_mapped().octets()
        );
        assert_eq!(key.port, [0x12, 0x34]);
        // The same peer through a dual-stack socket.
        let mapped = SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::new(10, 77, 0, 2).to_ipv6_mapped(),
            0x1234,
            0,
            0,
        ));
        assert_eq!(Remote::from(mapped), key);
        let v6: Ipv6Addr = "fd77::2".parse().unwrap();
        assert_eq!(Remote::from(SocketAddr::from((v6, 9))).ip, v6.octets());
    }

    #[test]
    fn config_turns_rate_and_burst_into_interval_and_tolerance() {
        let config = Config::new(8189, nz(4), nz(3), nz(2000), nz(2000), nz(1));
        assert_eq!(config.media_port, 8189);
        assert_eq!(config.stun_interval_ns, 250_000_000);
        assert_eq!(config.stun_tolerance_ns, 500_000_000);
        assert_eq!(config.stun_global_interval_ns, 500_000);
        assert_eq!(config.stun_global_tolerance_ns, 1999 * 500_000);
        let one = Config::new(1, nz(1), nz(1), nz(1), nz(1), nz(1));
        assert_eq!(
            (one.stun_tolerance_ns, one.stun_global_tolerance_ns),
            (0, 0)
        );
    }

    #[test]
    fn the_global_budget_is_split_among_the_queues() {
        // 2000/s over 4 queues: 500/s each; a burst of 10 rounds up to 3 each.
        let config = Config::new(1, nz(50), nz(100), nz(2000), nz(10), nz(4));
        assert_eq!(config.stun_global_interval_ns, 2_000_000);
        assert_eq!(config.stun_global_tolerance_ns, 2 * 2_000_000);
        // More queues than the burst: still one datagram at once per queue.
        let config = Config::new(1, nz(50), nz(100), nz(3), nz(2), nz(8));
        assert_eq!(config.stun_global_interval_ns, 8_000_000_000 / 3);
        assert_eq!(config.stun_global_tolerance_ns, 0);
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let Config {
            stun_interval_ns: interval,
            stun_tolerance_ns: tolerance,
            ..
        } = Config::new(1, nz(10), nz(3), nz(1), nz(1), nz(1));
        let start = 5_000_000_000;
        // A new bucket (tat 0) takes a burst of 3 at one instant, not a 4th.
        let mut tat = 0;
        for i in 0..3 {
            tat = gcra(tat, start, interval, tolerance).unwrap_or_else(|| panic!("packet {i}"));
        }
        assert_eq!(gcra(tat, start, interval, tolerance), None);
        // One interval later, exactly one more.
        let later = start + interval;
        tat = gcra(tat, later, interval, tolerance).expect("refilled by one");
        assert_eq!(gcra(tat, later, interval, tolerance), None);
        // After a long pause the bucket is full again, not more than full.
        let idle = later + 100 * interval;
        for _ in 0..3 {
            tat = gcra(tat, idle, interval, tolerance).expect("full after idling");
        }
        assert_eq!(gcra(tat, idle, interval, tolerance), None);
    }
}
