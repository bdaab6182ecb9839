//! Where sessions wait between the HTTP answer and their first packet, and how
//! threads reach a worker. This is the control plane: a mutex, touched when a
//! session is created, claimed or closed, never per media packet.
//!
//! Every worker has its own socket on the shared media port (SO_REUSEPORT), and the
//! kernel picks the socket by the viewer's address. So a session cannot be placed
//! when its offer is answered: it waits here, keyed by its ICE ufrag, until a worker
//! receives a connectivity check naming that ufrag and claims it. Datagrams that later
//! reach another worker (a second candidate pair) are forwarded to the owner.
//!
//! A ufrag is no secret (it crosses the wire in every check), so a claim needs a check
//! signed with the session's ICE password: a forged one can neither place a session
//! on the forger's worker nor teach a worker where an address's traffic belongs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::session_info::{Role, SessionInfo};
use crate::io::wake::Wakers;
use crate::paths::ServedPath;
use crate::session::ice::IceCredentials;
use crate::session::Session;

/// A session answered over HTTP, not yet claimed by a worker.
#[derive(Debug)]
pub struct Pending {
    pub id: String,
    pub path: Arc<ServedPath>,
    pub session: Box<Session>,
    pub created: Instant,
    /// What the control plane sees of it, from now until it ends.
    pub info: Arc<SessionInfo>,
}

