//! The API against a real listener on loopback, over an in-memory [`Backend`] (not the
//! relay): routes, pagination, errors and authentication. The relay binary's answers
//! are checked against api/openapi.yaml in relay/tests/api.rs.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::auth::{AuthConfig, PathRule, Permission, Secret, User};
use crate::config::Document;
use crate::paths::PathState;
use crate::worker::session_info::Role;

struct TestBackend {
    paths: Vec<Arc<ServedPath>>,
    sessions: Mutex<Vec<Arc<SessionInfo>>>,
    /// The config's keys and the config they make, changed by edits.
    config: Mutex<(Document, Arc<Config>)>,
}

const CONFIG: &str = "authInternalUsers:\n- user: admin\n  pass: secret\n  \
                      permissions:\n  - action: api\n- user: any\n  permissions:\n  \
                      - action: read\npathDefaults:\n  sourceOnDemandStartTimeout: 20s\npaths:\n  cams/front:\n    source: demo\n  live:\n  \
                      all_others:\n";

impl TestBackend {
    /// `cams/front` plays the demo and has viewer `v2`; `live` waits for a publisher
    /// and has viewer `v1`; `other` was made from `all_others` for someone's request.
    /// pathDefaults sets one key.
    fn new() -> TestBackend {
        let document = Document::parse(CONFIG).unwrap();
        let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
        TestBackend {
            paths: vec![
                Arc::new(ServedPath::ready("cams/front", 0, Vec::new())),
                Arc::new(ServedPath::new("live", 0, PathState::WaitingForPublisher)),
                Arc::new(ServedPath::new("other", 0, PathState::WaitingForPublisher)),
            ],
            sessions: Mutex::new(vec![
                Arc::new(SessionInfo::new(
                    "v1".into(),
                    "live".into(),
                    Role::Read,
                    "lang=en".into(),
                )),
                Arc::new(SessionInfo::new(
                    "v2".into(),
                    "cams/front".into(),
                    Role::Read,
                    String::new(),
                )),
            ]),
            config: Mutex::new((document, config)),
        }
    }
}

impl Backend for TestBackend {
    fn paths(&self) -> Vec<Arc<ServedPath>> {
        self.paths.clone()
    }

    fn path(&self, name: &str) -> Option<Arc<ServedPath>> {
        self.paths.iter().find(|p| p.name == name).cloned()
    }

    fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.sessions.lock().unwrap().clone()
    }

    fn session(&self, id: &str) -> Option<Arc<SessionInfo>> {
        self.sessions().into_iter().find(|s| s.id == id)
    }

    fn kick(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap();
        let before = sessions.len();
        sessions.retain(|s| s.id != id);
        sessions.len() < before
    }

    fn config(&self) -> Arc<Config> {
        self.config.lock().unwrap().1.clone()
    }

    fn edit(&self, edit: Edit) -> Result<(), EditError> {
        let mut config = self.config.lock().unwrap();
        let (document, edited) = config.0.edited(edit, &Default::default())?;
        *config = (document, Arc::new(edited));
        Ok(())
    }
}

