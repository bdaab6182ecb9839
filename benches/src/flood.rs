//! A packet generator for the XDP classifier: Ethernet frames written to a veth end
//! through an AF_PACKET socket with `sendmmsg`, from many spoofed sources, for a
//! bounded time and count.
//!
//! The kernel here has no pktgen (`CONFIG_NET_PKTGEN` is off and there is no
//! /proc/net/pktgen), and xdp-trafficgen is not installed, so the tool brings its own.
//! The frames are built once, before the clock starts; sending is one `sendmmsg` per
//! batch over them in turn.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Frames per `sendmmsg`.
pub const BATCH: usize = 64;

/// The fixed parts of every frame: from the viewers' end to the relay's media port.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
}

/// What a flood sends, by RFC 7983 class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// RTP (first byte 0x80) from 4096 unknown sources: the program must drop it all.
    Rtp,
    /// STUN Binding Requests from 16 unknown sources: each source gets its burst and
    /// rate (the relay's: 100 at once, 50/s), the rest is dropped in XDP.
    Stun,
    /// STUN Binding Requests from 65536 unknown sources, more than the program's
    /// per-source table holds (16384): every source looks new, so the flood goes to
    /// userspace as far as the rate limit is concerned. Shows what a per-source limit
    /// cannot stop.
    StunSpread,
}

impl Pattern {
    pub fn sources(self) -> usize {
        match self {
            Pattern::Rtp => 4096,
            Pattern::Stun => 16,
            Pattern::StunSpread => 65_536,
        }
    }

    /// The UDP payload of datagram `i` (`size` bytes for RTP; STUN carries a USERNAME).
    fn payload(self, i: usize, size: usize) -> Vec<u8> {
        match self {
            Pattern::Rtp => {
                let mut p = vec![0u8; size.max(12)];
                p[0] = 0x80;
                p[1] = 96;
                p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                p[4..8].copy_from_slice(&(i as u32 * 3000).to_be_bytes());
                p[8..12].copy_from_slice(&(0x0bad_0000 | i as u32).to_be_bytes());
                p
            }
            Pattern::Stun | Pattern::StunSpread => {
                // Binding Request, magic cookie, transaction id, USERNAME "flood:flood"
                // padded to 12 bytes: a well-formed request for a ufrag nobody has.
                let username = b"flood:flood\0";
                let mut p = Vec::with_capacity(20 + 4 + username.len());
                p.extend_from_slice(&[0x00, 0x01]);
                p.extend_from_slice(&((4 + username.len()) as u16).to_be_bytes());
                p.extend_from_slice(&0x2112_a442u32.to_be_bytes());
                p.extend_from_slice(&[0; 8]);
                p.extend_from_slice(&(i as u32).to_be_bytes());
                p.extend_from_slice(&[0x00, 0x06, 0x00, 11]);
                p.extend_from_slice(username);
                p
            }
        }
    }

    /// One frame per source: sources are 10.80.0.0/16 addresses (none of them a host
    /// the relay knows), each with its own port.
    pub fn frames(self, target: &Target, size: usize) -> Vec<Vec<u8>> {
        (0..self.sources())
            .map(|i| {
                let src = Ipv4Addr::new(10, 80, (i >> 8) as u8, i as u8);
                let src_port = 40_000 + (i % 20_000) as u16;
                udp_frame(target, src, src_port, &self.payload(i, size))
            })
            .collect()
    }
}

/// An Ethernet + IPv4 + UDP frame with valid IPv4 and UDP checksums.
pub fn udp_frame(target: &Target, src: Ipv4Addr, src_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&target.dst_mac);
    f.extend_from_slice(&target.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&target.dst_ip.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&target.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&target.dst_ip.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let sum = match checksum(&[&pseudo, &udp, payload]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        sum => sum,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// The Internet checksum (RFC 1071) of the parts, concatenated.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            None => odd = Some(byte),
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(high) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// How long and how much to send.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub duration: Duration,
    pub max_packets: u64,
    /// Packets per second; 0: as fast as the socket takes them.
    pub rate: u64,
}

/// What a flood did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Generated {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames refused (ENOBUFS: the veth's ring towards the peer was full).
    pub refused: u64,
    pub calls: u64,
    pub elapsed_s: f64,
    /// This thread's CPU time while sending (inline NAPI work included, if any).
    pub cpu_s: f64,
}

/// An AF_PACKET socket that writes whole Ethernet frames to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

