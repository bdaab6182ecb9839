//! The relay's XDP program: steers UDP datagrams for the relay's media port into the
//! AF_XDP socket of the RX queue they arrived on, and leaves everything else to the
//! kernel (DESIGN.md, invariant 5).
//!
//! Headers are parsed by hand at fixed offsets: this is the fast path, each field is
//! one load after one bounds check the verifier can follow.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::XDP_PASS,
    macros::{map, xdp},
    maps::{PerCpuArray, XskMap},
    programs::XdpContext,
};
use relay_common::{classify, Class, Config, COUNTERS_LEN};

/// Patched by the loader (`relay_common::CONFIG_GLOBAL`). Read with a volatile load so
/// that the compiler cannot fold the unpatched value into the code.
#[unsafe(no_mangle)]
static RELAY_CONFIG: Config = Config { media_port: 0 };

/// RX queue index -> AF_XDP socket bound on that queue (`relay_common::XSK_MAP`).
/// The loader may resize it to the interface's queue count.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(64, 0);

/// Packets to the media port, per CPU, by `Class::counter()` (`relay_common::COUNTERS_MAP`).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

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

#[xdp]
pub fn relay(ctx: XdpContext) -> u32 {
    let Some(class) = media_class(&ctx) else {
        return XDP_PASS;
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(class.counter()) {
        // SAFETY: the map value is this CPU's own u64; nothing else writes it meanwhile.
        unsafe { *counter += 1 };
    }
    if class == Class::Other {
        return XDP_PASS;
    }
    // XDP_PASS in the flags: a queue with no socket bound gives the packet to the kernel.
    XSKS.redirect(ctx.rx_queue_index(), XDP_PASS.into())
        .unwrap_or(XDP_PASS)
}

/// The class of a UDP datagram to the media port, or `None` for any other packet
/// (including IP fragments, IPv6 extension headers and truncated headers).
#[inline(always)]
fn media_class(ctx: &XdpContext) -> Option<Class> {
    let (ether_type, l3) = ether_type(ctx)?;
    let l4 = match ether_type {
        ETH_P_IP => ipv4_udp(ctx, l3)?,
        ETH_P_IPV6 => ipv6_udp(ctx, l3)?,
        _ => return None,
    };
    let udp = bytes::<UDP_HLEN>(ctx, l4)?;
    // SAFETY: RELAY_CONFIG is a valid, never-written static; volatile only defeats folding.
    let config = unsafe { core::ptr::read_volatile(&raw const RELAY_CONFIG) };
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    if config.media_port == 0 || port != config.media_port {
        return None;
    }
    // The UDP length, not the frame length: a short frame's Ethernet padding is not payload.
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len <= UDP_HLEN {
        return Some(Class::Other);
    }
    let [first] = bytes::<1>(ctx, l4 + UDP_HLEN)?;
    Some(classify(*first))
}

/// The EtherType after at most one VLAN tag, and the offset of the header it names.
#[inline(always)]
fn ether_type(ctx: &XdpContext) -> Option<(u16, usize)> {
    let eth = bytes::<ETH_HLEN>(ctx, 0)?;
    let ether_type = u16::from_be_bytes([eth[12], eth[13]]);
    if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
        return Some((ether_type, ETH_HLEN));
    }
    let vlan = bytes::<VLAN_HLEN>(ctx, ETH_HLEN)?;
    Some((u16::from_be_bytes([vlan[2], vlan[3]]), ETH_HLEN + VLAN_HLEN))
}

/// Offset of the UDP header of an unfragmented IPv4 UDP packet.
#[inline(always)]
fn ipv4_udp(ctx: &XdpContext, l3: usize) -> Option<usize> {
    let ip = bytes::<IPV4_MIN_HLEN>(ctx, l3)?;
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]);
    if ip[0] >> 4 != 4
        || header_len < IPV4_MIN_HLEN
        || ip[9] != IPPROTO_UDP
        || fragment & IP_MF_AND_OFFSET != 0
    {
        return None;
    }
    Some(l3 + header_len)
}

/// Offset of the UDP header of an IPv6 packet whose first next-header is UDP.
#[inline(always)]
fn ipv6_udp(ctx: &XdpContext, l3: usize) -> Option<usize> {
    let ip = bytes::<IPV6_HLEN>(ctx, l3)?;
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_UDP {
        return None;
    }
    Some(l3 + IPV6_HLEN)
}

/// The `N` packet bytes at `offset`, if the packet has them. The check is written as
/// `start + offset + N > end`, the form the verifier follows for packet pointers.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<&[u8; N]> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the N bytes lie inside the packet (checked above); [u8; N] has alignment 1.
    Some(unsafe { &*((start + offset) as *const [u8; N]) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
