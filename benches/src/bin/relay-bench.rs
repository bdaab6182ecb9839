//! relay-bench: load tools for relay. See `relay-bench egress --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::Serialize;

use relay_benches::baseline::{self, Outcome, Pace, Plan};
use relay_benches::procfs;
use relay_benches::publish::{PublishArgs, Publisher};
use relay_benches::relay_config::{demo_on_loopback, PATH};
use relay_benches::report::{growth, host, progress, progress_done, sleep_with_progress};
use relay_benches::sink::Counters;
use relay_benches::sink::{wait_until_receiving, Driver, Offering, Readiness};
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::{http, whep};

/// Load tools for relay: each runs the relay binary (on loopback, or in network
/// namespaces of its own for the XDP tools) and measures it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Tool,
}

#[derive(Subcommand)]
enum Tool {
    /// Egress cost: the relay fanning its demo stream out to N WHEP viewers, against a
    /// bare sendmmsg loop sending the same datagrams.
    ///
    /// For each viewer count, the relay binary is started with a config of its own
    /// (loopback only, kernel-chosen ports, the built-in demo clip at `demo`: ~30 fps,
    /// ~95 packets/s). N sink viewers connect over WHEP: str0m clients on loopback
    /// sockets, all driven by one thread with mio; str0m does ICE and DTLS and keeps
    /// answering consent, while media datagrams are counted by size and dropped
    /// undecrypted. Once every viewer receives, after a warm-up, the tool measures over
    /// the window: the relay's CPU (utime + stime from /proc/PID/stat), its RSS (VmRSS),
    /// the RTP packets the viewers got, and the tool's own CPU.
    ///
    /// Then the relay is stopped and the baseline runs: a bare sendmmsg loop (batches of
    /// 64) sends as many datagrams, of the sizes viewer 0 saw in the same order, each
    /// packet to every viewer in turn, while the sinks drain them; its thread CPU time
    /// per datagram (waits for the sinks excluded) is the floor a relay on UDP sockets
    /// could reach. The ratio of the relay's CPU per delivered packet to it is the
    /// figure of merit (target: 1.25 or less at 100 viewers). A second baseline replays
    /// the same datagrams at the times viewer 0 got them from the relay, in bursts as
    /// the relay sent them, and counts its thread's whole CPU time: it pays the same
    /// wake-ups per burst as the relay ("ratio replay"). The sink thread runs on the
    /// last core, the baseline sender on core 0 where the relay pins its first worker.
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    Egress(EgressArgs),
    /// XDP against portable mode: the relay's CPU per delivered packet with its media
    /// sent through AF_XDP, and through UDP sockets, on the same veth pair, in one run.
    ///
    /// Needs root. The tool makes two network namespaces joined by a veth pair
    /// (10.79.0.1 and 10.79.0.2, deleted at the end) and starts the relay in the first
    /// one, once per mode and viewer count: with `xdpInterface` on its veth end (one
    /// AF_XDP socket and worker per RX queue), or portable with its UDP sockets bound to
    /// the same address. The viewers are str0m clients in the second namespace, all on
    /// one thread, that complete ICE and DTLS; a sink XDP program on their veth end
    /// counts and drops their media (per port, per CPU), so the viewers cost almost
    /// nothing, and passes their STUN and DTLS to the kernel. A few full clients (ports
    /// outside the sink's range) decrypt every packet and check continuity.
    ///
    /// For each run: relay CPU (utime + stime from /proc) per delivered packet,
    /// delivered packets/s, loss (the relay's count of RTP sent against the packets that
    /// arrived), relay RSS, the tool's CPU and the CPU of the viewers' veth NAPI thread.
    /// The figure of merit is XDP's CPU per packet over portable's (target: < 0.5).
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    XdpEgress(relay_benches::xdp_egress::Args),
    /// Viewers against any WHEP server: joined at a pace, verifying (decrypt and check
    /// every packet: loss, H264 packetization, end-to-end latency from the stamps
    /// `relay-bench publish` puts in its streams, time to the first whole keyframe,
    /// setup time) or sinks (count only; with `--sink-interface`, the sink program
    /// counts and drops their media before their sockets).
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    Swarm(relay_benches::swarm::Args),
    /// The standard workloads (W1-W4, and W1R: W1 pulled from one RTSP server) against
    /// the relay and Janus side by side, in a network namespace of the run's own; `--docs docs/benchmarks.md` writes the
    /// results and plots there. Needs root. `cargo xtask bench` builds and runs it.
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    Suite(relay_benches::suite::Args),
    /// The relay's XDP program under a flood: RTP-class and STUN-class datagrams from
    /// unknown (spoofed) sources to the media port, for a bounded time.
    ///
    /// Needs root. Same namespaces as xdp-egress; the relay runs in XDP mode, one full
    /// client watches the demo. The generator writes prebuilt frames to the viewers'
    /// veth end through an AF_PACKET socket with sendmmsg (this kernel has no pktgen).
    /// Reports, per pattern: the generator's rate and CPU, what the program did
    /// (`relay_xdp_packets_total` from the relay's /metrics, per second by action and
    /// reason), what reached the relay's workers, the relay's CPU, the CPU of the
    /// relay's veth NAPI thread where the program runs, and the watching client's gaps.
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    XdpFlood(relay_benches::xdp_flood::Args),
    /// RTP publisher: N H264 streams pushed over UDP in real time, for any server that
    /// ingests RTP (relay's `udp+rtp://` paths, Janus streaming mountpoints, MediaMTX).
    ///
    /// Each stream loops a recorded clip (parsed and packetized once: no encoding at run
    /// time) with continuous sequence numbers and timestamps and an SSRC of its own, to
    /// PORT + i * port-step; the relay path for one stream needs `rtpSDP` with
    /// H264/90000 and packetization-mode=1 on its payload type. Before every access unit
    /// goes a stamp: an SEI NAL unit with the stream, the frame number and the send time,
    /// for viewers to measure latency. One thread sends all streams, staggered over the
    /// frame interval, with one sendmmsg per wake-up.
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    Publish(PublishArgs),
    /// The relay's HTTP listener under abuse, one bounded case at a time: thousands of
    /// idle or slow (slowloris) connections, oversized headers, floods of requests from
    /// one address over kept-alive and new connections (pages, bad offers, DELETEs of
    /// unknown sessions), and floods of valid offers never connected, from one address
    /// and from 200. An honest str0m viewer from another address joins 1 s into each
    /// case and must get its answer and every packet. Reports the relay's RSS and open
    /// descriptors before, at most during, and after each case, what the abusers got,
    /// and what the relay refused (`httpMaxConnections*`, `webrtcMaxPendingSessions*`).
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout; fails if the
    /// viewer was hurt.
    HttpAbuse(relay_benches::http_abuse::Args),
    /// Time to the first decoded frame for a browser joining mid-GOP: headless Chromium
    /// opens the relay's player page N times, at points spread over the GOP of an
    /// RTP-pushed clip (default: 1280x720 30 fps ~2 Mbit/s H264, a keyframe every 4 s).
    ///
    /// The page times itself (`performance.now()` from navigation start) to the WHEP
    /// POST, to the first `framesDecoded` in its stats and to the first frame presented;
    /// `--keyframe-cache true|false` sets the relay's `keyframeCache`.
    ///
    /// Prints progress on stderr, a table and then one JSON line on stdout.
    FirstFrame(relay_benches::first_frame::Args),
}

