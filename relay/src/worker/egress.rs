//! Everything a worker sends to its viewers: which tracks it reads for them
//! (subscriptions), each new packet to each subscriber (fan-out), lost packets again
//! (retransmission on NACK, within a budget) and sender reports.
//!
//! Packets are taken from a track's ring once per worker and turn, then sent viewer by
//! viewer, so a burst to one viewer sits together in the batch (the UDP backend sends
//! it with GSO). A viewer's egress lives in the slot of its session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::session_info::{SessionCounts, SessionInfo};
use super::stats::EgressStats;
use super::viewer::{MediaOut, MediaState, Reception, ViewerEgress};
use crate::io::Sender;
use crate::session::rtcp::{self, ReportBlock};
use crate::session::{Binding, Route};
use crate::srtp::Outbound;
use crate::track::rewrite::RtxStream;
use crate::track::{MediaKind, Packet, Track};

/// The sender report interval of cores built for tests (`rtcpSenderReportInterval`'s
/// default).
#[cfg(any(test, feature = "fuzzing"))]
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Retransmissions one viewer may ask for per second: enough for 20% loss of a 5 Mbit/s
/// stream, and a cap on what a lying viewer can make the relay send. Granted per report
/// interval, in proportion.
pub const RETRANSMIT_PER_SECOND: u32 = 100;
/// Packets one fan-out sends at most (a few milliseconds of a core) before the worker
/// reads its socket again: a worker saturated by sending still answers handshakes and
/// feedback within that, rather than after a whole frame to thousands of viewers, and
/// its socket's buffer does not overflow with them meanwhile.
pub const FAN_OUT_BUDGET: usize = 4096;
/// A worker whose fan-out is this late (the oldest packet it has yet to send to every
/// viewer arrived this long ago) is full: new offers are refused (503) until it has
/// caught up, rather than admitted into handshakes it would stall. Far above what a
/// keyframe's burst costs at a size one core can serve (a latency p99 of ~30 ms at
/// 3,000 viewers of a 2 Mbit/s stream), and reached within moments by a worker that
/// cannot keep up, whose lag grows without end. Measured as lag, not as time spent
/// behind: a worker past its capacity still finishes each batch now and then, late.
pub const FULL_LAG: Duration = Duration::from_millis(250);
/// A full worker opens again once its lag is under this: it has caught up, not merely
/// dipped under the mark.
pub const OPEN_LAG: Duration = Duration::from_millis(50);

/// A track read by this worker, and who reads it here.
struct Feed {
    track: Arc<Track>,
    /// Next ring index this worker has not yet fanned out.
    cursor: u64,
    /// (viewer slot, index into its `ViewerEgress::media`).
    subscribers: Vec<(usize, usize)>,
    /// A fan-out the budget cut short: the packets up to this index have been sent to
    /// the subscribers before `next` only.
    unfinished: Option<Unfinished>,
}

#[derive(Debug, Clone, Copy)]
struct Unfinished {
    end: u64,
    next: usize,
}

pub(crate) struct Egress {
    /// The worker this is: tracks wake the workers that read them.
    worker: usize,
    feeds: Vec<Option<Feed>>,
    /// Feed index by track (its address).
    feed_of_track: HashMap<usize, usize>,
    viewers: Vec<Option<ViewerEgress>>,
    /// The packets of one feed's turn, reused.
    batch: Vec<Arc<Packet>>,
    /// Streams of viewers started since the last fan-out, (viewer slot, media): they
    /// start from the history at once rather than at their track's next packet.
    starting: Vec<(usize, usize)>,
    next_reports: Instant,
    report_interval: Duration,
    /// Retransmissions each viewer may have per report interval.
    budget: u32,
    /// Packets a fan-out sends at most ([`FAN_OUT_BUDGET`]).
    fan_out_budget: usize,
    /// The feed the next fan-out starts at: the one the budget cut short, if any.
    resume: usize,
    /// Refusing new sessions: its lag passed [`FULL_LAG`] and has not yet fallen under
    /// [`OPEN_LAG`].
    full: bool,
    stats: EgressStats,
    rng: fastrand::Rng,
}

