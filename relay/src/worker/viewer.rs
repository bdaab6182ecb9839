//! One viewer as the egress sees it, and the hot path: a packet sealed for it.
//!
//! A viewer's frame is built in place in the send batch: RTP header rewritten for the
//! viewer, payload copied from the shared ring, AES-GCM sealed where it lies. Sender
//! reports are built and sealed the same way.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::stats::EgressStats;
use crate::io::Sender;
use crate::session::rtcp::{self, SenderInfo};
use crate::session::Route;
use crate::srtp::Outbound;
use crate::track::rewrite::{Rewrite, HEADER_LEN};
use crate::track::{MediaKind, Packet, Track};

/// What the fan-out needs of one viewer: kept apart from the session's cold state.
pub struct ViewerEgress {
    pub srtp: Outbound,
    pub route: Route,
    pub overhead: usize,
    pub media: Vec<MediaOut>,
    /// Retransmissions left until the next report tick.
    pub retransmit_budget: u32,
}

/// One track as this viewer receives it.
pub struct MediaOut {
    pub feed: usize,
    pub ssrc: u32,
    pub pt: u8,
    pub clock_rate: u32,
    pub cname: String,
    pub state: MediaState,
    pub packets: u32,
    pub octets: u32,
    /// Newest outgoing extended sequence number, for unwrapping NACKs.
    pub newest_seq: u64,
    /// Arrival time and outgoing timestamp of the newest packet sent, for sender reports.
    pub newest_at: Option<(Instant, u32)>,
}

pub enum MediaState {
    /// Waiting for a packet to start on (video: a keyframe that began at or after `since`).
    Waiting {
        since: u64,
    },
    Sending(Rewrite),
}

impl ViewerEgress {
    /// Seals packet `p` of track `media` for this viewer into the send batch.
    pub fn send(&mut self, media: usize, p: &Packet, tx: &mut dyn Sender, stats: &mut EgressStats) {
        let out = &mut self.media[media];
        let MediaState::Sending(rewrite) = &out.state else {
            return;
        };
        let buf = tx.buffer();
        let len = HEADER_LEN + p.payload.len();
        if len + self.overhead > buf.len() {
            stats.oversized += 1;
            return;
        }
        let seq = rewrite.write_header(p, buf);
        buf[HEADER_LEN..len].copy_from_slice(&p.payload);
        let sealed = self
            .srtp
            .protect_rtp(buf, HEADER_LEN, len, (seq >> 16) as u32);
        tx.commit(sealed, self.route.local, self.route.remote);
        out.packets = out.packets.wrapping_add(1);
        out.octets = out.octets.wrapping_add(p.payload.len() as u32);
        if seq >= out.newest_seq {
            out.newest_seq = seq;
            out.newest_at = Some((p.arrival, rewrite.timestamp(p.timestamp)));
        }
        stats.packets += 1;
        stats.bytes += sealed as u64;
    }

    /// Sends `batch` (new packets of the feed's track) to this viewer, or starts the
    /// viewer on it if it was waiting.
    pub fn fan_out(
        &mut self,
        media: usize,
        track: &Track,
        batch: &[Arc<Packet>],
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
        rng: &mut fastrand::Rng,
    ) {
        let out = &mut self.media[media];
        if let MediaState::Waiting { since } = out.state {
            let Some(start) = start_packets(track, since, batch) else {
                return;
            };
            // A random start (RFC 3550 5.1), below 2^15 with room for the injected packets.
            let seq = rng.u16(..0x7000) + start.injected;
            let rewrite = Rewrite::starting_at(&start.anchor, out.ssrc, out.pt, seq, rng.u32(..));
            out.state = MediaState::Sending(rewrite);
            for p in &start.packets {
                self.send(media, p, tx, stats);
            }
            return;
        }
        for p in batch {
            self.send(media, p, tx, stats);
        }
    }

    /// One SR + SDES compound per stream the viewer receives, `wall` being `now` on
    /// the wall clock (the NTP side of the SR's mapping).
    pub fn report(
        &mut self,
        now: Instant,
        wall: SystemTime,
        tx: &mut dyn Sender,
        stats: &mut EgressStats,
    ) {
        let ntp = rtcp::ntp_time(wall.duration_since(UNIX_EPOCH).unwrap_or_default());
        for m in &self.media {
            let Some((at, ts)) = m.newest_at else {
                continue;
            };
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            let info = SenderInfo {
                ssrc: m.ssrc,
                ntp,
                rtp_time: ts.wrapping_add((elapsed * m.clock_rate as f64) as u32),
                packets: m.packets,
                octets: m.octets,
            };
            let buf = tx.buffer();
            let len = rtcp::write_sender_report(buf, &info, &m.cname);
            // Fails only past 2^31 reports (the index would repeat a nonce): stop reporting.
            if let Ok(sealed) = self.srtp.protect_rtcp(buf, len) {
                tx.commit(sealed, self.route.local, self.route.remote);
                stats.reports += 1;
            }
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
/// keyframe if it began after the viewer joined, with the parameter sets first if the
/// keyframe does not carry them. None while there is nothing to start on.
fn start_packets(track: &Track, since: u64, batch: &[Arc<Packet>]) -> Option<Start> {
    if track.info.kind() == MediaKind::Audio {
        let anchor = batch.first()?.clone();
        return Some(Start {
            anchor,
            injected: 0,
            packets: batch.to_vec(),
        });
    }
    let kf = track.last_keyframe().filter(|k| k.index >= since)?;
    let anchor = track.get(kf.index)?;
    let mut packets = Vec::new();
    if !kf.has_parameter_sets {
        let sets = track.parameter_sets()?;
        packets.push(Arc::new(injected(&anchor, 2, sets.sps.clone())));
        packets.push(Arc::new(injected(&anchor, 1, sets.pps.clone())));
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

fn injected(keyframe: &Packet, before: u64, nal: Bytes) -> Packet {
    Packet {
        index: keyframe.index,
        seq: keyframe.seq.wrapping_sub(before),
        timestamp: keyframe.timestamp,
        marker: false,
        payload: nal,
        arrival: keyframe.arrival,
    }
}
