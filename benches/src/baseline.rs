//! The reference the relay's egress is measured against: the same datagrams, of the
//! same sizes, to the same sockets in the same order, sent by a bare `sendmmsg` loop
//! that does nothing else (no crypto, no header rewrite, no session state).
//!
//! Two ways to send them: a flood (full batches, as fast as the sinks drain them), the
//! cheapest a UDP socket sends these datagrams; and a replay at the times the relay sent
//! them, which pays the same wake-ups (of the sender and of idle receivers) per burst.
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
use crate::sink::Arrival;

/// Datagrams per `sendmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram the plan may ask for.
pub const MAX_DATAGRAM: usize = 1500;

/// What to send: packet `k` goes to every destination in turn before packet `k + 1`,
/// as a relay fans a stream out; the packets repeat until `total` datagrams.
#[derive(Debug, Clone)]
pub struct Plan {
    pub destinations: Vec<SocketAddrV4>,
    /// Sizes (at most `MAX_DATAGRAM`), and when to send each for a replay.
    pub packets: Vec<Arrival>,
    pub total: u64,
}

impl Plan {
    /// Destination, size and packet index of datagram `k`.
    pub fn datagram(&self, k: u64) -> (usize, usize, usize) {
        let n = self.destinations.len() as u64;
        let packet = ((k / n) % self.packets.len() as u64) as usize;
        let size = (self.packets[packet].size as usize).min(MAX_DATAGRAM);
        ((k % n) as usize, size, packet)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Full batches back to back, never more than `window` datagrams ahead of what the
    /// sinks have taken. CPU is counted inside the send loop only (waits excluded).
    Flood { window: u64 },
    /// Each packet at its `Arrival::at` from the start, in batches of what is due.
    /// CPU is the thread's whole time, sleeps and wake-ups included, as the relay's is.
    Replay,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub sent: u64,
    /// Datagrams the kernel refused (full send buffer): counted, not retried.
    pub refused: u64,
    pub calls: u64,
    pub cpu: Duration,
    pub elapsed: Duration,
    /// The sinks fell behind for longer than the stall limit: stopped early.
    pub stalled: bool,
}

impl Outcome {
    pub fn us_per_datagram(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.sent.max(1) as f64
    }
}

/// Sends `plan` paced by `pace`; `received()` tells how many datagrams the sinks have
/// taken, and if they take nothing for `stall` while the flood waits, it gives up.
pub fn send(
    plan: &Plan,
    pace: Pace,
    received: &dyn Fn() -> u64,
    stall: Duration,
) -> io::Result<Outcome> {
    if plan.destinations.is_empty() || plan.packets.is_empty() {
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
    let thread_start = procfs::thread_cpu();
    let base = received();
    let mut last_progress = (base, Instant::now());
    while out.sent + out.refused < plan.total {
        let done = out.sent + out.refused;
        let mut n = (plan.total - done).min(BATCH as u64) as usize;
        match pace {
            Pace::Flood { window } => {
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
            }
            Pace::Replay => {
                let now = start.elapsed();
                let due = |k: u64| plan.packets[plan.datagram(k).2].at <= now;
                if !due(done) {
                    let next = plan.packets[plan.datagram(done).2].at;
                    std::thread::sleep(next - now);
                    continue;
                }
                n = (0..n as u64).take_while(|&j| due(done + j)).count();
            }
        }
        let cpu_before = procfs::thread_cpu();
        for j in 0..n {
            let (to, len, _) = plan.datagram(done + j as u64);
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
    if pace == Pace::Replay {
        out.cpu = procfs::thread_cpu() - thread_start;
    }
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

    /// Packets of these sizes, `gap` apart.
    fn packets(sizes: &[u16], gap: Duration) -> Vec<Arrival> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Arrival {
                at: gap * i as u32,
                size,
            })
            .collect()
    }

    #[test]
    fn plan_sends_each_packet_to_every_destination_in_turn() {
        let plan = Plan {
            destinations: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            packets: packets(&[100, 200, 300], Duration::ZERO),
            total: 8,
        };
        let got: Vec<(usize, usize, usize)> = (0..8).map(|k| plan.datagram(k)).collect();
        assert_eq!(
            got,
            [
                (0, 100, 0),
                (1, 100, 0),
                (0, 200, 1),
                (1, 200, 1),
                (0, 300, 2),
                (1, 300, 2),
                (0, 100, 0),
                (1, 100, 0)
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
            packets: packets(&[1440, 700, 64, 1200, 1440], Duration::ZERO),
            total: 1000,
        };
        let want: Vec<Vec<usize>> = (0..addrs.len())
            .map(|d| {
                (0..plan.total)
                    .map(|k| plan.datagram(k))
                    .filter(|&(to, _, _)| to == d)
                    .map(|(_, len, _)| len)
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
            Pace::Flood { window: 128 },
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
            packets: packets(&[100], Duration::ZERO),
            total: 10_000,
        };
        let flood = Pace::Flood { window: 256 };
        let out = send(&plan, flood, &|| 0, Duration::from_millis(100)).unwrap();
        assert!(out.stalled);
        assert!(out.sent <= 256, "never more than the window ahead: {out:?}");
    }

    /// A replay sends each packet (to every destination) no earlier than its time.
    #[test]
    fn replay_keeps_the_recorded_times() {
        let sinks: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
        let plan = Plan {
            destinations: ipv4_only(&addrs),
            packets: packets(&[200, 300, 400, 500], Duration::from_millis(40)),
            total: 8,
        };
        let out = send(&plan, Pace::Replay, &|| 0, Duration::from_secs(1)).unwrap();
        assert_eq!((out.sent, out.refused), (8, 0));
        assert!(out.elapsed >= Duration::from_millis(120), "{out:?}");
        assert!(out.elapsed < Duration::from_millis(400), "{out:?}");
        assert_eq!(out.calls, 4, "one sendmmsg per packet's burst: {out:?}");
        let mut buf = [0u8; 2048];
        for s in &sinks {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let sizes: Vec<usize> = (0..4).map(|_| s.recv(&mut buf).unwrap()).collect();
            assert_eq!(sizes, [200, 300, 400, 500]);
        }
    }
}
