//! How many HTTP connections a listener holds open, per client address and overall.
//!
//! `readTimeout` cuts idle and slow clients off, but until then each holds a file
//! descriptor, a task and hyper's buffers (up to the 32 KiB header cap). Without a
//! bound, one address opening connections faster than they time out would take every
//! descriptor the process has, and then no viewer could connect (accept fails). So a
//! connection past either limit is answered 503 at once and closed; the others, and
//! every other address, are served as before.
//!
//! Sans-IO: the accept loop asks [`Connections::admit`] for a place; the [`Held`] it
//! gets back gives the place back when the connection's task drops it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The bounds of one listener (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `httpMaxConnectionsPerIP`
    pub per_address: usize,
    /// `httpMaxConnections`
    pub total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            per_address: 64,
            total: 4096,
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Address,
    Total,
}

impl Full {
    /// The metrics' `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Full::Address => "address",
            Full::Total => "total",
        }
    }

    /// What the refused client reads: an HTTP answer written before its request is
    /// read (clients take those), so that a person sees which limit it met.
    pub fn response(self) -> String {
        let body = match self {
            Full::Address => {
                "too many open connections from this address (httpMaxConnectionsPerIP)\n"
            }
            Full::Total => "too many open connections to this listener (httpMaxConnections)\n",
        };
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// The connections one listener holds, and those it refused.
#[derive(Debug, Default)]
pub struct Connections {
    limits: ConnectionLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_address: HashMap<IpAddr, usize>,
    open: usize,
    /// By [`Full::reason`]: address, total.
    refused: [u64; 2],
}

/// What the metrics show of a [`Connections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    pub limits: ConnectionLimits,
    pub open: usize,
    /// The most any one address holds.
    pub most_of_one_address: usize,
    pub refused_address: u64,
    pub refused_total: u64,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `client`, held until the [`Held`] is dropped, or
    /// the limit in the way (counted).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Held, Full> {
        let ConnectionLimits { per_address, total } = self.limits;
        let mut inner = self.lock();
        let mine = inner.by_address.get(&client).copied().unwrap_or(0);
        let full = if per_address > 0 && mine >= per_address {
            Some(Full::Address)
        } else if total > 0 && inner.open >= total {
            Some(Full::Total)
        } else {
            None
        };
        if let Some(full) = full {
            inner.refused[usize::from(full == Full::Total)] += 1;
            return Err(full);
        }
        *inner.by_address.entry(client).or_default() += 1;
        inner.open += 1;
        Ok(Held {
            connections: self.clone(),
            client,
        })
    }

    pub fn stats(&self) -> ConnectionStats {
        let inner = self.lock();
        ConnectionStats {
            limits: self.limits,
            open: inner.open,
            most_of_one_address: inner.by_address.values().copied().max().unwrap_or(0),
            refused_address: inner.refused[0],
            refused_total: inner.refused[1],
        }
    }
}

/// A connection's place: given back on drop.
#[derive(Debug)]
pub struct Held {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut inner = self.connections.lock();
        if let Some(n) = inner.by_address.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                inner.by_address.remove(&self.client);
            }
        }
        inner.open -= 1;
    }
}

/// Each HTTP listener's connections, by the name the metrics give it.
#[derive(Debug)]
pub struct Listeners {
    pub webrtc: Arc<Connections>,
    pub metrics: Arc<Connections>,
    pub api: Arc<Connections>,
    pub pprof: Arc<Connections>,
}

impl Listeners {
    /// Each listener with `limits` of its own: a flood of the public WHEP listener
    /// does not lock the operator out of the metrics or the API.
    pub fn new(limits: ConnectionLimits) -> Listeners {
        Listeners {
            webrtc: Connections::new(limits),
            metrics: Connections::new(limits),
            api: Connections::new(limits),
            pprof: Connections::new(limits),
        }
    }

    pub fn all(&self) -> [(&'static str, &Connections); 4] {
        [
            ("webrtc", &self.webrtc),
            ("metrics", &self.metrics),
            ("api", &self.api),
            ("pprof", &self.pprof),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_past_its_limit_is_refused_and_others_are_not() {
        let c = Connections::new(ConnectionLimits {
            per_address: 2,
            total: 3,
        });
        let a1 = c.admit(A).unwrap();
        let _a2 = c.admit(A).unwrap();
        assert_eq!(c.admit(A).unwrap_err(), Full::Address);
        let _b1 = c.admit(B).unwrap();
        // Three open: B's second meets the total.
        assert_eq!(c.admit(B).unwrap_err(), Full::Total);
        let s = c.stats();
        assert_eq!((s.open, s.most_of_one_address), (3, 2));
        assert_eq!((s.refused_address, s.refused_total), (1, 1));
        // A closed one frees its place, for its address and in the total.
        drop(a1);
        let _a3 = c.admit(A).unwrap();
        assert_eq!(c.stats().open, 3);
    }

    #[test]
    fn places_are_given_back_whole_and_zero_is_no_limit() {
        let c = Connections::new(ConnectionLimits {
            per_address: 0,
            total: 0,
        });
        let held: Vec<Held> = (0..10_000).map(|_| c.admit(A).unwrap()).collect();
        assert_eq!(c.stats().open, 10_000);
        drop(held);
        let s = c.stats();
        assert_eq!((s.open, s.most_of_one_address), (0, 0));
        assert!(c.lock().by_address.is_empty());
    }

    #[test]
    fn the_refusals_are_well_formed_http() {
        for full in [Full::Address, Full::Total] {
            let text = full.response();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = (head.lines())
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), length, "{text}");
            assert!(body.contains("httpMaxConnections"), "{text}");
        }
    }
}
