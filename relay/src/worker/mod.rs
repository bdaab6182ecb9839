//! The per-core loop: receive a batch, demultiplex, fan out, send a batch.
//!
//! A worker owns its sessions outright (no locks on its data). It sleeps in epoll on
//! its socket and its eventfd; the eventfd is rung by the ingest when a track it
//! reads has new packets, and by the registry when a command waits in its inbox.

pub mod fanout;
pub mod registry;
pub mod stun;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::io::wake::Wakers;
use crate::io::xdp::Admission;
use crate::io::{Datagram, Receiver, Sender};
use crate::session::rtcp::{self, Feedback, SenderInfo};
use crate::session::{CloseReason, Session, SessionEvent, SessionOutput};
use crate::track::Packet;
use fanout::{Egress, FanoutStats, Feed, MediaOut, MediaState};
use registry::{Claim, Command, Path, Pending, Registry};

/// How often every viewer gets sender reports (video and audio alike), all in one turn.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Session timers are rounded up to this grid so that one wake-up serves every session
/// due in the same slot: a wake costs tens of microseconds, a late ICE timer nothing.
const TIMER_GRID: Duration = Duration::from_millis(100);
/// Retransmissions one viewer may ask for per report interval: enough for 20% loss of a
/// 5 Mbit/s stream, and a cap on what a lying viewer can make the relay send.
const RETRANSMIT_BUDGET: u32 = 100;
/// Remembered addresses of other workers' sessions; forgotten wholesale past this.
const MAX_FOREIGN: usize = 4096;

/// Counters a worker keeps; metrics read them from other threads.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub datagrams_in: AtomicU64,
    pub unknown_source: AtomicU64,
    pub unknown_ufrag: AtomicU64,
    /// Checks not signed with the session's ICE password, and datagrams from an
    /// address of a session that never sent one.
    pub unauthenticated: AtomicU64,
    pub malformed: AtomicU64,
    pub forwarded: AtomicU64,
    pub srtcp_failed: AtomicU64,
    pub unexpected_media: AtomicU64,
    pub rtp_out: AtomicU64,
    pub rtp_bytes_out: AtomicU64,
    pub rtcp_out: AtomicU64,
    pub nacks: AtomicU64,
    pub retransmitted: AtomicU64,
    pub retransmit_missing: AtomicU64,
    pub retransmit_limited: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub lagged: AtomicU64,
    pub oversized: AtomicU64,
    pub sessions: AtomicU64,
    pub send_dropped: AtomicU64,
    pub send_calls: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A session this worker owns.
struct Viewer {
    id: String,
    path: Arc<Path>,
    session: Box<Session>,
    egress: Option<Egress>,
    /// The addresses the session authenticated (at most `session::MAX_REMOTES`): mapped
    /// in `by_remote`, and told to `admission`.
    remotes: Vec<SocketAddr>,
    /// The earliest timer queued for this viewer (older heap entries are stale).
    scheduled: Option<Instant>,
    retransmit_budget: u32,
}

pub struct Worker<R: Receiver, S: Sender> {
    rx: R,
    core: Core<S>,
    busy_poll: bool,
}

/// Everything of a worker but its socket and its sleep: driven by datagrams, commands
/// and time, so that it also runs in memory (tests, fuzz targets).
pub(crate) struct Core<S: Sender> {
    id: usize,
    tx: S,
    registry: Arc<Registry>,
    wakers: Arc<Wakers>,
    stats: Arc<WorkerStats>,
    viewers: Vec<Option<Viewer>>,
    free: Vec<usize>,
    by_remote: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
    /// Addresses of sessions another worker owns, learned from their checks.
    foreign: HashMap<SocketAddr, usize>,
    feeds: Vec<Option<Feed>>,
    feed_of_track: HashMap<usize, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Origin of the timer grid.
    epoch: Instant,
    next_reports: Instant,
    batch: Vec<Arc<Packet>>,
    commands: Vec<Command>,
    fanout: FanoutStats,
    /// With XDP: the program's table of remotes allowed past it with more than STUN.
    admission: Option<Admission>,
}

