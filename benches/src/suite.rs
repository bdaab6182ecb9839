//! `relay-bench suite`: the standard workloads (W1-W4) against the relay and against
//! Janus in one run, in a network namespace of the run's own, with the results written
//! into docs/benchmarks.md and plotted.
//!
//! Everything runs on the namespace's loopback: the publisher (`publish`), the server,
//! and the viewers (`swarm`); for W1R also the RTSP server between the publisher and
//! the server (the test kit's `rtsp_server`, serving RTP cameras). Sink viewers are
//! counted by the sink program at that `lo`'s ingress (tc), so thousands of them cost
//! the tool little; two verifying viewers per run decrypt and check every packet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_testkit::netns::require_root;
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::rtsp_server::{RtpCameras, RtspServer};
use relay_testkit::whep;

use crate::janus::{JanusOptions, JanusProcess};
use crate::procfs;
use crate::publish::{ClipSource, PublishArgs, Publisher};
use crate::report::{progress, progress_done, sleep_with_progress};
use crate::sink::{wait_until_receiving, Offering, Readiness};
use crate::sink_program::SinkProgram;
use crate::suite_results::{Churn, Results, RtspTransport, Run, ServerKind, SetupStep, Workload};
use crate::swarm::{Signaling, SinkPorts, Swarm, Totals};

/// The publisher's first port; stream i goes to FIRST_RTP_PORT + 2 i.
const FIRST_RTP_PORT: u16 = 30_000;
/// Sink viewers bind ports from here up.
const FIRST_SINK_PORT: u16 = 20_000;
/// W1R's sink viewers bind ports from here up: below 5000, out of the range where the
/// relay's RTSP client (retina) picks its RTP and RTCP ports at random (5000-65000), so
/// that neither takes the other's port nor the sink program counts (and drops) the
/// relay's incoming RTP.
const FIRST_RTSP_SINK_PORT: u16 = 3_000;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay binary (built by `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    pub relay: PathBuf,
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "w1,w1r,w2,w3,w4")]
    pub workloads: Vec<Workload>,
    /// Servers to run them against, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "relay,janus")]
    pub servers: Vec<ServerKind>,
    /// W1: streams, and viewers of each.
    #[arg(long, default_value_t = 64)]
    pub w1_streams: usize,
    #[arg(long, default_value_t = 2)]
    pub w1_viewers: usize,
    /// W1R (W1 over RTSP: the streams served by one GStreamer RTSP server, which the
    /// servers pull): the relay's `rtspTransport`s, each a run of its own. Janus's RTSP
    /// client takes UDP only: it runs once, over UDP.
    #[arg(long, value_delimiter = ',', default_value = "tcp,udp")]
    pub w1r_transports: Vec<RtspTransport>,
    /// W1R: the RTSP server depacketizes the publisher's RTP and packetizes it again
    /// (loss is then the verifying viewers' sequence gaps), instead of passing the
    /// packets through as they came (loss counted against the publisher's packets).
    #[arg(long)]
    pub rtsp_repay: bool,
    /// W2: viewer counts of the one stream; a server stops at the first count it does
    /// not keep up with.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,100,1000,2000,3000,5000"
    )]
    pub w2_viewers: Vec<usize>,
    /// W3: viewers present at once, and seconds of churn.
    #[arg(long, default_value_t = 100)]
    pub w3_viewers: usize,
    #[arg(long, default_value_t = 120.0)]
    pub w3_seconds: f64,
    /// W4: setup rates tried (sessions/s), each for `w4_step` seconds, until the p99
    /// setup time passes 100 ms.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100,200")]
    pub w4_rates: Vec<f64>,
    #[arg(long, default_value_t = 5.0)]
    pub w4_step: f64,
    /// The relay in XDP mode against portable mode (`relay-bench xdp-egress`: a veth
    /// pair, the publisher's clip, the same viewers), after the workloads: viewer counts.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,3000")]
    pub xdp_viewers: Vec<usize>,
    /// Leave the XDP comparison out.
    #[arg(long)]
    pub no_xdp: bool,
    /// The relay's `keyframeCache` (its memory figure depends on it: the newest GOP of
    /// each stream is kept beside `historyDuration`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub keyframe_cache: bool,
    /// The relay's `ingestBatchWindow` (how long a busy ingest waits between passes over
    /// the publishers' sockets, e.g. `1ms`; `0s` for none); default: the relay's.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ingest_batch_window: Option<Duration>,
    /// The relay's `workers` (1: what one core does; 0: one per core, the relay's
    /// default).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds measured per run (after a warm-up of 2 s).
    #[arg(long, default_value_t = 15.0)]
    pub window: f64,
    /// The recorded H264 stream every publisher loops (default: the ~2 Mbit/s 720p
    /// clip `relay-bench publish` makes with ffmpeg).
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Where the JSON of the whole run goes.
    #[arg(long, default_value = "target/bench/suite.json")]
    pub json: PathBuf,
    /// Measure nothing: write `--docs` from the results of an earlier run (its `--json`).
    #[arg(long, requires = "docs")]
    pub from_json: Option<PathBuf>,
    /// Markdown file whose generated section (between the `suite:begin` and
    /// `suite:end` markers) is rewritten with the results; plots go next to it in
    /// `plots/`. Nothing is written without it.
    #[arg(long)]
    pub docs: Option<PathBuf>,
}

/// Where a server's streams come from.
#[derive(Debug, Clone)]
enum Feed {
    /// RTP pushed by the publisher to the server's ports.
    Rtp,
    /// Pulled from the RTSP server: `rtsp://.../cam{stream}`, over `transport`.
    Rtsp {
        url_template: String,
        transport: RtspTransport,
    },
}

