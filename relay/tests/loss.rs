//! Loss recovery end to end: a str0m viewer of the demo loses a seeded random 1% or 5%
//! of the RTP that reaches it (resends too), with RTX negotiated and without, then
//! stops losing while the last NACKs are answered. What it decoded must be the clip
//! without a gap; resends must come on the RTX stream the answer announced exactly when
//! RTX was negotiated, each naming a packet that was lost. Each test prints what was
//! recovered and what it cost (docs/benchmarks.md, "Loss recovery"):
//!
//! `RELAY_EBPF=off cargo test --release -p relay --test loss -- --nocapture --test-threads=1`
//!
//! And loss no NACK can mend: a viewer behind a link narrower than the stream is judged
//! slow from its reports and skipped to keyframes, while a viewer of the same path
//! beside it loses nothing.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use relay_testkit::process::RelayProcess;
use relay_testkit::viewer::{h264_config, run_all, Arrival, Loss, Viewer};
use str0m::media::MediaKind;

use common::{assert_demo_stream, demo_config, start};

/// How long the viewer loses packets, then how long it plays on without losing: time
/// for every NACK str0m retries to be answered, generously.
const LOSSY: Duration = Duration::from_secs(15);
const SETTLE: Duration = Duration::from_secs(3);

#[test]
fn one_percent_loss_is_recovered_over_rtx() {
    recover(0.01, true);
}

#[test]
fn one_percent_loss_is_recovered_without_rtx() {
    recover(0.01, false);
}

#[test]
fn five_percent_loss_is_recovered_over_rtx() {
    recover(0.05, true);
}

#[test]
fn five_percent_loss_is_recovered_without_rtx() {
    recover(0.05, false);
}

/// What the answer's video section announces: the H264 payload type, and the RTX
/// SSRC (`a=ssrc-group:FID`) and payload type (`apt=`) paired with it, if any.
struct Announced {
    pt: u8,
    rtx: Option<(u32, u8)>,
}

fn announced(answer: &str, ssrc: u32) -> Announced {
    let video: Vec<&str> = answer
        .lines()
        .skip_while(|l| !l.starts_with("m=video"))
        .take_while(|l| l.starts_with("m=video") || !l.starts_with("m="))
        .collect();
    let pt: u8 = video
        .iter()
        .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" H264/90000"))
        .and_then(|pt| pt.parse().ok())
        .unwrap_or_else(|| panic!("H264 in the answer: {answer}"));
    let rtx_pt = video.iter().find_map(|l| {
        let (rtx, apt) = l.strip_prefix("a=fmtp:")?.split_once(' ')?;
        (apt.trim() == format!("apt={pt}")).then(|| rtx.parse::<u8>().ok())?
    });
    let fid = video.iter().find_map(|l| {
        let mut ssrcs = l.strip_prefix("a=ssrc-group:FID ")?.split(' ');
        let media: u32 = ssrcs.next()?.trim().parse().ok()?;
        let rtx: u32 = ssrcs.next()?.trim().parse().ok()?;
        (media == ssrc).then_some(rtx)
    });
    assert_eq!(
        rtx_pt.is_some(),
        fid.is_some(),
        "an RTX payload type without its SSRC or the reverse: {answer}"
    );
    Announced {
        pt,
        rtx: fid.zip(rtx_pt),
    }
}

fn recover(fraction: f64, rtx: bool) {
    let relay = start(&demo_config());
    let mut v = Viewer::connect_with(&relay.http, "demo", h264_config(rtx));
    // The same seed for both modes: the same choices, arrival by arrival.
    v.loss = Loss::random(fraction, (fraction * 1000.0) as u64);
    v.run_for(LOSSY);
    v.loss = Loss::None;
    v.run_for(SETTLE);

    // No gap, and every payload the clip's: RTX packets were taken apart right.
    let packets = assert_demo_stream(&v);
    let ssrc = v.ssrc_of(MediaKind::Video).expect("a video stream");
    let answer = announced(&v.answer, ssrc);
    assert_eq!(answer.rtx.is_some(), rtx, "RTX negotiated as offered");
    let lost: HashSet<u16> = v
        .dropped
        .iter()
        .filter(|(s, _)| *s == ssrc)
        .map(|&(_, seq)| seq)
        .collect();
    assert!(lost.len() >= 3, "only {} media packets lost", lost.len());
    let arrivals = &v.received.arrivals;
    let media: Vec<&Arrival> = arrivals.iter().filter(|a| a.ssrc == ssrc).collect();
    assert!(
        media.iter().all(|a| a.pt == answer.pt),
        "media on the media SSRC in the H264 payload type"
    );
    let resent_on_media = media.iter().filter(|a| lost.contains(&a.seq)).count();
    let retransmitted = relay.metric("relay_retransmitted_packets_total").unwrap();
    let rtx_sent = relay.metric("relay_rtx_packets_sent_total").unwrap();
    let recovered_over = match answer.rtx {
        Some((rtx_ssrc, rtx_pt)) => {
            let repairs: Vec<&Arrival> = arrivals.iter().filter(|a| a.ssrc == rtx_ssrc).collect();
            assert_eq!(
                repairs.len() + media.len(),
                arrivals.len(),
                "RTP only on the media and RTX SSRCs"
            );
            for a in &repairs {
                assert_eq!(a.pt, rtx_pt, "RTX in the payload type paired with H264");
                let osn = a.head.expect("an RTX payload starts with the OSN");
                assert!(
                    lost.contains(&osn),
                    "RTX resent {osn}, which was never lost"
                );
            }
            let osns: HashSet<u16> = repairs.iter().filter_map(|a| a.head).collect();
            assert_eq!(osns, lost, "every lost packet came back over RTX");
            assert_eq!(resent_on_media, 0, "nothing resent on the media SSRC");
            assert_eq!(rtx_sent, retransmitted, "every resend on RTX");
            "RTX"
        }
        None => {
            assert_eq!(media.len(), arrivals.len(), "no RTP but on the media SSRC");
            assert_eq!(rtx_sent, 0.0, "no RTX where none was negotiated");
            let again: HashSet<u16> = media
                .iter()
                .filter(|a| lost.contains(&a.seq))
                .map(|a| a.seq)
                .collect();
            assert_eq!(again, lost, "every lost packet came back on the media SSRC");
            "the media SSRC"
        }
    };
    report(&relay, &v, packets, lost.len(), recovered_over, fraction);
}

