//! The XDP program against a reference model of its rules, written from the design
//! (docs/architecture.md, "The packet's way with XDP"): a table of hand-built frames, one
//! or more per rule, then random frames and random mutations of well-formed STUN, DTLS
//! and RTP frames (bit flips, cuts, padding, edited length and header fields), all run
//! through the loaded program with `BPF_PROG_TEST_RUN`. Every verdict must be the
//! model's: above all, nothing the design leaves to the kernel may be redirected or
//! dropped, and nothing well formed may be dropped or aborted where it should pass.
//!
//! The STUN limits are set out of reach here, so the model is exact: they have tests
//! of their own (xdp_program.rs). Needs root.
//!
//! ```sh
//! sudo -E RELAY_EBPF=on cargo test --release -p relay --test xdp_classifier -- --nocapture
//! ```

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use common::netns::require_root;
use common::xdp::{
    admit_clients, datagram, ipv4_header, ipv6_header, moved, options, verdict, with_socket, Frame,
    CLIENT4, CLIENT6, CLIENT_PORT, DTLS, MEDIA_PORT, OTHER, RTCP, RTP, STUN, XDP_DROP, XDP_PASS,
    XDP_REDIRECT,
};
use relay::io::xdp::{XdpMode, XdpProgram};
use relay_common::Remote;

/// Seeds of the random runs: fixed, so that a failure replays.
const SEEDS: [u64; 4] = [1, 0x5eed, 0xdead_beef, 7_919];
/// Per seed: random frames, and mutations of well-formed ones.
const RANDOM_FRAMES: usize = 25_000;
const MUTATED_FRAMES: usize = 100_000;

/// Per-source and global STUN limits no run here can reach.
const UNREACHABLE: u32 = 1_000_000_000;

