//! The control API of the relay binary, while a WHIP publisher streams and a WHEP viewer
//! watches: every route's answer is checked against api/openapi.yaml (a field the file
//! does not describe, a required one missing, or a wrong type fails), and kicking a
//! session, pagination, errors and authentication behave as MediaMTX's.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use relay::auth::{Action, AuthConfig, PathRule, Permission, Secret, User};
use relay::config::{Config, PathConfig};
use relay::hooks::{Hook, PathHooks};
use relay_testkit::config::{demo, loopback, paths, publisher};
use relay_testkit::publisher::Publisher;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;
use serde_json::{json, Value};

use common::{start, WORKERS};

/// api/openapi.yaml, as JSON.
struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.yaml");
        let text = std::fs::read_to_string(file).expect("api/openapi.yaml");
        Spec(serde_yaml_ng::from_str(&text).expect("api/openapi.yaml is YAML"))
    }

    /// The routes the file describes, with their methods.
    fn routes(&self) -> BTreeSet<(String, String)> {
        let paths = self.0["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(route, item)| {
                let methods = item.as_object().expect("a path item");
                methods.keys().map(|m| (route.clone(), m.to_uppercase()))
            })
            .collect()
    }

    /// The schema of the JSON answer `status` to `method` on `route`.
    fn response(&self, route: &str, method: &str, status: u16) -> &Value {
        let schema = &self.0["paths"][route][method.to_lowercase()]["responses"]
            [status.to_string()]["content"]["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "api/openapi.yaml has no {status} answer to {method} {route}"
        );
        schema
    }

    /// What is wrong with `value` as an instance of `schema`, each with where.
    fn problems(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.check(schema, value, "$", &mut problems);
        problems
    }

    /// OpenAPI 3.0's subset that the file uses: `$ref`, `nullable`, `allOf`, `oneOf`,
    /// `enum`, `type`, `properties` (closed: a field not described is a problem),
    /// `required`, `items`.
    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            let target = &self.0["components"]["schemas"][name];
            assert!(!target.is_null(), "no schema {name}");
            return self.check(target, value, at, problems);
        }
        if value.is_null() {
            if schema["nullable"] != true {
                problems.push(format!("{at}: null, and the schema is not nullable"));
            }
            return;
        }
        for sub in schema["allOf"].as_array().into_iter().flatten() {
            self.check(sub, value, at, problems);
        }
        if let Some(subs) = schema["oneOf"].as_array() {
            let matching = subs
                .iter()
                .filter(|sub| self.problems(sub, value).is_empty())
                .count();
            if matching != 1 {
                problems.push(format!("{at}: matches {matching} of oneOf, not 1"));
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                problems.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        let fits = match schema["type"].as_str() {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("number") => value.is_number(),
            Some("integer") => match schema["format"].as_str() {
                Some("uint64") => value.is_u64(),
                _ => value.is_i64() || value.is_u64(),
            },
            Some(other) => panic!("unexpected type {other}"),
        };
        if !fits {
            problems.push(format!("{at}: {value} is not of type {}", schema["type"]));
            return;
        }
        if let (Some(properties), Some(fields)) =
            (schema["properties"].as_object(), value.as_object())
        {
            for (name, field) in fields {
                match properties.get(name) {
                    Some(property) => {
                        self.check(property, field, &format!("{at}.{name}"), problems)
                    }
                    None => problems.push(format!("{at}.{name}: not described")),
                }
            }
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("a field name");
                if !fields.contains_key(name) {
                    problems.push(format!("{at}.{name}: required, missing"));
                }
            }
        }
        if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
            for (i, item) in values.iter().enumerate() {
                self.check(items, item, &format!("{at}[{i}]"), problems);
            }
        }
    }
}

