//! A published track: its packets live once, in a history ring that every viewer reads.
//!
//! One writer (the ingest or the publisher's worker) appends packets through a
//! [`TrackWriter`]; any number of workers read them by index (fan-out), by sequence
//! number (NACK), and from the last keyframe (viewers joining). Readers never block
//! the writer and never copy a packet into a per-viewer buffer: they take an
//! `Arc<Packet>` and build each viewer's frame straight into the send batch. What the
//! ring keeps, for how long and in how much memory, is [`history`]'s business.
//!
//! The writer also makes the track's numbering continuous: sequence numbers are
//! extended to 64 bits and timestamps re-based across source restarts (new SSRC,
//! big jumps), so that a viewer's header rewrite is a fixed offset for its whole life.

pub mod fmtp;
pub mod fragment;
pub mod h264;
pub mod h265;
pub mod history;
pub mod keyframe_requests;
pub mod keyframes;
pub mod rewrite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;

use history::{Arena, Retention, Ring, MAX_PACKETS};
use keyframe_requests::KeyframeRequests;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
    Vp8,
    Vp9,
    Av1,
    Opus,
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Vp8 | Codec::Vp9 | Codec::Av1 => MediaKind::Video,
            Codec::Opus | Codec::Pcmu | Codec::Pcma => MediaKind::Audio,
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::H264 | Codec::H265 | Codec::Vp8 | Codec::Vp9 | Codec::Av1 => 90_000,
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// Parses an SDP rtpmap encoding name (case-insensitive).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(Codec::H264),
            "H265" => Some(Codec::H265),
            "VP8" => Some(Codec::Vp8),
            "VP9" => Some(Codec::Vp9),
            "AV1" => Some(Codec::Av1),
            "OPUS" => Some(Codec::Opus),
            "PCMU" => Some(Codec::Pcmu),
            "PCMA" => Some(Codec::Pcma),
            _ => None,
        }
    }
}

/// What viewers need to negotiate a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub codec: Codec,
    /// SDP fmtp parameters of the source (H264: profile-level-id, packetization-mode).
    pub fmtp: String,
}

impl TrackInfo {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// A packet as a source delivered it (header fields parsed, payload without padding).
/// The payload is borrowed: the writer copies it into the track's history, so a source
/// need not allocate one per packet (the RTP ingest hands a slice of its receive batch).
#[derive(Debug, Clone, Copy)]
pub struct SourcePacket<'a> {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
    pub arrival: Instant,
}

/// A packet in the history ring, numbered by the track.
#[derive(Debug)]
pub struct Packet {
    /// Position in arrival order.
    pub index: u64,
    /// Extended sequence number, continuous across source restarts.
    pub seq: u64,
    /// RTP timestamp, continuous across source restarts.
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    pub arrival: Instant,
}

/// What one H264 or H265 payload carries that matters for starting a viewer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PayloadSummary {
    /// A keyframe starts in this payload: the first slice of an H264 IDR or H265 IRAP
    /// picture, whole, aggregated or its first fragment.
    pub keyframe: bool,
    /// It carries a slice or a part of one (any picture's); every payload of the
    /// codecs without NAL units.
    pub slice: bool,
    /// Parameter sets found whole in this payload (`vps` only in H265).
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// Whether a slice header (given its first byte) opens its picture: H264's starts with
/// `first_mb_in_slice`, ue(v), whose 0 is the single bit 1; H265's with
/// `first_slice_segment_in_pic_flag`. A picture joined after its first slice (a source
/// joined mid-picture) cannot be decoded whole, so it is no place to start a viewer.
fn opens_picture(slice_header: Option<&u8>) -> bool {
    slice_header.is_some_and(|b| b & 0x80 != 0)
}

/// Parameter sets, kept to start viewers at keyframes that do not carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// H265 only.
    pub vps: Option<Bytes>,
    pub sps: Bytes,
    pub pps: Bytes,
}

impl ParameterSets {
    /// In the order a decoder needs them: VPS, SPS, PPS.
    pub fn nal_units(&self) -> Vec<&Bytes> {
        self.vps.iter().chain([&self.sps, &self.pps]).collect()
    }
}

/// Where the newest keyframe starts, for viewers waiting to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Index of the first packet of the keyframe's access unit.
    pub index: u64,
    /// The access unit carries SPS and PPS itself; otherwise send `parameter_sets()` first.
    pub has_parameter_sets: bool,
}

/// Counters and gauges kept by the writer, read by metrics.
#[derive(Debug, Default)]
pub struct TrackStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub duplicates: AtomicU64,
    pub restarts: AtomicU64,
    /// What the history holds now: packets, payload bytes, and the time from the oldest
    /// packet's arrival to the newest's (microseconds).
    pub held_packets: AtomicU64,
    pub held_bytes: AtomicU64,
    pub held_span_us: AtomicU64,
}

