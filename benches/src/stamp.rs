//! The send-time stamp the publisher puts before every access unit, so that a viewer
//! can measure end-to-end latency through any relay.
//!
//! The stamp is an H264 SEI NAL unit of type "user data unregistered" (H.264 D.1.7)
//! with our UUID: decoders skip it, relays forward it as media like any other NAL unit
//! (it travels as a single-NAL RTP packet with the access unit's timestamp). Relays
//! rewrite RTP timestamps and sequence numbers, so the time rides in the payload.

use std::time::{SystemTime, UNIX_EPOCH};

/// Marks our SEI among others: 16 bytes, as the syntax requires.
pub const UUID: [u8; 16] = *b"relay-bench-time";
/// nal_ref_idc 0, nal_unit_type 6 (SEI).
const NAL_HEADER: u8 = 0x06;
/// SEI payloadType of user data unregistered.
const USER_DATA_UNREGISTERED: u8 = 5;
/// UUID, stream, frame, time.
const PAYLOAD_LEN: usize = 16 + 4 + 8 + 8;

/// Which frame of which published stream, sent when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the stream within the publisher run.
    pub stream: u32,
    /// Access units sent on this stream before this one.
    pub frame: u64,
    /// Wall clock at sending, nanoseconds since the Unix epoch.
    pub sent_unix_ns: u64,
}

/// Nanoseconds since the Unix epoch now: the clock both ends of a measurement share.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Stamp {
    /// The SEI NAL unit carrying this stamp, emulation-prevented, without start code.
    pub fn to_nal(self) -> Vec<u8> {
        let mut rbsp = Vec::with_capacity(3 + PAYLOAD_LEN + 1);
        rbsp.push(USER_DATA_UNREGISTERED);
        rbsp.push(PAYLOAD_LEN as u8);
        rbsp.extend_from_slice(&UUID);
        rbsp.extend_from_slice(&self.stream.to_be_bytes());
        rbsp.extend_from_slice(&self.frame.to_be_bytes());
        rbsp.extend_from_slice(&self.sent_unix_ns.to_be_bytes());
        rbsp.push(0x80); // rbsp_trailing_bits
        let mut nal = vec![NAL_HEADER];
        escape(&rbsp, &mut nal);
        nal
    }

    /// The stamp in a NAL unit, if it is one of ours.
    pub fn from_nal(nal: &[u8]) -> Option<Stamp> {
        let (&header, escaped) = nal.split_first()?;
        if header & 0x1f != NAL_HEADER {
            return None;
        }
        let rbsp = unescape(escaped);
        let payload = rbsp.strip_prefix(&[USER_DATA_UNREGISTERED, PAYLOAD_LEN as u8])?;
        let fields = payload.get(..PAYLOAD_LEN)?.strip_prefix(&UUID)?;
        Some(Stamp {
            stream: u32::from_be_bytes(fields[0..4].try_into().ok()?),
            frame: u64::from_be_bytes(fields[4..12].try_into().ok()?),
            sent_unix_ns: u64::from_be_bytes(fields[12..20].try_into().ok()?),
        })
    }
}

/// H.264 7.4.1: no 00 00 0x (x <= 3) may appear inside a NAL unit; 03 is inserted.
fn escape(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_emulation_prevention() {
        // Zeros everywhere force 03 bytes into the NAL unit.
        for stamp in [
            Stamp {
                stream: 0,
                frame: 0,
                sent_unix_ns: 0,
            },
            Stamp {
                stream: 63,
                frame: 1 << 40,
                sent_unix_ns: 1_795_000_000_000_000_003,
            },
        ] {
            let nal = stamp.to_nal();
            assert!(
                !nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "start code emulation in {nal:02x?}"
            );
            assert_eq!(nal[0], 0x06);
            assert_eq!(Stamp::from_nal(&nal), Some(stamp));
        }
    }

    #[test]
    fn other_nal_units_are_not_stamps() {
        let mut nal = Stamp {
            stream: 1,
            frame: 2,
            sent_unix_ns: 3,
        }
        .to_nal();
        assert_eq!(Stamp::from_nal(&[0x65, 0x88, 0x84]), None, "IDR slice");
        assert_eq!(
            Stamp::from_nal(&[0x06, 5, 4, 1, 2, 3, 4, 0x80]),
            None,
            "short SEI"
        );
        assert_eq!(Stamp::from_nal(&[]), None);
        nal[5] ^= 1; // the UUID
        assert_eq!(Stamp::from_nal(&nal), None, "someone else's user data");
    }
}
