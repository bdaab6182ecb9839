//! One viewer as the egress sees it, and the hot path: a packet sealed for it.
//!
//! A viewer's frame is built in place in the send batch: RTP header rewritten for the
//! viewer, payload copied from the shared ring, AES-GCM sealed where it lies. Sender
//! reports are built and sealed the same way.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::info;

use super::session_info::{SessionCounts, SessionInfo};
use super::stats::EgressStats;
use crate::io::Sender;
use crate::session::rtcp::{self, ReportBlock, SenderInfo};
use crate::session::Route;
use crate::srtp::Outbound;
use crate::track::fragment::{self, NalFormat, WEBRTC_MAX_PAYLOAD};
use crate::track::rewrite::{Rewrite, RtxStream, HEADER_LEN, OSN_LEN};
use crate::track::{MediaKind, Packet, Track};

/// What the fan-out needs of one viewer: kept apart from the session's cold state.
pub struct ViewerEgress {
    pub srtp: Outbound,
    pub route: Route,
    pub overhead: usize,
    pub media: Vec<MediaOut>,
    /// Retransmissions left until the next report tick.
    pub retransmit_budget: u32,
    /// Where the control plane reads what was sent: `sent`, published at each report.
    pub info: Arc<SessionInfo>,
    pub sent: SessionCounts,
}

/// One track as this viewer receives it.
pub struct MediaOut {
    pub feed: usize,
    pub ssrc: u32,
    pub pt: u8,
    pub clock_rate: u32,
    pub cname: String,
    pub state: MediaState,
    pub sent: Sent,
    /// The RTX stream resends go on, where the viewer negotiated one.
    pub rtx: Option<(RtxStream, Sent)>,
    /// Newest outgoing extended sequence number, for unwrapping NACKs.
    pub newest_seq: u64,
    /// Arrival time and outgoing timestamp of the newest packet sent, for sender reports.
    pub newest_at: Option<(Instant, u32)>,
    /// NTP middles of the last sender reports, newest at `reports % len`: a report
    /// block's LSR must name one of them for its round trip to count.
    pub sr_sent: [u32; 4],
    pub reports: usize,
    pub reception: Reception,
    /// Whether the viewer's link takes this stream, as its reports tell (video only).
    pub congestion: Congestion,
}

/// What a sender report counts of one stream (RFC 3550 6.4.1: they wrap).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub packets: u32,
    pub octets: u32,
}

/// What the viewer says of one stream it receives (its report blocks, its NACKs), and
/// what was resent for it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Reception {
    /// Of the packets expected since its previous report, in 1/256.
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub jitter: Duration,
    /// The latest measured; None until a report block names one of our sender reports.
    pub rtt: Option<Duration>,
    pub nacks: u64,
    pub retransmitted: u64,
    /// Times the stream skipped to the next keyframe because the viewer's link could
    /// not take it.
    pub congestion_skips: u64,
}

/// Loss (of 256) at which a viewer's link counts as not taking the stream: over 10%,
/// where GCC's loss-based controller (draft-ietf-rmcat-gcc-02 6) takes the send rate to
/// be above the link's capacity. Receivers count resends that arrive as received, so
/// this is loss NACKs did not mend; the few percent a lossy but wide enough link shows
/// are mended and stay well under it.
pub const CONGESTED_LOSS: u8 = 26;
/// Packets a judgement is made on: loss is counted from the report blocks' cumulative
/// loss and highest sequence number between reports this many packets apart. Reports
/// come with every NACK (RTCP is compound), many a second on a lossy link, each about a
/// handful of packets (2 lost of 14 is 14%): too small a sample alone.
pub const JUDGED_PACKETS: u32 = 100;
/// Judgements in a row that must find heavy loss before the viewer is judged too slow:
/// one alone may be a burst (a Wi-Fi handover) that NACKs still mend, and a skip freezes
/// the picture for up to a GOP.
pub const CONGESTED_JUDGEMENTS: u8 = 2;

