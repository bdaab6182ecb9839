//! One viewer, sans-IO: str0m does SDP, ICE-lite and DTLS; we do SRTP and RTCP.
//!
//! The seam: str0m negotiates, answers connectivity checks and runs the DTLS
//! handshake. When DTLS ends, [`keys`] has captured the keying material, and the
//! session hands an SRTP [`Outbound`] context to the worker, which seals media
//! straight from the track's history ring. From then on the viewer's SRTCP is ours
//! too (NACK, PLI, reports), and str0m's own RTCP output is dropped: it knows
//! nothing of packets it did not send, so its sender reports would mislead the
//! viewer. str0m tells us where the viewer's nominated address is.
//!
//! Once the viewer's first SRTCP opens with our keys (so its DTLS is surely done and
//! str0m will never need to resend its last flight), str0m is dropped: the session
//! then answers ICE consent checks itself ([`consent`]), and keeps a few kilobytes
//! instead of str0m's ~70. See docs/architecture.md for why.
//!
//! Whatever the engine, an address is the viewer's only once it has sent a check
//! signed with our ICE password ([`ice`]); until then the session takes nothing else
//! from it. Every datagram's length is checked before a byte of it is read.

pub mod consent;
mod dtls;
pub mod ice;
pub mod keys;
pub mod offer;
pub mod publish;
pub mod rtcp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::{Codec as StrCodec, FormatParams};
use str0m::media::Frequency;
use str0m::media::{KeyframeRequestKind, MediaKind as StrKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::srtp::{self, Inbound, Outbound, Profile};
use crate::track::{h264, Codec, MediaKind, SourcePacket, Track, TrackInfo, TrackWriter};
use consent::Consent;
use ice::IceCredentials;
use keys::{DtlsRole, KeySlot};
use publish::{Offered, Publication};
use rtcp::Feedback;

/// How long str0m stays after DTLS completes when the viewer sends no RTCP: long enough
/// for the viewer to have retransmitted its last flight several times (1 s, 2 s, 4 s).
const STR0M_GRACE: Duration = Duration::from_secs(10);
/// Addresses one session may be reached from (one per candidate pair the viewer tried):
/// the oldest is forgotten past this.
pub const MAX_REMOTES: usize = 8;
/// A live publisher's session has no deadline: this stands for "never" (str0m and ICE
/// consent end it).
const PUBLISHER_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a session needs from the relay's configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host candidates to advertise: every address the media port is reachable at.
    pub candidates: Vec<SocketAddr>,
    pub mtu: usize,
    pub handshake_timeout: Duration,
    pub allow_legacy_srtp: bool,
    /// `keyframeRequestInterval`: viewers' PLI/FIR reach a publisher at most this often
    /// per track.
    pub keyframe_request_interval: Duration,
}

#[cfg(any(test, feature = "fuzzing"))]
impl SessionConfig {
    /// What tests and fuzz targets answer offers with: one host candidate, 10.9.0.2:8189.
    pub fn for_tests() -> SessionConfig {
        SessionConfig {
            candidates: vec!["10.9.0.2:8189".parse().unwrap()],
            mtu: 1452,
            handshake_timeout: Duration::from_secs(10),
            allow_legacy_srtp: true,
            keyframe_request_interval: Duration::from_secs(1),
        }
    }
}

/// One track sent on one m-line of the viewer's session.
#[derive(Debug, Clone)]
pub struct Binding {
    pub mid: Mid,
    pub track: Arc<Track>,
    /// Our SSRC on this m-line, as announced in the answer.
    pub ssrc: u32,
    /// The payload type the viewer's offer gave the track's codec.
    pub pt: u8,
    /// Where the viewer negotiated RTX (RFC 4588) for that codec: our RTX SSRC (the
    /// answer's `a=ssrc-group:FID`) and the RTX payload type paired with `pt`.
    pub rtx: Option<(u32, u8)>,
    /// The CNAME the answer announced for our SSRC (sender reports repeat it).
    pub cname: String,
}

