//! Ethernet (with at most one VLAN tag), IPv4/IPv6 and UDP headers of AF_XDP frames:
//! parsed on receive, written on send. Plain functions over byte slices, no I/O.
//!
//! Received UDP checksums are not checked: frames from a local peer (a veth, a
//! container) carry partial checksums that the sender's NIC was to fill in, and the
//! relay's payloads are authenticated anyway (SRTP tags, STUN fingerprints). Sent
//! frames get full checksums: AF_XDP transmits exactly the bytes it is given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub type Mac = [u8; 6];

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
/// IPv4 "more fragments" flag and fragment offset.
const IP_MF_AND_OFFSET: u16 = 0x3fff;
/// IPv4 "don't fragment": the relay's datagrams fit the MTU or are not sent.
const IP_DF: u16 = 0x4000;
const TTL: u8 = 64;

/// The longest header stack written before a payload: Ethernet, a VLAN tag, IPv6, UDP.
pub const MAX_HEADERS: usize = ETH_HLEN + VLAN_HLEN + IPV6_HLEN + UDP_HLEN;

/// An 802.1Q (or 802.1ad) tag: its protocol identifier and its priority and VLAN id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vlan {
    pub tpid: u16,
    pub tci: u16,
}

/// How frames reach one remote IP: as the frames it sent us came (their source MAC
/// is our next hop towards it, their VLAN tag the VLAN it is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub mac: Mac,
    pub vlan: Option<Vlan>,
}

/// A UDP datagram parsed out of a received frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Who sent the frame on the link.
    pub hop: NextHop,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub payload: &'a [u8],
}

/// Why a frame is not a datagram for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("frame shorter than its headers")]
    Truncated,
    #[error("neither IPv4 nor IPv6")]
    NotIp,
    #[error("not UDP (or IPv6 extension headers)")]
    NotUdp,
    #[error("IPv4 fragment")]
    Fragment,
    #[error("bad IPv4 header (version, length or checksum)")]
    BadIpv4Header,
    #[error("IP or UDP length disagrees with the frame")]
    BadLength,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses one Ethernet frame holding a UDP datagram.
pub fn parse(frame: &[u8]) -> Result<Parsed<'_>, Malformed> {
    let eth = frame.get(..ETH_HLEN).ok_or(Malformed::Truncated)?;
    let mut mac = [0; 6];
    mac.copy_from_slice(&eth[6..12]);
    let mut ether_type = be16(eth, 12);
    let mut l3 = ETH_HLEN;
    let mut vlan = None;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let tag = frame
            .get(ETH_HLEN..ETH_HLEN + VLAN_HLEN)
            .ok_or(Malformed::Truncated)?;
        vlan = Some(Vlan {
            tpid: ether_type,
            tci: be16(tag, 0),
        });
        ether_type = be16(tag, 2);
        l3 += VLAN_HLEN;
    }
    let (source, destination, l4, l4_len) = match ether_type {
        ETH_P_IP => {
            let ip = frame.get(l3..l3 + IPV4_HLEN).ok_or(Malformed::Truncated)?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || header_len < IPV4_HLEN {
                return Err(Malformed::BadIpv4Header);
            }
            let header = frame.get(l3..l3 + header_len).ok_or(Malformed::Truncated)?;
            let total = usize::from(be16(ip, 2));
            if total < header_len || l3 + total > frame.len() {
                return Err(Malformed::BadLength);
            }
            if ip[9] != IPPROTO_UDP {
                return Err(Malformed::NotUdp);
            }
            if be16(ip, 6) & IP_MF_AND_OFFSET != 0 {
                return Err(Malformed::Fragment);
            }
            // A header with a valid checksum sums to all ones.
            if fold(sum(header, 0)) != 0xffff {
                return Err(Malformed::BadIpv4Header);
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (
                IpAddr::V4(src),
                IpAddr::V4(dst),
                l3 + header_len,
                total - header_len,
            )
        }
        ETH_P_IPV6 => {
            let ip = frame.get(l3..l3 + IPV6_HLEN).ok_or(Malformed::Truncated)?;
            if ip[0] >> 4 != 6 {
                return Err(Malformed::NotIp);
            }
            if ip[6] != IPPROTO_UDP {
                return Err(Malformed::NotUdp);
            }
            let payload_len = usize::from(be16(ip, 4));
            if l3 + IPV6_HLEN + payload_len > frame.len() {
                return Err(Malformed::BadLength);
            }
            let src: [u8; 16] = ip[8..24].try_into().expect("16 bytes");
            let dst: [u8; 16] = ip[24..40].try_into().expect("16 bytes");
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                l3 + IPV6_HLEN,
                payload_len,
            )
        }
        _ => return Err(Malformed::NotIp),
    };
    if l4_len < UDP_HLEN {
        return Err(Malformed::BadLength);
    }
    let udp = &frame[l4..l4 + UDP_HLEN];
    // The UDP length, not the frame's: short frames carry Ethernet padding.
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_HLEN || udp_len > l4_len {
        return Err(Malformed::BadLength);
    }
    Ok(Parsed {
        hop: NextHop { mac, vlan },
        source: SocketAddr::new(source, be16(udp, 0)),
        destination: SocketAddr::new(destination, be16(udp, 2)),
        payload: &frame[l4 + UDP_HLEN..l4 + udp_len],
    })
}

