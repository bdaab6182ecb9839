//! `relay-bench first-frame`: how long a browser that joins mid-GOP waits for its first
//! decoded frame.
//!
//! The relay serves one RTP-push path fed by `relay-bench publish` (the default clip
//! with a keyframe every `--gop` frames). Headless Chromium (the test kit's) opens the
//! path's player page `--joins` times, each at a chosen point of the GOP: the points are
//! spread over the GOP (join i at a random point of the i-th of `joins` equal slices,
//! the joins in random order), so that a few joins sample it evenly. A script that
//! DevTools runs in the page before the page's own (so no WebDriver round trip delays
//! it) timestamps, with `performance.now()` (0 at navigation start): the first
//! `framesDecoded > 0` in the peer connection's stats (polled every 10 ms; Chromium
//! caches stats for up to 50 ms), the first frame the video element presents
//! (`requestVideoFrameCallback`), and the start of the WHEP POST (resource timing).
//! Between joins the tab goes to about:blank, which hangs the viewer up.
//!
//! `--keyframe-cache true|false` sets the relay's `keyframeCache`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use relay_testkit::chromium::Chromium;
use relay_testkit::process::Launch;

use crate::publish::{sdp, PublishArgs, Publisher};
use crate::relay_config::rtp_push_on_loopback;
use crate::report::{host, print_table, progress, progress_done};

/// The path the publisher feeds and Chromium watches.
const PATH: &str = "cam";
const FPS: f64 = relay::ingest::demo::FPS as f64;
/// Time a join needs between deciding its point in the GOP and navigating.
const SCHEDULE_MARGIN: Duration = Duration::from_millis(300);

/// Runs in every document of the tab before its own scripts; on the player page
/// (`/<path>/`) it leaves `window.firstFrame` once a frame is decoded.
const FIRST_FRAME_JS: &str = r#"
(() => {
  if (!location.pathname.endsWith("/")) return;
  const result = { timeOrigin: performance.timeOrigin, decodedAt: null, shownAt: null, postAt: null };
  document.addEventListener("DOMContentLoaded", () => {
    const video = document.getElementById("video");
    video.requestVideoFrameCallback((now) => { result.shownAt = now; });
  });
  let busy = false;
  const poll = setInterval(() => {
    const pc = window.relayPlayer && window.relayPlayer.pc;
    if (!pc || busy) return;
    busy = true;
    pc.getStats().then((report) => {
      busy = false;
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0
            && result.decodedAt === null) {
          result.decodedAt = performance.now();
          const posts = performance.getEntriesByType("resource")
            .filter((e) => e.name.endsWith("/whep"));
          result.postAt = posts.length ? posts[posts.length - 1].startTime : null;
          clearInterval(poll);
          window.firstFrame = result;
        }
      });
    }, () => { busy = false; });
  }, 10);
})();
"#;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The relay binary (build it with `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    pub relay: PathBuf,
    /// How many times Chromium opens the player page.
    #[arg(long, default_value_t = 20)]
    pub joins: usize,
    /// Frames from one keyframe to the next in the published clip (120: 4 s at 30 fps).
    #[arg(long, default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..=3000))]
    pub gop: u32,
    /// The relay's `keyframeCache`: a joining viewer starts on the cached GOP (true, the
    /// relay's default) or waits for the next keyframe (false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub keyframe_cache: bool,
    /// Seed of the join points (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long one join may wait for its first frame, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub timeout: f64,
}

/// What the page timestamped, in ms after its navigation started.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageTimes {
    /// Unix time of the navigation's start, in ms.
    time_origin: f64,
    decoded_at: f64,
    shown_at: Option<f64>,
    post_at: Option<f64>,
}

/// One join, in ms.
#[derive(Debug, Serialize)]
pub struct Join {
    /// Where in the GOP the navigation started: ms after the last keyframe was sent.
    pub gop_offset_ms: f64,
    /// From navigation to the WHEP POST.
    pub post_ms: Option<f64>,
    /// From navigation to the first decoded frame.
    pub decoded_ms: f64,
    /// From the WHEP POST to the first decoded frame.
    pub decoded_after_post_ms: Option<f64>,
    /// From navigation to the first frame presented.
    pub shown_ms: Option<f64>,
}

/// p50, p90 and max of a series, in ms.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Summary {
            p50: rank(0.5),
            p90: rank(0.9),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// `joins` points of a GOP of `gop_ms`: one at random in each equal slice, shuffled.
fn join_points(rng: &mut fastrand::Rng, joins: usize, gop_ms: f64) -> Vec<f64> {
    let mut points: Vec<f64> = (0..joins)
        .map(|i| (i as f64 + rng.f64()) / joins as f64 * gop_ms)
        .collect();
    rng.shuffle(&mut points);
    points
}

