//! Failed authentications, limited per address: guessing passwords or tokens from one
//! address is slowed to [`Failures::LIMIT`] tries per [`Failures::WINDOW`], and the log
//! gets one line per address and window once it is over the limit, not one per try.
//! MediaMTX instead sleeps up to 4 s before each refusal, which holds a connection per
//! try; a limited address here is answered at once (429 with `Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Failures {
    by_address: HashMap<IpAddr, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// What to do with a request from an address, before checking its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Check,
    /// Over the limit: refuse without checking, for this long.
    Limited(Duration),
}

impl Failures {
    /// Failed tries an address may make per window.
    pub const LIMIT: u32 = 10;
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Addresses remembered at most (a flood from many addresses cannot grow the map
    /// past this; past it, new addresses are not limited until old windows end).
    const MAX_ADDRESSES: usize = 65_536;

    pub fn verdict(&self, ip: IpAddr, now: Instant) -> Verdict {
        match self.by_address.get(&ip) {
            Some(w) if w.failures >= Self::LIMIT && now < w.start + Self::WINDOW => {
                Verdict::Limited(w.start + Self::WINDOW - now)
            }
            _ => Verdict::Check,
        }
    }

    /// Counts a failed try; true when it is the one that reaches the limit (the time
    /// to say so in the log).
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.by_address.len() >= Self::MAX_ADDRESSES && !self.by_address.contains_key(&ip) {
            self.by_address.retain(|_, w| now < w.start + Self::WINDOW);
            if self.by_address.len() >= Self::MAX_ADDRESSES {
                return false;
            }
        }
        let window = self.by_address.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= window.start + Self::WINDOW {
            *window = Window {
                start: now,
                failures: 0,
            };
        }
        window.failures += 1;
        window.failures == Self::LIMIT
    }
}
