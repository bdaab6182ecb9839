//! MediaMTX's hooks run by the relay binary: each command writes what it was told to a
//! file, and the commands that last show they got SIGINT when what started them ended.

mod common;

use std::path::Path;
use std::time::Duration;

use relay::config::{Config, PathConfig};
use relay::hooks::{Hook, PathHooks};
use relay::ingest::Source;
use relay_testkit::config::{loopback, paths};
use relay_testkit::publisher::Publisher;
use relay_testkit::tempdir::TempDir;
use relay_testkit::viewer::Viewer;
use relay_testkit::wait::eventually;

use common::{start, WORKERS};

/// `sh -c` running `script` (variables in it are the relay's to expand).
fn sh(script: &str) -> String {
    format!("sh -c '{script}'")
}

/// A command that says `start` into `file`, then waits until SIGINT, and says `end`.
fn lasting(file: &Path, start: &str, end: &str) -> Hook {
    let f = file.display();
    Hook {
        command: sh(&format!(
            "echo {start} >> {f}; trap \"echo {end} >> {f}; exit 0\" INT; while :; do sleep 0.1; done"
        )),
        restart: false,
    }
}

fn has(file: &Path, line: &str) -> bool {
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(file).is_ok_and(|text| text.lines().any(|l| l == line))
    })
}

#[test]
fn hooks_run_with_mediamtx_environment_and_end_with_sigint() {
    let dir = TempDir::new("hooks");
    let events = dir.path().join("events");
    let f = events.display();
    let hooks = PathHooks {
        on_init: Some(lasting(&events, "init $MTX_PATH", "init-ended")),
        on_ready: Some(lasting(
            &events,
            "ready $MTX_PATH $MTX_SOURCE_TYPE $MTX_SOURCE_ID $MTX_QUERY",
            "ready-ended",
        )),
        on_not_ready: Some(sh(&format!("echo not-ready $MTX_PATH $MTX_QUERY >> {f}"))),
        on_read: Some(lasting(
            &events,
            "read $MTX_READER_TYPE $MTX_READER_ID $MTX_QUERY",
            "read-ended $MTX_READER_ID",
        )),
        on_unread: Some(sh(&format!("echo unread $MTX_READER_ID $MTX_QUERY >> {f}"))),
        on_demand: None,
    };
    let mut relay = start(&Config {
        paths: paths([(
            "live",
            PathConfig {
                hooks,
                ..PathConfig::new(Source::Publisher)
            },
        )]),
        ..loopback(WORKERS)
    });
    assert!(has(&events, "init live"), "runOnInit did not run");

    // MTX_QUERY is the request's query escaped as Go's url.QueryEscape (MediaMTX's),
    // so that the shell the command line starts sees no syntax in it: no $(id) runs.
    let mut publisher =
        Publisher::connect(&relay.http, "live?from=cam&n=1").expect("the publisher is taken");
    let publisher_id = publisher.session.rsplit('/').next().unwrap().to_owned();
    publisher.run_for(Duration::from_millis(800));
    assert!(
        has(
            &events,
            &format!("ready live webRTCSession {publisher_id} from%3Dcam%26n%3D1")
        ),
        "runOnReady did not run with the publisher's id and query"
    );

    let mut viewer = Viewer::connect(&relay.http, "live?lang=en&x=$(id)");
    let id = viewer.session_id().to_owned();
    let query = "lang%3Den%26x%3D%24%28id%29";
    viewer.run_for(Duration::from_millis(500));
    assert!(
        has(&events, &format!("read webRTCSession {id} {query}")),
        "runOnRead did not run with the viewer's id and query"
    );
    assert_eq!(viewer.delete(), 200);
    assert!(
        has(&events, &format!("read-ended {id}")),
        "runOnRead got no SIGINT"
    );
    assert!(
        has(&events, &format!("unread {id} {query}")),
        "runOnUnread did not run"
    );

    assert_eq!(publisher.delete(), 200);
    assert!(has(&events, "ready-ended"), "runOnReady got no SIGINT");
    assert!(
        has(&events, "not-ready live from%3Dcam%26n%3D1"),
        "runOnNotReady did not run with what runOnReady got"
    );

    let status = relay.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "the relay ended with {status}");
    // The relay waits for its hooks' commands to exit: the end is written by then.
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(
        text.lines().any(|l| l == "init-ended"),
        "runOnInit got no SIGINT at shutdown, or was not waited for"
    );
}

#[test]
fn a_path_made_from_a_pattern_runs_its_hooks_while_it_exists() {
    let dir = TempDir::new("hooks");
    let events = dir.path().join("events");
    let init = lasting(&events, "init $MTX_PATH", "init-ended $MTX_PATH");
    let yaml = format!(
        "paths:\n  '~^cam(\\d+)$':\n    runOnInit: \"{}\"\n",
        init.command.replace('"', "\\\"")
    );
    let made = Config::from_yaml(&yaml).expect("a config the relay takes");
    let relay = start(&Config {
        path_patterns: made.path_patterns,
        ..loopback(WORKERS)
    });
    // A viewer's request makes cam7 (no one publishes: it is turned away); the path,
    // unused, is removed at the next housekeeping, and its hook ends with it.
    common::eventually_404(&relay.http, "cam7", "waiting for a publisher");
    assert!(
        has(&events, "init cam7"),
        "runOnInit did not run for a made path"
    );
    assert!(
        has(&events, "init-ended cam7"),
        "runOnInit got no SIGINT when the made path went"
    );
}
