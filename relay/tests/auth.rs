//! Authentication end to end: the relay binary with each `authMethod`, str0m viewers
//! and publishers sending credentials as WHEP and WHIP clients do (the Authorization
//! header), a real HTTP auth hook and a real JWKS served by Python's http.server
//! (testkit's auth_server.py), and tokens signed by a key made for the test.

mod common;

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use relay::auth::{Action, AuthConfig, PathRule, Permission, Secret, User};
use relay::config::Config;
use relay_testkit::auth_server::AuthServer;
use relay_testkit::config::{demo, loopback, paths, publisher};
use relay_testkit::jwt::{self, Signer};
use relay_testkit::process::RelayProcess;
use relay_testkit::publisher::Publisher;
use relay_testkit::viewer::Viewer;
use relay_testkit::whep::{basic, Reply};
use str0m::media::MediaKind;

use common::{assert_demo_stream, start, WORKERS};

fn permission(action: Action, path: &str) -> Permission {
    Permission {
        action,
        path: PathRule::parse(path).unwrap(),
    }
}

/// `demo` plays the clip, `live` waits for a publisher; the metrics are open to the
/// test (excluded from the method, or an `any` user from this host).
fn config(auth: AuthConfig) -> Config {
    Config {
        paths: paths([("demo", demo()), ("live", publisher(true))]),
        auth,
        ..loopback(WORKERS)
    }
}

/// A viewer that must be refused: the relay's status and what it said.
fn refused_viewer(relay: &RelayProcess, path: &str, authorization: Option<&str>) -> Reply {
    match Viewer::connect_as(&relay.http, path, authorization) {
        Ok(_) => panic!("{path}: a viewer with {authorization:?} was let in"),
        Err(reply) => reply,
    }
}

fn refused_publisher(relay: &RelayProcess, authorization: Option<&str>) -> Reply {
    match Publisher::connect_as(&relay.http, "live", authorization) {
        Ok(_) => panic!("a publisher with {authorization:?} was let in"),
        Err(reply) => reply,
    }
}

/// A viewer let in by `authorization` gets the demo.
fn watches_demo(relay: &RelayProcess, authorization: &str) {
    let mut v = Viewer::connect_as(&relay.http, "demo", Some(authorization))
        .unwrap_or_else(|r| panic!("refused ({}): {}", r.status, r.body));
    v.run_for(Duration::from_secs(2));
    assert!(assert_demo_stream(&v) > 30, "the viewer got too little");
}

/// A publisher let in by `authorization` reaches a viewer let in by `viewer`.
fn publishes_to(relay: &RelayProcess, authorization: &str, viewer: &str) {
    let mut p = Publisher::connect_as(&relay.http, "live", Some(authorization))
        .unwrap_or_else(|r| panic!("publisher refused ({}): {}", r.status, r.body));
    let publishing = thread::spawn(move || {
        p.run_for(Duration::from_secs(4));
        p
    });
    thread::sleep(Duration::from_millis(500));
    let mut v = Viewer::connect_as(&relay.http, "live", Some(viewer))
        .unwrap_or_else(|r| panic!("viewer refused ({}): {}", r.status, r.body));
    v.run_for(Duration::from_secs(2));
    publishing.join().unwrap();
    let video = v.ssrc_of(MediaKind::Video).expect("the publisher's video");
    assert!(v.received.streams[&video].len() > 20, "too little video");
}

fn assert_401(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
}

#[test]
fn internal_users_by_password_address_and_permission() {
    // `echo -n s3cret | argon2 saltsalt -id -e`, and the base64 of SHA-256("pub-pass").
    let argon = "argon2:$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$4ea0UeIFo5/s0XTBhHNq7wgzF7AidUDgWPHewPMEz/4";
    let user = |name: &str, pass: &str, ips: &[&str], permissions| User {
        user: Some(Secret::parse(name).unwrap()),
        pass: Secret::parse(pass).unwrap(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        permissions,
    };
    let AuthConfig::Internal(defaults) = AuthConfig::mediamtx_default() else {
        unreachable!()
    };
    let relay = start(&config(AuthConfig::Internal(vec![
        user(
            "viewer",
            argon,
            &[],
            vec![permission(Action::Read, "~^(demo|live)$")],
        ),
        user(
            "pub",
            "sha256:yR98dUU0Fta8T8mH2VXjQER5184qbQ8Ciw0nbzNoYQc=",
            &[],
            vec![permission(Action::Publish, "live")],
        ),
        user(
            "faraway",
            "s3cret",
            &["192.0.2.0/24"],
            vec![permission(Action::Read, "")],
        ),
        // MediaMTX's localhost user: the test reads the metrics.
        defaults[1].clone(),
    ])));
    let reply = refused_viewer(&relay, "demo", None);
    assert_401(&reply, "no credentials");
    assert!(
        reply.body.contains("authentication needed"),
        "{}",
        reply.body
    );
    assert_401(
        &refused_viewer(&relay, "demo", Some(&basic("viewer", "S3cret"))),
        "wrong password",
    );
    assert_401(
        &refused_viewer(&relay, "demo", Some(&basic("faraway", "s3cret"))),
        "wrong address",
    );
    assert_401(
        &refused_publisher(&relay, Some(&basic("viewer", "s3cret"))),
        "reader publishing",
    );
    assert_401(
        &refused_publisher(&relay, Some(&basic("pub", "pub"))),
        "wrong password",
    );
    watches_demo(&relay, &basic("viewer", "s3cret"));
    publishes_to(
        &relay,
        &basic("pub", "pub-pass"),
        &basic("viewer", "s3cret"),
    );
    // The failures were logged with the address, never with the password tried.
    assert!(
        relay.logs_eventually("authentication failed"),
        "{}",
        relay.log_tail()
    );
    let log = relay.log().join("\n");
    assert!(!log.contains("S3cret"), "a password in the log");
}

#[test]
fn credentials_in_the_query_string_are_refused() {
    let relay = start(&config(AuthConfig::mediamtx_default()));
    let agent = relay_testkit::http::agent(Duration::from_secs(10));
    let url = format!("{}/demo/whep?user=any&pass=x", relay.http);
    let reply = relay_testkit::whep::post_offer(&agent, &url, "v=0\r\n").unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("Authorization header"),
        "{}",
        reply.body
    );
}

