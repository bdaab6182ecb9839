//! One worker's state, sans-IO: it takes datagrams, commands and the time, and writes
//! what it sends into a [`Sender`]. It owns its sessions outright; the demultiplexer
//! says which session a datagram is for, the egress sends their media, and the core
//! carries what a session says to the one that acts on it.
//!
//! The time is always given (`now`), never read, and so is the randomness (`rng`): a
//! test drives two cores and their viewers through minutes in milliseconds, the same
//! way every run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info};

use super::demux::{Demux, Target};
use super::egress::Egress;
use super::registry::{Claim, Command, Pending, Registry};
use super::session_info::SessionInfo;
use super::stats::{add, WorkerStats};
use super::stun::ClaimBudget;
use crate::io::{Datagram, Sender};
use crate::paths::ServedPath;
use crate::session::rtcp::{self, Feedback};
use crate::session::{CloseReason, Session, SessionEvent, SessionOutput};
use crate::track::MediaKind;

/// Session timers are rounded up to this grid so that one wake-up serves every session
/// due in the same slot: a wake costs tens of microseconds, a late ICE timer nothing.
const TIMER_GRID: Duration = Duration::from_millis(100);

/// A session this worker owns: a viewer's, or a publisher's.
struct Viewer {
    id: String,
    path: Arc<ServedPath>,
    session: Box<Session>,
    info: Arc<SessionInfo>,
    /// The earliest timer queued for this viewer (older heap entries are stale).
    scheduled: Option<Instant>,
}

/// Where the core's time and chance come from.
#[derive(Debug, Clone)]
pub struct Start {
    /// The core's first instant: the origin of its timer grid.
    pub now: Instant,
    /// `now` on the wall clock: sender reports map media time to it.
    pub wall: SystemTime,
    /// Seeds the random starts of viewers' sequence numbers and timestamps.
    pub seed: u64,
}

impl Start {
    /// The real clocks and a random seed.
    pub fn now() -> Start {
        Start {
            now: Instant::now(),
            wall: SystemTime::now(),
            seed: fastrand::u64(..),
        }
    }
}

pub(crate) struct Core<S: Sender> {
    id: usize,
    tx: S,
    registry: Arc<Registry>,
    stats: Arc<WorkerStats>,
    /// Sessions by slot; a slot's index is its key in `demux` and `egress` too.
    viewers: Vec<Option<Viewer>>,
    /// Slots of the publishers' sessions among them.
    publishers: Vec<usize>,
    free: Vec<usize>,
    demux: Demux,
    egress: Egress,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    start: Start,
    commands: Vec<Command>,
    /// Checks from addresses no session here has yet, allowed on to a claim.
    claims: ClaimBudget,
}

impl<S: Sender> Core<S> {
    /// Viewers get sender reports every `report_interval` (`rtcpSenderReportInterval`).
    pub fn new(
        id: usize,
        tx: S,
        registry: Arc<Registry>,
        stats: Arc<WorkerStats>,
        start: Start,
        report_interval: Duration,
    ) -> Self {
        Core {
            id,
            tx,
            registry,
            stats,
            viewers: Vec::new(),
            publishers: Vec::new(),
            free: Vec::new(),
            demux: Demux::default(),
            egress: Egress::new(
                id,
                start.now,
                fastrand::Rng::with_seed(start.seed),
                report_interval,
            ),
            timers: BinaryHeap::new(),
            start,
            commands: Vec::new(),
            // The config's defaults for one worker; `set_claim_budget` gives its share.
            claims: ClaimBudget::new(
                f64::from(crate::config::STUN_GLOBAL_DEFAULT),
                f64::from(crate::config::STUN_GLOBAL_DEFAULT),
            ),
        }
    }

    /// This worker's share of the checks that may go on to a claim: `rate` a second,
    /// `burst` at once.
    pub fn set_claim_budget(&mut self, rate: f64, burst: f64) {
        self.claims = ClaimBudget::new(rate, burst);
    }

    /// Sets the fan-out's budget, for tests that need it small.
    #[cfg(test)]
    pub fn set_fan_out_budget(&mut self, packets: usize) {
        self.egress.set_fan_out_budget(packets);
    }

