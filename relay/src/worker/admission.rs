//! How many sessions may wait answered but not yet live (no connectivity check signed
//! with their ICE password yet), per client address and overall. Each holds str0m's
//! SDP, ICE and DTLS state until `webrtcHandshakeTimeout` (docs/operations.md gives the
//! cost), and an offer costs its sender nothing: without a bound, one address posting
//! offers it never connects grows the heap without end.
//!
//! Sans-IO: the registry keeps one under its lock, takes a place when an offer comes,
//! and gives it back when the session goes live, is closed or expires.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The bounds (0: none) and how long a pending session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// `webrtcMaxPendingSessionsPerIP`
    pub per_address: usize,
    /// `webrtcMaxPendingSessions`
    pub total: usize,
    /// `webrtcHandshakeTimeout`: when a place frees itself at the latest.
    pub timeout: Duration,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            per_address: 16,
            total: 2000,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why an offer finds no place, and when one frees at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Crowded {
    #[error(
        "{limit} sessions from this address are answered but not connected yet \
         (webrtcMaxPendingSessionsPerIP): connect them, or try again later"
    )]
    Address { limit: usize, wait: Duration },
    #[error(
        "{limit} sessions are answered but not connected yet (webrtcMaxPendingSessions): \
         try again later"
    )]
    Total { limit: usize, wait: Duration },
    #[error(
        "the relay is at capacity: a worker's media to its viewers is running late, and \
         new sessions would stall in their handshakes; try again later"
    )]
    Full { wait: Duration },
}

impl Crowded {
    /// Until the oldest pending session in the way expires.
    pub fn wait(&self) -> Duration {
        match *self {
            Crowded::Address { wait, .. }
            | Crowded::Total { wait, .. }
            | Crowded::Full { wait } => wait,
        }
    }

    /// The metrics' `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Crowded::Address { .. } => "address",
            Crowded::Total { .. } => "total",
            Crowded::Full { .. } => "full",
        }
    }
}

/// The places taken, and the offers refused.
#[derive(Debug, Default)]
pub struct Admission {
    limits: PendingLimits,
    /// When each address's pending sessions were answered (at most `per_address`).
    by_address: HashMap<IpAddr, Vec<Instant>>,
    /// All of them by age: answered at -> how many.
    by_age: BTreeMap<Instant, usize>,
    taken: usize,
    /// Refused offers, by [`Crowded::reason`]: address, total, full.
    refused: [u64; 3],
}

/// What the metrics show of an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionStats {
    pub limits: PendingLimits,
    pub pending: usize,
    /// The most any one address has.
    pub most_of_one_address: usize,
    pub refused_address: u64,
    pub refused_total: u64,
    pub refused_full: u64,
}

impl Admission {
    pub fn new(limits: PendingLimits) -> Admission {
        Admission {
            limits,
            ..Admission::default()
        }
    }

    /// Takes a place for an offer from `client` answered at `now`, or says why not;
    /// none while a worker is `full`.
    pub fn admit(&mut self, client: IpAddr, now: Instant, full: bool) -> Result<(), Crowded> {
        let PendingLimits {
            per_address,
            total,
            timeout,
        } = self.limits;
        // Until the oldest of `answered` expires: at least a second, since the registry
        // expires sessions once a second.
        let wait = |answered: Option<&Instant>| {
            let expires = answered.map_or(now, |&t| t + timeout);
            expires
                .saturating_duration_since(now)
                .max(Duration::from_secs(1))
        };
        let mine = self.by_address.get(&client).map_or(&[][..], Vec::as_slice);
        let crowded = if full {
            Some(Crowded::Full {
                wait: Duration::from_secs(1),
            })
        } else if per_address > 0 && mine.len() >= per_address {
            Some(Crowded::Address {
                limit: per_address,
                wait: wait(mine.iter().min()),
            })
        } else if total > 0 && self.taken >= total {
            Some(Crowded::Total {
                limit: total,
                wait: wait(self.by_age.keys().next()),
            })
        } else {
            None
        };
        if let Some(crowded) = crowded {
            self.refused[match crowded {
                Crowded::Address { .. } => 0,
                Crowded::Total { .. } => 1,
                Crowded::Full { .. } => 2,
            }] += 1;
            return Err(crowded);
        }
        self.by_address.entry(client).or_default().push(now);
        *self.by_age.entry(now).or_default() += 1;
        self.taken += 1;
        Ok(())
    }

