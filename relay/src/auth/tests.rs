use std::io::{Read as _, Write as _};
use std::net::{IpAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;

use super::failures::Verdict;
use super::jwt::{self, Claims, Jwks};
use super::*;
use relay_testkit::jwt::{now as now_secs, Signer};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn request<'a>(action: Action, path: &'a str, from: &str, user: &str, pass: &str) -> Request<'a> {
    Request {
        action,
        path,
        ip: ip(from),
        credentials: Credentials {
            user: user.into(),
            pass: pass.into(),
            token: String::new(),
        },
        query: "",
        protocol: "webrtc",
    }
}

fn permission(action: Action, path: &str) -> Permission {
    Permission {
        action,
        path: PathRule::parse(path).unwrap(),
    }
}

fn internal(users: Vec<User>) -> Authenticator {
    Authenticator::new(AuthConfig::Internal(users), Duration::from_secs(1))
}

fn user(name: &str, pass: &str, ips: &[&str], permissions: Vec<Permission>) -> User {
    User {
        user: (name != "any").then(|| Secret::parse(name).unwrap()),
        pass: Secret::parse(pass).unwrap(),
        ips: ips.iter().map(|n| n.parse().unwrap()).collect(),
        permissions,
    }
}

#[test]
fn mediamtx_defaults_let_anyone_publish_and_read_and_only_this_host_scrape() {
    let auth = Authenticator::new(AuthConfig::mediamtx_default(), Duration::from_secs(1));
    let allowed = |action, from| {
        auth.authenticate(&request(action, "cam", from, "", ""))
            .is_ok()
    };
    assert!(allowed(Action::Read, "203.0.113.9"));
    assert!(allowed(Action::Publish, "203.0.113.9"));
    assert!(allowed(Action::Metrics, "127.0.0.1"));
    assert!(allowed(Action::Api, "::1"));
    assert!(!allowed(Action::Metrics, "203.0.113.9"));
    assert!(!allowed(Action::Pprof, "10.0.0.1"));
}

#[test]
fn internal_users_by_password_form_address_and_permission() {
    let sha = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, b"s3cret"));
    // `echo -n s3cret | argon2 saltsalt -id -e`, Debian's reference argon2 tool, as
    // MediaMTX's docs make them.
    let argon = "argon2:$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$4ea0UeIFo5/s0XTBhHNq7wgzF7AidUDgWPHewPMEz/4";
    let auth = internal(vec![
        user("plain", "s3cret", &[], vec![permission(Action::Read, "")]),
        user(
            "hashed",
            &format!("sha256:{sha}"),
            &[],
            vec![permission(Action::Publish, "cam")],
        ),
        user(
            "argon",
            argon,
            &["10.0.0.0/8"],
            vec![permission(Action::Read, "~^cams/")],
        ),
    ]);
    let ok = |r: Request| auth.authenticate(&r).is_ok();
    assert!(ok(request(Action::Read, "x", "1.2.3.4", "plain", "s3cret")));
    assert!(!ok(request(Action::Read, "x", "1.2.3.4", "plain", "wrong")));
    assert!(!ok(request(
        Action::Publish,
        "x",
        "1.2.3.4",
        "plain",
        "s3cret"
    )));
    assert!(ok(request(
        Action::Publish,
        "cam",
        "1.2.3.4",
        "hashed",
        "s3cret"
    )));
    assert!(!ok(request(
        Action::Publish,
        "cam2",
        "1.2.3.4",
        "hashed",
        "s3cret"
    )));
    assert!(!ok(request(
        Action::Publish,
        "cam",
        "1.2.3.4",
        "hashed",
        &format!("sha256:{sha}")
    )));
    assert!(ok(request(
        Action::Read,
        "cams/front",
        "10.1.2.3",
        "argon",
        "s3cret"
    )));
    assert!(!ok(request(
        Action::Read,
        "cams/front",
        "11.1.2.3",
        "argon",
        "s3cret"
    )));
    assert!(!ok(request(
        Action::Read,
        "front",
        "10.1.2.3",
        "argon",
        "s3cret"
    )));
    assert!(!ok(request(
        Action::Read,
        "cams/front",
        "10.1.2.3",
        "argon",
        "S3cret"
    )));
    // No credentials where a user needs them: the client is asked for some.
    let denied = auth
        .authenticate(&request(Action::Read, "x", "1.2.3.4", "", ""))
        .unwrap_err();
    assert!(denied.ask_credentials);
    let denied = auth
        .authenticate(&request(Action::Read, "x", "1.2.3.4", "plain", "wrong"))
        .unwrap_err();
    assert!(!denied.ask_credentials);
}