/// Whether a viewer's link takes a video stream, from its reports: heavy loss in
/// [`CONGESTED_JUDGEMENTS`] spans of [`JUDGED_PACKETS`] in a row make it slow; it stays
/// slow, each further lossy span another skip, until a span shows less loss.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Congestion {
    /// Where the span being counted began: a report's extended highest sequence number
    /// and cumulative loss. None: the next report begins one.
    from: Option<(u32, i32)>,
    /// Spans of heavy loss in a row.
    lossy: u8,
}

/// What a report makes of a stream's [`Congestion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Too few packets since the span began to judge.
    Open,
    Fine,
    /// Heavy loss, not yet for long enough.
    Lossy,
    /// Too slow: skip to the next keyframe. `first` in a spell of heavy loss.
    Skip {
        first: bool,
    },
}

impl Congestion {
    /// Takes a report's extended highest sequence number and cumulative loss.
    pub fn judge(&mut self, highest_seq: u32, cumulative_lost: i32) -> Verdict {
        let Some((seq, lost)) = self.from else {
            self.from = Some((highest_seq, cumulative_lost));
            return Verdict::Open;
        };
        let expected = highest_seq.wrapping_sub(seq);
        // Fewer, or a report older than the span (reordered): not yet.
        if !(JUDGED_PACKETS..1 << 31).contains(&expected) {
            return Verdict::Open;
        }
        self.from = Some((highest_seq, cumulative_lost));
        let lost = i64::from(cumulative_lost) - i64::from(lost);
        if lost * 256 < i64::from(CONGESTED_LOSS) * i64::from(expected) {
            self.lossy = 0;
            return Verdict::Fine;
        }
        self.lossy = self.lossy.saturating_add(1);
        match self.lossy.cmp(&CONGESTED_JUDGEMENTS) {
            std::cmp::Ordering::Less => Verdict::Lossy,
            ordering => Verdict::Skip {
                first: ordering == std::cmp::Ordering::Equal,
            },
        }
    }

    /// The stream skipped: what was lost before is judged no more (the next span
    /// begins at the next report), while a spell of heavy loss goes on.
    fn restart(&mut self) {
        self.from = None;
    }
}

pub enum MediaState {
    /// Waiting for a packet to start on (video: a keyframe that began at or after `since`,
    /// or with `cached`, the newest one the history holds).
    Waiting {
        since: u64,
        cached: bool,
    },
    /// Sending the newest GOP from the track's history, paced, until it reaches live:
    /// `next` is the next ring index to send.
    CatchingUp {
        rewrite: Rewrite,
        next: u64,
        pace: Pace,
    },
    Sending(Rewrite),
}

/// How much faster than the stream's own rate a viewer catches up on a cached GOP: fast
/// enough to be live within a third of the GOP's age, slow enough for any link that
/// takes the stream with room to spare.
pub const CATCH_UP_SPEED: u64 = 4;
/// The least catch-up rate (bytes/s), for tracks whose rate is not known yet.
const CATCH_UP_MIN_RATE: u64 = 64 << 10;
/// Budget a catching-up viewer may save up between turns: bursts stay this short.
const CATCH_UP_MAX_BURST: Duration = Duration::from_millis(50);

/// A byte budget that refills at a fixed rate (a token bucket).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Bytes that may go now (negative after a packet larger than what was left).
    budget: i64,
    rate: u64,
    at: Instant,
}

impl Pace {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        let earned = (self.rate as u128 * elapsed.as_micros() / 1_000_000) as i64;
        let cap = (self.rate as u128 * CATCH_UP_MAX_BURST.as_micros() / 1_000_000) as i64;
        self.budget = (self.budget + earned).min(self.budget.max(cap));
    }
}

impl MediaOut {
    /// A stream in `state` that has sent nothing yet, its resends on `rtx` if given.
    pub fn new(
        feed: usize,
        (ssrc, pt): (u32, u8),
        clock_rate: u32,
        cname: String,
        state: MediaState,
        rtx: Option<RtxStream>,
    ) -> MediaOut {
        MediaOut {
            feed,
            ssrc,
            pt,
            clock_rate,
            cname,
            state,
            sent: Sent::default(),
            rtx: rtx.map(|r| (r, Sent::default())),
            newest_seq: 0,
            newest_at: None,
            sr_sent: [0; 4],
            reports: 0,
            reception: Reception::default(),
            congestion: Congestion::default(),
        }
    }

