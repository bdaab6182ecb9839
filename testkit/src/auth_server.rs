//! A real authentication server for tests (`auth_server.py`, Python's http.server):
//! MediaMTX's HTTP auth hook at `/auth` (user `hook-user`/`hook-pass` or token
//! `hook-token` allowed, everyone else 403) and a JWKS at `/jwks.json`, the key set the
//! test gives it. It reports every hook request it got. Killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::tempdir::TempDir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth_server.py");

pub struct AuthServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Child,
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
    _dir: TempDir,
}

impl AuthServer {
    /// Serves `jwks` (a JSON Web Key Set) and the hook; serving once this returns.
    pub fn start(jwks: &str) -> anyhow::Result<AuthServer> {
        let dir = TempDir::new("auth-server");
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks)?;
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .arg(&file)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run python3 auth_server.py")?;
        let stdout = child.stdout.take().expect("piped");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let port = read_requests(stdout, requests.clone())
            .recv_timeout(Duration::from_secs(20))
            .context("auth_server.py did not say its port")?;
        Ok(AuthServer {
            url: format!("http://127.0.0.1:{port}"),
            child,
            requests,
            _dir: dir,
        })
    }

    /// The hook's URL (`authHTTPAddress`).
    pub fn hook(&self) -> String {
        format!("{}/auth", self.url)
    }

    /// The key set's URL (`authJWTJWKS`).
    pub fn jwks(&self) -> String {
        format!("{}/jwks.json", self.url)
    }

    /// The JSON bodies the hook got so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().unwrap().clone()
    }
}

/// The port (the first line), then each request into `requests`.
fn read_requests(
    stdout: ChildStdout,
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
) -> mpsc::Receiver<u16> {
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(port)) = lines.next() {
            let _ = port_tx.send(port.trim().parse().unwrap_or(0));
        }
        for line in lines.map_while(Result::ok) {
            if let Ok(request) = serde_json::from_str(&line) {
                requests.lock().unwrap().push(request);
            }
        }
    });
    port_rx
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