/// A server under test, serving `streams` streams from its feed.
enum Server {
    Relay(RelayProcess),
    Janus(JanusProcess),
}

impl Server {
    fn start(kind: ServerKind, args: &Args, streams: usize, feed: &Feed) -> anyhow::Result<Server> {
        match kind {
            ServerKind::Relay => {
                let mut config = match feed {
                    Feed::Rtp => relay_config(streams),
                    Feed::Rtsp {
                        url_template,
                        transport,
                    } => relay_rtsp_config(streams, url_template, *transport)?,
                };
                config.history.keyframe_cache = args.keyframe_cache;
                if let Some(window) = args.ingest_batch_window {
                    config.ingest_batch_window = window;
                }
                config.workers = args.workers;
                Ok(Server::Relay(Launch::new(&args.relay, &config).start()?))
            }
            ServerKind::Janus => {
                let rtsp = match feed {
                    Feed::Rtp => None,
                    Feed::Rtsp {
                        transport: RtspTransport::Tcp,
                        ..
                    } => bail!("Janus's RTSP client takes RTP over UDP only"),
                    Feed::Rtsp { url_template, .. } => Some(url_template.clone()),
                };
                Ok(Server::Janus(JanusProcess::start(&JanusOptions {
                    mountpoints: streams,
                    base_port: FIRST_RTP_PORT,
                    port_step: 2,
                    rtsp,
                    ..JanusOptions::default()
                })?))
            }
        }
    }

