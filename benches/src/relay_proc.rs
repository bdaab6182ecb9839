//! The relay under test: its binary in a child process with a config of its own
//! (loopback only, ports the kernel picks; or inside a network namespace of the tool's),
//! killed on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::netns::Netns;

/// Lines of the relay's stderr kept to explain a failure.
const LOG_TAIL: usize = 40;
/// The path every viewer watches.
pub const PATH: &str = "demo";

pub struct RelayProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub http: String,
    dir: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// The relay's config for a benchmark: the demo clip at `demo`, everything on
/// 127.0.0.1 with kernel-chosen ports, no interface addresses advertised.
pub fn config(workers: usize) -> String {
    format!("{}  {PATH}:\n    source: demo\n", loopback(workers))
}

/// The loopback config with one path per `(name, port, rtpSDP)`, fed by RTP pushed to
/// `udp+rtp://127.0.0.1:port` (what `relay-bench publish` sends).
pub fn rtp_push_config(workers: usize, paths: &[(&str, u16, String)]) -> String {
    let mut config = loopback(workers);
    for (name, port, sdp) in paths {
        // A JSON string is a YAML double-quoted scalar: the SDP's CR LF survive.
        let sdp = serde_json::to_string(sdp).expect("a string serializes");
        config.push_str(&format!(
            "  {name}:\n    source: udp+rtp://127.0.0.1:{port}\n    rtpSDP: {sdp}\n"
        ));
    }
    config
}

/// Everything on 127.0.0.1 with kernel-chosen ports, up to the paths' entries.
fn loopback(workers: usize) -> String {
    format!(
        "logLevel: warn\n\
         webrtcAddress: 127.0.0.1:0\n\
         webrtcLocalUDPAddress: 127.0.0.1:0\n\
         webrtcIPsFromInterfaces: false\n\
         workers: {workers}\n\
         paths:\n"
    )
}

/// The relay's config for an XDP benchmark in a network namespace: the demo clip at
/// `demo`, HTTP on `ip` with a kernel-chosen port, media on `ip:media_port`; with
/// `xdp_interface`, XDP mode on it (one worker per RX queue), else portable mode with
/// `workers` UDP sockets.
pub fn netns_config(
    ip: IpAddr,
    media_port: u16,
    workers: usize,
    xdp_interface: Option<&str>,
) -> String {
    let xdp = xdp_interface.map_or(String::new(), |i| format!("xdpInterface: {i}\n"));
    format!(
        "logLevel: warn\n\
         webrtcAddress: {ip}:0\n\
         webrtcLocalUDPAddress: {ip}:{media_port}\n\
         webrtcIPsFromInterfaces: false\n\
         workers: {workers}\n\
         {xdp}\
         paths:\n  {PATH}:\n    source: demo\n"
    )
}

impl RelayProcess {
    /// Starts `binary serve` with the loopback config for `workers`, and waits (up to
    /// 20 s) for the URL it prints.
    pub fn start(binary: &Path, workers: usize) -> anyhow::Result<RelayProcess> {
        RelayProcess::launch(binary, &config(workers), None)
    }