fn load() -> XdpProgram {
    require_root();
    XdpProgram::load(&options(XdpMode::Native, 1, UNREACHABLE))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The remotes `admit_clients` admits: one IPv4, one IPv6.
fn admitted() -> HashSet<Remote> {
    [
        SocketAddr::from((CLIENT4, CLIENT_PORT)),
        SocketAddr::from((CLIENT6, CLIENT_PORT)),
    ]
    .into_iter()
    .map(Remote::from)
    .collect()
}

/// The program with a socket on RX queue 0 (so redirects take) and the clients admitted.
fn ready() -> (XdpProgram, OwnedFd) {
    let mut program = load();
    let socket = with_socket(&mut program);
    admit_clients(&program);
    (program, socket)
}

/// The verdict the design gives `frame`, with the STUN limits out of reach:
/// - anything but a well-formed, unfragmented UDP datagram to the media port (behind at
///   most one VLAN tag, IPv6 without extension headers) is the kernel's: XDP_PASS;
/// - from an admitted remote (address and port): STUN, DTLS, RTP and RTCP are
///   redirected, anything else (of no RFC 7983 class, or empty) passes;
/// - from any other remote: STUN is redirected (within limits), the rest dropped.
///
/// Well formed means the lengths agree: the IP packet lies within the frame (Ethernet
/// padding may follow), the UDP datagram within the IP packet, and is at least its
/// header. Checksums are not part of it: the program does not check them (veth hands
/// it partial UDP checksums; userspace checks the IPv4 header's).
fn model(frame: &[u8], admitted: &HashSet<Remote>) -> u32 {
    let Some((remote, payload)) = datagram_to_media_port(frame) else {
        return XDP_PASS;
    };
    // RFC 7983 by the first byte: STUN 0-3, DTLS 20-63, RTP and RTCP 128-191.
    let first = payload.first().copied();
    let stun = matches!(first, Some(0..=3));
    let ours = stun || matches!(first, Some(20..=63 | 128..=191));
    match (admitted.contains(&remote), ours) {
        (true, true) => XDP_REDIRECT,
        (true, false) => XDP_PASS,
        (false, _) if stun => XDP_REDIRECT,
        (false, _) => XDP_DROP,
    }
}

/// The remote and the payload of `frame` if it is a well-formed datagram to the media port.
fn datagram_to_media_port(frame: &[u8]) -> Option<(Remote, &[u8])> {
    let field = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (ether_type, l3) = match field(12)? {
        0x8100 | 0x88a8 => (field(16)?, 18),
        ether_type => (ether_type, 14),
    };
    let (ip, l4, ip_end) = match ether_type {
        0x0800 => {
            let header = frame.get(l3..l3 + 20)?;
            let header_len = usize::from(header[0] & 0xf) * 4;
            let fragment = field(l3 + 6)? & 0x3fff != 0;
            if header[0] >> 4 != 4 || header_len < 20 || header[9] != 17 || fragment {
                return None;
            }
            let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
            let total = usize::from(field(l3 + 2)?);
            (IpAddr::from(source), l3 + header_len, l3 + total)
        }
        0x86dd => {
            let header = frame.get(l3..l3 + 40)?;
            if header[0] >> 4 != 6 || header[6] != 17 {
                return None;
            }
            let source: [u8; 16] = header[8..24].try_into().unwrap();
            let payload_len = usize::from(field(l3 + 4)?);
            (IpAddr::from(source), l3 + 40, l3 + 40 + payload_len)
        }
        _ => return None,
    };
    let udp = frame.get(l4..l4 + 8)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let destination = u16::from_be_bytes([udp[2], udp[3]]);
    if destination != MEDIA_PORT || ip_end > frame.len() || udp_len < 8 || l4 + udp_len > ip_end {
        return None;
    }
    let source_port = u16::from_be_bytes([udp[0], udp[1]]);
    let remote = Remote::from(SocketAddr::new(ip, source_port));
    Some((remote, &frame[l4 + 8..l4 + udp_len]))
}

/// One frame per rule of the design, with the verdict and the counter it must give.
#[test]
fn each_rule_gives_its_verdict() {
    let (program, _socket) = ready();
    let admitted = admitted();
    let stranger4 = SocketAddr::from(([192, 0, 2, 9], 5_000));
    let stranger6 = SocketAddr::from(("2001:db8::9".parse::<Ipv6Addr>().unwrap(), 5_000));
    let v4 = |first| Frame::v4(first).bytes();
    let v6 = |first| Frame::v6(first).bytes();
    let set = |mut frame: Vec<u8>, at: usize, bytes: &[u8]| {
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        frame
    };
    let ipv4_with = |protocol: u8, fragment: u16| {
        let frame = Frame::v4(RTP);
        let udp = frame.udp_header();
        frame.build(
            0x0800,
            ipv4_header(CLIENT4, protocol, fragment, udp.len()),
            &udp,
        )
    };
    let ipv6_with = |next_header: u8| {
        let frame = Frame::v6(RTP);
        let mut l4 = vec![17, 0, 0, 0, 0, 0, 0, 0];
        l4.extend(frame.udp_header());
        frame.build(0x86dd, ipv6_header(CLIENT6, next_header, l4.len()), &l4)
    };
    let ipv4_options = {
        let frame = Frame::v4(DTLS);
        let udp = frame.udp_header();
        let mut ip = ipv4_header(CLIENT4, 17, 0, udp.len() + 8);
        ip[0] = 0x47;
        ip.extend([1, 1, 1, 1, 1, 1, 1, 0]); // NOPs, end of options
        frame.build(0x0800, ip, &udp)
    };
    #[rustfmt::skip]
    let table: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        // Not UDP to the media port: the kernel's.
        ("ARP", set(v4(RTP), 12, &[0x08, 0x06]), XDP_PASS, "passed_not_ours"),
        ("TCP to the media port", ipv4_with(6, 0), XDP_PASS, "passed_not_ours"),
        ("ICMPv6", set(v6(RTP), 14 + 6, &[58]), XDP_PASS, "passed_not_ours"),
        ("UDP to another port", Frame::v4(RTP).for_port(MEDIA_PORT + 1).bytes(), XDP_PASS, "passed_not_ours"),
        ("IPv4 EtherType, version 6", set(v4(RTP), 14, &[0x65]), XDP_PASS, "passed_not_ours"),
        ("IPv4 header length under 20", set(v4(RTP), 14, &[0x44]), XDP_PASS, "passed_not_ours"),
        ("IPv6 EtherType, version 4", set(v6(RTP), 14, &[0x40]), XDP_PASS, "passed_not_ours"),
        ("two VLAN tags", Frame::v4(RTP).tagged(0x88a8).tagged(0x8100).bytes(), XDP_PASS, "passed_not_ours"),
        // What the program does not parse.
        ("IPv4 first fragment", ipv4_with(17, 0x2000), XDP_PASS, "passed_fragment"),
        ("IPv4 later fragment", ipv4_with(17, 185), XDP_PASS, "passed_fragment"),
        ("IPv6 hop-by-hop, then UDP", ipv6_with(0), XDP_PASS, "passed_ipv6_extension"),
        ("IPv6 fragment header, then UDP", ipv6_with(44), XDP_PASS, "passed_ipv6_extension"),
        ("IPv6 routing header, then UDP", ipv6_with(43), XDP_PASS, "passed_ipv6_extension"),
        // Truncated, or lengths that disagree with the frame.
        ("cut in the Ethernet header's VLAN tag", Frame::v4(RTP).tagged(0x8100).bytes()[..16].to_vec(), XDP_PASS, "passed_truncated"),
        ("cut in the IPv6 header", v6(RTP)[..14 + 39].to_vec(), XDP_PASS, "passed_truncated"),
        ("cut in the UDP header", v4(RTP)[..14 + 20 + 7].to_vec(), XDP_PASS, "passed_truncated"),
        ("cut in the payload", v4(STUN)[..14 + 20 + 8 + 1].to_vec(), XDP_PASS, "passed_bad_length"),
        ("UDP length past the packet", set(v6(RTP), 14 + 40 + 4, &[0, 29]), XDP_PASS, "passed_bad_length"),
        ("UDP length 7", set(v4(STUN), 14 + 20 + 4, &[0, 7]), XDP_PASS, "passed_bad_length"),
        ("IPv4 total length past the frame", set(v4(RTP), 14 + 2, &[0, 49]), XDP_PASS, "passed_bad_length"),
        // Admitted remotes: their RFC 7983 classes go to the socket, the rest passes.
        ("admitted STUN", v4(STUN), XDP_REDIRECT, "redirected_stun"),
        ("admitted DTLS, IPv4 options", ipv4_options, XDP_REDIRECT, "redirected_dtls"),
        ("admitted RTP, 802.1Q", Frame::v4(RTP).tagged(0x8100).bytes(), XDP_REDIRECT, "redirected_rtp"),
        ("admitted RTCP, IPv6, 802.1ad", Frame::v6(RTCP).tagged(0x88a8).bytes(), XDP_REDIRECT, "redirected_rtp"),
        ("admitted RTP, Ethernet padding", { let mut f = v4(RTP); f.extend([0; 20]); f }, XDP_REDIRECT, "redirected_rtp"),
        ("admitted TURN channel data", v6(OTHER), XDP_PASS, "passed_other_class"),
        ("admitted, empty", Frame::udp(SocketAddr::from((CLIENT4, CLIENT_PORT)), &[]).bytes(), XDP_PASS, "passed_other_class"),
        // Unknown remotes: STUN only (within limits), the rest dropped.
        ("unknown STUN", Frame::udp(stranger4, &datagram(STUN)).bytes(), XDP_REDIRECT, "redirected_stun"),
        ("unknown STUN, IPv6", Frame::udp(stranger6, &datagram(STUN)).bytes(), XDP_REDIRECT, "redirected_stun"),
        ("unknown DTLS", Frame::udp(stranger4, &datagram(DTLS)).bytes(), XDP_DROP, "dropped_unknown_source"),
        ("unknown RTP", Frame::udp(stranger6, &datagram(RTP)).bytes(), XDP_DROP, "dropped_unknown_source"),
        ("admitted address, other port", Frame::udp(SocketAddr::from((CLIENT4, 1)), &datagram(RTP)).bytes(), XDP_DROP, "dropped_unknown_source"),
        ("unknown, empty", Frame::udp(stranger4, &[]).bytes(), XDP_DROP, "dropped_unknown_source"),
    ];
    for (what, frame, expected, counter) in &table {
        assert_eq!(model(frame, &admitted), *expected, "the model, on {what}");
        let before = moved(&program);
        assert_eq!(verdict(&program, frame), *expected, "{what}");
        let after = moved(&program);
        let changed: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
        assert_eq!(changed.len(), 1, "{what}: one counter moves, {after:?}");
        assert_eq!(changed[0].0, *counter, "{what}");
    }
}