/// Where the viewer's media goes: from our `local` address to its nominated `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Debug)]
pub enum SessionEvent {
    /// DTLS is done: the worker may send media, sealed with this context.
    Live {
        srtp: Box<Outbound>,
        route: Route,
        /// From the answer to now, on the session's clock: the peer's ICE checks and
        /// the DTLS handshake, as the relay saw them.
        setup: Duration,
    },
    /// The viewer's nominated address changed.
    Moved(Route),
    /// This address sent a check signed with our password: its datagrams are the
    /// viewer's. Said at every such check (the worker's routing follows the latest).
    Authenticated(SocketAddr),
    /// This address is no longer the viewer's (pushed out by newer ones).
    Forgotten(SocketAddr),
    /// RTCP feedback from the viewer, and when its datagram arrived.
    Feedback(Feedback, Instant),
    Closed(CloseReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    HandshakeTimeout,
    IceDisconnected,
    /// The viewer sent a DTLS alert (close_notify when it closes the connection).
    ViewerClosed,
    Refused(String),
    Failed(String),
}

#[derive(Debug)]
pub enum SessionOutput {
    /// A datagram str0m wants sent (STUN answers, DTLS records).
    Transmit {
        route: Route,
        data: Vec<u8>,
    },
    Event(SessionEvent),
    /// Call `handle_timeout` at this instant.
    Timeout(Instant),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not SDP, below the RFCs' minimums, or unreadable to str0m: see [`offer`].
    #[error(transparent)]
    Invalid(#[from] offer::OfferFault),
    #[error("{0}")]
    Negotiation(String),
    #[error("the offer has no media section the path's tracks can be sent on ({0})")]
    NoCommonMedia(String),
}

/// Counters of what a session refused, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    pub malformed: u64,
    /// Checks without our password, and anything else from an address that never sent one.
    pub unauthenticated: u64,
    pub srtcp_failed: u64,
    /// Well-formed but with nothing to do: SRTP media (viewers only receive), DTLS other
    /// than an alert once str0m is gone.
    pub unexpected: u64,
    /// What the peer sent once it proved who it is: bytes of every datagram, and how
    /// many were SRTP and SRTCP (a publisher's media, a viewer's feedback).
    pub bytes_received: u64,
    pub rtp_received: u64,
    pub rtcp_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Live,
    Closed,
}

/// Who answers the viewer's ICE and DTLS.
enum Engine {
    /// str0m: SDP, ICE-lite, DTLS, until the viewer proves it has the keys.
    Str0m {
        rtc: Box<Rtc>,
        keys: Arc<KeySlot>,
        /// Our addresses str0m has as local candidates: those advertised, and those
        /// checks reached us at (see `handle_check`).
        locals: Vec<SocketAddr>,
    },
    /// Only consent checks are left.
    Consent(Consent),
}

pub struct Session {
    engine: Engine,
    /// Ours, kept to check every address and to answer consent checks once str0m is gone.
    ice: IceCredentials,
    /// Addresses that proved they hold our ICE password, oldest first.
    authenticated: Vec<SocketAddr>,
    pub media: Vec<Binding>,
    route: Option<Route>,
    srtcp: Option<Inbound>,
    state: State,
    /// Handshake: when it times out. Live with str0m: when str0m is dropped even if the
    /// viewer sends no RTCP (its DTLS has had every retransmission chance by then).
    deadline: Instant,
    allow_legacy_srtp: bool,
    next_timeout: Instant,
    pending: VecDeque<SessionOutput>,
    pub stats: SessionStats,
    /// A publisher's m-lines and the codec taken from each; empty for a viewer.
    offered: Vec<Offered>,
    /// A publisher's tracks, once the path gave it their writers.
    publication: Option<Publication>,
    keyframe_request_interval: Duration,
    /// When it answered the offer: its setup is timed from here.
    created: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("ufrag", &self.ice.ufrag)
            .field("state", &self.state)
            .field("route", &self.route)
            .finish()
    }
}

