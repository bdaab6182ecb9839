//! `relay-bench xdp-egress`: the relay's CPU per delivered packet in XDP mode against
//! portable mode, on the same veth pair with the same viewers, in one run.
//!
//! The tool makes two network namespaces joined by a veth pair: the relay's (the relay
//! runs there, in XDP mode on its veth end or in portable mode with UDP sockets bound
//! to the same address) and the viewers'. Every viewer is a str0m client that does ICE
//! and DTLS with the relay (all driven by one thread, `sink::Driver`); the sink XDP
//! program on the viewers' end (`sink_program`) counts and drops their media, so the
//! kernel never builds a socket buffer for it, while their STUN and DTLS reach str0m.
//! A few viewers are full clients outside the sink's port range: str0m decrypts their
//! media and the tool checks its continuity.
//!
//! The stream is what a camera sends: `relay-bench publish`'s ~2 Mbit/s 720p30 H264 clip
//! (about 9 packets per frame), pushed over RTP to the relay from the viewers' side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_sink_ebpf::SinkCount;
use relay_testkit::config::rtp_push;
use relay_testkit::metrics::exported;
use relay_testkit::netns::{require_root, Pair};
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::{http, whep};
use serde::{Deserialize, Serialize};

use crate::netns::{
    add_viewer_addresses, kernel_threads, kernel_threads_cpu, link_drops, qdisc_drops, write_sys,
    RELAY_IF, RELAY_IP, VIEWERS_IF, VIEWERS_IP,
};
use crate::procfs;
use crate::publish::{self, ClipSource, PublishArgs, Publisher};
use crate::relay_config::{on_veth, PATH};
use crate::report::{growth, host, progress, progress_done, sleep_with_progress};
use crate::sink::{wait_until_receiving, Driver, Offering, Readiness};
use crate::sink_program::SinkProgram;

/// The relay's media port (XDP mode needs a fixed one).
pub const MEDIA_PORT: u16 = 8189;
/// Where the publisher pushes the stream, on the relay's address.
const PUSH_PORT: u16 = 5004;
const PAYLOAD_TYPE: u8 = 96;
/// The publisher's largest RTP payload, as a camera's.
const MAX_PAYLOAD: usize = 1200;
/// Sink viewer i binds port `SINK_FIRST_PORT + i`; full clients take ephemeral ports
/// (32768 and up here), outside the sink's range.
pub const SINK_FIRST_PORT: u16 = 20_000;
/// Most sink viewers: their ports stay below the ephemeral range.
const MAX_SINKS: usize = 12_000;
/// Sink viewers per source address. In XDP mode the relay lets an unknown source
/// address send 50 STUN datagrams a second (100 at once) until its session is up:
/// a thousand viewers joining from one address would be let in at about 50 a second.
const SINKS_PER_IP: usize = 25;
/// Threaded NAPI pollers of the viewers' veth end are named `napi/rb-view-<id>`.
const VIEWERS_NAPI: &str = "napi/rb-view-";
/// How long packets the relay counted as sent may take to reach the viewers' counters.
const SETTLE: Duration = Duration::from_millis(10);
/// Attempts at reading the relay and the viewers between two bursts.
const SNAPSHOT_TRIES: u32 = 50;
/// A run whose loss is above this did not keep up.
const KEEPS_UP_LOSS: f64 = 0.01;
/// How long one WHEP request may take.
const WHEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `xdpInterface` on the relay's veth end: AF_XDP sockets, one worker per RX queue.
    Xdp,
    /// UDP sockets bound to the relay's address on the same veth.
    Portable,
}

