//! The relay under test: its binary in a child process with a config of its own,
//! inside a network namespace or not, through a wrapper command (`setpriv ...`) or not;
//! killed on drop.

use std::io::{BufRead, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use relay::config::Config;

use crate::log::Log;
use crate::netns::Netns;
use crate::tempdir::TempDir;

/// How long the relay has to print its URL once started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a relay expected to refuse its config may run before that counts as failure.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the relay's log that explain a failure.
const LOG_TAIL: usize = 40;

/// How to start the relay: which binary, with what config, where.
pub struct Launch {
    binary: PathBuf,
    /// The config file's text.
    config: String,
    netns: Option<String>,
    wrapper: Vec<String>,
    echo_log: bool,
}

impl Launch {
    /// `binary serve` with `config`.
    pub fn new(binary: impl Into<PathBuf>, config: &Config) -> Launch {
        Launch::yaml(binary, crate::config::to_yaml(config))
    }

    /// `binary serve` with a config file of this text: for values the [`Config`] type
    /// cannot hold, which the relay must refuse.
    pub fn yaml(binary: impl Into<PathBuf>, config: String) -> Launch {
        Launch {
            binary: binary.into(),
            config,
            netns: None,
            wrapper: Vec::new(),
            echo_log: false,
        }
    }

    /// Runs the relay inside `netns` (through `ip netns exec`, which execs it: the
    /// child's PID is the relay's).
    pub fn in_netns(mut self, netns: &Netns) -> Launch {
        self.netns = Some(netns.name.clone());
        self
    }

    /// Runs the relay through `wrapper`, a command that runs the rest of its line
    /// (`setpriv --reuid=65534 ...`).
    pub fn through(mut self, wrapper: &[&str]) -> Launch {
        self.wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        self
    }

    /// Copies the relay's log lines to this process's stderr as they come, after
    /// `[relay] `: a test shows them when it fails.
    pub fn echo_log(mut self) -> Launch {
        self.echo_log = true;
        self
    }

    /// Starts the relay and waits (up to 20 s) for the URL it prints when it serves.
    pub fn start(&self) -> anyhow::Result<RelayProcess> {
        let dir = TempDir::new("config");
        let mut child = self.spawn(&dir, Stdio::piped())?;
        let log = Log::default();
        log.follow(
            child.stderr.take().expect("piped"),
            self.echo_log.then_some("[relay] "),
        );
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
            api: None,
            metrics_http: None,
            log,
            netns: self.netns.clone(),
            config_file: dir.path().join(CONFIG_FILE),
            _dir: dir,
        };
        // "relay: API at http://127.0.0.1:PORT" (with `api`), "relay: metrics at
        // http://127.0.0.1:PORT" (with `metrics`), then
        // "relay: watch 'demo' at http://127.0.0.1:PORT/demo/" for each path.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(wait) else {
                bail!(
                    "{} printed no URL within {START_TIMEOUT:?}; its log:\n{}",
                    self.binary.display(),
                    relay.log_tail()
                );
            };
            let url = line
                .split_once(" at ")
                .with_context(|| format!("unexpected line from the relay: {line}"))?
                .1;
            let origin = crate::http::origin(url.trim()).to_string();
            if line.starts_with("relay: API at ") {
                relay.api = Some(origin);
            } else if line.starts_with("relay: metrics at ") {
                relay.metrics_http = Some(origin);
            } else {
                relay.http = origin;
                return Ok(relay);
            }
        }
    }

    /// Runs the relay expecting it to refuse to start: its exit code and what it wrote
    /// to stderr. An error if it is still running after 10 s.
    pub fn refused(&self) -> anyhow::Result<(Option<i32>, String)> {
        let dir = TempDir::new("config");
        let mut child = self.spawn(&dir, Stdio::null())?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > REFUSE_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the relay still ran {REFUSE_TIMEOUT:?} after starting with:\n{}",
                    self.config
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)?;
        Ok((status.code(), stderr))
    }

    /// `binary serve --config FILE` with the config written into `dir`, inside the
    /// namespace and through the wrapper if any, its stderr piped. The config's
    /// `logLevel` decides what the relay logs, whatever RUST_LOG says here (tests read
    /// its info lines).
    fn spawn(&self, dir: &TempDir, stdout: Stdio) -> anyhow::Result<Child> {
        let file = dir.path().join(CONFIG_FILE);
        std::fs::write(&file, &self.config)
            .with_context(|| format!("writing {}", file.display()))?;
        let mut line: Vec<&str> = match &self.netns {
            Some(netns) => vec!["ip", "netns", "exec", netns],
            None => Vec::new(),
        };
        line.extend(self.wrapper.iter().map(String::as_str));
        let mut command = match line.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .args(["serve", "--config"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))
    }
}

