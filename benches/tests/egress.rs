//! `relay-bench egress` end to end, small: two viewers of a real relay process for two
//! seconds, then the baseline. Needs the relay binary next to relay-bench (built by
//! `cargo build -p relay`, or by `cargo test` of the whole workspace).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn egress_measures_two_viewers_and_the_baseline() {
    let tool = PathBuf::from(env!("CARGO_BIN_EXE_relay-bench"));
    let relay = tool.with_file_name("relay");
    assert!(
        relay.exists(),
        "no relay binary at {}: run `cargo build -p relay` first",
        relay.display()
    );
    let out = Command::new(&tool)
        .args([
            "egress",
            "--viewers",
            "2",
            "--window",
            "2",
            "--warmup",
            "0.5",
        ])
        .arg("--relay")
        .arg(&relay)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("2 viewers: measuring"),
        "progress: {stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    let run = &json["runs"][0];
    let num = |k: &str| run[k].as_f64().unwrap_or_else(|| panic!("{k} in {run}"));
    assert_eq!(num("viewers"), 2.0);
    // The demo sends ~95 packets/s: each viewer gets most of them in the window.
    assert!(num("viewer_pps_min") > 50.0, "{run}");
    assert!(num("viewer_pps_max") < 200.0, "{run}");
    assert!(
        num("relay_cpu_s") >= 0.0 && num("rss_kib") > 1000.0,
        "{run}"
    );
    // The baseline replays exactly what the viewers got, and they get all of it.
    assert_eq!(num("baseline_datagrams"), num("delivered"), "{run}");
    assert_eq!(num("baseline_received"), num("delivered"), "{run}");
    assert!(num("baseline_us_per_datagram") > 0.0, "{run}");
    assert!(num("ratio").is_finite(), "{run}");
    assert!(stdout.contains("viewers"), "the table: {stdout}");
}
