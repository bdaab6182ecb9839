//! A viewer's view of a track: the RTP header each packet gets on its way out.
//!
//! Every viewer has its own SSRC, payload type, and random starting sequence number
//! and timestamp (RFC 3550 5.1). Because the track's own numbering is continuous,
//! the mapping is two fixed offsets for the viewer's whole life, so retransmissions
//! map back to the ring by subtraction.
//!
//! A viewer that negotiated RTX (RFC 4588) gets its retransmissions on a stream of
//! their own: the RTX SSRC and payload type, the RTX stream's own sequence numbers, the
//! packet's timestamp and marker, and the original sequence number (OSN) as the first
//! two bytes of the payload.

use super::Packet;

pub const HEADER_LEN: usize = 12;
/// What an RTX packet carries before the original payload: the OSN.
pub const OSN_LEN: usize = 2;

/// One viewer's RTX stream for one media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxStream {
    pub ssrc: u32,
    pub pt: u8,
    /// Extended sequence number of the next RTX packet (high bits: the ROC).
    next_seq: u64,
}

impl RtxStream {
    /// A stream whose first packet is numbered `seq` (kept below 2^15, as in
    /// [`Rewrite::starting_at`]).
    pub fn new(ssrc: u32, pt: u8, seq: u16) -> RtxStream {
        RtxStream {
            ssrc,
            pt,
            next_seq: u64::from(seq & 0x7fff),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub ssrc: u32,
    pub pt: u8,
    /// Outgoing extended sequence number = track sequence number + seq_offset (mod 2^64).
    seq_offset: u64,
    /// Outgoing timestamp = track timestamp + ts_offset (mod 2^32).
    ts_offset: u32,
    /// The first outgoing sequence number: nothing before it was ever sent.
    first_seq: u64,
}

impl Rewrite {
    /// Numbering such that `first` leaves with sequence number `seq` and timestamp `ts`.
    /// `seq` stays below 2^15 so the rollover counter starts at zero with room to spare.
    pub fn starting_at(first: &Packet, ssrc: u32, pt: u8, seq: u16, ts: u32) -> Rewrite {
        Rewrite::going_on_at(first, ssrc, pt, (seq & 0x7fff) as u64, ts)
    }

    /// Numbering such that `first` leaves with extended sequence number `seq` and
    /// timestamp `ts`: for a viewer that goes on after a skip, its numbering unbroken
    /// (NACKs for what it was sent before the skip are no longer mapped).
    pub fn going_on_at(first: &Packet, ssrc: u32, pt: u8, seq: u64, ts: u32) -> Rewrite {
        Rewrite {
            ssrc,
            pt,
            seq_offset: seq.wrapping_sub(first.seq),
            ts_offset: ts.wrapping_sub(first.timestamp),
            first_seq: seq,
        }
    }

    /// Outgoing extended sequence number of a track packet (its high bits are the ROC).
    pub fn seq(&self, track_seq: u64) -> u64 {
        track_seq.wrapping_add(self.seq_offset)
    }

    pub fn timestamp(&self, track_timestamp: u32) -> u32 {
        track_timestamp.wrapping_add(self.ts_offset)
    }

    /// Writes the 12-byte header for `p`; returns the outgoing extended sequence number.
    pub fn write_header(&self, p: &Packet, buf: &mut [u8]) -> u64 {
        let seq = self.seq(p.seq);
        let ts = self.timestamp(p.timestamp);
        fixed_header(buf, self.pt, p.marker, seq as u16, ts, self.ssrc);
        seq
    }

    /// Writes the RTX header for a resend of `p` and the OSN after it
    /// (`HEADER_LEN + OSN_LEN` bytes), taking the next number of `rtx`; returns the RTX
    /// extended sequence number.
    pub fn write_rtx_header(&self, p: &Packet, rtx: &mut RtxStream, buf: &mut [u8]) -> u64 {
        let seq = rtx.next_seq;
        rtx.next_seq += 1;
        let ts = self.timestamp(p.timestamp);
        fixed_header(buf, rtx.pt, p.marker, seq as u16, ts, rtx.ssrc);
        let osn = self.seq(p.seq) as u16;
        buf[HEADER_LEN..HEADER_LEN + OSN_LEN].copy_from_slice(&osn.to_be_bytes());
        seq
    }

    /// The track sequence number of an outgoing 16-bit one the viewer names in a NACK,
    /// unwrapped next to `newest` (the newest outgoing extended number). None when it
    /// names something before the viewer's first packet.
    pub fn track_seq(&self, seq: u16, newest: u64) -> Option<u64> {
        let delta = seq.wrapping_sub(newest as u16) as i16 as i64;
        let out = newest.checked_add_signed(delta)?;
        (out >= self.first_seq).then(|| out.wrapping_sub(self.seq_offset))
    }
}

/// RTP version 2, no padding, extension or CSRC.
fn fixed_header(buf: &mut [u8], pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    buf[0] = 0x80;
    buf[1] = pt | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::time::Instant;

    fn packet(seq: u64, timestamp: u32, marker: bool) -> Packet {
        Packet {
            index: 0,
            seq,
            timestamp,
            marker,
            payload: Bytes::new(),
            arrival: Instant::now(),
        }
    }

    #[test]
    fn header_has_viewer_numbering() {
        let first = packet(1_000_000, 4_000_000_000, false);
        let rw = Rewrite::starting_at(&first, 0xdead_beef, 102, 0xfffe, 7);
        let mut buf = [0u8; 12];
        assert_eq!(rw.write_header(&first, &mut buf), 0x7ffe);
        assert_eq!(
            buf,
            [0x80, 102, 0x7f, 0xfe, 0, 0, 0, 7, 0xde, 0xad, 0xbe, 0xef]
        );
        let later = packet(1_000_003, 4_000_000_000u32.wrapping_add(300_000_000), true);
        rw.write_header(&later, &mut buf);
        assert_eq!(buf[1], 0x80 | 102, "marker");
        assert_eq!(&buf[2..4], &[0x80, 0x01]);
        assert_eq!(
            u32::from_be_bytes(buf[4..8].try_into().unwrap()),
            300_000_007
        );
    }

    #[test]
    fn rollover_counter_grows_with_the_track() {
        let first = packet(10, 0, false);
        let rw = Rewrite::starting_at(&first, 1, 96, 0x7fff, 0);
        assert_eq!(rw.seq(10) >> 16, 0);
        assert_eq!(rw.seq(10 + 0x8001) >> 16, 1);
        assert_eq!(rw.seq(10 + 0x8001) as u16, 0);
    }

    #[test]
    fn nack_maps_back_to_track_numbers() {
        let first = packet(500, 0, false);
        let rw = Rewrite::starting_at(&first, 1, 96, 0x7ff0, 0);
        let newest = rw.seq(530); // 0x800e
        assert_eq!(rw.track_seq(0x8000, newest), Some(516));
        assert_eq!(rw.track_seq(0x7ff0, newest), Some(500));
        assert_eq!(
            rw.track_seq(0x7fef, newest),
            None,
            "before the first packet"
        );
        // Across the 16-bit wrap of the outgoing numbers.
        let newest = rw.seq(500 + 0x8020); // out 0x1_0010
        assert_eq!(rw.track_seq(0xfffe, newest), Some(500 + 0x800e));
        assert_eq!(rw.track_seq(0x0005, newest), Some(500 + 0x8015));
    }

    fn be16(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[0], b[1]])
    }

