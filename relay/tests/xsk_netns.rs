//! The AF_XDP socket (`relay::io::xdp`) on a real kernel, no mocks: two network
//! namespaces made by each test (tests/common/netns.rs), joined by a veth pair with one
//! queue each way. In the relay's namespace the embedded XDP program runs (attached
//! here with aya, native mode: the real loader lives elsewhere) and redirects the media
//! port to the socket under test; the peer in the client's namespace uses plain kernel
//! sockets, so the peer's kernel checks every frame the socket builds (MACs, addresses,
//! lengths, checksums).
//!
//! Needs root (namespaces, XDP, AF_XDP) and `ip`; run as another user, each test fails
//! saying so. `echo_rate` measures and is ignored by default:
//! `cargo test -p relay --release --test xsk_netns -- --ignored --nocapture echo_rate`.

mod common;

use std::ffi::CString;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::num::{NonZeroU16, NonZeroU32};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use relay::io::udp::{self, UdpOptions};
use relay::io::xdp::{self, XdpMode, XdpOptions, XdpProgram, XskOptions, XskReceiver, XskSender};
use relay::io::{Receiver, SendStats, Sender};
use relay_testkit::netns::Pair;

use common::netns::{
    check_other_traffic, net, CLIENT4, CLIENT6, CLIENT_IF, CLIENT_MAC, RELAY4, RELAY6, RELAY_IF,
    RELAY_MAC,
};

const PORT: u16 = 5004;

/// The namespaces for one test: one queue each way, so all traffic meets the one socket
/// and none slips to queue 1.
fn one_queue_net() -> Pair {
    net(1)
}

/// A peer socket in the client's namespace with room for big batches.
fn peer(net: &Pair, ip: &str) -> UdpSocket {
    let addr = SocketAddr::new(ip.parse().unwrap(), 0);
    net.client.enter(|| {
        let socket = UdpSocket::bind(addr).unwrap();
        let size: libc::c_int = 16 << 20;
        // SAFETY: passes a live int and its size (SO_RCVBUFFORCE: we are root).
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        socket
    })
}

/// The peer kernel's UDP receive errors (bad checksums among them), IPv4 and IPv6.
fn peer_udp_errors(net: &Pair) -> (u64, u64) {
    net.client.udp_counter("InErrors").unwrap()
}

/// The socket under test, with the XDP program feeding it (detached on drop).
struct Relay {
    rx: XskReceiver,
    tx: XskSender,
    _program: XdpProgram,
}

fn relay(net: &Pair, local: SocketAddr, opts: &XskOptions) -> Relay {
    net.relay.enter(|| {
        // Peers here are unknown sources sending STUN-class payloads (see `payload`):
        // buckets this large let all of them through to the socket under test.
        let options = XdpOptions {
            media_port: NonZeroU16::new(local.port()).unwrap(),
            mode: XdpMode::Native,
            stun_rate: NonZeroU32::new(10_000_000).unwrap(),
            stun_burst: NonZeroU32::new(10_000_000).unwrap(),
            stun_global_rate: NonZeroU32::new(10_000_000).unwrap(),
            stun_global_burst: NonZeroU32::new(10_000_000).unwrap(),
            queues: NonZeroU32::new(1).unwrap(),
            debug_logs: false,
        };
        let mut program = XdpProgram::attach(RELAY_IF, &options).unwrap_or_else(|e| panic!("{e}"));
        let (rx, tx) = xdp::open(RELAY_IF, 0, local, opts).expect("AF_XDP socket");
        assert!(!rx.zero_copy(), "veth has copy mode only");
        // SAFETY: rx keeps the descriptor open for as long as the program uses it.
        program
            .register_socket(0, unsafe { BorrowedFd::borrow_raw(rx.raw_fd()) })
            .unwrap();
        Relay {
            rx,
            tx,
            _program: program,
        }
    })
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// A payload the XDP program redirects from an unknown source: its first byte is in
/// RFC 7983's STUN range (the socket itself does not care what the payload is).
fn payload(tag: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (tag as usize * 31 + i * 7) as u8)
        .collect();
    if let Some(first) = p.first_mut() {
        *first = tag as u8 & 0x03;
    }
    p
}

fn readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

type Got = (SocketAddr, SocketAddr, Vec<u8>);