#[derive(clap::Args)]
pub struct Args {
    /// The relay binary (build it with `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    pub relay: PathBuf,
    /// Viewer counts, one run per mode each; full clients included.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 1000])]
    pub viewers: Vec<usize>,
    /// Viewers that decrypt and check every packet (the others are sinks).
    #[arg(long, default_value_t = 2)]
    pub full_clients: usize,
    /// Relay modes, run in this order for each viewer count.
    #[arg(long, value_delimiter = ',', default_values = ["xdp", "portable"])]
    pub modes: Vec<Mode>,
    /// Runs of every mode per viewer count, the modes alternating; the ratio pools them
    /// (all CPU over all packets of each mode).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// What the publisher streams: an Annex B H264 file, or `demo` for relay's built-in
    /// clip (~68 packets/s, ~2 per frame). Default: 1280x720 30 fps ~2 Mbit/s (~9 packets
    /// per frame), made once with ffmpeg.
    #[arg(long, value_name = "FILE|demo")]
    pub clip: Option<ClipSource>,
    /// Measurement window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub window: f64,
    /// Wait after every viewer receives and before measuring, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// RX and TX queues of each veth end. XDP mode runs one worker per queue; portable
    /// mode is given as many workers.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Poll the viewers' veth end inline, in the softirq of whoever sent (the relay's
    /// thread, mostly), instead of in its own kernel thread (threaded NAPI). Inline, the
    /// relay's CPU also pays for the viewers' side of the veth.
    #[arg(long)]
    pub inline_napi: bool,
    /// Leave the driver thread and the viewers' NAPI thread unpinned (else on the last
    /// core; the relay pins its worker 0 to core 0).
    #[arg(long)]
    pub no_pin: bool,
}

/// One relay mode with one viewer count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub viewers: usize,
    pub mode: Mode,
    pub sinks: usize,
    pub full_clients: usize,
    pub window_s: f64,
    /// RTP packets the relay built for its viewers in the window (its
    /// `relay_rtp_packets_sent_total`).
    pub expected: u64,
    /// RTP packets that reached the viewers in the window: the sink's count plus the
    /// full clients' datagrams.
    pub delivered: u64,
    pub delivered_pps: f64,
    /// expected - delivered (negative: more arrived than the relay counted in the
    /// window, a few packets in flight at its edges).
    pub lost: i64,
    pub loss_percent: f64,
    /// Slowest and fastest viewer, packets per second.
    pub viewer_pps_min: f64,
    pub viewer_pps_max: f64,
    /// SRTCP sender reports the sink counted.
    pub sink_rtcp: u64,
    pub relay_cpu_s: f64,
    pub relay_cpu_percent: f64,
    pub relay_us_per_packet: f64,
    /// The part of it the kernel charged to user space (the relay's own code: fan-out,
    /// AES-GCM, headers and checksums in XDP mode) ...
    pub relay_user_us_per_packet: f64,
    /// ... and to the kernel (the UDP/IP stack, or AF_XDP's copy-mode transmit).
    pub relay_sys_us_per_packet: f64,
    pub relay_send_dropped: f64,
    /// Datagrams per send call (sendmmsg, or AF_XDP TX kick).
    pub relay_datagrams_per_call: f64,
    /// Packets dropped on the way in the window: by the relay's veth end or its qdisc
    /// (TX) and by the viewers' end (RX).
    pub path_dropped: u64,
    /// The kernel's UDP OutDatagrams per second in the relay's namespace: the packet
    /// rate in portable mode (less with UDP GSO, which counts a batch to one viewer
    /// once), close to 0 in XDP mode.
    pub kernel_udp_out_pps: f64,
    pub rss_idle_kib: u64,
    pub rss_kib: u64,
    /// This tool (str0m clients, driver, readings), % of one core.
    pub tool_cpu_percent: f64,
    /// The viewers' veth NAPI thread (the sink program runs there), % of one core; 0
    /// with `--inline-napi`.
    pub viewers_napi_cpu_percent: f64,
    /// Everything else the machine did meanwhile (other jobs; the kernel's own work
    /// outside these processes), % of one core: how quiet the machine was.
    pub other_cpu_percent: f64,
    /// Full clients: RTP packets str0m decrypted in the window.
    pub full_decrypted: u64,
    /// Full clients: sequence numbers missing since they connected (all SSRCs).
    pub full_gaps: u64,
    /// Full clients: packets late or duplicated since they connected.
    pub full_disorder: u64,
}

/// XDP's relay CPU per packet over portable's, for one viewer count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub viewers: usize,
    pub xdp_us_per_packet: f64,
    pub portable_us_per_packet: f64,
    /// The user-space parts of those (the relay's own code); absent from older runs.
    #[serde(default)]
    pub xdp_user_us_per_packet: f64,
    #[serde(default)]
    pub portable_user_us_per_packet: f64,
    pub xdp_over_portable: f64,
    /// XDP's user-space part alone over portable's whole cost: where the ratio heads
    /// when the kernel's copy-mode transmit goes away (zero-copy NIC). An estimate, not
    /// a measurement: a zero-copy driver's own work is not in it.
    pub xdp_user_over_portable: f64,
}