    /// Takes a report block about this stream, which arrived at `arrival` (NTP). False
    /// if its LSR names a sender report we never sent (nothing of it is kept then).
    pub fn on_report(&mut self, block: &ReportBlock, arrival: u64) -> bool {
        let rtt = match block.last_sr {
            0 => None,
            // Peers convert the SR's NTP time through their own clock types (str0m:
            // a SystemTime) and may round its middle 32 bits one unit (15 us) off.
            lsr if self.sr_sent.iter().any(|&sent| sent.abs_diff(lsr) <= 1) => {
                match rtcp::round_trip(arrival, lsr, block.delay_since_last_sr) {
                    Some(rtt) => Some(rtt),
                    None => return false,
                }
            }
            _ => return false,
        };
        let r = &mut self.reception;
        r.fraction_lost = block.fraction_lost;
        r.cumulative_lost = block.cumulative_lost;
        let ticks_per_second = f64::from(self.clock_rate.max(1));
        r.jitter = Duration::from_secs_f64(f64::from(block.jitter) / ticks_per_second);
        r.rtt = rtt.or(r.rtt);
        true
    }
}

impl ViewerEgress {
    /// Seals packet `p` of track `media` for this viewer into the send batch.
    pub fn send(&mut self, media: usize, p: &Packet, tx: &mut dyn Sender, stats: &mut EgressStats) {
        self.seal(media, p, false, tx, stats);
    }

    /// Seals `p` again for a viewer that lost it: on the RTX stream if the viewer has
    /// one, else as it was first sent. Returns the bytes sent.
    pub fn resend(
        &mut self,
        media: usize,
        p: &Packet,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
    ) -> usize {
        self.seal(media, p, true, tx, stats)
    }

    fn seal(
        &mut self,
        media: usize,
        p: &Packet,
        repair: bool,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
    ) -> usize {
        let out = &mut self.media[media];
        let (MediaState::Sending(rewrite) | MediaState::CatchingUp { rewrite, .. }) = &out.state
        else {
            return 0;
        };
        let mut rtx = out.rtx.as_mut().filter(|_| repair);
        let header = HEADER_LEN + if rtx.is_some() { OSN_LEN } else { 0 };
        let buf = tx.buffer();
        let len = header + p.payload.len();
        if len + self.overhead > buf.len() {
            stats.oversized += 1;
            return 0;
        }
        let seq = match &mut rtx {
            Some((stream, _)) => rewrite.write_rtx_header(p, stream, buf),
            None => rewrite.write_header(p, buf),
        };
        buf[header..len].copy_from_slice(&p.payload);
        let sealed = self
            .srtp
            .protect_rtp(buf, HEADER_LEN, len, (seq >> 16) as u32);
        tx.commit(sealed, self.route.local, self.route.remote);
        let counts = match rtx {
            Some((_, sent)) => {
                stats.rtx_packets += 1;
                stats.rtx_bytes += sealed as u64;
                sent
            }
            None => {
                if seq >= out.newest_seq {
                    out.newest_seq = seq;
                    out.newest_at = Some((p.arrival, rewrite.timestamp(p.timestamp)));
                }
                &mut out.sent
            }
        };
        counts.packets = counts.packets.wrapping_add(1);
        counts.octets = counts.octets.wrapping_add((len - HEADER_LEN) as u32);
        self.sent.outbound_rtp_packets += 1;
        self.sent.outbound_bytes += sealed as u64;
        stats.packets += 1;
        stats.bytes += sealed as u64;
        sealed
    }

