//! Master keys from DTLS-SRTP keying material (RFC 5764 4.2), and the RFC 3711 4.3 key
//! derivation from a master key to the session keys of one packet kind.

use aes::cipher::{KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use ctr::Ctr128BE;
use zeroize::Zeroize;

use super::{Profile, SrtpError};

/// Longest key and salt of any profile.
const MAX_KEY_LEN: usize = 32;
const MAX_SALT_LEN: usize = 14;
/// HMAC-SHA1 session authentication key length (RFC 3711 8.2: n_a = 160 bits).
pub(crate) const AUTH_KEY_LEN: usize = 20;

/// One side's SRTP master key and master salt, for one profile. Wiped on drop.
#[derive(Clone)]
pub struct MasterKey {
    profile: Profile,
    key: [u8; MAX_KEY_LEN],
    salt: [u8; MAX_SALT_LEN],
}

impl MasterKey {
    /// `key` and `salt` must have the profile's lengths.
    pub fn new(profile: Profile, key: &[u8], salt: &[u8]) -> Result<MasterKey, SrtpError> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyingMaterial);
        }
        let mut master = MasterKey {
            profile,
            key: [0; MAX_KEY_LEN],
            salt: [0; MAX_SALT_LEN],
        };
        master.key[..key.len()].copy_from_slice(key);
        master.salt[..salt.len()].copy_from_slice(salt);
        Ok(master)
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.profile.key_len()]
    }

    fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }

    /// RFC 3711 4.3 key derivation (key_derivation_rate 0): the AES-CM PRF keyed with the
    /// master key, over `master_salt XOR (label << 48)`, fills `out` with keystream.
    ///
    /// The AEAD profiles reuse this PRF (RFC 7714 11) with their 12-byte master salt in the
    /// first 12 bytes of the 14-byte PRF input and zeros after it, the label still at byte
    /// 7: that is what libsrtp and str0m do, and so what browsers interoperate with.
    /// AES-256-GCM keys its PRF with AES-256 (RFC 6188 AES_256_CM_PRF).
    ///
    /// Raw AES comes from the RustCrypto `aes` crate: ring exposes no block cipher.
    fn derive(&self, label: u8, out: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..self.profile.salt_len()].copy_from_slice(self.salt());
        iv[7] ^= label;
        out.fill(0);
        match self.profile.key_len() {
            16 => Ctr128BE::<Aes128>::new(self.key().into(), &iv.into()).apply_keystream(out),
            _ => Ctr128BE::<Aes256>::new(self.key().into(), &iv.into()).apply_keystream(out),
        }
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.salt.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// RFC 5764 4.2: the exporter output is `client_key | server_key | client_salt |
/// server_salt`. Returns (local, remote): our sending key first.
pub fn split_keying_material(
    profile: Profile,
    material: &[u8],
    local_is_client: bool,
) -> Result<(MasterKey, MasterKey), SrtpError> {
    if material.len() != profile.keying_material_len() {
        return Err(SrtpError::BadKeyingMaterial);
    }
    let (keys, salts) = material.split_at(2 * profile.key_len());
    let (client_key, server_key) = keys.split_at(profile.key_len());
    let (client_salt, server_salt) = salts.split_at(profile.salt_len());
    let client = MasterKey::new(profile, client_key, client_salt)?;
    let server = MasterKey::new(profile, server_key, server_salt)?;
    Ok(if local_is_client {
        (client, server)
    } else {
        (server, client)
    })
}

/// Which packets a set of session keys protects: it picks the RFC 3711 4.3.2 labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketKind {
    Rtp,
    Rtcp,
}

/// The session keys of one packet kind. Wiped on drop.
pub(crate) struct SessionKeys {
    pub(crate) profile: Profile,
    key: [u8; MAX_KEY_LEN],
    salt: [u8; MAX_SALT_LEN],
    /// Unused by the AEAD profiles, which authenticate with GCM.
    auth: [u8; AUTH_KEY_LEN],
}

impl SessionKeys {
    pub(crate) fn derive(master: &MasterKey, kind: PacketKind) -> SessionKeys {
        // RFC 3711 4.3.2: RTP uses labels 0 (encryption), 1 (auth), 2 (salt); SRTCP 3, 4, 5.
        let base = match kind {
            PacketKind::Rtp => 0,
            PacketKind::Rtcp => 3,
        };
        let profile = master.profile;
        let mut keys = SessionKeys {
            profile,
            key: [0; MAX_KEY_LEN],
            salt: [0; MAX_SALT_LEN],
            auth: [0; AUTH_KEY_LEN],
        };
        master.derive(base, &mut keys.key[..profile.key_len()]);
        if profile == Profile::Aes128CmHmacSha1_80 {
            master.derive(base + 1, &mut keys.auth);
        }
        master.derive(base + 2, &mut keys.salt[..profile.salt_len()]);
        keys
    }