#[derive(clap::Args)]
struct EgressArgs {
    /// The relay binary (build it with `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    relay: PathBuf,
    /// Viewer counts, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    viewers: Vec<usize>,
    /// Measurement window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Wait after every viewer receives and before measuring, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The relay's data-plane workers (`workers` in its config).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Leave the sink thread and the baseline sender unpinned.
    #[arg(long)]
    no_pin: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Tool::Egress(args) => egress(&args),
        Tool::XdpEgress(args) => relay_benches::xdp_egress::main(&args),
        Tool::Swarm(args) => relay_benches::swarm::main(&args),
        Tool::Suite(args) => relay_benches::suite::main(&args),
        Tool::XdpFlood(args) => relay_benches::xdp_flood::main(&args),
        Tool::HttpAbuse(args) => relay_benches::http_abuse::run(&args),
        Tool::Publish(args) => publish(&args),
        Tool::FirstFrame(args) => relay_benches::first_frame::main(&args),
    }
}

fn publish(args: &PublishArgs) -> anyhow::Result<()> {
    let host = host();
    eprintln!(
        "relay-bench publish: {} streams to {} (port step {}), {} s, clip {}",
        args.streams,
        args.target,
        args.port_step,
        args.duration.as_secs_f64(),
        args.clip
            .as_ref()
            .map_or("default".into(), ToString::to_string),
    );
    let publisher = Publisher::start(args)?;
    let progress = publisher.progress();
    let start = Instant::now();
    let mut last = (start, 0, procfs::own_cpu());
    // Bounded by the duration; the publisher ends by itself then, or earlier on an error.
    while start.elapsed() < args.duration && !publisher.is_finished() {
        let left = args.duration.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(1)));
        let (now, bytes, cpu) = (
            Instant::now(),
            progress.bytes.load(Ordering::Relaxed),
            procfs::own_cpu(),
        );
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        relay_benches::report::progress(&format!(
            "{} streams: {} packets, {:.1} Mbit/s, {} late ticks, CPU {:.1}%",
            args.streams,
            progress.packets.load(Ordering::Relaxed),
            (bytes - last.1) as f64 * 8.0 / dt / 1e6,
            progress.late_ticks.load(Ordering::Relaxed),
            (cpu - last.2).as_secs_f64() / dt * 100.0
        ));
        last = (now, bytes, cpu);
    }
    let report = publisher.stop()?;
    progress_done();
    println!(
        "{:>8} {:>10} {:>9} {:>8} {:>8} {:>6} {:>8} {:>7} {:>7}",
        "streams", "packets", "pkt/s", "Mbit/s", "frames", "late", "refused", "CPU %", "us/pkt"
    );
    println!(
        "{:>8} {:>10} {:>9.0} {:>8.1} {:>8} {:>6} {:>8} {:>7.1} {:>7.2}",
        report.streams,
        report.packets,
        report.packets_per_s(),
        report.mbit_per_s(),
        report.frames,
        report.late_ticks,
        report.refused,
        report.cpu_percent(),
        report.thread_cpu_s * 1e6 / report.packets.max(1) as f64
    );
    let json = serde_json::json!({
        "bench": "publish",
        "host": host,
        "target": args.target,
        "port_step": args.port_step,
        "clip": args.clip.as_ref().map(ToString::to_string),
        "payload_type": args.payload_type,
        "max_payload": args.max_payload,
        "report": report,
        "mbit_per_s": report.mbit_per_s(),
        "cpu_percent": report.cpu_percent(),
    });
    println!("{json}");
    Ok(())
}