    /// Waits (up to 60 s) until the relay's `streams` paths are all ready: an RTSP
    /// source connects after the relay starts (Janus connects its RTSP mountpoints
    /// before its API answers).
    fn wait_ready(&self, tag: &str, streams: usize) -> anyhow::Result<()> {
        let Server::Relay(relay) = self else {
            return Ok(());
        };
        let start = Instant::now();
        loop {
            let text = relay.metrics()?;
            let ready = text
                .lines()
                .filter(|l| l.starts_with("relay_path_state{") && l.contains("state=\"ready\""))
                .count();
            progress(&format!("{tag}: {ready}/{streams} paths ready"));
            if ready >= streams {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{tag}: {ready} of {streams} paths ready after 60 s; the relay's log:\n{}",
                    relay.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Relay(r) => r.pid(),
            Server::Janus(j) => j.pid(),
        }
    }

    fn log_tail(&self) -> String {
        match self {
            Server::Relay(r) => r.log_tail(),
            Server::Janus(j) => j.log_tail(),
        }
    }

    fn signaling(&self) -> Signaling {
        match self {
            Server::Relay(r) => Signaling::Whep(format!("{}/cam{{stream}}/whep", r.http)),
            Server::Janus(j) => Signaling::Janus(j.http.clone()),
        }
    }

    /// Stops the server as a supervisor would: the relay gets SIGTERM and exits, so
    /// that an instrumented build (`cargo xtask dist --pgo`'s training) writes its
    /// profile; killed if it has not exited in 10 s.
    fn stop(self) {
        match self {
            Server::Relay(mut r) => {
                if let Err(e) = r.terminate(Duration::from_secs(10)) {
                    eprintln!("the relay did not stop on SIGTERM: {e:#}");
                }
            }
            Server::Janus(j) => j.stop(),
        }
    }
}

/// The relay's config for `streams` RTP paths cam0.. on the publisher's ports, one
/// worker (the workloads measure what one core does; `--workers` changes it).
fn relay_config(streams: usize) -> relay::config::Config {
    let paths: Vec<(String, u16)> = (0..streams)
        .map(|i| (format!("cam{i}"), FIRST_RTP_PORT + 2 * i as u16))
        .collect();
    let paths: Vec<(&str, u16, String)> = paths
        .iter()
        .map(|(name, port)| (name.as_str(), *port, crate::publish::sdp(96, *port)))
        .collect();
    crate::relay_config::rtp_push_on_loopback(1, &paths)
}

/// The relay's config for `streams` paths cam0.. pulling `url_template` (`{stream}`
/// replaced by the path's number) over `transport`, one worker.
fn relay_rtsp_config(
    streams: usize,
    url_template: &str,
    transport: RtspTransport,
) -> anyhow::Result<relay::config::Config> {
    use relay::ingest::rtsp::RtspTransport as Pull;
    let paths: Vec<(String, String)> = (0..streams)
        .map(|i| {
            (
                format!("cam{i}"),
                url_template.replace("{stream}", &i.to_string()),
            )
        })
        .collect();
    let paths: Vec<(&str, String)> = paths.iter().map(|(n, u)| (n.as_str(), u.clone())).collect();
    let transport = match transport {
        RtspTransport::Tcp => Pull::Tcp,
        RtspTransport::Udp => Pull::Udp,
    };
    Ok(crate::relay_config::rtsp_pull_on_loopback(
        1, &paths, transport,
    ))
}

/// What the server process used between two moments.
#[derive(Debug, Clone, Copy)]
struct Usage {
    at: Instant,
    cpu: Duration,
    rss_kib: u64,
    fds: usize,
    tool_cpu: Duration,
}

impl Usage {
    fn read(pid: u32) -> anyhow::Result<Usage> {
        Ok(Usage {
            at: Instant::now(),
            cpu: procfs::process_cpu(pid)?,
            rss_kib: procfs::rss_kib(pid)?,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
            tool_cpu: procfs::own_cpu(),
        })
    }
}

pub fn main(args: &Args) -> anyhow::Result<()> {
    if let (Some(json), Some(docs)) = (&args.from_json, &args.docs) {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let results: Results = serde_json::from_str(&text)?;
        crate::suite_docs::write(docs, &results, &results.command)?;
        println!(
            "wrote {} and its plots from {}",
            docs.display(),
            json.display()
        );
        return Ok(());
    }
    require_root("relay-bench suite")?;
    if !args.relay.exists() {
        bail!(
            "no relay binary at {}: run `cargo build --release -p relay` (or `cargo xtask bench`)",
            args.relay.display()
        );
    }
    enter_private_network()?;
    // Every viewer has a socket, and so has each of Janus's sessions.
    procfs::raise_soft_limit(libc::RLIMIT_NOFILE);
    let mut results = Results {
        command: command_line(),
        host: crate::report::host(),
        started_unix: crate::stamp::unix_ns() / 1_000_000_000,
        runs: Vec::new(),
        churn: Vec::new(),
        setup: Vec::new(),
        unmeasured: Vec::new(),
        xdp: Vec::new(),
        xdp_ratios: Vec::new(),
    };
    for &workload in &args.workloads {
        for &server in &args.servers {
            match workload {
                Workload::W1 => {
                    let (streams, each) = (args.w1_streams, args.w1_viewers);
                    match steady(args, server, workload, streams, each, each, None) {
                        Ok(run) => results.runs.push(run),
                        Err(e) => results.unmeasured.push(format!("{e:#}")),
                    }
                }
                Workload::W1r => {
                    let (streams, each) = (args.w1_streams, args.w1_viewers);
                    let transports = match server {
                        ServerKind::Relay => args.w1r_transports.clone(),
                        ServerKind::Janus => vec![RtspTransport::Udp],
                    };
                    for transport in transports {
                        match steady(args, server, workload, streams, each, each, Some(transport)) {
                            Ok(run) => results.runs.push(run),
                            Err(e) => results
                                .unmeasured
                                .push(format!("W1R {server:?} over RTSP/{transport}: {e:#}")),
                        }
                    }
                }
                Workload::W2 => {
                    for &n in &args.w2_viewers {
                        // A server too busy to connect every viewer did not keep up either.
                        let run = match steady(args, server, workload, 1, n, 2, None) {
                            Ok(run) => run,
                            Err(e) => {
                                results.unmeasured.push(format!("{e:#}"));
                                break;
                            }
                        };
                        let kept_up = run.kept_up();
                        results.runs.push(run);
                        if !kept_up {
                            break;
                        }
                    }
                }
                Workload::W3 => results.churn.push(churn(args, server)?),
                Workload::W4 => results.setup.extend(setup_rate(args, server)?),
            }
        }
    }
    if !args.no_xdp && !args.xdp_viewers.is_empty() {
        use crate::xdp_egress::{measure_all, Args as XdpArgs, Mode};
        let (runs, ratios) = measure_all(&XdpArgs {
            relay: args.relay.clone(),
            viewers: args.xdp_viewers.clone(),
            full_clients: 2,
            modes: vec![Mode::Xdp, Mode::Portable],
            rounds: 1,
            clip: args.clip.clone().map(ClipSource::File),
            window: args.window,
            warmup: 3.0,
            queues: 1,
            inline_napi: false,
            no_pin: false,
        })?;
        results.xdp = runs;
        results.xdp_ratios = ratios;
    }
    progress_done();
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&results)?)?;
    print_summary(&results);
    if let Some(docs) = &args.docs {
        crate::suite_docs::write(docs, &results, &results.command)?;
        println!("wrote {} and its plots", docs.display());
    }
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Moves this process (before it starts any thread) into a network namespace of its
/// own with only `lo` up: the servers and viewers it starts inherit it, the sink
/// program on its `lo` sees nothing else, and it vanishes when the run ends.
///
/// Its `lo` passes a UDP GSO batch whole to the receiving side, as a NIC with UDP
/// segmentation offload (`lo`'s default) hands it to its hardware: the sink program at
/// its ingress counts the batch's datagrams; a verifying viewer's socket splits it.
fn enter_private_network() -> anyhow::Result<()> {
    // SAFETY: unshare changes only the calling thread's namespaces; no other thread
    // runs yet.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running ip (`cargo xtask setup` installs it)")?;
    if !status.success() {
        bail!("ip link set lo up: {status}");
    }
    Ok(())
}