impl Pending {
    /// Session `id` of `path`, answered at `created` to a request whose URL had `query`.
    pub fn new(
        id: String,
        path: Arc<ServedPath>,
        session: Session,
        created: Instant,
        query: String,
    ) -> Pending {
        let role = if session.is_publisher() {
            Role::Publish
        } else {
            Role::Read
        };
        let info = Arc::new(SessionInfo::new(id.clone(), path.name.clone(), role, query));
        Pending {
            id,
            path,
            session: Box::new(session),
            created,
            info,
        }
    }
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

/// Gives back what session `id` held of `path`: a viewer's place, or a publisher's
/// tracks and seat. (Unlocked: a path's publisher seat is taken before the registry's
/// lock, so never inside it.)
fn leave_path(id: &str, path: &ServedPath, session: &mut Session) {
    match session.take_writers() {
        Some(writers) => path.publisher_left(id, writers),
        None if session.is_publisher() => path.publisher_left(id, Vec::new()),
        None => path.remove_reader(),
    }
}

pub enum Claim {
    /// The session was waiting: it is now the claiming worker's.
    Mine(Pending),
    /// Another worker owns it: forward the sender's datagrams there.
    Owner(usize),
    /// No session has this ufrag.
    Unknown,
    /// The check is not signed with the session's password.
    Forged,
}

#[derive(Debug, Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    /// ufrag -> owning worker and the session's credentials, for claimed sessions.
    owners: HashMap<String, (usize, Arc<IceCredentials>)>,
    /// session id -> (path name, ufrag), and what the control plane sees of it.
    ids: HashMap<String, (String, String, Arc<SessionInfo>)>,
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
            (
                pending.path.name.clone(),
                ufrag.clone(),
                pending.info.clone(),
            ),
        );
        inner.pending.insert(ufrag, pending);
    }

    /// Worker `worker` received `check`, a binding request naming `ufrag`.
    pub fn claim(&self, ufrag: &str, check: &[u8], worker: usize) -> Claim {
        let mut inner = self.lock();
        if let Some((owner, ice)) = inner.owners.get(ufrag) {
            return match ice.verify(check) {
                Some(_) => Claim::Owner(*owner),
                None => Claim::Forged,
            };
        }
        let Some(p) = inner.pending.get(ufrag) else {
            return Claim::Unknown;
        };
        if p.session.credentials().verify(check).is_none() {
            return Claim::Forged;
        }
        let ice = Arc::new(p.session.credentials().clone());
        let p = inner.pending.remove(ufrag).expect("just found");
        inner.owners.insert(ufrag.to_string(), (worker, ice));
        Claim::Mine(p)
    }

    /// Ends session `id` of `path`: drops it if pending, asks its worker otherwise.
    /// False when there is no such session.
    pub fn close(&self, path: &str, id: &str) -> bool {
        let mut inner = self.lock();
        let Some((p, ufrag, _)) = inner.ids.get(id).cloned() else {
            return false;
        };
        if p != path {
            return false;
        }
        if let Some(mut pending) = inner.pending.remove(&ufrag) {
            inner.ids.remove(id);
            drop(inner);
            leave_path(id, &pending.path, &mut pending.session);
            return true;
        }
        let owner = inner.owners.get(&ufrag).map(|(worker, _)| *worker);
        drop(inner);
        if let Some(worker) = owner {
            self.send(worker, Command::Close(id.to_string()));
        }
        true
    }

    /// Ends every session of `path` (its publisher and viewers): the path left the
    /// config. Returns how many.
    pub fn close_path(&self, path: &str) -> usize {
        let ids: Vec<String> = (self.lock().ids.iter())
            .filter(|(_, (p, ..))| p == path)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter(|id| self.close(path, id)).count()
    }

    /// A worker's session ended: forget it and give back what it held of its path.
    pub fn closed(&self, id: &str, path: &ServedPath, session: &mut Session) {
        let mut inner = self.lock();
        if let Some((_, ufrag, _)) = inner.ids.remove(id) {
            inner.owners.remove(&ufrag);
        }
        drop(inner);
        leave_path(id, path, session);
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
        let mut expired = Vec::new();
        for ufrag in &stale {
            if let Some(p) = inner.pending.remove(ufrag) {
                inner.ids.remove(&p.id);
                expired.push(p);
            }
        }
        drop(inner);
        for mut p in expired {
            leave_path(&p.id, &p.path, &mut p.session);
        }
        stale.len()
    }

    /// Every session, pending or live, in no order.
    pub fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.lock()
            .ids
            .values()
            .map(|(.., info)| info.clone())
            .collect()
    }

    /// Session `id`, pending or live.
    pub fn session(&self, id: &str) -> Option<Arc<SessionInfo>> {
        self.lock().ids.get(id).map(|(.., info)| info.clone())
    }

    /// Wakes the workers in `mask` (bit i: worker i).
    pub fn wake(&self, mask: u64) {
        if mask != 0 {
            self.wakers.wake(mask);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ice::tests::check;
    use crate::session::SessionConfig;
    use crate::track::{Codec, Track, TrackInfo};
    use str0m::media::{Direction, MediaKind};

    fn pending(now: Instant) -> (Pending, Arc<ServedPath>) {
        let track = Track::new(
            TrackInfo {
                codec: Codec::H264,
                fmtp: "packetization-mode=1".into(),
            },
            crate::track::history::Retention::default(),
        )
        .0;
        let path = {
            let path = ServedPath::ready("cam", 0, vec![track]);
            path.add_reader();
            Arc::new(path)
        };
        let mut client = str0m::Rtc::builder().build(now);
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, _) = change.apply().unwrap();
        let config = SessionConfig {
            candidates: vec!["127.0.0.1:8189".parse().unwrap()],
            mtu: 1200,
            handshake_timeout: Duration::from_secs(10),
            allow_legacy_srtp: false,
            keyframe_request_interval: Duration::from_secs(1),
        };
        let (session, _) = Session::viewer(
            now,
            &offer.to_sdp_string(),
            &path.tracks().unwrap(),
            &config,
        )
        .unwrap();
        let p = Pending::new("s1".into(), path.clone(), session, now, String::new());
        (p, path)
    }

    #[test]
    fn only_a_check_signed_with_the_password_claims_or_routes() {
        let registry = Registry::new(Arc::new(Wakers::new(2).unwrap()));
        let (p, _path) = pending(Instant::now());
        let ice = p.session.credentials().clone();
        registry.add(p);
        let username = format!("{}:theirs", ice.ufrag);
        let forged = check(&username, "a-password-of-22-chars", false);
        let signed = check(&username, &ice.password, false);

        assert!(matches!(
            registry.claim(&ice.ufrag, &forged, 1),
            Claim::Forged
        ));
        assert!(
            matches!(registry.claim("nosuchufrag", &signed, 1), Claim::Unknown),
            "another ufrag"
        );
        // The forged check placed nothing: the signed one still claims.
        assert!(matches!(
            registry.claim(&ice.ufrag, &signed, 1),
            Claim::Mine(_)
        ));
        assert!(matches!(
            registry.claim(&ice.ufrag, &signed, 0),
            Claim::Owner(1)
        ));
        assert!(matches!(
            registry.claim(&ice.ufrag, &forged, 0),
            Claim::Forged
        ));
        assert!(matches!(registry.claim(&ice.ufrag, &[], 0), Claim::Forged));
    }
}
