//! `pprof: yes`: CPU and heap profiles taken from the relay binary while viewers watch,
//! decoded as `go tool pprof` would read them, name the relay's own functions. Profiles
//! need the `pprof` permission, and `pprof: no` opens no listener.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use prost::Message;
use relay::auth::{Action, AuthConfig, PathRule, Permission, Secret, User};
use relay::config::Config;
use relay_testkit::process::Launch;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::whep::basic;

use common::{demo_config, start, RELAY};

/// A loopback address with a port free a moment ago: the relay takes it at start or
/// says so.
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The demo, with profiles served at `pprof`.
fn config(pprof: SocketAddr) -> Config {
    Config {
        pprof_address: Some(pprof),
        ..demo_config()
    }
}

/// `GET url` with `authorization`: the status and the body.
fn get(url: &str, authorization: Option<&str>, timeout: Duration) -> (u16, Vec<u8>) {
    let mut request = relay_testkit::http::agent(timeout).get(url);
    if let Some(a) = authorization {
        request = request.header("Authorization", a);
    }
    let mut response = request.call().expect("HTTP");
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (response.status().as_u16(), body)
}

/// A profile as served: gzip, as Go serves them, of a profile.proto.
fn decode(body: &[u8]) -> pprof::protos::Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut raw)
        .expect("gzip, as Go serves profiles");
    pprof::protos::Profile::decode(&raw[..]).expect("a profile.proto")
}

/// The profile at `url`, decoded.
fn profile(url: &str, timeout: Duration) -> pprof::protos::Profile {
    let (status, body) = get(url, None, timeout);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    decode(&body)
}

fn names(profile: &pprof::protos::Profile) -> Vec<&str> {
    let name = |i: i64| profile.string_table[i as usize].as_str();
    profile.function.iter().map(|f| name(f.name)).collect()
}

/// `(type, unit)` of each of the profile's values.
fn sample_types(p: &pprof::protos::Profile) -> Vec<(&str, &str)> {
    let s = |i: i64| p.string_table[i as usize].as_str();
    p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect()
}

#[test]
fn a_cpu_profile_under_load_decodes_and_names_relays_functions() {
    let pprof = free_address();
    let relay = start(&config(pprof));
    let viewers: Vec<Driven> = (0..48)
        .map(|_| Driven::start(Viewer::connect(&relay.http, "demo")))
        .collect();
    let url = format!("http://{pprof}/debug/pprof/profile");
    // A relay serving the demo stream (~70 packets/s) to 48 viewers uses well under 1%
    // of a core: at 99 Hz a 10 s profile holds a few samples, a 3 s one often none (5
    // empty ones in a row failed CI). A few are taken until one shows the fan-out.
    let mut seen = Vec::new();
    let found = (0..4).find_map(|_| {
        let p = profile(&format!("{url}?seconds=10"), Duration::from_secs(40));
        let types = sample_types(&p);
        assert!(
            types.iter().any(|&(t, _)| t == "cpu"),
            "sample types {types:?}"
        );
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

    let (status, _) = get(&format!("{url}?seconds=0"), None, Duration::from_secs(5));
    assert_eq!(status, 400);
}

/// A heap profile's in-use bytes by the innermost relay function of their stack: what
/// in relay allocated them (directly, or through a library).
fn in_use_by_relay_function(p: &pprof::protos::Profile) -> HashMap<String, i64> {
    let s = |i: i64| p.string_table[i as usize].as_str();
    let function = |id: u64| s(p.function[id as usize - 1].name);
    let mut in_use = HashMap::new();
    for sample in &p.sample {
        let relays = sample
            .location_id
            .iter()
            .flat_map(|&l| &p.location[l as usize - 1].line)
            .map(|line| function(line.function_id))
            .find(|name| name.starts_with("relay::"));
        *in_use
            .entry(relays.unwrap_or("(not relay's)").to_owned())
            .or_default() += sample.value[3];
    }
    in_use
}

/// The bytes of `in_use` under functions whose names start with `prefix`.
fn under(in_use: &HashMap<String, i64>, prefix: &str) -> i64 {
    in_use
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, bytes)| bytes)
        .sum()
}

