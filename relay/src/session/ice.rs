//! The one gate an address passes to become a session's: a STUN binding request that
//! names our ufrag and carries a MESSAGE-INTEGRITY made with our ICE password (RFC 8445
//! 7.2.2 and 7.3, RFC 5389 15.4). Anyone can learn a session's ufrag from the wire; only
//! the viewer that got our answer knows the password. Until an address has passed this
//! gate, nothing it sends but such a check reaches a session, so a forged datagram can
//! neither bind an address to a session nor speak DTLS or SRTCP as its viewer.

use hmac::{Hmac, Mac};
use is::stun::StunMessage;
use sha1::Sha1;

/// Our side's ICE credentials, as in the SDP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub password: String,
}

impl IceCredentials {
    /// The parsed request when `data` is a binding request for us with valid integrity;
    /// None for anything else (not STUN, another ufrag, a wrong or missing integrity).
    pub fn verify<'a>(&self, data: &'a [u8]) -> Option<StunMessage<'a>> {
        let msg = StunMessage::parse(data).ok()?;
        if !msg.is_binding_request() {
            return None;
        }
        let (ours, _) = msg.split_username()?;
        (ours == self.ufrag && msg.verify(self.password.as_bytes(), hmac_sha1)).then_some(msg)
    }
}

/// STUN's MESSAGE-INTEGRITY function, in the form `is` takes it.
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use is::stun::TransId;

    /// A binding request as a viewer sends it, signed with `password`.
    pub(crate) fn check(username: &str, password: &str, use_candidate: bool) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = StunMessage::binding_request(username, TransId::new(), true, 7, 100, use_candidate)
            .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
            .unwrap();
        buf[..n].to_vec()
    }

    fn ours() -> IceCredentials {
        IceCredentials {
            ufrag: "ours".into(),
            password: "secretpasswordof22char".into(),
        }
    }

    #[test]
    fn passes_only_requests_for_our_ufrag_signed_with_our_password() {
        let ice = ours();
        assert!(ice
            .verify(&check("ours:theirs", "secretpasswordof22char", false))
            .is_some());
        assert!(ice
            .verify(&check("ours:theirs", "secretpasswordof22chaX", false))
            .is_none());
        assert!(ice
            .verify(&check("other:theirs", "secretpasswordof22char", false))
            .is_none());
        // Our ufrag, no integrity at all.
        let mut buf = [0u8; 256];
        let n = StunMessage::binding_request("ours:theirs", TransId::new(), true, 7, 100, false)
            .to_bytes(None, &mut buf, hmac_sha1)
            .unwrap();
        assert!(ice.verify(&buf[..n]).is_none());
        // A success response signed with our password is not a check.
        let n = StunMessage::binding_reply(TransId::new(), "192.0.2.1:9".parse().unwrap())
            .to_bytes(Some(b"secretpasswordof22char"), &mut buf, hmac_sha1)
            .unwrap();
        assert!(ice.verify(&buf[..n]).is_none());
    }

    #[test]
    fn runts_and_cut_checks_are_refused() {
        let ice = ours();
        let good = check("ours:theirs", "secretpasswordof22char", true);
        for len in 0..good.len() {
            assert!(ice.verify(&good[..len]).is_none(), "cut at {len}");
        }
        for first in 0..=255u8 {
            assert!(ice.verify(&[first]).is_none());
        }
    }
}