#[test]
fn secrets_are_checked_for_their_form_when_read() {
    assert!(Secret::parse("sha256:not base64!").is_err());
    assert!(
        Secret::parse("sha256:AAAA").is_err(),
        "3 bytes are no SHA-256"
    );
    assert!(Secret::parse("argon2:$argon2id$nonsense").is_err());
    assert!(
        Secret::parse("argon2:$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ").is_err(),
        "no hash"
    );
    assert!(Secret::parse("argon2:$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA").is_err());
    // argon2i too (`-i -t 2`).
    let argon2i = "argon2:$argon2i$v=19$m=4096,t=2,p=1$c2FsdHNhbHQ$Rn8YHjHPQrt/kM3j5kQ6JTaiHkWYF7BPeYAt7PFJOoA";
    assert!(Secret::parse(argon2i).unwrap().check("s3cret"));
    assert!(PathRule::parse("~(").is_err());
}

#[test]
fn credentials_come_from_basic_or_bearer() {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("me:pa:ss")
    );
    assert_eq!(
        Credentials::from_header(Some(&basic)),
        Credentials {
            user: "me".into(),
            pass: "pa:ss".into(),
            token: String::new()
        }
    );
    assert_eq!(
        Credentials::from_header(Some("Bearer abc.def.ghi")).token,
        "abc.def.ghi"
    );
    for junk in [
        "Basic !!!",
        "Basic",
        "Digest x",
        "",
        " ",
        "Bearer",
        "Basic bm9jb2xvbg==",
    ] {
        assert_eq!(
            Credentials::from_header(Some(junk)),
            Credentials::default(),
            "{junk}"
        );
    }
    assert!(query_has_credentials("a=1&user=me&pass=x"));
    assert!(query_has_credentials("jwt=x"));
    assert!(!query_has_credentials("autoplay=1"));
}

#[test]
fn failures_limit_an_address_for_the_rest_of_its_window() {
    let mut failures = Failures::default();
    let t0 = Instant::now();
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    for i in 0..Failures::LIMIT - 1 {
        assert!(!failures.failed(a, t0 + Duration::from_secs(u64::from(i))));
    }
    assert_eq!(
        failures.verdict(a, t0 + Duration::from_secs(20)),
        Verdict::Check
    );
    assert!(
        failures.failed(a, t0 + Duration::from_secs(20)),
        "the limit is reached once"
    );
    assert_eq!(
        failures.verdict(a, t0 + Duration::from_secs(20)),
        Verdict::Limited(Duration::from_secs(40))
    );
    assert_eq!(
        failures.verdict(b, t0 + Duration::from_secs(20)),
        Verdict::Check
    );
    assert_eq!(failures.verdict(a, t0 + Failures::WINDOW), Verdict::Check);
    // A new window starts from zero.
    assert!(!failures.failed(a, t0 + Failures::WINDOW));
    assert_eq!(failures.verdict(a, t0 + Failures::WINDOW), Verdict::Check);
}

#[test]
fn jwt_grants_its_claims_permissions_when_signed_by_the_set() {
    let signer = Signer::new("k1");
    let other = Signer::new("k1");
    let claims = Claims {
        key: "mediamtx_permissions",
        issuer: Some("https://id.example"),
        audience: None,
    };
    let fetches = std::cell::Cell::new(0);
    let fetch = |_: &str| {
        fetches.set(fetches.get() + 1);
        Ok(signer.jwks.clone())
    };
    let jwks = Jwks::default();
    let t0 = Instant::now();
    let good = serde_json::json!({
        "iss": "https://id.example", "exp": now_secs() + 60,
        "mediamtx_permissions": [{"action": "read", "path": "cam"}, {"action": "publish"}],
    });
    let granted = jwks
        .verify("u", &signer.sign(&good), &claims, t0, fetch)
        .unwrap();
    assert_eq!(
        granted,
        vec![
            permission(Action::Read, "cam"),
            permission(Action::Publish, "")
        ]
    );
    // As a JSON string too.
    let mut as_string = good.clone();
    as_string["mediamtx_permissions"] =
        serde_json::Value::String(r#"[{"action":"read","path":"~^c"}]"#.into());
    let granted = jwks
        .verify("u", &signer.sign(&as_string), &claims, t0, fetch)
        .unwrap();
    assert_eq!(granted, vec![permission(Action::Read, "~^c")]);
    assert_eq!(fetches.get(), 1, "the set is fetched once");

    let refused = |token: String| jwks.verify("u", &token, &claims, t0, fetch);
    let mut expired = good.clone();
    expired["exp"] = (now_secs() - 3600).into();
    assert!(refused(signer.sign(&expired)).is_err());
    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = "https://evil.example".into();
    assert!(refused(signer.sign(&wrong_issuer)).is_err());
    assert!(
        refused(other.sign(&good)).is_err(),
        "signed by a key not in the set"
    );
    assert!(refused("not.a.jwt".into()).is_err());
    for junk in ["", ".", "..", "a.b", "\u{0}"] {
        assert!(refused(junk.into()).is_err(), "{junk:?}");
    }
    assert!(query_has_credentials("user") && !query_has_credentials(""));
    let mut no_claim = good.clone();
    no_claim
        .as_object_mut()
        .unwrap()
        .remove("mediamtx_permissions");
    assert!(refused(signer.sign(&no_claim))
        .unwrap_err()
        .contains("mediamtx_permissions"));
    // An unknown kid fetches the set again, once per RETRY.
    let rotated = Signer::new("k2");
    assert!(refused(rotated.sign(&good)).is_err());
    assert!(refused(rotated.sign(&good)).is_err());
    assert_eq!(fetches.get(), 1, "not within RETRY of the first fetch");
}

#[test]
fn a_jwt_cannot_choose_hmac_with_the_public_key_as_secret() {
    let signer = Signer::new("k1");
    let claims = Claims {
        key: "mediamtx_permissions",
        issuer: None,
        audience: None,
    };
    let set: serde_json::Value = serde_json::from_str(&signer.jwks).unwrap();
    let x = set["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"mediamtx_permissions": [{"action": "publish"}]}),
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    let error = Jwks::default()
        .verify("u", &forged, &claims, Instant::now(), |_| {
            Ok(signer.jwks.clone())
        })
        .unwrap_err();
    assert!(error.contains("does not fit"), "{error}");
}

/// A JWKS server on loopback that answers its requests in turn with `sets`, each only
/// once the test says so, and tells when a request has arrived: a test can hold a fetch
/// in flight. Done with `sets`, it stops listening.
struct HeldJwks {
    url: String,
    arrived: mpsc::Receiver<()>,
    answer: mpsc::Sender<()>,
    /// For each request, whether it was answered when the test said so, rather than
    /// after [`HeldJwks::PATIENCE`] (which only keeps a failing test from hanging).
    served: thread::JoinHandle<Vec<bool>>,
}

impl HeldJwks {
    const PATIENCE: Duration = Duration::from_secs(10);

    fn start(sets: Vec<String>) -> HeldJwks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let (arrived_tx, arrived) = mpsc::channel();
        let (answer, answer_rx) = mpsc::channel();
        let served = thread::spawn(move || {
            let serve = |set: &String| {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    stream.read_exact(&mut byte).unwrap();
                    head.push(byte[0]);
                }
                arrived_tx.send(()).unwrap();
                let when_told = answer_rx.recv_timeout(Self::PATIENCE).is_ok();
                let length = set.len();
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {length}\r\nConnection: close\r\n\r\n{set}"
                )
                .unwrap();
                when_told
            };
            sets.iter().map(serve).collect()
        });
        HeldJwks {
            url,
            arrived,
            answer,
            served,
        }
    }
}

