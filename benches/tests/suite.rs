//! `relay-bench suite` end to end, small: every workload against the relay and Janus,
//! with the results written into a copy of a docs page. Needs root (its own network
//! namespace, the sink XDP program on its `lo`), the relay binary next to relay-bench,
//! Janus and ffmpeg (`cargo xtask setup`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn every_workload_runs_against_both_servers_and_lands_in_the_docs() {
    let tool = PathBuf::from(env!("CARGO_BIN_EXE_relay-bench"));
    let relay = tool.with_file_name("relay");
    assert!(relay.exists(), "no relay binary at {}", relay.display());
    let dir = std::env::temp_dir().join(format!("relay-suite-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let docs = dir.join("benchmarks.md");
    std::fs::write(
        &docs,
        "# Benchmarks\n\nkept\n<!-- suite:begin (written by `relay-bench suite --docs`; edits here are lost) -->\nold\n<!-- suite:end -->\nkept too\n",
    )
    .unwrap();
    let json = dir.join("suite.json");
    let out = Command::new(&tool)
        .args([
            "suite",
            "--w1-streams",
            "2",
            "--w1-viewers",
            "2",
            "--w2-viewers",
            "10",
        ])
        .args(["--window", "3", "--w3-viewers", "4", "--w3-seconds", "16"])
        .args(["--w4-rates", "10", "--w4-step", "2", "--no-xdp"])
        .arg("--relay")
        .arg(&relay)
        .arg("--json")
        .arg(&json)
        .arg("--docs")
        .arg(&docs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "W1 and W2 for both servers: {results}");
    for run in runs {
        let num = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {run}"));
        let w = &run["viewers_window"];
        let per_stream = num("viewers") / num("streams");
        // Every viewer got every packet of its stream: all streams' rate times the
        // viewers of each.
        let expected = num("published_pps") * per_stream;
        assert!(
            (num("delivered_pps") / expected - 1.0).abs() < 0.05,
            "delivered {} of {expected} pkt/s ({per_stream} per stream): {run}",
            num("delivered_pps")
        );
        assert!(num("loss") <= 0.001, "{run}");
        assert_eq!(w["malformed"], 0, "{run}");
        assert_eq!(w["failed"], 0, "{run}");
        assert!(
            w["decrypted"].as_u64().unwrap() > 100,
            "verifying viewers: {run}"
        );
        // Stamps crossed the server: latency on loopback is well under 50 ms.
        let p50 = w["latency_p50_ms"]
            .as_f64()
            .expect("latency from the stamps");
        assert!(p50 > 0.0 && p50 < 50.0, "{run}");
        assert!(w["first_keyframe_p50_ms"].as_f64().is_some(), "{run}");
        assert!(num("cpu_percent") > 0.0 && num("rss_kib") > 1000.0, "{run}");
    }
    for server in ["relay", "janus"] {
        let churn = results["churn"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["server"] == server)
            .unwrap_or_else(|| panic!("W3 for {server}: {results}"));
        assert_eq!(churn["failed"], 0, "{churn}");
        assert!(
            churn["joins"].as_u64().unwrap() > 4,
            "viewers were replaced: {churn}"
        );
        assert!(churn["samples"].as_array().unwrap().len() >= 2, "{churn}");
        let setup = results["setup"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["server"] == server)
            .unwrap_or_else(|| panic!("W4 for {server}: {results}"));
        assert_eq!(setup["failed"], 0, "{setup}");
        assert!(setup["setup_p99_ms"].as_f64().is_some(), "{setup}");
    }

    let page = std::fs::read_to_string(&docs).unwrap();
    assert!(
        page.starts_with("# Benchmarks\n\nkept\n")
            && page.ends_with("<!-- suite:end -->\nkept too\n"),
        "{page}"
    );
    assert!(
        !page.contains("\nold\n"),
        "the old section is replaced: {page}"
    );
    assert!(
        page.contains("### W1") && page.contains("### W4") && page.contains("Janus spends"),
        "{page}"
    );
    for plot in ["w2-cpu.svg", "w2-rss.svg", "w3-rss.svg", "w3-fds.svg"] {
        let svg = std::fs::read_to_string(dir.join("plots").join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{plot}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
