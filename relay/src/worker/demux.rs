//! Which session a datagram is for, and which worker owns it.
//!
//! A connectivity check carries the session's ufrag, so checks go by ufrag, whoever
//! sends them: an address follows its newest valid check, even to another session or
//! worker. Everything else goes by source address, and an address maps to a session
//! only after the session authenticated it (a check signed with its ICE password,
//! see `session::ice`). A session lives on the worker that first got a valid check for
//! it; what reaches another worker from its addresses is forwarded there.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::stun;
use crate::io::Datagram;

/// Remembered addresses of other workers' sessions; forgotten wholesale past this.
const MAX_FOREIGN: usize = 4096;

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// To this worker's session in this slot.
    Session(usize),
    /// To the worker that owns the sender's session.
    Worker(usize),
    /// A check naming a ufrag no session here has: the registry decides.
    Claim(&'a str),
    /// Nowhere: no session knows the sender.
    Unknown,
}

#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_ufrag: HashMap<String, usize>,
    by_remote: HashMap<SocketAddr, usize>,
    /// Addresses of sessions another worker owns, learned from their valid checks.
    foreign: HashMap<SocketAddr, usize>,
    /// Each slot's authenticated addresses: what `by_remote` maps to it, unless a
    /// later session took the address over.
    remotes: Vec<Vec<SocketAddr>>,
}

impl Demux {
    pub fn target<'a>(&self, d: &Datagram<'a>) -> Target<'a> {
        if let Some(ufrag) = stun::local_ufrag(d.data) {
            return match self.by_ufrag.get(ufrag) {
                Some(&slot) => Target::Session(slot),
                None => Target::Claim(ufrag),
            };
        }
        if let Some(&slot) = self.by_remote.get(&d.source) {
            return Target::Session(slot);
        }
        match self.foreign.get(&d.source) {
            Some(&owner) => Target::Worker(owner),
            None => Target::Unknown,
        }
    }

    /// The slot of a datagram another worker forwarded here: only sessions of this
    /// worker count (a forwarded datagram is never forwarded again).
    pub fn forwarded_target(&self, d: &Datagram<'_>) -> Option<usize> {
        match stun::local_ufrag(d.data) {
            Some(ufrag) => self.by_ufrag.get(ufrag).copied(),
            None => self.by_remote.get(&d.source).copied(),
        }
    }

    /// `source` sent a valid check for a session of worker `owner`.
    pub fn learn_foreign(&mut self, source: SocketAddr, owner: usize) {
        if self.foreign.len() >= MAX_FOREIGN {
            self.foreign.clear();
        }
        self.foreign.insert(source, owner);
    }

    pub fn add_session(&mut self, slot: usize, ufrag: &str) {
        self.by_ufrag.insert(ufrag.to_string(), slot);
        if self.remotes.len() <= slot {
            self.remotes.resize_with(slot + 1, Vec::new);
        }
    }

    /// The session in `slot` authenticated `remote`: its datagrams go there from now on.
    /// True if the address is new to the session.
    pub fn bind(&mut self, slot: usize, remote: SocketAddr) -> bool {
        self.by_remote.insert(remote, slot);
        let remotes = &mut self.remotes[slot];
        let new = !remotes.contains(&remote);
        if new {
            remotes.push(remote);
        }
        new
    }

    /// `remote` is no longer the session's (it keeps a bounded number).
    pub fn unbind(&mut self, slot: usize, remote: SocketAddr) {
        self.remotes[slot].retain(|r| *r != remote);
        self.release(slot, remote);
    }

    /// The session in `slot` ended; returns the addresses it had.
    pub fn remove_session(&mut self, slot: usize, ufrag: &str) -> Vec<SocketAddr> {
        self.by_ufrag.remove(ufrag);
        let remotes = std::mem::take(&mut self.remotes[slot]);
        for remote in &remotes {
            self.release(slot, *remote);
        }
        remotes
    }

    /// Unmaps `remote`, unless another session has taken it since.
    fn release(&mut self, slot: usize, remote: SocketAddr) {
        if self.by_remote.get(&remote) == Some(&slot) {
            self.by_remote.remove(&remote);
        }
    }
}