impl Session {
    /// Answers a viewer's WHEP offer for a path with these `tracks`.
    /// Returns the session and the SDP answer.
    pub fn viewer(
        now: Instant,
        offer: &str,
        tracks: &[Arc<Track>],
        config: &SessionConfig,
    ) -> Result<(Session, String), OfferError> {
        offer::check(offer)?;
        let mut rtc_config = rtc_config(config)
            // We never write media through str0m: its send buffers stay empty.
            .set_send_buffer_audio(1)
            .set_send_buffer_video(1)
            // str0m's sender reports are dropped (we send our own); they only wake the
            // worker and follow the ICE nomination (see `drain`), so every 5 s is enough.
            .set_rtcp_report_interval_video(Duration::from_secs(5))
            .set_rtcp_report_interval_audio(Duration::from_secs(5));
        add_codecs(&mut rtc_config, tracks);
        let (mut rtc, keys, answer) = answer(now, offer, rtc_config, config)?;
        let media = bind_tracks(&mut rtc, &answer, tracks)?;
        Ok((Session::new(now, rtc, keys, media, config), answer))
    }

    /// Answers a publisher's WHIP offer: one track per sending m-line, in the first
    /// codec of it relay can relay. Returns the session and the SDP answer; the session
    /// publishes once given its tracks' writers ([`Session::start_publishing`]).
    pub fn publisher(
        now: Instant,
        offer: &str,
        config: &SessionConfig,
    ) -> Result<(Session, String), OfferError> {
        offer::check(offer)?;
        let offered = publish::choose_codecs(offer).map_err(OfferError::NoCommonMedia)?;
        // str0m keeps the publisher's session: RTP mode hands us its packets decrypted,
        // as they come, and it sends the publisher receiver reports, NACK and PLI.
        let mut rtc_config = rtc_config(config).set_rtp_mode(true);
        for o in &offered {
            let frequency = match o.info.codec.clock_rate() {
                48_000 => Frequency::FORTY_EIGHT_KHZ,
                8_000 => Frequency::EIGHT_KHZ,
                _ => Frequency::NINETY_KHZ,
            };
            rtc_config.codec_config().add_config(
                o.pt.into(),
                o.rtx.map(Into::into),
                str0m_codec(o.info.codec),
                frequency,
                o.channels,
                FormatParams::parse_line(&o.info.fmtp),
            );
        }
        let (rtc, keys, answer) = answer(now, offer, rtc_config, config)?;
        // Only m-lines str0m accepted for receiving, with the codec chosen, are tracks.
        let offered: Vec<Offered> = offered
            .into_iter()
            .filter(|o| {
                rtc.media(o.mid)
                    .is_some_and(|m| m.direction().is_receiving())
            })
            .collect();
        if offered.is_empty() {
            return Err(OfferError::NoCommonMedia(
                "str0m accepted none of the offered m-lines for receiving".into(),
            ));
        }
        let mut session = Session::new(now, rtc, keys, Vec::new(), config);
        session.offered = offered;
        Ok((session, answer))
    }

    fn new(
        now: Instant,
        mut rtc: Rtc,
        keys: Arc<KeySlot>,
        media: Vec<Binding>,
        config: &SessionConfig,
    ) -> Session {
        let creds = rtc.direct_api().local_ice_credentials();
        Session {
            engine: Engine::Str0m {
                rtc: Box::new(rtc),
                keys,
                locals: config.candidates.clone(),
            },
            ice: IceCredentials {
                ufrag: creds.ufrag,
                password: creds.pass,
            },
            authenticated: Vec::new(),
            media,
            route: None,
            srtcp: None,
            state: State::Handshake,
            deadline: now + config.handshake_timeout,
            allow_legacy_srtp: config.allow_legacy_srtp,
            next_timeout: now,
            pending: VecDeque::new(),
            stats: SessionStats::default(),
            offered: Vec::new(),
            publication: None,
            keyframe_request_interval: config.keyframe_request_interval,
            created: now,
        }
    }

    /// What a publisher's tracks are (empty for a viewer): the path's writers for them
    /// go to [`Session::start_publishing`].
    pub fn published_tracks(&self) -> Vec<TrackInfo> {
        self.offered.iter().map(|o| o.info.clone()).collect()
    }

    pub fn is_publisher(&self) -> bool {
        !self.offered.is_empty()
    }

    /// Gives a publisher the writers of its tracks, in the order of `published_tracks`.
    pub fn start_publishing(&mut self, writers: Vec<TrackWriter>) {
        let interval = self.keyframe_request_interval;
        self.publication = Some(Publication::new(&self.offered, writers, interval));
    }

    /// A publisher's writers, taken back when it ends (None for a viewer).
    pub fn take_writers(&mut self) -> Option<Vec<TrackWriter>> {
        self.publication.take().map(Publication::into_writers)
    }