#[derive(Debug, Serialize)]
struct Run {
    viewers: usize,
    window_s: f64,
    /// RTP datagrams the viewers received in the window, all together.
    delivered: u64,
    delivered_pps: f64,
    /// Slowest and fastest viewer, packets per second.
    viewer_pps_min: f64,
    viewer_pps_max: f64,
    rtcp_delivered: u64,
    relay_cpu_s: f64,
    relay_cpu_percent: f64,
    relay_us_per_packet: f64,
    /// Datagrams the relay sent per sendmmsg call (media, reports, STUN answers).
    relay_datagrams_per_call: f64,
    relay_send_dropped: f64,
    baseline_datagrams: u64,
    baseline_received: u64,
    baseline_calls: u64,
    baseline_cpu_s: f64,
    baseline_us_per_datagram: f64,
    /// relay_us_per_packet / baseline_us_per_datagram.
    ratio: f64,
    /// The same datagrams replayed at the times viewer 0 received them from the relay.
    replay_datagrams: u64,
    replay_calls: u64,
    replay_us_per_datagram: f64,
    /// relay_us_per_packet / replay_us_per_datagram.
    replay_ratio: f64,
    rss_idle_kib: u64,
    rss_kib: u64,
    /// (rss - rss_idle) / viewers.
    rss_per_viewer_kib: f64,
    tool_cpu_percent: f64,
}