impl TrackStats {
    /// The track's payload rate over its history, in bytes per second (0 until known).
    pub fn byte_rate(&self) -> u64 {
        let span = self.held_span_us.load(Ordering::Relaxed);
        let bytes = self.held_bytes.load(Ordering::Relaxed);
        (bytes * 1_000_000).checked_div(span).unwrap_or(0)
    }
}

pub struct Track {
    pub info: TrackInfo,
    pub retention: Retention,
    ring: ArcSwap<Ring>,
    /// Number of packets published; readers may read indices below it.
    head: AtomicU64,
    /// Index of the oldest packet still held.
    tail: AtomicU64,
    /// Newest keyframe: ((index + 1) << 1) | has_parameter_sets, 0 when none yet.
    keyframe: AtomicU64,
    parameter_sets: ArcSwapOption<ParameterSets>,
    /// Bit i set: worker i has viewers of this track and wants waking on new packets.
    readers: AtomicU64,
    /// Viewers' PLI/FIR, coalesced for a source that can answer them.
    pub keyframe_requests: KeyframeRequests,
    pub stats: TrackStats,
}

impl std::fmt::Debug for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Track")
            .field("info", &self.info)
            .field("head", &self.head())
            .finish()
    }
}

impl Track {
    /// A track keeping what `retention` says, and its writer.
    pub fn new(info: TrackInfo, retention: Retention) -> (Arc<Track>, TrackWriter) {
        let track = Arc::new(Track {
            info,
            retention,
            ring: ArcSwap::from_pointee(Ring::with_capacity(0)),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            keyframe: AtomicU64::new(0),
            parameter_sets: ArcSwapOption::empty(),
            readers: AtomicU64::new(0),
            keyframe_requests: KeyframeRequests::default(),
            stats: TrackStats::default(),
        });
        let writer = TrackWriter {
            track: track.clone(),
            source: None,
            access_unit: None,
            parameter_sets: PayloadSummary::default(),
            arena: Arena::default(),
            tail: 0,
            held_bytes: 0,
        };
        (track, writer)
    }

    /// Number of packets published so far: the next index to be written.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Index of the oldest packet still held: readers behind it have missed packets.
    pub fn tail(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    /// The packet at `index`, unless it is not yet published or already let go.
    pub fn get(&self, index: u64) -> Option<Arc<Packet>> {
        if index < self.tail() {
            return None;
        }
        self.ring.load().get(index)
    }

    /// The packets `from..to` still held, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Arc<Packet>> + '_ {
        let ring = self.ring.load_full();
        // Pinned once for the whole range: each read's own pin is then a count.
        let pinned = crossbeam_epoch::pin();
        (from.max(self.tail())..to).filter_map(move |i| {
            let _ = &pinned;
            ring.get(i)
        })
    }

    /// The packet with extended sequence number `seq`, if it is still held.
    pub fn by_seq(&self, seq: u64) -> Option<Arc<Packet>> {
        let ring = self.ring.load();
        let index = ring.index_of_seq(seq).filter(|&i| i >= self.tail())?;
        ring.get(index).filter(|p| p.seq == seq)
    }

    pub fn last_keyframe(&self) -> Option<Keyframe> {
        let v = self.keyframe.load(Ordering::Acquire);
        (v != 0).then(|| Keyframe {
            index: (v >> 1) - 1,
            has_parameter_sets: v & 1 == 1,
        })
    }

    pub fn parameter_sets(&self) -> Option<Arc<ParameterSets>> {
        self.parameter_sets.load_full()
    }

    /// Workers that want waking when packets arrive (bit i = worker i).
    pub fn readers(&self) -> u64 {
        self.readers.load(Ordering::Acquire)
    }

    pub fn add_reader(&self, worker: usize) {
        self.readers.fetch_or(1 << worker, Ordering::AcqRel);
    }

    pub fn remove_reader(&self, worker: usize) {
        self.readers.fetch_and(!(1 << worker), Ordering::AcqRel);
    }
}

// RFC 3550 A.1: a jump beyond these is a source restart, not loss or reordering.
const MAX_DROPOUT: i64 = 3000;
const MAX_MISORDER: i64 = 100;

/// Mapping from the current source's numbering to the track's.
#[derive(Debug)]
struct SourceState {
    ssrc: u32,
    /// Highest extended source sequence number seen.
    max_ext: u64,
    /// Track seq = source ext seq + seq_offset.
    seq_offset: u64,
    /// Track timestamp = source timestamp + ts_offset.
    ts_offset: u32,
    last_timestamp: u32,
    last_arrival: Instant,
}

