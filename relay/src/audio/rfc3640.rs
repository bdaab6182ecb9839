//! RFC 3640 (`mpeg4-generic`) RTP payloads: the AU-header section, then the access units
//! (AUs) it describes, several to a packet or one split over packets.

use symphonia_core::io::{BitReaderLtr, FiniteBitStream, ReadBitsLtr};

use super::AudioError;
use crate::track::fmtp;

/// The AU-header fields the fmtp declares (RFC 3640 3.2.1 and 4.1), in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuHeaderLayout {
    size: u32,
    index: u32,
    index_delta: u32,
    cts_delta: u32,
    dts_delta: u32,
    random_access: bool,
    stream_state: u32,
    auxiliary_size: u32,
}

impl AuHeaderLayout {
    /// Reads `sizelength`, `indexlength`, ... from the fmtp (AAC-hbr: 13, 3, 3).
    pub fn from_fmtp(fmtp: &str) -> Result<AuHeaderLayout, AudioError> {
        let bits = |key: &'static str| match fmtp::param(fmtp, key) {
            None => Ok(0),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= 32)
                .ok_or(AudioError::BadFmtp(key)),
        };
        let layout = AuHeaderLayout {
            size: bits("sizelength")?,
            index: bits("indexlength")?,
            index_delta: bits("indexdeltalength")?,
            cts_delta: bits("ctsdeltalength")?,
            dts_delta: bits("dtsdeltalength")?,
            random_access: bits("randomaccessindication")? == 1,
            stream_state: bits("streamstateindication")?,
            auxiliary_size: bits("auxiliarydatasizelength")?,
        };
        // Without AU sizes the AUs of a packet cannot be told apart (the constant-size
        // modes do not occur for AAC).
        if layout.size == 0 {
            return Err(AudioError::BadFmtp("sizelength"));
        }
        Ok(layout)
    }
}

/// Why a payload was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the AU-header section is cut short")]
    TruncatedHeaders,
    #[error("the AUs are shorter than their headers say")]
    TruncatedAus,
    #[error("a fragment does not continue the AU being reassembled")]
    StrayFragment,
}

/// An AU being reassembled from fragments (RFC 3640 3.2.3: one AU-header, each packet
/// with the whole AU's size and the same timestamp, the marker on the last).
#[derive(Debug)]
struct Fragment {
    timestamp: u32,
    size: usize,
    data: Vec<u8>,
}

/// Turns RTP payloads into AUs with their timestamps.
#[derive(Debug)]
pub struct Depacketizer {
    layout: AuHeaderLayout,
    /// RTP clock ticks per AU (1024 samples for AAC), to stamp the AUs after the first.
    au_ticks: u32,
    fragment: Option<Fragment>,
    /// Fragmented AUs abandoned because a packet of them was lost.
    pub incomplete: u64,
}

impl Depacketizer {
    pub fn new(layout: AuHeaderLayout, au_ticks: u32) -> Depacketizer {
        Depacketizer {
            layout,
            au_ticks,
            fragment: None,
            incomplete: 0,
        }
    }

    /// Calls `au(timestamp, data)` for each whole AU the payload completes. `marker` is the
    /// RTP marker bit: set on the last packet of a fragmented AU.
    pub fn push(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        au: &mut impl FnMut(u32, &[u8]),
    ) -> Result<(), PayloadError> {
        if self
            .fragment
            .as_ref()
            .is_some_and(|f| f.timestamp != timestamp)
        {
            self.abandon_fragment();
        }
        let (headers, data) = self.headers(payload)?;
        let fragmented =
            self.fragment.is_some() || headers.first().is_some_and(|h| h.size > data.len());
        if fragmented {
            // Only a packet's sole AU may be split over packets.
            let [h] = &headers[..] else {
                self.abandon_fragment();
                return Err(PayloadError::StrayFragment);
            };
            return self.push_fragment(timestamp, marker, h.size, data, au);
        }
        let (mut at, mut serial) = (0, 0u32);
        for h in headers {
            let end = at + h.size;
            let Some(bytes) = data.get(at..end) else {
                return Err(PayloadError::TruncatedAus);
            };
            serial = serial.wrapping_add(h.serial_delta);
            au(
                timestamp.wrapping_add(serial.wrapping_mul(self.au_ticks)),
                bytes,
            );
            at = end;
        }
        Ok(())
    }

