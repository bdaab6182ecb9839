//! `authMethod: jwt`: tokens signed by a key of the JWKS at `authJWTJWKS`, with their
//! permissions in a claim (MediaMTX's `mediamtx_permissions` by default).
//!
//! The key set is fetched on first use and again after [`REFRESH`], or when a token
//! names a key it does not hold (a rotated key), at most once per [`RETRY`]. One fetch
//! runs at a time, and no lock is held while it waits on the server: a token whose key
//! is held is checked meanwhile (even while the set's refresh is under way), one naming
//! another key waits for the fetch. A token's algorithm must be one of its key's
//! family, so that no token can pick a weaker check than the key was published for
//! (e.g. HMAC with an RSA public key as the secret).

use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{PathRule, Permission};

/// How long a fetched key set is used (MediaMTX: one hour).
pub(super) const REFRESH: Duration = Duration::from_secs(3600);
/// The least time between two fetches, however many tokens name unknown keys.
pub(super) const RETRY: Duration = Duration::from_secs(10);
/// Largest key set read (MediaMTX: 128 KiB).
pub const MAX_JWKS: u64 = 128 * 1024;

/// What the claims must hold.
pub struct Claims<'a> {
    /// The claim with the permissions.
    pub key: &'a str,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// The key set, shared by the requests being authenticated.
#[derive(Default)]
pub struct Jwks {
    held: Mutex<Held>,
    /// Taken for a fetch, so that there is one at a time.
    fetching: Mutex<()>,
}

/// The key set last fetched, and when a fetch was last tried.
#[derive(Default)]
struct Held {
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

impl Held {
    fn due(&self, now: Instant, since: Duration) -> bool {
        self.fetched
            .is_none_or(|at| now.saturating_duration_since(at) >= since)
    }

    /// The key `header` names, or the only key when it names none.
    fn key(&self, header: &jsonwebtoken::Header) -> Option<&Jwk> {
        let keys = &self.keys.as_ref()?.keys;
        match &header.kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
    }

    /// The key for `header`, unless the set must be fetched first.
    fn usable(&self, header: &jsonwebtoken::Header, now: Instant) -> Option<Jwk> {
        let stale = self.keys.is_none() || self.due(now, REFRESH);
        self.key(header).filter(|_| !stale).cloned()
    }
}

/// A panic elsewhere leaves the keys as they were: still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Jwks {
    /// Drops the keys held: the next token fetches the set again.
    pub fn forget(&self) {
        *lock(&self.held) = Held::default();
    }

    /// Checks `token` and returns the permissions it grants. `fetch` gets the key set's
    /// JSON from `url` when it is due; it is called with no lock held but the one that
    /// keeps other fetches waiting.
    pub fn verify(
        &self,
        url: &str,
        token: &str,
        claims: &Claims,
        now: Instant,
        fetch: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Vec<Permission>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let jwk = self.key(url, &header, now, fetch)?;
        if !family(&jwk).contains(&header.alg) {
            return Err(format!("the JWT's {:?} does not fit its key", header.alg));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable JWK: {e}"))?;
        let mut validation = Validation::new(header.alg);
        // exp and nbf are checked when present (as MediaMTX's library does), not required.
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        // No grace after exp (jsonwebtoken's default is 60 s; MediaMTX's library has none).
        validation.leeway = 0;
        match claims.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match claims.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| format!("JWT refused: {e}"))?;
        permissions(data.claims.get(claims.key), claims.key)
    }

    /// The key that checks a token with `header`, fetching the set first when it is
    /// due.
    fn key(
        &self,
        url: &str,
        header: &jsonwebtoken::Header,
        now: Instant,
        fetch: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Jwk, String> {
        if let Some(key) = lock(&self.held).usable(header, now) {
            return Ok(key);
        }
        let _one_fetch = match self.fetching.try_lock() {
            Ok(fetching) => fetching,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Another request fetches: a held key serves meanwhile, even from a set due
            // for its refresh; a key the set lacks may come with the fetch.
            Err(TryLockError::WouldBlock) => {
                if let Some(key) = lock(&self.held).key(header) {
                    return Ok(key.clone());
                }
                lock(&self.fetching)
            }
        };
        let missing = || {
            format!(
                "no key of authJWTJWKS signs this JWT (kid {:?})",
                header.kid
            )
        };
        {
            let held = lock(&self.held);
            // What the fetch just waited for may have brought it.
            if let Some(key) = held.usable(header, now) {
                return Ok(key);
            }
            // A fresh set lacks the key: fetched again only once per RETRY.
            if held.keys.is_some() && !held.due(now, RETRY) {
                return Err(missing());
            }
        }
        let fetched = fetch(url).and_then(|json| {
            serde_json::from_str::<JwkSet>(&json)
                .map_err(|e| format!("authJWTJWKS {url} is not a JWK set: {e}"))
        });
        let mut held = lock(&self.held);
        held.fetched = Some(now);
        held.keys = Some(fetched?);
        held.key(header).cloned().ok_or_else(missing)
    }
}

/// The algorithms a key may verify.
fn family(jwk: &Jwk) -> &'static [Algorithm] {
    use Algorithm::*;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[ES256],
            EllipticCurve::P384 => &[ES384],
            _ => &[],
        },
        AlgorithmParameters::OctetKeyPair(_) => &[EdDSA],
        AlgorithmParameters::OctetKey(_) => &[HS256, HS384, HS512],
    }
}

/// The permissions claim: a list of `{action, path}`, or that list as a JSON string
/// (some identity servers only issue string claims).
fn permissions(claim: Option<&serde_json::Value>, key: &str) -> Result<Vec<Permission>, String> {
    #[derive(Deserialize)]
    struct Raw {
        action: super::Action,
        #[serde(default)]
        path: Option<String>,
    }
    let claim = claim.ok_or_else(|| format!("the JWT has no claim '{key}'"))?;
    let bad =
        |e: &dyn std::fmt::Display| format!("the JWT's claim '{key}' is not permissions: {e}");
    let raw: Vec<Raw> = match claim {
        serde_json::Value::String(text) => serde_json::from_str(text).map_err(|e| bad(&e))?,
        value => serde_json::from_value(value.clone()).map_err(|e| bad(&e))?,
    };
    raw.into_iter()
        .map(|p| {
            Ok(Permission {
                action: p.action,
                path: PathRule::parse(p.path.as_deref().unwrap_or_default())
                    .map_err(|e| bad(&e))?,
            })
        })
        .collect()
}