#[derive(Debug)]
struct AccessUnit {
    timestamp: u32,
    start: u64,
    /// The sequence number that would follow its newest packet.
    next_seq: u64,
    /// Its first slice has come: it was judged then.
    sliced: bool,
    /// Its parameter sets before its first slice: (VPS, SPS, PPS).
    sets: (bool, bool, bool),
}

impl AccessUnit {
    /// Carries every parameter set its codec needs (H265: VPS too) ahead of its slices,
    /// in whatever order.
    fn carries_sets(&self, codec: Codec) -> bool {
        let (vps, sps, pps) = self.sets;
        sps && pps && (vps || codec != Codec::H265)
    }
}

/// What the writer reads of the oldest packet it holds: read once per push, as the
/// packet is a second old and out of the cache by then.
#[derive(Debug, Clone, Copy)]
struct Oldest {
    seq: u64,
    arrival: Instant,
    len: usize,
}

/// The single writer of a track. Not `Clone`: one thread owns it.
pub struct TrackWriter {
    track: Arc<Track>,
    source: Option<SourceState>,
    access_unit: Option<AccessUnit>,
    /// Newest in-band parameter sets seen (`keyframe` unused).
    parameter_sets: PayloadSummary,
    arena: Arena,
    /// The writer's own copies of the track's tail and of the payload bytes held.
    tail: u64,
    held_bytes: usize,
}

impl TrackWriter {
    pub fn track(&self) -> &Arc<Track> {
        &self.track
    }

    /// Seeds the parameter sets from the source's SDP (`sprop-parameter-sets`).
    pub fn set_parameter_sets(&self, sets: ParameterSets) {
        self.track.parameter_sets.store(Some(Arc::new(sets)));
    }