    /// Starts `binary serve` with `config`, inside network namespace `netns` if given
    /// (through `ip netns exec`, which execs the relay: the child's PID is the relay's).
    pub fn launch(
        binary: &Path,
        config: &str,
        netns: Option<&Netns>,
    ) -> anyhow::Result<RelayProcess> {
        let dir = std::env::temp_dir().join(format!(
            "relay-bench-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("relay.yml");
        std::fs::write(&config_path, config)?;
        let mut command = match netns {
            Some(netns) => netns.command(binary),
            None => Command::new(binary),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        let tail = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut tail = tail.lock().unwrap();
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut relay = RelayProcess {
            child,
            http: String::new(),
            dir,
            log,
        };
        // "relay: watch 'demo' at http://127.0.0.1:PORT/demo/"
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => bail!(
                "{} printed no URL within 20 s; its log:\n{}",
                binary.display(),
                relay.log_tail()
            ),
        };
        let url = line
            .split(" at ")
            .nth(1)
            .with_context(|| format!("unexpected first line from the relay: {line}"))?;
        let base = url.trim().trim_end_matches('/');
        relay.http = base
            .rsplit_once('/')
            .map(|(origin, _)| origin.to_string())
            .with_context(|| format!("unexpected URL {url}"))?;
        Ok(relay)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the relay logged.
    pub fn log_tail(&self) -> String {
        let tail = self.log.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// POSTs a WHEP offer for the demo path; returns the SDP answer.
    pub fn whep(&self, offer: &str) -> anyhow::Result<String> {
        let mut resp = ureq::post(&format!("{}/{PATH}/whep", self.http))
            .header("Content-Type", "application/sdp")
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .send(offer)?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        if status != 201 {
            bail!("WHEP offer refused with HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// Sum of a Prometheus metric's samples over all label sets, from /metrics.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(sum_metric(&self.metrics()?, name))
    }

    /// The relay's /metrics page (Prometheus text format).
    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(ureq::get(&format!("{}/metrics", self.http))
            .call()?
            .body_mut()
            .read_to_string()?)
    }

    /// Kills the relay (SIGKILL to its PID) and waits for it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sum of the samples of metric `name` in Prometheus text format.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The samples of metric `name`: (the label set as written between the braces, value).
pub fn metric_samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_by_exact_name() {
        let text = "# HELP relay_send_calls Send syscalls.\n\
                    relay_send_calls_total{worker=\"0\"} 10\n\
                    relay_send_calls_total{worker=\"1\"} 5\n\
                    relay_send_calls_total_other 99\n\
                    relay_sessions 3\n";
        assert_eq!(sum_metric(text, "relay_send_calls_total"), 15.0);
        assert_eq!(sum_metric(text, "relay_sessions"), 3.0);
        assert_eq!(sum_metric(text, "relay_missing"), 0.0);
    }

    #[test]
    fn metric_samples_keep_their_labels() {
        let text = "# TYPE relay_xdp_packets counter\n\
                    relay_xdp_packets_total{action=\"dropped\",reason=\"unknown_source\"} 42\n\
                    relay_xdp_packets_total{action=\"passed\",reason=\"not_ours\"} 7\n\
                    relay_xdp_packets_total_other 1\n\
                    relay_sessions 3\n";
        assert_eq!(
            metric_samples(text, "relay_xdp_packets_total"),
            vec![
                (
                    "action=\"dropped\",reason=\"unknown_source\"".to_string(),
                    42.0
                ),
                ("action=\"passed\",reason=\"not_ours\"".to_string(), 7.0),
            ]
        );
        assert_eq!(
            metric_samples(text, "relay_sessions"),
            vec![(String::new(), 3.0)]
        );
    }

    /// The netns config loads, puts HTTP and media on the given address, and asks for
    /// XDP only when given an interface.
    #[test]
    fn netns_config_loads_in_both_modes() {
        let ip: IpAddr = "10.79.0.1".parse().unwrap();
        for xdp in [None, Some("rb-relay")] {
            let path = std::env::temp_dir().join(format!(
                "relay-bench-netns-config-{}-{}",
                std::process::id(),
                xdp.is_some()
            ));
            std::fs::write(&path, netns_config(ip, 8189, 2, xdp)).unwrap();
            let loaded = relay::config::Config::load(&path);
            std::fs::remove_file(&path).unwrap();
            let c = loaded.unwrap();
            assert_eq!(c.webrtc_address, "10.79.0.1:0".parse().unwrap());
            assert_eq!(c.webrtc_local_udp_address, "10.79.0.1:8189".parse().unwrap());
            assert_eq!(c.xdp_interface.as_deref(), xdp);
            assert_eq!(c.workers, 2);
            assert!(c.paths.contains_key(PATH), "serves the demo path");
        }
    }

    /// The relay's own loader takes the RTP push config: one path per port, its SDP intact.
    #[test]
    fn rtp_push_config_loads() {
        let sdp = crate::publish::sdp(96, 5004);
        let path = std::env::temp_dir().join(format!("relay-bench-push-{}", std::process::id()));
        std::fs::write(
            &path,
            rtp_push_config(
                1,
                &[("cam0", 5004, sdp.clone()), ("cam1", 5006, sdp.clone())],
            ),
        )
        .unwrap();
        let loaded = relay::config::Config::load(&path);
        std::fs::remove_file(&path).unwrap();
        let c = loaded.unwrap();
        assert_eq!(c.webrtc_address, "127.0.0.1:0".parse().unwrap());
        for (name, port) in [("cam0", 5004), ("cam1", 5006)] {
            let source = &c.paths[name].source;
            assert_eq!(source.to_string(), format!("udp+rtp://127.0.0.1:{port}"));
            assert_eq!(source.rtp_sdp(), Some(sdp.as_str()));
        }
    }

    /// The relay's own loader takes the config, and it binds nothing but loopback.
    #[test]
    fn config_is_loopback_only() {
        let path = std::env::temp_dir().join(format!("relay-bench-config-{}", std::process::id()));
        std::fs::write(&path, config(3)).unwrap();
        let loaded = relay::config::Config::load(&path);
        std::fs::remove_file(&path).unwrap();
        let c = loaded.unwrap();
        assert_eq!(c.webrtc_address, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.webrtc_local_udp_address, "127.0.0.1:0".parse().unwrap());
        assert!(!c.webrtc_ips_from_interfaces);
        assert_eq!(c.workers, 3);
        assert!(c.paths.contains_key(PATH), "serves the demo path");
    }
}
