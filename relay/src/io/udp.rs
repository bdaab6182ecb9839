//! UDP sockets with batched `recvmmsg`/`sendmmsg`: the portable backend.
//!
//! One non-blocking socket is shared by a [`UdpReceiver`] and a [`UdpSender`]. Every
//! received datagram carries the local address the peer wrote to (IP_PKTINFO /
//! IPV6_PKTINFO), and every sent one leaves from the address it names, so a wildcard
//! bind on a multi-homed host answers from the right address. Runs of equal-sized
//! datagrams to one peer leave as one GSO message (UDP_SEGMENT) when the kernel can.
//!
//! All the unsafe code of the backend is in this file, in the style of quinn-udp: the
//! `msghdr` arrays are rebuilt from buffers the halves own right before each syscall.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Datagram, Receiver, SendStats, Sender, MAX_DATAGRAM};

// Not in the libc crate for glibc targets (linux/udp.h, asm-generic/socket.h).
const UDP_SEGMENT: libc::c_int = 103;
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

/// Receive slot size: above any datagram of a 1500-byte MTU, so a truncated one is an
/// oddity (a jumbo frame or IP fragments), not a normal packet.
const RECV_SLOT: usize = 2048;
/// Kernel limit on segments per GSO send (UDP_MAX_SEGMENTS on kernels before 6.x).
const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload of one IPv4 packet; a GSO message must fit it.
const MAX_GSO_BYTES: usize = 65_507;
/// Room for IP_PKTINFO and IPV6_PKTINFO together (a dual-stack socket may get both),
/// or for a PKTINFO and a UDP_SEGMENT when sending.
const CMSG_ROOM: usize = 128;

#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// SO_REUSEPORT: one socket per worker on the same port, the kernel spreading peers.
    pub reuse_port: bool,
    /// SO_RCVBUF in bytes; 0 leaves the system default.
    pub recv_buffer: usize,
    /// SO_SNDBUF in bytes; 0 leaves the system default.
    pub send_buffer: usize,
    /// Datagrams per `recvmmsg` and per `sendmmsg`.
    pub batch: usize,
    /// Use UDP GSO when the kernel has it (an escape hatch for NICs that misbehave).
    pub gso: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_port: false,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            batch: 64,
            gso: true,
        }
    }
}

/// Binds `addr` (an IPv6 wildcard is dual-stack) and splits the socket into its halves.
pub fn bind(addr: SocketAddr, opts: &UdpOptions) -> io::Result<(UdpReceiver, UdpSender)> {
    let (socket, local) = open(addr, opts)?;
    // Setting a zero segment size changes nothing but fails where UDP GSO is unknown.
    let gso = opts.gso && set_int(socket.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, 0).is_ok();
    let batch = opts.batch.max(1);
    let socket = Arc::new(socket);
    let receiver = UdpReceiver {
        input: UdpInput {
            socket: socket.clone(),
            local,
            stats: RecvStats::default(),
        },
        slots: RecvBatch::new(batch),
    };
    let sender = UdpSender {
        socket,
        v6: addr.is_ipv6(),
        gso,
        batch,
        bufs: vec![0; batch * MAX_DATAGRAM].into_boxed_slice(),
        queued: Vec::with_capacity(batch),
        names: vec![zeroed_storage(); batch].into_boxed_slice(),
        controls: vec![Cmsgs([0; CMSG_ROOM]); batch].into_boxed_slice(),
        ends: vec![0; batch].into_boxed_slice(),
        headers: Headers::new(batch),
        stats: SendStats::default(),
        messages: 0,
    };
    Ok((receiver, sender))
}

/// Binds `addr` for receiving only, into a [`RecvBatch`] the caller brings: the ingest
/// reads all its sources into one.
pub fn bind_input(addr: SocketAddr, opts: &UdpOptions) -> io::Result<UdpInput> {
    let (socket, local) = open(addr, opts)?;
    Ok(UdpInput {
        socket: Arc::new(socket),
        local,
        stats: RecvStats::default(),
    })
}

