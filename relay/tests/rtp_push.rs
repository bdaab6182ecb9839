//! RTP pushed over UDP (MediaMTX's `udp+rtp://` source) to WHEP viewers: video and
//! audio on one port, demultiplexed by payload type, delivered byte for byte.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use relay_testkit::viewer::Viewer;
use str0m::media::MediaKind;

use common::rtp::{free_port, relay_with_cam1, relay_with_cam1_on, rtp, video_frame};

#[test]
fn pushed_video_and_audio_reach_the_viewer_byte_for_byte() {
    pushed_video_and_audio_reach_the_viewer_on(common::WORKERS);
}

/// With one worker, the worker reads the sources too (no ingest thread).
#[test]
fn pushed_video_and_audio_reach_the_viewer_of_a_worker_that_reads_them() {
    pushed_video_and_audio_reach_the_viewer_on(1);
}

fn pushed_video_and_audio_reach_the_viewer_on(workers: usize) {
    let port = free_port();
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
               a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n\
               m=audio 0 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    let relay = relay_with_cam1_on(port, sdp, workers);
    let camera = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{port}");
    let (mut sent_video, mut sent_audio) = (Vec::new(), Vec::new());
    let mut viewer = None;
    let start = Instant::now();
    let (mut vseq, mut aseq) = (40_000u16, 7u16);
    // 4 s of a 25 fps camera with 20 ms audio, a keyframe every 15 frames (0.6 s). The
    // viewer joins just after the second keyframe: it starts on it from the cache, well
    // before the next one, which would end its catching up and restart it there (a
    // jump within the first packets, which this test does not follow).
    for tick in 0..200u32 {
        if tick % 2 == 0 {
            let frame = tick / 2;
            let nals = video_frame(frame);
            let last = nals.len() - 1;
            for (j, nal) in nals.iter().enumerate() {
                camera
                    .send_to(
                        &rtp(96, vseq, frame * 3600, 0xcafe, j == last, nal),
                        &target,
                    )
                    .unwrap();
                sent_video.push(nal.clone());
                vseq = vseq.wrapping_add(1);
            }
        }
        let opus: Vec<u8> = (0..80).map(|_| fastrand::u8(..)).collect();
        camera
            .send_to(&rtp(111, aseq, tick * 960, 0xbeef, false, &opus), &target)
            .unwrap();
        sent_audio.push(opus);
        aseq = aseq.wrapping_add(1);
        if tick == 32 {
            viewer = Some(std::thread::spawn({
                let http = relay.http.clone();
                move || {
                    let mut v = Viewer::connect(&http, "cam1");
                    v.run_for(Duration::from_secs(4));
                    v
                }
            }));
        }
        let due = start + Duration::from_millis(20 * (tick as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let mut v = viewer.unwrap().join().unwrap();
    assert!(v.connected);
    let video = v.ssrc_of(MediaKind::Video).expect("video SSRC");
    let audio = v.ssrc_of(MediaKind::Audio).expect("audio SSRC");
    for (ssrc, sent, kind) in [(video, &sent_video, "video"), (audio, &sent_audio, "audio")] {
        let got = &v.received.streams[&ssrc];
        let seqs: Vec<u64> = got.keys().copied().collect();
        assert_eq!(
            seqs.last().unwrap() - seqs[0] + 1,
            seqs.len() as u64,
            "{kind}: gap"
        );
        let first = &got[&seqs[0]];
        // Keyframes repeat their SPS and PPS: anchor on the first few packets together.
        let at = (0..sent.len())
            .find(|&at| (0..4).all(|i| sent.get(at + i) == Some(&got[&seqs[i]])))
            .unwrap_or_else(|| {
                let head: Vec<_> = seqs.iter().take(6).map(|s| (got[s].len(), got[s][0])).collect();
                panic!("{kind}: the first packets are no run of what was sent: (length, first byte) {head:?}")
            });
        for (i, s) in seqs.iter().enumerate() {
            assert!(got[s] == sent[at + i], "{kind} packet {i} differs");
        }
        assert!(seqs.len() > 50, "{kind}: only {} packets", seqs.len());
        if kind == "video" {
            assert_eq!(first[0] & 0x1f, 7, "video starts with the keyframe's SPS");
        }
    }
    assert_eq!(
        relay
            .metric("relay_ingest_dropped_malformed_total")
            .unwrap(),
        0.0
    );
}

/// A real encoder: ffmpeg pushes H264 and Opus to one port, as the operations doc shows.
#[test]
fn ffmpeg_push_reaches_a_viewer_with_video_from_a_keyframe_and_audio() {
    let port = free_port();
    let sdp = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nt=0 0\n\
               m=video 0 RTP/AVP 96\nc=IN IP4 127.0.0.1\na=rtpmap:96 H264/90000\n\
               a=fmtp:96 packetization-mode=1\n\
               m=audio 0 RTP/AVP 97\nc=IN IP4 127.0.0.1\na=rtpmap:97 opus/48000/2\n";
    let relay = relay_with_cam1(port, sdp);
    let url = format!("rtp://127.0.0.1:{port}?rtcpport={port}");
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "6",
            "-map",
            "0:v",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
        ])
        .args(["-bf", "0", "-g", "30", "-f", "rtp", &url])
        .args(["-map", "1:a", "-c:a", "libopus", "-f", "rtp", &url])
        .spawn()
        .expect("ffmpeg is installed (cargo xtask setup installs it)");
    std::thread::sleep(Duration::from_millis(500));
    let mut v = Viewer::connect(&relay.http, "cam1");
    v.run_for(Duration::from_secs(4));
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    assert!(v.connected);
    let video = v.ssrc_of(MediaKind::Video).expect("video SSRC");
    let audio = v.ssrc_of(MediaKind::Audio).expect("audio SSRC");
    for (ssrc, kind, min) in [(video, "video", 60), (audio, "audio", 100)] {
        let got = v
            .received
            .streams
            .get(&ssrc)
            .unwrap_or_else(|| panic!("no {kind}"));
        let seqs: Vec<u64> = got.keys().copied().collect();
        assert_eq!(
            seqs.last().unwrap() - seqs[0] + 1,
            seqs.len() as u64,
            "{kind}: gap"
        );
        assert!(seqs.len() > min, "{kind}: only {} packets", seqs.len());
    }
    // ffmpeg aggregates SPS and PPS in a STAP-A before the IDR.
    let first = v.received.streams[&video].values().next().unwrap().clone();
    let summary = relay::track::h264::summarize(&first);
    assert!(
        summary.sps.is_some() || summary.keyframe,
        "video starts on a keyframe: {summary:?}"
    );
}