impl<R: Receiver, S: Sender> Worker<R, S> {
    pub fn new(
        id: usize,
        rx: R,
        tx: S,
        registry: Arc<Registry>,
        wakers: Arc<Wakers>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        Worker {
            rx,
            busy_poll: false,
            core: Core::new(id, tx, registry, wakers, stats, Instant::now()),
        }
    }

    /// Spins instead of sleeping in epoll: lowest latency, a core kept busy.
    pub fn with_busy_poll(mut self, busy_poll: bool) -> Self {
        self.busy_poll = busy_poll;
        self
    }

    /// Tells `admission` which remotes are viewers' (XDP lets only those through).
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.core.admission = Some(admission);
        self
    }

    /// Runs until `stop` is set (checked at least every 100 ms).
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let (socket, waker) = (self.rx.fd(), self.core.wakers.fd(self.core.id));
        let epoll = Epoll::new()?;
        epoll.add(socket)?;
        epoll.add(waker)?;
        while !stop.load(Ordering::Relaxed) {
            let wait = match self.busy_poll {
                true => Duration::ZERO,
                false => self
                    .core
                    .next_deadline()
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            };
            let [socket_ready, woken] = epoll.wait(wait, [socket, waker])?;
            self.turn(Instant::now(), socket_ready, woken)?;
        }
        self.core.shutdown();
        Ok(())
    }

    /// One pass over what woke the worker, then fan-out, timers and one flush.
    fn turn(&mut self, now: Instant, socket: bool, waker: bool) -> io::Result<()> {
        let core = &mut self.core;
        if waker {
            core.wakers.drain(core.id);
            core.on_commands();
        }
        // Bounded, so that a flood on the socket cannot starve the fan-out; epoll is
        // level-triggered and reports what is left next time.
        for _ in 0..16 {
            if !socket {
                break;
            }
            let n = self.rx.recv(&mut |d| core.on_datagram(now, d))?;
            add(&core.stats.datagrams_in, n as u64);
            if n == 0 {
                break;
            }
        }
        core.finish_turn(now);
        Ok(())
    }
}

impl<S: Sender> Core<S> {
    pub(crate) fn new(
        id: usize,
        tx: S,
        registry: Arc<Registry>,
        wakers: Arc<Wakers>,
        stats: Arc<WorkerStats>,
        now: Instant,
    ) -> Self {
        Core {
            id,
            tx,
            registry,
            wakers,
            stats,
            viewers: Vec::new(),
            free: Vec::new(),
            by_remote: HashMap::new(),
            by_ufrag: HashMap::new(),
            foreign: HashMap::new(),
            feeds: Vec::new(),
            feed_of_track: HashMap::new(),
            timers: BinaryHeap::new(),
            epoch: now,
            next_reports: now + REPORT_INTERVAL,
            batch: Vec::new(),
            commands: Vec::new(),
            fanout: FanoutStats::default(),
            admission: None,
        }
    }

    /// The end of every turn: new packets out, due timers, one flush.
    pub(crate) fn finish_turn(&mut self, now: Instant) {
        self.fan_out();
        self.on_timers(now);
        self.tx.flush();
        self.publish_stats();
    }