/// A non-blocking socket bound to `addr` that reports datagrams' destinations, and the
/// address it is bound to.
fn open(addr: SocketAddr, opts: &UdpOptions) -> io::Result<(Socket, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    }
    // IPv4 datagrams reaching a dual-stack socket report their destination this way.
    set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if opts.recv_buffer > 0 {
        set_buffer(fd, SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.recv_buffer)?;
    }
    if opts.send_buffer > 0 {
        set_buffer(fd, SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.send_buffer)?;
    }
    socket.bind(&addr.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
    Ok((socket, unmap(local)))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvStats {
    /// Datagrams handed to the caller.
    pub received: u64,
    /// Datagrams longer than a receive slot, dropped.
    pub truncated: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub calls: u64,
}

/// Where one `recvmmsg` puts a batch: the datagrams' slots, their sources and control
/// messages, and the headers pointing at them. Any socket read on the owner's thread
/// can use it: the ingest reads its sources in turn into one, rather than keeping
/// ~37 KiB of these per source (2.3 MiB at 64 cameras).
pub struct RecvBatch {
    len: usize,
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Cmsgs]>,
    headers: Headers,
}

impl RecvBatch {
    /// Room for `len` datagrams per call.
    pub fn new(len: usize) -> RecvBatch {
        let len = len.max(1);
        RecvBatch {
            len,
            bufs: vec![0; len * RECV_SLOT].into_boxed_slice(),
            names: vec![zeroed_storage(); len].into_boxed_slice(),
            controls: vec![Cmsgs([0; CMSG_ROOM]); len].into_boxed_slice(),
            headers: Headers::new(len),
        }
    }

    /// Datagrams per call: a call that returns fewer emptied the socket.
    pub fn capacity(&self) -> usize {
        self.len
    }
}

/// A socket's receiving half without buffers of its own: see [`RecvBatch`].
pub struct UdpInput {
    socket: Arc<Socket>,
    /// The bound address: its port is every datagram's destination port.
    local: SocketAddr,
    stats: RecvStats,
}

impl UdpInput {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> RecvStats {
        self.stats
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Takes every datagram waiting (up to one batch) into `batch` without blocking,
    /// calling `on_datagram` for each; returns how many were taken (0: nothing waiting).
    pub fn recv_into(
        &mut self,
        batch: &mut RecvBatch,
        on_datagram: &mut dyn FnMut(Datagram<'_>),
    ) -> io::Result<usize> {
        let n = batch.len;
        let RecvBatch {
            bufs,
            names,
            controls,
            headers: Headers { iovs, msgs },
            ..
        } = batch;
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i * RECV_SLOT..].as_mut_ptr().cast(),
                iov_len: RECV_SLOT,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = ptr::from_mut(&mut names[i]).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = controls[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_ROOM as _;
            h.msg_flags = 0;
            msgs[i].msg_len = 0;
        }
        let fd = self.socket.as_raw_fd();
        // Errors queued by ICMP (a peer's port closed) surface once each: skip a few.
        let mut attempts = 0;
        let got = loop {
            // SAFETY: the n headers point into `batch`'s buffers, which outlive the
            // call, each with its true length; MSG_DONTWAIT makes it return at once.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            attempts += 1;
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(0),
                Some(libc::EINTR | libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                    if attempts < 4 => {}
                _ => return Err(e),
            }
        };
        self.stats.calls += 1;
        for (i, m) in msgs.iter().enumerate().take(got) {
            let h = &m.msg_hdr;
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
                continue;
            }
            let Some(source) = from_storage(&names[i]) else {
                continue;
            };
            let ip = destination_ip(h).unwrap_or(self.local.ip());
            self.stats.received += 1;
            let at = i * RECV_SLOT;
            on_datagram(Datagram {
                source,
                destination: SocketAddr::new(ip, self.local.port()),
                data: &bufs[at..at + m.msg_len as usize],
            });
        }
        Ok(got)
    }
}