/// A viewer's retransmission budget for a report interval.
pub fn retransmit_budget(report_interval: Duration) -> u32 {
    (f64::from(RETRANSMIT_PER_SECOND) * report_interval.as_secs_f64()).ceil() as u32
}

impl Egress {
    /// Sender reports (and fresh retransmission budgets) every `report_interval`.
    pub fn new(
        worker: usize,
        now: Instant,
        rng: fastrand::Rng,
        report_interval: Duration,
    ) -> Egress {
        Egress {
            worker,
            feeds: Vec::new(),
            feed_of_track: HashMap::new(),
            viewers: Vec::new(),
            batch: Vec::new(),
            next_reports: now + report_interval,
            report_interval,
            budget: retransmit_budget(report_interval),
            fan_out_budget: FAN_OUT_BUDGET,
            resume: 0,
            full: false,
            stats: EgressStats::default(),
            starting: Vec::new(),
            rng,
        }
    }

    /// The viewer in `slot` is live: subscribes it to the tracks of its `bindings`.
    /// Video starts at the next keyframe of each.
    pub fn start(
        &mut self,
        slot: usize,
        bindings: &[Binding],
        srtp: Outbound,
        route: Route,
        info: Arc<SessionInfo>,
    ) {
        let mut media = Vec::with_capacity(bindings.len());
        for (i, b) in bindings.iter().enumerate() {
            let feed = self.feed(&b.track);
            let f = self.feeds[feed].as_mut().expect("feed just found");
            f.subscribers.push((slot, i));
            self.starting.push((slot, i));
            // Its own random start (RFC 4588 8.3 numbers it as any RTP stream).
            let rtx = b
                .rtx
                .map(|(ssrc, pt)| RtxStream::new(ssrc, pt, self.rng.u16(..)));
            media.push(MediaOut::new(
                feed,
                (b.ssrc, b.pt),
                b.track.info.codec.clock_rate(),
                b.cname.clone(),
                MediaState::Waiting {
                    since: f.cursor,
                    cached: b.track.retention.keyframe_cache,
                },
                rtx,
            ));
        }
        if self.viewers.len() <= slot {
            self.viewers.resize_with(slot + 1, || None);
        }
        self.viewers[slot] = Some(ViewerEgress {
            overhead: srtp.profile().rtp_overhead(),
            srtp,
            route,
            media,
            retransmit_budget: self.budget,
            info,
            sent: SessionCounts::default(),
        });
    }

