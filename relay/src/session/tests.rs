//! The seam with str0m, sans-IO: a str0m client and our session trade datagrams in
//! memory through ICE and DTLS; then our SRTP seals media the client must decrypt,
//! and the client's SRTCP must open with our keys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind as StrKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;
use crate::track::rewrite::{Rewrite, HEADER_LEN};
use crate::track::{SourcePacket, Track, TrackInfo, TrackWriter};

const CLIENT: &str = "10.9.0.1:5000";
const RELAY: &str = "10.9.0.2:8189";

fn h264_track() -> Arc<Track> {
    Track::new(
        TrackInfo {
            codec: Codec::H264,
            fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
        },
        crate::track::history::Retention::default(),
    )
    .0
}

fn client(video: bool, audio: bool) -> (Rtc, String, str0m::change::SdpPendingOffer) {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    if video {
        change.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
    }
    if audio {
        change.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = change.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending)
}

fn config() -> SessionConfig {
    SessionConfig::for_tests()
}

/// A video-only client and our session answering it, ICE and DTLS not yet run.
fn answered(track: &Arc<Track>, start: Instant) -> (Rtc, Session) {
    let (mut client, offer, pending) = client(true, false);
    let (session, answer) =
        Session::viewer(start, &offer, std::slice::from_ref(track), &config()).unwrap();
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    (client, session)
}

#[test]
fn answers_an_offer_with_one_binding_per_track() {
    let (_, offer, _) = client(true, true);
    let tracks = vec![h264_track()];
    let (session, answer) = Session::viewer(Instant::now(), &offer, &tracks, &config()).unwrap();
    assert_eq!(session.media.len(), 1, "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(!answer.contains(".local"), "no mDNS candidates: {answer}");
    assert!(
        answer.contains(&format!("a=ssrc:{}", session.media[0].ssrc)),
        "{answer}"
    );
}

/// The answer pairs RTX with the track's payload type exactly where the offer has it
/// for the codec, and the binding holds what the answer announced.
#[test]
fn rtx_is_bound_as_the_answer_announces_it_and_only_where_offered() {
    let tracks = vec![h264_track()];
    let (_, offer, _) = client(true, false);
    let (session, answer) = Session::viewer(Instant::now(), &offer, &tracks, &config()).unwrap();
    let b = &session.media[0];
    let (rtx_ssrc, rtx_pt) = b.rtx.expect("str0m offers RTX for H264, as browsers do");
    assert!(
        answer.contains(&format!("a=ssrc-group:FID {} {rtx_ssrc}", b.ssrc)),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("a=rtpmap:{rtx_pt} rtx/90000")),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("a=fmtp:{rtx_pt} apt={}", b.pt)),
        "{answer}"
    );

    // An offer whose H264 has no RTX payload type: resends stay on the media SSRC.
    let mut rtc = Rtc::builder().set_rtp_mode(true).clear_codecs();
    rtc.codec_config()
        .add_h264(102.into(), None, true, 0x42e01f);
    let mut rtc = rtc.build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    let (session, answer) =
        Session::viewer(Instant::now(), &offer.to_sdp_string(), &tracks, &config()).unwrap();
    assert_eq!(session.media[0].rtx, None);
    assert!(!answer.contains("rtx/90000"), "{answer}");
    assert!(!answer.contains("FID"), "{answer}");
}

/// The addresses between client and session: where each side sends, and where the
/// other sees it from.
struct Wire {
    client: SocketAddr,
    /// Where the client sends: the relay's candidate.
    advertised: SocketAddr,
    /// Where the session gets the client's datagrams: the relay's bound address.
    bound: SocketAddr,
    /// Whom the session sees sending them.
    peer: SocketAddr,
}

impl Wire {
    fn direct() -> Wire {
        let (c, r) = (CLIENT.parse().unwrap(), RELAY.parse().unwrap());
        Wire {
            client: c,
            advertised: r,
            bound: r,
            peer: c,
        }
    }
}

/// Runs both sides until the session is live; returns its SRTP context and route.
fn connect(
    client: &mut Rtc,
    session: &mut Session,
    start: Instant,
) -> (crate::srtp::Outbound, Route, Instant) {
    connect_on(&Wire::direct(), client, session, start)
}

