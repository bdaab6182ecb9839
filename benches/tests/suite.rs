//! `relay-bench suite` end to end, small: every workload against the relay and Janus,
//! with the results written into a copy of a docs page (W1R, over RTSP, in a test of
//! its own). Needs root (its own network
//! namespace, the sink tc program on its `lo`), the relay binary next to relay-bench,
//! Janus and ffmpeg (`cargo xtask setup`).

mod common;

use relay_testkit::tempdir::TempDir;
use serde_json::Value;

use common::relay_bench;

#[test]
fn every_workload_runs_against_both_servers_and_lands_in_the_docs() {
    let dir = TempDir::new("suite-test");
    let docs = dir.path().join("benchmarks.md");
    std::fs::write(
        &docs,
        "# Benchmarks\n\nkept\n<!-- suite:begin (written by `relay-bench suite --docs`; edits here are lost) -->\nold\n<!-- suite:end -->\nkept too\n",
    )
    .unwrap();
    let json = dir.path().join("suite.json");
    let (json_path, docs_path) = (json.to_str().unwrap(), docs.to_str().unwrap());
    #[rustfmt::skip]
    relay_bench(&[
        "suite", "--workloads", "w1,w2,w3,w4",
        "--w1-streams", "2", "--w1-viewers", "2", "--w2-viewers", "10",
        "--window", "3", "--w3-viewers", "4", "--w3-seconds", "16",
        "--w4-rates", "10", "--w4-step", "2", "--no-xdp",
        "--json", json_path, "--docs", docs_path,
    ]);
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "W1 and W2 for both servers: {results}");
    for run in runs {
        let num = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {run}"));
        let w = &run["viewers_window"];
        assert_every_viewer_got_its_stream(run);
        // The relay loses nothing here: its verifying viewers see no sequence gap. (The
        // run's own loss also counts the packets in flight at the window's edges: a
        // keyframe's burst is 0.1% of a 3 s window here.) Janus's loss is its own,
        // recorded in the docs (a 3 s window on a busy machine has shown it 0.5% short).
        if run["server"] == "relay" {
            assert_eq!(w["loss"].as_f64(), Some(0.0), "{run}");
            assert!(num("loss") <= 0.01, "{run}");
        } else {
            assert!((0.0..=1.0).contains(&num("loss")), "{run}");
        }
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
        let svg = std::fs::read_to_string(dir.path().join("plots").join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{plot}"
        );
    }
}

/// W1R: the RTSP server feeds the relay (over TCP and over UDP) and Janus (UDP); every
/// viewer gets every packet the publisher sent through it, the RTSP server's CPU is
/// measured, and only W1R's part of the page is rewritten.
#[test]
fn w1r_pulls_from_one_rtsp_server_and_lands_in_its_own_section() {
    let dir = TempDir::new("suite-w1r-test");
    let docs = dir.path().join("benchmarks.md");
    let page = "# Benchmarks\n<!-- suite:begin (written by `relay-bench suite --docs`; edits here are lost) -->\nW1 to W4\n<!-- suite:end -->\nkept\n<!-- suite-w1r:begin (written by `relay-bench suite --docs`; edits here are lost) -->\nold\n<!-- suite-w1r:end -->\nkept too\n";
    std::fs::write(&docs, page).unwrap();
    let json = dir.path().join("suite.json");
    let (json_path, docs_path) = (json.to_str().unwrap(), docs.to_str().unwrap());
    #[rustfmt::skip]
    relay_bench(&[
        "suite", "--workloads", "w1r", "--w1-streams", "2", "--w1-viewers", "2",
        "--window", "3", "--no-xdp", "--json", json_path, "--docs", docs_path,
    ]);
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k} in {r}"));
            (s("server"), s("rtsp_transport"))
        })
        .collect();
    assert_eq!(
        kinds,
        [("relay", "tcp"), ("relay", "udp"), ("janus", "udp")],
        "{results}"
    );
    for run in runs {
        let num = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {run}"));
        let w = &run["viewers_window"];
        // The RTSP server passes the publisher's packets through.
        assert_every_viewer_got_its_stream(run);
        // A 3 s window's edges may cut a frame's burst of packets (9 at this rate)
        // still on its way through the RTSP server: loss counted against the publisher
        // is exact only to about a frame. The verifying viewers' gaps are exact.
        assert!(num("loss") <= 0.02, "{run}");
        assert_eq!(w["loss"], 0.0, "sequence gaps: {run}");
        assert_eq!(w["frames_missing"], 0, "{run}");
        assert_eq!(w["malformed"], 0, "{run}");
        assert!(w["decrypted"].as_u64().unwrap() > 100, "{run}");
        let p50 = w["latency_p50_ms"]
            .as_f64()
            .expect("stamps crossed both servers");
        assert!(p50 > 0.0 && p50 < 50.0, "{run}");
        assert!(num("rtsp_server_cpu_percent") > 0.0, "{run}");
        assert!(num("rtsp_server_rss_kib") > 1000.0, "{run}");
    }
    let written = std::fs::read_to_string(&docs).unwrap();
    assert!(
        written.contains("\nW1 to W4\n<!-- suite:end -->\nkept\n")
            && written.ends_with("<!-- suite-w1r:end -->\nkept too\n"),
        "{written}"
    );
    assert!(!written.contains("\nold\n"), "{written}");
    assert!(
        written.contains("| relay | tcp |")
            && written.contains("| Janus | udp |")
            && written.contains("Janus spends"),
        "{written}"
    );
}

/// Every viewer of a run got every packet of its stream: all streams' rate times the
/// viewers of each, within 5%.
fn assert_every_viewer_got_its_stream(run: &Value) {
    let num = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {run}"));
    let per_stream = num("viewers") / num("streams");
    let expected = num("published_pps") * per_stream;
    assert!(
        (num("delivered_pps") / expected - 1.0).abs() < 0.05,
        "delivered {} of {expected} pkt/s ({per_stream} per stream): {run}",
        num("delivered_pps")
    );
}
