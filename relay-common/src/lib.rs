//! What the XDP program (`relay-ebpf`) and userspace (`relay`) must agree on: the
//! RFC 7983 classification of the relay's UDP traffic, the layout of the config the
//! loader patches into the program, and the names and indices of its maps.
#![cfg_attr(not(test), no_std)]

/// The XDP program's name in the object (its function name in `relay-ebpf`).
pub const PROGRAM: &str = "relay";
/// The global [`Config`] the loader patches with `EbpfLoader::override_global`.
pub const CONFIG_GLOBAL: &str = "RELAY_CONFIG";
/// `XSKMAP` from RX queue index to the AF_XDP socket bound on that queue.
pub const XSK_MAP: &str = "XSKS";
/// Per-CPU `u64` packet counters, indexed by [`Class::counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Entries in [`COUNTERS_MAP`].
pub const COUNTERS_LEN: u32 = Class::ALL.len() as u32;

/// Set at load time; read once per packet from the program's read-only data, so the
/// port costs no map lookup.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// UDP destination port of the relay's media, host byte order. 0 (the value in
    /// the object before patching) matches nothing: every packet passes.
    pub media_port: u16,
}

// SAFETY: `Config` is `repr(C)`, has no padding and every bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}

/// RFC 7983 demultiplexing of datagrams that share one UDP port, by their first byte.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 0..=3: STUN (ICE connectivity checks).
    Stun = 0,
    /// 20..=63: DTLS (the handshake that keys SRTP).
    Dtls = 1,
    /// 128..=191: RTP or RTCP (SRTP and SRTCP on the wire).
    Rtp = 2,
    /// Anything else (ZRTP, TURN channels, QUIC, junk) and empty datagrams.
    Other = 3,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Stun, Class::Dtls, Class::Rtp, Class::Other];

    /// Index of this class's packet counter in [`COUNTERS_MAP`].
    pub const fn counter(self) -> u32 {
        self as u32
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn counter_indices_are_distinct_and_fit_the_map() {
        for (i, class) in Class::ALL.iter().enumerate() {
            assert_eq!(class.counter(), i as u32);
            assert!(class.counter() < COUNTERS_LEN);
        }
    }

    #[test]
    fn config_has_no_padding() {
        // The loader copies the struct's bytes into the object: padding would leak
        // uninitialised memory and the sizes would disagree with the program's global.
        assert_eq!(core::mem::size_of::<Config>(), 2);
    }
}