    /// Sends `batch` (new packets of the feed's track, up to index `end`) to this
    /// viewer; or starts the viewer if it was waiting; or goes on with its catching up.
    #[allow(clippy::too_many_arguments)]
    pub fn fan_out(
        &mut self,
        media: usize,
        track: &Track,
        batch: &[Arc<Packet>],
        end: u64,
        now: Instant,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
        rng: &mut fastrand::Rng,
    ) {
        let out = &mut self.media[media];
        match out.state {
            MediaState::Waiting { since, cached } => {
                let Some(start) = start_packets(track, since, cached, batch) else {
                    return;
                };
                let rewrite = match out.newest_at {
                    // Going on after a skip: numbering unbroken, time as it passed.
                    Some((at, ts)) => {
                        let elapsed = start.anchor.arrival.saturating_duration_since(at);
                        let ticks = elapsed.as_secs_f64() * f64::from(out.clock_rate);
                        let seq = out.newest_seq + 1 + u64::from(start.injected);
                        let ts = ts.wrapping_add(ticks as u32 + 1);
                        Rewrite::going_on_at(&start.anchor, out.ssrc, out.pt, seq, ts)
                    }
                    // A random start (RFC 3550 5.1), below 2^15 with room for the
                    // injected packets.
                    None => {
                        let seq = rng.u16(..0x7000) + start.injected;
                        Rewrite::starting_at(&start.anchor, out.ssrc, out.pt, seq, rng.u32(..))
                    }
                };
                let cached = batch.first().is_none_or(|p| start.anchor.index < p.index);
                if !cached {
                    out.state = MediaState::Sending(rewrite);
                    for p in &start.packets {
                        self.send(media, p, tx, stats);
                    }
                    return;
                }
                // The newest keyframe is older than this turn's packets: the GOP since
                // comes from the history, its first frame at once and the rest paced.
                let keyframe_bytes: usize = track
                    .range(start.anchor.index, end)
                    .take_while(|p| p.timestamp == start.anchor.timestamp)
                    .map(|p| p.payload.len())
                    .sum();
                let rate = (track.stats.byte_rate() * CATCH_UP_SPEED).max(CATCH_UP_MIN_RATE);
                out.state = MediaState::CatchingUp {
                    rewrite,
                    next: start.anchor.index,
                    pace: Pace {
                        budget: keyframe_bytes as i64,
                        rate,
                        at: now,
                    },
                };
                if out.newest_at.is_none() {
                    stats.instant_starts += 1;
                }
                for p in start.packets.iter().take(start.injected as usize) {
                    self.send(media, p, tx, stats);
                }
                self.catch_up(media, track, end, now, tx, stats, rng);
            }
            MediaState::CatchingUp { .. } => self.catch_up(media, track, end, now, tx, stats, rng),
            MediaState::Sending(_) => {
                for p in batch {
                    self.send(media, p, tx, stats);
                }
            }
        }
    }

    /// Sends what the pace allows of the GOP this viewer is catching up on, up to `end`;
    /// live from there. A newer keyframe ends the catching up: the viewer goes on from
    /// it. A viewer too slow to catch up before the history lets go of what it still
    /// needs skips to the next keyframe instead of falling further behind.
    #[allow(clippy::too_many_arguments)]
    fn catch_up(
        &mut self,
        media: usize,
        track: &Track,
        end: u64,
        now: Instant,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
        rng: &mut fastrand::Rng,
    ) {
        let MediaState::CatchingUp {
            mut next, mut pace, ..
        } = self.media[media].state
        else {
            return;
        };
        if track.last_keyframe().is_some_and(|k| k.index > next) {
            self.media[media].state = MediaState::Waiting {
                since: next + 1,
                cached: true,
            };
            return self.fan_out(media, track, &[], end, now, tx, stats, rng);
        }
        pace.refill(now);
        while next < end && pace.budget > 0 {
            let Some(p) = track.get(next) else {
                stats.skipped_to_keyframe += 1;
                self.media[media].state = MediaState::Waiting {
                    since: end,
                    cached: false,
                };
                return;
            };
            pace.budget -= p.payload.len() as i64;
            self.send(media, &p, tx, stats);
            next += 1;
        }
        let out = &mut self.media[media];
        if let MediaState::CatchingUp { rewrite, .. } = out.state {
            out.state = if next == end {
                MediaState::Sending(rewrite)
            } else {
                MediaState::CatchingUp {
                    rewrite,
                    next,
                    pace,
                }
            };
        }
    }