/// Bytes of IP and UDP headers: with the payload, what the interface's MTU bounds.
pub fn ip_headers_len(v6: bool) -> usize {
    if v6 {
        IPV6_HLEN + UDP_HLEN
    } else {
        IPV4_HLEN + UDP_HLEN
    }
}

/// Bytes of AF_XDP TX metadata before a frame (`struct xsk_tx_metadata`: flags, then the
/// request, in a union as long as Linux 6.14's request with a launch time).
pub const TX_METADATA_LEN: usize = 24;

/// Who completes a frame's UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpChecksum {
    /// Written here, over the whole datagram.
    Full,
    /// Left to the device (see [`checksum_request`]): the field holds the pseudo-header's
    /// sum, as the kernel's CHECKSUM_PARTIAL has it, and the device adds the datagram's
    /// and stores the complement.
    Device,
}

/// AF_XDP TX metadata asking the device for the checksum of the bytes from `start` to
/// the frame's end, stored at `start + offset` (XDP_TXMD_FLAGS_CHECKSUM; both counted
/// from the frame's start).
pub fn checksum_request(start: u16, offset: u16) -> [u8; TX_METADATA_LEN] {
    let mut meta = [0; TX_METADATA_LEN];
    meta[..8].copy_from_slice(&u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM).to_ne_bytes());
    meta[8..10].copy_from_slice(&start.to_ne_bytes());
    meta[10..12].copy_from_slice(&offset.to_ne_bytes());
    meta
}

/// Writes Ethernet, IP and UDP headers for the payload in `buf[at..at + len]` into the
/// bytes right before it, from `own_mac` to `hop`. Returns where the frame starts, or
/// `None` when the addresses are of different families. Needs `at >= MAX_HEADERS`.
pub fn write_headers(
    buf: &mut [u8],
    at: usize,
    len: usize,
    (own_mac, hop): (Mac, &NextHop),
    (source, destination): (SocketAddr, SocketAddr),
    checksum: UdpChecksum,
) -> Option<usize> {
    let udp_len = UDP_HLEN + len;
    let udp_at = at - UDP_HLEN;
    let (ether_type, ip_at) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let ip_at = udp_at - IPV4_HLEN;
            let ip = &mut buf[ip_at..udp_at];
            let [total_hi, total_lo] = ((IPV4_HLEN + udp_len) as u16).to_be_bytes();
            let [df_hi, df_lo] = IP_DF.to_be_bytes();
            ip[..12].copy_from_slice(&[
                0x45,
                0,
                total_hi,
                total_lo,
                // Identification 0: the DF bit is set (RFC 6864, atomic datagrams).
                0,
                0,
                df_hi,
                df_lo,
                TTL,
                IPPROTO_UDP,
                0,
                0,
            ]);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            ip[10..12].copy_from_slice(&ipv4_checksum((IPV4_HLEN + udp_len) as u16, src, dst));
            (ETH_P_IP, ip_at)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let ip_at = udp_at - IPV6_HLEN;
            let ip = &mut buf[ip_at..udp_at];
            let [len_hi, len_lo] = (udp_len as u16).to_be_bytes();
            ip[..8].copy_from_slice(&[0x60, 0, 0, 0, len_hi, len_lo, IPPROTO_UDP, TTL]);
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            (ETH_P_IPV6, ip_at)
        }
        _ => return None,
    };

    let udp = &mut buf[udp_at..at];
    udp[0..2].copy_from_slice(&source.port().to_be_bytes());
    udp[2..4].copy_from_slice(&destination.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let pseudo = pseudo_header_sum(source.ip(), destination.ip(), udp_len);
    let field = match checksum {
        UdpChecksum::Device => fold(pseudo).to_ne_bytes(),
        UdpChecksum::Full => match complement(sum(&buf[udp_at..at + len], pseudo)) {
            // 0 means "no checksum" in UDP over IPv4 and is invalid over IPv6.
            [0, 0] => [0xff, 0xff],
            c => c,
        },
    };
    buf[udp_at + 6..udp_at + 8].copy_from_slice(&field);

    let (start, type_at) = match hop.vlan {
        Some(vlan) => {
            let start = ip_at - ETH_HLEN - VLAN_HLEN;
            buf[start + 12..start + 14].copy_from_slice(&vlan.tpid.to_be_bytes());
            buf[start + 14..start + 16].copy_from_slice(&vlan.tci.to_be_bytes());
            (start, start + 16)
        }
        None => {
            let start = ip_at - ETH_HLEN;
            (start, start + 12)
        }
    };
    buf[start..start + 6].copy_from_slice(&hop.mac);
    buf[start + 6..start + 12].copy_from_slice(&own_mac);
    buf[type_at..type_at + 2].copy_from_slice(&ether_type.to_be_bytes());
    Some(start)
}

