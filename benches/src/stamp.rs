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
/// payloadType, payloadSize, the payload, rbsp_trailing_bits.
const RBSP_LEN: usize = 2 + PAYLOAD_LEN + 1;
/// The NAL header and the RBSP with an emulation-prevention byte for every two of its
/// bytes at worst.
pub const MAX_NAL_LEN: usize = 1 + RBSP_LEN + RBSP_LEN / 2;

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
        let mut nal = [0; MAX_NAL_LEN];
        let len = self.write_nal(&mut nal);
        nal[..len].to_vec()
    }

    /// Writes `to_nal()` into `out` without allocating (the publisher's send path);
    /// returns its length.
    pub fn write_nal(self, out: &mut [u8; MAX_NAL_LEN]) -> usize {
        let mut rbsp = [0; RBSP_LEN];
        rbsp[0] = USER_DATA_UNREGISTERED;
        rbsp[1] = PAYLOAD_LEN as u8;
        rbsp[2..18].copy_from_slice(&UUID);
        rbsp[18..22].copy_from_slice(&self.stream.to_be_bytes());
        rbsp[22..30].copy_from_slice(&self.frame.to_be_bytes());
        rbsp[30..38].copy_from_slice(&self.sent_unix_ns.to_be_bytes());
        rbsp[38] = 0x80; // rbsp_trailing_bits
        out[0] = NAL_HEADER;
        1 + escape(&rbsp, &mut out[1..])
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
/// Returns the bytes written to `out`, which has room for the worst case.
fn escape(rbsp: &[u8], out: &mut [u8]) -> usize {
    let mut written = 0;
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out[written] = 3;
            written += 1;
            zeros = 0;
        }
        out[written] = b;
        written += 1;
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    written
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