pub fn main(args: &Args) -> anyhow::Result<()> {
    let (runs, ratios) = measure_all(args)?;
    print_table(&runs, &ratios);
    print_verdicts(&runs);
    let json = serde_json::json!({
        "bench": "xdp-egress",
        "host": host(),
        "relay": args.relay,
        "queues": args.queues,
        "viewers_napi": if args.inline_napi { "inline" } else { "threaded" },
        "pinned": !args.no_pin,
        "runs": runs,
        "ratios": ratios,
    });
    println!("{json}");
    Ok(())
}

/// Every run `args` asks for (for each viewer count, each mode), and XDP over portable.
pub fn measure_all(args: &Args) -> anyhow::Result<(Vec<Run>, Vec<Ratio>)> {
    require_root("relay-bench xdp-egress")?;
    if !args.relay.exists() {
        bail!(
            "no relay binary at {} (build it with `cargo build --release -p relay`, or pass --relay)",
            args.relay.display()
        );
    }
    crate::sink_program::program()?;
    if args.viewers.contains(&0) || args.window <= 0.0 || args.queues == 0 || args.rounds == 0 {
        bail!("viewer counts, the window, the queues and the rounds must be positive");
    }
    let most_sinks = args
        .viewers
        .iter()
        .map(|&n| n.saturating_sub(args.full_clients))
        .max()
        .unwrap_or(0);
    if most_sinks > MAX_SINKS {
        bail!("at most {MAX_SINKS} sink viewers (their ports must stay below the ephemeral range)");
    }
    let host = host();
    eprintln!(
        "relay-bench xdp-egress: {} on {} cores ({}, kernel {}), window {} s, {} queue(s), \
         viewers' NAPI {}",
        args.relay.display(),
        host.cores,
        host.cpu,
        host.kernel,
        args.window,
        args.queues,
        if args.inline_napi {
            "inline"
        } else {
            "threaded"
        },
    );
    let pair = crate::netns::pair(args.queues)?;
    let sink_ips = add_viewer_addresses(&pair, most_sinks.div_ceil(SINKS_PER_IP))?;
    let sink = pair
        .client
        .enter(|| SinkProgram::attach(VIEWERS_IF, SINK_FIRST_PORT, most_sinks.max(1) as u16))?;
    if !args.inline_napi {
        write_sys(&pair.client, VIEWERS_IF, "threaded", "1")?;
        // Off the relay's core (its worker 0 is on core 0): there the poller would
        // preempt the relay at every burst, a cost a NIC does not put on the sender.
        if !args.no_pin && host.cores > 1 {
            for tid in kernel_threads(VIEWERS_NAPI) {
                procfs::pin_task(tid, host.cores - 1);
            }
        }
    }
    // A veth pair has no qdisc: when the viewers' ring (256 frames) is full, a frame the
    // kernel's UDP path sends is dropped (10% of them at 100 viewers here). With a
    // qdisc, veth (Linux 6.18 here) stops the queue instead and the qdisc holds the
    // burst, as a NIC's qdisc does. AF_XDP bypasses qdiscs: a full ring makes its TX
    // kick return EAGAIN and the relay kicks again.
    pair.relay.exec(
        "tc",
        &[
            "qdisc", "replace", "dev", RELAY_IF, "root", "pfifo", "limit", "10000",
        ],
    )?;
    let mut runs = Vec::new();
    for &n in &args.viewers {
        for mode in (0..args.rounds).flat_map(|_| args.modes.iter().copied()) {
            let run = run(args, &pair, &sink, &sink_ips, n, mode, host.cores)
                .with_context(|| format!("{mode:?} with {n} viewers"))?;
            progress(&format!(
                "{n} viewers, {mode:?}: {:.2} us/pkt, {:.0} pkt/s, loss {:.3}%",
                run.relay_us_per_packet, run.delivered_pps, run.loss_percent
            ));
            runs.push(run);
        }
    }
    drop(sink);
    drop(pair);
    progress_done();
    let ratios = ratios(&runs);
    Ok((runs, ratios))
}

