//! One AF_XDP socket bound to one RX queue, split into an [`XskReceiver`] and an
//! [`XskSender`] that share its UMEM: the first `fill_ring` frames receive (they
//! circulate between the fill ring and the RX ring), the rest send (between the
//! sender's free list, the TX ring and the completion ring). The halves touch
//! disjoint frames, so they need no lock; the one thing they share at run time is the
//! next hops the receiver learns (the source MAC of each remote IP's frames), handed
//! over through a flag the sender checks once per datagram.
//!
//! The socket binds with need_wakeup: the kernel is kicked only when a ring's flag asks
//! for it, except that copy mode (veth, drivers without zero-copy) transmits only
//! inside a kick, so there every flush with frames queued kicks once (and again while
//! the kernel answers EAGAIN/EBUSY, a bounded number of times).

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::frame::{self, Mac, NextHop, UdpChecksum, MAX_HEADERS, TX_METADATA_LEN};
use super::program::{Admission, RUN_PORTABLE};
use super::umem::{self, Consumer, Producer, Umem};
use crate::io::{Datagram, Receiver, SendStats, Sender, MAX_DATAGRAM};

// Not in the libc crate for glibc targets (asm-generic/socket.h, linux/if_xdp.h).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Descriptors taken from the RX ring per `recv`.
const RX_BATCH: u32 = 64;
/// Kicks per flush at most: copy mode sends only inside them, and says EAGAIN while
/// its per-call budget runs out or the driver's queue is busy.
const MAX_KICKS: u32 = 64;
/// Frames queued before the sender flushes on its own, rather than a whole burst (a
/// frame of video to 1000 viewers is thousands of frames): completed frames go back on
/// top of the free list and are the next ones written, so the fan-out writes into
/// frames the device has just given back, not ones that left the cache long ago. In
/// copy mode a frame completes only once the device has freed its copy (on veth: once
/// the peer has read it), so the working set is what is in flight, not this many. The
/// price is a kick per this many frames.
pub const TX_BATCH: u32 = 128;
/// How long a send may wait for the device when every frame or ring slot is in flight,
/// in steps of TX_WAIT_STEP.
const TX_WAIT: Duration = Duration::from_millis(2);
const TX_WAIT_STEP: Duration = Duration::from_micros(250);
/// Remote IPs whose next hop is remembered; datagrams from further ones are delivered
/// but cannot be answered (the kernel-side admission keeps unknown sources few).
const MAX_REMOTES: usize = 1 << 16;
/// Microseconds a busy-polling syscall spins on the driver.
const BUSY_POLL_USECS: libc::c_int = 20;
/// Payload bytes of the next frame to be written fetched ahead: a video packet's.
const WARM_PAYLOAD: usize = 1200;
/// Where an outgoing payload starts in its frame: after room for the TX metadata and the
/// longest headers.
const PAYLOAD_AT: usize = TX_METADATA_LEN + MAX_HEADERS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskOptions {
    /// UMEM frames: `fill_ring` of them receive, the rest send.
    pub frames: u32,
    /// 2048 or 4096 bytes.
    pub frame_size: u32,
    /// Ring sizes, each a power of two.
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub fill_ring: u32,
    pub comp_ring: u32,
    /// Busy-poll the driver from `recv` (SO_PREFER_BUSY_POLL) instead of waiting for
    /// interrupts: lower latency for more CPU.
    pub busy_poll: bool,
    /// In copy mode, leave each UDP checksum to the device (AF_XDP TX metadata), as the
    /// kernel's UDP stack does for its own datagrams; the kernel computes it in software
    /// for a device that cannot. Zero-copy mode, and kernels before 6.8, always get the
    /// relay's own checksums: a zero-copy driver may ignore the request.
    pub checksum_offload: bool,
    /// Have the kernel compute offloaded checksums on the CPU before the device
    /// (XDP_UMEM_TX_SW_CSUM). For tests: a veth peer trusts a checksum left to the
    /// device without looking at it.
    pub checksum_in_kernel: bool,
}