/// Viewers that stay: `streams` published, `viewers` per stream, `verifying` of them
/// (per run, not per stream) decrypting and checking; measured over the window. With
/// `rtsp`, the publisher feeds an RTSP server (one process, a mount per stream) and the
/// server pulls from it over that transport; the RTSP server's CPU is measured too.
#[allow(clippy::too_many_arguments)]
fn steady(
    args: &Args,
    kind: ServerKind,
    workload: Workload,
    streams: usize,
    viewers_per_stream: usize,
    verifying: usize,
    rtsp: Option<RtspTransport>,
) -> anyhow::Result<Run> {
    let viewers = streams * viewers_per_stream;
    let over = rtsp.map_or(String::new(), |t| format!(" over RTSP/{t}"));
    let tag =
        format!("{workload:?} {kind:?}{over}: {streams} streams x {viewers_per_stream} viewers");
    // The RTSP server answers for a mount once its RTP arrives: it starts first, then
    // the publisher, then the server that pulls.
    let cameras = match rtsp {
        Some(_) => Some(RtspServer::start_cameras(RtpCameras {
            count: streams,
            rtp_port: FIRST_RTP_PORT,
            port_step: 2,
            repay: args.rtsp_repay,
        })?),
        None => None,
    };
    let publisher = Publisher::start(&publish_args(args, streams))?;
    let feed = match (&cameras, rtsp) {
        (Some(c), Some(transport)) => {
            std::thread::sleep(Duration::from_millis(500));
            Feed::Rtsp {
                url_template: c.url("cam{stream}"),
                transport,
            }
        }
        _ => Feed::Rtp,
    };
    let server = Server::start(kind, args, streams, &feed)?;
    if rtsp.is_some() {
        server.wait_ready(&tag, streams)?;
    }
    // The server has its streams, and their history filled (the relay's ring of 1024
    // packets holds 3.8 s of a 2 Mbit/s stream), before the first viewer: what RSS
    // grows by after this is the viewers'.
    std::thread::sleep(Duration::from_secs(5));
    let idle_rss = procfs::rss_kib(server.pid())?;
    let first_sink_port = if rtsp.is_some() {
        FIRST_RTSP_SINK_PORT
    } else {
        FIRST_SINK_PORT
    };
    if rtsp.is_some() && usize::from(first_sink_port) + viewers > 5000 {
        bail!("{tag}: W1R takes at most 2000 viewers (its sink ports stay below 5000)");
    }
    let sink = sink_ports(first_sink_port, viewers)?;
    let mut swarm = Swarm::new(server.signaling(), viewers, LOOPBACK, Some(sink), None)?;
    let refused = join(&mut swarm, &tag, viewers, streams, verifying, 100.0)?;
    let joined = viewers - refused;
    wait_until_receiving(
        &tag,
        joined,
        Duration::from_secs(60),
        || {
            let t = swarm.totals()?;
            Ok(Readiness {
                connected: t.connected,
                receiving: t.per_viewer_rtp.iter().filter(|&&n| n > 0).count(),
                failed: t.failed,
            })
        },
        || server.log_tail(),
    )?;
    sleep_with_progress(2.0, |s| format!("{tag}: warming up {s:.0} s"));
    let present: Vec<usize> = swarm.present().collect();
    let packets = || publisher.progress().packets.load(Ordering::Relaxed);
    let cameras_cpu = || -> anyhow::Result<Option<Duration>> {
        Ok(match cameras.as_ref().and_then(RtspServer::pid) {
            Some(pid) => Some(procfs::process_cpu(pid)?),
            None => None,
        })
    };
    let edge = || -> anyhow::Result<_> {
        Ok((
            cameras_cpu()?,
            Usage::read(server.pid())?,
            swarm.totals()?,
            packets(),
        ))
    };
    let (c0, u0, t0, p0) = at_quiet_moment(packets, std::thread::sleep, edge)?;
    sleep_with_progress(args.window, |s| {
        format!("{tag}: measuring {s:.0}/{:.0} s", args.window)
    });
    let (c1, u1, t1, p1) = at_quiet_moment(packets, std::thread::sleep, edge)?;
    let cameras_rss = match cameras.as_ref().and_then(RtspServer::pid) {
        Some(pid) => Some(procfs::rss_kib(pid)?),
        None => None,
    };
    let window = t1.since(&t0, &present);
    swarm.stop();
    let published_report = publisher.stop()?;
    server.stop();
    drop(cameras);
    let seconds = u1.at.duration_since(u0.at).as_secs_f64();
    let cpu = (u1.cpu - u0.cpu).as_secs_f64();
    let delivered = delivered(&t0, &t1);
    let published = (p1 - p0) as f64;
    // Every viewer of a stream should get every packet of it; an RTSP server that
    // packetizes again sends other packets, and then only the gaps count.
    // Refused viewers are left out: the rest spread over the streams.
    let expected = published * joined as f64 / streams as f64;
    let counted = rtsp.is_none() || !args.rtsp_repay;
    let loss = if counted {
        (1.0 - delivered as f64 / expected.max(1.0)).max(window.loss)
    } else {
        window.loss
    };
    Ok(Run {
        workload,
        server: kind,
        streams,
        viewers,
        seconds,
        cpu_percent: cpu / seconds * 100.0,
        us_per_packet: cpu * 1e6 / (delivered as f64).max(1.0),
        delivered_pps: delivered as f64 / seconds,
        published_pps: published / seconds,
        loss,
        rss_kib: u1.rss_kib,
        rss_per_viewer_kib: u1.rss_kib.saturating_sub(idle_rss) as f64 / joined.max(1) as f64,
        refused,
        fds: u1.fds,
        viewers_window: window,
        tool_cpu_percent: (u1.tool_cpu - u0.tool_cpu).as_secs_f64() / seconds * 100.0,
        publisher_cpu_percent: published_report.cpu_percent(),
        rtsp_transport: rtsp,
        rtsp_server_cpu_percent: c0
            .zip(c1)
            .map(|(a, b)| (b - a).as_secs_f64() / seconds * 100.0),
        rtsp_server_rss_kib: cameras_rss,
    })
}

