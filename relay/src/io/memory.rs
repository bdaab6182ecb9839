//! An in-memory [`Sender`]: what a worker sent, kept for a test or a fuzz target to read,
//! so that the worker core runs without sockets.

use std::net::SocketAddr;

use super::{SendStats, Sender, MAX_DATAGRAM};

/// One datagram a worker sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct MemorySender {
    buf: Box<[u8; MAX_DATAGRAM]>,
    queued: Vec<Sent>,
    /// Everything flushed, oldest first; the reader takes what it wants.
    pub sent: Vec<Sent>,
    stats: SendStats,
}

impl Default for MemorySender {
    fn default() -> Self {
        MemorySender {
            buf: Box::new([0; MAX_DATAGRAM]),
            queued: Vec::new(),
            sent: Vec::new(),
            stats: SendStats::default(),
        }
    }
}

impl Sender for MemorySender {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf[..]
    }

    fn commit(&mut self, len: usize, source: SocketAddr, destination: SocketAddr) {
        self.queued.push(Sent {
            source,
            destination,
            data: self.buf[..len].to_vec(),
        });
    }

    fn flush(&mut self) {
        if !self.queued.is_empty() {
            self.stats.calls += 1;
            self.stats.sent += self.queued.len() as u64;
            self.sent.append(&mut self.queued);
        }
    }

    fn stats(&self) -> SendStats {
        self.stats
    }
}
