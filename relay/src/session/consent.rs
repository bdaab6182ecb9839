//! After the handshake, without str0m: answering the viewer's ICE consent checks
//! (RFC 7675) is all a live viewer needs of ICE. Keeping str0m's whole `Rtc` for that
//! would cost about 70 KB per viewer (its DTLS state, buffers and stream tables); this
//! keeps a time. STUN parsing and the reply come from `is`, str0m's own ICE crate; the
//! session has checked the request's integrity ([`super::ice`]) before it gets here.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use is::stun::StunMessage;

use super::ice::{hmac_sha1, IceCredentials};

/// A viewer whose checks stop for this long has gone (RFC 7675 allows up to 30 s;
/// browsers check about every 5 s).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Consent {
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
    pub fn new(now: Instant) -> Consent {
        Consent { last: now }
    }

    /// Answers `check`, a binding request from `source` that `ice` verified: consent
    /// is renewed and the success response is signed with our password.
    pub fn answer(
        &mut self,
        now: Instant,
        ice: &IceCredentials,
        source: SocketAddr,
        check: &StunMessage<'_>,
    ) -> Reply {
        let mut buf = [0u8; 128];
        let len = StunMessage::binding_reply(check.trans_id(), source)
            .to_bytes(Some(ice.password.as_bytes()), &mut buf, hmac_sha1)
            .expect("a binding reply with one address fits 128 bytes");
        self.last = now;
        Reply {
            data: buf[..len].to_vec(),
            nominates: check.use_candidate(),
        }
    }

    /// When consent lapses unless another check arrives.
    pub fn expires(&self) -> Instant {
        self.last + CONSENT_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ice::tests::check;

    #[test]
    fn answers_checks_signed_and_renews_consent() {
        let t0 = Instant::now();
        let ice = IceCredentials {
            ufrag: "ours".into(),
            password: "secretpasswordof22char".into(),
        };
        let mut c = Consent::new(t0);
        let from: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let t1 = t0 + Duration::from_secs(3);
        let request = check("ours:theirs", "secretpasswordof22char", false);
        let reply = c.answer(t1, &ice, from, &ice.verify(&request).unwrap());
        assert!(!reply.nominates);
        assert_eq!(c.expires(), t1 + CONSENT_TIMEOUT);
        // The reply is a success response signed with our password, mapping the source.
        let msg = StunMessage::parse(&reply.data).unwrap();
        assert!(msg.is_successful_binding_response());
        assert!(msg.verify(b"secretpasswordof22char", hmac_sha1));
        assert_eq!(msg.mapped_address(), Some(from));

        let nominating = check("ours:theirs", "secretpasswordof22char", true);
        assert!(
            c.answer(t1, &ice, from, &ice.verify(&nominating).unwrap())
                .nominates
        );
    }
}