#[cfg(test)]
pub(in crate::worker) mod tests {
    use super::*;

    const LOCAL: &str = "10.0.0.1:8189";

    fn datagram<'a>(source: &str, data: &'a [u8]) -> Datagram<'a> {
        Datagram {
            source: source.parse().unwrap(),
            destination: LOCAL.parse().unwrap(),
            data,
        }
    }

    /// A binding request whose USERNAME is `username` (no integrity: routing only).
    /// A binding request with `username` (`ours:theirs`), unsigned.
    pub(in crate::worker) fn check(username: &str) -> Vec<u8> {
        let mut attr = vec![0, 6];
        attr.extend((username.len() as u16).to_be_bytes());
        attr.extend(username.as_bytes());
        attr.resize(4 + username.len().next_multiple_of(4), 0);
        let mut p = vec![0, 1];
        p.extend((attr.len() as u16).to_be_bytes());
        p.extend([0x21, 0x12, 0xa4, 0x42]);
        p.extend([7; 12]);
        p.extend(attr);
        p
    }

    #[test]
    fn checks_go_by_ufrag_the_rest_by_authenticated_address() {
        let mut demux = Demux::default();
        demux.add_session(3, "abcd");
        let viewer = "10.0.0.9:5000";
        let rtcp = [0x80, 200, 0, 1];
        assert_eq!(
            demux.target(&datagram(viewer, &check("abcd:x"))),
            Target::Session(3)
        );
        assert_eq!(
            demux.target(&datagram(viewer, &check("zzzz:x"))),
            Target::Claim("zzzz")
        );
        // Until the session authenticates the address, nothing else reaches it.
        assert_eq!(demux.target(&datagram(viewer, &rtcp)), Target::Unknown);
        assert!(demux.bind(3, viewer.parse().unwrap()));
        assert!(
            !demux.bind(3, viewer.parse().unwrap()),
            "already the session's"
        );
        assert_eq!(demux.target(&datagram(viewer, &rtcp)), Target::Session(3));
        for runt in [&[][..], &[0], &[0x80], &[0, 1, 0]] {
            assert_eq!(demux.target(&datagram("10.0.0.8:1", runt)), Target::Unknown);
            assert_eq!(demux.target(&datagram(viewer, runt)), Target::Session(3));
        }
        assert_eq!(
            demux.remove_session(3, "abcd"),
            vec![viewer.parse().unwrap()]
        );
        assert_eq!(demux.target(&datagram(viewer, &rtcp)), Target::Unknown);
        assert_eq!(
            demux.target(&datagram(viewer, &check("abcd:x"))),
            Target::Claim("abcd")
        );
    }

    #[test]
    fn an_address_taken_over_stays_with_its_new_session() {
        let mut demux = Demux::default();
        demux.add_session(0, "aaaa");
        demux.add_session(1, "bbbb");
        let shared: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        demux.bind(0, shared);
        demux.bind(1, shared);
        demux.remove_session(0, "aaaa");
        let d = datagram("10.0.0.9:5000", &[0x80, 200]);
        assert_eq!(demux.target(&d), Target::Session(1));
        demux.unbind(1, shared);
        assert_eq!(demux.target(&d), Target::Unknown);
    }

    #[test]
    fn other_workers_addresses_are_forwarded_and_forwarded_ones_never_again() {
        let mut demux = Demux::default();
        demux.learn_foreign("10.0.0.9:5000".parse().unwrap(), 1);
        let d = datagram("10.0.0.9:5000", &[0x80, 200]);
        assert_eq!(demux.target(&d), Target::Worker(1));
        assert_eq!(demux.forwarded_target(&d), None);
        demux.add_session(2, "cccc");
        let c = check("cccc:x");
        assert_eq!(
            demux.forwarded_target(&datagram("10.0.0.9:5000", &c)),
            Some(2)
        );
    }
}
