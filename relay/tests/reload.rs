//! Hot reload, against the real binary: its config file replaced as an editor saves
//! it, SIGHUP, a file that does not load, and `runOnDemand`.

mod common;

use std::path::Path;
use std::thread;
use std::time::Duration;

use relay::config::{Config, PathConfig};
use relay::hooks::{DemandHook, Hook, PathHooks};
use relay_testkit::config::{demo, loopback, paths, publisher, rtp_push};
use relay_testkit::process::RelayProcess;
use relay_testkit::publisher::Publisher;
use relay_testkit::tempdir::TempDir;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;
use serde_json::Value;

use common::{start, WORKERS};

fn with_api(config: Config) -> Config {
    Config {
        api: true,
        api_address: "127.0.0.1:0".parse().unwrap(),
        ..config
    }
}

/// The JSON of GET `url` on the API at `api`.
fn get(api: &str, url: &str) -> Value {
    let agent = relay_testkit::http::agent(Duration::from_secs(10));
    let mut response = agent
        .get(format!("{api}{url}"))
        .call()
        .expect("the API answers");
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// The names in a list the API answered.
fn names(list: &Value, key: &str) -> Vec<String> {
    let items = list["items"].as_array().expect("items");
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_saved_file_adds_changes_and_removes_paths_and_leaves_the_others_alone() {
    let config = with_api(Config {
        paths: paths([
            ("keep", demo()),
            ("gone", publisher(false)),
            ("changes", publisher(false)),
        ]),
        ..loopback(WORKERS)
    });
    let relay = start(&config);
    let api = relay.api.clone().expect("the API's URL");
    let viewer = Driven::start(Viewer::connect(&relay.http, "keep"));
    let viewer_id = viewer.with(|v| v.session_id().to_owned());
    let mut gone = Publisher::connect(&relay.http, "gone").expect("the publisher is taken");
    let gone_id = gone.session.rsplit('/').next().unwrap().to_owned();
    let publishing = thread::spawn(move || gone.run_for(Duration::from_secs(4)));
    assert!(
        eventually(Duration::from_secs(5), || viewer.with(|v| v.packets()) > 20),
        "the viewer of keep gets media"
    );
    let ready = get(&api, "/v3/paths/get/keep")["readyTime"].clone();
    assert!(ready.is_string(), "{ready}");

    let changed = PathConfig {
        max_readers: 3,
        ..publisher(false)
    };
    let new = Config {
        paths: paths([
            ("keep", demo()),
            ("changes", changed),
            ("fresh", publisher(false)),
        ]),
        ..config.clone()
    };
    relay.rewrite_config(&new).unwrap();
    let applied = eventually(Duration::from_secs(10), || {
        let served = names(&get(&api, "/v3/paths/list"), "name");
        let sessions = names(&get(&api, "/v3/webrtcsessions/list"), "id");
        served == ["changes", "fresh", "keep"] && !sessions.contains(&gone_id)
    });
    assert!(applied, "{}", relay.log_tail());
    assert_eq!(get(&api, "/v3/config/paths/get/changes")["maxReaders"], 3);

    // The unchanged path is the same path: ready since before, its viewer still there
    // and still getting media.
    assert_eq!(get(&api, "/v3/paths/get/keep")["readyTime"], ready);
    let sessions = names(&get(&api, "/v3/webrtcsessions/list"), "id");
    assert_eq!(sessions, std::slice::from_ref(&viewer_id));
    let before = viewer.with(|v| v.packets());
    assert!(
        eventually(Duration::from_secs(5), || viewer.with(|v| v.packets())
            > before + 20),
        "the viewer of keep goes on"
    );
    assert!(relay
        .log()
        .iter()
        .any(|l| l.contains("config: paths applied")));
    publishing.join().unwrap();
}

#[test]
fn an_rtp_source_is_bound_by_a_reload_and_bound_again_when_it_changes() {
    let config = with_api(Config {
        paths: paths([("keep", demo())]),
        ..loopback(WORKERS)
    });
    let relay = start(&config);
    let api = relay.api.clone().expect("the API's URL");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let audio = "m=audio 0 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    for (sdp, tracks) in [
        (sdp.to_owned(), serde_json::json!(["H264"])),
        // The same port: the old source's socket is closed before the new one binds.
        (format!("{sdp}{audio}"), serde_json::json!(["H264", "Opus"])),
    ] {
        let new = Config {
            paths: paths([("keep", demo()), ("cam", rtp_push(port, &sdp))]),
            ..config.clone()
        };
        relay.rewrite_config(&new).unwrap();
        let bound = eventually(Duration::from_secs(10), || {
            get(&api, "/v3/paths/get/cam")["tracks"] == tracks
        });
        assert!(bound, "{}", relay.log_tail());
    }
    assert!(
        !relay.log().iter().any(|l| l.contains("cannot start")),
        "{}",
        relay.log_tail()
    );
}

#[test]
fn a_file_that_does_not_load_changes_nothing_and_sighup_reloads() {
    let config = with_api(Config {
        paths: paths([("keep", demo())]),
        ..loopback(WORKERS)
    });
    let relay = start(&config);
    let api = relay.api.clone().expect("the API's URL");

    let yaml = relay_testkit::config::to_yaml(&config);
    let misspelt = format!("{yaml}  bad:\n    maxReadrs: 1\n");
    relay.rewrite_config_yaml(&misspelt).unwrap();
    let refused = eventually(Duration::from_secs(10), || {
        let log = relay.log().join("\n");
        log.contains("config not reloaded, the running one stays")
            && log.contains("paths.bad.maxReadrs: unknown key")
    });
    assert!(refused, "{}", relay.log_tail());
    assert_eq!(names(&get(&api, "/v3/paths/list"), "name"), ["keep"]);

    // Keys read only at start are said to wait for a restart, and keep their value.
    let later = Config {
        read_timeout: Duration::from_secs(3),
        paths: paths([("keep", demo()), ("fresh", publisher(false))]),
        ..config.clone()
    };
    relay.rewrite_config(&later).unwrap();
    relay.hangup().unwrap();
    let reloaded = eventually(Duration::from_secs(10), || {
        names(&get(&api, "/v3/paths/list"), "name") == ["fresh", "keep"]
    });
    assert!(reloaded, "{}", relay.log_tail());
    let log = relay.log();
    assert!(log
        .iter()
        .any(|l| l.contains("SIGHUP: reloading the config")));
    assert!(
        log.iter()
            .any(|l| l.contains("config: readTimeout changed; relay applies it at its next start")),
        "{}",
        relay.log_tail()
    );
    assert_eq!(get(&api, "/v3/config/global/get")["readTimeout"], "10s");
}

/// A command that says `start` into `file`, then waits until SIGINT, and says `stop`.
fn lasting(file: &Path) -> Hook {
    let f = file.display();
    Hook {
        command: format!(
            "sh -c 'echo start >> {f}; trap \"echo stop >> {f}; exit 0\" INT; \
             while :; do sleep 0.1; done'"
        ),
        restart: false,
    }
}

fn lines(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

/// The relay with one publisher path, `cam`, that runs `demand`.
fn on_demand_relay(demand: DemandHook) -> RelayProcess {
    let path = PathConfig {
        hooks: PathHooks {
            on_demand: Some(demand),
            ..PathHooks::default()
        },
        ..publisher(false)
    };
    start(&Config {
        paths: paths([("cam", path)]),
        ..loopback(WORKERS)
    })
}

#[test]
fn run_on_demand_starts_for_a_viewer_and_stops_when_nobody_watches() {
    let dir = TempDir::new("on-demand");
    let file = dir.path().join("events");
    let demand = DemandHook {
        hook: lasting(&file),
        start_timeout: Duration::from_secs(10),
        close_after: Duration::from_secs(1),
        on_undemand: Some(format!("sh -c 'echo undemand >> {}'", file.display())),
    };
    let relay = on_demand_relay(demand);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&file), Vec::<String>::new(), "nobody asked yet");

    // The viewer's offer waits for the publisher the command would start; the test
    // publishes once the command has started.
    let http = relay.http.clone();
    let viewer = thread::spawn(move || Viewer::connect(&http, "cam"));
    assert!(eventually(Duration::from_secs(10), || lines(&file) == ["start"]));
    let mut publisher = Publisher::connect(&relay.http, "cam").expect("the publisher is taken");
    let publishing = thread::spawn(move || publisher.run_for(Duration::from_secs(3)));
    let viewer = Driven::start(viewer.join().expect("the viewer is answered"));
    assert!(
        eventually(Duration::from_secs(5), || viewer.with(|v| v.packets()) > 10),
        "{}",
        relay.log_tail()
    );
    assert_eq!(lines(&file), ["start"], "runs while watched");

    assert_eq!(viewer.stop().delete(), 200, "the viewer leaves");
    let stopped = eventually(Duration::from_secs(10), || {
        lines(&file) == ["start", "stop", "undemand"]
    });
    assert!(stopped, "{:?}\n{}", lines(&file), relay.log_tail());
    publishing.join().unwrap();
}

#[test]
fn run_on_demand_is_stopped_when_it_does_not_publish_in_time() {
    let dir = TempDir::new("on-demand");
    let file = dir.path().join("events");
    let demand = DemandHook {
        hook: lasting(&file),
        start_timeout: Duration::from_secs(1),
        close_after: Duration::from_secs(10),
        on_undemand: None,
    };
    let relay = on_demand_relay(demand);
    common::eventually_404(&relay.http, "cam", "waiting for a publisher");
    let stopped = eventually(Duration::from_secs(10), || {
        lines(&file) == ["start", "stop"]
    });
    assert!(stopped, "{:?}\n{}", lines(&file), relay.log_tail());
}