/// Receives until `want` datagrams came or two seconds passed, waiting in poll().
fn receive(rx: &mut impl Receiver, want: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < want && Instant::now() < deadline {
        if readable(rx.fd(), 100) {
            rx.recv(&mut |d| got.push((d.source, d.destination, d.data.to_vec())))
                .unwrap();
        }
    }
    got
}

fn queue(tx: &mut impl Sender, data: &[u8], from: SocketAddr, to: SocketAddr) {
    tx.buffer()[..data.len()].copy_from_slice(data);
    tx.commit(data.len(), from, to);
}

/// What the peer receives within a second of silence, up to `want` datagrams.
fn peer_receive(socket: &UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0; 2048];
    while got.len() < want {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => got.push((from, buf[..n].to_vec())),
            Err(_) => break,
        }
    }
    got
}

/// Datagrams of many sizes (odd ones, the largest the MTU allows) to the socket,
/// then an answer to each; `max` is the largest UDP payload of one frame.
fn round_trip(net: &Pair, relay_ip: &str, peer_ip: &str, max: usize, opts: &XskOptions) {
    let local = sa(relay_ip, PORT);
    let mut r = relay(net, local, opts);
    let peer = peer(net, peer_ip);
    let peer_addr = peer.local_addr().unwrap();
    // Linux 6.8+ in copy mode (veth): the request for the device's checksum is taken.
    assert_eq!(r.tx.checksum_offload(), opts.checksum_offload);

    // Nothing heard from the peer yet: no MAC to send to, so dropped and counted.
    queue(&mut r.tx, &payload(0, 10), local, peer_addr);
    r.tx.flush();
    assert_eq!(r.tx.stats().dropped, 1);
    assert_eq!(r.tx.drops().no_next_hop, 1);
    assert!(
        !readable(r.rx.raw_fd(), 0),
        "readable with nothing received"
    );

    let sizes = [1, 2, 3, 100, 101, 777, 1200, max - 1, max];
    let sent: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i as u32 + 1, n))
        .collect();
    for p in &sent {
        peer.send_to(p, local).unwrap();
    }
    assert!(readable(r.rx.raw_fd(), 1000), "not readable for epoll");
    let got = receive(&mut r.rx, sent.len());
    assert_eq!(got.len(), sent.len(), "{:?}", r.rx.stats());
    for ((source, destination, data), p) in got.iter().zip(&sent) {
        assert_eq!(*source, peer_addr);
        assert_eq!(*destination, local);
        assert_eq!(data, p);
    }
    let stats = r.rx.stats();
    assert_eq!((stats.received, stats.malformed), (sent.len() as u64, 0));
    // Syscalls on receive only to busy-poll: copy mode needs no fill-ring wakeups.
    assert_eq!(stats.calls > 0, opts.busy_poll, "{stats:?}");

    // Answers of the same sizes, different bytes, from the address written to.
    let answers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i as u32 + 100, n))
        .collect();
    for ((source, destination, _), a) in got.iter().zip(&answers) {
        queue(&mut r.tx, a, *destination, *source);
    }
    r.tx.flush();
    assert_eq!(
        r.tx.stats(),
        SendStats {
            sent: answers.len() as u64,
            dropped: 1,
            calls: 1
        }
    );
    let back = peer_receive(&peer, answers.len());
    let errors = peer_udp_errors(net);
    assert_eq!(
        errors,
        (0, 0),
        "the peer's kernel dropped frames (checksums?)"
    );
    assert_eq!(back.len(), answers.len());
    for ((from, data), a) in back.iter().zip(&answers) {
        assert_eq!(*from, local, "source address and port of the answer");
        assert_eq!(data, a);
    }
}

/// Each UDP checksum: left to the device (the default; a veth peer trusts it unread),
/// completed by the kernel on the CPU from the relay's seed (the peer's kernel checks
/// it), and written by the relay.
fn checksum_choices() -> [XskOptions; 3] {
    let with = |checksum_offload, checksum_in_kernel| XskOptions {
        checksum_offload,
        checksum_in_kernel,
        ..XskOptions::default()
    };
    [with(true, false), with(true, true), with(false, false)]
}