    /// The sender, to read what an in-memory one holds.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn sender(&mut self) -> &mut S {
        &mut self.tx
    }

    /// A datagram received on the media port.
    pub fn on_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        match self.demux.target(&d) {
            Target::Session(slot) => self.deliver(slot, now, d),
            Target::Worker(owner) => self.forward(owner, now, d),
            Target::Claim(_) if !self.claims.take(now) => add(&self.stats.stun_global_limit, 1),
            Target::Claim(ufrag) => match self.registry.claim(ufrag, d.data, self.id) {
                Claim::Mine(pending) => {
                    let slot = self.adopt(pending);
                    self.deliver(slot, now, d);
                }
                Claim::Owner(owner) => {
                    self.demux.learn_foreign(d.source, owner);
                    self.forward(owner, now, d);
                }
                Claim::Unknown => add(&self.stats.unknown_ufrag, 1),
                Claim::Forged => add(&self.stats.unauthenticated, 1),
            },
            Target::Unknown => add(&self.stats.unknown_source, 1),
        }
    }

    /// What other threads sent this worker: datagrams other workers received for its
    /// sessions, and sessions to close.
    pub fn on_commands(&mut self) {
        self.registry.take_commands(self.id, &mut self.commands);
        for command in std::mem::take(&mut self.commands) {
            match command {
                Command::Datagram {
                    source,
                    destination,
                    data,
                    at,
                } => {
                    let d = Datagram {
                        source,
                        destination,
                        data: &data,
                    };
                    match self.demux.forwarded_target(&d) {
                        Some(slot) => self.deliver(slot, at, d),
                        // The session ended since the other worker sent it.
                        None => add(&self.stats.unknown_source, 1),
                    }
                }
                Command::Close(id) => {
                    let slot = self
                        .viewers
                        .iter()
                        .position(|v| v.as_ref().is_some_and(|v| v.id == id));
                    if let Some(slot) = slot {
                        self.close(slot, CloseReason::Refused("deleted over WHEP".into()));
                    }
                }
            }
        }
    }

    /// The end of every turn: what publishers sent goes to its readers, their viewers'
    /// keyframe requests to them; new packets out (within the fan-out's budget), due
    /// timers, one flush. True if the fan-out stopped short: the worker reads its
    /// socket and comes back at once.
    pub fn finish_turn(&mut self, now: Instant) -> bool {
        self.on_publishers(now);
        let behind = self.egress.fan_out(now, &mut self.tx);
        self.registry.set_full(self.id, self.egress.full());
        self.on_timers(now);
        self.tx.flush();
        self.publish_stats();
        behind
    }

    /// When the core must be called again at the latest (`finish_turn`).
    pub fn next_deadline(&self) -> Instant {
        let reports = self.egress.next_reports();
        self.timers
            .peek()
            .map_or(reports, |Reverse((t, _))| (*t).min(reports))
    }

    /// Closes every session (the relay is stopping) and sends what that says.
    pub fn shutdown(&mut self) {
        for slot in 0..self.viewers.len() {
            self.close(slot, CloseReason::Refused("relay shutting down".into()));
        }
        self.tx.flush();
    }

    /// Wakes the other workers reading what this worker's publishers pushed this turn
    /// (once per turn, not per packet; this one fans out next), and forwards the
    /// keyframe requests their viewers left.
    fn on_publishers(&mut self, now: Instant) {
        let mut readers = 0;
        for i in 0..self.publishers.len() {
            let slot = self.publishers[i];
            if let Some(v) = self.viewers[slot].as_mut() {
                readers |= v.session.take_readers();
                v.session.request_keyframes(now);
                self.drain_session(slot);
            }
        }
        self.registry.wake(readers & !(1 << self.id));
    }

    fn forward(&mut self, owner: usize, now: Instant, d: Datagram<'_>) {
        add(&self.stats.forwarded, 1);
        self.registry.send(
            owner,
            Command::Datagram {
                source: d.source,
                destination: d.destination,
                data: d.data.to_vec(),
                at: now,
            },
        );
    }

    fn adopt(&mut self, p: Pending) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.viewers.push(None);
            self.viewers.len() - 1
        });
        self.demux.add_session(slot, p.session.ufrag());
        debug!(session = %p.id, worker = self.id, "session claimed");
        if p.session.is_publisher() {
            p.session.attach_keyframe_requests(self.id);
            self.publishers.push(slot);
        }
        self.viewers[slot] = Some(Viewer {
            id: p.id,
            path: p.path,
            session: p.session,
            info: p.info,
            scheduled: None,
        });
        add(&self.stats.sessions, 1);
        slot
    }

    fn deliver(&mut self, slot: usize, now: Instant, d: Datagram<'_>) {
        let Some(v) = self.viewers[slot].as_mut() else {
            return;
        };
        v.session
            .handle_datagram(now, d.source, d.destination, d.data);
        let s = v.session.take_stats();
        add(&self.stats.malformed, s.malformed);
        add(&self.stats.unauthenticated, s.unauthenticated);
        add(&self.stats.srtcp_failed, s.srtcp_failed);
        add(&self.stats.unexpected_media, s.unexpected);
        v.info
            .received(s.bytes_received, s.rtp_received, s.rtcp_received);
        self.drain_session(slot);
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        if let Some(v) = self.viewers[slot].as_mut() {
            v.session.close(reason);
            self.drain_session(slot);
        }
    }

    /// Acts on everything the session has to say.
    fn drain_session(&mut self, slot: usize) {
        loop {
            let Some(v) = self.viewers[slot].as_mut() else {
                return;
            };
            match v.session.poll_output() {
                SessionOutput::Timeout(t) => {
                    let due = on_grid(self.start.now, t);
                    if v.scheduled.is_none_or(|s| due < s) {
                        v.scheduled = Some(due);
                        self.timers.push(Reverse((due, slot)));
                    }
                    return;
                }
                SessionOutput::Transmit { route, data } => {
                    let buf = self.tx.buffer();
                    if data.len() <= buf.len() {
                        buf[..data.len()].copy_from_slice(&data);
                        self.tx.commit(data.len(), route.local, route.remote);
                    }
                }
                SessionOutput::Event(e) => self.on_event(slot, e),
            }
        }
    }

    fn on_event(&mut self, slot: usize, event: SessionEvent) {
        match event {
            SessionEvent::Live { srtp, route, setup } => {
                let Some(v) = self.viewers[slot].as_ref() else {
                    return;
                };
                if !v.session.is_publisher() {
                    v.path.reception.setup.observe(setup.as_secs_f64());
                }
                v.info.set_remote(route.remote);
                self.egress
                    .start(slot, &v.session.media, *srtp, route, v.info.clone());
                // Its video starts on the next keyframe: a publisher that can send one
                // now is asked (coalesced with every other viewer's asking).
                for b in &v.session.media {
                    if b.track.info.kind() == MediaKind::Video {
                        self.registry.wake(b.track.keyframe_requests.ask());
                    }
                }
                let setup_ms = setup.as_secs_f64() * 1e3;
                info!(session = %v.id, path = %v.path.name, remote = %route.remote, worker = self.id, setup_ms, "viewer live");
            }
            SessionEvent::Moved(route) => {
                if let Some(v) = self.viewers[slot].as_ref() {
                    v.info.set_remote(route.remote);
                }
                self.egress.moved(slot, route);
            }
            SessionEvent::Authenticated(remote) => {
                // A publisher's address (a viewer's is its route, once live).
                if let Some(v) = self.viewers[slot]
                    .as_ref()
                    .filter(|v| v.info.remote().is_none())
                {
                    v.info.set_remote(remote);
                }
                if self.demux.bind(slot, remote) {
                    self.tx.admit(remote);
                }
            }
            SessionEvent::Forgotten(remote) => {
                self.demux.unbind(slot, remote);
                self.tx.revoke(remote);
            }
            SessionEvent::Feedback(
                Feedback::Nack {
                    media_ssrc,
                    pid,
                    blp,
                },
                _,
            ) => {
                add(&self.stats.nacks, 1);
                self.egress
                    .retransmit(slot, media_ssrc, pid, blp, &mut self.tx);
            }
            SessionEvent::Feedback(Feedback::KeyframeRequest { media_ssrc }, _) => {
                add(&self.stats.keyframe_requests, 1);
                let Some(v) = self.viewers[slot].as_ref() else {
                    return;
                };
                if let Some(b) = v.session.media.iter().find(|b| b.ssrc == media_ssrc) {
                    self.registry.wake(b.track.keyframe_requests.ask());
                }
            }
            SessionEvent::Feedback(Feedback::Report(block), at) => {
                add(&self.stats.report_blocks, 1);
                let arrival = rtcp::ntp_time(self.since_unix_epoch(at));
                let Some(v) = self.viewers[slot].as_ref() else {
                    return;
                };
                if let Some(reception) = self.egress.on_report(slot, &block, arrival) {
                    v.path.reception.observe(&reception);
                }
            }
            SessionEvent::Closed(reason) => self.remove(slot, reason),
        }
    }

    fn remove(&mut self, slot: usize, reason: CloseReason) {
        let Some(mut v) = self.viewers[slot].take() else {
            return;
        };
        let role = if v.session.is_publisher() {
            "publisher"
        } else {
            "viewer"
        };
        info!(session = %v.id, path = %v.path.name, ?reason, "{role} closed");
        self.publishers.retain(|&s| s != slot);
        for remote in self.demux.remove_session(slot, v.session.ufrag()) {
            self.tx.revoke(remote);
        }
        for m in self.egress.stop(slot).iter().flat_map(|e| &e.media) {
            let r = &m.reception;
            info!(
                session = %v.id,
                ssrc = m.ssrc,
                rtx = m.rtx.is_some(),
                fraction_lost = f64::from(r.fraction_lost) / 256.0,
                cumulative_lost = r.cumulative_lost,
                jitter = ?r.jitter,
                rtt = ?r.rtt,
                nacks = r.nacks,
                retransmitted = r.retransmitted,
                congestion_skips = r.congestion_skips,
                "viewer stream reception"
            );
        }
        self.registry.closed(&v.id, &v.path, &mut v.session);
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        self.free.push(slot);
    }

    fn on_timers(&mut self, now: Instant) {
        let next_slot = on_grid(self.start.now, now + Duration::from_nanos(1));
        while let Some(&Reverse((t, slot))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(v) = self.viewers[slot].as_mut() else {
                continue;
            };
            if v.scheduled != Some(t) {
                continue;
            }
            v.scheduled = None;
            v.session.handle_timeout(now);
            self.drain_session(slot);
            // A session that asks again for a time already past is called at the next
            // slot, not again in this loop.
            if let Some(v) = self.viewers[slot].as_mut() {
                if v.scheduled.is_some_and(|due| due <= now) {
                    v.scheduled = Some(next_slot);
                    self.timers.push(Reverse((next_slot, slot)));
                }
            }
        }
        let wall = self.wall(now);
        self.egress.on_timers(now, wall, &mut self.tx);
    }

    /// `now` on the wall clock: sender reports and the round trips measured against
    /// them share this one mapping.
    fn wall(&self, now: Instant) -> SystemTime {
        self.start.wall + now.saturating_duration_since(self.start.now)
    }

    fn since_unix_epoch(&self, now: Instant) -> Duration {
        self.wall(now)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn publish_stats(&mut self) {
        self.egress.take_stats().publish(&self.stats);
        let s = self.tx.stats();
        self.stats.send_dropped.store(s.dropped, Ordering::Relaxed);
        self.stats.send_calls.store(s.calls, Ordering::Relaxed);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Core<crate::io::memory::MemorySender> {
    /// `n` cores over one registry, sending into memory, each with its counters: core
    /// `i` is seeded with `i`, all start at `now`, which is `wall` on the wall clock, and
    /// report at the default interval.
    pub fn in_memory(
        n: usize,
        registry: &Arc<Registry>,
        now: Instant,
        wall: SystemTime,
    ) -> (Vec<Self>, Vec<Arc<WorkerStats>>) {
        let stats: Vec<_> = (0..n).map(|_| Arc::new(WorkerStats::default())).collect();
        let cores = (0..n)
            .map(|id| {
                let start = Start {
                    now,
                    wall,
                    seed: id as u64,
                };
                let tx = crate::io::memory::MemorySender::default();
                let interval = super::egress::REPORT_INTERVAL;
                Core::new(id, tx, registry.clone(), stats[id].clone(), start, interval)
            })
            .collect();
        (cores, stats)
    }
}

/// `t` rounded up to the next point of the timer grid that starts at `origin`.
fn on_grid(origin: Instant, t: Instant) -> Instant {
    let grid = TIMER_GRID.as_nanos();
    let since = t.saturating_duration_since(origin).as_nanos();
    origin + Duration::from_nanos((since.div_ceil(grid) * grid) as u64)
}