/// A socket's receiving half with a batch of its own (a worker's).
pub struct UdpReceiver {
    input: UdpInput,
    slots: RecvBatch,
}

impl UdpReceiver {
    pub fn local_addr(&self) -> SocketAddr {
        self.input.local_addr()
    }

    pub fn stats(&self) -> RecvStats {
        self.input.stats()
    }
}

impl Receiver for UdpReceiver {
    fn recv(&mut self, on_datagram: &mut dyn FnMut(Datagram<'_>)) -> io::Result<usize> {
        self.input.recv_into(&mut self.slots, on_datagram)
    }

    fn fd(&self) -> RawFd {
        self.input.fd()
    }
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    len: usize,
    source: SocketAddr,
    destination: SocketAddr,
}

pub struct UdpSender {
    socket: Arc<Socket>,
    /// An AF_INET6 socket: IPv4 destinations go out as IPv4-mapped addresses.
    v6: bool,
    gso: bool,
    batch: usize,
    /// Slot i holds queued datagram i.
    bufs: Box<[u8]>,
    queued: Vec<Queued>,
    // Per message (a message is one datagram or one GSO run of them):
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Cmsgs]>,
    /// Index one past the message's last datagram.
    ends: Box<[usize]>,
    headers: Headers,
    stats: SendStats,
    messages: u64,
}

impl UdpSender {
    /// Whether runs to one peer are sent with UDP GSO (probed at bind, off after EIO).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Messages the kernel accepted: one per datagram, or per GSO run.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Fills the message headers for the queued datagrams from `from` on; those before
    /// `singles_until` go one per message. Returns the number of messages.
    fn build(&mut self, from: usize, singles_until: usize) -> usize {
        let Headers { iovs, msgs } = &mut self.headers;
        for (d, q) in self.queued.iter().enumerate().skip(from) {
            iovs[d] = libc::iovec {
                iov_base: self.bufs[d * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: q.len,
            };
        }
        let mut m = 0;
        let mut d = from;
        while d < self.queued.len() {
            let first = self.queued[d];
            let mut end = d + 1;
            if self.gso && d >= singles_until && first.len > 0 {
                let max = MAX_GSO_SEGMENTS.min(MAX_GSO_BYTES / first.len);
                while let Some(next) = self.queued.get(end) {
                    let same_way =
                        next.source == first.source && next.destination == first.destination;
                    if end - d == max || !same_way || next.len == 0 || next.len > first.len {
                        break;
                    }
                    end += 1;
                    // Only the last segment of a run may be shorter.
                    if next.len < first.len {
                        break;
                    }
                }
            }
            let name_len = to_storage(first.destination, self.v6, &mut self.names[m]);
            let segment = (end - d > 1).then_some(first.len as u16);
            let control_len = write_cmsgs(&mut self.controls[m], first.source.ip(), segment);
            let h = &mut msgs[m].msg_hdr;
            h.msg_name = ptr::from_mut(&mut self.names[m]).cast();
            h.msg_namelen = name_len;
            h.msg_iov = iovs[d..].as_mut_ptr();
            h.msg_iovlen = end - d;
            h.msg_control = if control_len > 0 {
                self.controls[m].0.as_mut_ptr().cast()
            } else {
                ptr::null_mut()
            };
            h.msg_controllen = control_len;
            h.msg_flags = 0;
            msgs[m].msg_len = 0;
            self.ends[m] = end;
            m += 1;
            d = end;
        }
        m
    }
}

impl Sender for UdpSender {
    fn buffer(&mut self) -> &mut [u8] {
        if self.queued.len() == self.batch {
            self.flush();
        }
        let at = self.queued.len() * MAX_DATAGRAM;
        &mut self.bufs[at..at + MAX_DATAGRAM]
    }