#[test]
fn ipv4_datagrams_both_ways() {
    for opts in checksum_choices() {
        let net = one_queue_net();
        round_trip(&net, RELAY4, CLIENT4, 1500 - 28, &opts);
    }
}

#[test]
fn ipv6_datagrams_both_ways() {
    for opts in checksum_choices() {
        let net = one_queue_net();
        round_trip(&net, RELAY6, CLIENT6, 1500 - 48, &opts);
    }
}

#[test]
fn busy_polling_socket_datagrams_both_ways() {
    let net = one_queue_net();
    let opts = XskOptions {
        busy_poll: true,
        ..XskOptions::default()
    };
    round_trip(&net, RELAY4, CLIENT4, 1500 - 28, &opts);
}

/// Each `TX_BATCH` frames leave in one kick as they are queued (so that the frames
/// written next are the ones just completed), the rest at the flush.
#[test]
fn a_batch_of_many_datagrams_leaves_in_one_kick_per_tx_batch() {
    let net = one_queue_net();
    let local = sa(RELAY4, PORT);
    let mut r = relay(&net, local, &XskOptions::default());
    let peer = peer(&net, CLIENT4);
    peer.send_to(&payload(1, 20), local).unwrap();
    let got = receive(&mut r.rx, 1);
    let (source, destination) = (got[0].0, got[0].1);

    const N: u32 = 2000;
    for i in 0..N {
        queue(
            &mut r.tx,
            &payload(i, 200 + (i as usize % 50)),
            destination,
            source,
        );
    }
    r.tx.flush();
    let stats = r.tx.stats();
    assert_eq!(
        stats,
        SendStats {
            sent: u64::from(N),
            dropped: 0,
            calls: u64::from(N.div_ceil(xdp::TX_BATCH)),
        },
        "one kick per TX_BATCH frames (XDP_MAX_TX_SKB_BUDGET raised)"
    );
    let back = peer_receive(&peer, N as usize);
    assert_eq!(back.len(), N as usize);
    for (i, (from, data)) in back.iter().enumerate() {
        assert_eq!(*from, local);
        assert_eq!(*data, payload(i as u32, 200 + i % 50), "datagram {i}");
    }
    assert_eq!(peer_udp_errors(&net), (0, 0));
}

/// 64 UMEM frames, 32 of them receiving; rings of 32, but `tx_ring` for TX.
fn small_umem(tx_ring: u32) -> XskOptions {
    XskOptions {
        frames: 64,
        fill_ring: 32,
        rx_ring: 32,
        tx_ring,
        comp_ring: 32,
        ..XskOptions::default()
    }
}

/// 64 frames in all: every datagram below needs a frame recycled through the fill ring
/// (receive) or the completion ring (send), and a batch larger than the TX ring is
/// flushed by `buffer()` as it fills.
#[test]
fn a_small_umem_recycles_its_frames() {
    let net = one_queue_net();
    let local = sa(RELAY4, PORT);
    let mut r = relay(&net, local, &small_umem(16));
    let peer = peer(&net, CLIENT4);
    let mut tag = 0;
    for round in 0..10 {
        let sent: Vec<Vec<u8>> = (0..25)
            .map(|_| {
                tag += 1;
                payload(tag, 300)
            })
            .collect();
        for p in &sent {
            peer.send_to(p, local).unwrap();
        }
        let got = receive(&mut r.rx, sent.len());
        assert_eq!(
            got.len(),
            sent.len(),
            "round {round}: {:?}",
            r.rx.kernel_stats()
        );
        // Three answers to each: 75 datagrams through a 16-slot TX ring and 32 frames.
        for (i, (source, destination, data)) in got.iter().enumerate() {
            assert_eq!(*data, sent[i]);
            for k in 0..3 {
                queue(
                    &mut r.tx,
                    &payload(1000 * k + tag, 100),
                    *destination,
                    *source,
                );
            }
        }
        r.tx.flush();
        let back = peer_receive(&peer, 75);
        assert_eq!(back.len(), 75, "round {round}: {:?}", r.tx.drops());
    }
    let stats = r.tx.stats();
    assert_eq!((stats.sent, stats.dropped), (750, 0));
    assert!(stats.calls >= 50, "buffer() flushed full rings: {stats:?}");
    assert_eq!(r.rx.stats().received, 250);
    let kernel = r.rx.kernel_stats().unwrap();
    assert_eq!(kernel.rx_dropped, 0, "{kernel:?}");
}