/// The config file's name, in the relay's temporary folder.
const CONFIG_FILE: &str = "relay.yml";

/// A running relay, killed (SIGKILL) on drop.
pub struct RelayProcess {
    child: Child,
    /// `http://IP:PORT`, where it serves WHEP and WHIP.
    pub http: String,
    /// `http://IP:PORT` of the control API, when `api` is on.
    pub api: Option<String>,
    /// `http://IP:PORT` of the metrics, when `metrics` is on.
    metrics_http: Option<String>,
    log: Log,
    /// The network namespace it runs in, if not this process's.
    netns: Option<String>,
    /// The config file it runs from, in `_dir`.
    config_file: PathBuf,
    _dir: TempDir,
}

impl RelayProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a supervisor stopping the relay) and waits up to `limit` for the
    /// relay to exit; an error if it is still running then.
    pub fn terminate(&mut self, limit: std::time::Duration) -> anyhow::Result<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        anyhow::ensure!(sent == 0, "kill: {}", std::io::Error::last_os_error());
        let end = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                std::time::Instant::now() < end,
                "still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the relay with SIGKILL (no destructor, no signal handler runs) and reaps
    /// it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// Replaces the relay's config file with `config`, as an editor saves: a new file
    /// renamed over the old one. The relay reloads it within about a second.
    pub fn rewrite_config(&self, config: &Config) -> std::io::Result<()> {
        self.rewrite_config_yaml(&crate::config::to_yaml(config))
    }

    /// [`RelayProcess::rewrite_config`] with a file of this text.
    pub fn rewrite_config_yaml(&self, text: &str) -> std::io::Result<()> {
        let new = self.config_file.with_extension("yml.new");
        std::fs::write(&new, text)?;
        std::fs::rename(&new, &self.config_file)
    }

    /// Sends SIGHUP: the relay reloads its config file.
    pub fn hangup(&self) -> std::io::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        match unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Every line the relay logged so far, without terminal colours.
    pub fn log(&self) -> Vec<String> {
        self.log.lines()
    }

    /// Whether the relay logs a line containing `needle` within a few seconds: its log
    /// arrives through a pipe, after the answer that a test may have read already.
    pub fn logs_eventually(&self, needle: &str) -> bool {
        crate::wait::eventually(Duration::from_secs(5), || {
            self.log().iter().any(|l| l.contains(needle))
        })
    }

    /// The last lines the relay logged, to explain a failure.
    pub fn log_tail(&self) -> String {
        self.log.tail(LOG_TAIL)
    }

    /// The worker that took session `id` live, from its `viewer live` log line.
    pub fn worker_of(&self, id: &str) -> Option<usize> {
        let session = format!("session={id} ");
        self.log()
            .iter()
            .filter(|l| l.contains("viewer live") && l.contains(&session))
            .find_map(|l| log_field(l, "worker")?.parse().ok())
    }

    /// Where the relay serves its metrics; an error if it does not.
    pub fn metrics_http(&self) -> anyhow::Result<&str> {
        self.metrics_http
            .as_deref()
            .context("the relay serves no metrics: start it with metrics: yes")
    }

    /// The Prometheus text, fetched from inside the relay's namespace.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let http = self.metrics_http()?;
        match &self.netns {
            Some(netns) => crate::netns::within(netns, || crate::metrics::fetch(http)),
            None => crate::metrics::fetch(http),
        }
    }

    /// The sum of the samples of a metric (see [`crate::metrics`] for selectors); an
    /// error if the relay has no such metric.
    pub fn metric(&self, selector: &str) -> anyhow::Result<f64> {
        crate::metrics::exported(&self.metrics()?, selector)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name=value` in a tracing log line.
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}
