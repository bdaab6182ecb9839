//! A published track: its packets live once, in a history ring that every viewer reads.
//!
//! One writer (the ingest or the publisher's worker) appends packets through a
//! [`TrackWriter`]; any number of workers read them by index (fan-out), by sequence
//! number (NACK), and from the last keyframe (viewers joining). Readers never block
//! the writer and never copy a packet into a per-viewer buffer: they take an
//! `Arc<Packet>` and build each viewer's frame straight into the send batch.
//!
//! The writer also makes the track's numbering continuous: sequence numbers are
//! extended to 64 bits and timestamps re-based across source restarts (new SSRC,
//! big jumps), so that a viewer's header rewrite is a fixed offset for its whole life.

pub mod h264;
pub mod rewrite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    Opus,
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 => MediaKind::Video,
            Codec::Opus | Codec::Pcmu | Codec::Pcma => MediaKind::Audio,
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::H264 => 90_000,
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// Parses an SDP rtpmap encoding name (case-insensitive).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(Codec::H264),
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

    /// Default history: about two seconds of a 2 Mbit/s video stream, or of 20 ms audio.
    pub fn default_history(&self) -> usize {
        match self.kind() {
            MediaKind::Video => 1024,
            MediaKind::Audio => 128,
        }
    }
}

/// A packet as a source delivered it (header fields parsed, payload without padding).
#[derive(Debug, Clone)]
pub struct SourcePacket {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    pub arrival: Instant,
}

/// A packet in the history ring, numbered by the track.
#[derive(Debug)]
pub struct Packet {
    /// Position in arrival order; the ring slot is `index % capacity`.
    pub index: u64,
    /// Extended sequence number, continuous across source restarts.
    pub seq: u64,
    /// RTP timestamp, continuous across source restarts.
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    pub arrival: Instant,
}

/// H264 parameter sets, kept to start viewers at keyframes that do not carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Bytes,
    pub pps: Bytes,
}

/// Where the newest keyframe starts, for viewers waiting to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Index of the first packet of the keyframe's access unit.
    pub index: u64,
    /// The access unit carries SPS and PPS itself; otherwise send `parameter_sets()` first.
    pub has_parameter_sets: bool,
}

/// Counters kept by the writer, read by metrics.
#[derive(Debug, Default)]
pub struct TrackStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub duplicates: AtomicU64,
    pub restarts: AtomicU64,
}

pub struct Track {
    pub info: TrackInfo,
    slots: Box<[ArcSwapOption<Packet>]>,
    /// Extended sequence number -> index + 1 (0: none), for NACK lookups.
    by_seq: Box<[AtomicU64]>,
    /// Number of packets published; readers may read indices below it.
    head: AtomicU64,
    /// Newest keyframe: ((index + 1) << 1) | has_parameter_sets, 0 when none yet.
    keyframe: AtomicU64,
    parameter_sets: ArcSwapOption<ParameterSets>,
    /// Bit i set: worker i has viewers of this track and wants waking on new packets.
    readers: AtomicU64,
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
    /// A track with room for `history` packets (rounded up to a power of two), and its writer.
    pub fn new(info: TrackInfo, history: usize) -> (Arc<Track>, TrackWriter) {
        let capacity = history.max(16).next_power_of_two();
        let track = Arc::new(Track {
            info,
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
            by_seq: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            head: AtomicU64::new(0),
            keyframe: AtomicU64::new(0),
            parameter_sets: ArcSwapOption::empty(),
            readers: AtomicU64::new(0),
            stats: TrackStats::default(),
        });
        let writer = TrackWriter {
            track: track.clone(),
            source: None,
            access_unit: None,
            parameter_sets: (None, None),
        };
        (track, writer)
    }

    pub fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Number of packets published so far: the next index to be written.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The packet at `index`, unless it is not yet published or already overwritten.
    pub fn get(&self, index: u64) -> Option<Arc<Packet>> {
        let slot = &self.slots[(index % self.capacity()) as usize];
        slot.load_full().filter(|p| p.index == index)
    }

