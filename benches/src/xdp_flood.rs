//! `relay-bench xdp-flood`: floods the relay's media port with RTP-class and STUN-class
//! datagrams from unknown sources and reports what its XDP program did with them.
//!
//! The relay runs in XDP mode in its own namespace, as for `xdp-egress` (or, with
//! `--portable`, over UDP sockets); one full client watches the demo from the viewers'
//! namespace and checks that it loses nothing meanwhile. The generator (`flood`) writes
//! spoofed frames to the viewers' veth end with an AF_PACKET socket. The program's
//! counters come from the relay's /metrics (`relay_xdp_packets_total`), read before and
//! after each pattern, with the workers' own drops and the kernel's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use relay_testkit::metrics::{exported, samples};
use relay_testkit::netns::require_root;
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::{http, whep};

use crate::flood::{Bounds, Generated, PacketSocket, Pattern, Target};
use crate::netns::{
    kernel_threads_cpu, write_sys, RELAY_IF, RELAY_IP, RELAY_MAC, VIEWERS_IF, VIEWERS_IP,
    VIEWERS_MAC,
};
use crate::procfs;
use crate::relay_config::{on_veth, PATH};
use crate::report::{host, progress, progress_done};
use crate::sink::{Driver, Offering};
use crate::xdp_egress::MEDIA_PORT;
use relay_testkit::config::demo;

/// Threaded NAPI pollers of the relay's veth end, where its XDP program runs.
const RELAY_NAPI: &str = "napi/rb-relay-";

#[derive(clap::Args)]
pub struct Args {
    /// The relay binary (build it with `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    pub relay: PathBuf,
    /// Patterns, one flood each, in this order.
    #[arg(long, value_delimiter = ',', default_values = ["rtp", "stun", "stun-spread"])]
    pub patterns: Vec<Pattern>,
    /// Length of each flood, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Most frames per flood.
    #[arg(long, default_value_t = 20_000_000)]
    pub max_packets: u64,
    /// Frames per second; 0: as fast as the socket takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// UDP payload bytes of the RTP pattern.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// RX and TX queues of each veth end (one relay worker per queue).
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Run the relay's veth end (and its XDP program) inline, in the generator's
    /// softirq, instead of in its own kernel thread (threaded NAPI).
    #[arg(long)]
    pub inline_napi: bool,
    /// The relay in portable mode (UDP sockets, no XDP program): what reaches user
    /// space is then bounded only by the workers' own budget for strangers' checks.
    #[arg(long)]
    pub portable: bool,
    /// The relay's `xdpSTUNGlobalRate` (and `xdpSTUNGlobalBurst`, the same), in both
    /// modes; unset: the relay's default (2000). A large value shows the flood without
    /// the budget.
    #[arg(long)]
    pub stun_global_rate: Option<std::num::NonZeroU32>,
}

/// One pattern's flood.
#[derive(Debug, Serialize)]
pub struct FloodRun {
    pub pattern: Pattern,
    pub sources: usize,
    pub generated: Generated,
    pub generator_pps: f64,
    pub generator_cpu_percent: f64,
    /// Packets per second the XDP program saw, by its counter (`action_reason`).
    pub xdp_pps: BTreeMap<String, f64>,
    pub xdp_seen_pps: f64,
    pub dropped_pps: f64,
    pub redirected_pps: f64,
    pub passed_pps: f64,
    /// Datagrams per second the relay's workers took from their sockets (AF_XDP, or UDP
    /// in portable mode).
    pub userspace_pps: f64,
    /// Of those, strangers' checks the workers dropped past their share of the global
    /// STUN budget (`relay_dropped_stun_global_limit_total`), per second.
    pub worker_budget_dropped_pps: f64,
    /// Datagrams per second the kernel dropped for a full socket buffer in the relay's
    /// namespace (UDP `RcvbufErrors`; portable mode).
    pub kernel_dropped_pps: f64,
    pub relay_cpu_percent: f64,
    /// The user-space part of that (utime; the rest is the kernel's, stime).
    pub relay_user_cpu_percent: f64,
    /// The relay's veth NAPI thread (the XDP program runs there), % of one core; 0 with
    /// `--inline-napi`.
    pub relay_napi_cpu_percent: f64,
    /// That thread's CPU per packet the program saw.
    pub napi_ns_per_packet: f64,
    /// The full client's RTP packets decrypted during the flood, and the sequence
    /// numbers it missed.
    pub viewer_decrypted: u64,
    pub viewer_gaps: u64,
}

