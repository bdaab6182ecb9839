//! The viewer tests watch the relay with: a [`Client`] that connects over WHEP, keeps
//! the payload of every RTP packet it gets, and can lose packets on purpose to make the
//! relay resend them ([`Loss`]). It panics on what a test must not meet (a refused
//! offer, a str0m error).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::RawPacket;
use str0m::{Event, Rtc, RtcConfig};

use crate::client::{Client, Offer};
use crate::whep::Reply;

/// How long one signalling request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a viewer received: per SSRC, payloads by extended sequence number (RTX
/// packets as str0m restores them: on the media SSRC, at their original number).
#[derive(Default, Debug)]
pub struct Received {
    pub streams: BTreeMap<u32, BTreeMap<u64, Vec<u8>>>,
    /// Every RTP packet as it arrived, decrypted, when str0m was configured with
    /// `enable_raw_packets` (see [`h264_config`]).
    pub arrivals: Vec<Arrival>,
}

/// One RTP packet as it arrived, before str0m took RTX apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u16,
    /// The first two bytes of the payload: an RTX packet's original sequence number.
    pub head: Option<u16>,
}

/// Which media datagrams the viewer loses on purpose, before str0m sees them, once a
/// stream is under way (a receiver cannot NACK what it never knew existed).
#[derive(Debug)]
pub enum Loss {
    None,
    /// The first arrival of every packet whose sequence number is a multiple of this.
    Every(u16),
    /// Each RTP datagram (resends too) with this probability, decided by a generator
    /// seeded for the test: the same choices, arrival by arrival, every run.
    Random {
        fraction: f64,
        rng: fastrand::Rng,
    },
    /// Each RTP datagram (resends too) that finds the link full: a link that takes
    /// `rate` bytes a second and holds `depth` bytes (a token bucket), as a bottleneck
    /// drops what its queue cannot hold.
    Bottleneck {
        rate: f64,
        depth: f64,
        tokens: f64,
        at: Instant,
    },
}

