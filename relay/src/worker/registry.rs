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
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::admission::{Admission, AdmissionStats, Crowded, PendingLimits};
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
    /// Whose offer it answered: the HTTP client's address.
    client: IpAddr,
    /// What the control plane sees of it, from now until it ends.
    pub info: Arc<SessionInfo>,
}

impl Pending {
    /// Session `id` of `path`, answered at `created` to `client`, whose URL had `query`.
    fn new(
        id: String,
        path: Arc<ServedPath>,
        session: Session,
        (client, created): (IpAddr, Instant),
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
            client,
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

#[derive(Debug)]
struct Inner {
    pending: HashMap<String, Pending>,
    /// The places of the pending sessions, per client address and overall.
    admission: Admission,
    /// ufrag -> owning worker and the session's credentials, for claimed sessions.
    owners: HashMap<String, (usize, Arc<IceCredentials>)>,
    /// session id -> (path name, ufrag), and what the control plane sees of it.
    ids: HashMap<String, (String, String, Arc<SessionInfo>)>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    /// Workers whose fan-out is behind (`Egress::full`), a bit each: no new sessions
    /// while any is, since the kernel, not the relay, picks a session's worker.
    full: AtomicU64,
    inboxes: Vec<Mutex<Vec<Command>>>,
    wakers: Arc<Wakers>,
}

impl Registry {
    pub fn new(wakers: Arc<Wakers>, limits: PendingLimits) -> Registry {
        Registry {
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                admission: Admission::new(limits),
                owners: HashMap::new(),
                ids: HashMap::new(),
            }),
            full: AtomicU64::new(0),
            inboxes: (0..wakers.len()).map(|_| Mutex::default()).collect(),
            wakers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a session answering `client`'s offer at `now`, taken before the
    /// offer costs anything; given back unless [`Place::park`]ed.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<Place<'_>, Crowded> {
        let full = self.full.load(Ordering::Relaxed) != 0;
        self.lock().admission.admit(client, now, full)?;
        Ok(Place {
            registry: self,
            client,
            at: now,
            parked: false,
        })
    }

    /// Worker `worker` is full, or no longer.
    pub fn set_full(&self, worker: usize, full: bool) {
        let bit = 1 << worker;
        // Read first: most turns change nothing, and a shared line stays shared.
        if (self.full.load(Ordering::Relaxed) & bit != 0) != full {
            match full {
                true => self.full.fetch_or(bit, Ordering::Relaxed),
                false => self.full.fetch_and(!bit, Ordering::Relaxed),
            };
        }
    }

    /// How many workers are full.
    pub fn workers_full(&self) -> u32 {
        self.full.load(Ordering::Relaxed).count_ones()
    }

    /// The pending sessions, their limits and the offers refused.
    pub fn admission(&self) -> AdmissionStats {
        self.lock().admission.stats()
    }

    /// Parks a new session until a worker claims it. The caller counted it in
    /// `path.readers` already.
    fn add(&self, pending: Pending) {
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
        inner.admission.release(p.client, p.created);
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
            inner.admission.release(pending.client, pending.created);
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
        self.close_where(path, |_| true)
    }

    /// Ends the viewers of `path`, answered or live: their tracks were replaced.
    /// Returns how many.
    pub fn close_viewers(&self, path: &str) -> usize {
        self.close_where(path, |info| info.role == Role::Read)
    }

    fn close_where(&self, path: &str, which: impl Fn(&SessionInfo) -> bool) -> usize {
        let ids: Vec<String> = (self.lock().ids.iter())
            .filter(|(_, (p, _, info))| p == path && which(info))
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
                inner.admission.release(p.client, p.created);
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

/// A pending session's place, between the offer and the session's answer.
#[must_use = "a place not parked is given back"]
pub struct Place<'a> {
    registry: &'a Registry,
    client: IpAddr,
    at: Instant,
    parked: bool,
}

impl Place<'_> {
    /// Parks session `id` of `path`, answered to a request whose URL had `query`,
    /// until a worker claims it; it keeps this place until then.
    pub fn park(mut self, id: String, path: Arc<ServedPath>, session: Session, query: String) {
        self.parked = true;
        let pending = Pending::new(id, path, session, (self.client, self.at), query);
        self.registry.add(pending);
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.parked {
            self.registry.lock().admission.release(self.client, self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ice::tests::check;
    use crate::session::SessionConfig;
    use crate::track::{Codec, Track, TrackInfo};
    use str0m::media::{Direction, MediaKind};

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn registry(limits: PendingLimits) -> Registry {
        Registry::new(Arc::new(Wakers::new(2).unwrap()), limits)
    }

    /// A viewer's session of a path, answered at `now`, and the path.
    fn viewer(now: Instant) -> (Session, Arc<ServedPath>) {
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
        (session, path)
    }

    /// Parks session `id` answered to CLIENT at `now`; its ICE credentials.
    fn park(registry: &Registry, id: &str, now: Instant) -> Result<IceCredentials, Crowded> {
        let place = registry.admit(CLIENT, now)?;
        let (session, path) = viewer(now);
        let ice = session.credentials().clone();
        place.park(id.into(), path, session, String::new());
        Ok(ice)
    }

    #[test]
    fn only_a_check_signed_with_the_password_claims_or_routes() {
        let registry = registry(PendingLimits::default());
        let ice = park(&registry, "s1", Instant::now()).unwrap();
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

    #[test]
    fn a_pending_place_frees_when_its_session_goes_live_is_closed_or_expires() {
        let timeout = Duration::from_secs(10);
        let registry = registry(PendingLimits {
            per_address: 2,
            total: 100,
            timeout,
        });
        let t0 = Instant::now();
        let full = |at| match registry.admit(CLIENT, at) {
            Err(crowded) => crowded,
            Ok(_) => panic!("admitted over the limit"),
        };

        let ice = park(&registry, "live", t0).unwrap();
        park(&registry, "closed", t0).unwrap();
        assert_eq!(full(t0).wait(), timeout);
        assert_eq!(registry.admission().pending, 2);
        // A forged check proves nothing: the place stays taken.
        let username = format!("{}:theirs", ice.ufrag);
        let forged = check(&username, "a-password-of-22-chars", false);
        assert!(matches!(
            registry.claim(&ice.ufrag, &forged, 0),
            Claim::Forged
        ));
        full(t0);
        // Live: a check signed with the password claims it.
        let signed = check(&username, &ice.password, false);
        assert!(matches!(
            registry.claim(&ice.ufrag, &signed, 0),
            Claim::Mine(_)
        ));
        assert_eq!(registry.admission().pending, 1);
        let t1 = t0 + Duration::from_secs(1);
        park(&registry, "expires", t1).unwrap();
        full(t1);
        // Closed (WHEP DELETE) while pending.
        assert!(registry.close("cam", "closed"));
        park(&registry, "expires too", t1).unwrap();
        assert_eq!(
            full(t1 + Duration::from_secs(3)).wait(),
            Duration::from_secs(7)
        );
        // Expired.
        assert_eq!(
            registry.expire(t1 + timeout + Duration::from_millis(1), timeout),
            2
        );
        assert_eq!(registry.admission().pending, 0);
        // An offer refused after its place was taken (a bad SDP) gives it back.
        drop(registry.admit(CLIENT, t1).unwrap());
        drop(registry.admit(CLIENT, t1).unwrap());
        assert_eq!(registry.admission().pending, 0);
        let stats = registry.admission();
        assert_eq!((stats.refused_address, stats.refused_total), (4, 0));
    }
}