    /// The feed of `track`, made (and the track told this worker reads it) if new.
    fn feed(&mut self, track: &Arc<Track>) -> usize {
        let key = Arc::as_ptr(track) as usize;
        if let Some(&f) = self.feed_of_track.get(&key) {
            return f;
        }
        let f = self
            .feeds
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.feeds.push(None);
                self.feeds.len() - 1
            });
        self.feeds[f] = Some(Feed {
            track: track.clone(),
            cursor: track.head(),
            subscribers: Vec::new(),
            unfinished: None,
        });
        track.add_reader(self.worker);
        self.feed_of_track.insert(key, f);
        f
    }

    /// The viewer's nominated address changed.
    pub fn moved(&mut self, slot: usize, route: Route) {
        if let Some(Some(v)) = self.viewers.get_mut(slot) {
            v.route = route;
        }
    }

    /// The viewer in `slot` is gone: unsubscribes it, and drops feeds nobody reads.
    /// Returns what it left (its streams' reception, for the log).
    pub fn stop(&mut self, slot: usize) -> Option<ViewerEgress> {
        let v = self.viewers.get_mut(slot).and_then(Option::take)?;
        for m in &v.media {
            let Some(f) = self.feeds[m.feed].as_mut() else {
                continue;
            };
            let Some(i) = f.subscribers.iter().position(|&(s, _)| s == slot) else {
                continue;
            };
            f.subscribers.remove(i);
            // The subscribers after it moved up one: none is skipped in an unfinished
            // fan-out.
            if let Some(u) = f.unfinished.as_mut().filter(|u| i < u.next) {
                u.next -= 1;
            }
            if f.subscribers.is_empty() {
                f.track.remove_reader(self.worker);
                self.feed_of_track.remove(&(Arc::as_ptr(&f.track) as usize));
                self.feeds[m.feed] = None;
            }
        }
        Some(v)
    }

    /// New packets of every followed track, to every viewer of it here; viewers started
    /// since the last call first get what the history has for them (a cached GOP).
    /// Sends about [`FAN_OUT_BUDGET`] packets at most, feed after feed from where the
    /// last call stopped; true if it stopped short, to be called again soon.
    pub fn fan_out(&mut self, now: Instant, tx: &mut dyn Sender) -> bool {
        for (slot, m) in std::mem::take(&mut self.starting) {
            let Some(Some(v)) = self.viewers.get_mut(slot) else {
                continue; // stopped meanwhile
            };
            let Some(feed) = self.feeds[v.media[m].feed].as_ref() else {
                continue;
            };
            // A keyframe this worker has not fanned out yet comes with this turn's
            // packets, below, as for a viewer started earlier.
            if feed
                .track
                .last_keyframe()
                .is_none_or(|k| k.index >= feed.cursor)
            {
                continue;
            }
            v.fan_out(
                m,
                &feed.track,
                &[],
                feed.cursor,
                now,
                tx,
                &mut self.stats,
                &mut self.rng,
            );
        }
        let mut budget = self.fan_out_budget;
        let (feeds, resume) = (self.feeds.len(), self.resume);
        let behind = 'feeds: {
            for i in (0..feeds).map(|k| (resume + k) % feeds) {
                let Some(feed) = self.feeds[i].as_mut() else {
                    continue;
                };
                let Unfinished { end, next } = feed.unfinished.take().unwrap_or(Unfinished {
                    end: feed.track.head(),
                    next: 0,
                });
                if end == feed.cursor {
                    continue;
                }
                let oldest = feed.track.tail();
                if feed.cursor < oldest {
                    self.stats.lagged += oldest - feed.cursor;
                    feed.cursor = oldest.min(end);
                }
                self.batch.clear();
                self.batch.extend(feed.track.range(feed.cursor, end));
                for (n, &(slot, m)) in feed.subscribers.iter().enumerate().skip(next) {
                    if budget == 0 {
                        feed.unfinished = Some(Unfinished { end, next: n });
                        self.resume = i;
                        break 'feeds true;
                    }
                    if let Some(Some(v)) = self.viewers.get_mut(slot) {
                        v.fan_out(
                            m,
                            &feed.track,
                            &self.batch,
                            end,
                            now,
                            tx,
                            &mut self.stats,
                            &mut self.rng,
                        );
                    }
                    budget = budget.saturating_sub(self.batch.len().max(1));
                }
                feed.cursor = end;
                // Its next packets are this feed's turn again, first thing next call.
                if budget == 0 && feed.track.head() != end {
                    self.resume = i;
                    break 'feeds true;
                }
            }
            false
        };
        self.batch.clear();
        // A fan-out that finished sent all that had arrived when it began: what came
        // meanwhile is late only for a worker already late (its batches are long).
        let lag = match behind || self.full {
            true => self.lag(now),
            false => Duration::ZERO,
        };
        self.full = match self.full {
            false => lag >= FULL_LAG,
            true => lag >= OPEN_LAG,
        };
        behind
    }

    /// How long ago the oldest packet not yet sent to all its feed's viewers arrived.
    fn lag(&self, now: Instant) -> Duration {
        self.feeds
            .iter()
            .flatten()
            .filter_map(|feed| feed.track.get(feed.cursor.max(feed.track.tail())))
            .map(|oldest| now.saturating_duration_since(oldest.arrival))
            .max()
            .unwrap_or_default()
    }

    /// Too late with its fan-out to take new sessions ([`FULL_LAG`]).
    pub fn full(&self) -> bool {
        self.full
    }

    /// Sets the fan-out's budget, for tests that need it small.
    #[cfg(test)]
    pub fn set_fan_out_budget(&mut self, packets: usize) {
        self.fan_out_budget = packets;
    }

    /// A generic NACK (RFC 4585 6.2.1) from the viewer in `slot`: the packets it names
    /// are resent from the ring while the viewer's budget lasts.
    pub fn retransmit(
        &mut self,
        slot: usize,
        media_ssrc: u32,
        pid: u16,
        blp: u16,
        tx: &mut dyn Sender,
    ) {
        let Some(Some(v)) = self.viewers.get_mut(slot) else {
            return;
        };
        let Some(m) = v.media.iter().position(|m| m.ssrc == media_ssrc) else {
            return;
        };
        v.media[m].reception.nacks += 1;
        let (MediaState::Sending(rewrite) | MediaState::CatchingUp { rewrite, .. }) =
            v.media[m].state
        else {
            return;
        };
        let Some(track) = self.feeds[v.media[m].feed]
            .as_ref()
            .map(|f| f.track.clone())
        else {
            return;
        };
        for seq in rtcp::nacked(pid, blp) {
            if v.retransmit_budget == 0 {
                self.stats.retransmit_limited += 1;
                continue;
            }
            let newest = v.media[m].newest_seq;
            match rewrite.track_seq(seq, newest).and_then(|s| track.by_seq(s)) {
                Some(p) => {
                    v.retransmit_budget -= 1;
                    let sent = v.resend(m, &p, tx, &mut self.stats);
                    if sent > 0 {
                        v.media[m].reception.retransmitted += 1;
                        self.stats.retransmitted += 1;
                        self.stats.retransmitted_bytes += sent as u64;
                    }
                }
                None => self.stats.retransmit_missing += 1,
            }
        }
    }

    /// A report block from the viewer in `slot`, arrived at `arrival` (NTP): the
    /// stream's reception as it now stands, or None if the block is about no stream the
    /// viewer receives or names a sender report we never sent (counted).
    pub fn on_report(
        &mut self,
        slot: usize,
        block: &ReportBlock,
        arrival: u64,
    ) -> Option<Reception> {
        let Some(Some(v)) = self.viewers.get_mut(slot) else {
            return None;
        };
        // Blocks about an RTX stream say nothing its media stream's do not.
        if v.media
            .iter()
            .any(|m| m.rtx.is_some_and(|(rtx, _)| rtx.ssrc == block.ssrc))
        {
            return None;
        }
        let m = v.media.iter().position(|m| m.ssrc == block.ssrc);
        let Some(m) = m.filter(|&m| v.media[m].on_report(block, arrival)) else {
            self.stats.report_blocks_dropped += 1;
            return None;
        };
        // Only video skips: audio is a small part of the stream, and a gap in it is heard.
        if let Some(f) = self.feeds[v.media[m].feed].as_ref() {
            if f.track.info.kind() == MediaKind::Video {
                v.judge(m, block, f.cursor, &mut self.stats);
            }
        }
        Some(v.media[m].reception)
    }

    /// When the next reports are due.
    pub fn next_reports(&self) -> Instant {
        self.next_reports
    }

    /// Every viewer's sender reports, and a fresh retransmission budget, if due.
    /// `wall` is `now` on the wall clock.
    pub fn on_timers(&mut self, now: Instant, wall: SystemTime, tx: &mut dyn Sender) {
        if now < self.next_reports {
            return;
        }
        self.next_reports = now + self.report_interval;
        for v in self.viewers.iter_mut().flatten() {
            v.retransmit_budget = self.budget;
            v.report(now, wall, tx, &mut self.stats);
            v.publish_counts();
        }
    }

    /// What was counted since the last call.
    pub fn take_stats(&mut self) -> EgressStats {
        std::mem::take(&mut self.stats)
    }
}
