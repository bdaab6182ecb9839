//! The relay's XDP program: steers UDP datagrams for the relay's media port into the
//! AF_XDP socket of the RX queue they arrived on, admits unknown sources only for
//! rate-limited STUN, and leaves everything else to the kernel (DESIGN.md, invariants 5
//! and 6). Every packet moves exactly one per-CPU counter (`relay_common::Counter`).
//!
//! What it does with each datagram to the media port is logged at debug level through
//! aya-log (`log_decision`); at the default level the loader turns that off before the
//! verifier runs, which then removes the logging code.
//!
//! Headers are parsed by hand at fixed offsets: this is the fast path, each field is
//! one load after one bounds check the verifier can follow.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use aya_log_ebpf::{
    debug,
    macro_support::{level_enabled, Level},
};
use relay_common::{
    classify, gcra, Class, Config, Counter, Remote, RemoteIp, ADMITTED_LEN, COUNTERS_LEN,
    LOG_TARGET, STUN_BUCKETS_LEN,
};

/// Patched by the loader (`relay_common::CONFIG_GLOBAL`). Read with a volatile load so
/// that the compiler cannot fold the unpatched value into the code.
#[unsafe(no_mangle)]
static RELAY_CONFIG: Config = Config {
    stun_interval_ns: 0,
    stun_tolerance_ns: 0,
    stun_global_interval_ns: 0,
    stun_global_tolerance_ns: 0,
    media_port: 0,
    reserved: [0; 6],
};

/// RX queue index -> AF_XDP socket bound on that queue (`relay_common::XSK_MAP`).
/// The loader sizes it to the number of queues.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(1, 0);

/// Packets by what was done with them, per CPU (`relay_common::COUNTERS_MAP`).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Remotes of accepted sessions, written by userspace (`relay_common::ADMITTED_MAP`).
#[map]
static ADMITTED: HashMap<Remote, u8> = HashMap::with_max_entries(ADMITTED_LEN, 0);

/// STUN token bucket per unknown source address (`relay_common::STUN_BUCKETS_MAP`).
#[map]
static STUN_BUCKETS: LruHashMap<RemoteIp, u64> = LruHashMap::with_max_entries(STUN_BUCKETS_LEN, 0);

/// Each RX queue's share of the global STUN budget of unknown sources, a token bucket
/// (`relay_common::STUN_GLOBAL_MAP`). The loader sizes it to the number of queues.
#[map]
static STUN_GLOBAL: Array<u64> = Array::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// IPv4 "more fragments" flag and fragment offset: either set means a fragment.
const IP_MF_AND_OFFSET: u16 = 0x3fff;

/// The program's decision for one packet and the counter it moves.
enum Verdict {
    Pass(Counter),
    Drop(Counter),
    /// Redirect to the RX queue's socket; counted only once the redirect took.
    Redirect(Counter),
}

#[xdp]
pub fn relay(ctx: XdpContext) -> u32 {
    let (action, counter) = match datagram(&ctx) {
        Ok(datagram) => {
            let (action, counter) = decide(&ctx, &datagram);
            log_decision(&ctx, counter, &datagram.remote);
            (action, counter)
        }
        // Counted, not logged: a log line for each of the host's other packets would
        // drown the log (and, over SSH, feed itself).
        Err(why) => (XDP_PASS, why),
    };
    if let Some(count) = COUNTERS.get_ptr_mut(counter.index()) {
        // SAFETY: the map value is this CPU's own u64; nothing else writes it meanwhile.
        unsafe { *count += 1 };
    }
    action
}

/// The action for a datagram to the media port and the counter that says why.
#[inline(always)]
fn decide(ctx: &XdpContext, datagram: &Datagram) -> (u32, Counter) {
    match steer(ctx, datagram) {
        Verdict::Pass(counter) => (XDP_PASS, counter),
        Verdict::Drop(counter) => (XDP_DROP, counter),
        // XDP_PASS in the flags: a queue with no socket gives the packet to the kernel.
        Verdict::Redirect(counter) => match XSKS.redirect(ctx.rx_queue_index(), XDP_PASS.into()) {
            Ok(_) => (XDP_REDIRECT, counter),
            Err(_) => (XDP_PASS, Counter::PassedNoSocket),
        },
    }
}

#[inline(always)]
fn steer(ctx: &XdpContext, datagram: &Datagram) -> Verdict {
    if unsafe { ADMITTED.get(&datagram.remote) }.is_some() {
        return match Counter::redirected(datagram.class) {
            Some(counter) => Verdict::Redirect(counter),
            None => Verdict::Pass(Counter::PassedOtherClass),
        };
    }
    if datagram.class != Class::Stun {
        return Verdict::Drop(Counter::DroppedUnknownSource);
    }
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // The source's own rate first: a few loud sources are held to theirs without
    // spending the budget that all unknown sources share.
    if !stun_conforms(&datagram.remote.ip, now) {
        Verdict::Drop(Counter::DroppedStunRateLimit)
    } else if !stun_within_global_budget(ctx.rx_queue_index(), now) {
        Verdict::Drop(Counter::DroppedStunGlobalLimit)
    } else {
        Verdict::Redirect(Counter::RedirectedStun)
    }
}