    fn commit(&mut self, len: usize, source: SocketAddr, destination: SocketAddr) {
        debug_assert!(len <= MAX_DATAGRAM, "datagram of {len} bytes");
        // An IPv6 peer cannot be reached from an IPv4 socket, nor a full batch grow.
        if self.queued.len() == self.batch || (!self.v6 && destination.is_ipv6()) {
            self.stats.dropped += 1;
            return;
        }
        self.queued.push(Queued {
            len: len.min(MAX_DATAGRAM),
            source,
            destination,
        });
    }

    fn flush(&mut self) {
        let total = self.queued.len();
        if total == 0 {
            return;
        }
        let fd = self.socket.as_raw_fd();
        let mut count = self.build(0, 0);
        let mut k = 0;
        let mut interrupts = 0;
        while k < count {
            let msgs = &mut self.headers.msgs[k..count];
            // SAFETY: messages k..count were filled by `build` from buffers owned by
            // `self`, untouched since; the socket is non-blocking.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
            self.stats.calls += 1;
            let start = if k == 0 { 0 } else { self.ends[k - 1] };
            if r > 0 {
                let r = r as usize;
                self.stats.sent += (self.ends[k + r - 1] - start) as u64;
                self.messages += r as u64;
                k += r;
                continue;
            }
            let e = io::Error::last_os_error();
            let end = self.ends[k];
            match e.raw_os_error() {
                Some(libc::EINTR) if interrupts < 3 => interrupts += 1,
                // The socket buffer is full: never wait for it.
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    self.stats.dropped += (total - start) as u64;
                    break;
                }
                // A GSO run refused (EIO: no checksum offload; EINVAL: segment above
                // the path MTU): send its datagrams one by one instead.
                Some(errno @ (libc::EIO | libc::EINVAL)) if end - start > 1 => {
                    if errno == libc::EIO {
                        self.gso = false;
                    }
                    tracing::debug!("UDP GSO send failed ({e}), sending singly");
                    count = self.build(start, end);
                    k = 0;
                }
                _ => {
                    tracing::debug!("UDP send to {} failed: {e}", self.queued[start].destination);
                    self.stats.dropped += (end - start) as u64;
                    k += 1;
                }
            }
        }
        self.queued.clear();
    }

    fn stats(&self) -> SendStats {
        self.stats
    }
}

/// The iovec and mmsghdr arrays: raw pointers into the owner's buffers.
struct Headers {
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
}

// SAFETY: the pointers are rewritten from the owner's buffers right before every
// syscall and never dereferenced otherwise, so moving them to another thread is sound.
unsafe impl Send for Headers {}

impl Headers {
    fn new(batch: usize) -> Headers {
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid
        // (null pointers, zero lengths).
        let (iov, msg) = unsafe {
            (
                MaybeUninit::<libc::iovec>::zeroed().assume_init(),
                MaybeUninit::<libc::mmsghdr>::zeroed().assume_init(),
            )
        };
        Headers {
            iovs: vec![iov; batch].into_boxed_slice(),
            msgs: vec![msg; batch].into_boxed_slice(),
        }
    }
}

/// A control-message buffer aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Cmsgs([u8; CMSG_ROOM]);

pub fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid (AF_UNSPEC) value.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The *FORCE variant passes `net.core.[rw]mem_max` with CAP_NET_ADMIN; without it the
/// plain option is capped there.
fn set_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int, size: usize) -> io::Result<()> {
    let size = size.min(i32::MAX as usize / 2) as libc::c_int;
    set_int(fd, libc::SOL_SOCKET, force, size)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, plain, size))
}

/// IPv4-mapped IPv6 addresses (a dual-stack socket's IPv4 peers) as plain IPv4.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(IpAddr::V4(ip), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it fits.
            let a: libc::sockaddr_in = unsafe { ptr::read(ptr::from_ref(s).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it fits.
            let a: libc::sockaddr_in6 = unsafe { ptr::read(ptr::from_ref(s).cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let addr = SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            );
            Some(unmap(SocketAddr::V6(addr)))
        }
        _ => None,
    }
}