/// The API of one relay, its answers checked against the file.
struct Api {
    base: String,
    spec: Spec,
    agent: ureq::Agent,
    authorization: Option<String>,
    /// The (route, method) pairs whose answers were checked.
    checked: BTreeSet<(String, String)>,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            spec: Spec::load(),
            agent: relay_testkit::http::agent(Duration::from_secs(10)),
            authorization: None,
            checked: BTreeSet::new(),
        }
    }

    /// Status and JSON body of `method` on `url` (a path and query).
    fn call(&self, method: &str, url: &str) -> (u16, Value) {
        self.send(method, url, "")
    }

    /// [`Api::call`] with `body`.
    fn send(&self, method: &str, url: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{url}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let request = request.body(body.to_owned()).unwrap();
        let mut response = self.agent.run(request).expect("HTTP");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("a body");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("{method} {url} answered {status} with no JSON ({e}): {body}")
        });
        (status, json)
    }

    /// `method` on `url`, which the file describes as `route`: its JSON body, which must
    /// be the file's answer `status`.
    fn checked(&mut self, method: &str, route: &str, url: &str, status: u16) -> Value {
        self.checked_with(method, route, url, "", status)
    }

    /// [`Api::checked`] with `body` sent.
    fn checked_with(
        &mut self,
        method: &str,
        route: &str,
        url: &str,
        body: &str,
        status: u16,
    ) -> Value {
        let (got, body) = self.send(method, url, body);
        assert_eq!(got, status, "{method} {url}: {body}");
        let problems = self
            .spec
            .problems(self.spec.response(route, method, status), &body);
        assert!(
            problems.is_empty(),
            "{method} {url} answered what api/openapi.yaml does not describe:\n{}\n{body:#}",
            problems.join("\n")
        );
        self.checked.insert((route.to_string(), method.to_string()));
        body
    }

    fn get(&mut self, route: &str, url: &str) -> Value {
        self.checked("GET", route, url, 200)
    }
}

/// MediaMTX's default users, and `ops`: a change of authentication, which reloads.
const USERS: &str = r#"{"authInternalUsers": [
    {"user": "any", "permissions": [{"action": "publish"}, {"action": "read"}]},
    {"user": "any", "ips": ["127.0.0.1", "::1"], "permissions": [{"action": "api"}]},
    {"user": "ops", "pass": "secret", "permissions": [{"action": "api"}]}
]}"#;

fn with_api(config: Config) -> Config {
    Config {
        api: true,
        api_address: "127.0.0.1:0".parse().unwrap(),
        ..config
    }
}

