//! What a `relay-bench suite` run found: its JSON (`--json`), which `suite` writes and
//! `suite_docs` renders into docs/benchmarks.md.

use serde::{Deserialize, Serialize};

use crate::report::Host;
use crate::swarm::Window;
use crate::xdp_egress;

/// A run whose viewers lose more than this did not keep up (W2's criterion).
pub const KEEPS_UP_LOSS: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    W1,
    /// W1 over RTSP: the 64 streams served by one RTSP server, which the servers pull.
    W1r,
    W2,
    W3,
    W4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Relay,
    Janus,
}

/// One measured run: a server, a workload, a load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub workload: Workload,
    pub server: ServerKind,
    pub streams: usize,
    pub viewers: usize,
    pub seconds: f64,
    /// Server CPU (user + system), % of one core.
    pub cpu_percent: f64,
    /// Server CPU per packet delivered to a viewer, microseconds.
    pub us_per_packet: f64,
    pub delivered_pps: f64,
    /// Packets the publisher sent to the server per second (all streams).
    pub published_pps: f64,
    /// Delivered against published times viewers per stream, as a fraction lost.
    pub loss: f64,
    pub rss_kib: u64,
    /// RSS over the server's RSS with no viewers, per viewer.
    pub rss_per_viewer_kib: f64,
    /// Viewers the server refused as full (503) while they joined; `viewers` counts them,
    /// the measurements do not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: usize,
    pub fds: usize,
    pub viewers_window: Window,
    /// The tool (publisher, viewers, readings), % of one core.
    pub tool_cpu_percent: f64,
    pub publisher_cpu_percent: f64,
    /// W1R: how the server pulled the RTSP streams (`tcp`: interleaved in the RTSP
    /// connection, `udp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_transport: Option<RtspTransport>,
    /// W1R: the RTSP server process's CPU (user + system) over the window, % of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_server_cpu_percent: Option<f64>,
    /// W1R: the RTSP server's RSS at the window's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_server_rss_kib: Option<u64>,
}

/// How a server pulls RTSP: RTP interleaved in the RTSP connection, or over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    Tcp,
    Udp,
}

impl std::fmt::Display for RtspTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        })
    }
}

impl Run {
    /// The viewers lost no more than W2 allows and none failed.
    pub fn kept_up(&self) -> bool {
        self.loss <= KEEPS_UP_LOSS && self.viewers_window.failed == 0
    }
}

/// W3: the server's RSS and open descriptors over a churn run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Churn {
    pub server: ServerKind,
    pub viewers: usize,
    pub joins: usize,
    pub failed: usize,
    /// (seconds, RSS KiB, open fds)
    pub samples: Vec<(f64, u64, usize)>,
    pub cpu_percent: f64,
    pub loss: f64,
    /// The server's CPU (% of a core) over 5 s with the stream and no viewer, before
    /// the churn and after every viewer left.
    #[serde(default)]
    pub idle_cpu_before: Option<f64>,
    #[serde(default)]
    pub idle_cpu_after: Option<f64>,
    /// The relay's sessions, live and pending, after every viewer left (its metrics).
    #[serde(default)]
    pub sessions_left: Option<f64>,
}

/// W4: setup times at one join rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupStep {
    pub server: ServerKind,
    pub rate: f64,
    pub sessions: usize,
    pub failed: usize,
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    pub cpu_percent: f64,
    /// Sessions the tool saw take over 15 ms (W4's target for the p99); None in runs
    /// from before it was counted.
    #[serde(default)]
    pub over_15ms: Option<u64>,
    /// The relay's own count of this step's sessions whose setup (answer to DTLS done,
    /// `relay_viewer_setup_seconds`) took over 15 ms: slow sessions the tool saw and
    /// the relay did not waited in the tool. None for Janus.
    #[serde(default)]
    pub server_over_15ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    /// The command line of the run.
    pub command: String,
    pub host: Host,
    pub started_unix: u64,
    pub runs: Vec<Run>,
    pub churn: Vec<Churn>,
    pub setup: Vec<SetupStep>,
    /// Runs that could not be measured (viewers that never connected), and why.
    pub unmeasured: Vec<String>,
    /// The relay in XDP mode and in portable mode on a veth pair (`xdp_egress`).
    #[serde(default)]
    pub xdp: Vec<xdp_egress::Run>,
    #[serde(default)]
    pub xdp_ratios: Vec<xdp_egress::Ratio>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