fn connect_on(
    wire: &Wire,
    client: &mut Rtc,
    session: &mut Session,
    start: Instant,
) -> (crate::srtp::Outbound, Route, Instant) {
    let mut now = start;
    let mut live = None;
    for _ in 0..500 {
        pump_on(
            wire,
            client,
            session,
            now,
            &mut |e| {
                if let SessionEvent::Live { srtp, route, .. } = e {
                    live = Some((srtp, route));
                }
            },
            &mut |_| {},
        );
        if let Some((srtp, route)) = live.take() {
            assert_eq!(
                route,
                Route {
                    local: wire.bound,
                    remote: wire.peer
                }
            );
            return (*srtp, route, now);
        }
        now += Duration::from_millis(10);
        client.handle_input(Input::Timeout(now)).unwrap();
        session.handle_timeout(now);
    }
    panic!("session never went live");
}

/// Delivers everything each side has for the other until both are quiet.
fn pump(
    client: &mut Rtc,
    session: &mut Session,
    now: Instant,
    on_session: &mut dyn FnMut(SessionEvent),
    on_client: &mut dyn FnMut(Event),
) {
    pump_on(&Wire::direct(), client, session, now, on_session, on_client)
}

fn pump_on(
    wire: &Wire,
    client: &mut Rtc,
    session: &mut Session,
    now: Instant,
    on_session: &mut dyn FnMut(SessionEvent),
    on_client: &mut dyn FnMut(Event),
) {
    loop {
        let mut quiet = true;
        loop {
            match client.poll_output().unwrap() {
                Output::Transmit(t) => {
                    quiet = false;
                    assert_eq!(t.destination, wire.advertised);
                    session.handle_datagram(now, wire.peer, wire.bound, &t.contents);
                }
                Output::Event(e) => on_client(e),
                Output::Timeout(_) => break,
            }
        }
        loop {
            match session.poll_output() {
                SessionOutput::Transmit { route, data } => {
                    quiet = false;
                    assert_eq!(route.remote, wire.peer);
                    let recv =
                        Receive::new(Protocol::Udp, wire.advertised, wire.client, &data).unwrap();
                    client.handle_input(Input::Receive(now, recv)).unwrap();
                }
                SessionOutput::Event(e) => on_session(e),
                SessionOutput::Timeout(_) => break,
            }
        }
        if quiet {
            return;
        }
    }
}

/// Behind a port-forwarding proxy: the answer advertises only the proxy's address, and
/// the session gets the client's datagrams on its bound address from the proxy's.
#[test]
fn a_viewer_connects_through_a_forwarder_at_the_advertised_address() {
    let wire = Wire {
        client: CLIENT.parse().unwrap(),
        advertised: "10.9.0.3:9000".parse().unwrap(),
        bound: RELAY.parse().unwrap(),
        peer: "10.9.0.3:40000".parse().unwrap(),
    };
    let start = Instant::now();
    let (mut client, offer, pending) = client(true, false);
    let config = SessionConfig {
        candidates: vec![wire.advertised],
        ..config()
    };
    let (mut session, answer) = Session::viewer(start, &offer, &[h264_track()], &config).unwrap();
    assert!(!answer.contains("10.9.0.2"), "{answer}");
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    connect_on(&wire, &mut client, &mut session, start);
}