/// Prints what recovery did and cost, as the relay counted it.
fn report(
    relay: &RelayProcess,
    v: &Viewer,
    packets: usize,
    lost: usize,
    over: &str,
    fraction: f64,
) {
    let metric = |name: &str| relay.metric(name).unwrap();
    let retransmitted = metric("relay_retransmitted_packets_total");
    let resent_bytes = metric("relay_retransmitted_bytes_total");
    let bytes = metric("relay_rtp_bytes_sent_total");
    assert_eq!(
        metric("relay_retransmit_limited_total"),
        0.0,
        "within budget"
    );
    assert_eq!(metric("relay_dropped_report_blocks_total"), 0.0);
    assert!(
        metric("relay_viewer_rtt_seconds_count") > 0.0,
        "round trips measured from the viewer's reports"
    );
    assert!(
        metric("relay_viewer_setup_seconds_count") >= 1.0,
        "the viewer's setup timed"
    );
    println!(
        "loss {:.0}% over {over}: {packets} packets decoded, {lost} lost on the media stream \
         ({} datagrams dropped, resends included), {lost} recovered (100%); relay resent \
         {retransmitted} packets ({:.2} per loss), {resent_bytes} bytes = {:.2}% over the \
         {} bytes of media",
        fraction * 100.0,
        v.dropped_count,
        retransmitted / lost as f64,
        resent_bytes / (bytes - resent_bytes) * 100.0,
        bytes - resent_bytes,
    );
}

/// A third of the demo's ~80 kB/s, with a queue of about 100 ms of it.
const NARROW: f64 = 25_000.0;
const QUEUE: f64 = 2_500.0;

#[test]
fn a_viewer_behind_a_narrow_link_skips_to_keyframes_and_costs_the_other_nothing() {
    let relay = start(&demo_config());
    let fine = Viewer::connect(&relay.http, "demo");
    let mut slow = Viewer::connect(&relay.http, "demo");
    slow.loss = Loss::bottleneck(NARROW, QUEUE);
    let ids = [fine.session_id().to_string(), slow.session_id().to_string()];
    let viewers = run_all(vec![fine, slow], LOSSY);
    let (fine, slow) = (&viewers[0], &viewers[1]);
    assert!(
        slow.dropped_count > 100,
        "the narrow link dropped {}",
        slow.dropped_count
    );

    let session = |id: &str, name: &str| relay.metric(&format!("{name}{{id=\"{id}\"}}")).unwrap();
    let skips = |id: &str| session(id, "webrtc_sessions_congestion_skips");
    // Published at each sender report: a second at most after the last skip.
    let total = || relay.metric("relay_congestion_skips_total").unwrap();
    let settled = relay_testkit::wait::eventually(Duration::from_secs(3), || {
        skips(&ids[1]) > 0.0 && skips(&ids[1]) == total()
    });
    assert!(
        settled,
        "the slow viewer's skips: {} of {} in all",
        skips(&ids[1]),
        total()
    );
    // The other viewer of the path: every packet, no loss reported, never skipped.
    assert_demo_stream(fine);
    assert_eq!(skips(&ids[0]), 0.0);
    assert_eq!(
        session(&ids[0], "webrtc_sessions_outbound_rtp_packets_lost"),
        0.0
    );
    println!(
        "narrow link of {NARROW} B/s: {} datagrams dropped, {} congestion skips; the other \
         viewer decoded {} packets without a gap",
        slow.dropped_count,
        skips(&ids[1]),
        fine.packets()
    );
}
