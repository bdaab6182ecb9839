//! `srtp_open`: our SRTP and SRTCP receive context under keys and packets from the
//! input, against a model of what it must accept.

use std::collections::{HashMap, HashSet};

use crate::srtp::{split_keying_material, Inbound, MasterKey, Outbound, Profile, SrtpError};

use super::wide_records;

/// SSRCs one peer may send from (`srtp::context::MAX_SOURCES`).
const MAX_SOURCES: usize = 32;
/// The replay window (`srtp::replay::WINDOW`).
const WINDOW: u64 = 1024;

/// The first byte picks the profile (and bit 7 our DTLS role), the next bytes are the master key and salt (the
/// input's keying material, also split as DTLS exports it), then records of an op byte
/// and a 16-bit length. The op's bits: 0-1 what is sent (the payload raw; sealed by
/// the peer; sealed then one bit flipped, then sent intact; the last sealed packet
/// again), 2 SRTCP rather than SRTP, 3-7 the sender's SSRC (one of 32, or of 32 more
/// when the payload's first byte is odd). A sealed SRTP packet's index is the receiver's
/// highest for the SSRC moved by the payload's first two bytes (signed, within ±2047).
///
/// Raw bytes never open (forging a tag is the fuzzer's to fail at); a sealed packet
/// opens to exactly what was sealed unless it is replayed, older than the window, or
/// from an SSRC past the limit, as the model says; one flipped bit never opens and
/// changes nothing.
pub fn srtp_open(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let profile = [
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
        Profile::Aes128CmHmacSha1_80,
    ][usize::from(pick % 3)];
    let material_len = profile.keying_material_len();
    let (material, rest) = rest.split_at(material_len.min(rest.len()));
    let split = split_keying_material(profile, material, pick & 0x80 != 0);
    assert_eq!(split.is_ok(), material.len() == material_len);
    let mut material = material.to_vec();
    material.resize(material_len, 0);
    let (key, salt) = material.split_at(profile.key_len());
    let master = MasterKey::new(profile, key, &salt[..profile.salt_len()]).expect("exact lengths");
    let mut run = Run {
        sender: Outbound::new(&master),
        receiver: Inbound::new(&master),
        rtp: Model::default(),
        rtcp: Model::default(),
        last: None,
        srtcp_sent: 0,
        overheads: (profile.rtp_overhead(), profile.rtcp_overhead()),
    };
    for (op, payload) in wide_records(rest) {
        run.step(op, payload);
    }
}

struct Run {
    sender: Outbound,
    receiver: Inbound,
    rtp: Model,
    rtcp: Model,
    /// The last packet sealed, and whether it is SRTCP.
    last: Option<(Vec<u8>, bool)>,
    srtcp_sent: u64,
    overheads: (usize, usize),
}

/// What the receiver accepted, per SSRC: its highest index and every index seen.
#[derive(Default)]
struct Model(HashMap<u32, (u64, HashSet<u64>)>);

impl Model {
    /// Whether a genuine packet at `index` from `ssrc` must open.
    fn opens(&self, ssrc: u32, index: u64) -> bool {
        match self.0.get(&ssrc) {
            None => self.0.len() < MAX_SOURCES,
            Some((highest, seen)) => {
                index > *highest || (highest - index < WINDOW && !seen.contains(&index))
            }
        }
    }

    fn accept(&mut self, ssrc: u32, index: u64) {
        let (highest, seen) = self.0.entry(ssrc).or_insert((index, HashSet::new()));
        *highest = (*highest).max(index);
        seen.insert(index);
    }
}

