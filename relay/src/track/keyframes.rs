//! Where a keyframe starts, for the codecs that carry no parameter sets: VP8
//! (RFC 7741), VP9 (RFC 9628) and AV1 (the AOM RTP payload format). Each looks at the
//! payload descriptor of one RTP payload, without copying; a payload too short for
//! what its flags announce is not a keyframe start.

/// VP8: the first packet of a frame (S set, partition 0) whose frame header has the
/// inverse key frame flag P clear.
pub fn vp8(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start_of_partition = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start_of_partition || partition != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        // X: the extension byte says which optional fields follow.
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        at = 2;
        if ext & 0x80 != 0 {
            // I: picture id, 15 bits when its M bit is set, else 7.
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // L: TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // T or K: TID/Y/KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// VP9: the first packet of a frame (B) that is not inter-picture predicted (P clear),
/// in the base spatial layer when layers are signalled.
pub fn vp9(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let (picture_id, predicted, layers, start) = (
        first & 0x80 != 0,
        first & 0x40 != 0,
        first & 0x20 != 0,
        first & 0x08 != 0,
    );
    if predicted || !start {
        return false;
    }
    if !layers {
        return true;
    }
    let mut at = 1;
    if picture_id {
        let Some(&pid) = payload.get(at) else {
            return false;
        };
        at += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    // Layer indices: |TID|U| SID |D|
    payload.get(at).is_some_and(|l| (l >> 1) & 0x07 == 0)
}

/// AV1: the aggregation header's N bit, set on the first packet of a coded video
/// sequence, which begins with a key frame.
pub fn av1(payload: &[u8]) -> bool {
    payload.first().is_some_and(|header| header & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_key_and_delta_frames() {
        // S, partition 0, no extension; frame header with P clear (key frame).
        assert!(vp8(&[0x10, 0x50, 0x2a, 0x00]));
        assert!(!vp8(&[0x10, 0x51, 0x2a]), "P set: an interframe");
        assert!(!vp8(&[0x00, 0x50]), "not the start of a partition");
        assert!(!vp8(&[0x11, 0x50]), "partition 1");
        // X with a 15-bit picture id, TL0PICIDX and TID: the header is at byte 6.
        assert!(vp8(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x9c]));
        assert!(!vp8(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x9d]));
        assert!(!vp8(&[0x90, 0xe0, 0x81]), "truncated");
        assert!(!vp8(&[]));
    }

    #[test]
    fn vp9_key_frames_start_unpredicted() {
        assert!(vp9(&[0x08]), "B, not predicted");
        assert!(!vp9(&[0x48]), "predicted");
        assert!(!vp9(&[0x00]), "not the start of a frame");
        // I with a 7-bit picture id, L: the base spatial layer, then layer 1.
        assert!(vp9(&[0xa8, 0x05, 0x00]));
        assert!(!vp9(&[0xa8, 0x05, 0x02]), "spatial layer 1");
        assert!(!vp9(&[0xa8, 0x85]), "truncated");
        assert!(!vp9(&[]));
    }

    #[test]
    fn av1_new_coded_video_sequence() {
        assert!(av1(&[0x18, 0x0a]));
        assert!(!av1(&[0x10, 0x0a]));
        assert!(!av1(&[]));
    }
}