impl Default for XskOptions {
    /// 32 MiB of UMEM: an 8K fill ring (a 2K one dropped packets when a VM's vCPU
    /// paused, TOOLCHAIN.md) and as many frames to send from.
    fn default() -> Self {
        XskOptions {
            frames: 16384,
            frame_size: 2048,
            rx_ring: 8192,
            // The frames written ahead of the device are the fan-out's working set: with
            // 4096 of them (8 MiB) a burst to 1000 viewers wrote into frames that had
            // left the cache, and the seal ran slower than into portable mode's buffer.
            tx_ring: 1024,
            fill_ring: 8192,
            comp_ring: 8192,
            busy_poll: false,
            checksum_offload: true,
            checksum_in_kernel: false,
        }
    }
}

impl XskOptions {
    fn check(&self) -> Result<(), XskError> {
        let bad = |why: String| Err(XskError::Options(why));
        if !matches!(self.frame_size, 2048 | 4096) {
            return bad(format!(
                "frame_size {} is not 2048 or 4096",
                self.frame_size
            ));
        }
        let rings = [
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
            ("fill_ring", self.fill_ring),
            ("comp_ring", self.comp_ring),
        ];
        for (name, size) in rings {
            if !size.is_power_of_two() {
                return bad(format!("{name} {size} is not a power of two"));
            }
        }
        if self.frames <= self.fill_ring {
            return bad(format!(
                "frames ({}) must exceed fill_ring ({}): a fill ring's worth receive, the rest send",
                self.frames, self.fill_ring
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("invalid AF_XDP socket options: {0}")]
    Options(String),
    #[error("network interface {iface:?} (in this thread's network namespace): {source}")]
    Interface { iface: String, source: io::Error },
    #[error("opening an AF_XDP socket needs CAP_NET_RAW (run as root, or use portable mode): {0}")]
    NotPermitted(io::Error),
    #[error("binding an AF_XDP socket to {iface} queue {queue} (the queue must exist and have no other AF_XDP socket): {source}")]
    Bind {
        iface: String,
        queue: u32,
        source: io::Error,
    },
    #[error(
        "the AF_XDP socket's {mib} MiB of UMEM are over the locked-memory limit \
         (RLIMIT_MEMLOCK): run as root or with CAP_IPC_LOCK, or raise the limit (`ulimit -l`, \
         systemd's LimitMEMLOCK=); {RUN_PORTABLE}"
    )]
    MemlockLimit { mib: u64 },
    #[error("setting up an AF_XDP socket, {step}: {source}")]
    Setup {
        step: &'static str,
        source: io::Error,
    },
}

/// Opens an AF_XDP socket on RX queue `queue` of `iface` for the datagrams the XDP
/// program redirects to it (put [`XskReceiver::raw_fd`] into its XSKMAP). `local` is
/// the media address: datagrams to another port, or to another IP when `local`'s is
/// not unspecified, are counted and dropped. Zero-copy when the driver has it.
pub fn open(
    iface: &str,
    queue: u32,
    local: SocketAddr,
    opts: &XskOptions,
) -> Result<(XskReceiver, XskSender), XskError> {
    opts.check()?;
    let link = Link::query(iface)?;
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.kind() {
            io::ErrorKind::PermissionDenied => XskError::NotPermitted(e),
            _ => XskError::Setup {
                step: "socket(AF_XDP)",
                source: e,
            },
        });
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let step = |step| move |source| XskError::Setup { step, source };

