//! What the XDP program tests share: the options they load the program with, a
//! readable view of its counters, `BPF_PROG_TEST_RUN`, and frames to run through it.
#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use relay::io::xdp::{Counter, XdpMode, XdpOptions, XdpProgram};

use super::netns::require_root;

pub const MEDIA_PORT: u16 = 8189;

pub fn options(mode: XdpMode, stun_rate: u32, stun_burst: u32) -> XdpOptions {
    XdpOptions {
        media_port: NonZeroU16::new(MEDIA_PORT).unwrap(),
        mode,
        stun_rate: NonZeroU32::new(stun_rate).unwrap(),
        stun_burst: NonZeroU32::new(stun_burst).unwrap(),
        // Out of reach unless a test sets its own.
        stun_global_rate: NonZeroU32::new(1_000_000_000).unwrap(),
        stun_global_burst: NonZeroU32::new(1_000_000_000).unwrap(),
        queues: NonZeroU32::new(2).unwrap(),
        debug_logs: false,
    }
}

/// The counters that moved, by name, for readable assertion failures.
pub fn moved(program: &XdpProgram) -> Vec<(&'static str, u64)> {
    program
        .counters()
        .expect("read the counters")
        .into_iter()
        .filter(|&(_, n)| n != 0)
        .map(|(counter, n): (Counter, u64)| (counter.name(), n))
        .collect()
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

pub const STUN: u8 = 0x00;
pub const DTLS: u8 = 22;
pub const RTP: u8 = 0x80;
pub const RTCP: u8 = 0x81;
/// TURN channel data: of no RFC 7983 class the relay serves.
pub const OTHER: u8 = 0x40;

pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
pub const CLIENT_PORT: u16 = 40_000;

/// `BPF_PROG_TEST_RUN` over libc: aya 0.14 has no helper for it. The layout is the
/// `test` member of `union bpf_attr` (linux/bpf.h). The kernel refuses (EINVAL) any
/// nonzero byte past the last field, so the tail padding is a field, always zero.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    tail_padding: u32,
}

/// Runs `frame` through the program `repeat` times; the verdict of the last run and
/// the frame as the program left it.
pub fn test_run(program: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: program.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: attr points at valid buffers of the sizes it states, for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(10), // BPF_PROG_TEST_RUN
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}

/// The kernel's verdict on `frame`; asserts the program left the frame as it was.
pub fn verdict(program: &XdpProgram, frame: &[u8]) -> u32 {
    let (verdict, out) = test_run(program.fd().unwrap(), frame, 1)
        .unwrap_or_else(|error| panic!("BPF_PROG_TEST_RUN of {frame:02x?}: {error}"));
    assert_eq!(out, frame, "the program changed the frame");
    verdict
}

pub fn load(stun_rate: u32, stun_burst: u32) -> XdpProgram {
    require_root();
    XdpProgram::load(&options(XdpMode::Native, stun_rate, stun_burst))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Admits the clients' remotes: `CLIENT4` and `CLIENT6`, port `CLIENT_PORT`.
pub fn admit_clients(program: &XdpProgram) {
    let mut admission = program.admission().unwrap();
    for address in [IpAddr::V4(CLIENT4), IpAddr::V6(CLIENT6)] {
        admission
            .admit(SocketAddr::new(address, CLIENT_PORT))
            .unwrap();
    }
}

/// An AF_XDP socket in the program's slot for RX queue 0 (the queue test runs use), so
/// that a redirect takes (XDP_REDIRECT) instead of falling back to XDP_PASS.
pub fn with_socket(program: &mut XdpProgram) -> OwnedFd {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "AF_XDP socket: {}", io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    program
        .register_socket(0, socket.as_fd())
        .unwrap_or_else(|error| panic!("{error}"));
    socket
}

/// Ethernet (with `tags`: VLAN TPIDs, outermost first) + IP + UDP frames.
pub struct Frame {
    pub tags: Vec<u16>,
    pub source: SocketAddr,
    pub destination_port: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn udp(source: SocketAddr, payload: &[u8]) -> Frame {
        Frame {
            tags: Vec::new(),
            source,
            destination_port: MEDIA_PORT,
            payload: payload.to_vec(),
        }
    }

    pub fn v4(first_byte: u8) -> Frame {
        Frame::udp(
            SocketAddr::from((CLIENT4, CLIENT_PORT)),
            &datagram(first_byte),
        )
    }

    pub fn v6(first_byte: u8) -> Frame {
        Frame::udp(
            SocketAddr::from((CLIENT6, CLIENT_PORT)),
            &datagram(first_byte),
        )
    }

    pub fn tagged(mut self, tpid: u16) -> Frame {
        self.tags.push(tpid);
        self
    }

    pub fn for_port(mut self, port: u16) -> Frame {
        self.destination_port = port;
        self
    }

    pub fn udp_header(&self) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend(self.source.port().to_be_bytes());
        udp.extend(self.destination_port.to_be_bytes());
        udp.extend((8 + self.payload.len() as u16).to_be_bytes());
        udp.extend([0, 0]); // checksum: the program must not care
        udp.extend(&self.payload);
        udp
    }

    /// The frame, with `ip` as the IP header (it must carry the right EtherType).
    pub fn build(&self, ether_type: u16, ip: Vec<u8>, l4: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for (i, tpid) in self.tags.iter().enumerate() {
            frame.extend(tpid.to_be_bytes());
            frame.extend((100 + i as u16).to_be_bytes()); // VLAN ID
        }
        frame.extend(ether_type.to_be_bytes());
        frame.extend(ip);
        frame.extend(l4);
        frame
    }

    pub fn bytes(&self) -> Vec<u8> {
        let udp = self.udp_header();
        match self.source {
            SocketAddr::V4(source) => {
                self.build(0x0800, ipv4_header(*source.ip(), 17, 0, udp.len()), &udp)
            }
            SocketAddr::V6(source) => {
                self.build(0x86dd, ipv6_header(*source.ip(), 17, udp.len()), &udp)
            }
        }
    }
}

/// A datagram of the class `first_byte` names, of a plausible size.
pub fn datagram(first_byte: u8) -> Vec<u8> {
    let mut datagram = vec![0u8; 20];
    datagram[0] = first_byte;
    datagram
}

pub fn ipv4_header(source: Ipv4Addr, protocol: u8, fragment: u16, payload: usize) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend((20 + payload as u16).to_be_bytes());
    ip.extend([0x12, 0x34]); // identification
    ip.extend(fragment.to_be_bytes());
    ip.extend([64, protocol, 0, 0]); // TTL, protocol, checksum (not checked)
    ip.extend(source.octets());
    ip.extend([10, 77, 0, 1]);
    ip
}

pub fn ipv6_header(source: Ipv6Addr, next_header: u8, payload: usize) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend((payload as u16).to_be_bytes());
    ip.extend([next_header, 64]);
    ip.extend(source.octets());
    ip.extend("fd77::1".parse::<Ipv6Addr>().unwrap().octets());
    ip
}