impl Loss {
    pub fn random(fraction: f64, seed: u64) -> Loss {
        Loss::Random {
            fraction,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A link of `rate` bytes a second holding `depth` bytes, full from the start.
    pub fn bottleneck(rate: f64, depth: f64) -> Loss {
        Loss::Bottleneck {
            rate,
            depth,
            tokens: depth,
            at: Instant::now(),
        }
    }
}

/// A str0m configured as a browser receiving H264 (and Opus), with RTX for H264 or not,
/// that keeps every RTP packet as it arrived ([`Received::arrivals`]).
pub fn h264_config(rtx: bool) -> RtcConfig {
    let mut rtc = Rtc::builder().clear_codecs().enable_raw_packets(true);
    let codecs = rtc.codec_config();
    codecs.add_h264(102.into(), rtx.then_some(103.into()), true, 0x42e01f);
    codecs.enable_opus(true, false);
    rtc
}

pub struct Viewer {
    client: Client,
    /// What each m-line of the offer receives.
    kinds: BTreeMap<Mid, MediaKind>,
    agent: ureq::Agent,
    /// The session's URL (the answer's `Location`).
    pub session: String,
    /// The relay's media address, from the answer's candidate.
    pub relay_media: SocketAddr,
    /// The relay's ICE ufrag for this session, from the answer.
    pub relay_ufrag: String,
    /// ICE and DTLS completed.
    pub connected: bool,
    /// STUN binding success responses received: the relay answered our ICE checks.
    pub stun_answers: usize,
    pub received: Received,
    /// The relay's SDP answer.
    pub answer: String,
    pub loss: Loss,
    /// What [`Loss`] dropped: (SSRC, sequence number).
    pub dropped: HashSet<(u32, u16)>,
    pub dropped_count: usize,
}

impl Viewer {
    /// A viewer of `path` on the relay serving at `http`, from 127.0.0.1.
    pub fn connect(http: &str, path: &str) -> Viewer {
        Viewer::connect_from(http, path, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A viewer whose media socket is bound to `ip`, offering video and audio.
    pub fn connect_from(http: &str, path: &str, ip: IpAddr) -> Viewer {
        let local = SocketAddr::new(ip, 0);
        let offered = Client::offer(local, &[MediaKind::Video, MediaKind::Audio]);
        Viewer::connect_client(http, path, offered)
    }

    /// A viewer from 127.0.0.1 whose str0m is configured as `rtc` (to offer codecs
    /// str0m leaves out by default, such as H265).
    pub fn connect_with(http: &str, path: &str, rtc: RtcConfig) -> Viewer {
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let kinds = [MediaKind::Video, MediaKind::Audio];
        let offered =
            Client::offer_with(rtc.set_rtp_mode(true), local, &kinds, Direction::RecvOnly);
        Viewer::connect_client(http, path, offered)
    }

    fn connect_client(http: &str, path: &str, offered: std::io::Result<(Client, Offer)>) -> Viewer {
        Viewer::try_connect_client(http, path, offered, None)
            .unwrap_or_else(|reply| panic!("WHEP answer {}: {}", reply.status, reply.body))
    }

    /// A viewer from 127.0.0.1 that sends `authorization` with its offer, or what the
    /// relay answered when it did not take it (not 201).
    pub fn connect_as(
        http: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Viewer, Reply> {
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let offered = Client::offer(local, &[MediaKind::Video, MediaKind::Audio]);
        Viewer::try_connect_client(http, path, offered, authorization)
    }

    fn try_connect_client(
        http: &str,
        path: &str,
        offered: std::io::Result<(Client, Offer)>,
        authorization: Option<&str>,
    ) -> Result<Viewer, Reply> {
        let (mut client, offer) = offered.unwrap_or_else(|e| panic!("a client: {e}"));
        let agent = crate::http::agent(HTTP_TIMEOUT);
        let endpoint = crate::whep::endpoint(http, path);
        let reply =
            crate::whep::post_offer_as(&agent, &endpoint, &offer.sdp, authorization).expect("HTTP");
        if reply.status != 201 {
            return Err(reply);
        }
        let relay_media = reply
            .body
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split(' ').collect();
                format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
            })
            .expect("a host candidate in the answer");
        let relay_ufrag = reply
            .body
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .expect("a=ice-ufrag in the answer")
            .trim()
            .to_string();
        let kinds = offer.kinds.clone();
        client.accept(offer, &reply.body).expect("answer accepted");
        // Browsers NACK lost video whether RTX was negotiated or not (the resends then
        // come on the media SSRC); str0m only NACKs with RTX unless told.
        for (mid, _) in kinds.iter().filter(|(_, k)| **k == MediaKind::Video) {
            if let Some(stream) = client.rtc.direct_api().stream_rx_by_mid(*mid, None) {
                stream.suppress_nack(false);
            }
        }
        let answer = reply.body;
        Ok(Viewer {
            client,
            kinds,
            agent,
            session: reply.location.expect("Location header"),
            relay_media,
            relay_ufrag,
            connected: false,
            stun_answers: 0,
            received: Received::default(),
            answer,
            loss: Loss::None,
            dropped: HashSet::new(),
            dropped_count: 0,
        })
    }

    /// Drives the session for `d` (bounded), collecting media.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 2000];
        while Instant::now() < end {
            let (connected, received) = (&mut self.connected, &mut self.received);
            let next = self
                .client
                .poll(|event| match event {
                    Event::Connected => *connected = true,
                    Event::RtpPacket(p) => {
                        let stream = received.streams.entry(*p.header.ssrc).or_default();
                        stream.insert(*p.seq_no, p.payload.to_vec());
                    }
                    Event::RawPacket(raw) => {
                        if let RawPacket::RtpRx(header, payload) = *raw {
                            received.arrivals.push(Arrival {
                                ssrc: *header.ssrc,
                                pt: *header.payload_type,
                                seq: header.sequence_number,
                                head: payload.get(..2).map(|h| u16::from_be_bytes([h[0], h[1]])),
                            });
                        }
                    }
                    _ => {}
                })
                .expect("rtc output");
            let wait = next
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.client.socket.set_read_timeout(Some(wait)).unwrap();
            match self.client.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let data = &buf[..n];
                    if self.should_drop(data) {
                        continue;
                    }
                    if data.len() >= 20 && data[..2] == [0x01, 0x01] {
                        self.stun_answers += 1;
                    }
                    self.client.receive(from, data).expect("input");
                }
                Err(_) => self.client.tick(Instant::now()).expect("timeout"),
            }
        }
    }

