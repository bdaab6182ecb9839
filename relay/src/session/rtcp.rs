//! The RTCP a relay needs, read and written by hand: viewers' feedback in (reports,
//! NACK, PLI/FIR) and our sender reports out. str0m parses RTCP too, but only behind
//! its own SRTP context, which the fast path replaces; a walk over RFC 3550/4585
//! headers is short and lets every malformed field be refused explicitly.

use std::time::Duration;

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const RTPFB: u8 = 205;
pub const PSFB: u8 = 206;

/// One piece of feedback from a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Generic NACK (RFC 4585 6.2.1): `pid` lost, and `pid + i + 1` for each bit i of `blp`.
    Nack { media_ssrc: u32, pid: u16, blp: u16 },
    /// Picture loss (PLI) or full intra request (FIR): the viewer needs a keyframe.
    KeyframeRequest { media_ssrc: u32 },
    /// A reception report block about one of our SSRCs.
    Report(ReportBlock),
}

/// The sequence numbers a generic NACK names: `pid`, then `pid + i + 1` for each bit i
/// of `blp` (RFC 4585 6.2.1), wrapping at 65535.
pub fn nacked(pid: u16, blp: u16) -> impl Iterator<Item = u16> {
    std::iter::once(pid).chain(
        (0..16)
            .filter(move |b| blp & (1 << b) != 0)
            .map(move |b| pid.wrapping_add(b + 1)),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Signed 24 bits on the wire: duplicates can make it negative.
    pub cumulative_lost: i32,
    /// The extended highest sequence number received (RFC 3550 6.4.1).
    pub highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of our last SR, and the delay since (1/65536 s).
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its header says")]
    Truncated,
    #[error("RTCP version is not 2")]
    Version,
}

/// Walks a (decrypted) compound RTCP packet, calling `on` for each feedback item.
/// Unknown packet types are skipped; a malformed packet stops the walk with an error
/// after the items before it were delivered.
pub fn parse_compound(mut buf: &[u8], on: &mut dyn FnMut(Feedback)) -> Result<(), RtcpError> {
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if buf[0] >> 6 != 2 {
            return Err(RtcpError::Version);
        }
        let count = buf[0] & 0x1f;
        let pt = buf[1];
        let len = (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4;
        if len > buf.len() {
            return Err(RtcpError::Truncated);
        }
        let body = &buf[4..len];
        match pt {
            SR => report_blocks(body.get(24..).ok_or(RtcpError::Truncated)?, count, on)?,
            RR => report_blocks(body.get(4..).ok_or(RtcpError::Truncated)?, count, on)?,
            RTPFB if count == 1 => {
                let media_ssrc = be32(body, 4).ok_or(RtcpError::Truncated)?;
                for fci in body[8..].chunks_exact(4) {
                    on(Feedback::Nack {
                        media_ssrc,
                        pid: u16::from_be_bytes([fci[0], fci[1]]),
                        blp: u16::from_be_bytes([fci[2], fci[3]]),
                    });
                }
            }
            PSFB if count == 1 => {
                let media_ssrc = be32(body, 4).ok_or(RtcpError::Truncated)?;
                on(Feedback::KeyframeRequest { media_ssrc });
            }
            PSFB if count == 4 => {
                // FIR (RFC 5104 4.3.1): the SSRCs are in the FCI entries.
                for fci in body.get(8..).ok_or(RtcpError::Truncated)?.chunks_exact(8) {
                    let media_ssrc = u32::from_be_bytes([fci[0], fci[1], fci[2], fci[3]]);
                    on(Feedback::KeyframeRequest { media_ssrc });
                }
            }
            _ => {}
        }
        buf = &buf[len..];
    }
    Ok(())
}

fn report_blocks(buf: &[u8], count: u8, on: &mut dyn FnMut(Feedback)) -> Result<(), RtcpError> {
    let blocks = buf.get(..count as usize * 24).ok_or(RtcpError::Truncated)?;
    for b in blocks.chunks_exact(24) {
        let word = |i| be32(b, i).expect("24-byte block");
        on(Feedback::Report(ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            // Sign-extends the low 24 bits.
            cumulative_lost: ((word(4) << 8) as i32) >> 8,
            highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }));
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// What a sender report says about one of our streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// 64-bit NTP timestamp of the report.
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_time: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Writes an SR (no report blocks: we receive nothing) followed by an SDES with the
/// CNAME, the compound RFC 3550 6.1 asks for. Returns the length; `buf` needs
/// `28 + 12 + cname.len()` bytes (rounded up to 4).
pub fn write_sender_report(buf: &mut [u8], sr: &SenderInfo, cname: &str) -> usize {
    buf[0] = 0x80;
    buf[1] = SR;
    buf[2..4].copy_from_slice(&6u16.to_be_bytes());
    buf[4..8].copy_from_slice(&sr.ssrc.to_be_bytes());
    buf[8..16].copy_from_slice(&sr.ntp.to_be_bytes());
    buf[16..20].copy_from_slice(&sr.rtp_time.to_be_bytes());
    buf[20..24].copy_from_slice(&sr.packets.to_be_bytes());
    buf[24..28].copy_from_slice(&sr.octets.to_be_bytes());
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    // SDES chunk: SSRC, CNAME item (type, length, text), then at least one zero byte.
    let chunk = 4 + 2 + cname.len() + 1;
    let words = chunk.div_ceil(4);
    let sdes = &mut buf[28..28 + 4 + words * 4];
    sdes.fill(0);
    sdes[0] = 0x81;
    sdes[1] = SDES;
    sdes[2..4].copy_from_slice(&(words as u16).to_be_bytes());
    sdes[4..8].copy_from_slice(&sr.ssrc.to_be_bytes());
    sdes[8] = 1;
    sdes[9] = cname.len() as u8;
    sdes[10..10 + cname.len()].copy_from_slice(cname);
    28 + 4 + words * 4
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The middle 32 bits of a 64-bit NTP timestamp: what LSR and DLSR are counted in
/// (1/65536 s).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// 10 ms in NTP short format (1/65536 s): how late a turn's time may say a report came.
const ARRIVAL_SLACK: u32 = 655;

/// The round trip a report block shows (RFC 3550 6.4.1): the time from our SR whose
/// NTP middle it names (`last_sr`) to the block's `arrival`, less the time the viewer
/// held it (`delay_since_last_sr`). None when the block names no SR or a delay longer
/// than the time since by more than [`ARRIVAL_SLACK`] (a clock or a field that cannot
/// be trusted).
pub fn round_trip(arrival: u64, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let since = ntp_middle(arrival).wrapping_sub(last_sr);
    if since >= 1 << 31 {
        return None;
    }
    // The arrival is the worker's turn time, which can precede the datagram's true
    // arrival by a busy turn: on a short path the viewer's delay then exceeds `since` a
    // little. Within this margin that is a round trip of about zero, not a bad field.
    let rtt = match since.checked_sub(delay_since_last_sr) {
        Some(rtt) => rtt,
        None if delay_since_last_sr - since <= ARRIVAL_SLACK => 0,
        None => return None,
    };
    Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
}

/// A 64-bit NTP timestamp for a wall-clock time.
pub fn ntp_time(since_unix_epoch: Duration) -> u64 {
    let secs = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((since_unix_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> (Vec<Feedback>, Result<(), RtcpError>) {
        let mut out = Vec::new();
        let r = parse_compound(buf, &mut |f| out.push(f));
        (out, r)
    }

    // A Chrome-like compound: RR with one block, then a NACK with two FCIs, then a PLI.
    const COMPOUND: &[u8] = &[
        0x81,
        201,
        0,
        7,
        0,
        0,
        0,
        1, // RR, 1 block, sender 1
        0,
        0,
        0,
        9,
        5,
        0,
        0,
        3,
        0,
        0,
        0x10,
        0,
        0,
        0,
        0,
        42,
        0xaa,
        0xbb,
        0xcc,
        0xdd,
        0,
        1,
        0,
        0,
        0x81,
        205,
        0,
        4,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        9, // NACK about ssrc 9
        0x01,
        0x00,
        0b1000_0000,
        0b0000_0001,
        0x02,
        0x00,
        0,
        0, //
        0x81,
        206,
        0,
        2,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        9, // PLI about ssrc 9
    ];

    #[test]
    fn reads_reports_nacks_and_pli() {
        let (fb, r) = collect(COMPOUND);
        r.unwrap();
        assert_eq!(
            fb,
            vec![
                Feedback::Report(ReportBlock {
                    ssrc: 9,
                    fraction_lost: 5,
                    cumulative_lost: 3,
                    highest_seq: 0x1000,
                    jitter: 42,
                    last_sr: 0xaabbccdd,
                    delay_since_last_sr: 0x10000,
                }),
                Feedback::Nack {
                    media_ssrc: 9,
                    pid: 256,
                    blp: 0x8001
                },
                Feedback::Nack {
                    media_ssrc: 9,
                    pid: 512,
                    blp: 0
                },
                Feedback::KeyframeRequest { media_ssrc: 9 },
            ]
        );
    }

    #[test]
    fn fir_names_the_ssrc_in_its_entries() {
        let fir = [
            0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 3, 0, 0, 0,
        ];
        assert_eq!(
            collect(&fir).0,
            vec![Feedback::KeyframeRequest { media_ssrc: 7 }]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for cut in 0..COMPOUND.len() {
            let (_, r) = collect(&COMPOUND[..cut]);
            assert!(
                cut == 0 || cut == 32 || cut == 52 || r.is_err(),
                "cut {cut}"
            );
        }
        let mut bad = COMPOUND.to_vec();
        bad[0] = 0x41;
        assert_eq!(collect(&bad).1, Err(RtcpError::Version));
        // An RR claiming more blocks than it has.
        assert_eq!(
            collect(&[0x83, 201, 0, 1, 0, 0, 0, 1]).1,
            Err(RtcpError::Truncated)
        );
        // Feedback without media SSRC.
        assert_eq!(
            collect(&[0x81, 205, 0, 1, 0, 0, 0, 1]).1,
            Err(RtcpError::Truncated)
        );
    }

    #[test]
    fn sender_report_round_trips_through_a_parser() {
        let mut buf = [0u8; 128];
        let sr = SenderInfo {
            ssrc: 0x1234_5678,
            ntp: 0xdead_beef_0000_0001,
            rtp_time: 90_000,
            packets: 10,
            octets: 12_000,
        };
        let n = write_sender_report(&mut buf, &sr, "relay");
        assert_eq!(n % 4, 0);
        assert_eq!(n, 28 + 16);
        // Both packets' length fields must tile the buffer exactly.
        assert_eq!((u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4, 28);
        assert_eq!(
            (u16::from_be_bytes([buf[30], buf[31]]) as usize + 1) * 4,
            n - 28
        );
        assert_eq!(&buf[38..43], b"relay");
        let (fb, r) = collect(&buf[..n]);
        r.unwrap();
        assert!(fb.is_empty(), "an SR without blocks carries no feedback");
        assert_eq!(u32::from_be_bytes(buf[16..20].try_into().unwrap()), 90_000);
    }

    #[test]
    fn ntp_time_of_unix_epoch_and_half_second() {
        let t = ntp_time(Duration::from_millis(1500));
        assert_eq!(t >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(t & 0xffff_ffff, 1 << 31);
    }

    #[test]
    fn round_trip_is_arrival_less_lsr_less_dlsr() {
        let sent = ntp_time(Duration::from_secs(1_700_000_000));
        let arrival = ntp_time(Duration::from_millis(1_700_000_000_250));
        // Held 200 ms by the viewer: 50 ms on the wire both ways.
        let dlsr = 65536 / 5;
        let rtt = round_trip(arrival, ntp_middle(sent), dlsr).unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(50)) < Duration::from_micros(50),
            "{rtt:?}"
        );
        assert_eq!(round_trip(arrival, 0, 0), None, "no SR received yet");
        assert_eq!(
            round_trip(arrival, ntp_middle(sent), 65536),
            None,
            "held longer than since"
        );
        // Held a little longer than since (the turn's clock lagged the datagram).
        assert_eq!(
            round_trip(arrival, ntp_middle(sent), 65536 / 4 + 300),
            Some(Duration::ZERO)
        );
        let later = ntp_middle(arrival).wrapping_add(10);
        assert_eq!(round_trip(arrival, later, 0), None, "an SR from the future");
    }

    #[test]
    fn cumulative_loss_is_signed() {
        let mut rr = COMPOUND[..32].to_vec();
        rr[13..16].copy_from_slice(&[0xff, 0xff, 0xfe]);
        let (fb, r) = collect(&rr);
        r.unwrap();
        assert!(
            matches!(fb[0], Feedback::Report(b) if b.cumulative_lost == -2),
            "{fb:?}"
        );
    }

    #[test]
    fn nack_of_pid_and_bitmask_wraps_at_65535() {
        assert_eq!(nacked(65534, 0b101).collect::<Vec<_>>(), [65534, 65535, 1]);
        assert_eq!(nacked(7, 0).collect::<Vec<_>>(), [7]);
        assert_eq!(nacked(65535, 0x8000).collect::<Vec<_>>(), [65535, 15]);
    }

    proptest::proptest! {
        /// A NACK names its pid and one packet per set bit, each within 16 after the pid
        /// and exactly where its bit says.
        #[test]
        fn nack_expansion_follows_the_bits(pid: u16, blp: u16) {
            let seqs: Vec<u16> = nacked(pid, blp).collect();
            proptest::prop_assert_eq!(seqs.len() as u32, 1 + blp.count_ones());
            proptest::prop_assert_eq!(seqs[0], pid);
            let mut bits = 0u16;
            for s in &seqs[1..] {
                let after = s.wrapping_sub(pid);
                proptest::prop_assert!((1..=16).contains(&after));
                bits |= 1 << (after - 1);
            }
            proptest::prop_assert_eq!(bits, blp);
        }
    }
}