    /// Judges the video stream `media` by `block`, a report about it. A viewer whose
    /// link cannot take the stream drops the rest of the GOP and waits for a keyframe
    /// at or after ring index `next` (the fan-out's next), its numbering going on
    /// unbroken from there: no queue builds up for it, and NACKs for what it was sent
    /// before are no longer answered (none while it waits; after, the rewrite maps none
    /// from before its new anchor), so resends do not crowd its link either.
    pub fn judge(&mut self, media: usize, block: &ReportBlock, next: u64, stats: &mut EgressStats) {
        let out = &mut self.media[media];
        let verdict = out
            .congestion
            .judge(block.highest_seq, block.cumulative_lost);
        let Verdict::Skip { first } = verdict else {
            return;
        };
        if matches!(out.state, MediaState::Waiting { .. }) {
            return;
        }
        out.congestion.restart();
        out.state = MediaState::Waiting {
            since: next,
            cached: false,
        };
        out.reception.congestion_skips += 1;
        self.sent.congestion_skips += 1;
        stats.congestion_skips += 1;
        // Once per spell of heavy loss; the skips it goes on making are counted.
        if first {
            info!(
                session = %self.info.id,
                path = %self.info.path,
                ssrc = out.ssrc,
                fraction_lost = f64::from(out.reception.fraction_lost) / 256.0,
                "viewer too slow for the stream: skipping to the next keyframe"
            );
        }
    }

    /// Publishes what was sent, and what the viewer last reported of it, to the
    /// control plane.
    pub fn publish_counts(&mut self) {
        let receptions = self.media.iter().map(|m| &m.reception);
        self.sent.outbound_rtp_packets_lost = receptions
            .clone()
            .map(|r| u64::try_from(r.cumulative_lost).unwrap_or(0))
            .sum();
        self.sent.jitter = receptions
            .clone()
            .map(|r| r.jitter)
            .max()
            .unwrap_or_default();
        self.sent.rtt = receptions.filter_map(|r| r.rtt).max();
        self.info.publish_outbound(&self.sent);
    }

    /// One SR + SDES compound per stream the viewer receives (RTX streams too), `wall`
    /// being `now` on the wall clock (the NTP side of the SR's mapping).
    pub fn report(
        &mut self,
        now: Instant,
        wall: SystemTime,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
    ) {
        let ntp = rtcp::ntp_time(wall.duration_since(UNIX_EPOCH).unwrap_or_default());
        for m in &mut self.media {
            let Some((at, ts)) = m.newest_at else {
                continue;
            };
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            let rtp_time = ts.wrapping_add((elapsed * m.clock_rate as f64) as u32);
            let rtx = m.rtx.filter(|(_, sent)| sent.packets > 0);
            let streams = [(m.ssrc, m.sent)]
                .into_iter()
                .chain(rtx.map(|(stream, sent)| (stream.ssrc, sent)));
            for (ssrc, sent) in streams {
                let info = SenderInfo {
                    ssrc,
                    ntp,
                    rtp_time,
                    packets: sent.packets,
                    octets: sent.octets,
                };
                let buf = tx.buffer();
                let len = rtcp::write_sender_report(buf, &info, &m.cname);
                // Fails only past 2^31 reports (the index would repeat a nonce): stop reporting.
                if let Ok(sealed) = self.srtp.protect_rtcp(buf, len) {
                    tx.commit(sealed, self.route.local, self.route.remote);
                    stats.reports += 1;
                    self.sent.outbound_rtcp_packets += 1;
                    self.sent.outbound_bytes += sealed as u64;
                }
            }
            m.sr_sent[m.reports % m.sr_sent.len()] = rtcp::ntp_middle(ntp);
            m.reports += 1;
        }
    }
}

struct Start {
    /// The first ring packet: it anchors the viewer's numbering.
    anchor: Arc<Packet>,
    /// Parameter sets sent before it, numbered just below it.
    injected: u16,
    packets: Vec<Arc<Packet>>,
}