#[test]
fn media_we_seal_opens_in_str0m_and_its_feedback_opens_here() {
    let (track, mut writer) = Track::new(
        h264_track().info.clone(),
        crate::track::history::Retention::default(),
    );
    let start = Instant::now();
    let (mut client, mut session) = answered(&track, start);
    let (srtp, route, mut now) = connect(&mut client, &mut session, start);
    let binding = session.media[0].clone();

    // Packets 0..10 of the track, except 4: the client must NACK it.
    for i in 0..10u16 {
        writer.push(SourcePacket {
            ssrc: 7,
            seq: 100 + i,
            timestamp: 3000 * i as u32,
            marker: true,
            payload: &[0x41, i as u8, 0xaa, 0xbb],
            arrival: now,
        });
    }
    let first = track.get(0).unwrap();
    let rewrite = Rewrite::starting_at(&first, binding.ssrc, binding.pt, 1000, 5);
    let mut got = Vec::new();
    let mut nacked = Vec::new();
    let mut reports = 0;
    for round in 0..300 {
        if round < 10 && round != 4 {
            send_to_client(&mut client, &srtp, route, &rewrite, &track, round, now);
        }
        pump(
            &mut client,
            &mut session,
            now,
            &mut |e| match e {
                SessionEvent::Feedback(
                    Feedback::Nack {
                        media_ssrc,
                        pid,
                        blp,
                    },
                    _,
                ) => {
                    assert_eq!(media_ssrc, binding.ssrc);
                    nacked.push((pid, blp));
                }
                SessionEvent::Feedback(Feedback::Report(r), _) => {
                    assert_eq!(r.ssrc, binding.ssrc);
                    reports += 1;
                }
                SessionEvent::Closed(reason) => panic!("closed: {reason:?}"),
                _ => {}
            },
            &mut |e| {
                if let Event::RtpPacket(p) = e {
                    assert_eq!(*p.header.ssrc, binding.ssrc);
                    assert_eq!(p.header.payload_type, binding.pt.into());
                    got.push((*p.seq_no as u16, p.payload.to_vec()));
                }
            },
        );
        now += Duration::from_millis(20);
        client.handle_input(Input::Timeout(now)).unwrap();
        session.handle_timeout(now);
    }
    assert_eq!(got.len(), 9, "every sealed packet opened in str0m");
    let newest = rewrite.seq(track.get(9).unwrap().seq);
    for (seq, payload) in &got {
        let p = track
            .by_seq(rewrite.track_seq(*seq, newest).unwrap())
            .unwrap();
        assert_eq!(&p.payload[..], &payload[..]);
    }
    assert!(
        nacked.contains(&(1004, 0)),
        "str0m's NACK for the missing packet opened here: {nacked:?}"
    );
    assert!(reports > 0, "str0m's receiver reports opened here");
    assert_eq!(session.stats.srtcp_failed, 0);
}

/// Heap bytes allocated minus freed by this thread (the allocator below counts them).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    pub struct Counting;

    fn note(delta: isize) {
        let _ = LIVE.try_with(|l| l.set(l.get() + delta));
    }

    // SAFETY: forwards to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note(l.size() as isize);
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            note(-(l.size() as isize));
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            note(n as isize - l.size() as isize);
            unsafe { System.realloc(p, l, n) }
        }
    }

    pub fn live() -> isize {
        LIVE.with(|l| l.get())
    }
}

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// Seals packet `i` of `track` for the client and delivers it.
fn send_to_client(
    client: &mut Rtc,
    srtp: &Outbound,
    route: Route,
    rewrite: &Rewrite,
    track: &Track,
    i: u64,
    now: Instant,
) {
    let p = track.get(i).unwrap();
    let mut buf = [0u8; 1500];
    let seq = rewrite.write_header(&p, &mut buf);
    let len = HEADER_LEN + p.payload.len();
    buf[HEADER_LEN..len].copy_from_slice(&p.payload);
    let n = srtp.protect_rtp(&mut buf, HEADER_LEN, len, (seq >> 16) as u32);
    let recv = Receive::new(Protocol::Udp, route.local, route.remote, &buf[..n]).unwrap();
    client.handle_input(Input::Receive(now, recv)).unwrap();
}

#[test]
fn a_connected_viewer_costs_a_few_kilobytes() {
    const N: usize = 20;
    let start = Instant::now();
    let track = keyframe_track(start);
    let before = heap::live();
    let mut kept = Vec::new();
    for _ in 0..N {
        let (client, session, srtp, _) = consent_only(&track, start);
        drop(client);
        kept.push((session, srtp));
    }
    let heap = (heap::live() - before) as usize / N;
    let per_viewer = heap + std::mem::size_of::<Session>();
    eprintln!("per connected viewer: {per_viewer} bytes (heap {heap}, SRTP context included)");
    assert!(per_viewer < 8 * 1024, "{per_viewer} bytes per viewer");
}