/// The key set of `signers` together.
fn key_set(signers: &[&Signer]) -> String {
    let keys: Vec<serde_json::Value> = signers
        .iter()
        .flat_map(|s| {
            let set: serde_json::Value = serde_json::from_str(&s.jwks).unwrap();
            set["keys"].as_array().unwrap().clone()
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[test]
fn a_token_whose_key_is_held_does_not_wait_for_a_fetch_of_the_set() {
    let (held, rotated) = (Signer::new("k1"), Signer::new("k2"));
    let both = key_set(&[&held, &rotated]);
    let server = HeldJwks::start(vec![key_set(&[&held]), both.clone(), both]);
    let config = AuthConfig::Jwt {
        jwks: server.url.clone(),
        claim_key: "mediamtx_permissions".into(),
        issuer: None,
        audience: None,
        exclude: Vec::new(),
    };
    let auth = Authenticator::new(config, Duration::from_secs(60));
    let claims = serde_json::json!({
        "exp": now_secs() + 600, "mediamtx_permissions": [{"action": "read"}],
    });
    let (held, rotated) = (&held, &rotated);
    let reads = |signer: &Signer, now: Instant| {
        let mut request = request(Action::Read, "cam", "192.0.2.1", "", "");
        request.credentials.token = signer.sign(&claims);
        auth.authenticate_at(&request, now)
    };
    // The first token fetches the set.
    server.answer.send(()).unwrap();
    let t0 = Instant::now();
    reads(held, t0).unwrap();
    server.arrived.recv().unwrap();
    thread::scope(|scope| {
        // A token of a key the set lacks fetches it again, and waits for it...
        let later = t0 + jwt::RETRY;
        let new_key = scope.spawn(move || reads(rotated, later));
        server.arrived.recv().unwrap();
        // ...while a token of a held key is decided.
        let decided = reads(held, later);
        server.answer.send(()).unwrap();
        assert!(decided.is_ok(), "{decided:?}");
        assert!(new_key.join().unwrap().is_ok(), "the fetch brought k2");

        // Due for its refresh, the set is fetched by the first token to find it so;
        // the others use the set held meanwhile.
        let hour = later + jwt::REFRESH;
        let refreshing = scope.spawn(move || reads(held, hour));
        server.arrived.recv().unwrap();
        let decided = reads(rotated, hour);
        server.answer.send(()).unwrap();
        assert!(decided.is_ok(), "{decided:?}");
        assert!(refreshing.join().unwrap().is_ok());
    });
    assert_eq!(
        server.served.join().unwrap(),
        [true; 3],
        "a fetch was answered only after the test gave up waiting: a token of a held key \
         waited for it"
    );
}
