//! The built-in demo: a short H264 clip (assets/demo.h264, made by assets/make-demo.sh)
//! packetized once at start (RFC 6184 single NAL units and FU-A) and played looped in
//! real time with continuous sequence numbers and timestamps. Sans-IO: the caller
//! brings the clock.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::track::h264::{FU_A, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::track::{Codec, ParameterSets, SourcePacket, TrackInfo};

/// Annex B, 640x360, 30 fps, 6 s, constrained baseline, IDR + SPS/PPS every 30 frames.
pub static DEMO_H264: &[u8] = include_bytes!("../../assets/demo.h264");

pub const FPS: u32 = 30;
const TICKS_PER_FRAME: u32 = 90_000 / FPS;

/// What a packet gains between here and a viewer: the RTP header (12), the SRTP
/// AEAD tag (16), and room for the header extensions a session may add (12).
pub const PACKET_OVERHEAD: usize = 40;

/// Frames sent at once when the thread was late; later than that, the schedule starts
/// again from now: a stall shows as a pause, not as a burst of old video.
const MAX_CATCH_UP: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipError {
    #[error(
        "udpMaxPayloadSize {0} leaves no room for H264 after {PACKET_OVERHEAD} bytes of headers"
    )]
    PayloadTooSmall(usize),
    #[error("the clip has no SPS and PPS")]
    NoParameterSets,
    #[error("the clip does not start with an IDR access unit")]
    NoKeyframe,
}

/// The NAL units of an Annex B stream, without start codes and the zero bytes before them.
pub fn nal_units(data: &[u8]) -> Vec<Range<usize>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let trim = |mut end: usize, start: usize| {
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        end
    };
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let next = starts.get(k + 1).map_or(data.len(), |&s| s - 3);
            start..trim(next, start)
        })
        .filter(|r| !r.is_empty())
        .collect()
}

fn is_vcl(nal: &[u8]) -> bool {
    matches!(nal[0] & 0x1f, 1..=5)
}

/// Groups NAL units into access units (H.264 7.4.1.2.3): a new one starts at an
/// SPS/PPS/SEI/AUD, or at a slice with first_mb_in_slice 0, after the current one's slices.
pub fn access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_vcl = false;
    for &nal in nals {
        let first_slice = is_vcl(nal) && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_unit = first_slice || matches!(nal[0] & 0x1f, 6..=9 | 14..=18);
        if units.is_empty() || (has_vcl && starts_unit) {
            units.push(Vec::new());
            has_vcl = false;
        }
        has_vcl |= is_vcl(nal);
        units.last_mut().expect("pushed above").push(nal);
    }
    units
}

/// Packetizes one NAL unit (RFC 6184): whole when it fits `max`, else FU-A fragments.
pub fn packetize(nal: &Bytes, max: usize, out: &mut Vec<Bytes>) {
    if nal.len() <= max {
        out.push(nal.clone());
        return;
    }
    let indicator = (nal[0] & 0xe0) | FU_A;
    let nal_type = nal[0] & 0x1f;
    let body = &nal[1..];
    let chunks = body.chunks(max - 2);
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.enumerate() {
        let start = if i == 0 { 0x80 } else { 0 };
        let end = if i == last { 0x40 } else { 0 };
        let mut p = BytesMut::with_capacity(2 + chunk.len());
        p.put_u8(indicator);
        p.put_u8(start | end | nal_type);
        p.put_slice(chunk);
        out.push(p.freeze());
    }
}

/// The clip, packetized once; every demo path plays it.
#[derive(Debug)]
pub struct Clip {
    packets: Vec<Bytes>,
    /// Packets of frame i.
    frames: Vec<Range<usize>>,
    pub parameter_sets: ParameterSets,
    pub info: TrackInfo,
}