/// How long the publisher must have sent nothing before a window's edge is read, and
/// how many times to look for such a gap before reading it anyway.
const QUIET: Duration = Duration::from_millis(15);
const QUIET_LOOKS: usize = 20;

/// Reads a window's edge (`read`) once the publisher (`published`: its packet count) has
/// sent nothing for [`QUIET`], so that its last packets had time to reach every viewer.
/// A frame in flight at an edge counts as lost, and one frame of one stream is 0.22% of a
/// 15 s window, more than the 0.1% a W2 step may lose. One stream leaves 33 ms between
/// frames; W1's 64 leave no such gap, and their edge is read after [`QUIET_LOOKS`] looks
/// anyway (a frame of one of 64 streams: 0.003%). `wait` sleeps (a test's does not).
fn at_quiet_moment<T>(
    published: impl Fn() -> u64,
    mut wait: impl FnMut(Duration),
    mut read: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    for _ in 0..QUIET_LOOKS {
        let before = published();
        wait(QUIET);
        if published() != before {
            continue;
        }
        let edge = read()?;
        // A frame that went out while reading may have been counted by half.
        if published() == before {
            return Ok(edge);
        }
    }
    read()
}

/// `streams` of the suite's clip to the servers' ports, until stopped.
fn publish_args(args: &Args, streams: usize) -> PublishArgs {
    PublishArgs {
        target: (LOOPBACK, FIRST_RTP_PORT).into(),
        port_step: 2,
        streams,
        duration: Duration::from_secs(24 * 3600),
        clip: args.clip.clone().map(ClipSource::File),
        gop: crate::publish::DEFAULT_GOP,
        payload_type: 96,
        max_payload: 1200,
    }
}