/// Writes `addr` in the socket's family (IPv4 as mapped on an IPv6 socket).
pub fn to_storage(addr: SocketAddr, v6: bool, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let addr = match addr {
        SocketAddr::V4(a) if v6 => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        other => other,
    };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { ptr::write(ptr::from_mut(out).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { ptr::write(ptr::from_mut(out).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The destination address from a received message's IP_PKTINFO or IPV6_PKTINFO.
fn destination_ip(h: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: the kernel filled msg_control up to msg_controllen with well-formed
    // cmsgs; the CMSG_* macros stay inside that range and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = ptr::read_unaligned(data.cast());
                    return Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)).into());
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info: libc::in6_pktinfo = ptr::read_unaligned(data.cast());
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    return Some(ip.to_ipv4_mapped().map_or(ip.into(), IpAddr::V4));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Writes the source-address cmsg (none for a wildcard source) and, for a GSO run,
/// the segment size. Returns the control length.
fn write_cmsgs(buf: &mut Cmsgs, source: IpAddr, segment: Option<u16>) -> usize {
    let mut len = 0;
    match source {
        IpAddr::V4(ip) if !ip.is_unspecified() => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            len += push_cmsg(buf, len, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
        }
        IpAddr::V6(ip) if !ip.is_unspecified() => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            };
            len += push_cmsg(buf, len, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
        }
        _ => {}
    }
    if let Some(size) = segment {
        len += push_cmsg(buf, len, libc::SOL_UDP, UDP_SEGMENT, size);
    }
    len
}

/// Appends one cmsg at byte `at` of `buf`; returns the space it took.
fn push_cmsg<T: Copy>(
    buf: &mut Cmsgs,
    at: usize,
    level: libc::c_int,
    ty: libc::c_int,
    v: T,
) -> usize {
    let data_len = mem::size_of::<T>() as libc::c_uint;
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(data_len) as usize,
            libc::CMSG_LEN(data_len),
        )
    };
    assert!(at + space <= CMSG_ROOM, "control buffer too small");
    // SAFETY: `at` is a multiple of the cmsg alignment (sums of CMSG_SPACE) in an
    // 8-aligned buffer with room for the header and data, checked above; the data
    // follows the header at the CMSG_DATA offset (the header size, aligned).
    unsafe {
        let c = buf.0.as_mut_ptr().add(at).cast::<libc::cmsghdr>();
        ptr::write_bytes(c.cast::<u8>(), 0, space);
        (*c).cmsg_level = level;
        (*c).cmsg_type = ty;
        (*c).cmsg_len = len as _;
        ptr::write_unaligned(libc::CMSG_DATA(c).cast::<T>(), v);
    }
    space
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    type Got = (SocketAddr, SocketAddr, Vec<u8>);

    fn v4(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    fn pair(addr: &str) -> (UdpReceiver, UdpSender) {
        bind(v4(addr), &UdpOptions::default()).unwrap()
    }

    /// Receives until `want` datagrams came or a second passed.
    fn recv_n(rx: &mut UdpReceiver, want: usize) -> Vec<Got> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while got.len() < want && Instant::now() < deadline {
            let n = rx
                .recv(&mut |d| got.push((d.source, d.destination, d.data.to_vec())))
                .unwrap();
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        got
    }

    /// Nothing more arrives (loopback delivers within the sending call; 20 ms is slack).
    fn assert_quiet(rx: &mut UdpReceiver) {
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.recv(&mut |d| panic!("unexpected {d:?}")).unwrap(), 0);
    }

    fn queue(tx: &mut UdpSender, payload: &[u8], from: SocketAddr, to: SocketAddr) {
        tx.buffer()[..payload.len()].copy_from_slice(payload);
        tx.commit(payload.len(), from, to);
    }

    fn payload(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn batch_arrives_whole_and_replies_leave_from_the_address_written_to() {
        let (mut srx, mut stx) = pair("0.0.0.0:0");
        let (mut crx, mut ctx) = pair("127.0.0.1:0");
        let (sport, client) = (srx.local_addr().port(), crx.local_addr());
        let to = v4(&format!("127.0.0.2:{sport}"));
        let sent: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100 + 37 * i as usize)).collect();
        for p in &sent {
            queue(&mut ctx, p, client, to);
        }
        ctx.flush();
        assert_eq!(ctx.stats().sent, 10);
        assert_eq!(ctx.stats().calls, 1);

        let got = recv_n(&mut srx, 10);
        assert_eq!(got.len(), 10);
        for ((source, destination, data), p) in got.iter().zip(&sent) {
            assert_eq!(*source, client);
            assert_eq!(
                *destination, to,
                "the address the peer wrote to, not 0.0.0.0"
            );
            assert_eq!(data, p);
        }
        assert_eq!(srx.stats().received, 10);

        // Replies from the destination they came to; and from 127.0.0.3 to show the
        // source really is chosen per datagram, not by the routing table.
        queue(&mut stx, b"from .2", got[0].1, got[0].0);
        queue(
            &mut stx,
            b"from .3",
            v4(&format!("127.0.0.3:{sport}")),
            got[0].0,
        );
        stx.flush();
        let replies = recv_n(&mut crx, 2);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].0, to);
        assert_eq!(replies[0].2, b"from .2");
        assert_eq!(replies[1].0, v4(&format!("127.0.0.3:{sport}")));
        assert_eq!(replies[1].1, client);
    }

    #[test]
    fn inputs_share_one_batch_and_each_datagram_keeps_its_socket() {
        let opts = UdpOptions::default();
        let mut a = bind_input(v4("127.0.0.1:0"), &opts).unwrap();
        let mut b = bind_input(v4("127.0.0.1:0"), &opts).unwrap();
        let (_, mut tx) = pair("127.0.0.1:0");
        let from = v4("127.0.0.1:0");
        for i in 0..3 {
            queue(&mut tx, &payload(i, 100 + i as usize), from, a.local_addr());
            queue(&mut tx, &payload(10 + i, 900), from, b.local_addr());
        }
        // An empty datagram is one too: a slot of length 0, not a misread.
        queue(&mut tx, &[], from, a.local_addr());
        tx.flush();
        // A batch of two: the third datagram of each socket waits for the next call.
        let mut slots = RecvBatch::new(2);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while got.len() < 7 && Instant::now() < deadline {
            for input in [&mut a, &mut b] {
                input
                    .recv_into(&mut slots, &mut |d| {
                        got.push((d.destination.port(), d.data.to_vec()))
                    })
                    .unwrap();
            }
        }
        let mut want: Vec<_> = (0..3)
            .flat_map(|i| {
                [
                    (a.local_addr().port(), payload(i, 100 + i as usize)),
                    (b.local_addr().port(), payload(10 + i, 900)),
                ]
            })
            .collect();
        want.push((a.local_addr().port(), Vec::new()));
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(a.stats().received + b.stats().received, 7);
    }

    #[test]
    fn ipv6_loopback() {
        let (mut srx, mut stx) = pair("[::]:0");
        let (mut crx, mut ctx) = pair("[::1]:0");
        let server = v4(&format!("[::1]:{}", srx.local_addr().port()));
        let client = crx.local_addr();
        queue(&mut ctx, b"hello v6", client, server);
        ctx.flush();
        let got = recv_n(&mut srx, 1);
        assert_eq!(got, vec![(client, server, b"hello v6".to_vec())]);
        queue(&mut stx, b"back", got[0].1, got[0].0);
        stx.flush();
        assert_eq!(
            recv_n(&mut crx, 1),
            vec![(server, client, b"back".to_vec())]
        );
    }

    #[test]
    fn dual_stack_shows_ipv4_peers_as_ipv4() {
        let (mut srx, mut stx) = pair("[::]:0");
        let port = srx.local_addr().port();
        let (mut crx, mut ctx) = pair("127.0.0.1:0");
        let client = crx.local_addr();
        let server = v4(&format!("127.0.0.1:{port}"));
        queue(&mut ctx, b"mapped", client, server);
        ctx.flush();
        let got = recv_n(&mut srx, 1);
        assert_eq!(got, vec![(client, server, b"mapped".to_vec())]);
        assert!(got[0].0.is_ipv4() && got[0].1.is_ipv4());
        // The IPv4 reply leaves the IPv6 socket as a mapped address.
        queue(&mut stx, b"reply", server, client);
        stx.flush();
        assert_eq!(stx.stats().dropped, 0);
        assert_eq!(
            recv_n(&mut crx, 1),
            vec![(server, client, b"reply".to_vec())]
        );
    }

    #[test]
    fn gso_sends_a_run_to_one_peer_as_one_message() {
        for gso in [true, false] {
            let opts = UdpOptions {
                gso,
                ..UdpOptions::default()
            };
            let (mut rx, _) = pair("127.0.0.1:0");
            let (_, mut tx) = bind(v4("127.0.0.1:0"), &opts).unwrap();
            assert_eq!(tx.gso(), gso, "this kernel has UDP GSO");
            let sizes = [1200, 1200, 1200, 1200, 700];
            let sent: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| payload(i as u8, n))
                .collect();
            for p in &sent {
                queue(&mut tx, p, v4("127.0.0.1:0"), rx.local_addr());
            }
            tx.flush();
            assert_eq!(
                tx.stats(),
                SendStats {
                    sent: 5,
                    dropped: 0,
                    calls: 1
                }
            );
            assert_eq!(tx.messages(), if gso { 1 } else { 5 });
            let got = recv_n(&mut rx, 5);
            assert_quiet(&mut rx);
            let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.2).collect();
            assert_eq!(data, sent, "five datagrams, not one of 5500 bytes");
        }
    }

    #[test]
    fn mixed_destinations_in_one_batch() {
        let (mut a, _) = pair("127.0.0.1:0");
        let (mut b, _) = pair("127.0.0.1:0");
        let (_, mut tx) = pair("127.0.0.1:0");
        let (pa, pb) = (a.local_addr(), b.local_addr());
        let from = v4("127.0.0.1:0");
        // Runs: [A A] [B] [A A(short)] [A] [B] [A(short)]: a shorter datagram ends a run.
        let plan = [
            (pa, 1000),
            (pa, 1000),
            (pb, 1000),
            (pa, 1000),
            (pa, 500),
            (pa, 1000),
            (pb, 200),
            (pa, 10),
        ];
        for (i, &(to, len)) in plan.iter().enumerate() {
            queue(&mut tx, &payload(i as u8, len), from, to);
        }
        tx.flush();
        assert_eq!(
            tx.stats(),
            SendStats {
                sent: 8,
                dropped: 0,
                calls: 1
            }
        );
        assert_eq!(tx.messages(), 6);
        let want = |to| -> Vec<Vec<u8>> {
            plan.iter()
                .enumerate()
                .filter(|(_, p)| p.0 == to)
                .map(|(i, p)| payload(i as u8, p.1))
                .collect()
        };
        let got_a: Vec<Vec<u8>> = recv_n(&mut a, 6).into_iter().map(|g| g.2).collect();
        let got_b: Vec<Vec<u8>> = recv_n(&mut b, 2).into_iter().map(|g| g.2).collect();
        assert_quiet(&mut a);
        assert_quiet(&mut b);
        assert_eq!(got_a, want(pa));
        assert_eq!(got_b, want(pb));
    }

    #[test]
    fn truncated_datagrams_are_counted_and_dropped() {
        let (mut rx, _) = pair("127.0.0.1:0");
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        raw.send_to(&[7; RECV_SLOT + 1], rx.local_addr()).unwrap();
        raw.send_to(&[8; RECV_SLOT], rx.local_addr()).unwrap();
        let got = recv_n(&mut rx, 1);
        assert_quiet(&mut rx);
        assert_eq!(got[0].2, vec![8; RECV_SLOT]);
        assert_eq!(rx.stats().truncated, 1);
        assert_eq!(rx.stats().received, 1);
    }
}
