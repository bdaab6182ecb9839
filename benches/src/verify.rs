//! What a verifying viewer checks in every decrypted RTP packet: sequence continuity per
//! SSRC, H264 packetization (RFC 6184: single NAL unit, STAP-A, FU-A in order), the
//! publisher's stamps (`stamp`: end-to-end latency and frames lost), and the moment the
//! first whole keyframe arrived. Sans-IO: packets and clocks come in as arguments.

/// What one packet told, for the caller's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Sequence numbers skipped just before this packet.
    pub skipped: u64,
    /// The packet came at or behind the highest sequence number seen (late or duplicate).
    pub behind: bool,
    /// Not valid H264 RTP, or a fragment out of order with no loss to explain it.
    pub malformed: bool,
    /// A stamp: now minus the publisher's send time, in microseconds.
    pub latency_us: Option<u64>,
    /// A stamp: published frames missing since the previous stamp of the stream.
    pub frames_missing: u64,
    /// This packet completed the first keyframe received whole.
    pub first_keyframe: bool,
}

/// The checks of one viewer, for all its SSRCs.
#[derive(Debug, Default)]
pub struct Verifier {
    streams: Vec<Stream>,
    keyframe_seen: bool,
}

#[derive(Debug)]
struct Stream {
    ssrc: u32,
    highest: u64,
    /// NAL unit type of the FU-A being reassembled.
    fragment: Option<u8>,
    /// The access unit being received holds an IDR slice (or SPS) and lost nothing.
    keyframe: bool,
    /// The access unit being received lost a packet.
    damaged: bool,
    /// Frame counter of the last stamp, per published stream.
    stamps: Vec<(u32, u64)>,
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

impl Verifier {
    /// Checks RTP packet `seq` (extended) of `ssrc`, received at `now_unix_ns`; only
    /// `h264` payloads are parsed.
    pub fn on_rtp(
        &mut self,
        ssrc: u32,
        seq: u64,
        marker: bool,
        payload: &[u8],
        h264: bool,
        now_unix_ns: u64,
    ) -> Observation {
        let mut seen = Observation::default();
        let known = self.streams.iter().position(|s| s.ssrc == ssrc);
        let stream = match known {
            Some(i) => &mut self.streams[i],
            None => {
                self.streams.push(Stream {
                    ssrc,
                    highest: seq,
                    fragment: None,
                    keyframe: false,
                    // A viewer may join mid-frame: then its first frame is damaged.
                    damaged: !h264 || !begins_access_unit(payload),
                    stamps: Vec::new(),
                });
                self.streams.last_mut().unwrap()
            }
        };
        if seq > stream.highest {
            seen.skipped = seq - stream.highest - 1;
            stream.highest = seq;
        } else if known.is_some() {
            seen.behind = true;
            return seen;
        }
        if !h264 {
            return seen;
        }
        if seen.skipped > 0 {
            stream.fragment = None;
            stream.damaged = true;
        }
        match check_h264(stream, payload, now_unix_ns) {
            Ok(stamp) => {
                if let Some((latency_us, missing)) = stamp {
                    seen.latency_us = Some(latency_us);
                    seen.frames_missing = missing;
                }
            }
            Err(()) => {
                seen.malformed = true;
                stream.damaged = true;
            }
        }
        if marker {
            if stream.keyframe && !stream.damaged && !self.keyframe_seen {
                self.keyframe_seen = true;
                seen.first_keyframe = true;
            }
            stream.keyframe = false;
            stream.damaged = false;
            stream.fragment = None;
        }
        seen
    }
}

/// Parses one H264 RTP payload into the stream's state; a stamp gives (latency in
/// microseconds, frames missing before it).
fn check_h264(
    stream: &mut Stream,
    payload: &[u8],
    now_unix_ns: u64,
) -> Result<Option<(u64, u64)>, ()> {
    let (&indicator, rest) = payload.split_first().ok_or(())?;
    if indicator & 0x80 != 0 {
        return Err(()); // forbidden_zero_bit
    }
    match indicator & 0x1f {
        0 | 25..=27 | 29..=31 => Err(()),
        STAP_A => {
            let mut rest = rest;
            while !rest.is_empty() {
                let [hi, lo, tail @ ..] = rest else {
                    return Err(());
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = tail.get(..len).filter(|n| !n.is_empty()).ok_or(())?;
                note_nal_type(stream, nal[0] & 0x1f);
                rest = &tail[len..];
            }
            Ok(None)
        }
        FU_A => {
            let (&header, body) = rest.split_first().ok_or(())?;
            let (start, end, kind) = (header & 0x80 != 0, header & 0x40 != 0, header & 0x1f);
            if body.is_empty() || (start && end) {
                return Err(());
            }
            match (start, stream.fragment) {
                (true, None) => stream.fragment = Some(kind),
                (false, Some(k)) if k == kind => {}
                // A middle or end with no start: the start was lost (not ours to count
                // again), or the sender broke the order.
                (false, None) if stream.damaged => return Ok(None),
                _ => return Err(()),
            }
            note_nal_type(stream, kind);
            if end {
                stream.fragment = None;
            }
            Ok(None)
        }
        kind => {
            if stream.fragment.is_some() {
                return Err(()); // a whole NAL unit inside an unfinished FU-A
            }
            note_nal_type(stream, kind);
            Ok(crate::stamp::Stamp::from_nal(payload).map(|s| {
                let missing = match stream.stamps.iter_mut().find(|(id, _)| *id == s.stream) {
                    Some((_, last)) => {
                        let missing = s.frame.saturating_sub(*last + 1);
                        *last = s.frame;
                        missing
                    }
                    None => {
                        stream.stamps.push((s.stream, s.frame));
                        0
                    }
                };
                (now_unix_ns.saturating_sub(s.sent_unix_ns) / 1000, missing)
            }))
        }
    }
}

/// Whether a payload can be the first of an access unit: a stamp, parameter sets, an
/// aggregate, or the first fragment of an IDR slice (what a relay starting a viewer at a
/// keyframe sends first).
fn begins_access_unit(payload: &[u8]) -> bool {
    match payload {
        [indicator, rest @ ..] => match indicator & 0x1f {
            6..=9 | STAP_A | NAL_IDR => true,
            FU_A => rest
                .first()
                .is_some_and(|h| h & 0x80 != 0 && h & 0x1f == NAL_IDR),
            _ => false,
        },
        [] => false,
    }
}

fn note_nal_type(stream: &mut Stream, kind: u8) {
    if kind == NAL_IDR || kind == NAL_SPS {
        stream.keyframe = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Stamp;

    const SSRC: u32 = 7;

    fn fu(start: bool, end: bool, kind: u8) -> Vec<u8> {
        let mut header = kind;
        if start {
            header |= 0x80;
        }
        if end {
            header |= 0x40;
        }
        vec![0x60 | FU_A, header, 0xaa, 0xbb]
    }

    fn stamp(frame: u64, sent: u64) -> Vec<u8> {
        Stamp {
            stream: 3,
            frame,
            sent_unix_ns: sent,
        }
        .to_nal()
    }

    /// A keyframe as three fragments after a stamp, from `seq`.
    fn keyframe(v: &mut Verifier, seq: u64, frame: u64) -> Vec<Observation> {
        vec![
            v.on_rtp(SSRC, seq, false, &stamp(frame, 1_000_000), true, 3_500_000),
            v.on_rtp(SSRC, seq + 1, false, &fu(true, false, NAL_IDR), true, 0),
            v.on_rtp(SSRC, seq + 2, false, &fu(false, false, NAL_IDR), true, 0),
            v.on_rtp(SSRC, seq + 3, true, &fu(false, true, NAL_IDR), true, 0),
        ]
    }

    #[test]
    fn a_clean_stream_passes_and_the_first_whole_keyframe_is_marked() {
        let mut v = Verifier::default();
        // Joined mid-frame: the end of a P frame, then a whole keyframe.
        let tail = v.on_rtp(SSRC, 10, true, &fu(false, true, 1), true, 0);
        assert_eq!(
            tail,
            Observation::default(),
            "a lost start is not malformed"
        );
        let seen = keyframe(&mut v, 11, 40);
        assert_eq!(seen[0].latency_us, Some(2500), "3.5 ms - 1 ms");
        assert!(seen.iter().all(|o| !o.malformed && o.skipped == 0));
        assert!(seen[3].first_keyframe);
        let again = keyframe(&mut v, 15, 41);
        assert!(!again[3].first_keyframe, "only the first");
        assert_eq!(again[0].frames_missing, 0);
    }

    #[test]
    fn a_viewer_started_on_a_keyframe_counts_it() {
        let mut v = Verifier::default();
        let seen = keyframe(&mut v, 100, 7);
        assert!(seen[3].first_keyframe, "the stamp begins the access unit");
        let mut v = Verifier::default();
        let mid = v.on_rtp(SSRC, 5, false, &fu(false, false, NAL_IDR), true, 0);
        let end = v.on_rtp(SSRC, 6, true, &fu(false, true, NAL_IDR), true, 0);
        assert!(
            !mid.malformed && !end.first_keyframe,
            "joined inside the keyframe"
        );
    }

    #[test]
    fn loss_damages_the_frame_and_skipped_stamps_count_frames() {
        let mut v = Verifier::default();
        v.on_rtp(SSRC, 1, true, &[0x61, 0], true, 0); // a whole P frame, ends the join
        let seen = [
            v.on_rtp(SSRC, 2, false, &stamp(5, 0), true, 0),
            v.on_rtp(SSRC, 3, false, &fu(true, false, NAL_IDR), true, 0),
            // 4 lost
            v.on_rtp(SSRC, 5, true, &fu(false, true, NAL_IDR), true, 0),
        ];
        assert_eq!(seen[2].skipped, 1);
        assert!(
            !seen[2].malformed && !seen[2].first_keyframe,
            "damaged keyframe"
        );
        let next = keyframe(&mut v, 6, 9);
        assert_eq!(next[0].frames_missing, 3, "frames 6, 7, 8");
        assert!(next[3].first_keyframe);
    }

    #[test]
    fn broken_packetization_is_malformed() {
        let mut v = Verifier::default();
        v.on_rtp(SSRC, 1, true, &[0x61, 0], true, 0);
        let bad =
            |v: &mut Verifier, seq, payload: &[u8]| v.on_rtp(SSRC, seq, false, payload, true, 0);
        assert!(bad(&mut v, 2, &[]).malformed, "empty");
        assert!(bad(&mut v, 3, &[0x80 | 1, 0]).malformed, "forbidden bit");
        assert!(bad(&mut v, 4, &[0x60 | 30, 0]).malformed, "reserved type");
        assert!(
            bad(&mut v, 5, &[0x78, 0, 9, 0x65]).malformed,
            "STAP-A overrun"
        );
        v.on_rtp(SSRC, 6, true, &[0x61, 0], true, 0);
        assert!(
            bad(&mut v, 7, &fu(false, true, 1)).malformed,
            "an end with no start"
        );
        assert!(!bad(&mut v, 8, &fu(true, false, 1)).malformed);
        assert!(
            bad(&mut v, 9, &[0x61, 0]).malformed,
            "a NAL unit inside a FU-A"
        );
        let opus = v.on_rtp(9, 1, false, &[0xff], false, 0);
        assert!(!opus.malformed, "not H264: not parsed");
    }

    #[test]
    fn late_and_duplicate_packets_are_behind() {
        let mut v = Verifier::default();
        v.on_rtp(SSRC, 1, true, &[0x61, 0], true, 0);
        v.on_rtp(SSRC, 3, true, &[0x61, 0], true, 0);
        assert!(v.on_rtp(SSRC, 2, true, &[0x61, 0], true, 0).behind);
        assert!(v.on_rtp(SSRC, 3, true, &[0x61, 0], true, 0).behind);
        let other = v.on_rtp(8, 1, true, &[0x61, 0], true, 0);
        assert!(!other.behind && other.skipped == 0, "SSRCs apart");
    }
}