fn sink_ports(first: u16, viewers: usize) -> anyhow::Result<SinkPorts> {
    let ports = u16::try_from(viewers.max(1)).context("too many viewers for one sink")?;
    let program = SinkProgram::attach_tc_ingress("lo", first, ports)?;
    Ok(SinkPorts { program, ports })
}

/// RTP packets all viewers got between two readings.
fn delivered(before: &Totals, after: &Totals) -> u64 {
    after
        .per_viewer_rtp
        .iter()
        .enumerate()
        .map(|(i, n)| n - before.per_viewer_rtp.get(i).copied().unwrap_or(0))
        .sum()
}

/// Joins `viewers` at `rate` per second, spread over `streams`: how many the server
/// refused as full (503, a worker behind its media; docs/architecture.md, "Handshakes
/// before media"). Any other refusal fails the run.
fn join(
    swarm: &mut Swarm,
    tag: &str,
    viewers: usize,
    streams: usize,
    verifying: usize,
    rate: f64,
) -> anyhow::Result<usize> {
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut refused = 0;
    for i in 0..viewers {
        std::thread::sleep((start + period * i as u32).saturating_duration_since(Instant::now()));
        match swarm.join(i % streams, i < verifying) {
            Ok(_) => {}
            Err(e)
                if e.downcast_ref::<whep::Refused>()
                    .is_some_and(|r| r.status == 503) =>
            {
                refused += 1
            }
            Err(e) => return Err(e),
        }
        if i % 100 == 0 || i + 1 == viewers {
            progress(&format!(
                "{tag}: joining {}/{viewers}, {refused} refused as full",
                i + 1
            ));
        }
    }
    Ok(refused)
}