/// The checksum of the IPv4 header [`write_headers`] writes, from its fields' values:
/// summing the header back from the frame read words just stored in smaller pieces,
/// which waited for store forwarding (two thirds of the headers' time).
fn ipv4_checksum(total_len: u16, src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 2] {
    let (src, dst) = (u32::from(src), u32::from(dst));
    let words = [
        0x4500,
        u32::from(total_len),
        u32::from(IP_DF),
        u32::from(TTL) << 8 | u32::from(IPPROTO_UDP),
        src >> 16,
        src & 0xffff,
        dst >> 16,
        dst & 0xffff,
    ];
    (!fold(words.iter().map(|&w| u64::from(w)).sum())).to_be_bytes()
}

/// The pseudo-header's contribution to the UDP checksum (RFC 768, RFC 8200 8.1).
fn pseudo_header_sum(source: IpAddr, destination: IpAddr, udp_len: usize) -> u64 {
    let [len_hi, len_lo] = (udp_len as u16).to_be_bytes();
    let base = sum(&[0, IPPROTO_UDP, len_hi, len_lo], 0);
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&d.octets(), sum(&s.octets(), base)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum(&d.octets(), sum(&s.octets(), base)),
        _ => base,
    }
}

/// Adds `data` to a ones'-complement sum as 32-bit words in the machine's byte order (a
/// trailing partial word padded with zeros). The Internet checksum does not depend on
/// byte order (RFC 1071, 2.B): a sum taken in the machine's order, folded and stored
/// in that order, gives the bytes of the big-endian one; and since 2^16 = 1 modulo
/// 0xffff, folding a sum of 32-bit words gives the sum of the 16-bit ones. Without byte
/// swaps the loop is plain additions, which the compiler vectorizes: this runs over
/// every payload XDP mode sends. `data` must start at an even offset of the
/// checksummed range.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0; 4];
        last[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(last));
    }
    acc
}

