//! The per-core worker: a [`Core`] (sessions, demultiplexing, egress; sans-IO) driven
//! by a receive half of an I/O backend and a sleep until something happens.
//!
//! A worker sleeps (on its epoll set, [`crate::io::epoll`]) until its socket is
//! readable, its eventfd is rung (by the ingest when a track it reads has new packets,
//! by the registry when a command waits in its inbox), or the core's next timer (or
//! the hosted ingest's next pass) is due. Each turn takes what woke it,
//! then fans out, runs due timers and sends the batch.

pub mod admission;
mod core;
mod demux;
mod egress;
pub mod registry;
pub mod session_info;
pub mod stats;
mod stun;
#[cfg(test)]
mod tests;
pub mod viewer;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use self::core::Core;
pub use self::core::Start;
pub use stats::WorkerStats;

use crate::ingest::Reader;
use crate::io::epoll::{Epoll, Token};
use crate::io::wake::Wakers;
use crate::io::{Receiver, Sender};
use registry::Registry;
use stats::add;

/// Batches taken from the socket in one turn at most, so that a flood on it cannot
/// starve the fan-out; what is left is taken next turn, without sleeping.
const MAX_BATCHES: usize = 16;
/// The longest sleep: `stop` is checked at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(100);

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
const INGEST: Token = Token(2);

pub struct Worker<R: Receiver, S: Sender> {
    id: usize,
    rx: R,
    core: Core<S>,
    wakers: Arc<Wakers>,
    stats: Arc<WorkerStats>,
    busy_poll: bool,
    /// The ingest's reader, when this worker runs it.
    ingest: Option<Reader>,
}

impl<R: Receiver, S: Sender> Worker<R, S> {
    /// Viewers get sender reports every `report_interval` (`rtcpSenderReportInterval`).
    pub fn new(
        id: usize,
        (rx, tx): (R, S),
        registry: Arc<Registry>,
        wakers: Arc<Wakers>,
        stats: Arc<WorkerStats>,
        report_interval: Duration,
    ) -> Self {
        let start = Start::now();
        Worker {
            id,
            rx,
            core: Core::new(id, tx, registry, stats.clone(), start, report_interval),
            wakers,
            stats,
            busy_poll: false,
            ingest: None,
        }
    }

    /// Runs the ingest's reader in this worker's loop ([`crate::ingest::Ingest::hosted`]).
    pub fn with_ingest(mut self, reader: Reader) -> Self {
        self.ingest = Some(reader);
        self
    }

    /// This worker's share of the checks that may go on to a claim
    /// (`xdpSTUNGlobalRate`/`xdpSTUNGlobalBurst` over the workers).
    pub fn with_claim_budget(mut self, rate: f64, burst: f64) -> Self {
        self.core.set_claim_budget(rate, burst);
        self
    }

    /// Spins instead of sleeping: lowest latency, a core kept busy.
    pub fn with_busy_poll(mut self, busy_poll: bool) -> Self {
        self.busy_poll = busy_poll;
        self
    }

    /// Runs until `stop` is set (checked at least every `MAX_SLEEP`).
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut epoll = Epoll::new()?;
        epoll.add(self.rx.fd(), SOCKET)?;
        epoll.add(self.wakers.fd(self.id), WAKER)?;
        // Whether the reader's epoll set is in the worker's ([`Reader::listens`]).
        let mut hearing = false;
        if let Some(reader) = &self.ingest {
            epoll.add(reader.fd(), INGEST)?;
            hearing = true;
        }
        // The set is edge-triggered: a socket a turn left datagrams in is read again
        // without waiting for a new edge. A fan-out cut short by its budget goes on
        // without sleeping too.
        let (mut socket_left, mut behind) = (false, false);
        while !stop.load(Ordering::Relaxed) {
            let wait = match self.busy_poll || socket_left || behind {
                true => Duration::ZERO,
                false => {
                    let now = Instant::now();
                    let ingest = self.ingest.as_ref().and_then(|r| r.next_due(now));
                    let deadline = self.core.next_deadline();
                    ingest
                        .map_or(deadline, |due| due.min(deadline))
                        .saturating_duration_since(now)
                        .min(MAX_SLEEP)
                }
            };
            let ready = epoll.wait(wait)?;
            let socket = socket_left || ready.has(SOCKET);
            let woken = ready.has(WAKER);
            let now = Instant::now();
            if let Some(reader) = &mut self.ingest {
                reader.on_turn(now, ready.has(INGEST), &self.wakers, self.id)?;
                let fd = reader.fd();
                match (reader.listens(), hearing) {
                    (true, false) => epoll.add(fd, INGEST)?,
                    (false, true) => epoll.remove(fd)?,
                    _ => {}
                }
                hearing = reader.listens();
            }
            (socket_left, behind) = self.turn(now, socket, woken)?;
        }
        self.core.shutdown();
        Ok(())
    }

    /// One pass over what woke the worker, then the core's end of turn. Whether the
    /// socket may still hold datagrams, and whether the fan-out stopped short.
    fn turn(&mut self, now: Instant, socket: bool, woken: bool) -> io::Result<(bool, bool)> {
        if woken {
            self.wakers.drain(self.id);
            self.core.on_commands();
        }
        let mut left = false;
        if socket {
            let core = &mut self.core;
            left = true;
            for _ in 0..MAX_BATCHES {
                let n = self.rx.recv(&mut |d| core.on_datagram(now, d))?;
                add(&self.stats.datagrams_in, n as u64);
                if n == 0 {
                    left = false;
                    break;
                }
            }
        }
        let behind = self.core.finish_turn(now);
        Ok((left, behind))
    }
}
