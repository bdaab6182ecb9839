//! After the handshake, without str0m: answering the viewer's ICE consent checks
//! (RFC 7675) is all a live viewer needs of ICE. Keeping str0m's whole `Rtc` for that
//! would cost about 70 KB per viewer (its DTLS state, buffers and stream tables); this
//! keeps two strings and a time. STUN parsing, integrity and the reply come from `is`,
//! str0m's own ICE crate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use is::stun::StunMessage;
use sha1::Sha1;

/// A viewer whose checks stop for this long has gone (RFC 7675 allows up to 30 s;
/// browsers check about every 5 s).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Consent {
    ufrag: String,
    password: String,
    last: Instant,
}

/// What to do with a valid check.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub data: Vec<u8>,
    /// The check nominates its pair (USE-CANDIDATE): media should follow it.
    pub nominates: bool,
}

impl Consent {
    /// `ufrag` and `password` are our ICE credentials, as in the SDP answer.
    pub fn new(ufrag: String, password: String, now: Instant) -> Consent {
        Consent {
            ufrag,
            password,
            last: now,
        }
    }

    /// A binding request from `source`: the reply when it is a check for us with valid
    /// integrity, None otherwise (the caller counts and drops it).
    pub fn check(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> Option<Reply> {
        let msg = StunMessage::parse(data).ok()?;
        if !msg.is_binding_request() {
            return None;
        }
        let (ours, _) = msg.split_username()?;
        if ours != self.ufrag || !msg.verify(self.password.as_bytes(), hmac_sha1) {
            return None;
        }
        let nominates = msg.use_candidate();
        let mut buf = [0u8; 128];
        let len = StunMessage::binding_reply(msg.trans_id(), source)
            .to_bytes(Some(self.password.as_bytes()), &mut buf, hmac_sha1)
            .ok()?;
        self.last = now;
        Some(Reply {
            data: buf[..len].to_vec(),
            nominates,
        })
    }

    /// When consent lapses unless another check arrives.
    pub fn expires(&self) -> Instant {
        self.last + CONSENT_TIMEOUT
    }
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use is::stun::TransId;

    fn request(username: &str, password: &str, use_candidate: bool) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = StunMessage::binding_request(username, TransId::new(), true, 7, 100, use_candidate)
            .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
            .unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn answers_valid_checks_and_refuses_the_rest() {
        let t0 = Instant::now();
        let mut c = Consent::new("ours".into(), "secretpassword".into(), t0);
        let from: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let t1 = t0 + Duration::from_secs(3);
        let reply = c
            .check(t1, from, &request("ours:theirs", "secretpassword", false))
            .unwrap();
        assert!(!reply.nominates);
        assert_eq!(c.expires(), t1 + CONSENT_TIMEOUT);
        // The reply is a success response signed with our password, mapping the source.
        let msg = StunMessage::parse(&reply.data).unwrap();
        assert!(msg.is_successful_binding_response());
        assert!(msg.verify(b"secretpassword", hmac_sha1));
        assert_eq!(msg.mapped_address(), Some(from));

        assert!(
            c.check(t1, from, &request("ours:theirs", "secretpassword", true))
                .unwrap()
                .nominates
        );
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            c.check(t2, from, &request("ours:theirs", "wrongpassword!", false)),
            None
        );
        assert_eq!(
            c.check(t2, from, &request("other:theirs", "secretpassword", false)),
            None
        );
        assert_eq!(c.check(t2, from, b"\x00\x01garbage"), None);
        assert_eq!(
            c.expires(),
            t1 + CONSENT_TIMEOUT,
            "refused checks do not refresh consent"
        );
    }
}