/// Folds a sum of words into 16 bits with end-around carry.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field's bytes for a sum made by [`sum`].
fn complement(acc: u64) -> [u8; 2] {
    (!fold(acc)).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Mac = [2, 0, 0, 0, 0, 1];
    const PEER: Mac = [2, 0, 0, 0, 0, 2];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// RFC 1071 the slow way: 16-bit words, one at a time.
    fn reference_checksum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// The UDP checksum as a receiver verifies it: over a pseudo-header built by hand.
    fn verify_udp(frame: &[u8], l3: usize) -> bool {
        let mut pseudo = Vec::new();
        let udp_at;
        if frame[l3] >> 4 == 4 {
            udp_at = l3 + 20;
            pseudo.extend_from_slice(&frame[l3 + 12..l3 + 20]);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&frame[udp_at + 4..udp_at + 6]);
        } else {
            udp_at = l3 + 40;
            pseudo.extend_from_slice(&frame[l3 + 8..l3 + 40]);
            pseudo.extend_from_slice(&[0, 0]);
            pseudo.extend_from_slice(&frame[udp_at + 4..udp_at + 6]);
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        }
        let udp_len = usize::from(u16::from_be_bytes([frame[udp_at + 4], frame[udp_at + 5]]));
        pseudo.extend_from_slice(&frame[udp_at..udp_at + udp_len]);
        reference_checksum(&pseudo) == 0
    }

    /// Builds a frame the way the sender does; returns it trimmed to its start.
    fn build(
        hop: &NextHop,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    ) -> Vec<u8> {
        build_with(hop, source, destination, payload, UdpChecksum::Full)
    }

    fn build_with(
        hop: &NextHop,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
        checksum: UdpChecksum,
    ) -> Vec<u8> {
        let mut buf = vec![0xee; MAX_HEADERS + payload.len()];
        buf[MAX_HEADERS..].copy_from_slice(payload);
        let start = write_headers(
            &mut buf,
            MAX_HEADERS,
            payload.len(),
            (OURS, hop),
            (source, destination),
            checksum,
        )
        .unwrap();
        let vlan = if hop.vlan.is_some() { VLAN_HLEN } else { 0 };
        assert_eq!(
            MAX_HEADERS - start,
            ETH_HLEN + vlan + ip_headers_len(source.is_ipv6()),
        );
        buf.split_off(start)
    }

    #[test]
    fn checksum_sum_matches_rfc1071_for_every_length_and_alignment_of_the_tail() {
        let data: Vec<u8> = (0..1600u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in (0..40).chain([1199, 1200, 1201, 1202, 1203, 1599]) {
            let d = &data[..len];
            assert_eq!(
                complement(sum(d, 0)),
                reference_checksum(d).to_be_bytes(),
                "len {len}"
            );
        }
        // All-ones words make the carries wrap many times.
        let ones = vec![0xff; 1500];
        assert_eq!(
            complement(sum(&ones, 0)),
            reference_checksum(&ones).to_be_bytes()
        );
    }

    #[test]
    fn written_ipv4_frame_parses_back_with_valid_checksums() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        let (src, dst) = (addr("10.77.0.1:3478"), addr("10.77.0.2:40000"));
        for len in [0, 1, 2, 3, 101, 1472] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let frame = build(&hop, src, dst, &payload);
            assert_eq!(frame.len(), 14 + 20 + 8 + len);
            assert_eq!(&frame[..6], &PEER, "destination MAC is the next hop");
            assert_eq!(&frame[6..12], &OURS);
            assert_eq!(
                reference_checksum(&frame[14..34]),
                0,
                "IPv4 header checksum"
            );
            assert!(verify_udp(&frame, 14), "UDP checksum, len {len}");
            assert_ne!(&frame[40..42], &[0, 0], "a checksum, not 'none'");
            let parsed = parse(&frame).unwrap();
            assert_eq!(parsed.source, src);
            assert_eq!(parsed.destination, dst);
            assert_eq!(parsed.payload, &payload[..]);
            assert_eq!(
                parsed.hop,
                NextHop {
                    mac: OURS,
                    vlan: None
                }
            );
        }
    }

    /// The header checksum is computed from the fields, not read back: addresses whose
    /// words carry when summed must still check.
    #[test]
    fn ipv4_header_checksum_holds_for_addresses_that_carry() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        for (src, dst) in [
            ("255.255.255.254:65535", "254.255.255.255:1"),
            ("0.0.0.1:1", "255.255.0.0:2"),
            ("192.168.255.255:8189", "172.31.255.255:50000"),
        ] {
            for len in [0, 1472] {
                let frame = build(&hop, addr(src), addr(dst), &vec![0xff; len]);
                assert_eq!(reference_checksum(&frame[14..34]), 0, "{src} to {dst}");
                assert!(verify_udp(&frame, 14), "{src} to {dst}, len {len}");
            }
        }
    }

    #[test]
    fn written_ipv6_frame_with_vlan_parses_back_with_valid_checksum() {
        let vlan = Vlan {
            tpid: ETH_P_8021Q,
            tci: 0x2064,
        };
        let hop = NextHop {
            mac: PEER,
            vlan: Some(vlan),
        };
        let (src, dst) = (addr("[fd77::1]:3478"), addr("[fd77::2]:5004"));
        for len in [0, 7, 1200, 1452] {
            let payload = vec![0x80 | len as u8; len];
            let frame = build(&hop, src, dst, &payload);
            assert_eq!(frame.len(), 18 + 40 + 8 + len);
            assert_eq!(&frame[12..18], &[0x81, 0x00, 0x20, 0x64, 0x86, 0xdd]);
            assert!(verify_udp(&frame, 18), "UDP checksum, len {len}");
            let parsed = parse(&frame).unwrap();
            assert_eq!((parsed.source, parsed.destination), (src, dst));
            assert_eq!(parsed.payload, &payload[..]);
            assert_eq!(parsed.hop.vlan, Some(vlan));
        }
    }

    /// What a device does with a checksum left to it (the kernel's
    /// `skb_checksum_help`): sums from the UDP header to the end, the field's seed
    /// included, and stores the complement. That gives the frame the relay would have
    /// written itself, for both families.
    #[test]
    fn a_checksum_left_to_the_device_completes_to_the_full_one() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        let cases = [
            ("10.0.0.1:5000", "10.0.0.2:6000", 14 + 20),
            ("[fd00::1]:5000", "[fd00::2]:6000", 14 + 40),
        ];
        for (source, destination, udp_at) in cases {
            for len in [0, 1, 2, 3, 1199, 1200] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let (source, destination) = (addr(source), addr(destination));
                let full = build(&hop, source, destination, &payload);
                let mut left = build_with(&hop, source, destination, &payload, UdpChecksum::Device);
                assert_ne!(left, full, "the seed is not the checksum");
                let completed = match complement(sum(&left[udp_at..], 0)) {
                    [0, 0] => [0xff, 0xff],
                    c => c,
                };
                left[udp_at + 6..udp_at + 8].copy_from_slice(&completed);
                assert_eq!(left, full, "{source} {len} bytes");
            }
        }
    }

    #[test]
    fn the_checksum_request_names_the_field() {
        let meta = checksum_request(34, 6);
        assert_eq!(meta.len(), TX_METADATA_LEN);
        assert_eq!(
            u64::from_ne_bytes(meta[..8].try_into().unwrap()),
            u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM)
        );
        assert_eq!(
            meta[8..12],
            [34u16.to_ne_bytes(), 6u16.to_ne_bytes()].concat()
        );
        assert!(meta[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn mixed_families_are_refused() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        let mut buf = vec![0; MAX_HEADERS + 10];
        let r = write_headers(
            &mut buf,
            MAX_HEADERS,
            10,
            (OURS, &hop),
            (addr("10.0.0.1:1"), addr("[::1]:2")),
            UdpChecksum::Full,
        );
        assert_eq!(r, None);
    }

    #[test]
    fn padding_after_the_datagram_is_not_payload() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        let mut frame = build(&hop, addr("10.0.0.1:1"), addr("10.0.0.2:2"), b"hi");
        frame.resize(60, 0); // the Ethernet minimum
        assert_eq!(parse(&frame).unwrap().payload, b"hi");
    }

    #[test]
    fn malformed_frames_are_named() {
        let hop = NextHop {
            mac: PEER,
            vlan: None,
        };
        let good = build(&hop, addr("10.0.0.1:1"), addr("10.0.0.2:2"), b"payload");
        let good6 = build(&hop, addr("[::1]:1"), addr("[::2]:2"), b"payload");
        let edit = |base: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = base.to_vec();
            f(&mut v);
            v
        };
        let cases: Vec<(Vec<u8>, Malformed)> = vec![
            (good[..10].to_vec(), Malformed::Truncated),
            (good[..30].to_vec(), Malformed::Truncated),
            (edit(&good, &|v| v[12] = 0x09), Malformed::NotIp),
            (edit(&good, &|v| v[23] = 6), Malformed::NotUdp),
            (edit(&good, &|v| v[20] |= 0x20), Malformed::Fragment),
            (edit(&good, &|v| v[14] = 0x44), Malformed::BadIpv4Header),
            (edit(&good, &|v| v[22] ^= 1), Malformed::BadIpv4Header),
            (good[..good.len() - 1].to_vec(), Malformed::BadLength),
            (edit(&good, &|v| v[39] = 200), Malformed::BadLength),
            (edit(&good, &|v| v[39] = 7), Malformed::BadLength),
            (edit(&good6, &|v| v[20] = 58), Malformed::NotUdp),
            (edit(&good6, &|v| v[19] = 200), Malformed::BadLength),
            (good6[..50].to_vec(), Malformed::Truncated),
        ];
        for (i, (frame, why)) in cases.iter().enumerate() {
            assert_eq!(parse(frame), Err(*why), "case {i}");
        }
        assert!(parse(&good).is_ok() && parse(&good6).is_ok());
    }

    proptest::proptest! {
        /// A valid frame with a few bytes changed and its tail cut somewhere.
        #[test]
        fn damaged_frames_never_panic(
            edits in proptest::collection::vec((0usize..100, proptest::num::u8::ANY), 0..4),
            keep in 0usize..100,
        ) {
            let hop = NextHop { mac: PEER, vlan: None };
            let mut frame = build(&hop, addr("10.0.0.1:1"), addr("10.0.0.2:2"), &[7; 40]);
            for (at, byte) in edits {
                let at = at % frame.len();
                frame[at] = byte;
            }
            frame.truncate(keep);
            let _ = parse(&frame);
        }
    }
}