    /// Appends a packet. Returns false when it was dropped as a duplicate.
    /// Call `Track::readers()` afterwards (once per batch) to know whom to wake.
    pub fn push(&mut self, p: SourcePacket<'_>) -> bool {
        let Some((seq, timestamp)) = self.number(&p) else {
            self.track.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let index = self.track.head.load(Ordering::Relaxed);
        self.note_keyframe(index, seq, timestamp, p.payload);
        let stats = &self.track.stats;
        stats.packets.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
        let oldest = self.let_go(index, p.arrival, p.payload.len());
        let payload = self.arena.store(p.payload, self.held_bytes);
        self.held_bytes += payload.len();
        self.make_room(index, seq, oldest);
        let packet = Packet {
            index,
            seq,
            timestamp,
            marker: p.marker,
            payload,
            arrival: p.arrival,
        };
        self.track.ring.load().put(Arc::new(packet));
        self.track.head.store(index + 1, Ordering::Release);
        self.publish_held(index, p.arrival, oldest);
        true
    }

    /// Lets go of the oldest packets while the history is over its limits, `next` being
    /// the index about to be written, `now` its arrival and `incoming` its size: older
    /// than the duration (unless the keyframe cache keeps them), more bytes than
    /// allowed, more packets than a ring may hold. Returns the oldest packet kept.
    fn let_go(&mut self, next: u64, now: Instant, incoming: usize) -> Option<Oldest> {
        let track = &*self.track;
        let retention = track.retention;
        let cached_from = match (retention.keyframe_cache, track.last_keyframe()) {
            (true, Some(k)) => k.index,
            _ => u64::MAX,
        };
        let ring = track.ring.load();
        while self.tail < next {
            let oldest = ring.peek(self.tail, |p| Oldest {
                seq: p.seq,
                arrival: p.arrival,
                len: p.payload.len(),
            });
            let Some(oldest) = oldest else {
                self.tail += 1;
                continue;
            };
            let too_old = now.saturating_duration_since(oldest.arrival) > retention.duration
                && self.tail < cached_from;
            let too_big = self.held_bytes + incoming > retention.max_bytes;
            let too_many = next - self.tail >= MAX_PACKETS;
            if !(too_old || too_big || too_many) {
                return Some(oldest);
            }
            self.held_bytes -= oldest.len;
            ring.clear(self.tail);
            self.tail += 1;
            track.tail.store(self.tail, Ordering::Release);
        }
        None
    }

    /// Replaces the ring by a bigger one if packet `next` (numbered `seq`) would take the
    /// slot of one still held (the oldest is `oldest`), by index or (after losses) by
    /// sequence number.
    fn make_room(&mut self, next: u64, seq: u64, oldest: Option<Oldest>) {
        let track = &*self.track;
        let ring = track.ring.load();
        let seq_span = oldest.map_or(0, |o| seq.saturating_sub(o.seq) + MAX_MISORDER as u64);
        let needed = (next - self.tail).max(seq_span);
        if needed >= ring.capacity() && ring.capacity() < MAX_PACKETS {
            track.ring.store(Arc::new(ring.grown(self.tail, next)));
        }
    }

    fn publish_held(&self, newest: u64, now: Instant, oldest: Option<Oldest>) {
        let stats = &self.track.stats;
        let span = oldest.map_or(Duration::ZERO, |o| now.saturating_duration_since(o.arrival));
        stats
            .held_packets
            .store(newest + 1 - self.tail, Ordering::Relaxed);
        stats
            .held_bytes
            .store(self.held_bytes as u64, Ordering::Relaxed);
        stats
            .held_span_us
            .store(span.as_micros() as u64, Ordering::Relaxed);
    }

    /// Maps the source's numbering to the track's; None for a duplicate.
    fn number(&mut self, p: &SourcePacket<'_>) -> Option<(u64, u32)> {
        let restart = match &self.source {
            None => true,
            Some(s) if s.ssrc != p.ssrc => true,
            Some(s) => {
                let delta = (p.seq.wrapping_sub(s.max_ext as u16) as i16) as i64;
                !(-MAX_MISORDER..=MAX_DROPOUT).contains(&delta)
            }
        };
        if restart {
            self.rebase(p);
        }
        let s = self.source.as_mut().expect("rebased above");
        let delta = (p.seq.wrapping_sub(s.max_ext as u16) as i16) as i64;
        let ext = s.max_ext.wrapping_add_signed(delta);
        let seq = ext.wrapping_add(s.seq_offset);
        if !restart && delta <= 0 && self.track.by_seq(seq).is_some() {
            return None;
        }
        if delta > 0 {
            s.max_ext = ext;
        }
        s.last_timestamp = p.timestamp;
        s.last_arrival = p.arrival;
        Some((seq, p.timestamp.wrapping_add(s.ts_offset)))
    }

    /// Starts a new mapping so that the track's numbering continues where it was.
    fn rebase(&mut self, p: &SourcePacket<'_>) {
        // Extended numbers start at 1 << 16 so that early reordering never goes below zero.
        let ext = (1u64 << 16) | p.seq as u64;
        let (seq_offset, ts_offset) = match &self.source {
            None => (0, 0),
            Some(old) => {
                self.track.stats.restarts.fetch_add(1, Ordering::Relaxed);
                let next_seq = old.max_ext.wrapping_add(old.seq_offset).wrapping_add(1);
                let elapsed = p.arrival.saturating_duration_since(old.last_arrival);
                let ticks = (elapsed.as_secs_f64() * self.track.info.codec.clock_rate() as f64)
                    .max(1.0) as u32;
                let next_ts = old
                    .last_timestamp
                    .wrapping_add(old.ts_offset)
                    .wrapping_add(ticks);
                (
                    next_seq.wrapping_sub(ext),
                    next_ts.wrapping_sub(p.timestamp),
                )
            }
        };
        self.source = Some(SourceState {
            ssrc: p.ssrc,
            max_ext: ext,
            seq_offset,
            ts_offset,
            last_timestamp: p.timestamp,
            last_arrival: p.arrival,
        });
    }

    /// Tracks access units and marks the newest keyframe's first packet (video).
    fn note_keyframe(&mut self, index: u64, seq: u64, timestamp: u32, payload: &[u8]) {
        let codec = self.track.info.codec;
        let keyframe_only = |keyframe| PayloadSummary {
            keyframe,
            slice: true,
            ..PayloadSummary::default()
        };
        let s = match codec {
            Codec::H264 => h264::summarize(payload),
            Codec::H265 => h265::summarize(payload),
            Codec::Vp8 => keyframe_only(keyframes::vp8(payload)),
            Codec::Vp9 => keyframe_only(keyframes::vp9(payload)),
            Codec::Av1 => keyframe_only(keyframes::av1(payload)),
            Codec::Opus | Codec::Pcmu | Codec::Pcma => return,
        };
        let au = match &mut self.access_unit {
            Some(au) if au.timestamp == timestamp => au,
            slot => slot.insert(AccessUnit {
                timestamp,
                start: index,
                next_seq: seq,
                sliced: false,
                sets: (false, false, false),
            }),
        };
        if !au.sliced && seq != au.next_seq {
            // A packet the source lost ahead of the unit's first slice: the unit starts
            // after the hole, as a receiver cannot assemble a frame across one (it would
            // ask for the packet, which the relay never had, then for a keyframe).
            au.start = index;
            au.sets = (false, false, false);
        }
        au.next_seq = seq + 1;
        // An access unit is judged at its first slice: a keyframe if that slice opens an
        // IDR (IRAP) picture, carrying its sets if all came before it. Sets after it (a
        // source joined mid-unit, after the unit's first SPS) come too late for a decoder:
        // its viewers get the last known sets first.
        if !au.sliced {
            au.sets.0 |= s.vps.is_some();
            au.sets.1 |= s.sps.is_some();
            au.sets.2 |= s.pps.is_some();
            if s.slice {
                au.sliced = true;
                if s.keyframe {
                    let v = ((au.start + 1) << 1) | au.carries_sets(codec) as u64;
                    self.track.keyframe.store(v, Ordering::Release);
                }
            }
        }
        if s.vps.is_some() || s.sps.is_some() || s.pps.is_some() {
            // Parameter sets often come in separate packets: publish once all are known.
            let seen = &mut self.parameter_sets;
            // Copied: a slice would keep the source's whole receive chunk alive.
            let own = |b: Option<Bytes>| b.map(|b| Bytes::copy_from_slice(&b));
            seen.vps = own(s.vps).or(seen.vps.take());
            seen.sps = own(s.sps).or(seen.sps.take());
            seen.pps = own(s.pps).or(seen.pps.take());
            let vps_known = codec != Codec::H265 || seen.vps.is_some();
            if let (true, Some(sps), Some(pps)) = (vps_known, &seen.sps, &seen.pps) {
                let sets = ParameterSets {
                    vps: seen.vps.clone(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                };
                self.track.parameter_sets.store(Some(Arc::new(sets)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn video() -> TrackInfo {
        TrackInfo {
            codec: Codec::H264,
            fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
        }
    }

    fn pkt(ssrc: u32, seq: u16, ts: u32, payload: &[u8], at: Instant) -> SourcePacket<'_> {
        SourcePacket {
            ssrc,
            seq,
            timestamp: ts,
            marker: false,
            payload,
            arrival: at,
        }
    }

    /// Keeps `ms` of history, at most `bytes`.
    fn keep(ms: u64, bytes: usize, keyframe_cache: bool) -> Retention {
        Retention {
            duration: Duration::from_millis(ms),
            max_bytes: bytes,
            keyframe_cache,
        }
    }

    /// The newest keyframe `last_keyframe` should give.
    fn keyframe_at(index: u64, has_parameter_sets: bool) -> Option<Keyframe> {
        Some(Keyframe {
            index,
            has_parameter_sets,
        })
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn fan_out_reads_by_index_and_nack_by_seq_for_the_history_duration() {
        let (track, mut w) = Track::new(video(), keep(1000, 1 << 20, false));
        let t0 = Instant::now();
        for i in 0..20u16 {
            let p = pkt(
                1,
                65530u16.wrapping_add(i),
                1000,
                b"\x41x",
                at(t0, i as u64 * 100),
            );
            assert!(w.push(p));
        }
        assert_eq!(track.head(), 20);
        // The newest arrived at 1.9 s: what arrived before 0.9 s is let go.
        assert_eq!(track.tail(), 9);
        assert!(track.get(8).is_none(), "older than historyDuration");
        let newest = track.get(19).unwrap();
        let first = track.get(9).unwrap();
        assert_eq!(
            newest.seq - first.seq,
            10,
            "continuous across the 16-bit wrap"
        );
        assert_eq!(track.by_seq(newest.seq).unwrap().index, 19);
        assert!(track.by_seq(newest.seq + 1).is_none());
        assert!(track.by_seq(first.seq - 1).is_none(), "let go");
        assert_eq!(track.range(0, 20).count(), 11);
        assert_eq!(track.stats.held_packets.load(Ordering::Relaxed), 11);
        assert_eq!(track.stats.held_bytes.load(Ordering::Relaxed), 22);
        assert_eq!(track.stats.held_span_us.load(Ordering::Relaxed), 1_000_000);
        assert_eq!(track.stats.byte_rate(), 22);
    }

    #[test]
    fn empty_payloads_are_held_like_any_packet() {
        // A source may send RTP with no payload (padding only, or a broken camera): the
        // writer stores it, marks no keyframe and keeps its accounts straight.
        let (track, mut w) = Track::new(video(), keep(1000, 1 << 20, true));
        let t0 = Instant::now();
        for i in 0..3u16 {
            assert!(w.push(pkt(1, i, 0, b"", at(t0, u64::from(i)))));
        }
        assert_eq!(
            track.range(0, 3).filter(|p| p.payload.is_empty()).count(),
            3
        );
        assert_eq!(track.last_keyframe(), None);
        assert_eq!(track.stats.held_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(track.stats.byte_rate(), 0);
    }

    #[test]
    fn bytes_bound_the_history_and_the_ring_grows_to_what_it_holds() {
        let (track, mut w) = Track::new(video(), keep(60_000, 100_000, false));
        let t0 = Instant::now();
        static PAYLOAD: [u8; 1000] = [0x41; 1000];
        for i in 0..500u16 {
            w.push(pkt(1, i, i as u32 * 3000, &PAYLOAD, at(t0, i as u64)));
        }
        // 100 packets of 1000 bytes fit; the ring grew past its first 64 slots for them.
        assert_eq!(track.head() - track.tail(), 100);
        assert!(track.range(0, 500).all(|p| p.payload.len() == 1000));
        assert_eq!(track.stats.held_bytes.load(Ordering::Relaxed), 100_000);
    }

    #[test]
    fn the_keyframe_cache_keeps_the_newest_gop_beyond_the_duration() {
        let (track, mut w) = Track::new(video(), keep(500, 1 << 20, true));
        let t0 = Instant::now();
        // An IDR at 0 s then a P frame every 100 ms, for 3 s.
        w.push(pkt(1, 0, 0, b"\x65\x88", t0));
        for i in 1..30u16 {
            w.push(pkt(1, i, i as u32 * 9000, b"\x41p", at(t0, i as u64 * 100)));
        }
        assert_eq!(track.tail(), 0, "the GOP since the keyframe is held");
        assert_eq!(track.last_keyframe().unwrap().index, 0);
        // The next keyframe: the old GOP goes as soon as it is older than the duration.
        w.push(pkt(1, 30, 30 * 9000, b"\x65\x88", at(t0, 3000)));
        w.push(pkt(1, 31, 31 * 9000, b"\x41p", at(t0, 3100)));
        assert_eq!(track.tail(), 26, "2.6 s and after: within 500 ms of 3.1 s");
        // Without the cache, the duration alone decides.
        let (track, mut w) = Track::new(video(), keep(500, 1 << 20, false));
        w.push(pkt(1, 0, 0, b"\x65\x88", t0));
        for i in 1..30u16 {
            w.push(pkt(1, i, i as u32 * 9000, b"\x41p", at(t0, i as u64 * 100)));
        }
        assert_eq!(track.tail(), 24);
    }

    #[test]
    fn the_byte_cap_wins_over_the_keyframe_cache() {
        let (track, mut w) = Track::new(video(), keep(100, 10 * 1000, true));
        let t0 = Instant::now();
        static IDR: [u8; 1000] = {
            let mut p = [0u8; 1000];
            p[0] = 0x65;
            p[1] = 0x88;
            p
        };
        static P: [u8; 1000] = [0x41; 1000];
        w.push(pkt(1, 0, 0, &IDR, t0));
        for i in 1..20u16 {
            w.push(pkt(1, i, i as u32 * 3000, &P, at(t0, i as u64 * 33)));
        }
        assert_eq!(track.head() - track.tail(), 10);
        assert!(
            track.get(track.last_keyframe().unwrap().index).is_none(),
            "the keyframe did not fit: viewers wait for the next"
        );
    }

    proptest::proptest! {
        /// Whatever the source sends (reordering, duplicates, 16-bit wraps, bursts and
        /// pauses, sizes), the history holds exactly what the limits allow: every held
        /// packet readable by index and by sequence number, none older than the duration
        /// but the cached GOP, the bytes within the cap, nothing let go that was allowed.
        #[test]
        fn the_history_holds_what_the_limits_allow(
            start in proptest::prelude::any::<u16>(),
            steps in proptest::collection::vec((-3i16..40, 0u64..120, 1usize..1500, 0u8..20), 1..400),
            duration_ms in 1u64..2000,
            max_bytes in 1500usize..60_000,
            cache in proptest::prelude::any::<bool>(),
        ) {
            let (track, mut w) = Track::new(video(), keep(duration_ms, max_bytes, cache));
            let t0 = Instant::now();
            let (mut seq, mut ms) = (start, 0u64);
            // Arrival and size of each packet the track took, by index.
            let mut pushed = Vec::new();
            for (jump, gap_ms, len, kind) in steps {
                seq = seq.wrapping_add(jump as u16);
                ms += gap_ms;
                let mut payload = vec![0x41; len];
                if kind == 0 {
                    payload[0] = 0x65; // an IDR
                }
                let p = SourcePacket {
                    payload: &payload,
                    ..pkt(1, seq, (ms * 90) as u32, b"", at(t0, ms))
                };
                let arrival = p.arrival;
                if w.push(p) {
                    pushed.push((arrival, len));
                }
                let (head, tail) = (track.head(), track.tail());
                let held: Vec<_> = track.range(0, head).collect();
                proptest::prop_assert_eq!(held.len() as u64, head - tail, "a held packet is missing");
                let bytes: usize = held.iter().map(|p| p.payload.len()).sum();
                proptest::prop_assert!(bytes <= max_bytes.max(held.last().unwrap().payload.len()));
                let newest = held.last().unwrap().arrival;
                let gop = track.last_keyframe().filter(|_| cache).map_or(u64::MAX, |k| k.index);
                for p in &held {
                    proptest::prop_assert_eq!(track.by_seq(p.seq).map(|q| q.index), Some(p.index));
                    let age = newest - p.arrival;
                    proptest::prop_assert!(age <= Duration::from_millis(duration_ms) || p.index >= gop);
                }
                // The newest let go was over a limit when it went. Arrivals only grow, and
                // held bytes shrink only by letting go of what is newer than it, so the
                // limit it was over still shows now: its age or the bytes.
                if let Some(&(arrival, len)) = tail.checked_sub(1).map(|i| &pushed[i as usize]) {
                    let too_old = newest - arrival > Duration::from_millis(duration_ms);
                    proptest::prop_assert!(too_old || bytes + len > max_bytes);
                }
            }
        }
    }

    #[test]
    fn duplicates_are_dropped_and_reordering_kept() {
        let (track, mut w) = Track::new(video(), Retention::default());
        let t0 = Instant::now();
        assert!(w.push(pkt(1, 10, 0, b"\x41", t0)));
        assert!(w.push(pkt(1, 12, 0, b"\x41", t0)));
        assert!(w.push(pkt(1, 11, 0, b"\x41", t0)), "late packet is stored");
        assert!(!w.push(pkt(1, 12, 0, b"\x41", t0)), "duplicate");
        assert_eq!(track.stats.duplicates.load(Ordering::Relaxed), 1);
        let seqs: Vec<u64> = (0..3).map(|i| track.get(i).unwrap().seq).collect();
        assert_eq!(seqs[1] - seqs[0], 2);
        assert_eq!(seqs[2] - seqs[0], 1);
    }

    #[test]
    fn source_restart_keeps_numbering_continuous() {
        let (track, mut w) = Track::new(video(), Retention::default());
        let t0 = Instant::now();
        w.push(pkt(1, 500, 90_000, b"\x41", t0));
        w.push(pkt(1, 501, 93_000, b"\x41", t0));
        // New SSRC with unrelated numbering, 100 ms later.
        w.push(pkt(2, 7, 5, b"\x41", t0 + Duration::from_millis(100)));
        let (a, b) = (track.get(1).unwrap(), track.get(2).unwrap());
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 9000);
        // A big jump within one SSRC is a restart too.
        w.push(pkt(2, 30_000, 10, b"\x41", t0 + Duration::from_millis(100)));
        assert_eq!(track.get(3).unwrap().seq, b.seq + 1);
        assert_eq!(track.stats.restarts.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn keyframe_marks_first_packet_of_access_unit() {
        let (track, mut w) = Track::new(video(), Retention::default());
        let t0 = Instant::now();
        w.push(pkt(1, 1, 0, b"\x41p", t0));
        assert_eq!(track.last_keyframe(), None);
        // Access unit at ts 3000: AUD, then SPS, PPS, then IDR fragments.
        w.push(pkt(1, 2, 3000, b"\x09\x10", t0));
        w.push(pkt(1, 3, 3000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 4, 3000, b"\x68\xce", t0));
        assert_eq!(
            track.last_keyframe(),
            None,
            "sets alone are no keyframe yet"
        );
        w.push(pkt(1, 5, 3000, b"\x7c\x85\x88", t0));
        assert_eq!(track.last_keyframe(), keyframe_at(1, true));
        let sets = track.parameter_sets().unwrap();
        assert_eq!(&sets.sps[..], b"\x67\x42\xe0\x1f");
        assert_eq!(&sets.pps[..], b"\x68\xce");
        // Its SPS lost: the PPS alone does not make the keyframe carry its sets.
        w.push(pkt(1, 6, 4500, b"\x68\xce", t0));
        w.push(pkt(1, 7, 4500, b"\x65\x88", t0));
        assert_eq!(track.last_keyframe(), keyframe_at(5, false));
        // An IDR without parameter sets in band.
        w.push(pkt(1, 8, 6000, b"\x7c\x85\x88", t0));
        assert_eq!(track.last_keyframe(), keyframe_at(7, false));
    }

    /// A source joined mid-unit: what comes after the unit's first slice can neither
    /// make it a keyframe nor give it its sets, as a decoder needs them first.
    #[test]
    fn an_access_unit_is_judged_at_its_first_slice() {
        let (track, mut w) = Track::new(video(), Retention::default());
        let t0 = Instant::now();
        // Joined after the unit's SPS: PPS, the IDR's first slice, then the sets again
        // before its second slice (GStreamer's config-interval=-1 repeats them so).
        w.push(pkt(1, 1, 3000, b"\x68\xce", t0));
        // An empty payload (a peer's malformed packet) is no slice: nothing is judged.
        w.push(pkt(1, 2, 3000, b"", t0));
        assert_eq!(track.last_keyframe(), None);
        w.push(pkt(1, 3, 3000, b"\x65\x88", t0));
        w.push(pkt(1, 4, 3000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 5, 3000, b"\x68\xce", t0));
        w.push(pkt(1, 6, 3000, b"\x65\x08", t0));
        assert_eq!(
            track.last_keyframe(),
            keyframe_at(0, false),
            "its viewers get the known sets injected first"
        );
        assert!(
            track.parameter_sets().is_some(),
            "the sets are still learnt"
        );
        // Joined after the IDR's first slice: the unit is no keyframe.
        let (track, mut w) = Track::new(video(), Retention::default());
        w.push(pkt(1, 1, 3000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 2, 3000, b"\x68\xce", t0));
        w.push(pkt(1, 3, 3000, b"\x65\x08", t0));
        w.push(pkt(1, 4, 3000, b"\x65\x88", t0));
        assert_eq!(track.last_keyframe(), None);
        // Sets with a P frame (some cameras repeat them on every frame): no keyframe.
        w.push(pkt(1, 5, 6000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 6, 6000, b"\x68\xce", t0));
        w.push(pkt(1, 7, 6000, b"\x41\x9a", t0));
        assert_eq!(track.last_keyframe(), None);
        // A fragmented SEI before the sets is no slice: the unit starts at it.
        w.push(pkt(1, 8, 9000, b"\x7c\x86\x05", t0));
        w.push(pkt(1, 9, 9000, b"\x7c\x46\x61", t0));
        w.push(pkt(
            1,
            10,
            9000,
            b"\x78\x00\x04\x67\x42\xe0\x1f\x00\x02\x68\xce",
            t0,
        ));
        w.push(pkt(1, 11, 9000, b"\x65\x88", t0));
        assert_eq!(track.last_keyframe(), keyframe_at(7, true));
        // A hole ahead of the first slice (the source lost a packet): the unit starts
        // after it, with the sets that came after it.
        w.push(pkt(1, 12, 12000, b"\x09\x10", t0));
        w.push(pkt(1, 13, 12000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 15, 12000, b"\x09\x10", t0));
        w.push(pkt(1, 16, 12000, b"\x68\xce", t0));
        w.push(pkt(1, 17, 12000, b"\x65\x88", t0));
        assert_eq!(
            track.last_keyframe(),
            keyframe_at(13, false),
            "the SPS before the hole does not count"
        );
    }

    #[test]
    fn h265_keyframe_and_parameter_sets() {
        let info = TrackInfo {
            codec: Codec::H265,
            fmtp: String::new(),
        };
        let (track, mut w) = Track::new(info, Retention::default());
        let t0 = Instant::now();
        // SPS and PPS without the VPS: not yet a usable set.
        w.push(pkt(1, 1, 3000, &[33 << 1, 1, 0x01], t0));
        w.push(pkt(1, 2, 3000, &[34 << 1, 1, 0xc1], t0));
        assert!(track.parameter_sets().is_none());
        w.push(pkt(1, 3, 3000, &[32 << 1, 1, 0x0c], t0));
        // The CRA's first fragment.
        w.push(pkt(1, 4, 3000, &[49 << 1, 1, 0x80 | 21, 0xaa], t0));
        assert_eq!(track.last_keyframe(), keyframe_at(0, true));
        let sets = track.parameter_sets().unwrap();
        assert_eq!(sets.vps.as_deref(), Some(&[32 << 1, 1, 0x0c][..]));
        assert_eq!(sets.nal_units().len(), 3);
        // A TRAIL_R is no keyframe; an IDR alone is one without parameter sets.
        w.push(pkt(1, 5, 6000, &[1 << 1, 1, 0xbb], t0));
        assert_eq!(track.last_keyframe().unwrap().index, 0);
        w.push(pkt(1, 6, 9000, &[19 << 1, 1, 0xaf], t0));
        assert_eq!(track.last_keyframe(), keyframe_at(5, false));
    }

    #[test]
    fn readers_mask() {
        let (track, _w) = Track::new(video(), Retention::default());
        track.add_reader(0);
        track.add_reader(3);
        assert_eq!(track.readers(), 0b1001);
        track.remove_reader(0);
        assert_eq!(track.readers(), 0b1000);
    }
}