#[test]
fn the_http_hook_decides_and_is_told_what_mediamtx_tells_it() {
    let hook = AuthServer::start(r#"{"keys":[]}"#).unwrap();
    let relay = start(&config(AuthConfig::Http {
        address: hook.hook(),
        exclude: vec![permission(Action::Metrics, "")],
    }));
    assert_401(&refused_viewer(&relay, "demo", None), "no credentials");
    assert_401(
        &refused_viewer(&relay, "demo", Some(&basic("hook-user", "nope"))),
        "403",
    );
    assert_401(
        &refused_publisher(&relay, Some("Bearer not-the-token")),
        "403 to a token",
    );
    watches_demo(&relay, &basic("hook-user", "hook-pass"));
    publishes_to(
        &relay,
        "Bearer hook-token",
        &basic("hook-user", "hook-pass"),
    );
    let asked = hook.requests();
    let read = asked
        .iter()
        .find(|r| r["action"] == "read" && r["password"] == "hook-pass")
        .unwrap_or_else(|| panic!("no read with the right password among {asked:?}"));
    assert_eq!(read["user"], "hook-user");
    assert_eq!(read["ip"], "127.0.0.1");
    assert_eq!(read["path"], "demo");
    assert_eq!(read["protocol"], "webrtc");
    let publish = asked
        .iter()
        .find(|r| r["action"] == "publish" && r["token"] == "hook-token");
    assert_eq!(
        publish.expect("the publish asked with its token")["path"],
        "live"
    );
    // The excluded metrics were never asked about.
    assert!(asked.iter().all(|r| r["action"] != "metrics"), "{asked:?}");
}

#[test]
fn a_hook_that_does_not_answer_or_cannot_be_reached_refuses() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for address in [
        format!("http://{}/auth", silent.local_addr().unwrap()),
        format!("http://{closed}/auth"),
    ] {
        let relay = start(&Config {
            read_timeout: Duration::from_secs(1),
            ..config(AuthConfig::Http {
                address: address.clone(),
                exclude: vec![permission(Action::Metrics, "")],
            })
        });
        assert_401(
            &refused_viewer(&relay, "demo", Some(&basic("hook-user", "hook-pass"))),
            &address,
        );
        assert!(
            relay.logs_eventually("authHTTPAddress"),
            "{}",
            relay.log_tail()
        );
    }
}

#[test]
fn jwts_signed_by_the_jwks_grant_what_their_claim_says() {
    let signer = Signer::new("relay-tests");
    let server = AuthServer::start(&signer.jwks).unwrap();
    let relay = start(&config(AuthConfig::Jwt {
        jwks: server.jwks(),
        claim_key: "mediamtx_permissions".into(),
        issuer: Some("https://id.example".into()),
        audience: Some("relay".into()),
        exclude: vec![permission(Action::Metrics, "")],
    }));
    let token = |permissions: serde_json::Value, edit: fn(&mut serde_json::Value)| {
        let mut claims = serde_json::json!({
            "iss": "https://id.example", "aud": "relay", "exp": jwt::now() + 300,
            "mediamtx_permissions": permissions,
        });
        edit(&mut claims);
        format!("Bearer {}", signer.sign(&claims))
    };
    let reader = serde_json::json!([{"action": "read", "path": "~^(demo|live)$"}]);
    let publisher = serde_json::json!([{"action": "publish", "path": "live"}]);
    let read = token(reader.clone(), |_| {});
    watches_demo(&relay, &read);
    // The token as the password of Basic credentials, as MediaMTX takes it too.
    let raw = read.strip_prefix("Bearer ").unwrap();
    watches_demo(&relay, &basic("anyone", raw));
    publishes_to(&relay, &token(publisher, |_| {}), &read);

    assert_401(&refused_viewer(&relay, "demo", None), "no token");
    assert_401(
        &refused_publisher(&relay, Some(&read)),
        "a reader's token publishing",
    );
    let expired = token(reader.clone(), |c| c["exp"] = (jwt::now() - 60).into());
    assert_401(&refused_viewer(&relay, "demo", Some(&expired)), "expired");
    let wrong_issuer = token(reader.clone(), |c| c["iss"] = "https://evil.example".into());
    assert_401(
        &refused_viewer(&relay, "demo", Some(&wrong_issuer)),
        "issuer",
    );
    let wrong_audience = token(reader.clone(), |c| c["aud"] = "someone-else".into());
    assert_401(
        &refused_viewer(&relay, "demo", Some(&wrong_audience)),
        "audience",
    );
    let forger = Signer::new("relay-tests");
    let forged = format!(
        "Bearer {}",
        forger.sign(&serde_json::json!({
            "iss": "https://id.example", "aud": "relay", "exp": jwt::now() + 300,
            "mediamtx_permissions": reader,
        }))
    );
    assert_401(
        &refused_viewer(&relay, "demo", Some(&forged)),
        "signed by another key",
    );
}
