//! RTP packets pushed over UDP (RFC 3550): header parsing and payload-type demux, sans-IO.
//! Hand-written because it is the ingest's per-packet path and a dozen lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::track::{SourcePacket, TrackWriter};

/// An RTP packet borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Without CSRCs, header extension and padding.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("CSRC list runs past the end")]
    Csrc,
    #[error("header extension runs past the end")]
    Extension,
    #[error("padding count is zero or larger than the payload")]
    Padding,
}

const HEADER: usize = 12;

/// Parses an RTP header (RFC 3550 5.1).
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < HEADER {
        return Err(RtpError::TooShort);
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrcs = (buf[0] & 0x0f) as usize;
    let mut start = HEADER + 4 * csrcs;
    if start > buf.len() {
        return Err(RtpError::Csrc);
    }
    if extension {
        let ext = buf.get(start..start + 4).ok_or(RtpError::Extension)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
        if start > buf.len() {
            return Err(RtpError::Extension);
        }
    }
    let mut end = buf.len();
    if padding {
        let count = buf[end - 1] as usize;
        if count == 0 || count > end - start {
            return Err(RtpError::Padding);
        }
        end -= count;
    }
    Ok(RtpPacket {
        payload_type: buf[1] & 0x7f,
        marker: buf[1] & 0x80 != 0,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[start..end],
    })
}

/// RTCP multiplexed on the RTP port (RFC 5761 4): a compound packet starts with one of
/// SR, RR, SDES, BYE, APP, RTPFB, PSFB or XR (200-207). Narrower than RFC 5761's 192-223
/// so that a marked RTP packet of payload type 64-71 or 80-95 still counts as RTP.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 8 && buf[0] >> 6 == 2 && RTCP_TYPES.contains(&buf[1])
}

/// RTCP packet types 200-207; RTP payload types 72-79 would collide with them.
pub const RTCP_TYPES: std::ops::RangeInclusive<u8> = 200..=207;

/// Counters of one path, shared with [`super::Ingest::stats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown_payload_type: AtomicU64,
    pub rtcp: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The tracks of one RTP port, told apart by payload type.
pub struct RtpDemux {
    /// Payload type -> index in `writers`.
    by_pt: [Option<u8>; 128],
    writers: Vec<TrackWriter>,
    /// Worker mask to wake at the end of the batch.
    wake: u64,
}

impl RtpDemux {
    pub fn new(tracks: Vec<(u8, TrackWriter)>) -> RtpDemux {
        let mut by_pt = [None; 128];
        let mut writers = Vec::with_capacity(tracks.len());
        for (i, (pt, writer)) in tracks.into_iter().enumerate() {
            by_pt[pt as usize & 0x7f] = Some(i as u8);
            writers.push(writer);
        }
        RtpDemux {
            by_pt,
            writers,
            wake: 0,
        }
    }

    /// Routes one datagram to its track; RTCP is ignored and bad input counted.
    pub fn on_datagram(&mut self, data: &[u8], arrival: Instant, counters: &Counters) {
        if is_rtcp(data) {
            return Counters::add(&counters.rtcp);
        }
        let p = match parse(data) {
            Ok(p) => p,
            Err(_) => return Counters::add(&counters.malformed),
        };
        let Some(track) = self.by_pt[p.payload_type as usize] else {
            return Counters::add(&counters.unknown_payload_type);
        };
        Counters::add(&counters.received);
        // Straight out of the receive batch: the writer copies it into the track's
        // history.
        let writer = &mut self.writers[track as usize];
        writer.push(SourcePacket {
            ssrc: p.ssrc,
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            payload: p.payload,
            arrival,
        });
        self.wake |= writer.track().readers();
    }

