//! What relay-bench's sink programs (`main.rs`) and the load tool agree on: the
//! programs' names, the config the loader patches into them, and their per-port counters.
//!
//! The sink sits on the viewers' end of a veth pair (XDP), or at `lo`'s ingress (tc). Each sink viewer's str0m client
//! owns one UDP port of a contiguous range; the program counts the SRTP and SRTCP
//! datagrams to those ports and drops them (the load generator then costs almost
//! nothing), and passes everything else to the kernel: STUN consent answers and DTLS
//! reach the str0m clients, so their sessions stay alive.
#![cfg_attr(not(test), no_std)]

/// The XDP program's name in the object (its function name in `main.rs`).
pub const PROGRAM: &str = "sink";
/// The tc classifier's: the same sink at an interface's ingress, counting a UDP GSO
/// batch as its segments.
pub const TC_PROGRAM: &str = "sink_tc";
/// The global [`SinkConfig`] the loader patches with `EbpfLoader::override_global`.
pub const CONFIG_GLOBAL: &str = "SINK_CONFIG";
/// Per-CPU [`SinkCount`] per port of the range, indexed by [`SinkConfig::slot`]. The
/// loader sizes it to [`SinkConfig::ports`].
pub const COUNTS_MAP: &str = "SINK_COUNTS";

/// Set at load time: the sink viewers' UDP ports are `first_port..first_port + ports`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkConfig {
    /// Host byte order.
    pub first_port: u16,
    /// 0 (the value in the object before patching): no port is a sink's, all passes.
    pub ports: u16,
    /// Explicit padding, always zero: the loader copies every byte into the object.
    pub reserved: [u8; 4],
}

impl SinkConfig {
    /// The counter slot of UDP destination port `port`, if it is a sink viewer's.
    #[inline(always)]
    pub const fn slot(&self, port: u16) -> Option<u32> {
        let offset = port.wrapping_sub(self.first_port);
        if offset < self.ports {
            Some(offset as u32)
        } else {
            None
        }
    }
}

/// What one sink port received, on one CPU (userspace sums the CPUs).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCount {
    /// SRTP datagrams.
    pub rtp: u64,
    /// Their UDP payload bytes.
    pub rtp_bytes: u64,
    /// SRTCP datagrams (sender reports).
    pub rtcp: u64,
}

/// A datagram the sink counts and drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Rtp,
    Rtcp,
}

/// Media by the first two payload bytes: RFC 7983 puts RTP and RTCP at first byte
/// 128..=191, RFC 5761 tells RTCP by its packet type 192..=223 in the second. STUN
/// (0..=3) and DTLS (20..=63) are not media: the str0m clients need them.
#[inline(always)]
pub const fn media(first: u8, second: u8) -> Option<Media> {
    match (first, second) {
        (128..=191, 192..=223) => Some(Media::Rtcp),
        (128..=191, _) => Some(Media::Rtp),
        _ => None,
    }
}

// SAFETY: `repr(C)` with no padding (see the size test) and every bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SinkConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SinkCount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_rtp_class_split_by_packet_type() {
        assert_eq!(media(0x80, 96), Some(Media::Rtp));
        assert_eq!(media(0x80, 0x80 | 96), Some(Media::Rtp), "marker bit set");
        assert_eq!(media(0x90, 111), Some(Media::Rtp), "with an extension");
        assert_eq!(media(0x80, 200), Some(Media::Rtcp), "sender report");
        assert_eq!(media(0x81, 201), Some(Media::Rtcp), "receiver report");
        assert_eq!(media(191, 223), Some(Media::Rtcp));
        assert_eq!(media(0x00, 0x01), None, "STUN binding request");
        assert_eq!(media(0x01, 0x01), None, "STUN binding success");
        assert_eq!(media(22, 0xfe), None, "DTLS handshake");
        assert_eq!(media(23, 0xfe), None, "DTLS application data");
        assert_eq!(media(127, 96), None);
        assert_eq!(media(192, 96), None);
    }

    #[test]
    fn slots_cover_exactly_the_range() {
        let config = SinkConfig {
            first_port: 20_000,
            ports: 3,
            reserved: [0; 4],
        };
        assert_eq!(config.slot(19_999), None);
        assert_eq!(config.slot(20_000), Some(0));
        assert_eq!(config.slot(20_002), Some(2));
        assert_eq!(config.slot(20_003), None);
        assert_eq!(config.slot(0), None, "no wrap-around below the range");
        assert_eq!(
            SinkConfig::default().slot(20_000),
            None,
            "unpatched: nothing"
        );
        let top = SinkConfig {
            first_port: u16::MAX,
            ports: 1,
            reserved: [0; 4],
        };
        assert_eq!(top.slot(u16::MAX), Some(0));
        assert_eq!(top.slot(0), None);
    }

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<SinkConfig>(), 8);
        assert_eq!(core::mem::size_of::<SinkCount>(), 24);
    }
}