fn egress(args: &EgressArgs) -> anyhow::Result<()> {
    if !args.relay.exists() {
        bail!(
            "no relay binary at {} (build it with `cargo build --release -p relay`, or pass --relay)",
            args.relay.display()
        );
    }
    if args.viewers.contains(&0) || args.window <= 0.0 {
        bail!("viewer counts and the window must be positive");
    }
    let host = host();
    eprintln!(
        "relay-bench egress: {} on {} cores ({}, kernel {}), window {} s",
        args.relay.display(),
        host.cores,
        host.cpu,
        host.kernel,
        args.window
    );
    let mut runs = Vec::new();
    for &n in &args.viewers {
        runs.push(run(args, n, host.cores).with_context(|| format!("run with {n} viewers"))?);
    }
    progress_done();
    print_table(&runs);
    let marginal = marginal_rss(&runs);
    if let Some((from, to, kib)) = marginal {
        println!("RSS per extra viewer from {from} to {to} viewers: {kib:.1} KiB");
    }
    let json = serde_json::json!({
        "bench": "egress",
        "host": host,
        "relay": args.relay,
        "workers": args.workers,
        "runs": runs,
        "rss_marginal_kib_per_viewer": marginal.map(|m| m.2),
    });
    println!("{json}");
    Ok(())
}

/// (fewest viewers, most viewers, RSS growth per viewer between those two runs).
fn marginal_rss(runs: &[Run]) -> Option<(usize, usize, f64)> {
    let low = runs.iter().min_by_key(|r| r.viewers)?;
    let high = runs.iter().max_by_key(|r| r.viewers)?;
    (high.viewers > low.viewers).then(|| {
        let grown = high.rss_kib as f64 - low.rss_kib as f64;
        (
            low.viewers,
            high.viewers,
            grown / (high.viewers - low.viewers) as f64,
        )
    })
}

/// What the tool reads at the start and the end of the window.
struct Reading {
    at: Instant,
    relay_cpu: Duration,
    own_cpu: Duration,
    per_viewer: Vec<u64>,
    rtcp: u64,
}

fn read(relay: &RelayProcess, driver: &Driver, n: usize) -> anyhow::Result<Reading> {
    let sinks = &driver.counters.sinks[..n];
    Ok(Reading {
        at: Instant::now(),
        relay_cpu: procfs::process_cpu(relay.pid())?,
        own_cpu: procfs::own_cpu(),
        per_viewer: sinks
            .iter()
            .map(|s| s.rtp.load(Ordering::Relaxed))
            .collect(),
        rtcp: sinks.iter().map(|s| s.rtcp.load(Ordering::Relaxed)).sum(),
    })
}

/// (media and report datagrams, send calls, send drops) from the relay's metrics.
fn send_metrics(relay: &RelayProcess) -> anyhow::Result<(f64, f64, f64)> {
    Ok((
        relay.metric("relay_rtp_packets_sent_total")?
            + relay.metric("relay_rtcp_packets_sent_total")?,
        relay.metric("relay_send_calls_total")?,
        relay.metric("relay_send_dropped_total")?,
    ))
}