/// An IPv4/UDP frame to `dst` from the peer, with a valid header checksum unless
/// `break_checksum`, and `udp_len` in the UDP header (normally 8 + payload).
fn raw_udp_frame(dst: &str, udp_len: u16, data: &[u8], break_checksum: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&RELAY_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + data.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&CLIENT4.parse::<Ipv4Addr>().unwrap().octets());
    ip.extend_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16) ^ u16::from(break_checksum);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&PORT.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(data);
    f
}

/// The index of the client's end of the veth pair (called inside its namespace).
fn client_if_index() -> u32 {
    let name = CString::new(CLIENT_IF).unwrap();
    // SAFETY: a NUL-terminated name.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Sends raw Ethernet frames out of the client's end (from inside its namespace).
fn send_raw(frames: &[Vec<u8>]) {
    // SAFETY: socket(2) with constant arguments; protocol 0: send only.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = client_if_index();
    assert_ne!(index, 0);
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&RELAY_MAC);
    for f in frames {
        // SAFETY: sends a live buffer to a live sockaddr_ll of the size given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&raw const to).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(n, f.len() as isize, "{}", std::io::Error::last_os_error());
    }
}

#[test]
fn malformed_and_foreign_frames_are_counted_and_recycled() {
    let net = one_queue_net();
    let local = sa(RELAY4, PORT);
    let mut r = relay(&net, local, &small_umem(32));
    let data = payload(7, 50);
    let good = raw_udp_frame(RELAY4, 58, &data, false);
    // 40 rounds of three bad frames and a good one: more than the 32 receive frames.
    // The first never reaches the socket: the program leaves a UDP length that runs past
    // its IP packet to the kernel (`passed_bad_length`).
    let mut frames = Vec::new();
    for _ in 0..40 {
        frames.push(raw_udp_frame(RELAY4, 200, &data, false)); // UDP longer than IP
        frames.push(raw_udp_frame(RELAY4, 58, &data, true)); // bad header checksum
        frames.push(raw_udp_frame("10.77.0.99", 58, &data, false)); // not our IP
        frames.push(good.clone());
    }
    let mut got = Vec::new();
    for chunk in frames.chunks(16) {
        net.client.enter(|| send_raw(chunk));
        got.extend(receive(&mut r.rx, chunk.len() / 4));
    }
    assert_eq!(got.len(), 40);
    for (source, destination, bytes) in &got {
        assert_eq!(*source, sa(CLIENT4, 40000));
        assert_eq!(*destination, local);
        assert_eq!(*bytes, data);
    }
    let stats = r.rx.stats();
    assert_eq!(
        (stats.received, stats.malformed, stats.not_local),
        (40, 40, 40)
    );
}

#[test]
fn other_traffic_reaches_the_kernel() {
    let net = one_queue_net();
    let mut r = relay(&net, sa(RELAY4, PORT), &XskOptions::default());
    // Ping, TCP to the media port and UDP to another one reach the kernel's sockets,
    // not the AF_XDP socket.
    check_other_traffic(&net, PORT, PORT + 1);
    assert_eq!(r.rx.recv(&mut |d| panic!("got {d:?}")).unwrap(), 0);
    assert_eq!(r.rx.stats(), Default::default());
}

/// Frames as the client's end receives them, with their VLAN tag (a packet socket in
/// the client's namespace).
struct Capture(OwnedFd);

// linux/if_packet.h, not in the libc crate.
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