    fn abandon_fragment(&mut self) {
        if self.fragment.take().is_some() {
            self.incomplete += 1;
        }
    }

    fn push_fragment(
        &mut self,
        timestamp: u32,
        marker: bool,
        size: usize,
        data: &[u8],
        au: &mut impl FnMut(u32, &[u8]),
    ) -> Result<(), PayloadError> {
        let fragment = self.fragment.get_or_insert_with(|| Fragment {
            timestamp,
            size,
            data: Vec::with_capacity(size),
        });
        if fragment.size != size || fragment.data.len() + data.len() > size {
            self.abandon_fragment();
            return Err(PayloadError::StrayFragment);
        }
        fragment.data.extend_from_slice(data);
        if fragment.data.len() == size {
            au(timestamp, &fragment.data);
            self.fragment = None;
        } else if marker {
            // The AU's last packet came, a middle one did not.
            self.abandon_fragment();
        }
        Ok(())
    }

    /// The AU-headers and the bytes after the header (and auxiliary) sections.
    fn headers<'a>(&self, payload: &'a [u8]) -> Result<(Vec<AuHeader>, &'a [u8]), PayloadError> {
        let l = &self.layout;
        let (Some(len), Some(rest)) = (payload.get(..2), payload.get(2..)) else {
            return Err(PayloadError::TruncatedHeaders);
        };
        let header_bits = u16::from_be_bytes([len[0], len[1]]) as usize;
        let header_bytes = header_bits.div_ceil(8);
        let section = rest
            .get(..header_bytes)
            .ok_or(PayloadError::TruncatedHeaders)?;
        let mut bits = BitReaderLtr::new(section);
        let mut headers = Vec::new();
        let truncated = |_| PayloadError::TruncatedHeaders;
        while section.len() as u64 * 8 - bits.bits_left() < header_bits as u64 {
            let size = bits.read_bits_leq32(l.size).map_err(truncated)? as usize;
            // The first header has an AU-Index, the others an AU-Index-delta (the
            // difference of serial numbers less one).
            let serial_delta = if headers.is_empty() {
                bits.read_bits_leq32(l.index).map_err(truncated)?;
                0
            } else {
                bits.read_bits_leq32(l.index_delta).map_err(truncated)? + 1
            };
            // CTS-flag (absent in the first header), DTS-flag with their deltas,
            // RAP-flag, stream state: read past, AAC needs none of them.
            if l.cts_delta > 0 && !headers.is_empty() && bits.read_bool().map_err(truncated)? {
                bits.ignore_bits(l.cts_delta).map_err(truncated)?;
            }
            if l.dts_delta > 0 && bits.read_bool().map_err(truncated)? {
                bits.ignore_bits(l.dts_delta).map_err(truncated)?;
            }
            bits.ignore_bits(l.random_access as u32 + l.stream_state)
                .map_err(truncated)?;
            headers.push(AuHeader { size, serial_delta });
        }
        let mut data = &rest[header_bytes..];
        if l.auxiliary_size > 0 {
            let mut aux = BitReaderLtr::new(data);
            let aux_bits = aux.read_bits_leq32(l.auxiliary_size).map_err(truncated)?;
            let aux_bytes = (l.auxiliary_size as usize + aux_bits as usize).div_ceil(8);
            data = data
                .get(aux_bytes..)
                .ok_or(PayloadError::TruncatedHeaders)?;
        }
        Ok((headers, data))
    }
}

#[derive(Debug)]
struct AuHeader {
    size: usize,
    /// This AU's serial number less the previous AU's in the packet (0 for the first).
    serial_delta: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAC_HBR: &str = "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
                           indexlength=3;indexdeltalength=3;config=1190";

    fn depacketizer() -> Depacketizer {
        Depacketizer::new(AuHeaderLayout::from_fmtp(AAC_HBR).unwrap(), 1024)
    }