impl Clip {
    /// `max_payload` is the UDP payload limit of viewers' packets (udpMaxPayloadSize).
    pub fn new(annexb: Bytes, max_payload: usize) -> Result<Clip, ClipError> {
        let budget = max_payload
            .checked_sub(PACKET_OVERHEAD)
            .filter(|b| *b >= 3)
            .ok_or(ClipError::PayloadTooSmall(max_payload))?;
        let nals: Vec<Bytes> = nal_units(&annexb)
            .into_iter()
            .map(|r| annexb.slice(r))
            .collect();
        let find = |t: u8| nals.iter().find(|n| n[0] & 0x1f == t).cloned();
        let (Some(sps), Some(pps)) = (find(NAL_SPS), find(NAL_PPS)) else {
            return Err(ClipError::NoParameterSets);
        };
        let slices: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
        let units = access_units(&slices);
        if !units
            .first()
            .is_some_and(|u| u.iter().any(|n| n[0] & 0x1f == NAL_IDR))
        {
            return Err(ClipError::NoKeyframe);
        }
        let mut packets = Vec::new();
        let mut frames = Vec::with_capacity(units.len());
        let mut nal = nals.iter();
        for unit in &units {
            let start = packets.len();
            for _ in unit {
                packetize(nal.next().expect("same NALs"), budget, &mut packets);
            }
            frames.push(start..packets.len());
        }
        let info = TrackInfo {
            codec: Codec::H264,
            fmtp: format!(
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={:02x}{:02x}{:02x}",
                sps.get(1).copied().unwrap_or(0x42),
                sps.get(2).copied().unwrap_or(0xc0),
                sps.get(3).copied().unwrap_or(0x1e)
            ),
        };
        Ok(Clip {
            packets,
            frames,
            parameter_sets: ParameterSets {
                vps: None,
                sps,
                pps,
            },
            info,
        })
    }

    /// The embedded demo clip.
    pub fn demo(max_payload: usize) -> Result<Clip, ClipError> {
        Clip::new(Bytes::from_static(DEMO_H264), max_payload)
    }

    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Every RTP payload of one loop of the clip, in sending order.
    pub fn packets(&self) -> &[Bytes] {
        &self.packets
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.frames() as u64) / FPS
    }
}

/// Real-time schedule of frames: frame k is due at `anchor + k / fps`.
#[derive(Debug, Clone)]
pub struct Pacer {
    anchor: Instant,
    next: u64,
}

impl Pacer {
    /// The first frame is due at `start`.
    pub fn new(start: Instant) -> Pacer {
        Pacer {
            anchor: start,
            next: 0,
        }
    }

    pub fn next_due(&self) -> Instant {
        self.anchor + Duration::from_nanos(self.next * 1_000_000_000 / FPS as u64)
    }

    /// How many frames to send at `now` (0 to `MAX_CATCH_UP`).
    pub fn due(&mut self, now: Instant) -> u32 {
        let mut count = 0;
        while self.next_due() <= now {
            if count == MAX_CATCH_UP {
                // Too late to catch up: the next frame is one interval from now.
                self.anchor = now;
                self.next = 1;
                break;
            }
            self.next += 1;
            count += 1;
        }
        count
    }
}

/// One demo path's playback: the clip looped, numbered as one endless stream.
#[derive(Debug)]
pub struct DemoPlayer {
    clip: Arc<Clip>,
    ssrc: u32,
    seq: u16,
    first_timestamp: u32,
    /// Frames played so far, across loops.
    played: u64,
    pacer: Pacer,
}

impl DemoPlayer {
    /// Starts at `start` with the given SSRC, first sequence number and first timestamp.
    pub fn new(clip: Arc<Clip>, start: Instant, ssrc: u32, seq: u16, timestamp: u32) -> Self {
        DemoPlayer {
            clip,
            ssrc,
            seq,
            first_timestamp: timestamp,
            played: 0,
            pacer: Pacer::new(start),
        }
    }

    /// With a random SSRC, sequence number and timestamp (RFC 3550 5.1).
    pub fn random(clip: Arc<Clip>, start: Instant) -> Self {
        DemoPlayer::new(
            clip,
            start,
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u32(..),
        )
    }

    pub fn next_due(&self) -> Instant {
        self.pacer.next_due()
    }