    /// A publisher on worker `worker`: viewers' keyframe requests wake that worker.
    pub fn attach_keyframe_requests(&self, worker: usize) {
        if let Some(p) = &self.publication {
            p.attach(worker);
        }
    }

    /// The workers reading tracks this publisher fed since the last call.
    pub fn take_readers(&mut self) -> u64 {
        self.publication
            .as_mut()
            .map_or(0, Publication::take_readers)
    }

    /// Asks the publisher for keyframes its viewers wait for, at most one per track per
    /// interval (`keyframeRequestInterval`).
    pub fn request_keyframes(&mut self, now: Instant) {
        let Some(publication) = &mut self.publication else {
            return;
        };
        let mids = publication.keyframes_to_request(now);
        let Engine::Str0m { rtc, .. } = &mut self.engine else {
            return;
        };
        if mids.is_empty() || self.state != State::Live {
            return;
        }
        for mid in mids {
            if let Some(stream) = rtc.direct_api().stream_rx_by_mid(mid, None) {
                stream.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        // str0m sends feedback on its next timeout.
        if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
            self.close(CloseReason::Failed(e.to_string()));
        }
        self.drain(now);
    }

    /// A session as it stands once live with str0m gone, built from its parts, its
    /// first outputs the `Authenticated` and `Live` events the handshake would have
    /// left: for tests and fuzz targets that need many such sessions and cannot afford
    /// a DTLS handshake for each.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn live_without_str0m(
        now: Instant,
        ice: IceCredentials,
        route: Route,
        keys: (&srtp::MasterKey, &srtp::MasterKey),
        media: Vec<Binding>,
    ) -> Session {
        let (local, remote) = keys;
        let consent = Consent::new(now);
        let mut session = Session {
            next_timeout: consent.expires(),
            engine: Engine::Consent(consent),
            ice,
            authenticated: Vec::new(),
            media,
            route: Some(route),
            srtcp: Some(Inbound::new(remote)),
            state: State::Live,
            deadline: now,
            allow_legacy_srtp: false,
            pending: VecDeque::new(),
            stats: SessionStats::default(),
            offered: Vec::new(),
            publication: None,
            keyframe_request_interval: Duration::from_secs(1),
            created: now,
        };
        session.authenticate(route.remote);
        session
            .pending
            .push_back(SessionOutput::Event(SessionEvent::Live {
                srtp: Box::new(Outbound::new(local)),
                route,
                setup: Duration::ZERO,
            }));
        session
    }

    /// Our ICE username fragment: the viewer's STUN checks carry it (`ours:theirs`).
    pub fn ufrag(&self) -> &str {
        &self.ice.ufrag
    }

    /// Our ICE credentials: what an address must prove it knows to become the viewer's.
    pub fn credentials(&self) -> &IceCredentials {
        &self.ice
    }

