//! A real RTSP server for tests: GStreamer's (`rtsp_server.py`, run by
//! `/usr/bin/python3`, the Python with `gi`), serving live test-pattern cameras at
//! `/h264aac` (H264 and AAC), `/h264` and `/h265` over UDP and TCP, and `/h264tcp`
//! over TCP only (a camera that refuses UDP), optionally behind
//! Basic or Digest auth (user `user`, password `secret`). It can be stopped and started
//! again on the same port (a camera rebooting) and frozen (a camera that stops sending
//! without closing). Killed on drop.
//!
//! For the load tools it serves RTP cameras instead ([`RtspServer::start_cameras`]):
//! `/cam0` .. `/cam{N-1}`, each fed by RTP pushed to a UDP port of its own (what
//! `relay-bench publish` sends), passed through without encoding.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/rtsp_server.py");
/// GStreamer loads its plugins on start: seconds on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may read the server's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspAuth {
    None,
    Basic,
    Digest,
}

/// RTP cameras: mount `/cam{i}` takes RTP/H264 (payload type 96) on 127.0.0.1, port
/// `rtp_port + i * port_step`, and answers DESCRIBE once it flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpCameras {
    pub count: usize,
    pub rtp_port: u16,
    pub port_step: u16,
    /// Depacketize and packetize again (new sequence numbers and packetization, as a
    /// re-streaming server), instead of passing the RTP through as it came.
    pub repay: bool,
}

pub struct RtspServer {
    pub port: u16,
    auth: RtspAuth,
    cameras: Option<RtpCameras>,
    child: Option<Child>,
}

impl RtspServer {
    /// A server on a free port of 127.0.0.1, serving once this returns.
    pub fn start(auth: RtspAuth) -> anyhow::Result<RtspServer> {
        RtspServer::start_with(auth, None)
    }

    /// A server of `cameras` (no auth) on a free port of 127.0.0.1, serving once this
    /// returns.
    pub fn start_cameras(cameras: RtpCameras) -> anyhow::Result<RtspServer> {
        RtspServer::start_with(RtspAuth::None, Some(cameras))
    }

    fn start_with(auth: RtspAuth, cameras: Option<RtpCameras>) -> anyhow::Result<RtspServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = RtspServer {
            port,
            auth,
            cameras,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// The server process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `rtsp://127.0.0.1:PORT/mount`, with `user:secret@` when the server asks for it.
    pub fn url(&self, mount: &str) -> String {
        let creds = match self.auth {
            RtspAuth::None => "",
            RtspAuth::Basic | RtspAuth::Digest => "user:secret@",
        };
        format!("rtsp://{creds}127.0.0.1:{}/{mount}", self.port)
    }

    /// Kills the server (its connections close, as when a camera loses power).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server ended by itself (GStreamer's server aborts on an assertion
    /// now and then).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Starts the server (again) on its port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let auth = match self.auth {
            RtspAuth::None => "none",
            RtspAuth::Basic => "basic",
            RtspAuth::Digest => "digest",
        };
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg(SCRIPT)
            .args(["--port", &self.port.to_string(), "--auth", auth]);
        if let Some(c) = self.cameras {
            command
                .args(["--cameras", &c.count.to_string()])
                .args(["--rtp-port", &c.rtp_port.to_string()])
                .args(["--port-step", &c.port_step.to_string()])
                .args(["--pipeline", if c.repay { "repay" } else { "passthrough" }]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running /usr/bin/python3 (cargo xtask setup installs python3-gi)")?;
        let stdout = child.stdout.take().expect("piped");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.starts_with("ready") => Ok(()),
            Ok(line) => bail!("the RTSP server said {line:?} instead of ready"),
            Err(_) => bail!("the RTSP server did not start within {START_TIMEOUT:?}"),
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: its sockets stay open, nothing
    /// is sent or answered meanwhile.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: a signal to our own child, which we have not waited for yet.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.freeze(false);
        self.stop();
    }
}