/// SplitMix64: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible for these sizes).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Random bytes, as many as a random length in `lengths`.
    fn bytes_in(&mut self, lengths: std::ops::Range<usize>) -> Vec<u8> {
        let len = lengths.start + self.below(lengths.len());
        self.bytes(len)
    }
}

/// A well-formed frame of a random class, family, tagging and size, from an admitted
/// remote or not; and where its IP header starts.
fn well_formed(rng: &mut Rng) -> (Vec<u8>, usize) {
    let v6 = rng.chance(2);
    let source = match (v6, rng.chance(2)) {
        (false, true) => SocketAddr::from((CLIENT4, CLIENT_PORT)),
        (true, true) => SocketAddr::from((CLIENT6, CLIENT_PORT)),
        (false, false) => SocketAddr::from((Ipv4Addr::from(rng.next() as u32), rng.next() as u16)),
        (true, false) => SocketAddr::from((Ipv6Addr::from(rng.next() as u128), rng.next() as u16)),
    };
    let payload = match rng.below(4) {
        // A STUN Binding Request: type, length, magic cookie, transaction id, attributes.
        0 => {
            let attributes = rng.below(100) & !3;
            let mut stun = vec![0x00, 0x01];
            stun.extend((attributes as u16).to_be_bytes());
            stun.extend([0x21, 0x12, 0xa4, 0x42]);
            stun.extend(rng.bytes(12 + attributes));
            stun
        }
        // A DTLS 1.2 record: handshake (22) or application data (23).
        1 => {
            let body = rng.below(200);
            let mut dtls = vec![rng.pick(&[22, 23]), 0xfe, 0xfd];
            dtls.extend(rng.bytes(8));
            dtls.extend((body as u16).to_be_bytes());
            dtls.extend(rng.bytes(body));
            dtls
        }
        // RTP (version 2, any flags) or RTCP.
        2 => {
            let mut rtp = vec![0x80 | (rng.next() as u8 & 0x3f), rng.next() as u8];
            rtp.extend(rng.bytes_in(10..1210));
            rtp
        }
        // Anything else, sometimes empty.
        _ => rng.bytes_in(0..40),
    };
    let mut frame = Frame::udp(source, &payload);
    let tags = rng.below(3);
    if tags > 0 {
        frame = frame.tagged(rng.pick(&[0x8100, 0x88a8]));
    }
    (frame.bytes(), if tags > 0 { 18 } else { 14 })
}

