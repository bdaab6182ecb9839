//! The ingest with real sources: the demo in real time, and ffmpeg pushing RTP.

use super::*;
use crate::track::{h264, Codec};
use relay_testkit::wait::eventually;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};

fn sdp_text() -> Option<&'static str> {
    Some("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n")
}

#[test]
fn parses_sources() {
    let rtp = |s: &str| match Source::parse(s, sdp_text()) {
        Ok(Source::Rtp { listen, .. }) => Ok(listen),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(Source::parse("demo", None), Ok(Source::Demo));
    assert_eq!(rtp("udp+rtp://:5004"), Ok("0.0.0.0:5004".parse().unwrap()));
    assert_eq!(
        rtp("udp+rtp://0.0.0.0:5004"),
        Ok("0.0.0.0:5004".parse().unwrap())
    );
    assert_eq!(
        rtp("udp+rtp://127.0.0.1:6000/"),
        Ok("127.0.0.1:6000".parse().unwrap())
    );
    assert_eq!(rtp("udp+rtp://[::]:5004"), Ok("[::]:5004".parse().unwrap()));
    for bad in [
        "udp+rtp://camera.local:5004",
        "udp+rtp://:0",
        "udp+rtp://:70000",
        "udp+rtp://127.0.0.1",
        "udp+rtp://238.0.0.1:1234",
    ] {
        let e = rtp(bad).unwrap_err();
        assert!(matches!(e, SourceError::BadAddress { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert_eq!(
        Source::parse("srt://cam:8890", None),
        Err(SourceError::Unsupported("srt://cam:8890".into()))
    );
    let rtsp = Source::parse("rtsp://user:pw@cam/stream", None).unwrap();
    assert!(matches!(&rtsp, Source::Rtsp(url) if url.redacted() == "rtsp://cam/stream"));
    assert!(matches!(
        Source::parse("rtsps://cam/stream", None),
        Err(SourceError::BadAddress { .. })
    ));
    assert_eq!(
        Source::parse("udp+rtp://:5004", Some("  \n")),
        Err(SourceError::MissingSdp("udp+rtp://:5004".into()))
    );
    // The SDP is read with the source, once: what the ingest builds from.
    let mp4v = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 MP4V-ES/90000\n";
    let e = Source::parse("udp+rtp://127.0.0.1:5004", Some(mp4v)).unwrap_err();
    assert!(matches!(e, SourceError::Sdp(_)), "{e}");
    assert!(e.to_string().contains("MP4V-ES/90000"), "{e}");
}

#[test]
fn a_source_writes_back_as_it_reads() {
    for (written, read) in [
        ("demo", "demo"),
        ("udp+rtp://:5004", "udp+rtp://0.0.0.0:5004"),
        ("udp+rtp://127.0.0.1:6000/", "udp+rtp://127.0.0.1:6000"),
        ("udp+rtp://[::1]:5004", "udp+rtp://[::1]:5004"),
    ] {
        let source = Source::parse(written, sdp_text()).unwrap();
        assert_eq!(source.to_string(), read);
        assert_eq!(Source::parse(read, source.rtp_sdp()).unwrap(), source);
    }
}

#[test]
fn start_names_the_path_in_its_errors() {
    let wakers = Arc::new(Wakers::new(1).unwrap());
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let source = Source::parse(&format!("udp+rtp://{addr}"), sdp_text()).unwrap();
    let err = start(
        vec![("cam8".into(), source)],
        wakers,
        IngestOptions::default(),
        Arc::default(),
    )
    .err()
    .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("cam8") && text.contains(&addr.to_string()),
        "{text}"
    );
}

/// How long a test waits for what the ingest thread does on its own time.
const SETTLE: Duration = Duration::from_secs(10);

/// A PCMU source on `port` of the loopback.
fn pcmu_on(port: u16) -> Source {
    let sdp = format!("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=audio {port} RTP/AVP 0\n");
    Source::parse(&format!("udp+rtp://127.0.0.1:{port}"), Some(&sdp)).unwrap()
}

/// Sends `count` 20 ms PCMU packets to `port`, numbered on from `next`.
fn send_pcmu(sender: &UdpSocket, port: u16, next: &mut u16, count: u16) {
    for _ in 0..count {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xbc];
        packet[2..4].copy_from_slice(&next.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(*next) * 160).to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        sender.send_to(&packet, ("127.0.0.1", port)).unwrap();
        *next += 1;
    }
}

fn listed(ingest: &Ingest) -> Vec<String> {
    ingest.stats().paths.into_iter().map(|p| p.path).collect()
}

#[test]
fn rtp_sources_come_and_go_while_another_flows() {
    let steady_port = free_port();
    let (ingest, published) = start(
        vec![("steady".into(), pcmu_on(steady_port))],
        Arc::new(Wakers::new(1).unwrap()),
        IngestOptions {
            history: KEEP_ALL,
            ..IngestOptions::default()
        },
        Arc::default(),
    )
    .unwrap();
    let steady = published[0].tracks[0].clone();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut steady_seq, mut added_seq) = (0, 0);
    let added_port = free_port();
    // Each round adds and removes a source on the same port, with the steady source's
    // packets in flight each time. Never more than 60 are, which a socket's default
    // buffer holds: any packet missing was lost by the ingest.
    for round in 0..3 {
        send_pcmu(&sender, steady_port, &mut steady_seq, 20);
        let added = ingest.add("added", &pcmu_on(added_port)).unwrap();
        send_pcmu(&sender, steady_port, &mut steady_seq, 20);
        send_pcmu(&sender, added_port, &mut added_seq, 20);
        assert!(
            eventually(SETTLE, || added[0].head() == 20),
            "round {round}: the added source's track got {} of 20",
            added[0].head()
        );
        let counters = ingest.counters().of("added").expect("listed while added");
        assert_eq!(counters.received.load(Ordering::Relaxed), 20);
        assert_eq!(listed(&ingest), ["added", "steady"]);

        send_pcmu(&sender, steady_port, &mut steady_seq, 20);
        ingest.remove("added");
        UdpSocket::bind(("127.0.0.1", added_port)).expect("the port is free once removed");
        assert!(ingest.counters().of("added").is_none());
        assert_eq!(listed(&ingest), ["steady"]);
        let sent = u64::from(steady_seq);
        assert!(
            eventually(SETTLE, || steady.head() == sent),
            "round {round}: the steady source's track got {} of {sent}",
            steady.head()
        );
    }
    assert_eq!(assert_continuous(&steady, "steady"), 180);
    assert_eq!(ingest.stats().paths[0].received, 180);
}

#[test]
fn demos_come_and_go_while_another_plays() {
    let (ingest, published) = start(
        vec![],
        Arc::new(Wakers::new(1).unwrap()),
        IngestOptions::default(),
        Arc::default(),
    )
    .unwrap();
    assert!(published.is_empty());
    let one = ingest.add("one", &Source::Demo).unwrap().remove(0);
    let two = ingest.add("two", &Source::Demo).unwrap().remove(0);
    assert!(eventually(SETTLE, || one.head() > 0 && two.head() > 0));
    ingest.remove("one");
    let (one_at, two_at) = (one.head(), two.head());
    assert!(
        eventually(SETTLE, || two.head() > two_at + 30),
        "the other demo plays on"
    );
    assert_eq!(one.head(), one_at, "nothing played after remove returned");
    assert_eq!(listed(&ingest), ["two"]);
    let again = ingest.add("one", &Source::Demo).unwrap().remove(0);
    assert!(
        eventually(SETTLE, || again.head() > 0),
        "added again, it plays"
    );
}

#[test]
fn a_failed_or_repeated_add_leaves_the_ingest_as_it_was() {
    let (ingest, _) = start(
        vec![],
        Arc::new(Wakers::new(1).unwrap()),
        IngestOptions::default(),
        Arc::default(),
    )
    .unwrap();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = ingest.add("cam", &pcmu_on(port)).unwrap_err();
    assert!(
        format!("{err:#}").contains("path 'cam': listening on udp"),
        "{err:#}"
    );
    assert!(
        listed(&ingest).is_empty(),
        "no counters for a source not added"
    );
    drop(taken);
    ingest.add("cam", &pcmu_on(port)).unwrap();
    let err = ingest.add("cam", &Source::Demo).unwrap_err();
    assert!(
        format!("{err:#}").contains("'cam' is in the ingest already"),
        "{err:#}"
    );

    // RTSP and publisher paths only have counters here (the server starts them); remove
    // drops those.
    let rtsp = Source::parse("rtsp://cam/stream", None).unwrap();
    assert!(ingest.add("door", &rtsp).unwrap().is_empty());
    assert!(ingest.add("whip", &Source::Publisher).unwrap().is_empty());
    assert!(ingest.counters().of("door").is_some());
    assert_eq!(listed(&ingest), ["cam", "door", "whip"]);
    ingest.remove("door");
    ingest.remove("whip");
    ingest.remove("never added");
    assert_eq!(listed(&ingest), ["cam"]);
}

fn readable(fd: std::os::fd::RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
}

#[test]
fn demo_plays_in_real_time_and_wakes_readers() {
    let t0 = Instant::now();
    let wakers = Arc::new(Wakers::new(2).unwrap());
    let (ingest, published) = start(
        vec![("demo".into(), Source::Demo)],
        wakers.clone(),
        IngestOptions::default(),
        Arc::default(),
    )
    .unwrap();
    let track = published[0].tracks[0].clone();
    assert_eq!(published[0].path, "demo");
    assert_eq!(track.info.codec, Codec::H264);
    assert!(track.parameter_sets().is_some(), "seeded before any packet");
    track.add_reader(1);
    assert!(readable(wakers.fd(1), 500), "worker 1 woken");
    assert!(!readable(wakers.fd(0), 0), "worker 0 reads nothing");

    std::thread::sleep(Duration::from_secs(1));
    let frames = (0..track.head())
        .filter(|&i| track.get(i).is_some_and(|p| p.marker))
        .count();
    // The player's pacing is tested on an injected clock (demo.rs); here only what a
    // busy machine cannot make wrong: it played, and never ahead of real time (a thread
    // held up plays late, not early): 30 frames a second since before it started, the
    // first at once.
    let most = (t0.elapsed().as_secs_f64() * 30.0).ceil() as usize + 1;
    assert!(
        (1..=most).contains(&frames),
        "{frames} frames in {:?}",
        t0.elapsed()
    );
    let kf = track.last_keyframe().unwrap();
    assert!(kf.has_parameter_sets);
    // The thread counts a frame's packets after it pushed them: compare once it stopped.
    let counters = ingest.counters();
    drop(ingest);
    let head = track.head();
    assert_eq!(counters.stats().paths[0].received, head);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(track.head(), head, "stopped on drop");
}

/// With one worker, the worker runs the reader in its own loop: a turn after its epoll
/// set says so reads the commands and the datagrams in one pass, wakes the other workers
/// reading the track but not the host (it fans out in that same turn), and a busy
/// reader's next pass waits for the window.
#[test]
fn a_hosted_reader_passes_on_its_workers_turns_and_wakes_only_the_others() {
    let wakers = Wakers::new(2).unwrap();
    let (ingest, mut reader) = Ingest::hosted(IngestOptions {
        history: KEEP_ALL,
        batch_window: Duration::from_secs(60),
        ..IngestOptions::default()
    })
    .unwrap();
    let port = free_port();
    let track = ingest.add("cam", &pcmu_on(port)).unwrap().remove(0);
    track.add_reader(0);
    track.add_reader(1);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seq = 0;
    // An empty datagram first, as a stranger may send: counted, dropped, the rest read.
    sender.send_to(&[], ("127.0.0.1", port)).unwrap();
    send_pcmu(&sender, port, &mut seq, 5);
    assert!(readable(reader.fd(), 1000), "its epoll set is readable");
    // The first pass: the source (a command) and its datagrams.
    reader.on_turn(Instant::now(), true, &wakers, 0).unwrap();
    assert_eq!(track.head(), 5);
    let counters = ingest.counters().of("cam").unwrap();
    assert_eq!(counters.malformed.load(Ordering::Relaxed), 1);
    assert!(readable(wakers.fd(1), 0), "the other reader is woken");
    assert!(
        !readable(wakers.fd(0), 0),
        "the host is not: it fans out next"
    );
    wakers.drain(1);
    assert!(reader.listens());
    // A second at once: busy from now on, its epoll set no longer heard.
    send_pcmu(&sender, port, &mut seq, 5);
    assert!(readable(reader.fd(), 1000));
    reader.on_turn(Instant::now(), true, &wakers, 0).unwrap();
    assert_eq!(track.head(), 10);
    assert!(!reader.listens(), "a busy reader waits for its window");
    send_pcmu(&sender, port, &mut seq, 5);
    assert!(readable(reader.fd(), 1000));
    let now = Instant::now();
    reader.on_turn(now, true, &wakers, 0).unwrap();
    assert_eq!(track.head(), 10, "read within the window");
    let due = reader.next_due(now).expect("the window's end");
    assert!(
        due > now + Duration::from_secs(50),
        "due {:?} on",
        due - now
    );
    // Its time come, with no readiness heard: what waited is read.
    reader.on_turn(due, false, &wakers, 0).unwrap();
    assert_eq!(track.head(), 15);
    // A pass at the next window's end that finds nothing ends the busy spell.
    let next = reader.next_due(due).expect("the next window's end");
    reader.on_turn(next, false, &wakers, 0).unwrap();
    assert_eq!(track.head(), 15);
    assert!(reader.listens());
    assert_eq!(reader.next_due(next), None, "nothing waits, no demo");
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs ffmpeg for at most `limit` (a guard against a hang, far above its run time even
/// on a busy machine), killing it (by its PID) if it overruns.
fn run_ffmpeg(args: &[String], limit: Duration) {
    let mut child: Child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ffmpeg: {status}");
            return;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("ffmpeg ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A history that holds a whole test stream.
const KEEP_ALL: Retention = Retention {
    duration: Duration::from_secs(3600),
    max_bytes: 64 << 20,
    keyframe_cache: false,
};

/// Checks that the packets still in the ring have consecutive sequence numbers;
/// returns how many the track got.
fn assert_continuous(track: &Track, what: &str) -> u64 {
    let head = track.head();
    assert!(head > 0, "{what}: no packets");
    let seqs: Vec<u64> = track.range(0, head).map(|p| p.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{what}: gaps in {seqs:?}"
    );
    head
}

#[test]
fn ffmpeg_h264_over_rtp() {
    let port = free_port();
    let sdp = format!(
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=video {port} RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\n"
    );
    let source = Source::parse(&format!("udp+rtp://127.0.0.1:{port}"), Some(&sdp)).unwrap();
    let wakers = Arc::new(Wakers::new(1).unwrap());
    let (ingest, published) = start(
        vec![("cam".into(), source)],
        wakers,
        IngestOptions {
            history: KEEP_ALL,
            ..IngestOptions::default()
        },
        Arc::default(),
    )
    .unwrap();
    let track = published[0].tracks[0].clone();
    assert!(track.parameter_sets().is_none(), "none in the SDP");
    let args: Vec<String> = [
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "30",
        "-bf",
        "0",
        "-f",
        "rtp",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("rtp://127.0.0.1:{port}?pkt_size=1200")])
    .collect();
    run_ffmpeg(&args, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(50));

    let packets = assert_continuous(&track, "H264");
    assert_eq!(track.tail(), 0, "the whole stream is in the ring");
    let frames = (0..packets)
        .filter(|&i| track.get(i).unwrap().marker)
        .count();
    assert_eq!(frames, 90, "3 s at 30 fps, each frame's last packet marked");
    let kf = track.last_keyframe().expect("keyframes found");
    assert!(kf.index > 0, "the newest of three keyframes, not the first");
    assert!(kf.has_parameter_sets, "x264 repeats SPS/PPS in band");
    let sets = track
        .parameter_sets()
        .expect("parameter sets found in band");
    assert_eq!(sets.sps[0] & 0x1f, h264::NAL_SPS);
    assert_eq!(sets.pps[0] & 0x1f, h264::NAL_PPS);
    let stats = &ingest.stats().paths[0];
    assert_eq!(stats.received, packets);
    assert_eq!((stats.malformed, stats.unknown_payload_type), (0, 0));
}

#[test]
fn ffmpeg_opus_and_pcmu_on_one_port() {
    let port = free_port();
    let sdp = format!(
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio {port} RTP/AVP 111\na=rtpmap:111 opus/48000/2\n\
         m=audio {port} RTP/AVP 0\n"
    );
    let source = Source::parse(&format!("udp+rtp://127.0.0.1:{port}"), Some(&sdp)).unwrap();
    let wakers = Arc::new(Wakers::new(1).unwrap());
    let (ingest, published) = start(
        vec![("mic".into(), source)],
        wakers,
        IngestOptions {
            history: KEEP_ALL,
            ..IngestOptions::default()
        },
        Arc::default(),
    )
    .unwrap();
    let (opus, pcmu) = (
        published[0].tracks[0].clone(),
        published[0].tracks[1].clone(),
    );
    assert_eq!(
        (opus.info.codec, pcmu.info.codec),
        (Codec::Opus, Codec::Pcmu)
    );
    // Both streams and their RTCP go to the one port.
    let url = format!("rtp://127.0.0.1:{port}?rtcpport={port}");
    let args: Vec<String> = [
        "-re",
        "-t",
        "3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-re",
        "-t",
        "3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=660:sample_rate=8000",
        "-map",
        "0:a",
        "-c:a",
        "libopus",
        "-payload_type",
        "111",
        "-f",
        "rtp",
        &url,
        "-map",
        "1:a",
        "-c:a",
        "pcm_mulaw",
        "-f",
        "rtp",
        &url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_ffmpeg(&args, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(50));

    let opus_packets = assert_continuous(&opus, "Opus");
    assert!(
        opus_packets.abs_diff(150) <= 3,
        "{opus_packets} Opus packets of 20 ms in 3 s"
    );
    let pcmu_packets = assert_continuous(&pcmu, "PCMU");
    let samples: usize = (0..pcmu_packets)
        .map(|i| pcmu.get(i).unwrap().payload.len())
        .sum();
    assert_eq!(samples, 24_000, "3 s of 8 kHz mu-law, one byte a sample");
    let stats = &ingest.stats().paths[0];
    assert_eq!(stats.received, opus_packets + pcmu_packets);
    assert!(
        stats.rtcp > 0,
        "ffmpeg's sender reports arrived and were ignored"
    );
    assert_eq!((stats.malformed, stats.unknown_payload_type), (0, 0));
}

/// Passes `gaps_ms` apart (the first at t0): whether a sleep followed each, and to when.
fn spaced(window_ms: u64, gaps_ms: &[u64]) -> Vec<Option<u64>> {
    let t0 = Instant::now();
    let mut spacing = Spacing::new(Duration::from_millis(window_ms));
    let mut at = 0;
    let mut sleeps = vec![spacing.after_pass(t0).map(|_| 0)];
    for gap in gaps_ms {
        at += gap;
        let until = spacing.after_pass(t0 + Duration::from_millis(at));
        sleeps.push(until.map(|u| (u - t0).as_millis() as u64));
    }
    sleeps
}

#[test]
fn a_busy_ingest_passes_once_per_window_and_a_lone_stream_at_once() {
    // Streams every 0.5 ms would wake it 2,000 times a second: after the second pass
    // it sleeps to a window after each start, and the next pass finds data waiting.
    assert_eq!(
        spaced(1, &[0, 1, 1, 1]),
        vec![None, Some(1), Some(2), Some(3), Some(4)]
    );
    // One camera's frames, 33 ms apart: never held back.
    assert_eq!(spaced(1, &[33, 33, 33]), vec![None; 4]);
    // A frame's packets read in two passes 1 ms apart, then the next frame: the second
    // pass sleeps (the rest of its frame comes with it), the next frame's does not.
    assert_eq!(spaced(2, &[1, 32]), vec![None, Some(3), None]);
    // No window: never.
    assert_eq!(spaced(0, &[0, 0, 1]), vec![None; 4]);
}