    /// Hands `out` the packets of every frame due at `now`; returns how many.
    pub fn play(&mut self, now: Instant, out: &mut impl FnMut(SourcePacket)) -> usize {
        let mut sent = 0;
        for _ in 0..self.pacer.due(now) {
            let frame =
                self.clip.frames[(self.played % self.clip.frames() as u64) as usize].clone();
            let timestamp = self
                .first_timestamp
                .wrapping_add((self.played as u32).wrapping_mul(TICKS_PER_FRAME));
            let last = frame.end - 1;
            for i in frame {
                out(SourcePacket {
                    ssrc: self.ssrc,
                    seq: self.seq,
                    timestamp,
                    marker: i == last,
                    payload: &self.clip.packets[i],
                    arrival: now,
                });
                self.seq = self.seq.wrapping_add(1);
                sent += 1;
            }
            self.played += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Track;

    fn clip_nals() -> Vec<&'static [u8]> {
        nal_units(DEMO_H264)
            .into_iter()
            .map(|r| &DEMO_H264[r])
            .collect()
    }

    /// Reassembles single NAL and FU-A payloads (the test's own depacketizer).
    fn depacketize(packets: &[Bytes]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in packets {
            if p[0] & 0x1f != FU_A {
                assert!(fu.is_none(), "single NAL inside a fragmented one");
                nals.push(p.to_vec());
                continue;
            }
            let (start, end) = (p[1] & 0x80 != 0, p[1] & 0x40 != 0);
            if start {
                assert!(fu.is_none(), "FU-A start before the previous ended");
                fu = Some(vec![(p[0] & 0xe0) | (p[1] & 0x1f)]);
            }
            let nal = fu.as_mut().expect("FU-A continuation without a start");
            nal.extend_from_slice(&p[2..]);
            if end {
                nals.push(fu.take().unwrap());
            }
        }
        assert!(fu.is_none(), "unfinished FU-A");
        nals
    }

    #[test]
    fn clip_is_what_make_demo_promises() {
        let nals = clip_nals();
        let units = access_units(&nals);
        assert_eq!(units.len(), 180, "6 s at 30 fps");
        for (i, unit) in units.iter().enumerate() {
            let types: Vec<u8> = unit.iter().map(|n| n[0] & 0x1f).collect();
            if i % 30 == 0 {
                assert_eq!(types, [NAL_SPS, NAL_PPS, NAL_IDR], "frame {i}");
            } else {
                assert_eq!(types, [1], "frame {i}: one non-IDR slice");
            }
        }
        assert_eq!(
            &nals[0][..4],
            &[0x67, 0x42, 0xc0, 0x1e],
            "constrained baseline 3.0"
        );
    }

    #[test]
    fn annex_b_splitting_handles_both_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 0, 1, 0x65, 3, 0,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).into_iter().map(|r| &data[r]).collect();
        assert_eq!(nals, [&[0x67, 1][..], &[0x68, 2], &[0x65, 3]]);
        assert!(nal_units(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn packetizer_output_depacketizes_to_the_same_nal_units() {
        let nals = clip_nals();
        for max in [3, 200, 1412] {
            let mut packets = Vec::new();
            for nal in &nals {
                packetize(&Bytes::from_static(nal), max, &mut packets);
            }
            assert!(packets.iter().all(|p| p.len() <= max));
            let back = depacketize(&packets);
            assert_eq!(back.len(), nals.len());
            assert!(back.iter().zip(&nals).all(|(a, b)| a == b), "max {max}");
        }
    }

    #[test]
    fn payload_budget_follows_udp_max_payload_size() {
        let clip = Clip::demo(1452).unwrap();
        let biggest = clip.packets.iter().map(Bytes::len).max().unwrap();
        assert_eq!(biggest, 1452 - PACKET_OVERHEAD);
        assert_eq!(clip.frames(), 180);
        assert_eq!(clip.duration(), Duration::from_secs(6));
        assert!(clip.info.fmtp.contains("profile-level-id=42c01e"));
        assert_eq!(Clip::demo(42).unwrap_err(), ClipError::PayloadTooSmall(42));
        let no_sets = Bytes::from_static(&[0, 0, 1, 0x65, 0x88]);
        assert_eq!(
            Clip::new(no_sets, 1452).unwrap_err(),
            ClipError::NoParameterSets
        );
    }

    /// A packet played, kept.
    struct Played {
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Vec<u8>,
    }

    /// Plays `frames` frames from a clock that is always exactly on time.
    fn play_frames(player: &mut DemoPlayer, start: Instant, frames: u64) -> Vec<Played> {
        let mut out = Vec::new();
        let mut keep = |p: SourcePacket<'_>| {
            out.push(Played {
                ssrc: p.ssrc,
                seq: p.seq,
                timestamp: p.timestamp,
                marker: p.marker,
                payload: p.payload.to_vec(),
            })
        };
        for k in 0..frames {
            let now = start + Duration::from_nanos(k * 1_000_000_000 / FPS as u64);
            assert!(player.play(now, &mut keep) > 0, "frame {k} due");
        }
        out
    }

    #[test]
    fn numbering_is_continuous_across_the_loop_point() {
        let clip = Arc::new(Clip::demo(1452).unwrap());
        let per_loop = clip.frames[clip.frames() - 1].end;
        let t0 = Instant::now();
        // Start near the wrap of both counters.
        let mut player = DemoPlayer::new(clip.clone(), t0, 7, 65_000, u32::MAX - 10_000);
        let packets = play_frames(&mut player, t0, clip.frames() as u64 + 31);
        for w in packets.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
            assert!(step == 0 || step == 3000, "timestamp step {step}");
            assert_eq!(step == 3000, w[0].marker, "marker ends each frame");
        }
        let (last, first_again) = (&packets[per_loop - 1], &packets[per_loop]);
        assert!(last.marker);
        assert_eq!(first_again.seq, last.seq.wrapping_add(1));
        assert_eq!(first_again.timestamp, last.timestamp.wrapping_add(3000));
        assert_eq!(
            first_again.payload, packets[0].payload,
            "the clip starts over"
        );
        assert!(packets.iter().all(|p| p.ssrc == 7));
    }