    /// Session keys given directly, as the RFC 7714 test vectors give them.
    #[cfg(test)]
    pub(crate) fn from_parts(profile: Profile, key: &[u8], salt: &[u8], auth: &[u8]) -> Self {
        let mut keys = SessionKeys {
            profile,
            key: [0; MAX_KEY_LEN],
            salt: [0; MAX_SALT_LEN],
            auth: [0; AUTH_KEY_LEN],
        };
        keys.key[..key.len()].copy_from_slice(key);
        keys.salt[..salt.len()].copy_from_slice(salt);
        keys.auth[..auth.len()].copy_from_slice(auth);
        keys
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..self.profile.key_len()]
    }

    pub(crate) fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }

    pub(crate) fn auth(&self) -> &[u8; AUTH_KEY_LEN] {
        &self.auth
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.salt.zeroize();
        self.auth.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::tests::hex;

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = MasterKey::new(
            Profile::Aes128CmHmacSha1_80,
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let keys = SessionKeys::derive(&master, PacketKind::Rtp);
        assert_eq!(keys.key(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(keys.salt(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            &keys.auth()[..],
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );

        // The B.3 table goes on to 94 bytes of auth key: the PRF is a keystream, not
        // one block repeated.
        let mut long = [0u8; 94];
        master.derive(1, &mut long);
        assert_eq!(
            long[..],
            hex(concat!(
                "CEBE321F6FF7716B6FD4AB49AF256A15",
                "6D38BAA48F0A0ACF3C34E2359E6CDBCE",
                "E049646C43D9327AD175578EF7227098",
                "6371C10C9A369AC2F94A8C5FBCDDDC25",
                "6D6E919A48B610EF17C2041E47403576",
                "6B68642C59BBFC2F34DB60DBDFB2"
            ))[..]
        );
    }

    #[test]
    fn rtcp_labels_differ_from_rtp_labels() {
        let master = MasterKey::new(Profile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let rtp = SessionKeys::derive(&master, PacketKind::Rtp);
        let rtcp = SessionKeys::derive(&master, PacketKind::Rtcp);
        assert_ne!(rtp.key(), rtcp.key());
        assert_ne!(rtp.salt(), rtcp.salt());
        assert_eq!(rtp.salt().len(), 12);
    }

    #[test]
    fn keying_material_is_split_client_key_server_key_client_salt_server_salt() {
        for profile in [
            Profile::AeadAes128Gcm,
            Profile::AeadAes256Gcm,
            Profile::Aes128CmHmacSha1_80,
        ] {
            let (k, s) = (profile.key_len(), profile.salt_len());
            // Byte i of the material is i, so every slice says where it came from.
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let (local, remote) = split_keying_material(profile, &material, true).unwrap();
            assert_eq!(local.key(), &material[..k]);
            assert_eq!(remote.key(), &material[k..2 * k]);
            assert_eq!(local.salt(), &material[2 * k..2 * k + s]);
            assert_eq!(remote.salt(), &material[2 * k + s..]);

            let (local, remote) = split_keying_material(profile, &material, false).unwrap();
            assert_eq!(local.key(), &material[k..2 * k]);
            assert_eq!(remote.salt(), &material[2 * k..2 * k + s]);
            assert_eq!(local.profile(), profile);

            for len in [0, material.len() - 1, material.len() + 1] {
                let wrong = vec![0; len];
                assert_eq!(
                    split_keying_material(profile, &wrong, true).unwrap_err(),
                    SrtpError::BadKeyingMaterial
                );
            }
        }
        assert_eq!(Profile::AeadAes128Gcm.keying_material_len(), 56);
        assert_eq!(Profile::AeadAes256Gcm.keying_material_len(), 88);
        assert_eq!(Profile::Aes128CmHmacSha1_80.keying_material_len(), 60);
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let master = MasterKey::new(Profile::AeadAes128Gcm, &[0xab; 16], &[0xcd; 12]).unwrap();
        assert_eq!(
            format!("{master:?}"),
            "MasterKey { profile: AeadAes128Gcm, .. }"
        );
    }
}