#[test]
fn a_heap_profile_attributes_the_live_heap_to_relays_functions() {
    let pprof = free_address();
    // One sample per KiB allocated rather than per 512 KiB: each viewer's few KiB are
    // then in the profile for sure, not by chance.
    let relay = Launch::new(RELAY, &config(pprof))
        .through(&["env", "MALLOC_CONF=lg_prof_sample:10"])
        .echo_log()
        .start()
        .expect("the relay starts");
    let url = format!("http://{pprof}/debug/pprof/heap");
    let before = in_use_by_relay_function(&profile(&url, Duration::from_secs(30)));
    let viewers: Vec<Driven> = (0..24)
        .map(|_| Driven::start(Viewer::connect(&relay.http, "demo")))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let p = profile(&url, Duration::from_secs(30));
    assert_eq!(
        sample_types(&p),
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ],
        "Go's heap profile types"
    );
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(s(p.default_sample_type), "inuse_space");
    let period = p.period_type.as_ref().unwrap();
    assert_eq!((s(period.ty), s(period.unit)), ("space", "bytes"));
    assert_eq!(p.period, 1024, "jemalloc's sampling rate");

    let in_use = in_use_by_relay_function(&p);
    let mut by_size: Vec<_> = in_use.iter().filter(|&(_, &b)| b > 0).collect();
    by_size.sort_by_key(|&(_, bytes)| -bytes);
    // The demo track's packets are slices of the clip, packetized once.
    assert!(
        under(&in_use, "relay::ingest::demo::") > 256 * 1024,
        "the demo's packets are in use: {by_size:?}"
    );
    // Each viewer's state in its worker: its session's egress, SRTP contexts, streams.
    let workers = under(&in_use, "relay::worker::") - under(&before, "relay::worker::");
    assert!(
        workers > 24 * 1024,
        "24 viewers added {workers} bytes in the workers: {by_size:?}"
    );
    let total: i64 = in_use.values().sum();
    assert!(
        under(&in_use, "(not relay's)") < total / 2,
        "most of the heap is relay's: {by_size:?}"
    );
    for v in viewers {
        assert!(v.stop().packets() > 100, "the viewers were served");
    }
}

#[test]
fn profiles_need_the_pprof_permission_and_pprof_no_opens_no_listener() {
    let pprof = free_address();
    let yaml = relay_testkit::config::to_yaml(&config(pprof));
    assert!(yaml.contains("pprof: true") && yaml.contains(&pprof.to_string()));
    let off = Launch::yaml(RELAY, yaml.replace("pprof: true", "pprof: false"))
        .echo_log()
        .start()
        .expect("the relay starts");
    assert!(
        TcpStream::connect_timeout(&pprof, Duration::from_secs(1)).is_err(),
        "pprof: no, yet {pprof} answers"
    );
    drop(off);

    let AuthConfig::Internal(defaults) = AuthConfig::mediamtx_default() else {
        unreachable!("MediaMTX's default is internal users")
    };
    let profiler = User {
        user: Some(Secret::parse("profiler").unwrap()),
        pass: Secret::parse("s3cret").unwrap(),
        ips: Vec::new(),
        permissions: vec![Permission {
            action: Action::Pprof,
            path: PathRule::Any,
        }],
    };
    // MediaMTX's `any` user reads and publishes; its localhost user (which may profile)
    // is left out.
    let relay = start(&Config {
        auth: AuthConfig::Internal(vec![defaults[0].clone(), profiler]),
        ..config(pprof)
    });
    for path in ["heap", "profile?seconds=1"] {
        let url = format!("http://{pprof}/debug/pprof/{path}");
        let get = |authorization: Option<&str>| get(&url, authorization, Duration::from_secs(30));
        assert_eq!(get(None).0, 401, "{path} without credentials");
        let wrong = basic("profiler", "wrong");
        assert_eq!(get(Some(&wrong)).0, 401, "{path}, wrong password");
        let (status, body) = get(Some(&basic("profiler", "s3cret")));
        assert_eq!(status, 200, "{path}");
        if path == "heap" {
            // Go's sampling rate, as relay sets it.
            assert_eq!(decode(&body).period, 512 * 1024);
        }
    }
    drop(relay);
}