/// The API on a loopback port of its own, with `auth`; its base URL.
fn start(auth: AuthConfig) -> String {
    let opts = ApiOptions {
        allow_origins: vec!["https://console.example".into()],
        read_timeout: Duration::from_secs(10),
        auth: Arc::new(Authenticator::new(auth, Duration::from_secs(10))),
        connections: crate::http::tests::unlimited(),
    };
    crate::http::tests::spawn(move |listener| serve(listener, Arc::new(TestBackend::new()), opts))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Status and JSON body of `method` on `base` + `path`.
fn call(base: &str, method: &str, path: &str) -> (u16, Value) {
    send(base, method, path, "")
}

/// [`call`] with `body` (none if empty).
fn send(base: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("{base}{path}");
    let agent = agent();
    let mut response = match method {
        "GET" => agent.get(&url).call(),
        "POST" => agent.post(&url).send(body),
        "PATCH" => agent.patch(&url).send(body),
        "DELETE" => agent.delete(&url).call(),
        _ => unreachable!(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn error(message: &str) -> Value {
    json!({"status": "error", "error": message})
}

#[test]
fn pages_split_lists_as_mediamtx_does() {
    let page = |q: &str| Page::parse(q).unwrap();
    let json = |list: page::List<u32>| serde_json::to_value(list).unwrap();
    let items: Vec<u32> = (0..5).collect();
    assert_eq!(
        json(page("").of(items.clone())),
        json!({"pageCount": 1, "itemCount": 5, "items": [0, 1, 2, 3, 4]})
    );
    assert_eq!(
        json(page("itemsPerPage=2&page=2").of(items.clone())),
        json!({"pageCount": 3, "itemCount": 5, "items": [4]})
    );
    assert_eq!(
        json(page("itemsPerPage=2&page=9").of(items.clone())),
        json!({"pageCount": 3, "itemCount": 5, "items": []})
    );
    assert_eq!(
        json(page("page=2147483647&itemsPerPage=2147483647").of(items)),
        json!({"pageCount": 1, "itemCount": 5, "items": []})
    );
    assert_eq!(
        json(page("").of(Vec::new())),
        json!({"pageCount": 0, "itemCount": 0, "items": []})
    );
    for bad in [
        "page=-1",
        "page=x",
        "itemsPerPage=0",
        "itemsPerPage=2147483648",
    ] {
        assert!(
            matches!(Page::parse(bad), Err(ApiError::BadRequest(_))),
            "{bad}"
        );
    }
}

#[test]
fn routes_answer_mediamtx_objects_and_errors() {
    let base = start(AuthConfig::mediamtx_default());
    let (status, info) = call(&base, "GET", "/v3/info");
    assert_eq!(status, 200);
    assert_eq!(info["version"], format!("v{}", env!("CARGO_PKG_VERSION")));

    let (status, path) = call(&base, "GET", "/v3/paths/get/cams/front");
    assert_eq!(status, 200, "{path}");
    assert_eq!(path["name"], "cams/front");
    assert_eq!(path["source"], json!({"type": "demoSource", "id": ""}));
    assert_eq!(path["ready"], true);
    assert!(path["readyTime"].is_string(), "{path}");
    assert_eq!(
        path["readers"],
        json!([{"type": "webRTCSession", "id": "v2"}])
    );
    let (_, live) = call(&base, "GET", "/v3/paths/get/live");
    assert_eq!(live["source"], Value::Null, "no publisher yet");
    assert_eq!(live["readyTime"], Value::Null);
    assert_eq!(live["state"], "waitingForPublisher");
    assert_eq!(live["confName"], "live");
    let (_, other) = call(&base, "GET", "/v3/paths/get/other");
    assert_eq!(other["confName"], "all_others");

    let (status, paths) = call(&base, "GET", "/v3/paths/list?itemsPerPage=2&page=1");
    assert_eq!(status, 200);
    assert_eq!(paths["pageCount"], 2);
    assert_eq!(paths["itemCount"], 3);
    assert_eq!(paths["items"][0]["name"], "other", "sorted by name");

    let (status, global) = call(&base, "GET", "/v3/config/global/get");
    assert_eq!(status, 200);
    assert_eq!(global["apiAddress"], ":9997");
    assert_eq!(global["webrtcAddress"], ":8889");
    assert!(global.get("paths").is_none() && global.get("pathDefaults").is_none());
    // Every key: the file's, else relay's default (as MediaMTX answers).
    let (status, defaults) = call(&base, "GET", "/v3/config/pathdefaults/get");
    assert_eq!(status, 200);
    assert_eq!(defaults["sourceOnDemandStartTimeout"], "20s");
    assert_eq!(defaults["sourceOnDemandCloseAfter"], "10s");
    assert_eq!(defaults["source"], "publisher");
    assert_eq!(defaults["maxReaders"], 0);
    assert_eq!(defaults["overridePublisher"], true);
    assert_eq!(defaults["runOnReady"], "");
    let (status, conf) = call(&base, "GET", "/v3/config/paths/get/cams/front");
    assert_eq!(status, 200);
    assert_eq!(conf["name"], "cams/front");
    assert_eq!(conf["source"], "demo");
    let (_, confs) = call(&base, "GET", "/v3/config/paths/list");
    assert_eq!(confs["itemCount"], 3);
    let (status, pattern) = call(&base, "GET", "/v3/config/paths/get/all_others");
    assert_eq!((status, &pattern["source"]), (200, &json!("publisher")));

    assert_eq!(
        call(&base, "GET", "/v3/paths/get/nope"),
        (404, error("path 'nope' not found"))
    );
    assert_eq!(
        call(&base, "GET", "/v3/config/paths/get/nope"),
        (404, error("path configuration 'nope' not found"))
    );
    assert_eq!(
        call(&base, "GET", "/v3/webrtcsessions/get/nope"),
        (404, error("session 'nope' not found"))
    );
    assert_eq!(
        call(&base, "POST", "/v3/webrtcsessions/kick/nope"),
        (404, error("session 'nope' not found"))
    );
    let (status, body) = call(&base, "GET", "/v3/webrtcsessions/list?itemsPerPage=0");
    assert_eq!((status, &body["status"]), (400, &json!("error")), "{body}");
    let (status, _) = call(&base, "GET", "/v3/hlsmuxers/list");
    assert_eq!(status, 404);
    let (status, _) = call(&base, "DELETE", "/v3/info");
    assert_eq!(status, 405);
}

#[test]
fn config_changes_apply_to_the_files_keys_and_only_if_they_load() {
    let base = start(AuthConfig::mediamtx_default());
    let ok = json!({"status": "ok"});
    let conf = |name: &str| call(&base, "GET", &format!("/v3/config/paths/get/{name}"));

    let added = send(
        &base,
        "POST",
        "/v3/config/paths/add/cams/back",
        r#"{"source": "publisher", "maxReaders": 3, "name": "ignored"}"#,
    );
    assert_eq!(added, (200, ok.clone()));
    let (status, back) = conf("cams/back");
    assert_eq!(
        (status, &back["maxReaders"], &back["name"]),
        (200, &json!(3), &json!("cams/back"))
    );
    assert_eq!(
        send(&base, "POST", "/v3/config/paths/add/cams/back", "{}"),
        (400, error("path 'cams/back' already exists"))
    );

    // A patch sets its keys; the others stay, a null among them too.
    let patched = send(
        &base,
        "PATCH",
        "/v3/config/paths/patch/cams/back",
        r#"{"overridePublisher": false, "maxReaders": null}"#,
    );
    assert_eq!(patched, (200, ok.clone()));
    let (_, back) = conf("cams/back");
    assert_eq!(
        (&back["maxReaders"], &back["overridePublisher"]),
        (&json!(3), &json!(false))
    );
    // `live:` is written with no keys: patching it gives it one.
    assert_eq!(
        send(
            &base,
            "PATCH",
            "/v3/config/paths/patch/live",
            r#"{"maxReaders": 1}"#
        ),
        (200, ok.clone())
    );
    assert_eq!(conf("live").1["maxReaders"], 1);

    // A replace leaves only its keys: the rest is pathDefaults'.
    let replaced = send(
        &base,
        "POST",
        "/v3/config/paths/replace/cams/back",
        r#"{"source": "publisher"}"#,
    );
    assert_eq!(replaced, (200, ok.clone()));
    assert_eq!(conf("cams/back").1["maxReaders"], 0);
    assert_eq!(
        send(
            &base,
            "PATCH",
            "/v3/config/pathdefaults/patch",
            r#"{"maxReaders": 7}"#
        ),
        (200, ok.clone())
    );
    assert_eq!(
        conf("cams/back").1["maxReaders"],
        7,
        "inherited from pathDefaults"
    );
    assert_eq!(conf("cams/front").1["maxReaders"], 7);

    // What would not load as a file is refused whole, with the problem named.
    let (status, body) = send(
        &base,
        "PATCH",
        "/v3/config/paths/patch/live",
        r#"{"maxReadrs": 1, "source": "rtsp://cam"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("paths.live.maxReadrs"), "{message}");
    assert_eq!(
        conf("live").1["source"],
        "publisher",
        "nothing of it applied"
    );
    let (status, body) = send(
        &base,
        "PATCH",
        "/v3/config/global/patch",
        r#"{"readTimeout": "0s"}"#,
    );
    assert!(
        status == 400 && body["error"].as_str().unwrap().contains("readTimeout"),
        "{body}"
    );
    let (status, body) = send(
        &base,
        "PATCH",
        "/v3/config/global/patch",
        r#"{"paths": {}}"#,
    );
    assert!(
        status == 400 && body["error"].as_str().unwrap().contains("config/paths"),
        "{body}"
    );
    for junk in ["", "[1]", "{", "null"] {
        let (status, body) = send(&base, "PATCH", "/v3/config/paths/patch/live", junk);
        assert!(
            status == 400 && body["error"].as_str().unwrap().contains("JSON object"),
            "{junk:?}: {body}"
        );
    }
    assert_eq!(
        send(
            &base,
            "PATCH",
            "/v3/config/global/patch",
            r#"{"readTimeout": "7s"}"#
        ),
        (200, ok.clone())
    );
    assert_eq!(
        call(&base, "GET", "/v3/config/global/get").1["readTimeout"],
        "7s"
    );

    assert_eq!(
        call(&base, "DELETE", "/v3/config/paths/delete/cams/back"),
        (200, ok)
    );
    assert_eq!(conf("cams/back").0, 404);
    assert_eq!(
        call(&base, "DELETE", "/v3/config/paths/delete/cams/back"),
        (404, error("path configuration 'cams/back' not found"))
    );
    assert_eq!(
        send(&base, "PATCH", "/v3/config/paths/patch/nope", "{}"),
        (404, error("path configuration 'nope' not found"))
    );
    assert_eq!(call(&base, "GET", "/v3/config/paths/add/x").0, 405);
}

#[test]
fn passwords_are_redacted_as_mediamtx_does() {
    let base = start(AuthConfig::mediamtx_default());
    let (_, global) = call(&base, "GET", "/v3/config/global/get");
    let users = global["authInternalUsers"].as_array().unwrap();
    assert_eq!(users[0]["user"], "admin");
    assert_eq!(users[0]["pass"], "<redacted>");
    assert_eq!(users[1]["pass"], "", "no password to hide");
    assert!(!global.to_string().contains("secret"), "{global}");
}

#[test]
fn kicked_sessions_are_gone() {
    let base = start(AuthConfig::mediamtx_default());
    let (_, sessions) = call(&base, "GET", "/v3/webrtcsessions/list");
    assert_eq!(sessions["itemCount"], 2);
    let (status, session) = call(&base, "GET", "/v3/webrtcsessions/get/v1");
    assert_eq!(status, 200);
    assert_eq!(session["state"], "read");
    assert_eq!(session["query"], "lang=en");
    assert_eq!(session["peerConnectionEstablished"], false);
    assert_eq!(session["rtt"], Value::Null);
    assert_eq!(
        call(&base, "POST", "/v3/webrtcsessions/kick/v1"),
        (200, json!({"status": "ok"}))
    );
    let (status, _) = call(&base, "GET", "/v3/webrtcsessions/get/v1");
    assert_eq!(status, 404);
}

#[test]
fn every_request_needs_the_api_permission() {
    let admin = User {
        user: Some(Secret::parse("admin").unwrap()),
        pass: Secret::parse("secret").unwrap(),
        ips: Vec::new(),
        permissions: vec![Permission {
            action: Action::Api,
            path: PathRule::Any,
        }],
    };
    let base = start(AuthConfig::Internal(vec![admin]));
    let (status, body) = call(&base, "GET", "/v3/info");
    assert_eq!(status, 401);
    assert_eq!(body["status"], "error");
    let url = format!("{base}/v3/info");
    let response = agent()
        .get(&url)
        .header("Authorization", "Basic YWRtaW46c2VjcmV0") // admin:secret
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let wrong = agent()
        .get(&url)
        .header("Authorization", "Basic YWRtaW46bm9wZQ==") // admin:nope
        .call()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    // A browser's preflight carries no credentials: it is answered, with CORS.
    let preflight = agent()
        .options(&url)
        .header("Origin", "https://console.example")
        .header("Access-Control-Request-Method", "GET")
        .call()
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://console.example"
    );
}
