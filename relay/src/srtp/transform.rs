//! The per-packet cryptography of one packet kind (RTP or RTCP) in one direction, working
//! in place. Callers check lengths first (`context`): these functions take the packet
//! layout as given and slice accordingly.

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use aes::Aes128;
use ctr::{flavors, CtrCore};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};
use sha1::Sha1;

use super::keys::SessionKeys;
use super::{Profile, SrtpError};

pub(crate) const GCM_TAG_LEN: usize = 16;
/// AES_CM_128_HMAC_SHA1_80: HMAC-SHA1 truncated to 80 bits, for SRTP and SRTCP alike.
pub(crate) const HMAC_TAG_LEN: usize = 10;
/// The SRTCP trailer word: E flag (encrypted) in the top bit, 31-bit SRTCP index below.
pub(crate) const SRTCP_INDEX_LEN: usize = 4;
pub(crate) const E_FLAG: u32 = 0x8000_0000;
/// RTCP header and sender SSRC: left in the clear, GCM's associated data.
pub(crate) const RTCP_HEADER_LEN: usize = 8;

#[expect(
    clippy::large_enum_variant,
    reason = "GCM is the fast path: kept inline, it costs no pointer chase per packet"
)]
pub(crate) enum Transform {
    Gcm(Gcm),
    /// Boxed: its AES decryption key schedule and two SHA-1 states would make every
    /// context, GCM ones included, half again as big.
    AesCmHmac(Box<AesCmHmac>),
}

pub(crate) struct Gcm {
    key: LessSafeKey,
    salt: [u8; 12],
}

pub(crate) struct AesCmHmac {
    aes: Aes128,
    salt: [u8; 14],
    /// Keyed once: each packet clones the precomputed inner and outer hash states.
    mac: Hmac<Sha1>,
}

impl Transform {
    pub(crate) fn new(keys: &SessionKeys) -> Transform {
        match keys.profile {
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => {
                let algorithm = match keys.profile {
                    Profile::AeadAes128Gcm => &AES_128_GCM,
                    _ => &AES_256_GCM,
                };
                let key = UnboundKey::new(algorithm, keys.key())
                    .expect("the key length is the profile's, which is the algorithm's");
                let mut salt = [0; 12];
                salt.copy_from_slice(keys.salt());
                Transform::Gcm(Gcm {
                    key: LessSafeKey::new(key),
                    salt,
                })
            }
            Profile::Aes128CmHmacSha1_80 => {
                let mut salt = [0; 14];
                salt.copy_from_slice(keys.salt());
                Transform::AesCmHmac(Box::new(AesCmHmac {
                    aes: Aes128::new(keys.key().into()),
                    salt,
                    mac: <Hmac<Sha1> as KeyInit>::new_from_slice(keys.auth())
                        .expect("HMAC takes any key length"),
                }))
            }
        }
    }