/// What the tool reads at the start and the end of the window.
struct Reading {
    at: Instant,
    /// To the nanosecond.
    relay_cpu: Duration,
    /// (user, system), in clock ticks: where the time went, a sample.
    relay_cpu_split: (Duration, Duration),
    own_cpu: Duration,
    napi_cpu: Duration,
    machine_busy: Duration,
    /// RTP packets per viewer, full clients first (as the driver numbers them).
    per_viewer: Vec<u64>,
    sink_rtcp: u64,
    full_decrypted: u64,
    relay_rtp_sent: f64,
    relay_send_dropped: f64,
    relay_datagrams_sent: f64,
    relay_send_calls: f64,
    kernel_udp_out: u64,
    path_dropped: u64,
}

struct Viewers<'a> {
    pair: &'a Pair,
    driver: &'a Driver,
    sink: &'a SinkProgram,
    full: usize,
    sinks: usize,
}

impl Viewers<'_> {
    /// RTP packets each viewer got so far, full clients first.
    fn per_viewer(&self) -> anyhow::Result<(Vec<u64>, u64)> {
        let counters = &self.driver.counters.sinks[..self.full];
        let mut per_viewer: Vec<u64> = counters
            .iter()
            .map(|c| c.rtp.load(Ordering::Relaxed))
            .collect();
        let counts: Vec<SinkCount> = self.sink.counts(self.sinks)?;
        per_viewer.extend(counts.iter().map(|c| c.rtp));
        Ok((per_viewer, counts.iter().map(|c| c.rtcp).sum()))
    }

    /// The relay's counters and the viewers' at one moment: between two of the relay's
    /// bursts, so that both count the same packets (else a burst in flight shows as
    /// loss at one edge of the window and as a gain at the other).
    fn read(&self, relay: &RelayProcess) -> anyhow::Result<Reading> {
        const RTP_SENT: &str = "relay_rtp_packets_sent_total";
        let mut tries = 0;
        let (per_viewer, sink_rtcp, metrics) = loop {
            tries += 1;
            let sent = relay.metric(RTP_SENT)?;
            // What the relay counted as sent lands at the viewers meanwhile.
            std::thread::sleep(SETTLE);
            let (per_viewer, sink_rtcp) = self.per_viewer()?;
            let metrics = relay.metrics()?;
            if exported(&metrics, RTP_SENT)? == sent || tries == SNAPSHOT_TRIES {
                break (per_viewer, sink_rtcp, metrics);
            }
        };
        let metric = |name| exported(&metrics, name);
        let full = &self.driver.counters.sinks[..self.full];
        Ok(Reading {
            at: Instant::now(),
            relay_cpu: procfs::process_cpu(relay.pid())?,
            relay_cpu_split: procfs::process_cpu_split(relay.pid())?,
            own_cpu: procfs::own_cpu(),
            napi_cpu: kernel_threads_cpu(VIEWERS_NAPI),
            machine_busy: procfs::machine_busy()?,
            per_viewer,
            sink_rtcp,
            full_decrypted: full
                .iter()
                .map(|c| c.decrypted.load(Ordering::Relaxed))
                .sum(),
            relay_rtp_sent: metric(RTP_SENT)?,
            relay_send_dropped: metric("relay_send_dropped_total")?,
            relay_datagrams_sent: metric(RTP_SENT)? + metric("relay_rtcp_packets_sent_total")?,
            relay_send_calls: metric("relay_send_calls_total")?,
            kernel_udp_out: procfs::udp_datagrams(relay.pid())?.1,
            path_dropped: link_drops(&self.pair.relay, RELAY_IF)?.1
                + qdisc_drops(&self.pair.relay, RELAY_IF)?
                + link_drops(&self.pair.client, VIEWERS_IF)?.0,
        })
    }
}

