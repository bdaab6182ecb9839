//! Packet I/O backends behind one narrow API, so that sessions, tracks and SRTP run
//! unchanged over UDP sockets (portable mode, `udp`) and AF_XDP rings (issue 3).
//!
//! A backend is split into a receiving and a sending half so that a worker can answer
//! a received datagram (borrowed from the receive batch) straight into the send batch.
//! Outgoing datagrams are written in place into buffers the backend owns (a slot of
//! the `sendmmsg` batch, or a UMEM frame), and leave in one syscall or kick per batch.

pub mod epoll;
#[cfg(any(test, feature = "fuzzing"))]
pub mod memory;
pub mod udp;
pub mod wake;
pub mod xdp;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Largest UDP payload a worker writes (MediaMTX's `udpMaxPayloadSize` is at most this).
pub const MAX_DATAGRAM: usize = 1500;

/// One received datagram, borrowed from the backend's receive batch.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The remote peer.
    pub source: SocketAddr,
    /// The local address it was sent to (replies go out from it).
    pub destination: SocketAddr,
    pub data: &'a [u8],
}

pub trait Receiver {
    /// Takes every datagram waiting (up to one batch) without blocking, calling
    /// `on_datagram` for each; returns how many were taken (0: nothing waiting).
    fn recv(&mut self, on_datagram: &mut dyn FnMut(Datagram<'_>)) -> io::Result<usize>;

    /// File descriptor that turns readable when datagrams wait (for epoll).
    fn fd(&self) -> RawFd;
}

pub trait Sender {
    /// Buffer for the next outgoing datagram's payload, `MAX_DATAGRAM` bytes long.
    /// Sends the batch first when it is full.
    fn buffer(&mut self) -> &mut [u8];

    /// Queues the first `len` bytes written into the last `buffer()`, from `source`
    /// (the local address the peer talks to) to `destination`.
    fn commit(&mut self, len: usize, source: SocketAddr, destination: SocketAddr);

    /// Sends everything queued: one syscall (or one kick) per batch. Datagrams the
    /// kernel refuses (full socket buffer) are dropped and counted, never retried forever.
    fn flush(&mut self);

    /// Datagrams sent and dropped so far.
    fn stats(&self) -> SendStats;

    /// `remote` proved it is a session's (a check signed with its ICE password): a
    /// backend that filters sources before they reach userspace (XDP) lets all of its
    /// datagrams through from now on. Nothing to do for sockets.
    fn admit(&mut self, _remote: SocketAddr) {}

    /// `remote` is no longer any session's: back to what unknown sources may send.
    fn revoke(&mut self, _remote: SocketAddr) {}
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendStats {
    pub sent: u64,
    pub dropped: u64,
    /// Syscalls (or kicks) made to send them.
    pub calls: u64,
}