/// A session past its handshake with str0m gone (so it holds a few kilobytes): the
/// client received packet 0 of `track` and its first receiver report opened here.
/// Returns the SRTP context a worker would seal the viewer's media with.
fn consent_only(track: &Arc<Track>, start: Instant) -> (Rtc, Session, Outbound, Instant) {
    let (mut client, mut session) = answered(track, start);
    let (srtp, route, mut now) = connect(&mut client, &mut session, start);
    let b = &session.media[0];
    let rewrite = Rewrite::starting_at(&track.get(0).unwrap(), b.ssrc, b.pt, 1, 0);
    send_to_client(&mut client, &srtp, route, &rewrite, track, 0, now);
    for _ in 0..300 {
        pump(&mut client, &mut session, now, &mut |_| {}, &mut |_| {});
        if session.is_consent_only() {
            return (client, session, srtp, now);
        }
        now += Duration::from_millis(20);
        client.handle_input(Input::Timeout(now)).unwrap();
        session.handle_timeout(now);
    }
    panic!("the client's SRTCP never reached the session");
}

fn keyframe_track(start: Instant) -> Arc<Track> {
    let (track, mut writer) = Track::new(
        h264_track().info.clone(),
        crate::track::history::Retention::default(),
    );
    writer.push(SourcePacket {
        ssrc: 1,
        seq: 1,
        timestamp: 0,
        marker: true,
        payload: b"\x65\x88idr",
        arrival: start,
    });
    track
}