    /// Encrypts `packet[header_len..len]`, writes the tag after it, returns the new length.
    /// `packet` holds at least `len` plus the tag; the header holds SEQ and SSRC.
    #[inline]
    pub(crate) fn seal_rtp(
        &self,
        packet: &mut [u8],
        header_len: usize,
        len: usize,
        roc: u32,
    ) -> usize {
        let seq = be_u16(packet, 2);
        let ssrc = be_u32(packet, 8);
        match self {
            Transform::Gcm(gcm) => {
                let nonce = gcm.rtp_nonce(ssrc, roc, seq);
                let (header, rest) = packet.split_at_mut(header_len);
                let (payload, trailer) = rest.split_at_mut(len - header_len);
                let tag = gcm.seal(nonce, &*header, payload);
                trailer[..GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                len + GCM_TAG_LEN
            }
            Transform::AesCmHmac(cm) => {
                cm.apply_keystream(ssrc, rtp_index(roc, seq), &mut packet[header_len..len]);
                let mac = cm.rtp_mac(&packet[..len], roc);
                packet[len..len + HMAC_TAG_LEN]
                    .copy_from_slice(&mac.finalize().into_bytes()[..HMAC_TAG_LEN]);
                len + HMAC_TAG_LEN
            }
        }
    }

    /// Authenticates the whole of `packet` (header, ciphertext, tag) and decrypts it in
    /// place; returns the plaintext length. On a tag mismatch the bytes are unspecified.
    pub(crate) fn open_rtp(
        &self,
        packet: &mut [u8],
        header_len: usize,
        roc: u32,
    ) -> Result<usize, SrtpError> {
        let seq = be_u16(packet, 2);
        let ssrc = be_u32(packet, 8);
        match self {
            Transform::Gcm(gcm) => {
                let nonce = gcm.rtp_nonce(ssrc, roc, seq);
                let (header, rest) = packet.split_at_mut(header_len);
                gcm.key
                    .open_in_place(nonce, Aad::from(&*header), rest)
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
                Ok(packet.len() - GCM_TAG_LEN)
            }
            Transform::AesCmHmac(cm) => {
                let len = packet.len() - HMAC_TAG_LEN;
                cm.rtp_mac(&packet[..len], roc)
                    .verify_truncated_left(&packet[len..])
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
                cm.apply_keystream(ssrc, rtp_index(roc, seq), &mut packet[header_len..len]);
                Ok(len)
            }
        }
    }

    /// Encrypts the compound RTCP packet `packet[..len]` after its first 8 bytes, appends
    /// the E flag | `index` word and the tag in the profile's order, returns the new length.
    pub(crate) fn seal_rtcp(&self, packet: &mut [u8], len: usize, index: u32) -> usize {
        let ssrc = be_u32(packet, 4);
        let word = (E_FLAG | index).to_be_bytes();
        match self {
            Transform::Gcm(gcm) => {
                // RFC 7714 9.1: header | ciphertext | tag | E|index; AAD is header | E|index.
                let (header, rest) = packet.split_at_mut(RTCP_HEADER_LEN);
                let (body, trailer) = rest.split_at_mut(len - RTCP_HEADER_LEN);
                let tag = gcm.seal(gcm.rtcp_nonce(ssrc, index), rtcp_aad(header, word), body);
                trailer[..GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                trailer[GCM_TAG_LEN..GCM_TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(&word);
                len + GCM_TAG_LEN + SRTCP_INDEX_LEN
            }
            Transform::AesCmHmac(cm) => {
                // RFC 3711 3.4: header | ciphertext | E|index | tag; the tag covers E|index.
                cm.apply_keystream(ssrc, u64::from(index), &mut packet[RTCP_HEADER_LEN..len]);
                let authenticated = len + SRTCP_INDEX_LEN;
                packet[len..authenticated].copy_from_slice(&word);
                let mut mac = cm.mac.clone();
                mac.update(&packet[..authenticated]);
                packet[authenticated..authenticated + HMAC_TAG_LEN]
                    .copy_from_slice(&mac.finalize().into_bytes()[..HMAC_TAG_LEN]);
                authenticated + HMAC_TAG_LEN
            }
        }
    }

    /// The E flag | SRTCP index word of a protected RTCP packet at least
    /// `RTCP_HEADER_LEN + tag + SRTCP_INDEX_LEN` long. Not authenticated yet.
    pub(crate) fn srtcp_word(&self, packet: &[u8]) -> u32 {
        let at = match self {
            Transform::Gcm(_) => packet.len() - SRTCP_INDEX_LEN,
            Transform::AesCmHmac(_) => packet.len() - HMAC_TAG_LEN - SRTCP_INDEX_LEN,
        };
        be_u32(packet, at)
    }

    /// Authenticates the protected RTCP `packet` whose trailer word is `word` and, if its E
    /// flag is set, decrypts it in place. Returns the length of the RTCP packet within.
    pub(crate) fn open_rtcp(&self, packet: &mut [u8], word: u32) -> Result<usize, SrtpError> {
        let ssrc = be_u32(packet, 4);
        let index = word & !E_FLAG;
        let encrypted = word & E_FLAG != 0;
        let len = packet.len();
        match self {
            Transform::Gcm(gcm) => {
                let body_end = len - GCM_TAG_LEN - SRTCP_INDEX_LEN;
                let nonce = gcm.rtcp_nonce(ssrc, index);
                let opened = if encrypted {
                    let (header, rest) = packet.split_at_mut(RTCP_HEADER_LEN);
                    let aad = rtcp_aad(header, word.to_be_bytes());
                    let in_out = &mut rest[..len - RTCP_HEADER_LEN - SRTCP_INDEX_LEN];
                    gcm.key
                        .open_in_place(nonce, Aad::from(aad), in_out)
                        .map(|_| ())
                } else {
                    // RFC 7714 9.2, authentication only: the whole packet and E|index are
                    // AAD. Move the word next to the body so that the AAD is one slice.
                    let tag = Tag::try_from(&packet[body_end..body_end + GCM_TAG_LEN])
                        .expect("a tag-sized slice");
                    packet.copy_within(len - SRTCP_INDEX_LEN.., body_end);
                    let aad = Aad::from(&packet[..body_end + SRTCP_INDEX_LEN]);
                    gcm.key
                        .open_in_place_separate_tag(nonce, aad, tag, &mut [], 0..)
                        .map(|_| ())
                };
                opened.map_err(|_| SrtpError::AuthenticationFailed)?;
                Ok(body_end)
            }
            Transform::AesCmHmac(cm) => {
                let authenticated = len - HMAC_TAG_LEN;
                let mut mac = cm.mac.clone();
                mac.update(&packet[..authenticated]);
                mac.verify_truncated_left(&packet[authenticated..])
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
                let body_end = authenticated - SRTCP_INDEX_LEN;
                if encrypted {
                    cm.apply_keystream(
                        ssrc,
                        u64::from(index),
                        &mut packet[RTCP_HEADER_LEN..body_end],
                    );
                }
                Ok(body_end)
            }
        }
    }
}

impl Gcm {
    /// RFC 7714 8.1: `(00 00 || SSRC || ROC || SEQ) XOR salt`.
    fn rtp_nonce(&self, ssrc: u32, roc: u32, seq: u16) -> Nonce {
        let head = u64::from(ssrc) << 16 | u64::from(roc >> 16);
        self.nonce(head, (roc & 0xffff) << 16 | u32::from(seq))
    }

    /// RFC 7714 9.1: `(00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt`.
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> Nonce {
        self.nonce(u64::from(ssrc) << 16, index & !E_FLAG)
    }

    /// The IV from its first 8 bytes and its last 4, as big-endian words. Written as two
    /// words because ring reads a nonce so: built byte by byte, its 4-byte read of the
    /// last word waited for store forwarding, a tenth of the whole seal.
    fn nonce(&self, head: u64, tail: u32) -> Nonce {
        let (salt_head, salt_tail) = self.salt.split_at(8);
        let salt_head = u64::from_be_bytes(salt_head.try_into().expect("8 of 12 bytes"));
        let salt_tail = u32::from_be_bytes(salt_tail.try_into().expect("4 of 12 bytes"));
        let mut iv = [0; 12];
        iv[..8].copy_from_slice(&(head ^ salt_head).to_be_bytes());
        iv[8..].copy_from_slice(&(tail ^ salt_tail).to_be_bytes());
        Nonce::assume_unique_for_key(iv)
    }

    #[inline]
    fn seal<A: AsRef<[u8]>>(&self, nonce: Nonce, aad: A, in_out: &mut [u8]) -> Tag {
        self.key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            // ring refuses only inputs over GCM's 64 GiB limit; a datagram is far below it.
            .expect("a datagram is within GCM's length limit")
    }
}

impl AesCmHmac {
    /// RFC 3711 4.1.1: XORs the AES-CM keystream for `ssrc` and packet `index` (48-bit
    /// SRTP index, or 31-bit SRTCP index) into `data`. The IV is
    /// `(salt << 16) XOR (SSRC << 64) XOR (index << 16)`.
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (byte, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *byte ^= x;
        }
        for (byte, x) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *byte ^= x;
        }
        // Reuses the expanded key: only the counter is new per packet.
        let core =
            CtrCore::<Aes128, flavors::Ctr128BE>::inner_iv_init(self.aes.clone(), &iv.into());
        StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
    }

    /// RFC 3711 4.2: HMAC-SHA1 over the authenticated portion, then the ROC.
    fn rtp_mac(&self, authenticated: &[u8], roc: u32) -> Hmac<Sha1> {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        mac
    }
}

/// RFC 7714 9.1: the associated data of an encrypted SRTCP packet.
fn rtcp_aad(header: &[u8], word: [u8; 4]) -> [u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN] {
    let mut aad = [0; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
    aad[..RTCP_HEADER_LEN].copy_from_slice(&header[..RTCP_HEADER_LEN]);
    aad[RTCP_HEADER_LEN..].copy_from_slice(&word);
    aad
}

/// RFC 3711 3.3.1: the 48-bit packet index, ROC || SEQ.
fn rtp_index(roc: u32, seq: u16) -> u64 {
    u64::from(roc) << 16 | u64::from(seq)
}

pub(crate) fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::tests::hex;

    /// RFC 3711 Appendix B.2: the AES-CM keystream for SSRC 0, index 0, over the whole
    /// 2^16-block segment the RFC describes (its last blocks match NIST SP 800-38A F.5.1).
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let keys = SessionKeys::from_parts(
            Profile::Aes128CmHmacSha1_80,
            &hex("2B7E151628AED2A6ABF7158809CF4F3C"),
            &hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
            &[],
        );
        let Transform::AesCmHmac(cm) = Transform::new(&keys) else {
            unreachable!("the CM profile builds the CM transform")
        };
        let mut segment = vec![0u8; 1_044_512];
        cm.apply_keystream(0, 0, &mut segment);
        assert_eq!(
            segment[..48],
            hex(concat!(
                "E03EAD0935C95E80E166B16DD92B4EB4",
                "D23513162B02D0F72A43A2FE4A5F97AB",
                "41E95B3BB0A2E8DD477901E4FCA894C0"
            ))[..]
        );
        assert_eq!(
            segment[segment.len() - 48..],
            hex(concat!(
                "EC8CDF7398607CB0F2D21675EA9EA1E4",
                "362B7C3C6773516318A077D7FC5073AE",
                "6A2CC3787889374FBEB4C81B17BA6C44"
            ))[..]
        );
    }
}