    let umem = Umem::new(opts.frames, opts.frame_size).map_err(step("mapping the UMEM"))?;
    // TX metadata (Linux 6.8+) lets a frame ask for its UDP checksum; older kernels
    // refuse the registration, and then the relay computes every checksum itself.
    let sw_csum = if opts.checksum_in_kernel {
        libc::XDP_UMEM_TX_SW_CSUM
    } else {
        0
    };
    let tx_metadata =
        opts.checksum_offload && umem.register(raw, TX_METADATA_LEN as u32, sw_csum).is_ok();
    if tx_metadata {
        Ok(())
    } else {
        umem.register(raw, 0, 0)
    }
    .map_err(|source| match source.raw_os_error() {
        // The kernel charges the UMEM to RLIMIT_MEMLOCK unless we have CAP_IPC_LOCK.
        Some(libc::ENOBUFS) => XskError::MemlockLimit {
            mib: (u64::from(opts.frames) * u64::from(opts.frame_size)) >> 20,
        },
        _ => XskError::Setup {
            step: "registering the UMEM",
            source,
        },
    })?;
    let sizes = [
        (libc::XDP_UMEM_FILL_RING, opts.fill_ring),
        (libc::XDP_UMEM_COMPLETION_RING, opts.comp_ring),
        (libc::XDP_RX_RING, opts.rx_ring),
        (libc::XDP_TX_RING, opts.tx_ring),
    ];
    for (ring, size) in sizes {
        umem::set_option(raw, libc::SOL_XDP, ring, &(size as libc::c_int))
            .map_err(step("sizing the rings"))?;
    }
    let [rx_off, tx_off, fill_off, comp_off] =
        umem::ring_offsets(raw).map_err(step("reading the ring offsets"))?;
    let map = step("mapping the rings");
    let mut fill = Producer::new(
        raw,
        libc::XDP_UMEM_PGOFF_FILL_RING,
        fill_off,
        opts.fill_ring,
    )
    .map_err(map)?;
    let completions = Consumer::new(
        raw,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        comp_off,
        opts.comp_ring,
    )
    .map_err(map)?;
    let rx =
        Consumer::new(raw, libc::XDP_PGOFF_RX_RING as u64, rx_off, opts.rx_ring).map_err(map)?;
    let tx =
        Producer::new(raw, libc::XDP_PGOFF_TX_RING as u64, tx_off, opts.tx_ring).map_err(map)?;

    // Copy mode transmits at most 32 frames per kick unless told more (Linux 6.17+);
    // older kernels refuse the option and just take more kicks.
    let _ = umem::set_option(raw, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &opts.tx_ring);
    if opts.busy_poll {
        let busy = [
            (SO_PREFER_BUSY_POLL, 1),
            (SO_BUSY_POLL, BUSY_POLL_USECS),
            (SO_BUSY_POLL_BUDGET, RX_BATCH as libc::c_int),
        ];
        for (name, value) in busy {
            umem::set_option(raw, libc::SOL_SOCKET, name, &value)
                .map_err(step("enabling busy polling"))?;
        }
    }

    // Every receive frame waits in the fill ring before the first packet can come.
    for i in 0..opts.fill_ring {
        fill.write(i, umem.frame_addr(i));
    }
    fill.submit(opts.fill_ring);
    let free: Vec<u64> = (opts.fill_ring..opts.frames)
        .map(|i| umem.frame_addr(i))
        .collect();

    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: libc::XDP_USE_NEED_WAKEUP,
        sxdp_ifindex: link.index,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: passes a live sockaddr_xdp and its size.
    let r = unsafe {
        libc::bind(
            raw,
            ptr::from_ref(&addr).cast(),
            mem::size_of_val(&addr) as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(XskError::Bind {
            iface: iface.to_owned(),
            queue,
            source: io::Error::last_os_error(),
        });
    }
    let zero_copy =
        xdp_options(raw).map_err(step("reading XDP_OPTIONS"))? & libc::XDP_OPTIONS_ZEROCOPY != 0;

    let checksum_offload = tx_metadata && !zero_copy;
    let xsk = Arc::new(Xsk {
        fd,
        umem,
        zero_copy,
    });
    let learned = Arc::new(Learned::default());
    let receiver = XskReceiver {
        xsk: xsk.clone(),
        rx,
        fill,
        local,
        busy_poll: opts.busy_poll,
        hops: HopLearner {
            known: HashMap::new(),
            last: None,
            shared: learned.clone(),
        },
        stats: RecvStats::default(),
    };
    let sender = XskSender {
        xsk,
        tx,
        completions,
        free,
        current: None,
        queued: 0,
        scratch: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        own_mac: link.mac,
        mtu: link.mtu,
        hops: HashMap::new(),
        last_hop: None,
        learned,
        counted: 0,
        stats: SendStats::default(),
        drops: SendDrops::default(),
        admission: None,
        checksum_offload,
    };
    Ok((receiver, sender))
}

/// The socket and its memory, shared by the two halves. The descriptor closes before
/// the UMEM is unmapped (fields drop in order).
struct Xsk {
    fd: OwnedFd,
    umem: Umem,
    zero_copy: bool,
}

impl Xsk {
    /// Sleeps until the socket can take more to send, or `timeout`. In copy mode the
    /// poll itself transmits what the TX ring holds.
    fn wait_writable(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: timeout.as_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd and a timespec that outlive the call; no signal mask.
        unsafe { libc::ppoll(&mut fd, 1, &ts, ptr::null()) };
    }