    /// The sender, to read what an in-memory one holds.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn sender(&mut self) -> &mut S {
        &mut self.tx
    }

    pub(crate) fn on_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        // Checks go by the ufrag they name, whoever sends them: an address follows its
        // newest valid check, even to another session or worker.
        if let Some(ufrag) = stun::local_ufrag(d.data) {
            return self.on_check(ufrag, now, d);
        }
        if let Some(&slot) = self.by_remote.get(&d.source) {
            return self.deliver(slot, now, d);
        }
        if let Some(&owner) = self.foreign.get(&d.source) {
            return self.forward(owner, now, d);
        }
        add(&self.stats.unknown_source, 1);
    }

    /// A binding request naming our `ufrag`. Addresses are mapped only once a check is
    /// found signed with the session's password: by the session if it is ours, by the
    /// registry otherwise.
    fn on_check(&mut self, ufrag: &str, now: Instant, d: Datagram<'_>) {
        if let Some(&slot) = self.by_ufrag.get(ufrag) {
            return self.deliver(slot, now, d);
        }
        match self.registry.claim(ufrag, d.data, self.id) {
            Claim::Mine(pending) => {
                let slot = self.adopt(pending);
                self.deliver(slot, now, d);
            }
            Claim::Owner(owner) => {
                if self.foreign.len() >= MAX_FOREIGN {
                    self.foreign.clear();
                }
                self.foreign.insert(d.source, owner);
                self.forward(owner, now, d);
            }
            Claim::Unknown => add(&self.stats.unknown_ufrag, 1),
            Claim::Forged => add(&self.stats.unauthenticated, 1),
        }
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
        self.by_ufrag.insert(p.session.ufrag().to_string(), slot);
        debug!(session = %p.id, worker = self.id, "session claimed");
        self.viewers[slot] = Some(Viewer {
            id: p.id,
            path: p.path,
            session: p.session,
            egress: None,
            remotes: Vec::new(),
            scheduled: None,
            retransmit_budget: RETRANSMIT_BUDGET,
        });
        add(&self.stats.sessions, 1);
        slot
    }

    /// The session authenticated `remote`: its datagrams go to `slot` from now on (and
    /// with XDP, past the program).
    fn bind_remote(&mut self, slot: usize, remote: SocketAddr) {
        let Some(v) = self.viewers[slot].as_mut() else {
            return;
        };
        self.by_remote.insert(remote, slot);
        if !v.remotes.contains(&remote) {
            v.remotes.push(remote);
            if let Some(admission) = &mut self.admission {
                if let Err(e) = admission.admit(remote) {
                    warn!(remote = %remote, "XDP admission: {e}");
                }
            }
        }
    }

    /// `remote` is no longer `slot`'s, unless another session has taken it since.
    fn unbind_remote(&mut self, slot: usize, remote: SocketAddr) {
        if self.by_remote.get(&remote) == Some(&slot) {
            self.by_remote.remove(&remote);
        }
        if let Some(admission) = &mut self.admission {
            if let Err(e) = admission.revoke(remote) {
                warn!(remote = %remote, "XDP admission: {e}");
            }
        }
    }

    fn deliver(&mut self, slot: usize, now: Instant, d: Datagram<'_>) {
        if let Some(v) = self.viewers[slot].as_mut() {
            v.session
                .handle_datagram(now, d.source, d.destination, d.data);
            let s = v.session.take_stats();
            add(&self.stats.malformed, s.malformed);
            add(&self.stats.unauthenticated, s.unauthenticated);
            add(&self.stats.srtcp_failed, s.srtcp_failed);
            add(&self.stats.unexpected_media, s.unexpected);
            self.drain_session(slot);
        }
    }

    pub(crate) fn on_commands(&mut self) {
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
                    let slot = match stun::local_ufrag(&data) {
                        Some(ufrag) => self.by_ufrag.get(ufrag),
                        None => self.by_remote.get(&source),
                    };
                    match slot {
                        Some(&slot) => self.deliver(slot, at, d),
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
                        if let Some(v) = self.viewers[slot].as_mut() {
                            v.session
                                .close(CloseReason::Refused("deleted over WHEP".into()));
                        }
                        self.drain_session(slot);
                    }
                }
            }
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
                    let due = on_grid(self.epoch, t);
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
            SessionEvent::Live { srtp, route } => self.go_live(slot, srtp, route),
            SessionEvent::Moved(route) => {
                if let Some(e) = self.viewers[slot].as_mut().and_then(|v| v.egress.as_mut()) {
                    e.route = route;
                }
            }
            SessionEvent::Authenticated(remote) => self.bind_remote(slot, remote),
            SessionEvent::Forgotten(remote) => {
                if let Some(v) = self.viewers[slot].as_mut() {
                    v.remotes.retain(|r| *r != remote);
                }
                self.unbind_remote(slot, remote);
            }
            SessionEvent::Feedback(f) => self.on_feedback(slot, f),
            SessionEvent::Closed(reason) => self.remove(slot, reason),
        }
    }

    fn go_live(
        &mut self,
        slot: usize,
        srtp: Box<crate::srtp::Outbound>,
        route: crate::session::Route,
    ) {
        let Some(v) = self.viewers[slot].as_mut() else {
            return;
        };
        let bindings = v.session.media.clone();
        let mut media = Vec::with_capacity(bindings.len());
        for (i, b) in bindings.iter().enumerate() {
            let key = Arc::as_ptr(&b.track) as usize;
            let feed = match self.feed_of_track.get(&key) {
                Some(&f) => f,
                None => {
                    let f = self
                        .feeds
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or_else(|| {
                            self.feeds.push(None);
                            self.feeds.len() - 1
                        });
                    self.feeds[f] = Some(Feed {
                        track: b.track.clone(),
                        cursor: b.track.head(),
                        subscribers: Vec::new(),
                    });
                    b.track.add_reader(self.id);
                    self.feed_of_track.insert(key, f);
                    f
                }
            };
            let f = self.feeds[feed].as_mut().expect("feed just found");
            f.subscribers.push((slot, i));
            media.push(MediaOut {
                feed,
                ssrc: b.ssrc,
                pt: b.pt,
                clock_rate: b.track.info.codec.clock_rate(),
                cname: b.cname.clone(),
                state: MediaState::Waiting { since: f.cursor },
                packets: 0,
                octets: 0,
                newest_seq: 0,
                newest_at: None,
            });
        }
        let overhead = srtp.profile().rtp_overhead();
        v.egress = Some(Egress {
            srtp: *srtp,
            route,
            overhead,
            media,
        });
        info!(session = %v.id, path = %v.path.name, remote = %route.remote, worker = self.id, "viewer live");
    }

    fn on_feedback(&mut self, slot: usize, feedback: Feedback) {
        let Some(v) = self.viewers[slot].as_mut() else {
            return;
        };
        let Some(egress) = v.egress.as_mut() else {
            return;
        };
        match feedback {
            Feedback::Nack {
                media_ssrc,
                pid,
                blp,
            } => {
                add(&self.stats.nacks, 1);
                let Some(m) = egress.media.iter().position(|m| m.ssrc == media_ssrc) else {
                    return;
                };
                let MediaState::Sending(rewrite) = egress.media[m].state else {
                    return;
                };
                let Some(track) = self.feeds[egress.media[m].feed]
                    .as_ref()
                    .map(|f| f.track.clone())
                else {
                    return;
                };
                let lost = std::iter::once(pid).chain(
                    (0..16)
                        .filter(|b| blp & (1 << b) != 0)
                        .map(|b| pid.wrapping_add(b + 1)),
                );
                for seq in lost {
                    if v.retransmit_budget == 0 {
                        add(&self.stats.retransmit_limited, 1);
                        continue;
                    }
                    let newest = egress.media[m].newest_seq;
                    match rewrite.track_seq(seq, newest).and_then(|s| track.by_seq(s)) {
                        Some(p) => {
                            v.retransmit_budget -= 1;
                            add(&self.stats.retransmitted, 1);
                            egress.send(m, &p, &mut self.tx, &mut self.fanout);
                        }
                        None => add(&self.stats.retransmit_missing, 1),
                    }
                }
            }
            Feedback::KeyframeRequest { .. } => add(&self.stats.keyframe_requests, 1),
            Feedback::Report(_) => {}
        }
    }

    fn remove(&mut self, slot: usize, reason: CloseReason) {
        let Some(v) = self.viewers[slot].take() else {
            return;
        };
        info!(session = %v.id, path = %v.path.name, ?reason, "viewer closed");
        for remote in &v.remotes {
            self.unbind_remote(slot, *remote);
        }
        self.by_ufrag.remove(v.session.ufrag());
        if let Some(egress) = &v.egress {
            for m in &egress.media {
                self.unsubscribe(m.feed, slot);
            }
        }
        self.registry.closed(&v.id, &v.path);
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        self.free.push(slot);
    }

    fn unsubscribe(&mut self, feed: usize, slot: usize) {
        let Some(f) = self.feeds[feed].as_mut() else {
            return;
        };
        f.subscribers.retain(|&(s, _)| s != slot);
        if f.subscribers.is_empty() {
            f.track.remove_reader(self.id);
            self.feed_of_track.remove(&(Arc::as_ptr(&f.track) as usize));
            self.feeds[feed] = None;
        }
    }

    /// New packets of every followed track, to every viewer of it here.
    fn fan_out(&mut self) {
        for feed in self.feeds.iter_mut().flatten() {
            let head = feed.track.head();
            if head == feed.cursor {
                continue;
            }
            let oldest = head.saturating_sub(feed.track.capacity());
            if feed.cursor < oldest {
                self.fanout.lagged += oldest - feed.cursor;
                feed.cursor = oldest;
            }
            self.batch.clear();
            self.batch
                .extend((feed.cursor..head).filter_map(|i| feed.track.get(i)));
            feed.cursor = head;
            for &(slot, m) in &feed.subscribers {
                if let Some(egress) = self.viewers[slot].as_mut().and_then(|v| v.egress.as_mut()) {
                    egress.fan_out(m, &feed.track, &self.batch, &mut self.tx, &mut self.fanout);
                }
            }
        }
        self.batch.clear();
    }

    fn on_timers(&mut self, now: Instant) {
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
        }
        if now >= self.next_reports {
            self.next_reports = now + REPORT_INTERVAL;
            for v in self.viewers.iter_mut().flatten() {
                v.retransmit_budget = RETRANSMIT_BUDGET;
                if let Some(egress) = v.egress.as_mut() {
                    send_reports(egress, now, &mut self.tx, &self.stats);
                }
            }
        }
    }

    /// When the worker must wake at the latest.
    fn next_deadline(&self) -> Instant {
        let session = self.timers.peek().map(|Reverse((t, _))| *t);
        session.map_or(self.next_reports, |t| t.min(self.next_reports))
    }

    fn publish_stats(&mut self) {
        let f = std::mem::take(&mut self.fanout);
        add(&self.stats.rtp_out, f.packets);
        add(&self.stats.rtp_bytes_out, f.bytes);
        add(&self.stats.lagged, f.lagged);
        add(&self.stats.oversized, f.oversized);
        let s = self.tx.stats();
        self.stats.send_dropped.store(s.dropped, Ordering::Relaxed);
        self.stats.send_calls.store(s.calls, Ordering::Relaxed);
    }

    fn shutdown(&mut self) {
        for slot in 0..self.viewers.len() {
            if let Some(v) = self.viewers[slot].as_mut() {
                v.session
                    .close(CloseReason::Refused("relay shutting down".into()));
                self.drain_session(slot);
            }
        }
        self.tx.flush();
    }
}