fn run(
    args: &Args,
    pair: &Pair,
    sink: &SinkProgram,
    sink_ips: &[Ipv4Addr],
    n: usize,
    mode: Mode,
    cores: usize,
) -> anyhow::Result<Run> {
    let xdp = (mode == Mode::Xdp).then_some(RELAY_IF);
    let pushed_to = SocketAddr::from((RELAY_IP, PUSH_PORT));
    let source = rtp_push(pushed_to, &publish::sdp(PAYLOAD_TYPE, PUSH_PORT));
    let config = on_veth(IpAddr::V4(RELAY_IP), MEDIA_PORT, args.queues, xdp, source);
    let relay = Launch::new(&args.relay, &config)
        .in_netns(&pair.relay)
        .start()?;
    // The camera sends from the viewers' side of the veth pair (the XDP program passes
    // its datagrams to the kernel): its socket and thread live in the viewers'
    // namespace, so that the relay's namespace counts only the relay's UDP; its CPU is
    // the tool's.
    let publisher = pair.client.enter(|| {
        Publisher::start(&PublishArgs {
            target: pushed_to,
            port_step: 2,
            streams: 1,
            duration: Duration::from_secs(24 * 3600),
            clip: args.clip.clone(),
            gop: publish::DEFAULT_GOP,
            payload_type: PAYLOAD_TYPE,
            max_payload: MAX_PAYLOAD,
        })
    })?;
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", relay.pid()))?;
    if comm.trim() != "relay" {
        bail!(
            "PID {} is {comm:?}, not the relay: its CPU would be someone else's",
            relay.pid()
        );
    }
    // Let the relay settle (threads started, first packets of the clip in the ring).
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kib = procfs::rss_kib(relay.pid())?;
    let pin = (!args.no_pin && cores > 1).then_some(cores - 1);
    // The viewers' sockets, their HTTP requests and the driver thread live in the
    // viewers' namespace.
    let setup = Setup {
        pair,
        relay: &relay,
        sink,
        sink_ips,
    };
    let run = pair
        .client
        .enter(|| measure(args, &setup, n, mode, pin, rss_idle_kib));
    publisher.stop()?;
    run
}

/// What a run measures with.
struct Setup<'a> {
    pair: &'a Pair,
    relay: &'a RelayProcess,
    sink: &'a SinkProgram,
    sink_ips: &'a [Ipv4Addr],
}

fn measure(
    args: &Args,
    &Setup {
        pair,
        relay,
        sink,
        sink_ips,
    }: &Setup,
    n: usize,
    mode: Mode,
    pin: Option<usize>,
    rss_idle_kib: u64,
) -> anyhow::Result<Run> {
    let full = args.full_clients.min(n);
    let sinks = n - full;
    let driver = Driver::start(n, pin)?;
    let tag = format!("{n} viewers, {mode:?}");
    let agent = http::agent(WHEP_TIMEOUT);
    let endpoint = whep::endpoint(&relay.http, PATH);
    for i in 0..n {
        if i % 50 == 0 || i + 1 == n {
            progress(&format!("{tag}: offering {}/{n}", i + 1));
        }
        let local = match i.checked_sub(full) {
            None => SocketAddr::new(VIEWERS_IP.into(), 0),
            Some(s) => SocketAddr::new(
                sink_ips[s / SINKS_PER_IP].into(),
                sink.first_port() + s as u16,
            ),
        };
        let offering = Offering::bind(local, i < full)
            .with_context(|| format!("viewer {i}: binding {local}"))?;
        let (answer, _) =
            whep::answer_patiently(&agent, &endpoint, offering.sdp(), whep::BUSY_PATIENCE)
                .with_context(|| format!("viewer {i}; relay log:\n{}", relay.log_tail()))?;
        driver.add(offering.accept(&answer)?);
    }
    let viewers = Viewers {
        pair,
        driver: &driver,
        sink,
        full,
        sinks,
    };
    // The sink's counts are cumulative over the runs: a viewer receives once its own
    // count moves past where it stood before this run.
    let (start, _) = viewers.per_viewer()?;
    wait_until_receiving(
        &tag,
        n,
        Duration::from_secs(30 + n as u64 / 20),
        || {
            let (now, _) = viewers.per_viewer()?;
            Ok(Readiness {
                receiving: now.iter().zip(&start).filter(|(a, b)| a > b).count(),
                ..driver.counters.readiness(n)
            })
        },
        || relay.log_tail(),
    )?;
    sleep_with_progress(args.warmup, |s| format!("{tag}: warming up {s:.0} s"));

    let before = viewers.read(relay)?;
    let pid = relay.pid();
    let mut last = (
        before.at,
        before.per_viewer.iter().sum::<u64>(),
        before.relay_cpu,
    );
    sleep_with_progress(args.window, |elapsed| {
        let now = Instant::now();
        let got = viewers
            .per_viewer()
            .map_or(last.1, |(v, _)| v.iter().sum::<u64>());
        let cpu = procfs::process_cpu(pid).unwrap_or(last.2);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let line = format!(
            "{tag}: measuring {elapsed:.0}/{:.0} s, {:.0} pkt/s, relay CPU {:.1}%",
            args.window,
            got.saturating_sub(last.1) as f64 / dt,
            cpu.saturating_sub(last.2).as_secs_f64() / dt * 100.0
        );
        last = (now, got, cpu);
        line
    });
    let after = viewers.read(relay)?;
    let rss_kib = procfs::rss_kib(pid)?;
    let full_counters = &driver.counters.sinks[..full];
    let full_gaps = full_counters
        .iter()
        .map(|c| c.gaps.load(Ordering::Relaxed))
        .sum();
    let full_disorder = full_counters
        .iter()
        .map(|c| c.disorder.load(Ordering::Relaxed))
        .sum();
    let failed = driver.counters.sinks[..n]
        .iter()
        .filter(|c| c.failed.load(Ordering::Relaxed))
        .count();
    driver.stop();
    if failed > 0 {
        bail!("{failed} viewers failed (str0m error or ICE disconnected) during the run");
    }
    Ok(summarize(
        n,
        mode,
        (full, sinks),
        &before,
        &after,
        (rss_idle_kib, rss_kib),
        (full_gaps, full_disorder),
    ))
}