    /// recvfrom/sendto with no data: the "kick" that wakes the driver (zero-copy),
    /// busy-polls it, or (copy mode, sendto) transmits the TX ring.
    fn kick(&self, send: bool) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: zero-length calls with null buffers and addresses, which AF_XDP allows.
        let r = unsafe {
            if send {
                libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0)
            } else {
                libc::recvfrom(
                    fd,
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The interface the socket binds to, as seen from this thread's network namespace.
struct Link {
    index: u32,
    mac: Mac,
    mtu: usize,
}

impl Link {
    fn query(iface: &str) -> Result<Link, XskError> {
        let err = |source| XskError::Interface {
            iface: iface.to_owned(),
            source,
        };
        // SAFETY: all-zero is a valid ifreq.
        let mut req: libc::ifreq = unsafe { mem::zeroed() };
        if iface.is_empty() || iface.len() >= req.ifr_name.len() || iface.contains('\0') {
            return Err(err(io::ErrorKind::InvalidInput.into()));
        }
        for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ioctl = |request| {
            // SAFETY: these SIOCGIF* requests read and fill the ifreq passed.
            if unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut req) } < 0 {
                return Err(err(io::Error::last_os_error()));
            }
            Ok(req.ifr_ifru)
        };
        // SAFETY (the three unions): each request filled the member read.
        let index = unsafe { ioctl(libc::SIOCGIFINDEX)?.ifru_ifindex };
        let hw = unsafe { ioctl(libc::SIOCGIFHWADDR)?.ifru_hwaddr };
        let mtu = unsafe { ioctl(libc::SIOCGIFMTU)?.ifru_mtu };
        if hw.sa_family != libc::ARPHRD_ETHER {
            return Err(err(io::Error::other("not an Ethernet interface")));
        }
        let mut mac = [0; 6];
        for (d, s) in mac.iter_mut().zip(hw.sa_data) {
            *d = s as u8;
        }
        Ok(Link {
            index: index as u32,
            mac,
            mtu: mtu as usize,
        })
    }
}

fn xdp_options(fd: RawFd) -> io::Result<u32> {
    let mut opts = libc::xdp_options { flags: 0 };
    let mut len = mem::size_of_val(&opts) as libc::socklen_t;
    // SAFETY: passes a live struct and its true size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            ptr::from_mut(&mut opts).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(opts.flags)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Next hops the receiver learned that the sender has not picked up yet.
#[derive(Default)]
struct Learned {
    fresh: AtomicBool,
    pending: Mutex<Vec<(IpAddr, NextHop)>>,
}

impl Learned {
    fn publish(&self, ip: IpAddr, hop: NextHop) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.push((ip, hop));
        self.fresh.store(true, Ordering::Release);
    }

    /// Moves what was published into `hops`, true if anything; one relaxed load when
    /// there is nothing.
    fn take_into(&self, hops: &mut HashMap<IpAddr, NextHop>) -> bool {
        if !self.fresh.load(Ordering::Relaxed) || !self.fresh.swap(false, Ordering::Acquire) {
            return false;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        hops.extend(pending.drain(..));
        true
    }
}

/// The receiver's side of next-hop learning.
struct HopLearner {
    known: HashMap<IpAddr, NextHop>,
    /// The last remote seen: a burst from one source costs no hash lookup.
    last: Option<(IpAddr, NextHop)>,
    shared: Arc<Learned>,
}

impl HopLearner {
    /// Remembers `hop` for `ip`; false when the table is full and `ip` is new.
    fn learn(&mut self, ip: IpAddr, hop: NextHop) -> bool {
        if self.last == Some((ip, hop)) {
            return true;
        }
        if self.known.get(&ip) != Some(&hop) {
            if self.known.len() >= MAX_REMOTES && !self.known.contains_key(&ip) {
                return false;
            }
            self.known.insert(ip, hop);
            self.shared.publish(ip, hop);
        }
        self.last = Some((ip, hop));
        true
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvStats {
    /// Datagrams handed to the caller.
    pub received: u64,
    /// Frames that were no well-formed UDP datagram (see `frame::Malformed`).
    pub malformed: u64,
    /// Well-formed datagrams to another address than the socket's media address.
    pub not_local: u64,
    /// Datagrams delivered from a new remote while the next-hop table was full:
    /// replies to it are dropped.
    pub unlearned: u64,
    /// Syscalls made: busy polls and fill-ring wakeups.
    pub calls: u64,
}

/// The kernel's counters for the socket (XDP_STATISTICS).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets dropped for other reasons than invalid descriptors (e.g. no room in
    /// the RX ring or no frame in the fill ring).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

pub struct XskReceiver {
    xsk: Arc<Xsk>,
    rx: Consumer<libc::xdp_desc>,
    fill: Producer<u64>,
    local: SocketAddr,
    busy_poll: bool,
    hops: HopLearner,
    stats: RecvStats,
}

impl XskReceiver {
    /// The socket, for the XSKMAP and for epoll.
    pub fn raw_fd(&self) -> RawFd {
        self.xsk.fd.as_raw_fd()
    }

    /// Whether the driver runs this socket in zero-copy mode (else copy mode).
    pub fn zero_copy(&self) -> bool {
        self.xsk.zero_copy
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> RecvStats {
        self.stats
    }

    pub fn kernel_stats(&self) -> io::Result<KernelStats> {
        // SAFETY: all-zero is a valid xdp_statistics; the kernel fills it.
        let mut s: libc::xdp_statistics = unsafe { mem::zeroed() };
        let mut len = mem::size_of_val(&s) as libc::socklen_t;
        // SAFETY: passes a live struct and its true size.
        let r = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                ptr::from_mut(&mut s).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    fn is_local(&self, destination: SocketAddr) -> bool {
        destination.port() == self.local.port()
            && (self.local.ip().is_unspecified() || destination.ip() == self.local.ip())
    }

    /// recvfrom: busy-polls the driver, or wakes a zero-copy driver that waits for
    /// fill-ring entries. Errors change nothing here: the next call tries again.
    fn poke(&mut self) {
        self.stats.calls += 1;
        let _ = self.xsk.kick(false);
    }
}

impl Receiver for XskReceiver {
    fn recv(&mut self, on_datagram: &mut dyn FnMut(Datagram<'_>)) -> io::Result<usize> {
        if self.busy_poll {
            self.poke();
        }
        // Every frame taken goes straight back to the fill ring; it has room for all
        // receive frames, so this `min` only guards against a broken invariant.
        let n = self.rx.available(RX_BATCH).min(self.fill.free(RX_BATCH));
        for i in 0..n {
            let desc = self.rx.read(i);
            // Published with the others after the loop, once the callbacks are done.
            self.fill.write(i, self.xsk.umem.frame_of(desc.addr));
            // SAFETY: the frame came through the RX ring: the kernel writes no more into
            // it until it is back in the fill ring, after the callback.
            let Some(bytes) = (unsafe { self.xsk.umem.bytes(desc.addr, desc.len) }) else {
                self.stats.malformed += 1;
                continue;
            };
            let parsed = match frame::parse(bytes) {
                Ok(p) if self.is_local(p.destination) => p,
                Ok(_) => {
                    self.stats.not_local += 1;
                    continue;
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    continue;
                }
            };
            if !self.hops.learn(parsed.source.ip(), parsed.hop) {
                self.stats.unlearned += 1;
            }
            self.stats.received += 1;
            on_datagram(Datagram {
                source: parsed.source,
                destination: parsed.destination,
                data: parsed.payload,
            });
        }
        if n > 0 {
            self.rx.release(n);
            self.fill.submit(n);
        }
        if self.fill.needs_wakeup() {
            self.poke();
        }
        Ok(n as usize)
    }

    fn fd(&self) -> RawFd {
        self.raw_fd()
    }
}

/// Why datagrams were dropped before reaching the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendDrops {
    /// To an IP no frame came from yet: no MAC to send to.
    pub no_next_hop: u64,
    /// No free frame or TX ring slot, even after a flush.
    pub no_frame: u64,
    /// Longer than the interface's MTU allows, or mixed address families.
    pub invalid: u64,
    /// Refused by the driver when transmitted (EBUSY).
    pub refused: u64,
}

pub struct XskSender {
    xsk: Arc<Xsk>,
    tx: Producer<libc::xdp_desc>,
    completions: Consumer<u64>,
    /// Frames free to send from, a stack: the frames the kernel completed last are
    /// written next, while still in cache. Its capacity holds all of the sender's
    /// frames, so returning them never allocates.
    free: Vec<u64>,
    /// The frame the last `buffer()` handed out, until `commit` queues it.
    current: Option<u64>,
    /// Descriptors written into the TX ring and not yet published.
    queued: u32,
    /// What `buffer()` hands out when no frame is free; a commit from it is dropped.
    scratch: Box<[u8]>,
    own_mac: Mac,
    mtu: usize,
    hops: HashMap<IpAddr, NextHop>,
    /// The hop of the last datagram's destination: a viewer's burst (a frame of video)
    /// costs one hash lookup, not one per datagram.
    last_hop: Option<(IpAddr, NextHop)>,
    learned: Arc<Learned>,
    /// The TX ring's consumer index already counted into `stats.sent`.
    counted: u32,
    stats: SendStats,
    drops: SendDrops,
    /// The program's table of remotes let past it with more than STUN.
    admission: Option<Admission>,
    /// UDP checksums are left to the device: frames carry TX metadata asking for them.
    checksum_offload: bool,
}

impl XskSender {
    /// Keeps `admission` (the program's table of viewers' addresses) up to date with
    /// the sessions of this sender's worker.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    pub fn drops(&self) -> SendDrops {
        self.drops
    }

    pub fn zero_copy(&self) -> bool {
        self.xsk.zero_copy
    }

    /// Whether the device (or the kernel, for one that cannot) computes UDP checksums.
    pub fn checksum_offload(&self) -> bool {
        self.checksum_offload
    }

    fn drop_frame(&mut self, frame: u64, why: fn(&mut SendDrops) -> &mut u64) {
        self.free.push(frame);
        *why(&mut self.drops) += 1;
        self.stats.dropped += 1;
    }

    /// A free frame with a TX ring slot for it, flushing first if the ring is full or
    /// every frame is in flight.
    fn take_frame(&mut self) -> Option<u64> {
        let room = |s: &mut Self| s.tx.free(s.queued + 1) > s.queued && !s.free.is_empty();
        if !room(self) {
            self.reclaim();
        }
        if !room(self) {
            self.flush();
        }
        // The device is behind (copy mode: the kernel's transmit path; a NIC: its queue).
        // Wait for it a little, as a qdisc would queue, rather than drop at once; bounded
        // so that a stuck device costs the worker at most TX_WAIT per batch.
        let mut waited = Duration::ZERO;
        while !room(self) && waited < TX_WAIT {
            self.xsk.wait_writable(TX_WAIT_STEP);
            waited += TX_WAIT_STEP;
            self.kick();
            self.reclaim();
        }
        if room(self) {
            self.free.pop()
        } else {
            None
        }
    }

    /// The next hop towards `ip`, if the receiver has learned one.
    fn next_hop(&mut self, ip: IpAddr) -> Option<NextHop> {
        self.take_learned();
        match self.last_hop {
            Some((last, hop)) if last == ip => Some(hop),
            _ => {
                let hop = *self.hops.get(&ip)?;
                self.last_hop = Some((ip, hop));
                Some(hop)
            }
        }
    }

    /// Takes the hops the receiver learned since; a learned hop may replace the last one.
    fn take_learned(&mut self) {
        if self.learned.take_into(&mut self.hops) {
            self.last_hop = None;
        }
    }

    /// Takes back the frames the kernel is done with.
    fn reclaim(&mut self) {
        let n = self.completions.available(u32::MAX);
        for i in 0..n {
            let frame = self.xsk.umem.frame_of(self.completions.read(i));
            self.free.push(frame);
        }
        if n > 0 {
            self.completions.release(n);
        }
    }

    /// Makes the kernel transmit what is published: in copy mode by kicking until the
    /// ring is empty (bounded), in zero-copy mode only if the driver asks for a kick.
    fn kick(&mut self) {
        let mut refused = 0;
        if self.xsk.zero_copy {
            if self.tx.outstanding() > 0 && self.tx.needs_wakeup() {
                self.stats.calls += 1;
                let _ = self.xsk.kick(true);
            }
        } else {
            let mut stalled = 0;
            for _ in 0..MAX_KICKS {
                let waiting = self.tx.outstanding();
                if waiting == 0 {
                    break;
                }
                self.stats.calls += 1;
                match self.xsk.kick(true).map_err(|e| e.raw_os_error()) {
                    Ok(()) => {}
                    // The per-call budget ran out, the completion ring is full, or the
                    // driver's queue is busy: make room and go on.
                    Err(Some(libc::EAGAIN | libc::EINTR)) => self.reclaim(),
                    // The driver dropped one frame (NET_XMIT_DROP); the rest go on.
                    Err(Some(libc::EBUSY)) => refused += 1,
                    // Down or unbound: the frames wait in the ring for the next flush.
                    Err(_) => break,
                }
                // Two kicks in a row that moved nothing (a queue with no TX queue behind
                // it, a peer that does not drain): leave the rest for the next flush.
                stalled = if self.tx.outstanding() == waiting {
                    stalled + 1
                } else {
                    0
                };
                if stalled == 2 {
                    break;
                }
            }
        }
        let now = self.tx.consumed();
        let consumed = now.wrapping_sub(self.counted);
        self.counted = now;
        self.stats.sent += u64::from(consumed.saturating_sub(refused));
        self.drops.refused += u64::from(refused);
        self.stats.dropped += u64::from(refused);
    }
}

impl Sender for XskSender {
    fn buffer(&mut self) -> &mut [u8] {
        if self.current.is_none() {
            self.current = self.take_frame();
            if let Some(&next) = self.free.last() {
                self.xsk
                    .umem
                    .prefetch_for_write(next, PAYLOAD_AT + WARM_PAYLOAD);
            }
        }
        match self.current {
            Some(frame) => {
                // SAFETY: the frame is the sender's own: in no ring, handed out only here.
                let bytes = unsafe { self.xsk.umem.frame_mut(frame) };
                &mut bytes[PAYLOAD_AT..PAYLOAD_AT + MAX_DATAGRAM]
            }
            None => &mut self.scratch,
        }
    }

    fn commit(&mut self, len: usize, source: SocketAddr, destination: SocketAddr) {
        let Some(frame) = self.current.take() else {
            self.drops.no_frame += 1;
            self.stats.dropped += 1;
            return;
        };
        let Some(hop) = self.next_hop(destination.ip()) else {
            return self.drop_frame(frame, |d| &mut d.no_next_hop);
        };
        if len > MAX_DATAGRAM || frame::ip_headers_len(destination.is_ipv6()) + len > self.mtu {
            return self.drop_frame(frame, |d| &mut d.invalid);
        }
        // SAFETY: as in `buffer`: the frame is the sender's own until queued below.
        let bytes = unsafe { self.xsk.umem.frame_mut(frame) };
        let checksum = if self.checksum_offload {
            UdpChecksum::Device
        } else {
            UdpChecksum::Full
        };
        let Some(start) = frame::write_headers(
            bytes,
            PAYLOAD_AT,
            len,
            (self.own_mac, &hop),
            (source, destination),
            checksum,
        ) else {
            return self.drop_frame(frame, |d| &mut d.invalid);
        };
        let mut options = 0;
        if self.checksum_offload {
            // The checksum field, from the frame's start (the UDP header's offset 6).
            let udp = (PAYLOAD_AT - frame::UDP_HLEN - start) as u16;
            bytes[start - TX_METADATA_LEN..start].copy_from_slice(&frame::checksum_request(udp, 6));
            options = libc::XDP_TX_METADATA;
        }
        let desc = libc::xdp_desc {
            addr: frame + start as u64,
            len: (PAYLOAD_AT + len - start) as u32,
            options,
        };
        self.tx.write(self.queued, desc);
        self.queued += 1;
        if self.queued >= TX_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.take_learned();
        if self.queued > 0 {
            self.tx.submit(self.queued);
            self.queued = 0;
        }
        self.kick();
        self.reclaim();
    }

    fn stats(&self) -> SendStats {
        self.stats
    }

    fn admit(&mut self, remote: SocketAddr) {
        if let Some(Err(e)) = self.admission.as_mut().map(|a| a.admit(remote)) {
            warn!(remote = %remote, "XDP admission: {e}");
        }
    }

    fn revoke(&mut self, remote: SocketAddr) {
        if let Some(Err(e)) = self.admission.as_mut().map(|a| a.revoke(remote)) {
            warn!(remote = %remote, "XDP admission: {e}");
        }
    }
}
