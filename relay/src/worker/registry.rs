//! Where sessions wait between the HTTP answer and their first packet, and how
//! threads reach a worker. This is the control plane: a mutex, touched when a
//! session is created, claimed or closed, never per media packet.
//!
//! Every worker has its own socket on the shared media port (SO_REUSEPORT), and the
//! kernel picks the socket by the viewer's address. So a session cannot be placed
//! when its offer is answered: it waits here, keyed by its ICE ufrag, until a worker
//! receives a connectivity check naming that ufrag and claims it. Datagrams that later
//! reach another worker (a second candidate pair) are forwarded to the owner.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::io::wake::Wakers;
use crate::session::Session;
use crate::track::Track;

/// A configured path and what is published on it.
#[derive(Debug)]
pub struct Path {
    pub name: String,
    pub tracks: Vec<Arc<Track>>,
    /// 0: no limit.
    pub max_readers: usize,
    pub readers: AtomicUsize,
}

/// A session answered over HTTP, not yet claimed by a worker.
#[derive(Debug)]
pub struct Pending {
    pub id: String,
    pub path: Arc<Path>,
    pub session: Box<Session>,
    pub created: Instant,
}

#[derive(Debug)]
pub enum Command {
    /// A datagram another worker received for a session this worker owns.
    Datagram {
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
        at: Instant,
    },
    Close(String),
}

pub enum Claim {
    Mine(Pending),
    Owner(usize),
    Unknown,
}

#[derive(Debug, Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    /// ufrag -> owning worker, for claimed sessions.
    owners: HashMap<String, usize>,
    /// session id -> (path name, ufrag).
    ids: HashMap<String, (String, String)>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    inboxes: Vec<Mutex<Vec<Command>>>,
    wakers: Arc<Wakers>,
}

impl Registry {
    pub fn new(wakers: Arc<Wakers>) -> Registry {
        Registry {
            inner: Mutex::default(),
            inboxes: (0..wakers.len()).map(|_| Mutex::default()).collect(),
            wakers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks a new session until a worker claims it. The caller counted it in
    /// `path.readers` already.
    pub fn add(&self, pending: Pending) {
        let mut inner = self.lock();
        let ufrag = pending.session.ufrag().to_string();
        inner.ids.insert(
            pending.id.clone(),
            (pending.path.name.clone(), ufrag.clone()),
        );
        inner.pending.insert(ufrag, pending);
    }

    /// Worker `worker` received a check for `ufrag`.
    pub fn claim(&self, ufrag: &str, worker: usize) -> Claim {
        let mut inner = self.lock();
        if let Some(&owner) = inner.owners.get(ufrag) {
            return Claim::Owner(owner);
        }
        match inner.pending.remove(ufrag) {
            Some(p) => {
                inner.owners.insert(ufrag.to_string(), worker);
                Claim::Mine(p)
            }
            None => Claim::Unknown,
        }
    }

    /// Ends session `id` of `path`: drops it if pending, asks its worker otherwise.
    /// False when there is no such session.
    pub fn close(&self, path: &str, id: &str) -> bool {
        let mut inner = self.lock();
        let Some((p, ufrag)) = inner.ids.get(id).cloned() else {
            return false;
        };
        if p != path {
            return false;
        }
        if let Some(pending) = inner.pending.remove(&ufrag) {
            inner.ids.remove(id);
            pending.path.readers.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        let owner = inner.owners.get(&ufrag).copied();
        drop(inner);
        if let Some(worker) = owner {
            self.send(worker, Command::Close(id.to_string()));
        }
        true
    }

    /// A worker's session ended: forget it and free its reader place.
    pub fn closed(&self, id: &str, path: &Path) {
        let mut inner = self.lock();
        if let Some((_, ufrag)) = inner.ids.remove(id) {
            inner.owners.remove(&ufrag);
        }
        path.readers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops sessions no viewer ever reached within `timeout`. Returns how many.
    pub fn expire(&self, now: Instant, timeout: Duration) -> usize {
        let mut inner = self.lock();
        let stale: Vec<String> = inner
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) > timeout)
            .map(|(ufrag, _)| ufrag.clone())
            .collect();
        for ufrag in &stale {
            if let Some(p) = inner.pending.remove(ufrag) {
                inner.ids.remove(&p.id);
                p.path.readers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        stale.len()
    }

    pub fn send(&self, worker: usize, command: Command) {
        self.inboxes[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        self.wakers.wake(1 << worker);
    }

    /// Everything sent to `worker` since it last looked.
    pub fn take_commands(&self, worker: usize, into: &mut Vec<Command>) {
        let mut inbox = self.inboxes[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        into.append(&mut inbox);
    }
}