impl PacketSocket {
    /// Opens it on `interface` (of the calling thread's network namespace). Bound to
    /// no protocol, it receives nothing; qdisc bypass skips the (empty) veth queue.
    pub fn open(interface: &str, dst_mac: [u8; 6]) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(interface).map_err(io::Error::other)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a pointer valid for the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst_mac);
        Ok(PacketSocket { fd, to })
    }

    /// Sends `frames` in turn, `BATCH` per call, within `bounds`.
    pub fn flood(&self, frames: &[Vec<u8>], bounds: Bounds) -> io::Result<Generated> {
        if frames.is_empty() {
            return Ok(Generated::default());
        }
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // Batches wrap around the end of the frames: lay the first BATCH out again.
        let wrap: Vec<libc::iovec> = iovs.iter().cycle().take(BATCH).copied().collect();
        iovs.extend(wrap);
        // SAFETY: all-zero is a valid mmsghdr; the pointers are set below.
        let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            msg.msg_hdr.msg_name = std::ptr::from_ref(&self.to).cast_mut().cast();
            msg.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut out = Generated::default();
        let cpu0 = crate::procfs::thread_cpu();
        let start = Instant::now();
        let mut next = 0usize;
        while out.sent + out.refused < bounds.max_packets && start.elapsed() < bounds.duration {
            if bounds.rate > 0 {
                let due =
                    Duration::from_secs_f64((out.sent + out.refused) as f64 / bounds.rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait.min(Duration::from_millis(10)));
                    continue;
                }
            }
            let want = BATCH.min((bounds.max_packets - out.sent - out.refused) as usize);
            // SAFETY: msgs[next..next + want] point at iovecs and frames that live
            // through the call; sendmmsg only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[next..].as_mut_ptr(),
                    want as u32,
                    0,
                )
            };
            out.calls += 1;
            let done = if n < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    // The veth's ring was full: this frame is lost, go on with the next.
                    Some(libc::ENOBUFS) => {
                        out.refused += 1;
                        1
                    }
                    Some(libc::EINTR) => 0,
                    _ => return Err(error),
                }
            } else {
                out.sent += n as u64;
                n as usize
            };
            next = (next + done) % frames.len();
        }
        out.elapsed_s = start.elapsed().as_secs_f64();
        out.cpu_s = (crate::procfs::thread_cpu() - cpu0).as_secs_f64();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst_ip: Ipv4Addr::new(10, 79, 0, 1),
            dst_port: 8189,
        }
    }

    #[test]
    fn frames_have_valid_checksums_and_the_target() {
        let f = udp_frame(
            &target(),
            Ipv4Addr::new(10, 80, 1, 2),
            40_001,
            &[0x80, 96, 1, 2, 3],
        );
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        assert_eq!(&f[0..6], &target().dst_mac);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A header with its checksum in place sums to 0xffff: its checksum is 0.
        assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&f[26..30]);
        pseudo[4..8].copy_from_slice(&f[30..34]);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&f[38..40]);
        assert_eq!(checksum(&[&pseudo, &f[34..]]), 0, "UDP checksum");
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 8189);
        assert_eq!(f[42], 0x80);
    }

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071, section 3: the sum of these bytes is 0xddf2 (one's complement 0x220d).
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2], &[0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d,
            "odd split"
        );
    }

    #[test]
    fn patterns_are_of_their_rfc_7983_class_from_distinct_sources() {
        for pattern in [Pattern::Rtp, Pattern::Stun, Pattern::StunSpread] {
            let frames = pattern.frames(&target(), 100);
            assert_eq!(frames.len(), pattern.sources());
            // RFC 7983: RTP version 2 (first byte 0x80), STUN Binding Request (0x0001).
            let expected: &[u8] = if pattern == Pattern::Rtp {
                &[0x80, 96]
            } else {
                &[0, 1]
            };
            assert!(frames.iter().all(|f| &f[42..44] == expected), "{pattern:?}");
            let mut sources: Vec<[u8; 4]> = frames
                .iter()
                .map(|f| f[26..30].try_into().unwrap())
                .collect();
            sources.sort();
            sources.dedup();
            assert_eq!(
                sources.len(),
                pattern.sources(),
                "{pattern:?}: one source each"
            );
            assert!(sources.iter().all(|s| s[..2] == [10, 80]));
        }
        let stun = Pattern::Stun.payload(7, 0);
        assert_eq!(
            u16::from_be_bytes([stun[2], stun[3]]) as usize,
            stun.len() - 20
        );
        assert_eq!(&stun[4..8], &[0x21, 0x12, 0xa4, 0x42], "magic cookie");
    }
}