/// Logs at debug level what was done with a datagram to the media port from `remote`,
/// and why (`counter`). Each message is a literal: a string chosen at run time would
/// need a copy of variable length, which the verifier does not follow.
#[inline(always)]
fn log_decision(ctx: &XdpContext, counter: Counter, remote: &Remote) {
    // The check each statement below makes (aya-log's macro support, what its macros
    // expand to; the version is pinned), made once before the choice among them: with
    // debug off the verifier then removes the choice too, not only the statements
    // (5 instructions stay on the path instead of about 60).
    if !level_enabled(Level::Debug) {
        return;
    }
    let (ip, port) = (remote.ip, u16::from_be_bytes(remote.port));
    match counter {
        Counter::RedirectedStun => debug!(
            ctx,
            target: LOG_TARGET,
            "redirected STUN from {:i} port {} to the socket of queue {}",
            ip,
            port,
            ctx.rx_queue_index()
        ),
        Counter::RedirectedDtls => debug!(
            ctx,
            target: LOG_TARGET,
            "redirected DTLS from {:i} port {} to the socket of queue {}",
            ip,
            port,
            ctx.rx_queue_index()
        ),
        // The media itself, many datagrams a second from every session: counted only.
        Counter::RedirectedRtp => {}
        Counter::DroppedUnknownSource => debug!(
            ctx,
            target: LOG_TARGET,
            "dropped a datagram from {:i} port {}: unknown source, and not STUN",
            ip,
            port
        ),
        Counter::DroppedStunRateLimit => debug!(
            ctx,
            target: LOG_TARGET,
            "dropped STUN from {:i} port {}: unknown source over its STUN rate",
            ip,
            port
        ),
        Counter::DroppedStunGlobalLimit => debug!(
            ctx,
            target: LOG_TARGET,
            "dropped STUN from {:i} port {}: unknown sources over their global STUN rate",
            ip,
            port
        ),
        Counter::PassedOtherClass => debug!(
            ctx,
            target: LOG_TARGET,
            "passed a datagram from {:i} port {} to the kernel: of no RFC 7983 class",
            ip,
            port
        ),
        Counter::PassedNoSocket => debug!(
            ctx,
            target: LOG_TARGET,
            "passed a datagram from {:i} port {} to the kernel: no socket on queue {}",
            ip,
            port,
            ctx.rx_queue_index()
        ),
        // Decided before there was a datagram: never logged.
        Counter::PassedNotOurs
        | Counter::PassedFragment
        | Counter::PassedIpv6Extension
        | Counter::PassedTruncated
        | Counter::PassedBadLength => {}
    }
}

/// A UDP datagram to the media port.
struct Datagram {
    remote: Remote,
    class: Class,
}

/// The datagram to the media port in this frame, or the pass counter saying why the
/// frame is not one (`PassedNotOurs`, `PassedTruncated`, ...).
#[inline(always)]
fn datagram(ctx: &XdpContext) -> Result<Datagram, Counter> {
    let (ether_type, l3) = ether_type(ctx)?;
    let (ip, l4, ip_end) = match ether_type {
        ETH_P_IP => ipv4_udp(ctx, l3)?,
        ETH_P_IPV6 => ipv6_udp(ctx, l3)?,
        _ => return Err(Counter::PassedNotOurs),
    };
    let udp = bytes::<UDP_HLEN>(ctx, l4)?;
    // SAFETY: RELAY_CONFIG is a valid, never-written static; volatile only defeats folding.
    let media_port = unsafe { core::ptr::read_volatile(&raw const RELAY_CONFIG.media_port) };
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    if media_port == 0 || port != media_port {
        return Err(Counter::PassedNotOurs);
    }
    // The UDP length, not the frame length: a short frame's Ethernet padding is not payload.
    // The datagram must lie within its IP packet, the packet within the frame: the kernel
    // drops one that claims more than it carries, so such a frame is left to it.
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HLEN || l4 + udp_len > ip_end || !fits(ctx, ip_end) {
        return Err(Counter::PassedBadLength);
    }
    let class = if udp_len == UDP_HLEN {
        Class::Other
    } else {
        // Inside the frame after the checks above; the verifier wants its own check.
        let [first] = bytes::<1>(ctx, l4 + UDP_HLEN)?;
        classify(*first)
    };
    Ok(Datagram {
        remote: Remote {
            ip,
            port: [udp[0], udp[1]],
        },
        class,
    })
}

