//! Just enough H264 (RFC 6184 payloads) to find keyframes and parameter sets.

use bytes::Bytes;

use super::fragment::aggregated_nal_units;
use super::{opens_picture, PayloadSummary};

/// Coded slices (VCL NAL units), the IDR's included.
const SLICES: std::ops::RangeInclusive<u8> = 1..=5;
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const STAP_A: u8 = 24;
pub const FU_A: u8 = 28;

/// Scans a payload; copies out only the parameter sets it holds (once a keyframe).
/// Malformed payloads (truncated aggregates) give what was found before the damage.
pub fn summarize(payload: &[u8]) -> PayloadSummary {
    let mut s = PayloadSummary::default();
    let Some(&first) = payload.first() else {
        return s;
    };
    match first & 0x1f {
        STAP_A => {
            for nal in aggregated_nal_units(payload, 1).map_while(Result::ok) {
                note_nal(&mut s, nal);
            }
        }
        FU_A => {
            if let Some(&fu) = payload.get(1) {
                let (start, nal_type) = (fu & 0x80 != 0, fu & 0x1f);
                s.slice = SLICES.contains(&nal_type);
                s.keyframe = start && nal_type == NAL_IDR && opens_picture(payload.get(2));
            }
        }
        1..=23 => note_nal(&mut s, payload),
        _ => {}
    }
    s
}

fn note_nal(s: &mut PayloadSummary, nal: &[u8]) {
    let nal_type = nal[0] & 0x1f;
    s.slice |= SLICES.contains(&nal_type);
    match nal_type {
        NAL_IDR => s.keyframe |= opens_picture(nal.get(1)),
        NAL_SPS => s.sps = Some(Bytes::copy_from_slice(nal)),
        NAL_PPS => s.pps = Some(Bytes::copy_from_slice(nal)),
        _ => {}
    }
}

/// Reads `profile-level-id` (6 hex digits) from an fmtp line, e.g. `42e01f`.
pub fn profile_level_id(fmtp: &str) -> Option<[u8; 3]> {
    let value = super::fmtp::param(fmtp, "profile-level-id")?;
    if value.len() != 6 {
        return None;
    }
    let mut out = [0u8; 3];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&value[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal_idr_and_parameter_sets() {
        let s = summarize(&Bytes::from_static(&[0x65, 0x88, 2]));
        assert!(s.keyframe && s.slice);
        // The IDR's slice after the first: a slice, no place to start.
        let s = summarize(&Bytes::from_static(&[0x65, 0x08, 2]));
        assert!(!s.keyframe && s.slice);
        let s = summarize(&Bytes::from_static(&[0x67, 0x42, 0xe0, 0x1f]));
        assert_eq!(s.sps.as_deref(), Some(&[0x67, 0x42, 0xe0, 0x1f][..]));
        assert!(!s.keyframe && !s.slice);
        let s = summarize(&Bytes::from_static(&[0x41, 0x9a, 2]));
        assert!(!s.keyframe && s.slice);
        // SEI (6) and a delimiter (9) are not slices.
        assert!(!summarize(&Bytes::from_static(&[0x06, 5, 1])).slice);
        assert!(!summarize(&Bytes::from_static(&[0x09, 0x10])).slice);
        // Any fragment of a slice is a slice; a fragmented SEI is not.
        assert!(summarize(&Bytes::from_static(&[0x7c, 0x05, 0x11])).slice);
        assert!(!summarize(&Bytes::from_static(&[0x7c, 0x86, 0x05])).slice);
    }

    #[test]
    fn stap_a_carries_sps_pps_idr() {
        let p = Bytes::from_static(&[0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 2, 0x65, 0x88]);
        let s = summarize(&p);
        assert!(s.keyframe);
        assert_eq!(s.sps.as_deref(), Some(&[0x67, 0x42][..]));
        assert_eq!(s.pps.as_deref(), Some(&[0x68, 0xce][..]));
    }

    #[test]
    fn truncated_stap_a_keeps_what_was_whole() {
        let s = summarize(&Bytes::from_static(&[0x18, 0, 2, 0x67, 0x42, 0, 9, 0x65]));
        assert!(s.sps.is_some());
        assert!(!s.keyframe);
        assert_eq!(summarize(&Bytes::new()), PayloadSummary::default());
    }

    #[test]
    fn fu_a_only_start_fragment_of_idr_counts() {
        assert!(summarize(&Bytes::from_static(&[0x7c, 0x85, 0x88])).keyframe);
        // The IDR's second slice (first_mb_in_slice 1): joined mid-picture.
        assert!(!summarize(&Bytes::from_static(&[0x7c, 0x85, 0x40])).keyframe);
        assert!(!summarize(&Bytes::from_static(&[0x7c, 0x85])).keyframe);
        assert!(!summarize(&Bytes::from_static(&[0x7c, 0x05, 0])).keyframe);
        assert!(!summarize(&Bytes::from_static(&[0x7c, 0x81, 0])).keyframe);
        assert!(!summarize(&Bytes::from_static(&[0x7c])).keyframe);
    }

    #[test]
    fn reads_profile_level_id() {
        assert_eq!(
            profile_level_id(
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            ),
            Some([0x42, 0xe0, 0x1f])
        );
        assert_eq!(profile_level_id("packetization-mode=1"), None);
        assert_eq!(profile_level_id("profile-level-id=zz"), None);
    }
}