fn ids(list: &Value) -> Vec<String> {
    let items = list["items"].as_array().expect("items");
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_route_answers_what_api_openapi_yaml_describes_and_a_kick_ends_the_viewer() {
    // A hook, so that the config's answer has one.
    let live = PathConfig {
        hooks: PathHooks {
            on_read: Some(Hook {
                command: "true".into(),
                restart: false,
            }),
            ..PathHooks::default()
        },
        ..publisher(false)
    };
    let relay = start(&with_api(Config {
        paths: paths([("live", live), ("demo", demo())]),
        // Counters reach the API at each report: often, so the test waits little.
        rtcp_sender_report_interval: Duration::from_millis(200),
        ..loopback(WORKERS)
    }));
    let mut api = Api::new(
        relay
            .api
            .as_deref()
            .expect("the relay printed its API's URL"),
    );

    let mut p = Publisher::connect(&relay.http, "live").expect("the publisher is taken");
    let publisher_id = p.session.rsplit('/').next().unwrap().to_owned();
    let publishing = thread::spawn(move || p.run_for(Duration::from_secs(3)));
    let v = Viewer::connect(&relay.http, "demo");
    let viewer_id = v.session_id().to_owned();
    let v = Driven::start(v);
    let session_url = format!("/v3/webrtcsessions/get/{viewer_id}");
    let flowing = eventually(Duration::from_secs(5), || {
        let (_, s) = api.call("GET", &session_url);
        s["peerConnectionEstablished"] == true && s["outboundRTPPackets"].as_u64() > Some(50)
    });
    assert!(flowing, "{:#}", api.call("GET", &session_url).1);

    let info = api.get("/v3/info", "/v3/info");
    assert!(info["version"].as_str().unwrap().starts_with('v'));
    let global = api.get("/v3/config/global/get", "/v3/config/global/get");
    assert_eq!(global["api"], true);
    let defaults = api.get("/v3/config/pathdefaults/get", "/v3/config/pathdefaults/get");
    assert_eq!(defaults["source"], "publisher");
    let confs = api.get("/v3/config/paths/list", "/v3/config/paths/list");
    assert_eq!(confs["itemCount"], 2);
    let conf = api.get("/v3/config/paths/get/{name}", "/v3/config/paths/get/live");
    assert_eq!(conf["source"], "publisher");
    assert_eq!(conf["runOnRead"], "true");

    let paths = api.get("/v3/paths/list", "/v3/paths/list");
    assert_eq!(paths["itemCount"], 2);
    let live = api.get("/v3/paths/get/{name}", "/v3/paths/get/live");
    assert_eq!(
        live["source"],
        json!({"type": "webRTCSession", "id": publisher_id})
    );
    assert_eq!(live["ready"], true);
    assert_eq!(live["tracks"], json!(["H264", "Opus"]));
    let demo_path = api.get("/v3/paths/get/{name}", "/v3/paths/get/demo");
    assert_eq!(
        demo_path["readers"],
        json!([{"type": "webRTCSession", "id": viewer_id}])
    );
    assert!(demo_path["outboundBytes"].as_u64() > Some(0), "{demo_path}");
    assert!(demo_path["inboundBytes"].as_u64() > Some(0), "{demo_path}");

    let sessions = api.get("/v3/webrtcsessions/list", "/v3/webrtcsessions/list");
    let mut all = ids(&sessions);
    all.sort();
    let mut want = vec![publisher_id.clone(), viewer_id.clone()];
    want.sort();
    assert_eq!(all, want);
    let session = api.get("/v3/webrtcsessions/get/{id}", &session_url);
    assert_eq!(session["state"], "read");
    assert_eq!(session["path"], "demo");
    assert!(session["remoteAddr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let publisher = api.get(
        "/v3/webrtcsessions/get/{id}",
        &format!("/v3/webrtcsessions/get/{publisher_id}"),
    );
    assert_eq!(publisher["state"], "publish");
    assert!(
        publisher["inboundRTPPackets"].as_u64() > Some(0),
        "{publisher}"
    );

    // Pagination: one session a page, in the order they came.
    let route = "/v3/webrtcsessions/list";
    let first = api.get(route, "/v3/webrtcsessions/list?itemsPerPage=1");
    let second = api.get(route, "/v3/webrtcsessions/list?itemsPerPage=1&page=1");
    assert_eq!(
        (&first["pageCount"], &first["itemCount"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(ids(&first), [publisher_id.as_str()]);
    assert_eq!(ids(&second), [viewer_id.as_str()]);
    let past = api.get(route, "/v3/webrtcsessions/list?itemsPerPage=1&page=5");
    assert_eq!(past["items"], json!([]));

    // Errors, as MediaMTX's.
    api.checked("GET", route, "/v3/webrtcsessions/list?itemsPerPage=0", 400);
    api.checked("GET", "/v3/paths/list", "/v3/paths/list?page=x", 400);
    api.checked(
        "GET",
        "/v3/config/paths/list",
        "/v3/config/paths/list?itemsPerPage=-1",
        400,
    );
    api.checked("GET", "/v3/paths/get/{name}", "/v3/paths/get/nope", 404);
    api.checked(
        "GET",
        "/v3/config/paths/get/{name}",
        "/v3/config/paths/get/nope",
        404,
    );
    api.checked(
        "GET",
        "/v3/webrtcsessions/get/{id}",
        "/v3/webrtcsessions/get/nope",
        404,
    );
    api.checked(
        "POST",
        "/v3/webrtcsessions/kick/{id}",
        "/v3/webrtcsessions/kick/nope",
        404,
    );

    // Config changes, applied at once: a path added is served, one deleted is not.
    let ok = json!({"status": "ok"});
    let (global, defaults) = ("/v3/config/global/patch", "/v3/config/pathdefaults/patch");
    let add = "/v3/config/paths/add/cams/new";
    let patch = "/v3/config/paths/patch/cams/new";
    let replace = "/v3/config/paths/replace/cams/new";
    for (method, url, body, status) in [
        ("PATCH", global, USERS, 200),
        ("PATCH", global, r#"{"readTimeout": "9s"}"#, 400),
        ("PATCH", global, r#"{"readTimeout": "soon"}"#, 400),
        ("PATCH", defaults, r#"{"maxReaders": 5}"#, 200),
        ("POST", add, r#"{"source": "publisher"}"#, 200),
        ("POST", add, "{}", 400),
        ("PATCH", patch, r#"{"maxReaders": 2}"#, 200),
        ("PATCH", "/v3/config/paths/patch/nope", "{}", 404),
        ("POST", replace, r#"{"overridePublisher": false}"#, 200),
        ("POST", replace, r#"{"source": "x://"}"#, 400),
    ] {
        // The route of a path's change: its name in place of {name}.
        let route = match url.strip_prefix("/v3/config/paths/") {
            Some(rest) => format!(
                "/v3/config/paths/{}/{{name}}",
                &rest[..rest.find('/').unwrap()]
            ),
            None => url.to_owned(),
        };
        let answer = api.checked_with(method, &route, url, body, status);
        if status == 200 {
            assert_eq!(answer, ok, "{method} {url}");
        }
    }
    let global = api.get("/v3/config/global/get", "/v3/config/global/get");
    assert_eq!(global["readTimeout"], "10s", "read only at start: refused");
    let users = global["authInternalUsers"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{users:?}");
    assert_eq!(users[2]["user"], "ops");
    assert_eq!(users[2]["pass"], "<redacted>");
    let new = api.get(
        "/v3/config/paths/get/{name}",
        "/v3/config/paths/get/cams/new",
    );
    assert_eq!(
        (&new["maxReaders"], &new["overridePublisher"]),
        (&json!(5), &json!(false))
    );
    let served = api.get("/v3/paths/get/{name}", "/v3/paths/get/cams/new");
    assert_eq!(served["ready"], false, "{served}");
    let url = "/v3/config/paths/delete/cams/new";
    let route = "/v3/config/paths/delete/{name}";
    assert_eq!(api.checked("DELETE", route, url, 200), ok);
    api.checked("DELETE", route, url, 404);
    api.checked("GET", "/v3/paths/get/{name}", "/v3/paths/get/cams/new", 404);

    // Kicked: gone from the list, its path's readers drop, its media stops.
    let kicked = api.checked(
        "POST",
        "/v3/webrtcsessions/kick/{id}",
        &format!("/v3/webrtcsessions/kick/{viewer_id}"),
        200,
    );
    assert_eq!(kicked, json!({"status": "ok"}));
    let gone = eventually(Duration::from_secs(5), || {
        let (_, list) = api.call("GET", "/v3/webrtcsessions/list");
        let (_, demo) = api.call("GET", "/v3/paths/get/demo");
        !ids(&list).contains(&viewer_id) && demo["readers"] == json!([])
    });
    assert!(gone, "{:#}", api.call("GET", "/v3/webrtcsessions/list").1);
    assert_eq!(api.call("GET", &session_url).0, 404);
    thread::sleep(Duration::from_millis(500));
    let after_kick = v.with(|v| v.packets());
    thread::sleep(Duration::from_secs(2));
    let later = v.with(|v| v.packets());
    assert_eq!(later, after_kick, "media still reaches the kicked viewer");

    assert_eq!(
        api.checked,
        api.spec.routes(),
        "every route in api/openapi.yaml was called and its answer checked"
    );
    publishing.join().unwrap();
    drop(v);
}

#[test]
fn the_api_needs_the_api_permission() {
    let admin = User {
        user: Some(Secret::parse("admin").unwrap()),
        pass: Secret::parse("secret").unwrap(),
        ips: Vec::new(),
        permissions: vec![Permission {
            action: Action::Api,
            path: PathRule::Any,
        }],
    };
    let relay = start(&with_api(Config {
        paths: paths([("demo", demo())]),
        auth: AuthConfig::Internal(vec![admin]),
        ..loopback(1)
    }));
    let mut api = Api::new(relay.api.as_deref().unwrap());
    api.checked("GET", "/v3/info", "/v3/info", 401);
    api.authorization = Some("Basic YWRtaW46bm9wZQ==".into()); // admin:nope
    api.checked("GET", "/v3/paths/list", "/v3/paths/list", 401);
    api.authorization = Some("Basic YWRtaW46c2VjcmV0".into()); // admin:secret
    let paths = api.get("/v3/paths/list", "/v3/paths/list");
    assert_eq!(paths["items"][0]["name"], "demo");
}

#[test]
fn the_checker_refuses_what_the_file_does_not_describe() {
    let spec = Spec::load();
    let schema = json!({"$ref": "#/components/schemas/WebRTCSessionList"});
    let session = json!({
        "id": "ab", "created": "2026-01-01T00:00:00Z", "remoteAddr": "", "state": "read",
        "peerConnectionEstablished": false, "path": "demo", "query": "", "inboundBytes": 0,
        "inboundRTPPackets": 0, "inboundRTCPPackets": 0, "outboundBytes": 0,
        "outboundRTPPackets": 0, "outboundRTCPPackets": 0, "outboundRTPPacketsLost": 0,
        "outboundRTPPacketsJitter": 0.0, "rtt": null, "congestionSkips": 0,
    });
    let list = |s: Value| json!({"pageCount": 1, "itemCount": 1, "items": [s]});
    assert_eq!(
        spec.problems(&schema, &list(session.clone())),
        Vec::<String>::new()
    );
    let mut extra = session.clone();
    extra["userAgent"] = json!("x");
    let mut missing = session.clone();
    missing.as_object_mut().unwrap().remove("path");
    let mut wrong = session.clone();
    wrong["inboundBytes"] = json!(-1);
    let mut state = session.clone();
    state["state"] = json!("idle");
    let mut null = session;
    null["path"] = Value::Null;
    for (bad, why) in [
        (extra, "$.items[0].userAgent: not described"),
        (missing, "$.items[0].path: required, missing"),
        (
            wrong,
            "$.items[0].inboundBytes: -1 is not of type \"integer\"",
        ),
        (state, "$.items[0].state: \"idle\" is not one of"),
        (
            null,
            "$.items[0].path: null, and the schema is not nullable",
        ),
    ] {
        let problems = spec.problems(&schema, &list(bad));
        assert!(
            problems.iter().any(|p| p.starts_with(why)),
            "{why}: {problems:?}"
        );
    }
}