/// `t` rounded up to the next point of the timer grid that starts at `epoch`.
fn on_grid(epoch: Instant, t: Instant) -> Instant {
    let grid = TIMER_GRID.as_nanos();
    let since = t.saturating_duration_since(epoch).as_nanos();
    epoch + Duration::from_nanos((since.div_ceil(grid) * grid) as u64)
}

/// One SR + SDES compound per stream the viewer receives.
fn send_reports(egress: &mut Egress, now: Instant, tx: &mut dyn Sender, stats: &WorkerStats) {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for m in &egress.media {
        let Some((at, ts)) = m.newest_at else {
            continue;
        };
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let info = SenderInfo {
            ssrc: m.ssrc,
            ntp: rtcp::ntp_time(wall),
            rtp_time: ts.wrapping_add((elapsed * m.clock_rate as f64) as u32),
            packets: m.packets,
            octets: m.octets,
        };
        let buf = tx.buffer();
        let len = rtcp::write_sender_report(buf, &info, &m.cname);
        // Fails only past 2^31 reports (the index would repeat a nonce): stop reporting.
        if let Ok(sealed) = egress.srtp.protect_rtcp(buf, len) {
            tx.commit(sealed, egress.route.local, egress.route.remote);
            add(&stats.rtcp_out, 1);
        }
    }
}

/// A minimal epoll wrapper: level-triggered readability on a few descriptors.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor owned by nobody else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll and target descriptors, event struct lives across the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout`; returns the descriptors that are readable.
    /// Waits up to `timeout`; tells which of `fds` are readable.
    fn wait<const N: usize>(&self, timeout: Duration, fds: [RawFd; N]) -> io::Result<[bool; N]> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // Rounded up: rounding down would spin with a zero timeout through the last millisecond.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: the buffer outlives the call and its length is passed.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), 8, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok([false; N])
            } else {
                Err(e)
            };
        }
        let ready = &events[..n as usize];
        Ok(fds.map(|fd| ready.iter().any(|e| e.u64 == fd as u64)))
    }
}