    /// A datagram from the viewer's side. Checks without our password, anything else
    /// from an address that has not sent a valid check, and malformed input are counted
    /// and dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if self.state == State::Closed {
            return;
        }
        // RFC 7983: the first byte tells STUN, DTLS and RTP/RTCP apart.
        let Some(&first) = data.first() else {
            self.stats.malformed += 1;
            return;
        };
        if first <= 3 {
            return self.handle_check(now, source, destination, data);
        }
        if !self.authenticated.contains(&source) {
            self.stats.unauthenticated += 1;
            return;
        }
        self.stats.bytes_received += data.len() as u64;
        match (first, data.get(1)) {
            (128..=191, Some(192..=223)) => self.stats.rtcp_received += 1,
            (128..=191, Some(_)) => self.stats.rtp_received += 1,
            _ => {}
        }
        match (first, data.get(1)) {
            (20..=63, _) => self.handle_dtls(now, source, destination, data),
            // RFC 5761: RTCP packet types 192..=223 share the RTP version bits.
            // A publisher's SRTP and SRTCP are str0m's: it keeps the session.
            (128..=191, Some(_)) if self.is_publisher() => {
                self.feed_str0m(now, source, destination, data)
            }
            (128..=191, Some(192..=223)) => self.handle_srtcp(now, data),
            (128..=191, Some(_)) => self.stats.unexpected += 1,
            _ => self.stats.malformed += 1,
        }
    }

    /// A STUN message: only a binding request signed with our password gets anywhere.
    fn handle_check(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(check) = self.ice.verify(data) else {
            self.stats.unauthenticated += 1;
            return;
        };
        self.authenticate(source);
        match &mut self.engine {
            Engine::Str0m { rtc, locals, .. } => {
                // Behind a port-forwarding NAT or proxy (`webrtcAdditionalHosts`), checks
                // reach an address we did not advertise, and str0m answers only on its
                // local candidates: the address becomes one (unadvertised: the answer is
                // out). Only checks with our password get here.
                if !locals.contains(&destination) {
                    if let Ok(c) = Candidate::host(destination, "udp") {
                        rtc.add_local_candidate(c);
                    }
                    locals.push(destination);
                }
                self.feed_str0m(now, source, destination, data)
            }
            Engine::Consent(consent) => {
                let reply = consent.answer(now, &self.ice, source, &check);
                let route = Route {
                    local: destination,
                    remote: source,
                };
                self.next_timeout = consent.expires();
                self.pending.push_back(SessionOutput::Transmit {
                    route,
                    data: reply.data,
                });
                if reply.nominates {
                    self.set_route(route);
                }
            }
        }
    }

    /// DTLS from the viewer's address: str0m's while it runs; then only an alert
    /// (the viewer closing) means anything.
    fn handle_dtls(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        match &self.engine {
            Engine::Str0m { .. } => self.feed_str0m(now, source, destination, data),
            Engine::Consent(_) => match dtls::carries_alert(data) {
                Some(true) => self.close(CloseReason::ViewerClosed),
                // A late retransmission of the viewer's last flight, say: nothing to do.
                Some(false) => self.stats.unexpected += 1,
                None => self.stats.malformed += 1,
            },
        }
    }

    fn feed_str0m(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Engine::Str0m { rtc, .. } = &mut self.engine else {
            return;
        };
        match Receive::new(Protocol::Udp, source, destination, data) {
            // A datagram str0m refuses (a forged DTLS record, say) is dropped; only a
            // session str0m itself gave up on is closed.
            Ok(r) => {
                if let Err(e) = rtc.handle_input(Input::Receive(now, r)) {
                    self.stats.malformed += 1;
                    if !rtc.is_alive() {
                        self.close(CloseReason::Failed(e.to_string()));
                    }
                }
            }
            Err(_) => self.stats.malformed += 1,
        }
        self.drain(now);
    }

    /// `source` holds our password: it becomes (or stays) the viewer's newest address.
    fn authenticate(&mut self, source: SocketAddr) {
        if let Some(i) = self.authenticated.iter().position(|a| *a == source) {
            self.authenticated.remove(i);
        } else if self.authenticated.len() == MAX_REMOTES {
            // The oldest address that media does not go to.
            let route = self.route.map(|r| r.remote);
            let i = self
                .authenticated
                .iter()
                .position(|a| Some(*a) != route)
                .expect("more than one address");
            let gone = self.authenticated.remove(i);
            self.pending
                .push_back(SessionOutput::Event(SessionEvent::Forgotten(gone)));
        }
        self.authenticated.push(source);
        self.pending
            .push_back(SessionOutput::Event(SessionEvent::Authenticated(source)));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if now >= self.deadline {
            match (self.state, &self.engine) {
                (State::Handshake, _) => return self.close(CloseReason::HandshakeTimeout),
                (State::Live, Engine::Str0m { .. }) => self.retire_str0m(now),
                _ => {}
            }
        }
        if self
            .publication
            .as_ref()
            .and_then(Publication::keyframe_due)
            .is_some_and(|t| t <= now)
        {
            self.request_keyframes(now);
        }
        match &mut self.engine {
            Engine::Str0m { rtc, .. } => {
                if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                    self.close(CloseReason::Failed(e.to_string()));
                }
                self.drain(now);
            }
            Engine::Consent(consent) => {
                if now >= consent.expires() {
                    self.close(CloseReason::IceDisconnected);
                }
            }
        }
    }

    /// Counters since the last call (the worker adds them to its metrics).
    pub fn take_stats(&mut self) -> SessionStats {
        std::mem::take(&mut self.stats)
    }

    /// Ends the session (the viewer left, or the relay shuts down).
    pub fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            if let Engine::Str0m { rtc, .. } = &mut self.engine {
                rtc.disconnect();
            }
            self.pending
                .push_back(SessionOutput::Event(SessionEvent::Closed(reason)));
        }
    }

    /// Next output; `Timeout` when there is nothing more until then.
    pub fn poll_output(&mut self) -> SessionOutput {
        let keyframe_due = self
            .publication
            .as_ref()
            .and_then(Publication::keyframe_due);
        let next = keyframe_due.map_or(self.next_timeout, |t| t.min(self.next_timeout));
        self.pending
            .pop_front()
            .unwrap_or(SessionOutput::Timeout(next))
    }

    /// Takes everything str0m has to say into `pending`.
    fn drain(&mut self, now: Instant) {
        while self.state != State::Closed {
            let Engine::Str0m { rtc, .. } = &mut self.engine else {
                return;
            };
            let out = match rtc.poll_output() {
                Ok(out) => out,
                Err(e) => {
                    self.close(CloseReason::Failed(e.to_string()));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = t.min(self.deadline);
                    return;
                }
                Output::Transmit(t) => {
                    let route = Route {
                        local: t.source,
                        remote: t.destination,
                    };
                    let first = t.contents.first().copied().unwrap_or(0);
                    if first >= 20 {
                        // DTLS or str0m's RTCP: both go to the nominated address.
                        self.set_route(route);
                    }
                    // A viewer's RTCP from str0m is dropped (see the module doc); a
                    // publisher's is str0m's to send (reports, NACK, PLI).
                    if !(128..=191).contains(&first) || self.is_publisher() {
                        self.pending.push_back(SessionOutput::Transmit {
                            route,
                            data: t.contents.to_vec(),
                        });
                    }
                }
                Output::Event(Event::Connected) => self.go_live(now),
                Output::Event(Event::RtpPacket(p)) => self.publish(p),
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => self.close(CloseReason::IceDisconnected),
                Output::Event(_) => {}
            }
        }
    }

    fn set_route(&mut self, route: Route) {
        if self.route != Some(route) {
            let moved = self.route.is_some() && self.state == State::Live;
            self.route = Some(route);
            if moved {
                self.pending
                    .push_back(SessionOutput::Event(SessionEvent::Moved(route)));
            }
        }
    }

    fn go_live(&mut self, now: Instant) {
        if self.is_publisher() {
            // str0m keeps the session (its SRTP is the publisher's): no deadline to
            // retire it by.
            self.state = State::Live;
            self.deadline = now + PUBLISHER_LIFE;
            return;
        }
        let Engine::Str0m { keys, .. } = &self.engine else {
            return;
        };
        let keys = match keys.get() {
            Some(Ok(keys)) => keys,
            Some(Err(e)) => return self.close(CloseReason::Refused(e.clone())),
            None => return self.close(CloseReason::Failed("DTLS ended without SRTP keys".into())),
        };
        let (profile, material) = (keys.profile, &keys.material);
        if profile == Profile::Aes128CmHmacSha1_80 && !self.allow_legacy_srtp {
            return self.close(CloseReason::Refused(
                "the viewer offered only AES_CM_128_HMAC_SHA1_80, which webrtcAllowLegacySrtp: no forbids".into(),
            ));
        }
        // RFC 5764 4.2: the client's keys come first. We are the DTLS server unless the
        // offer said `a=setup:passive`.
        let client = keys.role == DtlsRole::Client;
        let (local, remote) = match srtp::split_keying_material(profile, material, client) {
            Ok(k) => k,
            Err(e) => return self.close(CloseReason::Failed(e.to_string())),
        };
        let Some(route) = self.route else {
            return self.close(CloseReason::Failed(
                "DTLS completed with no nominated address".into(),
            ));
        };
        self.srtcp = Some(Inbound::new(&remote));
        self.state = State::Live;
        self.deadline = now + STR0M_GRACE;
        self.pending
            .push_back(SessionOutput::Event(SessionEvent::Live {
                srtp: Box::new(Outbound::new(&local)),
                route,
                setup: now.saturating_duration_since(self.created),
            }));
    }

    /// Whether str0m is gone and only consent checks are answered.
    #[cfg(test)]
    pub(crate) fn is_consent_only(&self) -> bool {
        matches!(self.engine, Engine::Consent(_))
    }

    /// A publisher's packet, decrypted by str0m, into its track.
    fn publish(&mut self, p: str0m::rtp::RtpPacket) {
        let (Engine::Str0m { rtc, .. }, Some(publication)) =
            (&mut self.engine, &mut self.publication)
        else {
            return;
        };
        let Some(mid) = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid()) else {
            return;
        };
        publication.push(
            mid,
            SourcePacket {
                ssrc: *p.header.ssrc,
                seq: p.header.sequence_number,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                payload: &p.payload,
                arrival: p.timestamp,
            },
        );
    }

    /// Hands ICE over to the consent responder and frees str0m.
    fn retire_str0m(&mut self, now: Instant) {
        if let Engine::Str0m { .. } = self.engine {
            let consent = Consent::new(now);
            self.next_timeout = consent.expires();
            self.engine = Engine::Consent(consent);
        }
    }

    fn handle_srtcp(&mut self, now: Instant, data: &[u8]) {
        let Some(srtcp) = &mut self.srtcp else {
            self.stats.unexpected += 1;
            return;
        };
        let mut buf = [0u8; crate::io::MAX_DATAGRAM];
        let Some(buf) = buf.get_mut(..data.len()) else {
            self.stats.malformed += 1;
            return;
        };
        buf.copy_from_slice(data);
        let len = match srtcp.unprotect_rtcp(buf) {
            Ok(len) => len,
            Err(_) => {
                self.stats.srtcp_failed += 1;
                return;
            }
        };
        // The viewer has our keys, so its DTLS is done: str0m's work is over.
        self.retire_str0m(now);
        let pending = &mut self.pending;
        let parsed = rtcp::parse_compound(&buf[..len], &mut |f| {
            pending.push_back(SessionOutput::Event(SessionEvent::Feedback(f, now)))
        });
        if parsed.is_err() {
            self.stats.malformed += 1;
        }
    }
}