fn summarize(
    n: usize,
    mode: Mode,
    (full, sinks): (usize, usize),
    before: &Reading,
    after: &Reading,
    (rss_idle_kib, rss_kib): (u64, u64),
    (full_gaps, full_disorder): (u64, u64),
) -> Run {
    let window_s = after.at.duration_since(before.at).as_secs_f64();
    let per_viewer = growth(&after.per_viewer, &before.per_viewer);
    let delivered: u64 = per_viewer.iter().sum();
    let expected = (after.relay_rtp_sent - before.relay_rtp_sent).max(0.0) as u64;
    let lost = expected as i64 - delivered as i64;
    let user_s = (after.relay_cpu_split.0 - before.relay_cpu_split.0).as_secs_f64();
    let sys_s = (after.relay_cpu_split.1 - before.relay_cpu_split.1).as_secs_f64();
    let relay_cpu_s = (after.relay_cpu - before.relay_cpu).as_secs_f64();
    let per_packet = |seconds: f64| {
        if delivered > 0 {
            seconds * 1e6 / delivered as f64
        } else {
            f64::NAN
        }
    };
    let per_s = |count: f64| count / window_s;
    let calls = after.relay_send_calls - before.relay_send_calls;
    let own_s = (after.own_cpu - before.own_cpu).as_secs_f64();
    let napi_s = (after.napi_cpu - before.napi_cpu).as_secs_f64();
    let busy_s = (after.machine_busy - before.machine_busy).as_secs_f64();
    Run {
        viewers: n,
        mode,
        sinks,
        full_clients: full,
        window_s,
        expected,
        delivered,
        delivered_pps: per_s(delivered as f64),
        lost,
        loss_percent: if expected > 0 {
            lost as f64 / expected as f64 * 100.0
        } else {
            0.0
        },
        viewer_pps_min: per_s(per_viewer.iter().copied().min().unwrap_or(0) as f64),
        viewer_pps_max: per_s(per_viewer.iter().copied().max().unwrap_or(0) as f64),
        sink_rtcp: after.sink_rtcp - before.sink_rtcp,
        relay_cpu_s,
        relay_cpu_percent: per_s(relay_cpu_s) * 100.0,
        relay_us_per_packet: per_packet(relay_cpu_s),
        relay_user_us_per_packet: per_packet(user_s),
        relay_sys_us_per_packet: per_packet(sys_s),
        relay_send_dropped: after.relay_send_dropped - before.relay_send_dropped,
        path_dropped: after.path_dropped - before.path_dropped,
        relay_datagrams_per_call: if calls > 0.0 {
            (after.relay_datagrams_sent - before.relay_datagrams_sent) / calls
        } else {
            0.0
        },
        kernel_udp_out_pps: per_s((after.kernel_udp_out - before.kernel_udp_out) as f64),
        rss_idle_kib,
        rss_kib,
        tool_cpu_percent: per_s(own_s) * 100.0,
        viewers_napi_cpu_percent: per_s(napi_s) * 100.0,
        other_cpu_percent: per_s((busy_s - relay_cpu_s - own_s - napi_s).max(0.0)) * 100.0,
        full_decrypted: after.full_decrypted - before.full_decrypted,
        full_gaps,
        full_disorder,
    }
}