impl Capture {
    fn open() -> Capture {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut at: libc::sockaddr_ll = unsafe { mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_protocol = all;
        at.sll_ifindex = client_if_index() as i32;
        let one: libc::c_int = 1;
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: each call passes a live value and its size.
        unsafe {
            let size = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const at).cast(), size), 0);
            let int = mem::size_of::<libc::c_int>() as libc::socklen_t;
            let aux = (&raw const one).cast();
            let r = libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_AUXDATA, aux, int);
            assert_eq!(r, 0);
            let tv = mem::size_of::<libc::timeval>() as libc::socklen_t;
            let to = (&raw const timeout).cast();
            let r = libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, to, tv);
            assert_eq!(r, 0);
        }
        Capture(fd)
    }

    /// The next UDP frame to port `port` received (not sent) on the client's end, without its VLAN
    /// tag, and the tag's TCI if it had one; `None` after a second of nothing.
    fn next_udp_to(&self, port: u16) -> Option<(Vec<u8>, Option<u16>)> {
        for _ in 0..100 {
            let mut buf = [0u8; 2048];
            let mut control = [0u64; 16];
            // SAFETY: all-zero is a valid sockaddr_ll and msghdr.
            let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_name = (&raw mut from).cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of_val(&control);
            // SAFETY: the header points at live buffers of the sizes given.
            let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                return None;
            }
            let mut frame = buf[..n as usize].to_vec();
            let mut tag = None;
            // SAFETY: walks the control messages the kernel wrote, reading unaligned.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                        let data = libc::CMSG_DATA(c);
                        let status = ptr_read::<u32>(data, 0);
                        if status & TP_STATUS_VLAN_VALID != 0 {
                            tag = Some(ptr_read::<u16>(data, 16));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
                tag = Some(u16::from_be_bytes([frame[14], frame[15]]));
                frame.drain(12..16);
            }
            let udp_to = |f: &[u8]| {
                f.len() >= 42
                    && f[12..14] == [8, 0]
                    && f[23] == 17
                    && f[36..38] == port.to_be_bytes()
            };
            if from.sll_pkttype != libc::PACKET_OUTGOING && udp_to(&frame) {
                return Some((frame, tag));
            }
        }
        None
    }
}

/// Reads a `T` at byte `at` of `data`, unaligned.
///
/// # Safety
/// `data + at` must have `size_of::<T>()` readable bytes.
unsafe fn ptr_read<T: Copy>(data: *const u8, at: usize) -> T {
    // SAFETY: the caller guarantees the bytes are there.
    unsafe { std::ptr::read_unaligned(data.add(at).cast()) }
}

/// Frames tagged with a VLAN are answered with the same tag (priority bits too), and
/// when the remote's frames change (here: lose their tag), so do the answers. The
/// peer's kernel has no 8021q support here, so packet sockets send and capture.
#[test]
fn vlan_tagged_frames_are_answered_on_their_vlan() {
    let net = one_queue_net();
    let local = sa(RELAY4, PORT);
    let mut r = relay(&net, local, &XskOptions::default());
    let capture = net.client.enter(Capture::open);
    let data = payload(3, 60);
    for tci in [Some(0xa064u16), None, Some(0x0065)] {
        let mut frame = raw_udp_frame(RELAY4, 68, &data, false);
        if let Some(tci) = tci {
            let [hi, lo] = tci.to_be_bytes();
            frame.splice(12..12, [0x81, 0x00, hi, lo]);
        }
        net.client.enter(|| send_raw(&[frame]));
        let got = receive(&mut r.rx, 1);
        assert_eq!(
            got,
            vec![(sa(CLIENT4, 40000), local, data.clone())],
            "tag {tci:?}"
        );
        let mut answer = data.clone();
        answer.reverse();
        queue(&mut r.tx, &answer, local, sa(CLIENT4, 40000));
        r.tx.flush();
        let (frame, tag) = capture.next_udp_to(40000).expect("the answer on the wire");
        assert_eq!(tag, tci);
        assert_eq!(&frame[..6], &CLIENT_MAC);
        assert_eq!(&frame[6..12], &RELAY_MAC);
        assert_eq!(&frame[42..], &answer[..]);
    }
    assert_eq!(r.tx.stats().sent, 3);
}

/// Echoes every datagram back until `stop`; returns (datagrams echoed, thread CPU time).
fn echo(rx: &mut impl Receiver, tx: &mut impl Sender, stop: &AtomicBool) -> (u64, Duration) {
    let mut echoed = 0;
    while !stop.load(Ordering::Relaxed) {
        if !readable(rx.fd(), 10) {
            continue;
        }
        let mut taken = 1;
        while taken > 0 {
            taken = rx
                .recv(&mut |d| {
                    tx.buffer()[..d.data.len()].copy_from_slice(d.data);
                    tx.commit(d.data.len(), d.destination, d.source);
                    echoed += 1;
                })
                .unwrap();
        }
        tx.flush();
    }
    (echoed, thread_cpu())
}