/// What every session's str0m is: ICE-lite, our DTLS certificate, no codec but those
/// the caller adds.
fn rtc_config(config: &SessionConfig) -> RtcConfig {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_dtls_cert(keys::certificate().clone())
        .clear_codecs()
        .set_mtu(576..=config.mtu.max(576))
}

/// Runs a checked `offer` through str0m built from `rtc_config`, with our host
/// candidates: str0m, the slot its SRTP keys will be captured in, and the SDP answer.
fn answer(
    now: Instant,
    offer: &str,
    rtc_config: RtcConfig,
    config: &SessionConfig,
) -> Result<(Rtc, Arc<KeySlot>, String), OfferError> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| offer::unreadable(offer, &e))?;
    let (mut rtc, keys) = keys::build_rtc(rtc_config, now);
    for addr in &config.candidates {
        if let Ok(c) = Candidate::host(*addr, "udp") {
            rtc.add_local_candidate(c);
        }
    }
    // str0m asserts on some payload-type clashes in an offer rather than refusing them
    // ("Pt locked multiple times", found by the whep_whip_offer fuzzer): the offer's
    // fault, refused like any other, and the Rtc it left half-changed is dropped.
    let accepted = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
    let answer = match accepted {
        Ok(answer) => answer.map_err(|e| OfferError::Negotiation(e.to_string()))?,
        Err(panic) => {
            return Err(OfferError::Negotiation(format!(
                "relay's WebRTC stack (str0m) cannot negotiate this offer ({}): give each \
                 payload type one codec across all m-lines",
                crate::lifeline::panic_message(&*panic)
            )))
        }
    };
    Ok((rtc, keys, answer.to_sdp_string()))
}

