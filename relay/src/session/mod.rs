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
pub mod rtcp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::{Codec as StrCodec, FormatParams};
use str0m::media::Frequency;
use str0m::media::{MediaKind as StrKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::srtp::{self, Inbound, Outbound, Profile};
use crate::track::{h264, Codec, MediaKind, Track};
use consent::Consent;
use ice::IceCredentials;
use keys::{DtlsRole, KeySlot};
use rtcp::Feedback;

/// How long str0m stays after DTLS completes when the viewer sends no RTCP: long enough
/// for the viewer to have retransmitted its last flight several times (1 s, 2 s, 4 s).
const STR0M_GRACE: Duration = Duration::from_secs(10);
/// Addresses one session may be reached from (one per candidate pair the viewer tried):
/// the oldest is forgotten past this.
pub const MAX_REMOTES: usize = 8;

/// What a session needs from the relay's configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host candidates to advertise: every address the media port is reachable at.
    pub candidates: Vec<SocketAddr>,
    pub mtu: usize,
    pub handshake_timeout: Duration,
    pub allow_legacy_srtp: bool,
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
    },
    /// The viewer's nominated address changed.
    Moved(Route),
    /// This address sent a check signed with our password: its datagrams are the
    /// viewer's. Said at every such check (the worker's routing follows the latest).
    Authenticated(SocketAddr),
    /// This address is no longer the viewer's (pushed out by newer ones).
    Forgotten(SocketAddr),
    Feedback(Feedback),
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
    Str0m { rtc: Box<Rtc>, keys: Arc<KeySlot> },
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
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| offer::unreadable(offer, &e))?;
        let mut rtc_config = RtcConfig::new()
            .set_ice_lite(true)
            .set_dtls_cert(keys::certificate().clone())
            .clear_codecs()
            .set_mtu(576..=config.mtu.max(576))
            // We never write media through str0m: its send buffers stay empty.
            .set_send_buffer_audio(1)
            .set_send_buffer_video(1)
            // str0m's sender reports are dropped (we send our own); they only wake the
            // worker and follow the ICE nomination (see `drain`), so every 5 s is enough.
            .set_rtcp_report_interval_video(Duration::from_secs(5))
            .set_rtcp_report_interval_audio(Duration::from_secs(5));
        add_codecs(&mut rtc_config, tracks);
        let (mut rtc, keys) = keys::build_rtc(rtc_config, now);
        for addr in &config.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Negotiation(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let media = bind_tracks(&mut rtc, &answer, tracks)?;
        let creds = rtc.direct_api().local_ice_credentials();
        let session = Session {
            engine: Engine::Str0m {
                rtc: Box::new(rtc),
                keys,
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
        };
        Ok((session, answer))
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
        };
        session.authenticate(route.remote);
        session
            .pending
            .push_back(SessionOutput::Event(SessionEvent::Live {
                srtp: Box::new(Outbound::new(local)),
                route,
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
        match (first, data.get(1)) {
            (20..=63, _) => self.handle_dtls(now, source, destination, data),
            // RFC 5761: RTCP packet types 192..=223 share the RTP version bits.
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
            Engine::Str0m { .. } => self.feed_str0m(now, source, destination, data),
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
        self.pending
            .pop_front()
            .unwrap_or(SessionOutput::Timeout(self.next_timeout))
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
                    // str0m's own RTCP is dropped: see the module doc.
                    if !(128..=191).contains(&first) {
                        self.pending.push_back(SessionOutput::Transmit {
                            route,
                            data: t.contents.to_vec(),
                        });
                    }
                }
                Output::Event(Event::Connected) => self.go_live(now),
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
            }));
    }

    /// Whether str0m is gone and only consent checks are answered.
    #[cfg(test)]
    pub(crate) fn is_consent_only(&self) -> bool {
        matches!(self.engine, Engine::Consent(_))
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
            pending.push_back(SessionOutput::Event(SessionEvent::Feedback(f)))
        });
        if parsed.is_err() {
            self.stats.malformed += 1;
        }
    }
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
            Codec::Pcmu => codecs.enable_pcmu(true, false),
            Codec::Pcma => codecs.enable_pcma(true, false),
        }
    }
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
        let pt = rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == want)
                .map(|p| *p.pt())
        });
        let ssrc = rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| *s.ssrc());
        let cname = rtc.media(mid).map(|m| m.cname().to_string());
        if let (Some(pt), Some(ssrc), Some(cname)) = (pt, ssrc, cname) {
            free.remove(pos);
            bindings.push(Binding {
                mid,
                track: track.clone(),
                ssrc,
                pt,
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
        Codec::Opus => StrCodec::Opus,
        Codec::Pcmu => StrCodec::PCMU,
        Codec::Pcma => StrCodec::PCMA,
    }
}

#[cfg(test)]
mod tests;
