//! `pprof: yes`: a CPU profile taken from the relay binary while viewers watch, decoded
//! as `go tool pprof` would read it, names the relay's own functions.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use prost::Message;
use relay::config::Config;
use relay_testkit::viewer::{Driven, Viewer};

use common::{demo_config, start};

/// A profile of `seconds` from `url`: the decoded profile.proto.
fn profile(url: &str, seconds: u64) -> pprof::protos::Profile {
    let mut response = relay_testkit::http::agent(Duration::from_secs(seconds + 30))
        .get(format!("{url}?seconds={seconds}"))
        .call()
        .expect("HTTP");
    assert_eq!(response.status(), 200);
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut raw)
        .expect("gzip, as Go serves profiles");
    pprof::protos::Profile::decode(&raw[..]).expect("a profile.proto")
}

fn names(profile: &pprof::protos::Profile) -> Vec<&str> {
    let name = |i: i64| profile.string_table[i as usize].as_str();
    profile.function.iter().map(|f| name(f.name)).collect()
}

#[test]
fn a_cpu_profile_under_load_decodes_and_names_relays_functions() {
    // A port free a moment ago: the relay takes it at start or says so.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = start(&Config {
        pprof_address: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        ..demo_config()
    });
    let viewers: Vec<Driven> = (0..24)
        .map(|_| Driven::start(Viewer::connect(&relay.http, "demo")))
        .collect();
    let url = format!("http://127.0.0.1:{port}/debug/pprof/profile");
    // A relay serving 24 viewers uses a few percent of a core: a 3 s profile at 99 Hz
    // holds a handful of samples, so a few are taken until one shows the fan-out.
    let mut seen = Vec::new();
    let found = (0..5).find_map(|_| {
        let p = profile(&url, 3);
        let types: Vec<String> = p
            .sample_type
            .iter()
            .map(|t| p.string_table[t.ty as usize].clone())
            .collect();
        assert!(types.iter().any(|t| t == "cpu"), "sample types {types:?}");
        let names: Vec<String> = names(&p).into_iter().map(str::to_owned).collect();
        let hit = names.iter().any(|n| n.starts_with("relay::worker"));
        seen.push(format!(
            "{} samples, {} functions",
            p.sample.len(),
            names.len()
        ));
        hit.then_some(p)
    });
    assert!(
        found.is_some(),
        "no relay::worker function in any profile: {seen:?}"
    );
    for v in viewers {
        assert!(v.stop().packets() > 100, "the viewers were served");
    }

    let bad = relay_testkit::http::agent(Duration::from_secs(5))
        .get(format!("{url}?seconds=0"))
        .call()
        .unwrap();
    assert_eq!(bad.status(), 400);
}