/// What a waiting viewer starts with: audio on the next packet; video on the newest
/// keyframe if it began after the viewer joined (or, with the keyframe cache, if the
/// history still holds it), with the parameter sets first if the codec has them (H264,
/// H265) and the keyframe does not carry them. None while there is nothing to start on.
fn start_packets(track: &Track, since: u64, cached: bool, batch: &[Arc<Packet>]) -> Option<Start> {
    if track.info.kind() == MediaKind::Audio {
        let anchor = batch.first()?.clone();
        return Some(Start {
            anchor,
            injected: 0,
            packets: batch.to_vec(),
        });
    }
    let kf = track
        .last_keyframe()
        .filter(|k| k.index >= since || cached)?;
    let anchor = track.get(kf.index)?;
    let mut packets = Vec::new();
    let format = NalFormat::of(track.info.codec);
    if let (false, Some(format)) = (kf.has_parameter_sets, format) {
        let sets = track.parameter_sets()?;
        let payloads =
            fragment::parameter_set_payloads(format, &sets.nal_units(), WEBRTC_MAX_PAYLOAD).ok()?;
        let count = payloads.len() as u64;
        for (i, payload) in (0..).zip(payloads) {
            packets.push(Arc::new(injected(&anchor, count - i, payload)));
        }
    }
    let injected = packets.len() as u16;
    let head = batch.last().map_or(kf.index + 1, |p| p.index + 1);
    packets.extend((kf.index..head).filter_map(|i| track.get(i)));
    Some(Start {
        anchor,
        injected,
        packets,
    })
}

