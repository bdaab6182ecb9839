//! Bad input, against the real relay: malformed requests get a clear 4xx, garbage
//! datagrams are counted and dropped, and a running viewer loses nothing meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use relay::config::Config;
use relay_testkit::client::Client;
use relay_testkit::process::RelayProcess;
use relay_testkit::viewer::Viewer;
use relay_testkit::whep;
use str0m::media::MediaKind;

use common::{demo_config, start};

fn request(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let mut resp = agent
        .run(req.body(body.to_vec()).unwrap())
        .expect("HTTP exchange");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// A viewer's offer to receive `kinds`.
fn offer_of(kinds: &[MediaKind]) -> String {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    Client::offer(local, kinds).unwrap().1.sdp
}

/// POSTs `sdp` to the WHEP endpoint of `path`: the status and the body.
fn post_offer(relay: &RelayProcess, path: &str, sdp: &str) -> (u16, String) {
    let agent = relay_testkit::http::agent(Duration::from_secs(10));
    let reply = whep::post_offer(&agent, &whep::endpoint(&relay.http, path), sdp).unwrap();
    (reply.status, reply.body)
}

#[test]
fn malformed_requests_get_a_clear_4xx() {
    let relay = start(&demo_config());
    let url = format!("{}/demo/whep", relay.http);

    let (status, body) = request(
        "POST",
        &url,
        Some("application/sdp"),
        b"v=0\r\nthis is not sdp",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not valid SDP: line 2 ('this is not sdp')"),
        "400 says where: {body}"
    );

    let offer = offer_of(&[MediaKind::Video]);
    // Past relay's own check, str0m's parser refuses it: its error tells the position
    // as a heap address, which must not reach the client.
    let (status, body) = post_offer(&relay, "demo", &offer.replacen("t=0 0", "t=1 2", 1));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not valid SDP") && body.contains("('t=1 2')"),
        "{body}"
    );
    for internal in ["0x", "PointerOffset"] {
        assert!(!body.contains(internal), "{body}");
    }
    // Below the RFCs' minimums: a ':' in the ICE ufrag, a SHA-1 fingerprint.
    let ufrag = offer.replacen("a=ice-ufrag:", "a=ice-ufrag:x:", 1);
    let (status, body) = post_offer(&relay, "demo", &ufrag);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a=ice-ufrag has ':'"), "{body}");
    let sha1 = offer.replacen("a=fingerprint:sha-256", "a=fingerprint:sha-1", 1);
    let (status, body) = post_offer(&relay, "demo", &sha1);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a=fingerprint uses sha-1"), "{body}");
    let (status, body) = post_offer(&relay, "nosuchpath", &offer);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nosuchpath"), "404 names the path: {body}");

    let (status, body) = request("POST", &url, Some("text/plain"), offer.as_bytes());
    assert_eq!(status, 415, "{body}");

    let (status, body) = request(
        "POST",
        &url,
        Some("application/sdp"),
        &vec![b'a'; 70 * 1024],
    );
    assert_eq!(status, 413, "{body}");

    // An offer with only audio for a video-only path: nothing to send on.
    let audio_only = offer_of(&[MediaKind::Audio]);
    let (status, body) = post_offer(&relay, "demo", &audio_only);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("H264"),
        "400 says what the path sends: {body}"
    );

    let (status, _) = request("DELETE", &format!("{url}/0123456789abcdef"), None, b"");
    assert_eq!(status, 404);
}