/// Edits `frame` (whose IP header starts at `l3`) in one random way.
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>, l3: usize) {
    let v6 = frame.get(l3).is_some_and(|b| b >> 4 == 6);
    let l4 = l3 + if v6 { 40 } else { 20 };
    let set16 = |frame: &mut Vec<u8>, at: usize, value: u16| {
        if let Some(field) = frame.get_mut(at..at + 2) {
            field.copy_from_slice(&value.to_be_bytes());
        }
    };
    let get16 = |frame: &[u8], at: usize| {
        frame
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    match rng.below(10) {
        // Bit flips anywhere, or in the headers.
        0 | 1 => {
            let span = if rng.chance(2) { frame.len() } else { l4 + 8 };
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(span.min(frame.len()));
                frame[at] ^= 1 << rng.below(8);
            }
        }
        // Cut short, anywhere from the Ethernet header on.
        2 => frame.truncate(14 + rng.below(frame.len() - 13)),
        // Padding or trailing junk.
        3 => frame.extend(rng.bytes_in(1..65)),
        // A length field: IP total or payload length, or the UDP length.
        4 | 5 => {
            let at = match (rng.chance(2), v6) {
                (true, false) => l3 + 2,
                (true, true) => l3 + 4,
                (false, _) => l4 + 4,
            };
            let old = get16(frame, at);
            let new = match rng.below(4) {
                0 => rng.next() as u16,
                1 => old.wrapping_add(1 + rng.below(8) as u16),
                2 => old.wrapping_sub(1 + rng.below(8) as u16),
                _ => rng.pick(&[0, 1, 7, 8, 9, 0xffff]),
            };
            set16(frame, at, new);
        }
        // The IPv4 header length or fragment field, or the IPv6 next header.
        6 if v6 => {
            let next = rng.pick(&[0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 139, 140, 253]);
            if let Some(field) = frame.get_mut(l3 + 6) {
                *field = next;
            }
        }
        6 => {
            if rng.chance(2) {
                if let Some(field) = frame.get_mut(l3) {
                    *field = 0x40 | rng.below(16) as u8;
                }
            } else {
                let random = rng.next() as u16;
                let fragment = rng.pick(&[0x2000, 0x4000, 0x0001, 0x1fff, random]);
                set16(frame, l3 + 6, fragment);
            }
        }
        // The EtherType (or the one behind the VLAN tag).
        7 => {
            let ether_type = rng.pick(&[0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806, 0x88cc]);
            let at = if rng.chance(2) { 12 } else { l3 - 2 };
            set16(frame, at, ether_type);
        }
        // The ports, or the first payload byte (the class).
        8 => match rng.below(3) {
            0 => set16(
                frame,
                l4 + 2,
                rng.pick(&[MEDIA_PORT - 1, MEDIA_PORT + 1, 53]),
            ),
            1 => set16(frame, l4, rng.next() as u16),
            _ => {
                if let Some(first) = frame.get_mut(l4 + 8) {
                    *first = rng.next() as u8;
                }
            }
        },
        // IPv4 options (well formed: the lengths move with them).
        _ if !v6 && frame.len() >= l4 => {
            let words = 1 + rng.below(10);
            let header_len = usize::from(frame[l3] & 0xf) * 4;
            if header_len == 20 && words * 4 + 20 <= 60 {
                frame[l3] = 0x40 | (5 + words) as u8;
                let total = get16(frame, l3 + 2).wrapping_add(words as u16 * 4);
                set16(frame, l3 + 2, total);
                let options = std::iter::repeat_n(1u8, words * 4);
                frame.splice(l3 + 20..l3 + 20, options);
            }
        }
        _ => {}
    }
}