fn injected(keyframe: &Packet, before: u64, payload: Bytes) -> Packet {
    Packet {
        index: keyframe.index,
        seq: keyframe.seq.wrapping_sub(before),
        timestamp: keyframe.timestamp,
        marker: false,
        payload,
        arrival: keyframe.arrival,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{h264, h265, Codec, ParameterSets, SourcePacket, TrackInfo};

    fn packet(seq: u16, payload: &[u8]) -> SourcePacket<'_> {
        SourcePacket {
            ssrc: 1,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            payload,
            arrival: Instant::now(),
        }
    }

    #[test]
    fn a_report_block_counts_only_against_a_sender_report_we_sent() {
        let mut m = MediaOut::new(
            0,
            (7, 96),
            90_000,
            "c".into(),
            MediaState::Waiting {
                since: 0,
                cached: false,
            },
            None,
        );
        let sent = rtcp::ntp_time(Duration::from_secs(1_800_000_000));
        m.sr_sent[0] = rtcp::ntp_middle(sent);
        let arrival = rtcp::ntp_time(Duration::from_millis(1_800_000_000_300));
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 64,
            cumulative_lost: -1,
            highest_seq: 1000,
            jitter: 900,
            last_sr: rtcp::ntp_middle(sent),
            // Held 100 ms: 200 ms on the way there and back.
            delay_since_last_sr: 65536 / 10,
        };
        assert!(m.on_report(&block, arrival));
        let r = m.reception;
        assert_eq!((r.fraction_lost, r.cumulative_lost), (64, -1));
        assert_eq!(r.jitter, Duration::from_millis(10), "900 ticks of 90 kHz");
        let rtt = r.rtt.unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(200)) < Duration::from_micros(50));
        // An LSR we never sent: nothing of the block is taken.
        let forged = ReportBlock {
            last_sr: rtcp::ntp_middle(sent) + 2,
            fraction_lost: 255,
            ..block
        };
        assert!(!m.on_report(&forged, arrival));
        assert_eq!(m.reception, r);
        // No SR received yet: loss and jitter count, the round trip stays as it was.
        let early = ReportBlock {
            last_sr: 0,
            fraction_lost: 1,
            ..block
        };
        assert!(m.on_report(&early, arrival));
        assert_eq!((m.reception.fraction_lost, m.reception.rtt), (1, Some(rtt)));
        // One unit off is a peer's rounding of our SR's time (str0m's is), not a forgery.
        let rounded = ReportBlock {
            last_sr: rtcp::ntp_middle(sent) + 1,
            ..block
        };
        assert!(m.on_report(&rounded, arrival));
    }

    #[test]
    fn heavy_loss_in_spans_in_a_row_skips_until_a_span_shows_less() {
        let mut c = Congestion::default();
        let span = JUDGED_PACKETS;
        let heavy = (span * u32::from(CONGESTED_LOSS)).div_ceil(256) as i32;
        let (mut seq, mut lost) = (65_000u32, 0i32);
        let mut report = |c: &mut Congestion, packets: u32, lose: i32| {
            seq += packets;
            lost += lose;
            c.judge(seq, lost)
        };
        assert_eq!(
            report(&mut c, 0, 0),
            Verdict::Open,
            "the first report begins"
        );
        // Reports with every NACK: each about a few packets, judged together.
        assert_eq!(report(&mut c, span / 4, heavy), Verdict::Open);
        assert_eq!(report(&mut c, span - span / 4, 0), Verdict::Lossy);
        assert_eq!(report(&mut c, span, heavy - 1), Verdict::Fine);
        // A good span between two heavy ones: it starts over.
        assert_eq!(report(&mut c, span, heavy), Verdict::Lossy);
        assert_eq!(report(&mut c, span, heavy), Verdict::Skip { first: true });
        // Skipped: what came before is not judged again; a spell that goes on skips
        // again, without a new one to log.
        c.restart();
        assert_eq!(report(&mut c, span, span as i32), Verdict::Open);
        assert_eq!(
            report(&mut c, span, span as i32),
            Verdict::Skip { first: false }
        );
        for _ in 0..300 {
            let verdict = report(&mut c, 2 * span, 2 * heavy);
            assert_eq!(verdict, Verdict::Skip { first: false });
        }
        // Resends that arrive late make up for loss counted before.
        assert_eq!(report(&mut c, span, -5), Verdict::Fine);
        assert_eq!(report(&mut c, span, heavy), Verdict::Lossy);
        // A report older than the span is no judgement.
        assert_eq!(
            report(&mut c, 0u32.wrapping_sub(span), heavy),
            Verdict::Open
        );
    }

    #[test]
    fn keyframe_without_parameter_sets_starts_after_their_aggregate() {
        let info = TrackInfo {
            codec: Codec::H265,
            fmtp: String::new(),
        };
        let (track, mut writer) = Track::new(info, crate::track::history::Retention::default());
        let sets = ParameterSets {
            vps: Some(Bytes::from_static(&[32 << 1, 1, 0x0c])),
            sps: Bytes::from_static(&[33 << 1, 1, 0x01]),
            pps: Bytes::from_static(&[34 << 1, 1, 0xc1]),
        };
        writer.set_parameter_sets(sets.clone());
        writer.push(packet(1, &[1 << 1, 1, 0xaa]));
        // An IDR_W_RADL alone, then a TRAIL_R.
        writer.push(packet(2, &[19 << 1, 1, 0xaf]));
        writer.push(packet(3, &[1 << 1, 1, 0xbb]));
        let batch: Vec<_> = (0..3).filter_map(|i| track.get(i)).collect();

        let start = start_packets(&track, 0, false, &batch).unwrap();
        assert_eq!(start.injected, 1, "VPS, SPS and PPS in one AP");
        assert_eq!(start.anchor.index, 1);
        let ap = &start.packets[0];
        assert_eq!(ap.seq, start.anchor.seq - 1);
        assert_eq!(ap.timestamp, start.anchor.timestamp);
        let s = h265::summarize(&ap.payload);
        assert_eq!(
            (s.vps, Some(s.sps.unwrap()), s.pps.unwrap()),
            (sets.vps, Some(sets.sps), sets.pps)
        );
        assert_eq!(start.packets.len(), 3);

        // H264: SPS and PPS in one STAP-A.
        let info = TrackInfo {
            codec: Codec::H264,
            fmtp: String::new(),
        };
        let (track, mut writer) = Track::new(info, crate::track::history::Retention::default());
        writer.set_parameter_sets(ParameterSets {
            vps: None,
            sps: Bytes::from_static(&[0x67, 0x42, 0xe0, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xce]),
        });
        writer.push(packet(1, &[0x65, 0x88]));
        let batch = [track.get(0).unwrap()];
        let start = start_packets(&track, 0, false, &batch).unwrap();
        assert_eq!(start.injected, 1);
        let s = h264::summarize(&start.packets[0].payload);
        assert!(s.sps.is_some() && s.pps.is_some());
    }
}
