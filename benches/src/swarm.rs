//! A swarm of viewers against any WHEP server: joins them at a pace, keeps them all on
//! one driver thread (`sink`), lets them leave, and sums what they got.
//!
//! Verifying viewers decrypt and check every packet (`verify`); sink viewers count
//! datagrams by size on their sockets, or, with the sink program on the swarm's
//! interface, do not even see them (the program counts them per port and drops them).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use relay_testkit::{http, whep};

use crate::report::growth;
use crate::sink::{quantile, Counters, Driver, Offering, Sink, LATENCY_BUCKET_US};
use crate::sink_program::SinkProgram;

/// How long one signalling request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where viewers get their sessions.
#[derive(Debug, Clone)]
pub enum Signaling {
    /// WHEP: the viewer offers. `{stream}` in the URL becomes the stream's number.
    Whep(String),
    /// Janus's streaming plugin over its HTTP API (`http://HOST:PORT/janus`): Janus
    /// offers; stream i is mountpoint i + 1.
    Janus(String),
}

/// Where sink viewers bind, so that the sink program counts their media.
pub struct SinkPorts {
    pub program: SinkProgram,
    pub ports: u16,
}

pub struct Swarm {
    driver: Driver,
    signaling: Signaling,
    agent: ureq::Agent,
    local_ip: IpAddr,
    sink_ports: Option<SinkPorts>,
    viewers: Vec<Viewer>,
}

struct Viewer {
    /// The session's resource (WHEP `Location`, Janus session URL), for leaving.
    resource: Option<String>,
    /// Sink viewers: the port of the sink program's range it is bound to.
    sink_slot: Option<u16>,
    left: bool,
}

