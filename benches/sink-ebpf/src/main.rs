//! relay-bench's sink programs (see the crate's `lib.rs`): on the viewers' veth end
//! (XDP) or at `lo`'s ingress (tc), count SRTP and SRTCP datagrams to the sink viewers'
//! ports per port and per CPU, and drop them; pass everything else to the kernel
//! untouched.
//!
//! Headers are read at fixed offsets, each field after one bounds check the verifier
//! can follow, as in relay-ebpf. No VLAN: the tools' interfaces have none.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use relay_sink_ebpf::{media, Media, SinkConfig, SinkCount};

/// Patched by the loader (`relay_sink_ebpf::CONFIG_GLOBAL`); read with volatile loads
/// so that the compiler cannot fold the unpatched value into the code.
#[unsafe(no_mangle)]
static SINK_CONFIG: SinkConfig = SinkConfig {
    first_port: 0,
    ports: 0,
    reserved: [0; 4],
};

/// Per port of the range, per CPU (`relay_sink_ebpf::COUNTS_MAP`); sized by the loader.
#[map]
static SINK_COUNTS: PerCpuArray<SinkCount> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// IPv4 "more fragments" flag and fragment offset.
const IP_MF_AND_OFFSET: u16 = 0x3fff;

/// A frame's bytes as a program sees them: XDP's frame, or the linear part of tc's
/// socket buffer (where `lo` keeps every header).
trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The two bytes at `offset`, wherever the frame keeps them.
    fn two_bytes(&self, offset: usize) -> Option<[u8; 2]>
    where
        Self: Sized,
    {
        bytes::<2>(self, offset).copied()
    }
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    /// A payload sent from pages (a GSO batch's, mostly) is not in the linear part:
    /// copied out by the kernel's helper instead.
    #[inline(always)]
    fn two_bytes(&self, offset: usize) -> Option<[u8; 2]> {
        self.load::<[u8; 2]>(offset).ok()
    }
}

#[xdp]
pub fn sink(ctx: XdpContext) -> u32 {
    match count(&ctx, 1) {
        Some(()) => XDP_DROP,
        None => XDP_PASS,
    }
}

/// The sink at tc ingress, where `lo` hands over a UDP GSO batch whole (as a NIC with
/// UDP segmentation offload sends it) and XDP would see one frame: a batch counts as its
/// segments, all to the port and of the kind of the first (a sender batches one
/// socket's datagrams of one size).
#[classifier]
pub fn sink_tc(ctx: TcContext) -> i32 {
    // SAFETY: the context's socket buffer is valid for the program's run.
    let segments = unsafe { (*ctx.skb.skb).gso_segs }.max(1);
    match count(&ctx, u64::from(segments)) {
        Some(()) => TC_ACT_SHOT as i32,
        None => TC_ACT_OK as i32,
    }
}

/// Counts the frame (`segments` datagrams) if it is media to a sink port; `None`: not
/// one, pass it.
#[inline(always)]
fn count(ctx: &impl Frame, segments: u64) -> Option<()> {
    let l4 = udp_offset(ctx)?;
    let udp = bytes::<UDP_HLEN>(ctx, l4)?;
    // SAFETY: SINK_CONFIG is a valid, never-written static; volatile only defeats folding.
    let config = unsafe {
        SinkConfig {
            first_port: core::ptr::read_volatile(&raw const SINK_CONFIG.first_port),
            ports: core::ptr::read_volatile(&raw const SINK_CONFIG.ports),
            reserved: [0; 4],
        }
    };
    let slot = config.slot(u16::from_be_bytes([udp[2], udp[3]]))?;
    // The UDP length, not the frame's: Ethernet padding is not payload. (A GSO batch's
    // is its segments' payloads together, one UDP header.)
    let payload = usize::from(u16::from_be_bytes([udp[4], udp[5]])).checked_sub(UDP_HLEN)?;
    if payload < 2 {
        return None;
    }
    let [first, second] = ctx.two_bytes(l4 + UDP_HLEN)?;
    let kind = media(first, second)?;
    let count = SINK_COUNTS.get_ptr_mut(slot)?;
    // SAFETY: the map value is this CPU's own; nothing else writes it meanwhile.
    unsafe {
        match kind {
            Media::Rtp => {
                (*count).rtp += segments;
                (*count).rtp_bytes += payload as u64;
            }
            Media::Rtcp => (*count).rtcp += segments,
        }
    }
    Some(())
}

/// The offset of the UDP header of an unfragmented IPv4 packet or of an IPv6 packet
/// whose first next header is UDP.
#[inline(always)]
fn udp_offset(ctx: &impl Frame) -> Option<usize> {
    let eth = bytes::<ETH_HLEN>(ctx, 0)?;
    match u16::from_be_bytes([eth[12], eth[13]]) {
        ETH_P_IP => {
            let ip = bytes::<IPV4_MIN_HLEN>(ctx, ETH_HLEN)?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & IP_MF_AND_OFFSET != 0;
            if ip[0] >> 4 != 4 || header_len < IPV4_MIN_HLEN || ip[9] != IPPROTO_UDP || fragment {
                return None;
            }
            Some(ETH_HLEN + header_len)
        }
        ETH_P_IPV6 => {
            let ip = bytes::<IPV6_HLEN>(ctx, ETH_HLEN)?;
            (ip[0] >> 4 == 6 && ip[6] == IPPROTO_UDP).then_some(ETH_HLEN + IPV6_HLEN)
        }
        _ => None,
    }
}

/// The `N` packet bytes at `offset`, if the packet has them. The check is written as
/// `start + offset + N > end`, the form the verifier follows for packet pointers.
#[inline(always)]
fn bytes<const N: usize>(ctx: &impl Frame, offset: usize) -> Option<&[u8; N]> {
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