pub fn main(args: &Args) -> anyhow::Result<()> {
    require_root("relay-bench xdp-flood")?;
    if !args.relay.exists() {
        bail!(
            "no relay binary at {} (build it with `cargo build --release -p relay`, or pass --relay)",
            args.relay.display()
        );
    }
    if args.seconds <= 0.0 || args.queues == 0 {
        bail!("the flood's length and the queues must be positive");
    }
    let host = host();
    eprintln!(
        "relay-bench xdp-flood: {} ({}) on {} cores ({}, kernel {}), {} s per pattern, relay's NAPI {}",
        args.relay.display(),
        if args.portable { "portable" } else { "XDP" },
        host.cores,
        host.cpu,
        host.kernel,
        args.seconds,
        if threaded_napi(args) {
            "threaded"
        } else {
            "inline"
        },
    );
    let pair = crate::netns::pair(args.queues)?;
    let mut config = on_veth(
        IpAddr::V4(RELAY_IP),
        MEDIA_PORT,
        args.queues,
        (!args.portable).then_some(RELAY_IF),
        demo(),
    );
    if let Some(rate) = args.stun_global_rate {
        config.xdp_stun_global_rate = rate;
        config.xdp_stun_global_burst = rate;
    }
    let relay = Launch::new(&args.relay, &config)
        .in_netns(&pair.relay)
        .start()?;
    if threaded_napi(args) {
        // The relay attached its program, so the veth end has NAPI instances now.
        write_sys(&pair.relay, RELAY_IF, "threaded", "1")?;
    }
    let runs = pair.client.enter(|| floods(args, &relay))?;
    drop(relay);
    drop(pair);
    progress_done();
    print_table(&runs);
    let json = serde_json::json!({
        "bench": "xdp-flood",
        "host": host,
        "relay": args.relay,
        "queues": args.queues,
        "mode": if args.portable { "portable" } else { "xdp" },
        "stun_global_rate": args.stun_global_rate,
        "relay_napi": if threaded_napi(args) { "threaded" } else { "inline" },
        "runs": runs,
    });
    println!("{json}");
    Ok(())
}

/// A veth end has NAPI instances (which can have threads of their own) only while an
/// XDP program is attached: in portable mode its receive runs in the sender's softirq.
fn threaded_napi(args: &Args) -> bool {
    !args.inline_napi && !args.portable
}

