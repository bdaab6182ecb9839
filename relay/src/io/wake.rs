//! Waking workers from other threads: one eventfd per worker, in its epoll set.
//!
//! The ingest wakes the workers that read a track once per received batch, not once
//! per packet; a worker drains its eventfd and then reads every track it follows.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Wakers {
    fds: Vec<OwnedFd>,
}

impl Wakers {
    pub fn new(workers: usize) -> io::Result<Wakers> {
        assert!(workers <= 64, "worker masks are 64 bits");
        let fds = (0..workers)
            .map(|_| {
                // SAFETY: eventfd returns a new descriptor or -1.
                let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: fd is a fresh descriptor that nothing else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .collect::<io::Result<_>>()?;
        Ok(Wakers { fds })
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Wakes every worker whose bit is set in `mask`.
    pub fn wake(&self, mask: u64) {
        let mut bits = mask;
        while bits != 0 {
            let worker = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(fd) = self.fds.get(worker) {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer; EAGAIN (counter full) is harmless.
                unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
            }
        }
    }

    /// The descriptor worker `worker` polls.
    pub fn fd(&self, worker: usize) -> RawFd {
        self.fds[worker].as_raw_fd()
    }

    /// Resets worker `worker`'s eventfd after it woke.
    pub fn drain(&self, worker: usize) {
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer; EAGAIN when already drained.
        unsafe { libc::read(self.fds[worker].as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn wakes_only_masked_workers() {
        let w = Wakers::new(3).unwrap();
        w.wake(0b101);
        assert!(readable(w.fd(0)));
        assert!(!readable(w.fd(1)));
        assert!(readable(w.fd(2)));
        w.drain(0);
        assert!(!readable(w.fd(0)));
    }
}