    /// The workers to wake for the packets routed since the last call.
    pub fn take_wake_mask(&mut self) -> u64 {
        std::mem::take(&mut self.wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{Codec, Track, TrackInfo};

    fn packet(first: u8, pt: u8, tail: &[u8]) -> Vec<u8> {
        let mut p = vec![
            first, pt, 0x12, 0x34, 0, 0, 0x0b, 0xb8, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn parses_plain_header() {
        let buf = packet(0x80, 0x80 | 96, b"abc");
        let p = parse(&buf).unwrap();
        assert_eq!(
            p,
            RtpPacket {
                payload_type: 96,
                marker: true,
                seq: 0x1234,
                timestamp: 3000,
                ssrc: 0xdeadbeef,
                payload: b"abc",
            }
        );
        assert_eq!(parse(&packet(0x80, 0, b"")).unwrap().payload, b"");
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        // Two CSRCs, a one-word extension, 3 bytes of padding.
        let mut tail = vec![0; 8];
        tail.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        tail.extend_from_slice(b"media");
        tail.extend_from_slice(&[0, 0, 3]);
        let buf = packet(0x80 | 0x20 | 0x10 | 2, 96, &tail);
        assert_eq!(parse(&buf).unwrap().payload, b"media");
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x80]), Err(RtpError::TooShort));
        assert!(!is_rtcp(&[]) && !is_rtcp(&[0x80]) && !is_rtcp(&[0x80, 200]));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(parse(&packet(0x40, 96, b"x")), Err(RtpError::Version(1)));
        assert_eq!(parse(&packet(0x80 | 3, 96, &[0; 8])), Err(RtpError::Csrc));
        assert_eq!(
            parse(&packet(0x90, 96, &[0xbe, 0xde])),
            Err(RtpError::Extension)
        );
        assert_eq!(
            parse(&packet(0x90, 96, &[0xbe, 0xde, 0, 2, 0, 0, 0, 0])),
            Err(RtpError::Extension)
        );
        assert_eq!(parse(&packet(0xa0, 96, b"ab\x00")), Err(RtpError::Padding));
        assert_eq!(parse(&packet(0xa0, 96, b"ab\x04")), Err(RtpError::Padding));
        // Padding that eats the whole payload is legal (padding-only packets).
        assert_eq!(parse(&packet(0xa0, 96, b"ab\x03")).unwrap().payload, b"");
    }

    #[test]
    fn demux_routes_by_payload_type_and_counts_the_rest() {
        let (video, vw) = Track::new(
            TrackInfo {
                codec: Codec::H264,
                fmtp: String::new(),
            },
            crate::track::history::Retention::default(),
        );
        let (audio, aw) = Track::new(
            TrackInfo {
                codec: Codec::Pcmu,
                fmtp: String::new(),
            },
            crate::track::history::Retention::default(),
        );
        audio.add_reader(2);
        let mut demux = RtpDemux::new(vec![(96, vw), (0, aw)]);
        let counters = Counters::default();
        let now = Instant::now();
        demux.on_datagram(&packet(0x80, 96, b"\x65idr"), now, &counters);
        demux.on_datagram(&packet(0x80, 0, b"ulaw"), now, &counters);
        demux.on_datagram(&packet(0x80, 97, b"other"), now, &counters);
        demux.on_datagram(&packet(0x20, 96, b"v0"), now, &counters);
        // An RTCP sender report (PT 200) on the same port.
        demux.on_datagram(&[0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0], now, &counters);
        // A marked RTP packet of payload type 64 (second byte 192) is not RTCP.
        demux.on_datagram(&packet(0x80, 0x80 | 64, b"x"), now, &counters);
        assert_eq!(video.head(), 1);
        assert_eq!(&video.get(0).unwrap().payload[..], b"\x65idr");
        assert_eq!(&audio.get(0).unwrap().payload[..], b"ulaw");
        assert_eq!(counters.received.load(Ordering::Relaxed), 2);
        assert_eq!(counters.unknown_payload_type.load(Ordering::Relaxed), 2);
        assert_eq!(counters.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.rtcp.load(Ordering::Relaxed), 1);
        assert_eq!(demux.take_wake_mask(), 0b100);
        assert_eq!(demux.take_wake_mask(), 0);
    }
}
