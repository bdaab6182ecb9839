//! `relay-bench egress` end to end, small: two viewers of a real relay process for two
//! seconds, then the baseline. Needs the relay binary next to relay-bench (built by
//! `cargo build -p relay`, or by `cargo test` of the whole workspace).

mod common;

use common::{last_json, relay_bench};

#[test]
fn egress_measures_two_viewers_and_the_baseline() {
    let (stdout, stderr) = relay_bench(&[
        "egress",
        "--viewers",
        "2",
        "--window",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert!(
        stderr.contains("2 viewers: measuring"),
        "progress: {stderr}"
    );
    let json = last_json(&stdout);
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
