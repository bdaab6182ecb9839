//! `cargo xtask xdp-demo`: the relay in XDP mode, on a veth pair every Linux host can
//! make. A network namespace of its own holds the relay and one end of the pair (XDP
//! and the AF_XDP sockets on it); the other end stays in this namespace, so a browser
//! here watches through the whole XDP path. Everything it makes goes when it ends.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const NETNS: &str = "relay-xdp-demo";
/// This namespace's end of the veth pair, and the relay's.
const HOST_IF: &str = "xdpdemo0";
const RELAY_IF: &str = "xdpdemo1";
/// A /30 only the demo uses: the relay's end .1, this namespace's .2.
const SUBNET: &str = "10.78.0.0/30";
const RELAY_IP: &str = "10.78.0.1";
const HOST_IP: &str = "10.78.0.2";
const HTTP_PORT: u16 = 8889;
/// MediaMTX's metrics port, on the namespace's loopback: MediaMTX's default users let
/// only this host scrape.
const METRICS: &str = "127.0.0.1:9998";

/// Fails unless this process may make namespaces and load XDP programs; before the
/// build, so that a user without root learns it at once.
pub fn check_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "xdp-demo makes a network namespace and a veth pair and attaches an XDP program: \
             run it as root (sudo -E cargo xtask xdp-demo)"
        );
    }
    Ok(())
}

/// Runs the built relay at `relay` (with `args` after `serve --config ...`) in the
/// demo namespace until Ctrl-C (SIGINT), SIGTERM or SIGHUP, or until it exits; then
/// removes the namespace and the veth pair. Its exit code, or success when stopped.
pub fn run(relay: &Path, args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let stop = stop.clone();
        // SAFETY: the action only stores into an atomic, which is async-signal-safe.
        unsafe {
            signal_hook_registry::register(signal, move || stop.store(true, Ordering::SeqCst))
        }
        .context("installing a signal handler")?;
    }
    let net = DemoNet::create()?;
    let config = net.dir.join("relay.yml");
    std::fs::write(&config, config_yaml()).context("writing the relay's config")?;
    // Ctrl-C reaches the relay too (same process group): it shuts down by itself.
    let mut relay = RelayProcess(
        Command::new("ip")
            .args(["netns", "exec", NETNS])
            .arg(relay)
            .args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .spawn()
            .context("cannot start the relay")?,
    );

    let http: SocketAddr = format!("{RELAY_IP}:{HTTP_PORT}").parse()?;
    let mut announced = false;
    let code = loop {
        if let Some(status) = relay.0.try_wait()? {
            break status.code();
        }
        if stop.load(Ordering::SeqCst) {
            relay.stop();
            break Some(0);
        }
        // Reached from this namespace, through the veth pair: the URL works.
        if !announced && TcpStream::connect_timeout(&http, Duration::from_millis(100)).is_ok() {
            announced = true;
            println!(
                "\nxdp-demo: open http://{RELAY_IP}:{HTTP_PORT}/demo/ in a browser on this host \
                 (metrics: ip netns exec {NETNS} curl http://{METRICS}/metrics). Ctrl-C stops \
                 the relay and removes the namespace.\n"
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    drop(relay);
    drop(net);
    Ok(match code {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn config_yaml() -> String {
    format!(
        "# Written by `cargo xtask xdp-demo`, removed when it ends.\n\
         webrtcAddress: {RELAY_IP}:{HTTP_PORT}\n\
         webrtcLocalUDPAddress: {RELAY_IP}:8189\n\
         xdpInterface: {RELAY_IF}\n\
         metrics: yes\n\
         metricsAddress: {METRICS}\n\
         paths:\n  demo:\n    source: demo\n"
    )
}

/// The relay's process (`ip netns exec` execs it: the same process), stopped on drop.
struct RelayProcess(Child);

impl RelayProcess {
    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    fn stop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: signals our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// The namespace, the veth pair and a directory for the config; all removed on drop.
struct DemoNet {
    dir: PathBuf,
}

impl DemoNet {
    fn create() -> anyhow::Result<DemoNet> {
        if Path::new("/run/netns").join(NETNS).exists() {
            bail!(
                "network namespace {NETNS} exists: is another xdp-demo running? If not, remove \
                 it with `ip netns del {NETNS}`"
            );
        }
        if Path::new("/sys/class/net").join(HOST_IF).exists() {
            bail!("interface {HOST_IF} exists: if no xdp-demo runs, remove it with `ip link del {HOST_IF}`");
        }
        let used = ip(&["-4", "-o", "addr", "show", "to", SUBNET])?
            + &ip(&["-4", "route", "show", "root", SUBNET])?;
        if !used.trim().is_empty() {
            bail!("{SUBNET}, which xdp-demo uses, is in use on this host:\n{used}");
        }
        ip(&["netns", "add", NETNS])?;
        // From here on, a failure removes what was made.
        let net = DemoNet {
            dir: std::env::temp_dir().join(format!("relay-xdp-demo-{}", std::process::id())),
        };
        std::fs::create_dir_all(&net.dir).context("creating a directory for the config")?;
        ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", RELAY_IF, "netns", NETNS,
        ])?;
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_IF])?;
        ip(&["link", "set", HOST_IF, "up"])?;
        let relay_ip = format!("{RELAY_IP}/30");
        ip(&["-n", NETNS, "addr", "add", &relay_ip, "dev", RELAY_IF])?;
        ip(&["-n", NETNS, "link", "set", RELAY_IF, "up"])?;
        ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        println!(
            "xdp-demo: network namespace {NETNS}; veth {HOST_IF} ({HOST_IP}, here) <-> \
             {RELAY_IF} ({RELAY_IP}, the relay's)"
        );
        Ok(net)
    }
}

impl Drop for DemoNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair (both ends, with their addresses
        // and routes) once nothing runs in it: the relay has exited by now.
        let _ = ip(&["netns", "del", NETNS]);
        let _ = std::fs::remove_dir_all(&self.dir);
        // The kernel tears the namespace down in the background: wait for the veth to go.
        let host_if = Path::new("/sys/class/net").join(HOST_IF);
        let deadline = Instant::now() + Duration::from_secs(5);
        while host_if.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if host_if.exists() {
            let _ = ip(&["link", "del", HOST_IF]);
        }
        println!("xdp-demo: removed network namespace {NETNS} and veth {HOST_IF}");
    }
}

/// `ip args...`, which must succeed; its output.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (Debian package iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