fn thread_cpu() -> Duration {
    // SAFETY: all-zero is a valid timespec; clock_gettime fills it.
    let mut t: libc::timespec = unsafe { mem::zeroed() };
    // SAFETY: a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The peer's load: a thread sending 64-datagram `sendmmsg` batches while fewer than
/// `WINDOW` answers are outstanding, another counting the answers. Returns (sent,
/// answers received).
fn load(peer: &UdpSocket, to: SocketAddr, size: usize, run_for: Duration) -> (u64, u64) {
    const WINDOW: u64 = 2048;
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    // Answers not expected any more (lost): they would stall the window.
    let written_off = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let socket = peer.try_clone().unwrap();
    socket.connect(to).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let data = payload(1, size);
            let mut iov = libc::iovec {
                iov_base: data.as_ptr() as *mut _,
                iov_len: data.len(),
            };
            let mut msgs: Vec<libc::mmsghdr> = (0..64)
                .map(|_| {
                    // SAFETY: all-zero is a valid mmsghdr; the iovec outlives every call.
                    let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
                    m.msg_hdr.msg_iov = &mut iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let done = received.load(Ordering::Relaxed) + written_off.load(Ordering::Relaxed);
                if sent.load(Ordering::Relaxed) + 64 > done + WINDOW {
                    thread::yield_now();
                    continue;
                }
                // SAFETY: 64 headers pointing at live buffers, on a connected socket.
                let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), 64, 0) };
                assert!(n > 0, "sendmmsg: {}", std::io::Error::last_os_error());
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            let mut buf = [0; 2048];
            peer.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < run_for {
                if peer.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                } else {
                    let done =
                        received.load(Ordering::Relaxed) + written_off.load(Ordering::Relaxed);
                    written_off.fetch_add(sent.load(Ordering::Relaxed) - done, Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    )
}

fn process_cpu() -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut u: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Rough datagrams per second one thread echoes: AF_XDP (copy mode, veth) against the
/// portable UDP backend (with and without GSO) on the same veth. CPU per echo is given
/// for the echoing thread and for the whole process (the peer's load and both
/// namespaces' kernel work, which runs in softirqs of the threads that send).
#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn echo_rate() {
    let net = one_queue_net();
    let run_for = Duration::from_secs(3);
    for size in [100, 1200] {
        for mode in ["xdp", "udp", "udp-no-gso"] {
            let local = sa(RELAY4, if mode == "xdp" { PORT } else { PORT + 1 });
            let peer = peer(&net, CLIENT4);
            let stop = &AtomicBool::new(false);
            let (started, cpu_before) = (Instant::now(), process_cpu());
            let ((echoed, cpu), (sent, received)) = thread::scope(|s| {
                let echoer = if mode == "xdp" {
                    let r = relay(&net, local, &XskOptions::default());
                    s.spawn(move || {
                        // The whole of `r`, XDP program included, not just the halves used.
                        let mut r = r;
                        let out = echo(&mut r.rx, &mut r.tx, stop);
                        eprintln!("  {:?}", r.tx.stats());
                        out
                    })
                } else {
                    let opts = UdpOptions {
                        gso: mode == "udp",
                        ..UdpOptions::default()
                    };
                    let (mut rx, mut tx) = net.relay.enter(|| udp::bind(local, &opts).unwrap());
                    s.spawn(move || {
                        let out = echo(&mut rx, &mut tx, stop);
                        eprintln!("  {:?}", tx.stats());
                        out
                    })
                };
                let load = net.client.enter(|| load(&peer, local, size, run_for));
                stop.store(true, Ordering::Relaxed);
                (echoer.join().unwrap(), load)
            });
            let secs = started.elapsed().as_secs_f64();
            let per_echo = |d: Duration| d.as_secs_f64() * 1e6 / echoed.max(1) as f64;
            eprintln!(
                "{mode} {size} B: {:.0} echoes/s; CPU per echo: {:.2} us echoing thread, \
                 {:.2} us whole process ({sent} sent, {echoed} echoed, {received} back)",
                echoed as f64 / secs,
                per_echo(cpu),
                per_echo(process_cpu() - cpu_before),
            );
            assert!(received > 0);
        }
    }
}