    #[test]
    fn rtx_header_carries_the_original_numbers_and_its_own() {
        let first = packet(1_000_000, 4_000_000_000, false);
        let rw = Rewrite::starting_at(&first, 0xdead_beef, 102, 0x7ffe, 7);
        let mut rtx = RtxStream::new(0x0102_0304, 103, 0x7fff);
        let mut buf = [0u8; 14];
        // RTX numbers run from the stream's own start; the OSN is the media number.
        let p = packet(1_000_001, 4_000_000_000u32.wrapping_add(3000), true);
        assert_eq!(rw.write_rtx_header(&p, &mut rtx, &mut buf), 0x7fff);
        assert_eq!(
            buf,
            [
                0x80,
                0x80 | 103,
                0x7f,
                0xff,
                0,
                0,
                0x0b,
                0xbf,
                1,
                2,
                3,
                4,
                0x7f,
                0xff
            ]
        );
        let p = packet(1_000_002, 4_000_000_000u32.wrapping_add(3000), false);
        assert_eq!(rw.write_rtx_header(&p, &mut rtx, &mut buf), 0x8000);
        assert_eq!(buf[1], 103, "no marker");
        assert_eq!(be16(&buf[12..]), 0x8000, "OSN");
    }

    #[test]
    fn rtx_numbers_wrap_at_65535_and_the_roc_grows() {
        let first = packet(0, 0, false);
        let rw = Rewrite::starting_at(&first, 1, 96, 0, 0);
        let mut rtx = RtxStream::new(2, 97, 0x7fff);
        let mut buf = [0u8; 14];
        let mut last = 0;
        for _ in 0..=0x8000 {
            last = rw.write_rtx_header(&first, &mut rtx, &mut buf);
        }
        assert_eq!(last, 0xffff);
        assert_eq!(be16(&buf[2..]), 0xffff);
        let next = rw.write_rtx_header(&first, &mut rtx, &mut buf);
        assert_eq!((next >> 16, be16(&buf[2..])), (1, 0), "ROC 1, sequence 0");
    }

