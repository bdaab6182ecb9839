//! Getting the DTLS-SRTP keys out of str0m, so that our own SRTP can seal the media.
//!
//! str0m has no key-export call. Its crypto is pluggable, though: a `DtlsProvider`
//! makes one `DtlsInstance` per `Rtc`, and the instance's `poll_output` hands str0m
//! `KeyingMaterial(material, profile)` when the handshake ends. Our provider's instances
//! copy that output into a slot the session holds.
//!
//! The provider is `&'static` and shared by every session, so it cannot know which
//! session an instance belongs to. `build_rtc` parks the session's slot in a
//! thread-local just before `RtcConfig::build` (which creates the instance, once, on
//! this thread), and the provider takes it from there.
//!
//! The instance is dimpl's, as str0m's aws-lc-rs provider makes it, but from one
//! `dimpl::Config` for the process: that provider builds a config per instance, and
//! each build runs dimpl's self-test of its crypto provider (an ECDH exchange in every
//! group, P-384 among them, and an ECDSA verification), which was a quarter of the
//! control plane's CPU at 200 new sessions a second.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::crypto::dtls::{
    DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::CryptoError;
use str0m::{Rtc, RtcConfig};

use crate::srtp::Profile;

/// Keys negotiated by a session's DTLS handshake, once it completes.
#[derive(Debug, Default)]
pub struct KeySlot(OnceLock<Result<Keys, String>>);

/// What the fast path needs of a finished handshake.
#[derive(Debug)]
pub struct Keys {
    pub profile: Profile,
    /// RFC 5764 4.2 layout: the client's key first.
    pub material: Vec<u8>,
    /// Which side of that layout is ours.
    pub role: DtlsRole,
}

/// Our side of the DTLS handshake: the server when the offer says `actpass` or
/// `active` (what browsers send), the client when it says `passive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Client,
    Server,
}

impl KeySlot {
    /// The keys, or why they are unusable; None until the handshake ends.
    pub fn get(&self) -> Option<&Result<Keys, String>> {
        self.0.get()
    }
}

thread_local! {
    static NEXT_SLOT: RefCell<Option<Arc<KeySlot>>> = const { RefCell::new(None) };
}

/// Builds an `Rtc` whose DTLS reports its keys into the returned slot.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, Arc<KeySlot>) {
    let slot = Arc::new(KeySlot::default());
    NEXT_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    let rtc = config
        .set_crypto_provider(Arc::new(provider().clone()))
        .build(now);
    let unclaimed = NEXT_SLOT.with(|s| s.borrow_mut().take());
    debug_assert!(
        unclaimed.is_none(),
        "RtcConfig::build made no DTLS instance"
    );
    (rtc, slot)
}

/// The process's crypto provider: str0m's default with DTLS wrapped.
pub fn provider() -> &'static CryptoProvider {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| CryptoProvider {
        dtls_provider: &CAPTURING,
        ..default_provider().clone()
    })
}

/// One certificate for every session: generating a key pair per session would cost
/// more than the rest of session setup.
pub fn certificate() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        default_provider()
            .dtls_provider
            .generate_certificate()
            .expect("str0m's default DTLS provider generates certificates")
    })
}

fn default_provider() -> &'static CryptoProvider {
    static DEFAULT: OnceLock<CryptoProvider> = OnceLock::new();
    DEFAULT.get_or_init(str0m::crypto::from_feature_flags)
}

static CAPTURING: CapturingProvider = CapturingProvider;

#[derive(Debug)]
struct CapturingProvider;

impl DtlsProvider for CapturingProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        default_provider().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = dimpl_config(mtu)?;
        let cert = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        let inner = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )))
            }
        };
        // An Rtc built without build_rtc gets a slot nobody reads: no media, no harm.
        let slot = NEXT_SLOT
            .with(|s| s.borrow_mut().take())
            .unwrap_or_default();
        Ok(Box::new(CapturingDtls { inner, slot }))
    }
}

/// The process's dimpl config for an MTU (str0m passes the same one every time), as
/// str0m's aws-lc-rs provider sets it: no server cookie, since ICE has already
/// checked that the peer's address answers.
fn dimpl_config(mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
    static CONFIGS: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>> = Mutex::new(Vec::new());
    let mut configs = CONFIGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, config)) = configs.iter().find(|(m, _)| *m == mtu) {
        return Ok(config.clone());
    }
    let mut builder = dimpl::Config::builder().use_server_cookie(false);
    if let Some(mtu) = mtu {
        builder = builder.mtu(mtu);
    }
    let config = Arc::new(
        builder
            .build()
            .map_err(|e| CryptoError::Other(format!("dimpl config: {e}")))?,
    );
    configs.push((mtu, config.clone()));
    Ok(config)
}

struct CapturingDtls {
    inner: dimpl::Dtls,
    slot: Arc<KeySlot>,
}

impl std::fmt::Debug for CapturingDtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturingDtls").finish_non_exhaustive()
    }
}

impl DtlsInstance for CapturingDtls {
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            let keys = match profile {
                SrtpProfile::AEAD_AES_128_GCM => Ok(Profile::AeadAes128Gcm),
                SrtpProfile::AEAD_AES_256_GCM => Ok(Profile::AeadAes256Gcm),
                SrtpProfile::AES128_CM_SHA1_80 => Ok(Profile::Aes128CmHmacSha1_80),
                other => Err(format!("unsupported SRTP profile {other:?}")),
            }
            .map(|profile| Keys {
                profile,
                material: material.to_vec(),
                role: match self.inner.is_active() {
                    true => DtlsRole::Client,
                    false => DtlsRole::Server,
                },
            });
            let _ = self.slot.0.set(keys);
        }
        out
    }

    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dimpl's config (and its self-test) is built once per MTU, not per session.
    #[test]
    fn sessions_share_one_dimpl_config_per_mtu() {
        let a = dimpl_config(Some(1150)).unwrap();
        assert!(Arc::ptr_eq(&a, &dimpl_config(Some(1150)).unwrap()));
        assert!(!Arc::ptr_eq(&a, &dimpl_config(None).unwrap()));
    }
}
