//! A viewer's view of a track: the RTP header each packet gets on its way out.
//!
//! Every viewer has its own SSRC, payload type, and random starting sequence number
//! and timestamp (RFC 3550 5.1). Because the track's own numbering is continuous,
//! the mapping is two fixed offsets for the viewer's whole life, so retransmissions
//! map back to the ring by subtraction.

use super::Packet;

pub const HEADER_LEN: usize = 12;

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
        let seq = (seq & 0x7fff) as u64;
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
        buf[0] = 0x80;
        buf[1] = self.pt | if p.marker { 0x80 } else { 0 };
        buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&self.timestamp(p.timestamp).to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
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
}