fn run(args: &EgressArgs, n: usize, cores: usize) -> anyhow::Result<Run> {
    let pin = !args.no_pin && cores > 1;
    let relay = Launch::new(&args.relay, &demo_on_loopback(args.workers)).start()?;
    let pid = relay.pid();
    // Let the relay settle (threads started, first packets of the clip in the ring).
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kib = procfs::rss_kib(pid)?;

    let driver = Driver::start(n, pin.then_some(cores - 1))?;
    let agent = http::agent(Duration::from_secs(10));
    let endpoint = whep::endpoint(&relay.http, PATH);
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(n);
    for i in 0..n {
        progress(&format!("{n} viewers: offering {}/{n}", i + 1));
        let offering = Offering::new()?;
        let (answer, _) =
            whep::answer_patiently(&agent, &endpoint, offering.sdp(), whep::BUSY_PATIENCE)
                .with_context(|| format!("viewer {i}; relay log:\n{}", relay.log_tail()))?;
        let sink = offering.accept(&answer)?;
        addrs.push(sink.local_addr());
        driver.add(sink);
    }
    wait_until_receiving(
        &format!("{n} viewers"),
        n,
        Duration::from_secs(30),
        || {
            let c = &driver.counters;
            Ok(Readiness {
                receiving: c.sinks[..n]
                    .iter()
                    .filter(|s| s.rtp.load(Ordering::Relaxed) > 0)
                    .count(),
                ..c.readiness(n)
            })
        },
        || relay.log_tail(),
    )?;
    sleep_with_progress(args.warmup, |s| format!("{n} viewers: warming up {s:.0} s"));

    let counters = &driver.counters;
    let (sent0, calls0, dropped0) = send_metrics(&relay)?;
    let before = read(&relay, &driver, n)?;
    counters.record_pattern(true);
    let mut last = (
        before.at,
        counters.rtp.load(Ordering::Relaxed),
        before.relay_cpu,
    );
    sleep_with_progress(args.window, |elapsed| {
        let now = Instant::now();
        let rtp = counters.rtp.load(Ordering::Relaxed);
        let cpu = procfs::process_cpu(pid).unwrap_or(last.2);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let line = format!(
            "{n} viewers: measuring {elapsed:.0}/{:.0} s, {:.0} pkt/s, relay CPU {:.1}%",
            args.window,
            (rtp - last.1) as f64 / dt,
            (cpu.saturating_sub(last.2)).as_secs_f64() / dt * 100.0
        );
        last = (now, rtp, cpu);
        line
    });
    let after = read(&relay, &driver, n)?;
    counters.record_pattern(false);
    let rss_kib = procfs::rss_kib(pid)?;
    let (sent1, calls1, dropped1) = send_metrics(&relay)?;
    drop(relay);

    let window_s = after.at.duration_since(before.at).as_secs_f64();
    let per_viewer = growth(&after.per_viewer, &before.per_viewer);
    let delivered: u64 = per_viewer.iter().sum();
    if delivered == 0 {
        bail!("the viewers received nothing in the window");
    }
    let relay_cpu_s = (after.relay_cpu - before.relay_cpu).as_secs_f64();
    let relay_us_per_packet = relay_cpu_s * 1e6 / delivered as f64;

    // Whatever the relay still had in flight lands before the baseline starts.
    std::thread::sleep(Duration::from_millis(200));
    let packets = counters.pattern();
    if packets.is_empty() {
        bail!("viewer 0 received nothing in the window: no sizes to replay");
    }
    let flood = Plan {
        destinations: baseline::ipv4_only(&addrs),
        packets,
        total: delivered,
    };
    progress(&format!(
        "{n} viewers: baseline flood, {delivered} datagrams"
    ));
    let (flood_out, flood_received) =
        send_baseline(&flood, Pace::Flood { window: 1024 }, counters, pin)?;
    let replay = Plan {
        total: (flood.packets.len() * n) as u64,
        ..flood
    };
    progress(&format!(
        "{n} viewers: baseline replay, {} datagrams at the relay's times",
        replay.total
    ));
    let (replay_out, _) = send_baseline(&replay, Pace::Replay, counters, pin)?;
    driver.stop();

    let calls = calls1 - calls0;
    let own_cpu = (after.own_cpu - before.own_cpu).as_secs_f64();
    let pps = |count: u64| count as f64 / window_s;
    Ok(Run {
        viewers: n,
        window_s,
        delivered,
        delivered_pps: pps(delivered),
        viewer_pps_min: pps(per_viewer.iter().copied().min().unwrap_or(0)),
        viewer_pps_max: pps(per_viewer.iter().copied().max().unwrap_or(0)),
        rtcp_delivered: after.rtcp - before.rtcp,
        relay_cpu_s,
        relay_cpu_percent: relay_cpu_s / window_s * 100.0,
        relay_us_per_packet,
        relay_datagrams_per_call: if calls > 0.0 {
            (sent1 - sent0) / calls
        } else {
            0.0
        },
        relay_send_dropped: dropped1 - dropped0,
        baseline_datagrams: flood_out.sent,
        baseline_received: flood_received,
        baseline_calls: flood_out.calls,
        baseline_cpu_s: flood_out.cpu.as_secs_f64(),
        baseline_us_per_datagram: flood_out.us_per_datagram(),
        ratio: relay_us_per_packet / flood_out.us_per_datagram(),
        replay_datagrams: replay_out.sent,
        replay_calls: replay_out.calls,
        replay_us_per_datagram: replay_out.us_per_datagram(),
        replay_ratio: relay_us_per_packet / replay_out.us_per_datagram(),
        rss_idle_kib,
        rss_kib,
        rss_per_viewer_kib: (rss_kib as f64 - rss_idle_kib as f64) / n as f64,
        tool_cpu_percent: own_cpu / window_s * 100.0,
    })
}

