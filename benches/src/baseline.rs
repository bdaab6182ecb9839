//! The reference the relay's egress is measured against: the same datagrams, of the
//! same sizes, to the same sockets in the same order, sent by a bare `sendmmsg` loop
//! that does nothing else (no crypto, no header rewrite, no session state).
//!
//! Hand-written over libc: the point is the cost of the syscall path alone, so no
//! library layer may sit in between.

use std::io;
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::{Duration, Instant};

use crate::procfs;

/// Datagrams per `sendmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram the plan may ask for.
pub const MAX_DATAGRAM: usize = 1500;

/// What to send: packet `k` of the pattern goes to every destination in turn before
/// packet `k + 1`, as a relay fans a stream out; the pattern repeats until `total`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub destinations: Vec<SocketAddrV4>,
    /// Datagram sizes, in bytes (at most `MAX_DATAGRAM`).
    pub sizes: Vec<u16>,
    pub total: u64,
}

impl Plan {
    /// Destination and size of datagram `k`.
    pub fn datagram(&self, k: u64) -> (usize, usize) {
        let n = self.destinations.len() as u64;
        let packet = (k / n) % self.sizes.len() as u64;
        (
            (k % n) as usize,
            (self.sizes[packet as usize] as usize).min(MAX_DATAGRAM),
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub sent: u64,
    /// Datagrams the kernel refused (full send buffer): counted, not retried.
    pub refused: u64,
    pub calls: u64,
    /// CPU time of the sending thread inside the send loop (waits for the sinks excluded).
    pub cpu: Duration,
    pub elapsed: Duration,
    /// The sinks fell behind for longer than the stall limit: stopped early.
    pub stalled: bool,
}

impl Outcome {
    pub fn cpu_per_datagram(&self) -> Duration {
        self.cpu
            .checked_div(self.sent.max(1) as u32)
            .unwrap_or_default()
    }
}

/// Sends `plan` in batches of `BATCH`, never more than `window` datagrams ahead of
/// what `received()` says the sinks have taken (so their sockets never overflow),
/// giving up if they make no progress for `stall`.
pub fn send(
    plan: &Plan,
    window: u64,
    received: &dyn Fn() -> u64,
    stall: Duration,
) -> io::Result<Outcome> {
    if plan.destinations.is_empty() || plan.sizes.is_empty() {
        return Err(io::Error::other("nothing to send"));
    }
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    // What every datagram carries: an RTP-looking first byte, so sinks count it as media.
    let mut bufs = vec![0u8; BATCH * MAX_DATAGRAM];
    for slot in bufs.chunks_mut(MAX_DATAGRAM) {
        slot[0] = 0x80;
        slot[1] = 96;
    }
    let names: Vec<libc::sockaddr_in> = plan.destinations.iter().map(sockaddr).collect();
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { mem::zeroed() }; BATCH];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; BATCH];

    let mut out = Outcome::default();
    let start = Instant::now();
    let base = received();
    let mut last_progress = (base, Instant::now());
    while out.sent + out.refused < plan.total {
        let done = out.sent + out.refused;
        let taken = received() - base;
        if done - taken.min(done) + BATCH as u64 > window {
            if taken != last_progress.0 {
                last_progress = (taken, Instant::now());
            } else if last_progress.1.elapsed() > stall {
                out.stalled = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let cpu_before = procfs::thread_cpu();
        let n = (plan.total - done).min(BATCH as u64) as usize;
        for j in 0..n {
            let (to, len) = plan.datagram(done + j as u64);
            iovs[j] = libc::iovec {
                iov_base: bufs[j * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut msgs[j].msg_hdr;
            h.msg_name = ptr::from_ref(&names[to]).cast_mut().cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[j];
            h.msg_iovlen = 1;
            h.msg_control = ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut k = 0;
        while k < n {
            // SAFETY: messages k..n point into `bufs`, `iovs` and `names`, which outlive
            // the call and are not touched during it; the socket is non-blocking.
            let r =
                unsafe { libc::sendmmsg(fd, msgs[k..n].as_mut_ptr(), (n - k) as libc::c_uint, 0) };
            out.calls += 1;
            if r > 0 {
                out.sent += r as u64;
                k += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // A full buffer (or any refusal): the rest of the batch is dropped, as the
            // relay drops it.
            out.refused += (n - k) as u64;
            break;
        }
        out.cpu += procfs::thread_cpu() - cpu_before;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

fn sockaddr(a: &SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The IPv4 addresses among `addrs` (the baseline socket is IPv4).
pub fn ipv4_only(addrs: &[SocketAddr]) -> Vec<SocketAddrV4> {
    addrs
        .iter()
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(*v4),
            SocketAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn plan_sends_each_packet_to_every_destination_in_turn() {
        let plan = Plan {
            destinations: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            sizes: vec![100, 200, 300],
            total: 8,
        };
        let got: Vec<(usize, usize)> = (0..8).map(|k| plan.datagram(k)).collect();
        assert_eq!(
            got,
            [
                (0, 100),
                (1, 100),
                (0, 200),
                (1, 200),
                (0, 300),
                (1, 300),
                (0, 100),
                (1, 100)
            ]
        );
    }

    /// Every datagram arrives, at its destination, with its size, in order; the loop
    /// keeps within the window of what the receivers have taken.
    #[test]
    fn sends_the_plan_over_loopback() {
        let sinks: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
        let plan = Plan {
            destinations: ipv4_only(&addrs),
            sizes: vec![1440, 700, 64, 1200, 1440],
            total: 1000,
        };
        let want: Vec<Vec<usize>> = (0..addrs.len())
            .map(|d| {
                (0..plan.total)
                    .map(|k| plan.datagram(k))
                    .filter(|&(to, _)| to == d)
                    .map(|(_, len)| len)
                    .collect()
            })
            .collect();
        let received = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = sinks
            .into_iter()
            .zip(want.iter().map(Vec::len))
            .map(|(s, count)| {
                let received = received.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut sizes = Vec::new();
                    let mut buf = [0u8; 2048];
                    while sizes.len() < count {
                        let Ok(n) = s.recv(&mut buf) else { break };
                        assert_eq!(&buf[..2], &[0x80, 96]);
                        sizes.push(n);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    sizes
                })
            })
            .collect();
        let taken = received.clone();
        let out = send(
            &plan,
            128,
            &move || taken.load(Ordering::Relaxed),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!((out.sent, out.refused, out.stalled), (1000, 0, false));
        assert!(out.calls >= 1000 / BATCH as u64);
        assert!(out.cpu > Duration::ZERO);
        let got: Vec<Vec<usize>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(got, want, "per destination, in order");
    }

    #[test]
    fn stops_when_the_sinks_stall() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let plan = Plan {
            destinations: ipv4_only(&[sink.local_addr().unwrap()]),
            sizes: vec![100],
            total: 10_000,
        };
        let out = send(&plan, 256, &|| 0, Duration::from_millis(100)).unwrap();
        assert!(out.stalled);
        assert!(out.sent <= 256, "never more than the window ahead: {out:?}");
    }
}
