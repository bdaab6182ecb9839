//! What the load tools' tests share: `relay-bench` run as its users run it, with the
//! relay binary next to it (`cargo build --release -p relay`, or `cargo test` of the
//! whole workspace, builds it there).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The relay-bench binary cargo built for these tests.
pub fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_relay-bench"))
}

/// The relay binary next to relay-bench.
pub fn relay_binary() -> PathBuf {
    let relay = tool().with_file_name("relay");
    assert!(
        relay.exists(),
        "no relay binary at {}: run `cargo build --release -p relay` first",
        relay.display()
    );
    relay
}

/// Runs `relay-bench ARGS --relay RELAY`, which must succeed: its stdout and stderr.
pub fn relay_bench(args: &[&str]) -> (String, String) {
    let out = Command::new(tool())
        .args(args)
        .arg("--relay")
        .arg(relay_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// The JSON line a tool's output ends with.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}