impl Swarm {
    /// A swarm of up to `capacity` viewers (those who left count), its driver thread
    /// pinned to `core` if given; viewers bind to `local_ip`.
    pub fn new(
        signaling: Signaling,
        capacity: usize,
        local_ip: IpAddr,
        sink_ports: Option<SinkPorts>,
        core: Option<usize>,
    ) -> anyhow::Result<Swarm> {
        let agent = http::agent(HTTP_TIMEOUT);
        Ok(Swarm {
            driver: Driver::start(capacity, core)?,
            signaling,
            agent,
            local_ip,
            sink_ports,
            viewers: Vec::with_capacity(capacity),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.driver.counters
    }

    pub fn len(&self) -> usize {
        self.viewers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.viewers.is_empty()
    }

    /// Viewers that joined and have not left.
    pub fn present(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.viewers.len()).filter(|&i| !self.viewers[i].left)
    }

    /// A new viewer of `stream`; a `verify`ing one decrypts and checks its media. Returns
    /// its number once the server answered (ICE and DTLS go on in the driver).
    pub fn join(&mut self, stream: usize, verify: bool) -> anyhow::Result<usize> {
        let index = self.viewers.len();
        let sink_slot = match &self.sink_ports {
            Some(s) if !verify => {
                let used = self
                    .viewers
                    .iter()
                    .filter(|v| v.sink_slot.is_some())
                    .count();
                if used >= usize::from(s.ports) {
                    bail!("all {} sink ports are taken", s.ports);
                }
                Some(used as u16)
            }
            _ => None,
        };
        let port = match (&self.sink_ports, sink_slot) {
            (Some(s), Some(slot)) => s.program.first_port() + slot,
            _ => 0,
        };
        let local = SocketAddr::new(self.local_ip, port);
        let (sink, resource) = match &self.signaling {
            Signaling::Whep(url) => {
                let url = url.replace("{stream}", &stream.to_string());
                let offering = Offering::bind(local, verify)
                    .with_context(|| format!("viewer {index}: binding {local}"))?;
                let (answer, resource) = whep::answer(&self.agent, &url, offering.sdp())
                    .with_context(|| format!("viewer {index}"))?;
                (offering.accept(&answer)?, resource)
            }
            Signaling::Janus(http) => {
                let mountpoint = stream as u64 + 1;
                let (sink, session) =
                    crate::janus::janus_viewer(&self.agent, http, mountpoint, local, verify)
                        .with_context(|| {
                            format!("viewer {index}: Janus mountpoint {mountpoint}")
                        })?;
                (sink, Some(session))
            }
        };
        self.add(sink, resource, sink_slot);
        Ok(index)
    }

    fn add(&mut self, sink: Sink, resource: Option<String>, sink_slot: Option<u16>) {
        self.driver.add(sink);
        self.viewers.push(Viewer {
            resource,
            sink_slot,
            left: false,
        });
    }

    /// Viewer `index` leaves: the server is told (WHEP `DELETE`, Janus `destroy`), its
    /// socket closes.
    pub fn leave(&mut self, index: usize) -> anyhow::Result<()> {
        let viewer = &mut self.viewers[index];
        if std::mem::replace(&mut viewer.left, true) {
            return Ok(());
        }
        self.driver.remove(index);
        let Some(resource) = viewer.resource.take() else {
            return Ok(());
        };
        match self.signaling {
            Signaling::Whep(_) => {
                let status = whep::delete(&self.agent, &resource)?;
                if !(200..300).contains(&status) {
                    bail!("DELETE {resource}: HTTP {status}");
                }
                Ok(())
            }
            Signaling::Janus(_) => crate::janus::leave(&self.agent, &resource),
        }
    }

    /// Everything the viewers got so far.
    pub fn totals(&self) -> anyhow::Result<Totals> {
        let c = self.counters();
        let sum = |f: &dyn Fn(&crate::sink::SinkCounters) -> u64| -> u64 {
            c.sinks[..self.viewers.len()].iter().map(f).sum()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut per_viewer_rtp: Vec<u64> = c.sinks[..self.viewers.len()]
            .iter()
            .map(|s| load(&s.rtp))
            .collect();
        if let Some(s) = &self.sink_ports {
            let counts = s.program.counts(usize::from(s.ports))?;
            for (viewer, count) in self.viewers.iter().zip(&mut per_viewer_rtp) {
                if let Some(slot) = viewer.sink_slot {
                    *count += counts[usize::from(slot)].rtp;
                }
            }
        }
        let micros = |f: &dyn Fn(&crate::sink::SinkCounters) -> u64| -> Vec<u64> {
            c.sinks[..self.viewers.len()]
                .iter()
                .map(f)
                .filter(|&us| us > 0)
                .collect()
        };
        Ok(Totals {
            at: Instant::now(),
            connected: c.sinks[..self.viewers.len()]
                .iter()
                .filter(|s| s.connected.load(Ordering::Relaxed))
                .count(),
            failed: c.sinks[..self.viewers.len()]
                .iter()
                .filter(|s| s.failed.load(Ordering::Relaxed))
                .count(),
            per_viewer_rtp,
            decrypted: sum(&|s| load(&s.decrypted)),
            gaps: sum(&|s| load(&s.gaps)),
            disorder: sum(&|s| load(&s.disorder)),
            malformed: sum(&|s| load(&s.malformed)),
            frames_missing: sum(&|s| load(&s.frames_missing)),
            setup_us: micros(&|s| load(&s.connected_us)),
            first_keyframe_us: micros(&|s| load(&s.first_keyframe_us)),
            latency: c.latency_histogram(),
        })
    }

    /// Stops the driver; every socket closes. The server's sessions end by consent
    /// timeout unless they left before.
    pub fn stop(self) {
        self.driver.stop();
    }
}

/// What the viewers got up to a moment; two of them give a window.
#[derive(Debug, Clone)]
pub struct Totals {
    pub at: Instant,
    pub connected: usize,
    pub failed: usize,
    /// RTP datagrams per viewer (socket counts plus the sink program's).
    pub per_viewer_rtp: Vec<u64>,
    pub decrypted: u64,
    pub gaps: u64,
    pub disorder: u64,
    pub malformed: u64,
    pub frames_missing: u64,
    /// Offer to ICE and DTLS complete, per connected viewer.
    pub setup_us: Vec<u64>,
    /// Offer to the first whole keyframe, per verifying viewer that got one.
    pub first_keyframe_us: Vec<u64>,
    pub latency: Vec<u64>,
}

/// A window between two `Totals`, as the tools print it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    pub viewers: usize,
    pub connected: usize,
    pub failed: usize,
    /// RTP datagrams per second, all viewers together.
    pub rtp_per_s: f64,
    /// Least and most RTP datagrams per second of one viewer.
    pub viewer_pps_min: f64,
    pub viewer_pps_max: f64,
    /// Verifying viewers: packets decrypted, and lost (sequence gaps) as a fraction.
    pub decrypted: u64,
    pub loss: f64,
    pub disorder: u64,
    pub malformed: u64,
    pub frames_missing: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Over every viewer so far (not only the window).
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    pub first_keyframe_p50_ms: Option<f64>,
    pub first_keyframe_p99_ms: Option<f64>,
}

impl Totals {
    /// What happened between `before` and `self`, for `viewers` viewers present.
    pub fn since(&self, before: &Totals, viewers: &[usize]) -> Window {
        let seconds = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let pps: Vec<f64> = viewers
            .iter()
            .map(|&i| {
                let was = before.per_viewer_rtp.get(i).copied().unwrap_or(0);
                self.per_viewer_rtp[i].saturating_sub(was) as f64 / seconds
            })
            .collect();
        let decrypted = self.decrypted - before.decrypted;
        let gaps = self.gaps - before.gaps;
        let latency = growth(&self.latency, &before.latency);
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        let lat = |q| ms(quantile(&latency, LATENCY_BUCKET_US, q));
        Window {
            seconds,
            viewers: viewers.len(),
            connected: self.connected,
            failed: self.failed,
            rtp_per_s: pps.iter().sum(),
            viewer_pps_min: pps.iter().copied().fold(f64::INFINITY, f64::min).min(1e12),
            viewer_pps_max: pps.iter().copied().fold(0.0, f64::max),
            decrypted,
            loss: if decrypted + gaps == 0 {
                0.0
            } else {
                gaps as f64 / (decrypted + gaps) as f64
            },
            disorder: self.disorder - before.disorder,
            malformed: self.malformed - before.malformed,
            frames_missing: self.frames_missing - before.frames_missing,
            latency_p50_ms: lat(0.5),
            latency_p99_ms: lat(0.99),
            latency_max_ms: lat(1.0),
            setup_p50_ms: ms(percentile(&self.setup_us, 0.5)),
            setup_p99_ms: ms(percentile(&self.setup_us, 0.99)),
            first_keyframe_p50_ms: ms(percentile(&self.first_keyframe_us, 0.5)),
            first_keyframe_p99_ms: ms(percentile(&self.first_keyframe_us, 0.99)),
        }
    }
}

/// The value at quantile `q` of unsorted samples (nearest rank).
pub fn percentile(samples: &[u64], q: f64) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// `relay-bench swarm`: viewers against any WHEP server.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The WHEP endpoint; `{stream}` in it becomes the stream number (0..streams), so
    /// `http://127.0.0.1:8889/cam{stream}/whep` spreads viewers over paths cam0, cam1...
    #[arg(long)]
    pub whep: String,
    /// Streams the viewers are spread over, round robin.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    #[arg(long, default_value_t = 10)]
    pub viewers: usize,
    /// verify: every viewer decrypts and checks every packet (str0m; costs the tool
    /// CPU). sink: viewers count datagrams without decrypting, and `--full` of them
    /// verify.
    #[arg(long, value_enum, default_value_t = Mode::Verify)]
    pub mode: Mode,
    /// Sink mode: verifying viewers among them.
    #[arg(long, default_value_t = 2)]
    pub full: usize,
    /// Sink mode: attach the sink program (XDP, or tc with `--sink-tc`) to this
    /// interface (the one the viewers' media arrives on) so that media never reaches
    /// their sockets. Needs root and a relay-bench built with the eBPF toolchain
    /// (`cargo xtask setup`).
    #[arg(long)]
    pub sink_interface: Option<String>,
    /// With `--sink-interface`: count at the interface's tc ingress instead of with XDP,
    /// e.g. for `lo`, which has no native XDP and passes a UDP GSO batch whole (XDP
    /// would count it as one datagram).
    #[arg(long)]
    pub sink_tc: bool,
    /// With `--sink-interface`: sink viewers bind ports from this one up.
    #[arg(long, default_value_t = 20_000)]
    pub sink_first_port: u16,
    /// New sessions per second while joining.
    #[arg(long, default_value_t = 50.0)]
    pub join_rate: f64,
    /// Seconds to wait, once all joined, before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Address the viewers bind to (and offer as their candidate).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Verify,
    Sink,
}