    /// The packet with extended sequence number `seq`, if it is still in the ring.
    pub fn by_seq(&self, seq: u64) -> Option<Arc<Packet>> {
        let at = self.by_seq[(seq % self.capacity()) as usize].load(Ordering::Acquire);
        let index = at.checked_sub(1)?;
        self.get(index).filter(|p| p.seq == seq)
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
    marked: bool,
}

/// The single writer of a track. Not `Clone`: one thread owns it.
pub struct TrackWriter {
    track: Arc<Track>,
    source: Option<SourceState>,
    access_unit: Option<AccessUnit>,
    /// Newest in-band SPS and PPS seen.
    parameter_sets: (Option<Bytes>, Option<Bytes>),
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
    pub fn push(&mut self, p: SourcePacket) -> bool {
        let Some((seq, timestamp)) = self.number(&p) else {
            self.track.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let index = self.track.head.load(Ordering::Relaxed);
        if self.track.info.codec == Codec::H264 {
            self.note_h264(index, timestamp, &p.payload);
        }
        let track = &*self.track;
        let stats = &track.stats;
        stats.packets.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
        let packet = Packet {
            index,
            seq,
            timestamp,
            marker: p.marker,
            payload: p.payload,
            arrival: p.arrival,
        };
        let cap = track.capacity();
        track.slots[(index % cap) as usize].store(Some(Arc::new(packet)));
        track.by_seq[(seq % cap) as usize].store(index + 1, Ordering::Release);
        track.head.store(index + 1, Ordering::Release);
        true
    }

    /// Maps the source's numbering to the track's; None for a duplicate.
    fn number(&mut self, p: &SourcePacket) -> Option<(u64, u32)> {
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
    fn rebase(&mut self, p: &SourcePacket) {
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

    /// Tracks access units and marks the newest keyframe's first packet.
    fn note_h264(&mut self, index: u64, timestamp: u32, payload: &Bytes) {
        let au = match &mut self.access_unit {
            Some(au) if au.timestamp == timestamp => au,
            slot => slot.insert(AccessUnit {
                timestamp,
                start: index,
                marked: false,
            }),
        };
        let s = h264::summarize(payload);
        let has_sets = s.sps.is_some() || s.pps.is_some();
        if has_sets {
            // SPS and PPS often come in separate packets: publish once both are known.
            let sets = &mut self.parameter_sets;
            sets.0 = s.sps.or(sets.0.take());
            sets.1 = s.pps.or(sets.1.take());
            if let (Some(sps), Some(pps)) = sets {
                let sets = ParameterSets {
                    sps: sps.clone(),
                    pps: pps.clone(),
                };
                self.track.parameter_sets.store(Some(Arc::new(sets)));
            }
        }
        if !au.marked && (has_sets || s.idr) {
            au.marked = true;
            let v = ((au.start + 1) << 1) | has_sets as u64;
            self.track.keyframe.store(v, Ordering::Release);
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

    fn pkt(ssrc: u32, seq: u16, ts: u32, payload: &'static [u8], at: Instant) -> SourcePacket {
        SourcePacket {
            ssrc,
            seq,
            timestamp: ts,
            marker: false,
            payload: Bytes::from_static(payload),
            arrival: at,
        }
    }

    #[test]
    fn fan_out_reads_by_index_and_nack_by_seq() {
        let (track, mut w) = Track::new(video(), 16);
        let t0 = Instant::now();
        for i in 0..20u16 {
            assert!(w.push(pkt(1, 65530u16.wrapping_add(i), 1000, b"\x41x", t0)));
        }
        assert_eq!(track.head(), 20);
        assert!(track.get(3).is_none(), "overwritten by the ring");
        let newest = track.get(19).unwrap();
        let first = track.get(4).unwrap();
        assert_eq!(
            newest.seq - first.seq,
            15,
            "continuous across the 16-bit wrap"
        );
        assert_eq!(track.by_seq(newest.seq).unwrap().index, 19);
        assert!(track.by_seq(newest.seq + 1).is_none());
        assert!(track.by_seq(first.seq - 1).is_none());
    }

    #[test]
    fn duplicates_are_dropped_and_reordering_kept() {
        let (track, mut w) = Track::new(video(), 64);
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
        let (track, mut w) = Track::new(video(), 64);
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
        let (track, mut w) = Track::new(video(), 64);
        let t0 = Instant::now();
        w.push(pkt(1, 1, 0, b"\x41p", t0));
        assert_eq!(track.last_keyframe(), None);
        // Access unit at ts 3000: AUD, then SPS, PPS, then IDR fragments.
        w.push(pkt(1, 2, 3000, b"\x09\x10", t0));
        w.push(pkt(1, 3, 3000, b"\x67\x42\xe0\x1f", t0));
        w.push(pkt(1, 4, 3000, b"\x68\xce", t0));
        w.push(pkt(1, 5, 3000, b"\x7c\x85", t0));
        assert_eq!(
            track.last_keyframe(),
            Some(Keyframe {
                index: 1,
                has_parameter_sets: true
            })
        );
        let sets = track.parameter_sets().unwrap();
        assert_eq!(&sets.sps[..], b"\x67\x42\xe0\x1f");
        assert_eq!(&sets.pps[..], b"\x68\xce");
        // An IDR without parameter sets in band.
        w.push(pkt(1, 6, 6000, b"\x7c\x85", t0));
        assert_eq!(
            track.last_keyframe(),
            Some(Keyframe {
                index: 5,
                has_parameter_sets: false
            })
        );
    }

    #[test]
    fn readers_mask() {
        let (track, _w) = Track::new(video(), 16);
        track.add_reader(0);
        track.add_reader(3);
        assert_eq!(track.readers(), 0b1001);
        track.remove_reader(0);
        assert_eq!(track.readers(), 0b1000);
    }
}