    /// Gives back the place of a session from `client` answered at `answered`: it went
    /// live, was closed, expired, or never got parked.
    pub fn release(&mut self, client: IpAddr, answered: Instant) {
        let Some(mine) = self.by_address.get_mut(&client) else {
            return;
        };
        let Some(i) = mine.iter().position(|&t| t == answered) else {
            return;
        };
        mine.swap_remove(i);
        if mine.is_empty() {
            self.by_address.remove(&client);
        }
        if let Some(n) = self.by_age.get_mut(&answered) {
            *n -= 1;
            if *n == 0 {
                self.by_age.remove(&answered);
            }
        }
        self.taken -= 1;
    }

    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            limits: self.limits,
            pending: self.taken,
            most_of_one_address: self.by_address.values().map(Vec::len).max().unwrap_or(0),
            refused_address: self.refused[0],
            refused_total: self.refused[1],
            refused_full: self.refused[2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    fn admission(per_address: usize, total: usize) -> Admission {
        Admission::new(PendingLimits {
            per_address,
            total,
            timeout: Duration::from_secs(10),
        })
    }

    #[test]
    fn an_address_over_its_limit_waits_for_its_oldest_to_expire() {
        let mut a = admission(2, 100);
        let t0 = Instant::now();
        a.admit(A, t0, false).unwrap();
        a.admit(A, t0 + Duration::from_millis(2500), false).unwrap();
        let refused = a.admit(A, t0 + Duration::from_secs(4), false).unwrap_err();
        assert_eq!(
            refused,
            Crowded::Address {
                limit: 2,
                wait: Duration::from_secs(6)
            }
        );
        // Another address is not in the way.
        a.admit(B, t0 + Duration::from_secs(4), false).unwrap();
        // Past the oldest's expiry but before housekeeping frees it: a second.
        let late = a.admit(A, t0 + Duration::from_secs(11), false).unwrap_err();
        assert_eq!(late.wait(), Duration::from_secs(1));
        let stats = a.stats();
        assert_eq!(
            (stats.pending, stats.most_of_one_address),
            (3, 2),
            "{stats:?}"
        );
        assert_eq!((stats.refused_address, stats.refused_total), (2, 0));
    }

    #[test]
    fn all_addresses_together_wait_for_the_oldest_of_all() {
        let mut a = admission(2, 3);
        let t0 = Instant::now();
        a.admit(A, t0 + Duration::from_secs(1), false).unwrap();
        a.admit(B, t0, false).unwrap();
        a.admit(B, t0 + Duration::from_secs(2), false).unwrap();
        let refused = a.admit(C, t0 + Duration::from_secs(3), false).unwrap_err();
        assert_eq!(
            refused,
            Crowded::Total {
                limit: 3,
                wait: Duration::from_secs(7)
            }
        );
        assert_eq!(refused.reason(), "total");
        assert_eq!(a.stats().refused_total, 1);
    }

    #[test]
    fn a_released_place_is_taken_again() {
        let mut a = admission(1, 2);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        a.admit(A, t0, false).unwrap();
        a.admit(B, t0, false).unwrap();
        assert!(matches!(
            a.admit(A, t1, false),
            Err(Crowded::Address { .. })
        ));
        assert!(matches!(a.admit(C, t1, false), Err(Crowded::Total { .. })));
        // A's session went live (or expired): A and the total have room again.
        a.release(A, t0);
        a.admit(C, t1, false).unwrap();
        a.release(C, t1);
        a.admit(A, t1, false).unwrap();
        // Releasing what was never taken changes nothing.
        a.release(C, t0);
        a.release(A, t0);
        assert_eq!(a.stats().pending, 2);
        a.release(A, t1);
        a.release(B, t0);
        assert_eq!(a.stats().pending, 0);
        assert!(a.by_address.is_empty() && a.by_age.is_empty());
    }

    #[test]
    fn zero_is_no_limit() {
        let mut a = admission(0, 0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            a.admit(A, t0, false).unwrap();
        }
        assert_eq!(a.stats().pending, 1000);
    }

    #[test]
    fn while_a_worker_is_full_every_offer_is_refused_and_counted() {
        let mut a = admission(0, 0);
        let t0 = Instant::now();
        let refused = a.admit(A, t0, true).unwrap_err();
        assert_eq!(refused.reason(), "full");
        assert_eq!(refused.wait(), Duration::from_secs(1));
        assert_eq!((a.stats().pending, a.stats().refused_full), (0, 1));
        a.admit(A, t0, false).unwrap();
        assert_eq!(a.stats().pending, 1);
    }
}
