//! Which session a STUN check is for, before any session owns the sender's address.
//! str0m validates the message (integrity, fingerprint); this only routes it.

use std::time::Instant;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const USERNAME: u16 = 0x0006;

/// Our ICE ufrag from a binding request's USERNAME (`ours:theirs`, RFC 8445 7.2.2).
pub fn local_ufrag(packet: &[u8]) -> Option<&str> {
    if packet.len() < 20 || packet[0..2] != BINDING_REQUEST || packet[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let mut attrs = packet.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let value = attrs.get(4..4 + alen)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split_once(':').map(|(ours, _)| ours);
        }
        attrs = attrs.get(4 + alen.next_multiple_of(4)..)?;
    }
    None
}

/// How many checks from addresses no session of this worker has yet may go on to a
/// claim (the registry's lock, and a password check when the ufrag is pending): a
/// token bucket, the workers' share of `xdpSTUNGlobalRate`/`xdpSTUNGlobalBurst`. It is
/// the first thing such a check meets in portable mode, before any lookup, so that a
/// flood of checks from many addresses (each new, each within any per-address limit)
/// costs the workers a compare each past the budget; in XDP mode the program has
/// applied the same budget already.
#[derive(Debug, Clone)]
pub struct ClaimBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl ClaimBudget {
    /// `rate` checks a second, `burst` at once; full at first.
    pub fn new(rate: f64, burst: f64) -> ClaimBudget {
        ClaimBudget {
            rate,
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// Whether one more check may go on at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 1];
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(attrs);
        p
    }

    #[test]
    fn finds_username_after_other_attributes() {
        // PRIORITY (4 bytes), then USERNAME "abcd:xyz" padded to 8.
        let p = request(&[
            0, 0x24, 0, 4, 1, 2, 3, 4, 0, 6, 0, 8, b'a', b'b', b'c', b'd', b':', b'x', b'y', b'z',
        ]);
        assert_eq!(local_ufrag(&p), Some("abcd"));
        let odd = request(&[0, 6, 0, 6, b'a', b'b', b':', b'x', b'y', b'z', 0, 0]);
        assert_eq!(local_ufrag(&odd), Some("ab"));
    }

    #[test]
    fn refuses_what_is_not_a_binding_request_with_username() {
        assert_eq!(local_ufrag(&request(&[0, 0x24, 0, 4, 1, 2, 3, 4])), None);
        let mut response = request(&[0, 6, 0, 4, b'a', b':', b'b', b'c']);
        response[0] = 1;
        assert_eq!(local_ufrag(&response), None);
        let no_colon = request(&[0, 6, 0, 4, b'a', b'b', b'c', b'd']);
        assert_eq!(local_ufrag(&no_colon), None);
        let overlong = request(&[0, 6, 0, 40, b'a', b':', b'b', b'c']);
        assert_eq!(local_ufrag(&overlong), None);
        assert_eq!(local_ufrag(&[0, 1, 0, 0]), None);
        for cut in 0..28 {
            let p = request(&[0, 6, 0, 4, b'a', b':', b'b', b'c']);
            let _ = local_ufrag(&p[..cut]);
        }
    }

    #[test]
    fn the_claim_budget_lets_its_burst_through_then_its_rate() {
        let t0 = Instant::now();
        let mut budget = ClaimBudget::new(100.0, 5.0);
        assert_eq!((0..10).filter(|_| budget.take(t0)).count(), 5);
        // 100 a second: one every 10 ms, never more than the burst however long it waited.
        let t1 = t0 + std::time::Duration::from_millis(30);
        assert_eq!((0..10).filter(|_| budget.take(t1)).count(), 3);
        let t2 = t1 + std::time::Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| budget.take(t2)).count(), 5);
    }
}