/// A frame of random bytes, often shaped like Ethernet + IP + UDP to the media port so
/// that the deeper checks see it.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let mut frame = rng.bytes_in(14..214);
    if rng.chance(4) {
        return frame;
    }
    let (ether_type, l3) = rng.pick(&[(0x0800u16, 14), (0x86dd, 14), (0x0800, 18), (0x86dd, 18)]);
    if l3 == 18 {
        frame[12..14].copy_from_slice(&rng.pick(&[0x8100u16, 0x88a8]).to_be_bytes());
    }
    let header = if ether_type == 0x86dd { 40 } else { 20 };
    if frame.len() < l3 + header + 8 {
        frame.resize(l3 + header + 8 + rng.below(30), 0);
    }
    frame[l3 - 2..l3].copy_from_slice(&ether_type.to_be_bytes());
    if ether_type == 0x86dd {
        frame[l3] = 0x60 | (frame[l3] & 0xf);
        frame[l3 + 6] = 17;
    } else {
        frame[l3] = 0x45;
        frame[l3 + 9] = 17;
    }
    let l4 = l3 + header;
    frame[l4 + 2..l4 + 4].copy_from_slice(&MEDIA_PORT.to_be_bytes());
    frame
}

#[test]
fn random_and_mutated_frames_get_the_models_verdict() {
    let (program, _socket) = ready();
    let admitted = admitted();
    let mut checked = 0u64;
    let mut by_verdict = [0u64; 5];
    let mut check = |frame: &[u8], how: &str, seed: u64| {
        let expected = model(frame, &admitted);
        let got = verdict(&program, frame);
        assert_eq!(
            got, expected,
            "{how} frame (seed {seed:#x}, input {checked}): verdict {got}, the model says \
             {expected}: {frame:02x?}"
        );
        checked += 1;
        by_verdict[got as usize] += 1;
    };
    for seed in SEEDS {
        let mut rng = Rng(seed);
        for _ in 0..RANDOM_FRAMES {
            check(&random_frame(&mut rng), "random", seed);
        }
        for _ in 0..MUTATED_FRAMES {
            let (mut frame, l3) = well_formed(&mut rng);
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut frame, l3);
            }
            check(&frame, "mutated", seed);
        }
    }
    let [_, dropped, passed, _, redirected] = by_verdict;
    println!(
        "{checked} frames checked against the model: {passed} passed, {redirected} \
         redirected, {dropped} dropped"
    );
    // Every frame moved exactly one counter, and each verdict was seen often enough to
    // mean something.
    let counters = moved(&program);
    println!("by counter: {counters:?}");
    let counted: u64 = counters.iter().map(|(_, n)| n).sum();
    assert_eq!(counted, checked);
    for (what, n) in [
        ("passed", passed),
        ("redirected", redirected),
        ("dropped", dropped),
    ] {
        assert!(n > checked / 50, "only {n} {what} of {checked}");
    }
}