    #[test]
    fn keyframes_are_marked_at_the_first_packet_of_each_idr_unit() {
        let clip = Arc::new(Clip::demo(1452).unwrap());
        let (track, mut writer) = Track::new(
            clip.info.clone(),
            crate::track::history::Retention::default(),
        );
        let t0 = Instant::now();
        let mut player = DemoPlayer::new(clip.clone(), t0, 1, 0, 0);
        let mut frame_starts = Vec::new();
        for k in 0..(clip.frames() as u64 + 40) {
            let now = t0 + Duration::from_nanos(k * 1_000_000_000 / FPS as u64);
            frame_starts.push(track.head());
            player.play(now, &mut |p| {
                writer.push(p);
            });
            let newest_idr = k - k % 30;
            let kf = track.last_keyframe().expect("frame 0 is an IDR");
            assert_eq!(
                kf.index, frame_starts[newest_idr as usize],
                "after frame {k}"
            );
            assert!(kf.has_parameter_sets);
            assert_eq!(track.get(kf.index).unwrap().payload[0] & 0x1f, NAL_SPS);
        }
        assert_eq!(
            track.parameter_sets().as_deref(),
            Some(&clip.parameter_sets)
        );
    }

    #[test]
    fn pacer_sends_on_time_and_bounds_catch_up() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let ms = Duration::from_millis;
        assert_eq!(pacer.due(t0), 1);
        assert_eq!(pacer.due(t0 + ms(20)), 0);
        assert_eq!(pacer.next_due(), t0 + Duration::from_nanos(33_333_333));
        assert_eq!(pacer.due(t0 + ms(34)), 1);
        assert_eq!(pacer.due(t0 + ms(100)), 2, "two frames late: both now");
        // Five seconds late: a few frames, then the schedule restarts from now.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(pacer.due(late), MAX_CATCH_UP);
        assert_eq!(pacer.due(late), 0);
        assert_eq!(pacer.next_due(), late + Duration::from_nanos(33_333_333));
        // No drift: frame 300 after the restart is due exactly 10 s later.
        let mut sent = 0;
        for ms_step in 1..=10_000 {
            sent += pacer.due(late + ms(ms_step));
        }
        assert_eq!(sent, 300);
    }
}