/// In the viewers' namespace: one watching client, then each pattern's flood.
fn floods(args: &Args, relay: &RelayProcess) -> anyhow::Result<Vec<FloodRun>> {
    let driver = Driver::start(1, None)?;
    let offering = Offering::bind(SocketAddr::new(VIEWERS_IP.into(), 0), true)?;
    let agent = http::agent(Duration::from_secs(10));
    let (answer, _) = whep::answer(&agent, &whep::endpoint(&relay.http, PATH), offering.sdp())
        .with_context(|| format!("the watching viewer; relay log:\n{}", relay.log_tail()))?;
    driver.add(offering.accept(&answer)?);
    let viewer = &driver.counters.sinks[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    while viewer.decrypted.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline || viewer.failed.load(Ordering::Relaxed) {
            bail!(
                "the watching viewer got no media; relay log:\n{}",
                relay.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = Target {
        src_mac: VIEWERS_MAC,
        dst_mac: RELAY_MAC,
        dst_ip: RELAY_IP,
        dst_port: MEDIA_PORT,
    };
    let socket = PacketSocket::open(VIEWERS_IF, RELAY_MAC).context("AF_PACKET socket")?;
    let bounds = Bounds {
        duration: Duration::from_secs_f64(args.seconds),
        max_packets: args.max_packets,
        rate: args.rate,
    };
    let mut runs = Vec::new();
    for &pattern in &args.patterns {
        let frames = pattern.frames(&target, args.size);
        // A pause first: the viewer's stream and the relay settle from the last flood.
        std::thread::sleep(Duration::from_secs(1));
        let before = Reading::take(relay, &driver)?;
        progress(&format!(
            "flooding {pattern:?}: {} sources, {} s",
            pattern.sources(),
            args.seconds
        ));
        let generated = socket.flood(&frames, bounds)?;
        // What is in flight lands in the counters before they are read.
        std::thread::sleep(Duration::from_millis(200));
        let after = Reading::take(relay, &driver)?;
        let run = summarize(pattern, generated, &before, &after);
        progress(&format!(
            "{pattern:?}: sent {:.0} pkt/s, XDP dropped {:.0}/s, redirected {:.0}/s, passed {:.0}/s",
            run.generator_pps, run.dropped_pps, run.redirected_pps, run.passed_pps
        ));
        runs.push(run);
    }
    let failed = viewer.failed.load(Ordering::Relaxed);
    driver.stop();
    if failed {
        bail!("the watching viewer failed (str0m error or ICE disconnected) during the floods");
    }
    Ok(runs)
}

struct Reading {
    at: Instant,
    metrics: String,
    /// Datagrams the relay's workers took from their sockets so far.
    received: f64,
    budget_dropped: f64,
    kernel_dropped: u64,
    /// utime, stime.
    relay_cpu: (Duration, Duration),
    napi_cpu: Duration,
    decrypted: u64,
    gaps: u64,
}

impl Reading {
    fn take(relay: &RelayProcess, driver: &Driver) -> anyhow::Result<Reading> {
        let viewer = &driver.counters.sinks[0];
        let metrics = relay.metrics()?;
        Ok(Reading {
            at: Instant::now(),
            received: exported(&metrics, "relay_datagrams_received_total")?,
            budget_dropped: exported(&metrics, "relay_dropped_stun_global_limit_total")?,
            kernel_dropped: procfs::udp_rcvbuf_errors(relay.pid())?,
            metrics,
            relay_cpu: procfs::process_cpu_split(relay.pid())?,
            napi_cpu: kernel_threads_cpu(RELAY_NAPI),
            decrypted: viewer.decrypted.load(Ordering::Relaxed),
            gaps: viewer.gaps.load(Ordering::Relaxed),
        })
    }
}

/// `relay_xdp_packets_total` by `action_reason`.
fn xdp_counters(metrics: &str) -> BTreeMap<String, f64> {
    samples(metrics, "relay_xdp_packets_total")
        .into_iter()
        .map(|(labels, value)| {
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            (format!("{}_{}", label("action"), label("reason")), value)
        })
        .collect()
}

fn summarize(
    pattern: Pattern,
    generated: Generated,
    before: &Reading,
    after: &Reading,
) -> FloodRun {
    // The flood's own time: the readings around it add the settling pause.
    let elapsed = generated.elapsed_s.max(1e-3);
    let (c0, c1) = (xdp_counters(&before.metrics), xdp_counters(&after.metrics));
    let xdp_pps: BTreeMap<String, f64> = c1
        .iter()
        .map(|(k, v)| (k.clone(), (v - c0.get(k).copied().unwrap_or(0.0)) / elapsed))
        .filter(|(_, pps)| *pps > 0.0)
        .collect();
    let by_action = |action: &str| -> f64 {
        xdp_pps
            .iter()
            .filter(|(k, _)| k.starts_with(action))
            .map(|(_, v)| v)
            .fold(0.0, |sum, v| sum + v)
    };
    let seen = by_action("");
    let window = after.at.duration_since(before.at).as_secs_f64();
    let napi_s = (after.napi_cpu - before.napi_cpu).as_secs_f64();
    FloodRun {
        pattern,
        sources: pattern.sources(),
        generated,
        generator_pps: generated.sent as f64 / elapsed,
        generator_cpu_percent: generated.cpu_s / elapsed * 100.0,
        xdp_seen_pps: seen,
        dropped_pps: by_action("dropped"),
        redirected_pps: by_action("redirected"),
        passed_pps: by_action("passed"),
        xdp_pps,
        userspace_pps: (after.received - before.received) / elapsed,
        worker_budget_dropped_pps: (after.budget_dropped - before.budget_dropped) / elapsed,
        kernel_dropped_pps: after.kernel_dropped.saturating_sub(before.kernel_dropped) as f64
            / elapsed,
        relay_cpu_percent: (after.relay_cpu.0 + after.relay_cpu.1
            - before.relay_cpu.0
            - before.relay_cpu.1)
            .as_secs_f64()
            / window
            * 100.0,
        relay_user_cpu_percent: (after.relay_cpu.0 - before.relay_cpu.0).as_secs_f64() / window
            * 100.0,
        relay_napi_cpu_percent: napi_s / window * 100.0,
        napi_ns_per_packet: if seen > 0.0 {
            napi_s * 1e9 / (seen * elapsed)
        } else {
            0.0
        },
        viewer_decrypted: after.decrypted - before.decrypted,
        viewer_gaps: after.gaps - before.gaps,
    }
}

fn print_table(runs: &[FloodRun]) {
    let header = [
        ("pattern", ""),
        ("sources", ""),
        ("sent", "pkt/s"),
        ("gen", "CPU %"),
        ("refused", ""),
        ("XDP saw", "pkt/s"),
        ("dropped", "pkt/s"),
        ("redirect", "pkt/s"),
        ("passed", "pkt/s"),
        ("to user", "pkt/s"),
        ("wk budget", "drop/s"),
        ("kernel", "drop/s"),
        ("relay", "CPU %"),
        ("of it user", "CPU %"),
        ("XDP NAPI", "CPU %"),
        ("NAPI", "ns/pkt"),
        ("viewer", "gaps"),
    ];
    crate::report::print_header(&header, 11);
    for r in runs {
        let pattern = serde_json::to_value(r.pattern)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cells = [
            format!("{pattern:>11}"),
            format!("{:>11}", r.sources),
            format!("{:>11.0}", r.generator_pps),
            format!("{:>11.1}", r.generator_cpu_percent),
            format!("{:>11}", r.generated.refused),
            format!("{:>11.0}", r.xdp_seen_pps),
            format!("{:>11.0}", r.dropped_pps),
            format!("{:>11.0}", r.redirected_pps),
            format!("{:>11.0}", r.passed_pps),
            format!("{:>11.0}", r.userspace_pps),
            format!("{:>11.0}", r.worker_budget_dropped_pps),
            format!("{:>11.0}", r.kernel_dropped_pps),
            format!("{:>11.1}", r.relay_cpu_percent),
            format!("{:>11.1}", r.relay_user_cpu_percent),
            format!("{:>11.1}", r.relay_napi_cpu_percent),
            format!("{:>11.0}", r.napi_ns_per_packet),
            format!("{:>11}", r.viewer_gaps),
        ];
        println!("{}", cells.join(" "));
    }
    for r in runs {
        let reasons: Vec<String> = r
            .xdp_pps
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}/s"))
            .collect();
        println!("{:?}: {}", r.pattern, reasons.join(", "));
    }
}
