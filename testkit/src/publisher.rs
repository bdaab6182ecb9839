//! A WHIP publisher for tests: str0m on a UDP socket of its own, offering send-only
//! H264 and Opus, sending the relay's demo clip as its video (real H264, so browsers
//! can decode it) and a silent Opus frame every 20 ms. It counts the keyframe requests
//! (PLI/FIR) that reach it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::ingest::demo::{Clip, DemoPlayer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::RtpWrite;
use str0m::{Event, Rtc};

use crate::client::Client;
use crate::whep::Reply;

/// How long one signalling request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// An Opus frame of silence (RFC 6716 TOC 0xf8: CELT 20 ms, one frame).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
const OPUS_FRAME: Duration = Duration::from_millis(20);

/// The WHIP endpoint of `path` (a query after it too) on the relay serving at `http`.
pub fn endpoint(http: &str, path: &str) -> String {
    crate::whep::signalling(http, path, "whip")
}

/// One m-line the publisher sends on, and where its packets are numbered.
struct Outgoing {
    mid: Mid,
    pt: u8,
    seq: u64,
}

pub struct Publisher {
    client: Client,
    agent: ureq::Agent,
    /// The session's URL (the answer's `Location`).
    pub session: String,
    pub connected: bool,
    /// PLI and FIR the relay sent.
    pub keyframe_requests: usize,
    video: Outgoing,
    /// None for a publisher of video only.
    audio: Option<Outgoing>,
    clip: DemoPlayer,
    next_audio: Instant,
    audio_frames: u32,
    /// Packets handed to str0m.
    pub sent: usize,
}

impl Publisher {
    /// Offers H264 and Opus to `path`'s WHIP endpoint, from 127.0.0.1: the publisher,
    /// or what the relay answered when it did not take it (not 201).
    pub fn connect(http: &str, path: &str) -> Result<Publisher, Reply> {
        Publisher::connect_as(http, path, None)
    }

    /// [`Publisher::connect`], sending `authorization` with the offer.
    pub fn connect_as(
        http: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Publisher, Reply> {
        Publisher::connect_kinds(
            http,
            path,
            authorization,
            &[MediaKind::Video, MediaKind::Audio],
        )
    }

    /// [`Publisher::connect`] offering H264 only: a publisher whose tracks are not
    /// another's of H264 and Opus.
    pub fn connect_video_only(http: &str, path: &str) -> Result<Publisher, Reply> {
        Publisher::connect_kinds(http, path, None, &[MediaKind::Video])
    }

    fn connect_kinds(
        http: &str,
        path: &str,
        authorization: Option<&str>,
        kinds: &[MediaKind],
    ) -> Result<Publisher, Reply> {
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false);
        let (mut client, offer) = Client::offer_with(rtc, local, kinds, Direction::SendOnly)
            .unwrap_or_else(|e| panic!("a client on {local}: {e}"));
        let agent = crate::http::agent(HTTP_TIMEOUT);
        let reply =
            crate::whep::post_offer_as(&agent, &endpoint(http, path), &offer.sdp, authorization)
                .expect("HTTP");
        if reply.status != 201 {
            return Err(reply);
        }
        let outgoing = |kind, codec: &str| {
            let (mid, _) = offer.kinds.iter().find(|(_, k)| **k == kind)?;
            Some(Outgoing {
                mid: *mid,
                pt: payload_type(&reply.body, codec).expect("the codec in the answer"),
                seq: 1,
            })
        };
        let video = outgoing(MediaKind::Video, "H264").expect("a video m-line");
        let audio = outgoing(MediaKind::Audio, "opus");
        client.accept(offer, &reply.body).expect("answer accepted");
        let clip = Arc::new(Clip::demo(1200).expect("the demo clip"));
        let now = Instant::now();
        Ok(Publisher {
            client,
            agent,
            session: reply.location.expect("Location header"),
            connected: false,
            keyframe_requests: 0,
            video,
            audio,
            clip: DemoPlayer::new(clip, now, 0, 1, 0),
            next_audio: now,
            audio_frames: 0,
            sent: 0,
        })
    }

    /// Drives the session for `d` (bounded): answers the relay, and once connected
    /// sends the clip and the audio in real time.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 2000];
        while Instant::now() < end {
            let (connected, requests) = (&mut self.connected, &mut self.keyframe_requests);
            let next = self
                .client
                .poll(|event| match event {
                    Event::Connected => *connected = true,
                    Event::KeyframeRequest(_) => *requests += 1,
                    _ => {}
                })
                .expect("rtc output");
            if self.connected {
                self.send_due(Instant::now());
            }
            let next = match self.audio {
                Some(_) => next.min(self.next_audio),
                None => next,
            };
            let wait = next
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.client.socket.set_read_timeout(Some(wait)).unwrap();
            match self.client.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.client.receive(from, &buf[..n]).expect("input"),
                Err(_) => self.client.tick(Instant::now()).expect("timeout"),
            }
        }
    }

    fn send_due(&mut self, now: Instant) {
        let mut api = self.client.rtc.direct_api();
        let video = &mut self.video;
        let mut sent = 0;
        if let Some(stream) = api.stream_tx_by_mid(video.mid, None) {
            self.clip.play(now, &mut |p| {
                let rtp = RtpWrite::new(
                    video.pt.into(),
                    video.seq.into(),
                    p.timestamp,
                    now,
                    p.payload,
                );
                stream.write_rtp(rtp.marker(p.marker));
                video.seq += 1;
                sent += 1;
            });
        }
        let Some(audio) = &mut self.audio else {
            self.sent += sent;
            return;
        };
        if let Some(stream) = api.stream_tx_by_mid(audio.mid, None) {
            while self.next_audio <= now {
                let timestamp = self.audio_frames.wrapping_mul(960);
                let rtp = RtpWrite::new(
                    audio.pt.into(),
                    audio.seq.into(),
                    timestamp,
                    now,
                    &OPUS_SILENCE[..],
                );
                stream.write_rtp(rtp.marker(true));
                audio.seq += 1;
                self.audio_frames += 1;
                self.next_audio += OPUS_FRAME;
                sent += 1;
            }
        }
        self.sent += sent;
    }

    /// Stops publishing with WHIP DELETE: the HTTP status.
    pub fn delete(&self) -> u16 {
        crate::whep::delete(&self.agent, &self.session).expect("HTTP")
    }
}

/// The payload type an SDP gives `codec` (its first `a=rtpmap` of that name).
fn payload_type(sdp: &str, codec: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, rtpmap) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        let name = rtpmap.split('/').next()?;
        name.eq_ignore_ascii_case(codec).then(|| pt.parse().ok())?
    })
}
