//! Just enough H265 (RFC 7798 payloads) to find keyframes and parameter sets.
//!
//! Decoding order numbers (DONL, present only with `sprop-max-don-diff` > 0) are not
//! expected: cameras and encoders for WebRTC send in decoding order.

use bytes::Bytes;

use super::fragment::aggregated_nal_units;
use super::{opens_picture, PayloadSummary};

/// IRAP pictures (BLA, IDR, CRA: types 16..=21): a decoder can start at them.
pub const IRAP: std::ops::RangeInclusive<u8> = 16..=21;
/// Coded slice segments (VCL NAL units), the IRAPs' included.
const SLICES: std::ops::RangeInclusive<u8> = 0..=31;
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
/// Aggregation Packet (RFC 7798 4.4.2).
pub const AP: u8 = 48;
/// Fragmentation Unit (RFC 7798 4.4.3).
pub const FU: u8 = 49;

/// The NAL unit type from the first byte of a 2-byte NAL unit (or payload) header.
pub fn nal_type(first: u8) -> u8 {
    (first >> 1) & 0x3f
}

/// Scans a payload without copying (the parameter sets are `Bytes` slices of it).
/// Malformed payloads (truncated aggregates) give what was found before the damage.
pub fn summarize(payload: &[u8]) -> PayloadSummary {
    let mut s = PayloadSummary::default();
    if payload.len() < 2 {
        return s;
    }
    match nal_type(payload[0]) {
        AP => {
            for nal in aggregated_nal_units(payload, 2).map_while(Result::ok) {
                note_nal(&mut s, nal);
            }
        }
        FU => {
            if let Some(&fu) = payload.get(2) {
                let (start, nal_type) = (fu & 0x80 != 0, fu & 0x3f);
                s.slice = SLICES.contains(&nal_type);
                s.keyframe = start && IRAP.contains(&nal_type) && opens_picture(payload.get(3));
            }
        }
        0..=47 => note_nal(&mut s, payload),
        _ => {}
    }
    s
}

fn note_nal(s: &mut PayloadSummary, nal: &[u8]) {
    let t = nal_type(nal[0]);
    s.slice |= SLICES.contains(&t);
    match t {
        t if IRAP.contains(&t) => s.keyframe |= opens_picture(nal.get(2)),
        NAL_VPS => s.vps = Some(Bytes::copy_from_slice(nal)),
        NAL_SPS => s.sps = Some(Bytes::copy_from_slice(nal)),
        NAL_PPS => s.pps = Some(Bytes::copy_from_slice(nal)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-byte NAL unit header: type, layer 0, TID 1.
    fn header(t: u8) -> [u8; 2] {
        [t << 1, 1]
    }

    fn nal(t: u8, body: &[u8]) -> Vec<u8> {
        let mut n = header(t).to_vec();
        n.extend_from_slice(body);
        n
    }

    fn ap(nals: &[Vec<u8>]) -> Bytes {
        let mut p = header(AP).to_vec();
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        Bytes::from(p)
    }

    #[test]
    fn single_nal_irap_and_parameter_sets() {
        for t in IRAP {
            assert!(
                summarize(&Bytes::from(nal(t, &[0xaf]))).keyframe,
                "type {t}"
            );
        }
        // An IDR's second slice segment (first_slice_segment_in_pic_flag clear).
        let s = summarize(&Bytes::from(nal(19, &[0x2f])));
        assert!(!s.keyframe && s.slice);
        // TRAIL_R (1) and RASL (8) are not keyframes.
        assert!(!summarize(&Bytes::from(nal(1, &[0xaf]))).keyframe);
        assert!(summarize(&Bytes::from(nal(1, &[0xaf]))).slice);
        assert!(!summarize(&Bytes::from(nal(8, &[0xaf]))).keyframe);
        let s = summarize(&Bytes::from(nal(NAL_SPS, &[1, 2])));
        assert_eq!(s.sps.as_deref(), Some(&nal(NAL_SPS, &[1, 2])[..]));
        assert!(s.vps.is_none() && s.pps.is_none() && !s.keyframe && !s.slice);
    }

    #[test]
    fn ap_carries_vps_sps_pps_and_irap() {
        let (vps, sps, pps) = (
            nal(NAL_VPS, &[1]),
            nal(NAL_SPS, &[2, 2]),
            nal(NAL_PPS, &[3]),
        );
        let s = summarize(&ap(&[
            vps.clone(),
            sps.clone(),
            pps.clone(),
            nal(19, &[0x89]),
        ]));
        assert!(s.keyframe);
        assert_eq!(s.vps.as_deref(), Some(&vps[..]));
        assert_eq!(s.sps.as_deref(), Some(&sps[..]));
        assert_eq!(s.pps.as_deref(), Some(&pps[..]));
    }

    #[test]
    fn truncated_ap_keeps_what_was_whole() {
        let mut p = ap(&[nal(NAL_VPS, &[1]), nal(19, &[9])]).to_vec();
        p.truncate(p.len() - 1);
        let s = summarize(&Bytes::from(p));
        assert!(s.vps.is_some());
        assert!(!s.keyframe);
        // A member shorter than a NAL unit header ends the scan.
        let s = summarize(&Bytes::from_static(&[
            AP << 1,
            1,
            0,
            1,
            0x40,
            0,
            3,
            0x40,
            1,
            0,
        ]));
        assert_eq!(s, PayloadSummary::default());
        assert_eq!(summarize(&Bytes::new()), PayloadSummary::default());
        // An IRAP's first fragment cut before its slice header: a slice, no keyframe.
        let s = summarize(&Bytes::from_static(&[FU << 1, 1, 0x80 | 19]));
        assert!(s.slice && !s.keyframe);
        assert_eq!(
            summarize(&Bytes::from_static(&[0x26])),
            PayloadSummary::default()
        );
    }

    #[test]
    fn fu_only_start_fragment_of_irap_counts() {
        let fu = |fu_header: u8| Bytes::from(vec![FU << 1, 1, fu_header, 0xaa]);
        assert!(summarize(&fu(0x80 | 19)).keyframe, "start of IDR_W_RADL");
        assert!(summarize(&fu(0x80 | 21)).keyframe, "start of CRA");
        assert!(!summarize(&fu(19)).keyframe, "middle fragment");
        assert!(!summarize(&fu(0x40 | 19)).keyframe, "end fragment");
        assert!(!summarize(&fu(0x80 | 1)).keyframe, "start of a TRAIL_R");
        assert!(!summarize(&Bytes::from_static(&[FU << 1, 1])).keyframe);
    }
}