/// Every output of the session until it is quiet.
fn outputs(session: &mut Session) -> Vec<SessionOutput> {
    let mut out = Vec::new();
    loop {
        match session.poll_output() {
            SessionOutput::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

/// Empty and 1-3 byte datagrams of each RFC 7983 class and around them, a lone DTLS
/// alert byte first: what once panicked or closed a live session.
fn runts() -> Vec<Vec<u8>> {
    let mut runts = vec![vec![], vec![0x15]];
    for first in [
        0u8, 1, 3, 4, 19, 20, 21, 22, 23, 63, 64, 127, 128, 129, 191, 192, 255,
    ] {
        for len in 1..=3 {
            let mut d = vec![first];
            d.extend(std::iter::repeat_n(0xc8, len - 1)); // 200: an RTCP type
            runts.push(d);
        }
    }
    runts
}

const STRANGER: &str = "10.9.0.66:4444";

/// A DTLS 1.2 alert record as a live viewer sends it: epoch 1, sealed (AES-GCM's 26 bytes).
fn sealed_alert() -> Vec<u8> {
    let mut alert = vec![21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26];
    alert.extend([0xab; 26]);
    alert
}

#[test]
fn runts_and_forged_datagrams_cannot_harm_a_live_viewer() {
    let start = Instant::now();
    let track = keyframe_track(start);
    let (mut client, mut session, _, mut now) = consent_only(&track, start);
    let relay: SocketAddr = RELAY.parse().unwrap();
    let viewer: SocketAddr = CLIENT.parse().unwrap();
    let stranger: SocketAddr = STRANGER.parse().unwrap();
    let ufrag = session.ufrag().to_string();
    // The stranger knows the ufrag (it crosses the wire), not the password.
    let forged =
        crate::session::ice::tests::check(&format!("{ufrag}:x"), "not-the-password-of-22c", true);
    session.handle_datagram(now, stranger, relay, &forged);
    assert!(
        outputs(&mut session).is_empty(),
        "a forged check is not answered"
    );
    assert_eq!(session.take_stats().unauthenticated, 1);

    let runts = runts();
    for from in [stranger, viewer] {
        for runt in &runts {
            session.handle_datagram(now, from, relay, runt);
            assert!(outputs(&mut session).is_empty(), "{runt:x?} from {from}");
        }
    }
    // A well-formed sealed alert, from the stranger: not the viewer's to send.
    session.handle_datagram(now, stranger, relay, &sealed_alert());
    assert!(
        outputs(&mut session).is_empty(),
        "a stranger's alert closes nothing"
    );
    let stats = session.take_stats();
    let stun = runts
        .iter()
        .filter(|r| r.first().is_some_and(|b| *b <= 3))
        .count();
    assert_eq!(
        stats.unauthenticated,
        // All the stranger's but the empty one, the viewer's unsigned STUN, the alert.
        (runts.len() - 1 + stun + 1) as u64,
        "{stats:?}"
    );
    assert_eq!(
        stats.unauthenticated + stats.malformed + stats.srtcp_failed + stats.unexpected,
        (2 * runts.len() + 1) as u64,
        "every datagram is counted once: {stats:?}"
    );

    // The viewer goes on: its consent checks are answered, and a minute later (checks
    // every few seconds) it is still live.
    let mut answered = 0;
    for _ in 0..3000 {
        now += Duration::from_millis(20);
        client.handle_input(Input::Timeout(now)).unwrap();
        session.handle_timeout(now);
        pump(
            &mut client,
            &mut session,
            now,
            &mut |e| match e {
                SessionEvent::Closed(reason) => panic!("closed: {reason:?}"),
                SessionEvent::Authenticated(a) => {
                    assert_eq!(a, viewer, "only the viewer authenticates");
                    answered += 1;
                }
                _ => {}
            },
            &mut |_| {},
        );
    }
    assert!(
        answered >= 5,
        "the viewer's consent checks were answered ({answered})"
    );
}

#[test]
fn an_alert_ends_the_session_only_from_the_viewer_and_well_formed() {
    let start = Instant::now();
    let track = keyframe_track(start);
    let (_client, mut session, _, now) = consent_only(&track, start);
    let relay: SocketAddr = RELAY.parse().unwrap();
    let viewer: SocketAddr = CLIENT.parse().unwrap();
    let alert = sealed_alert();
    // Plaintext (epoch 0) and cut alerts are not what a live viewer sends.
    let mut plaintext = alert.clone();
    plaintext[4] = 0;
    for bad in [&plaintext[..], &alert[..20], &alert[..1]] {
        session.handle_datagram(now, viewer, relay, bad);
        assert!(outputs(&mut session).is_empty(), "{bad:x?}");
    }
    session.handle_datagram(now, viewer, relay, &alert);
    assert!(matches!(
        outputs(&mut session)[..],
        [SessionOutput::Event(SessionEvent::Closed(
            CloseReason::ViewerClosed
        ))]
    ));
}

#[test]
fn the_viewers_close_notify_ends_the_session() {
    let start = Instant::now();
    let track = keyframe_track(start);
    let (mut client, mut session, _, now) = consent_only(&track, start);
    client.close().unwrap();
    let mut closed = None;
    pump(
        &mut client,
        &mut session,
        now,
        &mut |e| {
            if let SessionEvent::Closed(reason) = e {
                closed = Some(reason);
            }
        },
        &mut |_| {},
    );
    assert_eq!(closed, Some(CloseReason::ViewerClosed));
}

#[test]
fn addresses_are_bounded_and_the_route_is_kept() {
    let start = Instant::now();
    let track = keyframe_track(start);
    let (_client, mut session, _, now) = consent_only(&track, start);
    let relay: SocketAddr = RELAY.parse().unwrap();
    let viewer: SocketAddr = CLIENT.parse().unwrap();
    let check = crate::session::ice::tests::check(
        &format!("{}:x", session.ufrag()),
        &session.credentials().password.clone(),
        false,
    );
    let mut forgotten = Vec::new();
    for port in 1..=MAX_REMOTES as u16 + 2 {
        let from = SocketAddr::new(viewer.ip(), 6000 + port);
        session.handle_datagram(now, from, relay, &check);
        for o in outputs(&mut session) {
            if let SessionOutput::Event(SessionEvent::Forgotten(a)) = o {
                forgotten.push(a);
            }
        }
    }
    // The viewer's own address (the route) stayed; the oldest others went.
    assert_eq!(
        forgotten,
        vec![
            SocketAddr::new(viewer.ip(), 6001),
            SocketAddr::new(viewer.ip(), 6002),
            SocketAddr::new(viewer.ip(), 6003)
        ]
    );
    assert!(!forgotten.contains(&viewer));
}

#[test]
fn an_offer_that_makes_us_the_dtls_client_works() {
    let (track, mut writer) = Track::new(
        h264_track().info.clone(),
        crate::track::history::Retention::default(),
    );
    let start = Instant::now();
    let (mut client, offer, pending) = client(true, false);
    // The client offered actpass; told it said passive, we take the client role, and
    // the client follows our answer's `active` (RFC 5763 5).
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    let offer = offer.replace("a=setup:actpass", "a=setup:passive");
    let (mut session, answer) =
        Session::viewer(start, &offer, std::slice::from_ref(&track), &config()).unwrap();
    assert!(answer.contains("a=setup:active"), "{answer}");
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let (srtp, route, now) = connect(&mut client, &mut session, start);
    writer.push(SourcePacket {
        ssrc: 1,
        seq: 1,
        timestamp: 0,
        marker: true,
        payload: b"\x65\x88idr",
        arrival: now,
    });
    let b = &session.media[0];
    let rewrite = Rewrite::starting_at(&track.get(0).unwrap(), b.ssrc, b.pt, 1, 0);
    send_to_client(&mut client, &srtp, route, &rewrite, &track, 0, now);
    let mut got = 0;
    pump(&mut client, &mut session, now, &mut |_| {}, &mut |e| {
        got += matches!(e, Event::RtpPacket(_)) as usize;
    });
    assert_eq!(
        got, 1,
        "the media we sealed as DTLS client opened in the client"
    );
}

#[test]
fn runts_during_the_handshake_neither_panic_nor_stop_it() {
    let start = Instant::now();
    let track = keyframe_track(start);
    let (mut client, mut session) = answered(&track, start);
    let relay: SocketAddr = RELAY.parse().unwrap();
    for from in [STRANGER.parse().unwrap(), CLIENT.parse().unwrap()] {
        for runt in runts() {
            session.handle_datagram(start, from, relay, &runt);
            assert!(outputs(&mut session).is_empty(), "{runt:x?} from {from}");
        }
    }
    connect(&mut client, &mut session, start);
}

#[test]
fn nothing_a_stranger_sends_reaches_a_publishers_tracks() {
    let start = Instant::now();
    let mut client = Rtc::builder().set_rtp_mode(true).build(start);
    client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let mut change = client.sdp_api();
    change.add_media(StrKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    let (mut session, _) = Session::publisher(start, &offer.to_sdp_string(), &config()).unwrap();
    let writers: Vec<TrackWriter> = session
        .published_tracks()
        .iter()
        .map(|info| Track::new(info.clone(), crate::track::history::Retention::default()).1)
        .collect();
    let track = writers[0].track().clone();
    session.start_publishing(writers);
    let relay: SocketAddr = RELAY.parse().unwrap();
    let stranger: SocketAddr = STRANGER.parse().unwrap();
    // An empty datagram, runts, and what looks like SRTP media, all before any check
    // signed with the session's password.
    let mut srtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    srtp.extend([0u8; 40]);
    for d in runts().into_iter().chain([srtp]) {
        session.handle_datagram(start, stranger, relay, &d);
        assert!(outputs(&mut session).is_empty(), "{d:x?}");
    }
    assert_eq!(session.stats.malformed, 1, "the empty datagram");
    assert!(session.stats.unauthenticated > 0);
    assert_eq!(track.head(), 0, "nothing reached the track");
}

/// An empty offer, as a viewer's or a publisher's, is refused before str0m sees it.
#[test]
fn an_empty_offer_is_refused() {
    let now = Instant::now();
    assert!(matches!(
        Session::publisher(now, "", &config()),
        Err(OfferError::Invalid(_))
    ));
    assert!(matches!(
        Session::viewer(now, "", &[], &config()),
        Err(OfferError::Invalid(_))
    ));
}

/// The whep_whip_offer fuzzer's offer on which str0m's negotiation asserts ("Pt locked
/// multiple times"): refused with a reason, the relay's thread unharmed.
#[test]
fn an_offer_str0m_panics_on_is_refused_in_words() {
    let input =
        include_bytes!("../../../fuzz/corpus/whep_whip_offer/regression_str0m_pt_locked_twice");
    // The fuzz driver's first byte picks WHIP; the rest is the offer.
    let offer = std::str::from_utf8(&input[1..]).unwrap();
    let Err(OfferError::Negotiation(why)) = Session::publisher(Instant::now(), offer, &config())
    else {
        panic!("str0m's assertion was not turned into a refusal")
    };
    assert!(why.contains("cannot negotiate this offer"), "{why}");
    assert!(why.contains("Pt locked multiple times"), "{why}");
}