/// Sends a baseline from its own thread (pinned to core 0, where the relay's first
/// worker runs); returns its outcome and how many datagrams the sinks got of it.
fn send_baseline(
    plan: &Plan,
    pace: Pace,
    counters: &Counters,
    pin: bool,
) -> anyhow::Result<(Outcome, u64)> {
    let before = counters.rtp.load(Ordering::Relaxed);
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            if pin {
                procfs::pin_thread(0);
            }
            let received = || counters.rtp.load(Ordering::Relaxed);
            baseline::send(plan, pace, &received, Duration::from_secs(2))
        })
        .join()
        .expect("baseline thread")
    })?;
    let received = || counters.rtp.load(Ordering::Relaxed) - before;
    let deadline = Instant::now() + Duration::from_secs(1);
    while received() < outcome.sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if outcome.stalled {
        bail!("the sinks stopped draining the baseline: {outcome:?}");
    }
    Ok((outcome, received()))
}

fn print_table(runs: &[Run]) {
    let header = [
        ("viewers", ""),
        ("pkt/s", ""),
        ("relay", "CPU %"),
        ("relay", "us/pkt"),
        ("flood", "us/dgram"),
        ("ratio", ""),
        ("replay", "us/dgram"),
        ("ratio", "replay"),
        ("RSS", "MiB"),
        ("RSS/view", "KiB"),
        ("dgrams/", "call"),
        ("tool", "CPU %"),
    ];
    relay_benches::report::print_header(&header, 9);
    for r in runs {
        let cells = [
            format!("{:>9}", r.viewers),
            format!("{:>9.0}", r.delivered_pps),
            format!("{:>9.1}", r.relay_cpu_percent),
            format!("{:>9.2}", r.relay_us_per_packet),
            format!("{:>9.2}", r.baseline_us_per_datagram),
            format!("{:>9.2}", r.ratio),
            format!("{:>9.2}", r.replay_us_per_datagram),
            format!("{:>9.2}", r.replay_ratio),
            format!("{:>9.1}", r.rss_kib as f64 / 1024.0),
            format!("{:>9.1}", r.rss_per_viewer_kib),
            format!("{:>9.1}", r.relay_datagrams_per_call),
            format!("{:>9.1}", r.tool_cpu_percent),
        ];
        println!("{}", cells.join(" "));
    }
}