pub fn main(args: &Args) -> anyhow::Result<()> {
    if !args.relay.exists() {
        bail!(
            "no relay binary at {} (build it with `cargo build --release -p relay`, or pass --relay)",
            args.relay.display()
        );
    }
    if args.joins == 0 || args.timeout <= 0.0 {
        bail!("joins and the timeout must be positive");
    }
    let host = host();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let gop_ms = args.gop as f64 / FPS * 1e3;
    eprintln!(
        "relay-bench first-frame: {} on {} cores ({}, kernel {}), GOP {} frames ({:.1} s), \
         keyframeCache {}, {} joins, seed {seed}",
        args.relay.display(),
        host.cores,
        host.cpu,
        host.kernel,
        args.gop,
        gop_ms / 1e3,
        args.keyframe_cache,
        args.joins
    );

    // A free port for the publisher, found by binding it (another program could take it
    // before the relay does: then the relay fails to start and says so).
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let mut config = rtp_push_on_loopback(1, &[(PATH, port, sdp(96, port))]);
    config.history.keyframe_cache = args.keyframe_cache;
    let relay = Launch::new(&args.relay, &config).start()?;
    let publisher = Publisher::start(&PublishArgs {
        target: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        port_step: 2,
        streams: 1,
        duration: Duration::from_secs(24 * 3600),
        clip: None,
        gop: args.gop,
        payload_type: 96,
        max_payload: 1200,
    })?;
    // The publisher's clip starts with a keyframe, sent now.
    let published_at = unix_ms(SystemTime::now());

    let chromium = Chromium::start(&[])?;
    chromium.on_new_document(FIRST_FRAME_JS)?;
    let page = format!("{}/{PATH}/", relay.http);
    let timeout = Duration::from_secs_f64(args.timeout);
    let join = |point_ms: Option<f64>| -> anyhow::Result<Join> {
        chromium.goto("about:blank")?;
        if let Some(point) = point_ms {
            // The next time at `point` into a GOP, at least a margin from now.
            let now = unix_ms(SystemTime::now()) + SCHEDULE_MARGIN.as_secs_f64() * 1e3;
            let gops = ((now - published_at - point) / gop_ms).ceil().max(0.0);
            let at = published_at + gops * gop_ms + point;
            let wait = (at - unix_ms(SystemTime::now())) / 1e3;
            std::thread::sleep(Duration::from_secs_f64(wait.max(0.0)));
        }
        chromium.goto(&page)?;
        let started = std::time::Instant::now();
        let times: PageTimes = loop {
            let v = chromium.execute("return window.firstFrame || null;")?;
            if !v.is_null() {
                break serde_json::from_value(v.clone()).with_context(|| format!("{v}"))?;
            }
            if started.elapsed() > timeout {
                bail!(
                    "no decoded frame within {timeout:?}\n{}\nrelay log:\n{}",
                    chromium.failure_report(),
                    relay.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(Join {
            gop_offset_ms: (times.time_origin - published_at).rem_euclid(gop_ms),
            post_ms: times.post_at,
            decoded_ms: times.decoded_at,
            decoded_after_post_ms: times.post_at.map(|p| times.decoded_at - p),
            shown_ms: times.shown_at,
        })
    };

    // Chromium's first page starts its renderer and decoder: not counted.
    progress("warm-up join");
    join(None).context("warm-up join")?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut joins = Vec::with_capacity(args.joins);
    for (i, point) in join_points(&mut rng, args.joins, gop_ms)
        .into_iter()
        .enumerate()
    {
        let j = join(Some(point)).with_context(|| format!("join {}", i + 1))?;
        progress(&format!(
            "join {}/{}: {:.0} ms into the GOP, first frame decoded after {:.0} ms",
            i + 1,
            args.joins,
            j.gop_offset_ms,
            j.decoded_ms
        ));
        joins.push(j);
    }
    anyhow::ensure!(!publisher.is_finished(), "the publisher stopped early");
    drop(chromium);
    progress_done();

    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let rows: Vec<Vec<String>> = joins
        .iter()
        .enumerate()
        .map(|(i, j)| {
            vec![
                (i + 1).to_string(),
                format!("{:.0}", j.gop_offset_ms),
                format!("{:.0}", gop_ms - j.gop_offset_ms),
                ms(j.post_ms),
                format!("{:.0}", j.decoded_ms),
                ms(j.decoded_after_post_ms),
                ms(j.shown_ms),
            ]
        })
        .collect();
    print_table(
        &[
            "join",
            "GOP offset ms",
            "next key ms",
            "POST ms",
            "decoded ms",
            "after POST ms",
            "shown ms",
        ],
        &rows,
    );
    let summaries = [
        ("decoded", Summary::of(joins.iter().map(|j| j.decoded_ms))),
        (
            "decoded after POST",
            Summary::of(joins.iter().filter_map(|j| j.decoded_after_post_ms)),
        ),
        (
            "shown",
            Summary::of(joins.iter().filter_map(|j| j.shown_ms)),
        ),
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .filter_map(|(name, s)| {
            let s = s.as_ref()?;
            Some(
                [s.p50, s.p90, s.max, s.mean]
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .fold(vec![name.to_string()], |mut row, v| {
                        row.push(v);
                        row
                    }),
            )
        })
        .collect();
    println!();
    print_table(
        &["first frame", "p50 ms", "p90 ms", "max ms", "mean ms"],
        &rows,
    );
    let json = serde_json::json!({
        "bench": "first-frame",
        "host": host,
        "relay": args.relay,
        "gop_frames": args.gop,
        "keyframe_cache": args.keyframe_cache,
        "seed": seed,
        "joins": joins,
        "decoded_ms": summaries[0].1,
        "decoded_after_post_ms": summaries[1].1,
        "shown_ms": summaries[2].1,
    });
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_points_cover_the_gop_evenly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut points = join_points(&mut rng, 20, 4000.0);
        points.sort_by(f64::total_cmp);
        for (i, p) in points.iter().enumerate() {
            assert!(
                (i as f64 * 200.0..(i + 1) as f64 * 200.0).contains(p),
                "{i}: {p}"
            );
        }
    }

    #[test]
    fn summaries_take_nearest_ranks() {
        let s = Summary::of((1..=20).map(f64::from)).unwrap();
        assert_eq!((s.p50, s.p90, s.max, s.mean), (10.0, 18.0, 20.0, 10.5));
        assert!(Summary::of([]).is_none());
    }
}