/// Garbage of every RFC 7983 class and none, from `socket` to `to`.
fn spray(socket: &UdpSocket, to: std::net::SocketAddr, n: usize) {
    for i in 0..n {
        let len = [0, 1, 12, 20, 100, 1400][i % 6];
        let mut data: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
        if let Some(first) = data.first_mut() {
            *first = [0x00, 0x01, 0x16, 0x17, 0x80, 0x81, 0x90, 0xff, 0x40][i % 9];
        }
        if data.len() > 1 && i % 4 == 0 {
            data[1] = 200 + (i % 7) as u8; // RTCP packet types
        }
        let _ = socket.send_to(&data, to);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// UDP datagrams the kernel dropped here because a socket's buffer was full.
fn receive_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    relay_testkit::netns::udp_counter(&snmp, "RcvbufErrors").unwrap()
}

#[test]
fn garbage_datagrams_are_counted_and_dropped_without_disturbing_a_viewer() {
    let relay = start(&demo_config());
    let mut victim = Viewer::connect(&relay.http, "demo");
    victim.run_for(Duration::from_millis(1500));
    assert!(victim.connected);
    let media = victim.relay_media;

    // A second viewer that turns hostile: it sprays from its own (known) address.
    let mut hostile = Viewer::connect(&relay.http, "demo");
    hostile.run_for(Duration::from_millis(1000));
    assert!(hostile.connected);

    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dropped_before = receive_buffer_drops();
    let start = Instant::now();
    let attack = std::thread::spawn(move || {
        spray(&stranger, media, 3000);
        for _ in 0..20 {
            hostile.send_raw(&[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3]);
            hostile.send_raw(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad]);
            hostile.send_raw(&[
                0x81, 201, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ]);
            hostile.run_for(Duration::from_millis(50));
        }
        hostile
    });
    victim.run_for(Duration::from_secs(3));
    let hostile = attack.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));

    // The victim's stream has no gap at all.
    let (_, stream) = victim.received.streams.iter().next().expect("video");
    let seqs: Vec<u64> = stream.keys().copied().collect();
    assert_eq!(
        seqs.last().unwrap() - seqs[0] + 1,
        seqs.len() as u64,
        "gap in the victim's stream"
    );
    assert!(seqs.len() > 200);

    let unknown = relay.metric("relay_dropped_unknown_source_total").unwrap()
        + relay.metric("relay_dropped_unknown_ufrag_total").unwrap();
    // What a busy machine's kernel dropped for want of buffer never reached the relay.
    let kernel = (receive_buffer_drops() - dropped_before) as f64;
    assert!(
        unknown + kernel >= 2900.0,
        "stranger's datagrams counted: {unknown} (and {kernel} dropped by the kernel)"
    );
    let session_level = relay.metric("relay_dropped_malformed_total").unwrap()
        + relay.metric("relay_dropped_srtcp_auth_total").unwrap()
        + relay
            .metric("relay_dropped_unexpected_media_total")
            .unwrap();
    assert!(
        session_level >= 40.0,
        "hostile viewer's garbage counted: {session_level}"
    );
    // The hostile viewer's own session survived its garbage too.
    assert!(hostile
        .received
        .streams
        .values()
        .next()
        .is_some_and(|s| s.len() > 50));
}

/// Reads from `stream` until the relay closes it; how long that took after `since`.
/// Panics if it is still open after 10 s.
fn closed_by_relay(stream: &mut TcpStream, since: Instant) -> Duration {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return since.elapsed(),
            Err(e) => panic!("the relay kept the connection open: {e}"),
        }
    }
}

#[test]
fn idle_and_slow_http_clients_are_cut_off_at_read_timeout() {
    let read_timeout = Duration::from_millis(500);
    let relay = start(&Config {
        read_timeout,
        ..demo_config()
    });
    let metrics = relay.metrics_http().unwrap();
    for address in [&relay.http, metrics].map(|url| url.strip_prefix("http://").unwrap()) {
        let start = Instant::now();
        let mut idle = TcpStream::connect(address).unwrap();
        let after = closed_by_relay(&mut idle, start);
        assert!(after >= read_timeout, "{address}: closed after {after:?}");

        let start = Instant::now();
        let mut partial = TcpStream::connect(address).unwrap();
        partial
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: rel")
            .unwrap();
        let after = closed_by_relay(&mut partial, start);
        assert!(after >= read_timeout, "{address}: closed after {after:?}");
    }

    // A WHEP viewer, which asks in time, is served as ever.
    let mut viewer = Viewer::connect(&relay.http, "demo");
    viewer.run_for(Duration::from_millis(1500));
    assert!(viewer.connected);
    assert!(viewer
        .received
        .streams
        .values()
        .next()
        .is_some_and(|s| s.len() > 20));
    assert_eq!(viewer.delete(), 200);
}