impl Run {
    fn step(&mut self, op: u8, payload: &[u8]) {
        let rtcp = op & 4 != 0;
        let first = payload.first().copied().unwrap_or(0);
        let ssrc = u32::from(op >> 3) + if first & 1 == 1 { 0x100 } else { 0 };
        match op & 3 {
            0 => {
                let opened = open(&mut self.receiver, rtcp, &mut payload.to_vec());
                assert!(opened.is_err(), "raw bytes opened: {payload:x?}");
            }
            3 => {
                if let Some((mut packet, rtcp)) = self.last.clone() {
                    let again = open(&mut self.receiver, rtcp, &mut packet);
                    assert!(again.is_err(), "a replay opened");
                }
            }
            kind => {
                let Some((sealed, plain, index)) = self.seal(rtcp, ssrc, payload) else {
                    return;
                };
                let model = if rtcp { &mut self.rtcp } else { &mut self.rtp };
                let must_open = model.opens(ssrc, index);
                if kind == 2 {
                    let mut tampered = sealed.clone();
                    let at = usize::from(payload.get(1).copied().unwrap_or(0)) % tampered.len();
                    tampered[at] ^= 1 << (first >> 5);
                    assert!(open(&mut self.receiver, rtcp, &mut tampered).is_err());
                }
                let mut packet = sealed.clone();
                match open(&mut self.receiver, rtcp, &mut packet) {
                    Ok(len) => {
                        assert!(
                            must_open,
                            "index {index} of {ssrc} opened: the model refuses it"
                        );
                        assert_eq!(&packet[..len], &plain[..], "opened to something else");
                        model.accept(ssrc, index);
                    }
                    Err(e) => assert!(!must_open, "index {index} of {ssrc}: {e}"),
                }
                self.last = Some((sealed, rtcp));
            }
        }
    }

    /// The peer's packet from `ssrc` with `payload`, sealed: the datagram, the plain
    /// packet and its index. None when the index would be negative or the SRTCP index is
    /// used up.
    fn seal(&mut self, rtcp: bool, ssrc: u32, payload: &[u8]) -> Option<(Vec<u8>, Vec<u8>, u64)> {
        let (rtp_overhead, rtcp_overhead) = self.overheads;
        if rtcp {
            // An RR from `ssrc` with the payload as its body.
            let mut plain = vec![0x80, 201, 0, 0];
            plain.extend(ssrc.to_be_bytes());
            plain.extend_from_slice(payload);
            let mut buf = plain.clone();
            buf.resize(plain.len() + rtcp_overhead, 0);
            let len = self.sender.protect_rtcp(&mut buf, plain.len()).ok()?;
            assert_eq!(len, buf.len());
            // The sender counts its SRTCP packets from 0.
            let index = self.srtcp_sent;
            self.srtcp_sent += 1;
            return Some((buf, plain, index));
        }
        let moved = match payload {
            [a, b, ..] => i64::from(i16::from_be_bytes([*a, *b]) >> 4),
            _ => 0,
        };
        let index = match self.rtp.0.get(&ssrc) {
            Some((highest, _)) => u64::try_from(*highest as i64 + moved).ok()?,
            // A new SSRC starts at ROC 0.
            None => u64::from(u16::from_be_bytes([
                payload.first().copied().unwrap_or(0),
                payload.get(1).copied().unwrap_or(0),
            ])),
        };
        let mut plain = vec![0x80, 96];
        plain.extend((index as u16).to_be_bytes());
        plain.extend(0x1000u32.to_be_bytes());
        plain.extend(ssrc.to_be_bytes());
        plain.extend_from_slice(payload.get(2..).unwrap_or_default());
        let mut buf = plain.clone();
        buf.resize(plain.len() + rtp_overhead, 0);
        let len = self
            .sender
            .protect_rtp(&mut buf, 12, plain.len(), (index >> 16) as u32);
        assert_eq!(len, buf.len());
        Some((buf, plain, index))
    }
}

fn open(receiver: &mut Inbound, rtcp: bool, packet: &mut [u8]) -> Result<usize, SrtpError> {
    match rtcp {
        false => receiver.unprotect_rtp(packet),
        true => receiver.unprotect_rtcp(packet),
    }
}