    proptest! {
        /// Whatever the numbering, an RTX packet has the media packet's timestamp and
        /// marker, the RTX SSRC and PT, consecutive RTX numbers, and an OSN that maps
        /// back to the very packet resent.
        #[test]
        fn rtx_resends_map_back_to_what_was_resent(
            track_start in any::<u64>().prop_map(|s| s >> 2),
            seq in any::<u16>(),
            ts in any::<u32>(),
            rtx_seq in any::<u16>(),
            resends in proptest::collection::vec((0u64..3000, any::<bool>()), 1..40),
        ) {
            let first = packet(track_start, ts, false);
            let rw = Rewrite::starting_at(&first, 0xaaaa_aaaa, 100, seq, 0x1234);
            let mut rtx = RtxStream::new(0xbbbb_bbbb, 101, rtx_seq);
            let newest = rw.seq(track_start + 3000);
            let mut media = [0u8; 12];
            let mut buf = [0u8; 14];
            let numbers = u64::from(rtx_seq & 0x7fff)..;
            for (expect, (ahead, marker)) in numbers.zip(resends) {
                let p = packet(track_start + ahead, ts.wrapping_add(ahead as u32 * 3000), marker);
                let out = rw.write_header(&p, &mut media);
                prop_assert_eq!(rw.write_rtx_header(&p, &mut rtx, &mut buf), expect);
                prop_assert_eq!(be16(&buf[2..]), expect as u16);
                prop_assert_eq!(buf[0], 0x80);
                prop_assert_eq!(buf[1], media[1] & 0x80 | 101, "marker kept, RTX PT");
                prop_assert_eq!(&buf[4..8], &media[4..8], "timestamp kept");
                prop_assert_eq!(&buf[8..12], &0xbbbb_bbbbu32.to_be_bytes()[..]);
                let osn = be16(&buf[12..]);
                prop_assert_eq!(osn, out as u16);
                prop_assert_eq!(&media[2..4], &buf[12..14]);
                prop_assert_eq!(rw.track_seq(osn, newest), Some(p.seq));
            }
        }
    }
}