/// Offers str0m exactly the codecs of the path's tracks, with the source's H264 profile.
fn add_codecs(config: &mut RtcConfig, tracks: &[Arc<Track>]) {
    let mut next_pt = 96u8;
    for track in tracks {
        let codecs = config.codec_config();
        match track.info.codec {
            Codec::H264 => {
                let plid = h264::profile_level_id(&track.info.fmtp).unwrap_or([0x42, 0xe0, 0x1f]);
                let plid = u32::from_be_bytes([0, plid[0], plid[1], plid[2]]);
                let single_nal = track
                    .info
                    .fmtp
                    .replace(' ', "")
                    .contains("packetization-mode=0");
                codecs.add_h264(next_pt.into(), None, !single_nal, plid);
                next_pt += 1;
            }
            Codec::Opus => codecs.add_config(
                111.into(),
                None,
                StrCodec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams {
                    min_p_time: Some(10),
                    use_inband_fec: Some(true),
                    ..Default::default()
                },
            ),
            Codec::H265 => {
                let [profile, tier, level] = h265_profile_tier_level(&track.info.fmtp);
                codecs.add_h265(next_pt.into(), None, profile, tier, level);
                next_pt += 1;
            }
            Codec::Vp8 => codecs.enable_vp8(true),
            Codec::Vp9 => codecs.enable_vp9(true),
            Codec::Av1 => codecs.enable_av1(true),
            Codec::Pcmu => codecs.enable_pcmu(true, false),
            Codec::Pcma => codecs.enable_pcma(true, false),
        }
    }
}