/// Whether STUN from the unknown source `ip` at `now` is within its token bucket (and
/// takes a token).
#[inline(always)]
fn stun_conforms(ip: &RemoteIp, now: u64) -> bool {
    // SAFETY: as above; the two fields are read separately, no struct copy on the stack.
    let (interval, tolerance) = unsafe {
        (
            core::ptr::read_volatile(&raw const RELAY_CONFIG.stun_interval_ns),
            core::ptr::read_volatile(&raw const RELAY_CONFIG.stun_tolerance_ns),
        )
    };
    // A bucket updated concurrently on another CPU may lose one token's worth: fine for a
    // rate limit, and cheaper than a lock.
    let tat = STUN_BUCKETS.get_ptr(ip).map_or(0, |tat| unsafe { *tat });
    match gcra(tat, now, interval, tolerance) {
        Some(next) => {
            // A full map evicts its least recently used bucket; insert cannot fail for room.
            let _ = STUN_BUCKETS.insert(ip, next, 0);
            true
        }
        None => false,
    }
}

/// Whether STUN from an unknown source on RX queue `queue` at `now` is within that
/// queue's share of the global budget (and takes a token).
#[inline(always)]
fn stun_within_global_budget(queue: u32, now: u64) -> bool {
    // SAFETY: as in `datagram`.
    let (interval, tolerance) = unsafe {
        (
            core::ptr::read_volatile(&raw const RELAY_CONFIG.stun_global_interval_ns),
            core::ptr::read_volatile(&raw const RELAY_CONFIG.stun_global_tolerance_ns),
        )
    };
    // A queue past the map (the interface gained queues after loading) has no share.
    let Some(tat) = STUN_GLOBAL.get_ptr_mut(queue) else {
        return false;
    };
    // SAFETY: the map value is the queue's u64; the queue's packets are handled on one
    // CPU at a time (one NAPI context per queue).
    match gcra(unsafe { *tat }, now, interval, tolerance) {
        Some(next) => {
            unsafe { *tat = next };
            true
        }
        None => false,
    }
}

/// The EtherType after at most one VLAN tag (802.1Q or 802.1ad), and the offset of the
/// header it names.
#[inline(always)]
fn ether_type(ctx: &XdpContext) -> Result<(u16, usize), Counter> {
    let eth = bytes::<ETH_HLEN>(ctx, 0)?;
    let ether_type = u16::from_be_bytes([eth[12], eth[13]]);
    if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
        return Ok((ether_type, ETH_HLEN));
    }
    let vlan = bytes::<VLAN_HLEN>(ctx, ETH_HLEN)?;
    Ok((u16::from_be_bytes([vlan[2], vlan[3]]), ETH_HLEN + VLAN_HLEN))
}

/// The source address (v4-mapped), the offset of the UDP header and the offset of the
/// packet's end (by its total length) of an unfragmented IPv4 UDP packet.
#[inline(always)]
fn ipv4_udp(ctx: &XdpContext, l3: usize) -> Result<(RemoteIp, usize, usize), Counter> {
    let ip = bytes::<IPV4_MIN_HLEN>(ctx, l3)?;
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header_len < IPV4_MIN_HLEN || ip[9] != IPPROTO_UDP {
        return Err(Counter::PassedNotOurs);
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & IP_MF_AND_OFFSET != 0 {
        return Err(Counter::PassedFragment);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let source = Remote::v4_mapped([ip[12], ip[13], ip[14], ip[15]]);
    Ok((source, l3 + header_len, l3 + total))
}

/// The source address, the offset of the UDP header and the offset of the packet's end
/// (by its payload length) of an IPv6 packet whose first next header is UDP.
#[inline(always)]
fn ipv6_udp(ctx: &XdpContext, l3: usize) -> Result<(RemoteIp, usize, usize), Counter> {
    let ip = bytes::<IPV6_HLEN>(ctx, l3)?;
    if ip[0] >> 4 != 6 {
        return Err(Counter::PassedNotOurs);
    }
    match ip[6] {
        IPPROTO_UDP => {}
        // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP,
        // shim6 (RFC 8200 and the IANA list): a UDP header may follow, at an offset
        // this program does not chase.
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => return Err(Counter::PassedIpv6Extension),
        _ => return Err(Counter::PassedNotOurs),
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mut source = [0; 16];
    source.copy_from_slice(&ip[8..24]);
    Ok((source, l3 + IPV6_HLEN, l3 + IPV6_HLEN + payload_len))
}

/// Whether the packet holds at least `len` bytes.
#[inline(always)]
fn fits(ctx: &XdpContext, len: usize) -> bool {
    ctx.data() + len <= ctx.data_end()
}

/// The `N` packet bytes at `offset`, or `PassedTruncated` if the packet ends first.
/// The check is written as `start + offset + N > end`, the form the verifier follows
/// for packet pointers.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<&[u8; N], Counter> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return Err(Counter::PassedTruncated);
    }
    // SAFETY: the N bytes lie inside the packet (checked above); [u8; N] has alignment 1.
    Ok(unsafe { &*((start + offset) as *const [u8; N]) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