    fn should_drop(&mut self, data: &[u8]) -> bool {
        if matches!(self.loss, Loss::None)
            || data.len() < 12
            || !(128..=191).contains(&data[0])
            || (192..=223).contains(&data[1])
        {
            return false;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let under_way = self.received.streams.values().any(|s| s.len() > 10);
        let drop = under_way
            && match &mut self.loss {
                Loss::None => false,
                Loss::Every(n) => seq.is_multiple_of(*n) && !self.dropped.contains(&(ssrc, seq)),
                Loss::Random { fraction, rng } => rng.f64() < *fraction,
                Loss::Bottleneck {
                    rate,
                    depth,
                    tokens,
                    at,
                } => {
                    let now = Instant::now();
                    *tokens = (*tokens + *rate * (now - *at).as_secs_f64()).min(*depth);
                    *at = now;
                    let fits = *tokens >= data.len() as f64;
                    if fits {
                        *tokens -= data.len() as f64;
                    }
                    !fits
                }
            };
        if drop {
            self.dropped.insert((ssrc, seq));
            self.dropped_count += 1;
        }
        drop
    }

    /// The m-line that receives `kind`.
    fn mid(&self, kind: MediaKind) -> Option<Mid> {
        self.kinds
            .iter()
            .find(|(_, k)| **k == kind)
            .map(|(mid, _)| *mid)
    }

    /// The SSRC the relay sends this kind on (from the answer's a=ssrc lines).
    pub fn ssrc_of(&mut self, kind: MediaKind) -> Option<u32> {
        let mid = self.mid(kind)?;
        self.client
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .map(|s| *s.ssrc())
    }

    /// Asks the relay for a keyframe (RTCP PLI) on the video stream, at the next drive.
    pub fn request_keyframe(&mut self) {
        let mid = self.mid(MediaKind::Video).expect("a video m-line");
        self.client
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("the video stream is known")
            .request_keyframe(KeyframeRequestKind::Pli);
    }

    /// The session's id, as the relay's log names it (the end of its URL).
    pub fn session_id(&self) -> &str {
        self.session.rsplit('/').next().unwrap()
    }

    /// Media packets received so far, every stream together.
    pub fn packets(&self) -> usize {
        self.received.streams.values().map(|s| s.len()).sum()
    }

    /// Sends raw bytes to the relay's media port from this viewer's own address.
    pub fn send_raw(&self, data: &[u8]) {
        self.client.socket.send_to(data, self.relay_media).unwrap();
    }

    /// Leaves with WHEP DELETE: the HTTP status.
    pub fn delete(&self) -> u16 {
        crate::whep::delete(&self.agent, &self.session).expect("HTTP")
    }
}

/// Drives several viewers at once, each in its own thread, for `d`.
pub fn run_all(viewers: Vec<Viewer>, d: Duration) -> Vec<Viewer> {
    let handles: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            std::thread::spawn(move || {
                v.run_for(d);
                v
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A viewer driven in a thread of its own until stopped (or dropped), so that it keeps
/// draining its socket and answering the relay while the test does something else.
pub struct Driven {
    viewer: Arc<Mutex<Viewer>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Driven {
    pub fn start(viewer: Viewer) -> Driven {
        let viewer = Arc::new(Mutex::new(viewer));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (viewer.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Alone with the viewer: the test dropped its `Driven`.
            while !s.load(Ordering::Relaxed) && Arc::strong_count(&v) > 1 {
                v.lock().unwrap().run_for(Duration::from_millis(20));
                // Unlocked for a moment: the test thread gets its turn at the viewer.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Driven {
            viewer,
            stop,
            thread,
        }
    }

    /// Runs `f` on the viewer between two slices of driving.
    pub fn with<T>(&self, f: impl FnOnce(&mut Viewer) -> T) -> T {
        f(&mut self.viewer.lock().unwrap())
    }

    /// Stops driving and hands the viewer back.
    pub fn stop(self) -> Viewer {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the viewer's driving thread");
        let viewer = Arc::into_inner(self.viewer).expect("the thread let go of the viewer");
        viewer.into_inner().unwrap()
    }
}