/// RFC 7798's `profile-id`, `tier-flag` and `level-id` from an fmtp line, each
/// defaulting as the RFC says (Main profile, Main tier, level 3.1).
fn h265_profile_tier_level(fmtp: &str) -> [u8; 3] {
    let value = |key: &str, default: u8| {
        fmtp.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(default)
    };
    [
        value("profile-id", 1),
        value("tier-flag", 0),
        value("level-id", 93),
    ]
}

/// Pairs each sending m-line of the answer with a track of its kind, in order.
fn bind_tracks(
    rtc: &mut Rtc,
    answer: &str,
    tracks: &[Arc<Track>],
) -> Result<Vec<Binding>, OfferError> {
    // str0m announces m-lines as events only once DTLS is up; the answer lists them now.
    let added: Vec<(Mid, StrKind)> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .filter_map(|mid| {
            let media = rtc.media(Mid::from(mid.trim()))?;
            media
                .direction()
                .is_sending()
                .then(|| (media.mid(), media.kind()))
        })
        .collect();
    let mut free: Vec<&Arc<Track>> = tracks.iter().collect();
    let mut bindings = Vec::new();
    for (mid, kind) in added {
        let kind = match kind {
            StrKind::Audio => MediaKind::Audio,
            StrKind::Video => MediaKind::Video,
        };
        let Some(pos) = free.iter().position(|t| t.info.kind() == kind) else {
            continue;
        };
        let track = free[pos];
        let want = str0m_codec(track.info.codec);
        // str0m's answer takes the offer's RTX payload type for the codec, if any.
        let pts = rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == want)
                .map(|p| (*p.pt(), p.resend().map(|rtx| *rtx)))
        });
        // str0m gives the stream an RTX SSRC when any of the m-line's codecs has RTX.
        let ssrcs = rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| (*s.ssrc(), s.rtx().map(|rtx| *rtx)));
        let cname = rtc.media(mid).map(|m| m.cname().to_string());
        if let (Some((pt, rtx_pt)), Some((ssrc, rtx_ssrc)), Some(cname)) = (pts, ssrcs, cname) {
            free.remove(pos);
            bindings.push(Binding {
                mid,
                track: track.clone(),
                ssrc,
                pt,
                rtx: rtx_ssrc.zip(rtx_pt),
                cname,
            });
        }
    }
    if bindings.is_empty() {
        let have: Vec<String> = tracks
            .iter()
            .map(|t| format!("{:?}", t.info.codec))
            .collect();
        return Err(OfferError::NoCommonMedia(format!(
            "the path sends {}; the offer needs a recvonly or sendrecv m-line accepting one of them",
            have.join(", ")
        )));
    }
    Ok(bindings)
}

fn str0m_codec(codec: Codec) -> StrCodec {
    match codec {
        Codec::H264 => StrCodec::H264,
        Codec::H265 => StrCodec::H265,
        Codec::Vp8 => StrCodec::Vp8,
        Codec::Vp9 => StrCodec::Vp9,
        Codec::Av1 => StrCodec::Av1,
        Codec::Opus => StrCodec::Opus,
        Codec::Pcmu => StrCodec::PCMU,
        Codec::Pcma => StrCodec::PCMA,
    }
}

#[cfg(test)]
mod tests;