/// W3: `w3_viewers` present at once, each staying 5-15 s and replaced when it leaves,
/// for `w3_seconds`; the server's RSS and descriptors sampled every 5 s.
fn churn(args: &Args, kind: ServerKind) -> anyhow::Result<Churn> {
    let tag = format!("W3 {kind:?}: churn of {} viewers", args.w3_viewers);
    let server = Server::start(kind, args, 1, &Feed::Rtp)?;
    let publisher = Publisher::start(&publish_args(args, 1))?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_before = idle_cpu(&server, &format!("{tag}: idle before"))?;
    // Viewers count datagrams on their sockets here: sink ports would run out.
    let capacity = args.w3_viewers + (args.w3_seconds * args.w3_viewers as f64 / 5.0) as usize + 16;
    let mut swarm = Swarm::new(server.signaling(), capacity, LOOPBACK, None, None)?;
    let start = Instant::now();
    let mut leaves: Vec<(Instant, usize)> = Vec::new();
    let mut samples = Vec::new();
    let mut next_sample = start;
    let u0 = Usage::read(server.pid())?;
    let t0 = swarm.totals()?;
    let mut failed_joins = 0;
    while start.elapsed().as_secs_f64() < args.w3_seconds {
        let now = Instant::now();
        while leaves.len() < args.w3_viewers {
            if swarm.len() >= capacity {
                break;
            }
            match swarm.join(0, swarm.len() % 50 == 0) {
                Ok(i) => leaves.push((now + Duration::from_millis(fastrand::u64(5000..15000)), i)),
                Err(_) => failed_joins += 1,
            }
        }
        let (gone, stay): (Vec<_>, Vec<_>) = leaves.into_iter().partition(|(at, _)| *at <= now);
        leaves = stay;
        for (_, i) in gone {
            swarm.leave(i)?;
        }
        if now >= next_sample {
            let u = Usage::read(server.pid())?;
            samples.push((start.elapsed().as_secs_f64(), u.rss_kib, u.fds));
            next_sample += Duration::from_secs(5);
            progress(&format!(
                "{tag}: {:.0}/{:.0} s, {} joined, RSS {} KiB, {} fds",
                start.elapsed().as_secs_f64(),
                args.w3_seconds,
                swarm.len(),
                u.rss_kib,
                u.fds
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let u1 = Usage::read(server.pid())?;
    let t1 = swarm.totals()?;
    let joins = swarm.len();
    let window = t1.since(&t0, &[]);
    // Everybody leaves; then nothing may be left behind, and the server idles as before.
    let present: Vec<usize> = swarm.present().collect();
    for i in present {
        swarm.leave(i)?;
    }
    swarm.stop();
    std::thread::sleep(Duration::from_secs(2));
    let idle_after = idle_cpu(&server, &format!("{tag}: idle after"))?;
    let u2 = Usage::read(server.pid())?;
    samples.push((start.elapsed().as_secs_f64(), u2.rss_kib, u2.fds));
    let sessions_left = match &server {
        Server::Relay(relay) => {
            Some(relay.metric("relay_sessions")? + relay.metric("relay_pending_sessions")?)
        }
        Server::Janus(_) => None,
    };
    publisher.stop()?;
    server.stop();
    Ok(Churn {
        idle_cpu_before: Some(idle_before),
        idle_cpu_after: Some(idle_after),
        sessions_left,
        server: kind,
        viewers: args.w3_viewers,
        joins,
        failed: t1.failed + failed_joins,
        samples,
        cpu_percent: (u1.cpu - u0.cpu).as_secs_f64() / u1.at.duration_since(u0.at).as_secs_f64()
            * 100.0,
        loss: window.loss,
    })
}

/// The server's CPU (% of one core) over 5 s.
fn idle_cpu(server: &Server, tag: &str) -> anyhow::Result<f64> {
    let u0 = Usage::read(server.pid())?;
    sleep_with_progress(5.0, |t| format!("{tag}: {t:.0}/5 s"));
    let u1 = Usage::read(server.pid())?;
    Ok((u1.cpu - u0.cpu).as_secs_f64() / u1.at.duration_since(u0.at).as_secs_f64() * 100.0)
}

/// W4: sessions set up at each rate in turn (each leaves 2 s after it joined), until
/// the p99 of offer-to-connected passes 100 ms.
fn setup_rate(args: &Args, kind: ServerKind) -> anyhow::Result<Vec<SetupStep>> {
    // The load tool's first offer seeds its own crypto (aws-lc's entropy pool, tens of
    // ms once per process): made before any measured one, so that W4 run alone does not
    // count it in the first session's setup time.
    drop(Offering::new()?);
    let server = Server::start(kind, args, 1, &Feed::Rtp)?;
    let publisher = Publisher::start(&publish_args(args, 1))?;
    std::thread::sleep(Duration::from_secs(1));
    let mut steps = Vec::new();
    for &rate in &args.w4_rates {
        let tag = format!("W4 {kind:?}: {rate} sessions/s");
        let sessions = (rate * args.w4_step).ceil() as usize;
        let mut swarm = Swarm::new(server.signaling(), sessions, LOOPBACK, None, None)?;
        let u0 = Usage::read(server.pid())?;
        let slow0 = slow_setups(&server)?;
        let start = Instant::now();
        let period = Duration::from_secs_f64(1.0 / rate);
        let mut failed = 0;
        let mut joined: Vec<(Instant, usize)> = Vec::new();
        for i in 0..sessions {
            let due = start + period * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            match swarm.join(0, false) {
                Ok(v) => joined.push((Instant::now(), v)),
                Err(_) => failed += 1,
            }
            while let Some(&(at, v)) = joined.first() {
                if at.elapsed() < Duration::from_secs(2) {
                    break;
                }
                swarm.leave(v)?;
                joined.remove(0);
            }
            if i % 20 == 0 {
                progress(&format!("{tag}: {}/{sessions}", i + 1));
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let u1 = Usage::read(server.pid())?;
        let t = swarm.totals()?;
        for (_, v) in joined {
            swarm.leave(v)?;
        }
        swarm.stop();
        let seconds = u1.at.duration_since(u0.at).as_secs_f64();
        let ms = |q| crate::swarm::percentile(&t.setup_us, q).map(|us| us as f64 / 1000.0);
        let step = SetupStep {
            server: kind,
            rate,
            sessions,
            failed: failed + t.failed + (sessions - failed - t.connected.min(sessions - failed)),
            setup_p50_ms: ms(0.5),
            setup_p99_ms: ms(0.99),
            cpu_percent: (u1.cpu - u0.cpu).as_secs_f64() / seconds * 100.0,
            over_15ms: Some(t.setup_us.iter().filter(|&&us| us > 15_000).count() as u64),
            server_over_15ms: slow_setups(&server)?
                .zip(slow0)
                .map(|(a, b)| a.saturating_sub(b)),
        };
        let over = step.setup_p99_ms.is_none_or(|p99| p99 > 100.0) || step.failed > 0;
        steps.push(step);
        if over {
            break;
        }
    }
    publisher.stop()?;
    server.stop();
    Ok(steps)
}

/// How many viewers the relay has timed so far at over 15 ms from answer to DTLS done
/// (its `relay_viewer_setup_seconds` histogram, all paths). None for Janus.
fn slow_setups(server: &Server) -> anyhow::Result<Option<u64>> {
    let Server::Relay(relay) = server else {
        return Ok(None);
    };
    let count = relay.metric("relay_viewer_setup_seconds_count")?;
    let text = relay.metrics()?;
    let within: f64 = relay_testkit::metrics::samples(&text, "relay_viewer_setup_seconds_bucket")
        .iter()
        .filter(|(labels, _)| labels.contains("le=\"0.015\""))
        .map(|(_, v)| v)
        .sum();
    Ok(Some((count - within) as u64))
}

fn print_summary(r: &Results) {
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|run| {
            vec![
                format!("{:?}", run.workload),
                format!("{:?}", run.server),
                run.streams.to_string(),
                run.viewers.to_string(),
                format!("{:.1}", run.cpu_percent),
                format!("{:.2}", run.us_per_packet),
                format!("{:.3}", run.loss * 100.0),
                format!("{:.1}", run.rss_kib as f64 / 1024.0),
                format!("{:.1}", run.rss_per_viewer_kib),
                run.viewers_window
                    .latency_p99_ms
                    .map_or("-".into(), |ms| format!("{ms:.1}")),
                format!("{:.1}", run.tool_cpu_percent),
            ]
        })
        .collect();
    crate::report::print_table(
        &[
            "workload",
            "server",
            "streams",
            "viewers",
            "CPU %",
            "us/pkt",
            "loss %",
            "RSS MiB",
            "KiB/viewer",
            "latency p99 ms",
            "tool CPU %",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A publisher that sends at the given waits (numbered from 0) and during the given
    /// reads; returns the reads' results (the count each saw) and the waits made.
    fn edge(sends_at_waits: &[usize], sends_during_reads: &[usize]) -> (u64, usize, usize) {
        let (count, waits, reads) = (Cell::new(0u64), Cell::new(0), Cell::new(0));
        let seen = at_quiet_moment(
            || count.get(),
            |d| {
                assert_eq!(d, QUIET);
                if sends_at_waits.contains(&waits.get()) {
                    count.set(count.get() + 9);
                }
                waits.set(waits.get() + 1);
            },
            || {
                let seen = count.get();
                if sends_during_reads.contains(&reads.get()) {
                    count.set(count.get() + 9);
                }
                reads.set(reads.get() + 1);
                Ok(seen)
            },
        )
        .unwrap();
        (seen, waits.get(), reads.get())
    }

    #[test]
    fn an_edge_is_read_after_a_quiet_spell() {
        assert_eq!(edge(&[], &[]), (0, 1, 1), "quiet at once");
        assert_eq!(
            edge(&[0, 1], &[]),
            (18, 3, 1),
            "a frame in each of two waits"
        );
        assert_eq!(
            edge(&[], &[0]),
            (9, 2, 2),
            "a frame sent while reading: read again after a quiet spell"
        );
    }

    #[test]
    fn a_publisher_never_quiet_is_read_anyway() {
        let every: Vec<usize> = (0..QUIET_LOOKS).collect();
        let n = QUIET_LOOKS as u64;
        assert_eq!(edge(&every, &[]), (9 * n, QUIET_LOOKS, 1));
    }
}
