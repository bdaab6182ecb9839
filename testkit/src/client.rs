//! The WebRTC end of every viewer the kit makes: str0m on a UDP socket of its own, as a
//! browser's peer connection. It offers receive-only m-lines, runs ICE as the
//! controlling agent (the relay is ICE-lite) and DTLS, and keeps sending consent
//! checks. How its socket is read (blocking in a test, non-blocking under a load tool's
//! poller) is its owner's business.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use relay::session::keys;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig, RtcError};

pub struct Client {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    local: SocketAddr,
}

/// An offer waiting for the server's answer.
pub struct Offer {
    /// The SDP to send.
    pub sdp: String,
    /// What each m-line of the offer receives.
    pub kinds: BTreeMap<Mid, MediaKind>,
    pending: SdpPendingOffer,
}

impl Client {
    /// A client on a new socket bound to `local`, with its host candidate, and its
    /// receive-only offer of `kinds` (video and audio, as a browser offers).
    pub fn offer(local: SocketAddr, kinds: &[MediaKind]) -> io::Result<(Client, Offer)> {
        // RTP mode: str0m hands over RTP packets as they come, with no jitter buffer.
        let rtc = Rtc::builder().set_rtp_mode(true);
        Client::offer_with(rtc, local, kinds, Direction::RecvOnly)
    }

    /// A client of str0m configured as `rtc`, on a new socket bound to `local`, and its
    /// offer of `kinds` in `direction` (send-only for a WHIP publisher).
    pub fn offer_with(
        rtc: RtcConfig,
        local: SocketAddr,
        kinds: &[MediaKind],
        direction: Direction,
    ) -> io::Result<(Client, Offer)> {
        let mut client = Client::bind(local, rtc)?;
        let mut change = client.rtc.sdp_api();
        let kinds: BTreeMap<Mid, MediaKind> = kinds
            .iter()
            .map(|&kind| {
                let mid = change.add_media(kind, direction, None, None, None);
                (mid, kind)
            })
            .collect();
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| io::Error::other("str0m made no offer"))?;
        let offer = Offer {
            sdp: offer.to_sdp_string(),
            kinds,
            pending,
        };
        Ok((client, offer))
    }

    /// Takes the server's answer to `offer`.
    pub fn accept(&mut self, offer: Offer, answer: &str) -> anyhow::Result<()> {
        let answer = SdpAnswer::from_sdp_string(answer)?;
        self.rtc.sdp_api().accept_answer(offer.pending, answer)?;
        Ok(())
    }

    /// A client of a server that offers (Janus), on a new socket bound to `local`:
    /// str0m is then a full ICE agent, the controlled one. The client and its SDP
    /// answer.
    pub fn answer(offer: &str, local: SocketAddr) -> anyhow::Result<(Client, String)> {
        let mut client = Client::bind(local, Rtc::builder().set_rtp_mode(true))?;
        let answer = client
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(offer)?)?;
        Ok((client, answer.to_sdp_string()))
    }

    fn bind(local: SocketAddr, rtc: RtcConfig) -> io::Result<Client> {
        let socket = UdpSocket::bind(local)?;
        let local = socket.local_addr()?;
        // The relay's certificate and DTLS provider, made once per process: str0m's
        // defaults make a key pair and a self-tested dimpl config per client, which
        // cost a load tool setting up hundreds of viewers a second more than the
        // relay it measures.
        let mut rtc = rtc
            .set_dtls_cert(keys::certificate().clone())
            .set_crypto_provider(Arc::new(keys::provider().clone()))
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(io::Error::other)?;
        rtc.add_local_candidate(candidate);
        Ok(Client { rtc, socket, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Hands str0m a datagram that came from `from`; one it cannot parse is dropped.
    pub fn receive(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), RtcError> {
        match Receive::new(Protocol::Udp, from, self.local, data) {
            Ok(r) => self.rtc.handle_input(Input::Receive(Instant::now(), r)),
            Err(_) => Ok(()),
        }
    }

    /// Tells str0m the time: whatever it waits for may be due.
    pub fn tick(&mut self, now: Instant) -> Result<(), RtcError> {
        self.rtc.handle_input(Input::Timeout(now))
    }

    /// Sends what str0m has to send and hands its events to `on_event`, until str0m
    /// says when it next wants the time (returned).
    pub fn poll(&mut self, mut on_event: impl FnMut(Event)) -> Result<Instant, RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    // A full buffer or a dead server: str0m sends its checks again.
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(event) => on_event(event),
            }
        }
    }
}