    /// An AAC-hbr payload: 16-bit headers (13-bit size, 3-bit index 0), then the AUs.
    fn payload(sizes: &[usize], data: &[u8]) -> Vec<u8> {
        let mut p = ((sizes.len() * 16) as u16).to_be_bytes().to_vec();
        for &s in sizes {
            p.extend_from_slice(&((s as u16) << 3).to_be_bytes());
        }
        p.extend_from_slice(data);
        p
    }

    /// The AUs a payload completed, with their timestamps.
    type Aus = Vec<(u32, Vec<u8>)>;

    fn collect(d: &mut Depacketizer, ts: u32, p: &[u8]) -> (Result<(), PayloadError>, Aus) {
        let mut aus = Vec::new();
        let r = d.push(ts, false, p, &mut |ts, au| aus.push((ts, au.to_vec())));
        (r, aus)
    }

    #[test]
    fn several_aus_in_one_packet_get_consecutive_timestamps() {
        let mut d = depacketizer();
        let (r, aus) = collect(&mut d, 5000, &payload(&[2, 3, 1], b"aabbbc"));
        r.unwrap();
        assert_eq!(
            aus,
            [
                (5000, b"aa".to_vec()),
                (6024, b"bbb".to_vec()),
                (7048, b"c".to_vec())
            ]
        );
    }

    #[test]
    fn fragments_are_joined_and_a_lost_one_abandons_the_au() {
        let mut d = depacketizer();
        assert_eq!(collect(&mut d, 7, &payload(&[5], b"ab")).1, []);
        assert_eq!(collect(&mut d, 7, &payload(&[5], b"cd")).1, []);
        assert_eq!(
            collect(&mut d, 7, &payload(&[5], b"e")).1,
            [(7, b"abcde".to_vec())]
        );
        // The last fragment of the AU at 8 is lost: the AU at 9 starts afresh.
        assert_eq!(collect(&mut d, 8, &payload(&[3], b"xy")).1, []);
        assert_eq!(
            collect(&mut d, 9, &payload(&[1], b"z")).1,
            [(9, b"z".to_vec())]
        );
        assert_eq!(d.incomplete, 1);
        // A fragment that overruns its AU's size is refused.
        collect(&mut d, 10, &payload(&[3], b"xy")).0.unwrap();
        assert_eq!(
            collect(&mut d, 10, &payload(&[3], b"zz")).0,
            Err(PayloadError::StrayFragment)
        );
    }

    #[test]
    fn short_or_truncated_payloads_are_errors() {
        let mut d = depacketizer();
        assert_eq!(
            collect(&mut d, 0, &[]).0,
            Err(PayloadError::TruncatedHeaders)
        );
        assert_eq!(
            collect(&mut d, 0, &[0, 32, 0]).0,
            Err(PayloadError::TruncatedHeaders)
        );
        assert_eq!(
            collect(&mut d, 0, &payload(&[2, 3], b"aab")).0,
            Err(PayloadError::TruncatedAus)
        );
    }

    #[test]
    fn optional_fields_and_auxiliary_data_are_skipped() {
        // AAC-lbr sizes (6 + 2 bits), a DTS delta of 4 bits, 8-bit auxiliary size.
        let fmtp = "sizelength=6;indexlength=2;indexdeltalength=2;dtsdeltalength=4;\
                    auxiliarydatasizelength=8";
        let mut d = Depacketizer::new(AuHeaderLayout::from_fmtp(fmtp).unwrap(), 1024);
        // One header: size 2, index 0, DTS-flag 1 + delta 0b1010 = 13 bits; padded to 2 bytes.
        // Then the auxiliary section: 16 bits of data after its 8-bit size.
        let mut p = vec![0, 13, 0b0000_1000, 0b1101_0000, 16, 0xaa, 0xbb];
        p.extend_from_slice(b"hi");
        let (r, aus) = collect(&mut d, 1, &p);
        r.unwrap();
        assert_eq!(aus, [(1, b"hi".to_vec())]);
    }

    #[test]
    fn fmtp_needs_sizelength() {
        assert!(matches!(
            AuHeaderLayout::from_fmtp("mode=AAC-hbr;indexlength=3"),
            Err(AudioError::BadFmtp("sizelength"))
        ));
        assert!(matches!(
            AuHeaderLayout::from_fmtp("sizelength=x"),
            Err(AudioError::BadFmtp("sizelength"))
        ));
    }
}