/// What `relay-bench swarm` prints as its JSON line.
#[derive(Debug, Serialize)]
pub struct Report {
    pub host: crate::report::Host,
    pub whep: String,
    pub joined: usize,
    pub join_seconds: f64,
    pub window: Window,
    /// This tool (str0m clients, driver), % of one core over the window.
    pub tool_cpu_percent: f64,
}

pub fn main(args: &Args) -> anyhow::Result<()> {
    use crate::report::{progress, progress_done, sleep_with_progress};
    let sink_ports = match (&args.sink_interface, args.mode) {
        (Some(interface), Mode::Sink) => {
            let ports = u16::try_from(args.viewers).context("at most 65535 sink viewers")?;
            let (first, interface) = (args.sink_first_port, interface.as_str());
            let program = match args.sink_tc {
                true => SinkProgram::attach_tc_ingress(interface, first, ports)?,
                false => SinkProgram::attach(interface, first, ports)?,
            };
            Some(SinkPorts { program, ports })
        }
        (Some(_), Mode::Verify) => bail!("--sink-interface needs --mode sink"),
        (None, _) => None,
    };
    let mut swarm = Swarm::new(
        Signaling::Whep(args.whep.clone()),
        args.viewers,
        args.bind,
        sink_ports,
        None,
    )?;
    let verifying = match args.mode {
        Mode::Verify => args.viewers,
        Mode::Sink => args.full.min(args.viewers),
    };
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.join_rate.max(0.01));
    let mut shown = Instant::now();
    for i in 0..args.viewers {
        let due = start + period * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        swarm.join(i % args.streams.max(1), i < verifying)?;
        if shown.elapsed() >= Duration::from_secs(1) || i + 1 == args.viewers {
            shown = Instant::now();
            let t = swarm.totals()?;
            progress(&format!(
                "joining {}/{}: {} connected, {} failed",
                i + 1,
                args.viewers,
                t.connected,
                t.failed
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = swarm.totals()?;
        if t.connected + t.failed >= args.viewers {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} viewers connected after 30 s",
                t.connected,
                args.viewers
            );
        }
        progress(&format!("connecting: {}/{}", t.connected, args.viewers));
        std::thread::sleep(Duration::from_millis(250));
    }
    let join_seconds = start.elapsed().as_secs_f64();
    sleep_with_progress(args.warmup, |s| format!("warming up {s:.0} s"));
    let present: Vec<usize> = swarm.present().collect();
    let (before, cpu_before) = (swarm.totals()?, crate::procfs::own_cpu());
    let mut last = before.clone();
    sleep_with_progress(args.duration, |elapsed| {
        let Ok(now) = swarm.totals() else {
            return String::new();
        };
        let w = now.since(&last, &present);
        last = now;
        format!(
            "measuring {elapsed:.0}/{:.0} s: {:.0} pkt/s, loss {:.3}%, latency p99 {}",
            args.duration,
            w.rtp_per_s,
            w.loss * 100.0,
            w.latency_p99_ms
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
        )
    });
    let after = swarm.totals()?;
    let cpu = crate::procfs::own_cpu().saturating_sub(cpu_before);
    let window = after.since(&before, &present);
    progress_done();
    swarm.stop();
    let report = Report {
        host: crate::report::host(),
        whep: args.whep.clone(),
        joined: args.viewers,
        join_seconds,
        tool_cpu_percent: cpu.as_secs_f64() / window.seconds * 100.0,
        window,
    };
    print_summary(&report);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn print_summary(r: &Report) {
    let w = &r.window;
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    crate::report::print_table(
        &[
            "viewers",
            "connected",
            "failed",
            "pkt/s",
            "per viewer",
            "loss %",
            "malformed",
            "latency p50/p99 ms",
            "setup p50/p99 ms",
            "first keyframe p50/p99 ms",
            "tool CPU %",
        ],
        &[vec![
            w.viewers.to_string(),
            w.connected.to_string(),
            w.failed.to_string(),
            format!("{:.0}", w.rtp_per_s),
            format!("{:.0}-{:.0}", w.viewer_pps_min, w.viewer_pps_max),
            format!("{:.3}", w.loss * 100.0),
            w.malformed.to_string(),
            format!("{}/{}", ms(w.latency_p50_ms), ms(w.latency_p99_ms)),
            format!("{}/{}", ms(w.setup_p50_ms), ms(w.setup_p99_ms)),
            format!(
                "{}/{}",
                ms(w.first_keyframe_p50_ms),
                ms(w.first_keyframe_p99_ms)
            ),
            format!("{:.1}", r.tool_cpu_percent),
        ]],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[5], 0.99), Some(5));
        let samples: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&samples, 0.5), Some(50));
        assert_eq!(percentile(&samples, 0.99), Some(99));
        assert_eq!(percentile(&samples, 1.0), Some(100));
    }
}
