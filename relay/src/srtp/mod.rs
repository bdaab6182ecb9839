//! SRTP and SRTCP for the fast path: AEAD AES-GCM (RFC 7714) and the legacy
//! AES_CM_128_HMAC_SHA1_80 (RFC 3711), keyed from DTLS-SRTP (RFC 5764).
//!
//! What lives where:
//! - `keys`: the DTLS-SRTP keying material layout (RFC 5764 4.2) into [`MasterKey`]s, and
//!   the RFC 3711 4.3 AES-CM key derivation from a master key to session keys.
//! - `transform`: the per-packet cryptography of one direction and packet kind (RTP or
//!   RTCP): IV formation, sealing in place, tag checking. GCM with ring; AES-CM with the
//!   RustCrypto `aes`/`ctr` crates and HMAC-SHA1 with `hmac`/`sha1`.
//! - `replay`: the receiver's packet index estimation (RFC 3711 3.3.1, Appendix A) and
//!   replay window (3.3.2).
//! - `context`: [`Outbound`] (what we send) and [`Inbound`] (what the peer sends us),
//!   which tie the three together per packet.
//!
//! Everything works in place on caller-owned buffers: nothing here allocates per packet.

mod context;
mod keys;
mod replay;
mod transform;

#[cfg(test)]
mod tests;

pub use context::{Inbound, Outbound};
pub use keys::{split_keying_material, MasterKey};

/// An SRTP protection profile (RFC 5764 4.1.2, RFC 7714 14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001).
    Aes128CmHmacSha1_80,
}

impl Profile {
    /// Master (and session) encryption key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm | Profile::Aes128CmHmacSha1_80 => 16,
            Profile::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 12,
            Profile::Aes128CmHmacSha1_80 => 14,
        }
    }

    /// Length of the DTLS-SRTP exporter output for this profile: 2 keys and 2 salts.
    pub fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Bytes that `protect_rtp` appends: the authentication tag.
    pub fn rtp_overhead(self) -> usize {
        self.tag_len()
    }

    /// Bytes that `protect_rtcp` appends: the tag and the 4-byte E flag | SRTCP index.
    pub fn rtcp_overhead(self) -> usize {
        self.tag_len() + transform::SRTCP_INDEX_LEN
    }

    fn tag_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => transform::GCM_TAG_LEN,
            Profile::Aes128CmHmacSha1_80 => transform::HMAC_TAG_LEN,
        }
    }
}

/// Why a packet or key was refused. Packets that fail are dropped (and counted) by the
/// caller; none of these is fatal for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short for its header and the profile's tag")]
    TooShort,
    #[error("keying material has the wrong length for the profile")]
    BadKeyingMaterial,
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("packet replayed or older than the replay window")]
    Replayed,
    #[error("too many SSRCs from one peer")]
    TooManySources,
    #[error("SRTCP index exhausted: the session needs new keys")]
    IndexExhausted,
}
