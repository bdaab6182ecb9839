//! JSON Web Tokens for the tests of `authMethod: jwt`: an ES256 key made for the test,
//! its key set (what an identity server publishes at its JWKS URL) and tokens it signs.

use base64::Engine;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

pub struct Signer {
    kid: String,
    pkcs8: Vec<u8>,
    /// The key set with this signer's public key, as JSON.
    pub jwks: String,
}

impl Signer {
    /// A new P-256 key named `kid`.
    pub fn new(kid: &str) -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key just made");
        // An uncompressed point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]})
        .to_string();
        Signer {
            kid: kid.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwks,
        }
    }

    /// A token with `claims`, signed by this key and naming it.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
    }
}

/// Seconds since the Unix epoch, for `exp` and `nbf`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}