/// XDP over portable, for each viewer count that ran in both modes: each mode's CPU
/// over its packets, pooled over its rounds.
fn ratios(runs: &[Run]) -> Vec<Ratio> {
    // (all, user-space) CPU per delivered packet of one mode, in us.
    let pooled = |n: usize, mode: Mode| {
        let runs = runs.iter().filter(|r| r.viewers == n && r.mode == mode);
        let (mut packets, mut cpu, mut user) = (0.0, 0.0, 0.0);
        for r in runs {
            packets += r.delivered as f64;
            cpu += r.relay_cpu_s;
            user += r.relay_user_us_per_packet * r.delivered as f64 / 1e6;
        }
        (packets > 0.0).then(|| (cpu * 1e6 / packets, user * 1e6 / packets))
    };
    let mut counts: Vec<usize> = runs.iter().map(|r| r.viewers).collect();
    counts.dedup();
    counts
        .into_iter()
        .filter_map(|n| {
            let ((xdp, xdp_user), (portable, portable_user)) =
                (pooled(n, Mode::Xdp)?, pooled(n, Mode::Portable)?);
            Some(Ratio {
                viewers: n,
                xdp_us_per_packet: xdp,
                portable_us_per_packet: portable,
                xdp_user_us_per_packet: xdp_user,
                portable_user_us_per_packet: portable_user,
                xdp_over_portable: xdp / portable,
                xdp_user_over_portable: xdp_user / portable,
            })
        })
        .collect()
}

fn print_table(runs: &[Run], ratios: &[Ratio]) {
    let header = [
        ("viewers", ""),
        ("mode", ""),
        ("pkt/s", ""),
        ("loss", "%"),
        ("relay", "CPU %"),
        ("relay", "us/pkt"),
        ("user", "us/pkt"),
        ("sys", "us/pkt"),
        ("xdp/", "portable"),
        ("RSS", "MiB"),
        ("dgrams/", "call"),
        ("kernel", "UDP out/s"),
        ("tool", "CPU %"),
        ("sink", "NAPI %"),
        ("other", "CPU %"),
        ("full", "gaps"),
    ];
    crate::report::print_header(&header, 9);
    for r in runs {
        let ratio = ratios
            .iter()
            .find(|q| q.viewers == r.viewers && r.mode == Mode::Xdp)
            .map_or(String::new(), |q| format!("{:.2}", q.xdp_over_portable));
        let cells = [
            format!("{:>9}", r.viewers),
            format!("{:>9}", format!("{:?}", r.mode).to_lowercase()),
            format!("{:>9.0}", r.delivered_pps),
            format!("{:>9.3}", r.loss_percent),
            format!("{:>9.1}", r.relay_cpu_percent),
            format!("{:>9.2}", r.relay_us_per_packet),
            format!("{:>9.2}", r.relay_user_us_per_packet),
            format!("{:>9.2}", r.relay_sys_us_per_packet),
            format!("{ratio:>9}"),
            format!("{:>9.1}", r.rss_kib as f64 / 1024.0),
            format!("{:>9.1}", r.relay_datagrams_per_call),
            format!("{:>9.0}", r.kernel_udp_out_pps),
            format!("{:>9.1}", r.tool_cpu_percent),
            format!("{:>9.1}", r.viewers_napi_cpu_percent),
            format!("{:>9.1}", r.other_cpu_percent),
            format!("{:>9}", r.full_gaps),
        ];
        println!("{}", cells.join(" "));
    }
}

/// Says plainly where the machine did not keep up, and where the target was missed.
fn print_verdicts(runs: &[Run]) {
    for r in runs {
        let mode = format!("{:?}", r.mode).to_lowercase();
        if r.loss_percent > KEEPS_UP_LOSS * 100.0 || r.full_gaps > 0 {
            println!(
                "NOT KEPT UP: {} viewers, {mode}: {} of {} packets lost ({:.2}%; {} dropped \
                 by the veth pair or its qdisc, {} by the relay's sender), {} gaps at the \
                 full clients",
                r.viewers,
                r.lost,
                r.expected,
                r.loss_percent,
                r.path_dropped,
                r.relay_send_dropped,
                r.full_gaps
            );
        }
        if r.relay_cpu_percent > 90.0 {
            println!(
                "SATURATED: {} viewers, {mode}: the relay used {:.0}% of a core",
                r.viewers, r.relay_cpu_percent
            );
        }
    }
}
