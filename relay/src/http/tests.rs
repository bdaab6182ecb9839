//! The HTTP layer against a real server on loopback, driven by a plain HTTP client.
//! `TestViewers` is a small in-memory implementation of the seam, not of the relay.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::*;
use crate::auth::{AuthConfig, PathRule, Permission, Secret, User};
use connections::ConnectionLimits;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

struct TestViewers {
    paths: Vec<Arc<ServedPath>>,
    max_readers: usize,
    next_id: AtomicU32,
    /// id -> path
    sessions: Mutex<BTreeMap<String, String>>,
    /// Every offer `create` received, as received.
    offers: Mutex<Vec<String>>,
    /// The query of each of those offers' URL.
    queries: Mutex<Vec<String>>,
}

impl TestViewers {
    fn new(paths: &[&'static str]) -> TestViewers {
        TestViewers {
            paths: paths
                .iter()
                .map(|p| Arc::new(ServedPath::ready(*p, 0, Vec::new())))
                .collect(),
            max_readers: 2,
            next_id: AtomicU32::new(1),
            sessions: Mutex::default(),
            offers: Mutex::default(),
            queries: Mutex::default(),
        }
    }
}

impl Viewers for TestViewers {
    fn create(&self, offer: &Offer) -> Result<Created, WhepError> {
        let Offer {
            path,
            sdp: offer,
            query,
            client,
        } = *offer;
        self.path(path)?;
        assert_ne!(path, "boom", "a Viewers implementation that panics");
        assert_eq!(
            client,
            IpAddr::from([127, 0, 0, 1]),
            "the HTTP client's address"
        );
        if path == "crowded" {
            let wait = Duration::from_millis(2300);
            return Err(Crowded::Address { limit: 16, wait }.into());
        }
        self.offers.lock().unwrap().push(offer.into());
        self.queries.lock().unwrap().push(query.into());
        if !offer.starts_with("v=0") {
            return Err(WhepError::BadOffer("it does not start with v=0".into()));
        }
        let mut sessions = self.sessions.lock().unwrap();
        if sessions.values().filter(|p| *p == path).count() >= self.max_readers {
            return Err(WhepError::TooManyReaders(path.into()));
        }
        let id = format!("s{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        sessions.insert(id.clone(), path.into());
        Ok(Created {
            id,
            answer: format!("v=0\r\ns=answer for {path}\r\n"),
        })
    }

    fn publish(&self, offer: &Offer) -> Result<Created, WhepError> {
        if offer.path == "busy" {
            return Err(PublishRefused::Busy(offer.path.into()).into());
        }
        self.create(offer)
    }

    fn delete(&self, path: &str, id: &str) -> Result<(), WhepError> {
        let mut sessions = self.sessions.lock().unwrap();
        match sessions.get(id) {
            Some(p) if p == path => {
                sessions.remove(id);
                Ok(())
            }
            _ => Err(WhepError::UnknownSession(id.into())),
        }
    }

    fn path(&self, path: &str) -> Result<Arc<ServedPath>, PathError> {
        let found = self.paths.iter().find(|p| p.name == path).cloned();
        found.ok_or_else(|| PathError::Unknown(path.into()))
    }
}

/// A server on 127.0.0.1:0 in a thread of its own (it ends with the test process).
struct Server {
    base: String,
    viewers: Arc<TestViewers>,
    agent: ureq::Agent,
}

impl Server {
    fn start(viewers: TestViewers, opts: HttpOptions) -> Server {
        let viewers = Arc::new(viewers);
        let dyn_viewers: Arc<dyn Viewers> = viewers.clone();
        let base = spawn(move |listener| serve(listener, dyn_viewers, opts));
        Server {
            base,
            viewers,
            agent: agent(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post_offer(&self, path: &str, offer: &str) -> Reply {
        self.agent
            .post(self.url(path))
            .header("Content-Type", "application/sdp")
            .send(offer)
            .into()
    }
}

/// Runs `serve` on a loopback port of its own in a thread of its own (it ends with the
/// test process); its base URL. The API's tests serve with it too.
pub(crate) fn spawn<F, Fut>(serve: F) -> String
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener).await;
        });
    });
    base
}

/// A client that returns 4xx/5xx as responses and does not follow redirects.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

/// A response with its body read.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Asserts an error answer: status, plain text, and a reason containing `reason`.
    #[track_caller]
    fn assert_error(&self, status: u16, reason: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            "text/plain; charset=utf-8",
            "{self:?}"
        );
        assert!(self.body.contains(reason), "{self:?}");
    }
}

impl From<Result<ureq::http::Response<ureq::Body>, ureq::Error>> for Reply {
    fn from(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = result.expect("HTTP request failed");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body_mut().read_to_string().unwrap(),
        }
    }
}

fn options() -> HttpOptions {
    HttpOptions {
        allow_origins: vec!["*".into()],
        read_timeout: Duration::from_secs(10),
        auth: authenticator(AuthConfig::mediamtx_default()),
        connections: unlimited(),
    }
}

/// A listener's connections without limits.
pub(crate) fn unlimited() -> Arc<Connections> {
    Connections::new(ConnectionLimits {
        per_address: 0,
        total: 0,
    })
}

fn authenticator(config: AuthConfig) -> Arc<Authenticator> {
    Arc::new(Authenticator::new(config, Duration::from_secs(10)))
}

#[test]
fn routes_parse_from_the_end() {
    use Route::*;
    use Signal::*;
    for (url, route) in [
        ("/cam/whep", Some(Endpoint("cam", Whep))),
        ("/cams/front/whep", Some(Endpoint("cams/front", Whep))),
        (
            "/cams/front/whep/abc",
            Some(Session("cams/front", Whep, "abc")),
        ),
        ("/cam/whep/abc", Some(Session("cam", Whep, "abc"))),
        ("/whep/whep", Some(Endpoint("whep", Whep))),
        ("/cams/front/whip", Some(Endpoint("cams/front", Whip))),
        ("/cam/whip/abc", Some(Session("cam", Whip, "abc"))),
        ("/cams/front/publish", Some(PublishPage("cams/front"))),
        ("/publish", Some(Bare("publish"))),
        ("/camwhip", Some(Bare("camwhip"))),
        ("/cams/front/", Some(Page("cams/front"))),
        ("/cams/front", Some(Bare("cams/front"))),
        // An empty id is not a session: it is the page of a path named "cam/whep",
        // which config.rs refuses, so it ends in 404.
        ("/cam/whep/", Some(Page("cam/whep"))),
        ("/whep", Some(Bare("whep"))),
        ("/", None),
        ("//", None),
        ("//whep", None),
        ("", None),
    ] {
        assert_eq!(Route::parse(url), route, "{url}");
    }
}

#[test]
fn whep_session_lifecycle_on_a_path_with_slashes() {
    let server = Server::start(TestViewers::new(&["cams/front"]), options());

    let created = server.post_offer("/cams/front/whep", OFFER);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("content-type"), "application/sdp");
    assert_eq!(created.header("location"), "/cams/front/whep/s1");
    assert_eq!(
        created.header("accept-patch"),
        "application/trickle-ice-sdpfrag"
    );
    assert_eq!(created.body, "v=0\r\ns=answer for cams/front\r\n");
    assert_eq!(*server.viewers.offers.lock().unwrap(), [OFFER]);

    let session = server.url(created.header("location"));
    let trickle: Reply = server
        .agent
        .patch(&session)
        .header("Content-Type", "application/trickle-ice-sdpfrag")
        .send("a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n")
        .into();
    assert_eq!(trickle.status, 204, "{trickle:?}");

    let deleted: Reply = server.agent.delete(&session).call().into();
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert!(server.viewers.sessions.lock().unwrap().is_empty());

    let again: Reply = server.agent.delete(&session).call().into();
    again.assert_error(404, "no session 's1' on this path");
}

#[test]
fn whip_publishes_answers_409_on_a_busy_path_and_serves_the_publish_page() {
    let server = Server::start(TestViewers::new(&["cams/front", "busy"]), options());
    let created = server.post_offer("/cams/front/whip", OFFER);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("location"), "/cams/front/whip/s1");
    assert_eq!(created.header("content-type"), "application/sdp");
    let deleted: Reply = server
        .agent
        .delete(server.url(created.header("location")))
        .call()
        .into();
    assert_eq!(deleted.status, 200, "{deleted:?}");

    server
        .post_offer("/busy/whip", OFFER)
        .assert_error(409, "someone is already publishing to path 'busy'");
    let wrong_type: Reply = server
        .agent
        .post(server.url("/busy/whip"))
        .header("Content-Type", "text/plain")
        .send(OFFER)
        .into();
    wrong_type.assert_error(415, "Content-Type: application/sdp");

    let page: Reply = server
        .agent
        .get(server.url("/cams/front/publish"))
        .call()
        .into();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("getUserMedia"), "the publish page");
    assert!(!page.body.contains("<script src"), "no external scripts");
    let post_page: Reply = server
        .agent
        .post(server.url("/cams/front/publish"))
        .send("")
        .into();
    post_page.assert_error(405, "use GET, HEAD");
}

#[test]
fn offers_are_checked_before_the_relay_sees_them() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let post = |content_type: Option<&str>, body: &[u8]| -> Reply {
        let request = server.agent.post(server.url("/cam/whep"));
        match content_type {
            Some(t) => request.header("Content-Type", t).send(body),
            None => request.send(body),
        }
        .into()
    };

    post(Some("text/plain"), OFFER.as_bytes())
        .assert_error(415, "Content-Type: application/sdp (got 'text/plain')");
    post(None, OFFER.as_bytes()).assert_error(415, "(got none)");
    post(Some("application/sdp"), b"v=0\r\n\xff\xfe\r\n").assert_error(400, "not UTF-8");
    post(Some("application/sdp"), b"").assert_error(400, "the request body is empty");
    post(Some("application/sdp"), b"hello")
        .assert_error(400, "the SDP offer was refused: it does not start with v=0");
    // Only the refused "hello" reached the relay.
    assert_eq!(*server.viewers.offers.lock().unwrap(), ["hello"]);

    // Media type parameters and case do not matter.
    assert_eq!(
        post(Some("Application/SDP; charset=utf-8"), OFFER.as_bytes()).status,
        201
    );
}

#[test]
fn offers_over_64_kib_are_refused() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let padded = |len: usize| format!("{OFFER}{}", "a".repeat(len - OFFER.len()));

    let at_limit = server.post_offer("/cam/whep", &padded(64 * 1024));
    assert_eq!(at_limit.status, 201, "{at_limit:?}");
    server
        .post_offer("/cam/whep", &padded(64 * 1024 + 1))
        .assert_error(413, "larger than 64 KiB");

    // Without a Content-Length (chunked), the limit holds while reading. (Just over
    // it: a much larger body is cut off by a reset before the client reads the 413.)
    let big = padded(64 * 1024 + 1).into_bytes();
    let chunked: Reply = server
        .agent
        .post(server.url("/cam/whep"))
        .header("Content-Type", "application/sdp")
        .send(ureq::SendBody::from_owned_reader(std::io::Cursor::new(big)))
        .into();
    chunked.assert_error(413, "larger than 64 KiB");
    assert_eq!(server.viewers.offers.lock().unwrap().len(), 1);
}

#[test]
fn the_query_of_an_offers_url_reaches_the_relay_as_sent() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    assert_eq!(
        server.post_offer("/cam/whep?lang=en&x=%20", OFFER).status,
        201
    );
    assert_eq!(server.post_offer("/cam/whip", OFFER).status, 201);
    assert_eq!(
        *server.viewers.queries.lock().unwrap(),
        ["lang=en&x=%20", ""]
    );
}

#[test]
fn unknown_paths_routes_and_sessions_are_404() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    server
        .post_offer("/nope/whep", OFFER)
        .assert_error(404, "no path named 'nope' is configured");
    let get = |path: &str| -> Reply { server.agent.get(server.url(path)).call().into() };
    get("/nope/").assert_error(404, "no path named 'nope'");
    get("/nope").assert_error(404, "WHEP endpoint /<path>/whep");
    get("/").assert_error(404, "nothing here");
    get("/cam/whep/").assert_error(404, "no path named 'cam/whep'");
    // The metrics have a listener of their own (metricsAddress).
    get("/metrics").assert_error(404, "nothing here");
    let gone: Reply = server
        .agent
        .delete(server.url("/cam/whep/s99"))
        .call()
        .into();
    gone.assert_error(404, "no session 's99'");
    let other_path: Reply = server
        .agent
        .delete(server.url("/nope/whep/s1"))
        .call()
        .into();
    other_path.assert_error(404, "no path named 'nope'");
}

#[test]
fn full_paths_are_503_until_a_viewer_leaves() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let first = server.post_offer("/cam/whep", OFFER);
    assert_eq!(server.post_offer("/cam/whep", OFFER).status, 201);
    server
        .post_offer("/cam/whep", OFFER)
        .assert_error(503, "path 'cam' has reached maxReaders");
    let session = server.url(first.header("location"));
    assert_eq!(Reply::from(server.agent.delete(session).call()).status, 200);
    assert_eq!(server.post_offer("/cam/whep", OFFER).status, 201);
}

#[test]
fn a_panicking_relay_call_is_a_500_and_the_server_goes_on() {
    let server = Server::start(TestViewers::new(&["cam", "boom"]), options());
    server
        .post_offer("/boom/whep", OFFER)
        .assert_error(500, "see its log");
    assert_eq!(server.post_offer("/cam/whep", OFFER).status, 201);
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let cases: [(&str, &str, &str); 5] = [
        ("GET", "/cam/whep", "POST, OPTIONS"),
        ("PUT", "/cam/whep/s1", "DELETE, PATCH, OPTIONS"),
        ("GET", "/cam/whep/s1", "DELETE, PATCH, OPTIONS"),
        ("POST", "/cam/", "GET, HEAD"),
        ("DELETE", "/cam", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(server.url(path))
            .body(())
            .unwrap();
        let reply = Reply::from(server.agent.run(request));
        reply.assert_error(405, &format!("{method} is not allowed here: use {allow}"));
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
    }
}

#[test]
fn patch_takes_only_trickle_ice() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let reply: Reply = server
        .agent
        .patch(server.url("/cam/whep/s1"))
        .header("Content-Type", "application/sdp")
        .send(OFFER)
        .into();
    reply.assert_error(
        415,
        "Content-Type: application/trickle-ice-sdpfrag (got 'application/sdp')",
    );
}

#[test]
fn options_advertise_what_to_send_and_allow_any_origin() {
    let server = Server::start(TestViewers::new(&["cams/front"]), options());
    let plain: Reply = server
        .agent
        .options(server.url("/cams/front/whep"))
        .call()
        .into();
    assert_eq!(plain.status, 204, "{plain:?}");
    assert_eq!(plain.header("accept-post"), "application/sdp");
    assert_eq!(
        plain.header("access-control-allow-origin"),
        "",
        "no Origin, no CORS"
    );

    let preflight: Reply = server
        .agent
        .options(server.url("/cams/front/whep"))
        .header("Origin", "https://elsewhere.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .call()
        .into();
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert_eq!(preflight.header("accept-post"), "application/sdp");
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert!(preflight
        .header("access-control-allow-methods")
        .contains("POST"));
    assert!(preflight
        .header("access-control-allow-methods")
        .contains("DELETE"));
    assert!(preflight
        .header("access-control-allow-headers")
        .contains("Content-Type"));
    assert_eq!(
        preflight.header("vary"),
        "",
        "the answer is the same for every origin"
    );

    let session: Reply = server
        .agent
        .options(server.url("/cams/front/whep/s1"))
        .header("Origin", "https://elsewhere.example")
        .header("Access-Control-Request-Method", "DELETE")
        .call()
        .into();
    assert_eq!(session.status, 204, "{session:?}");
    assert_eq!(
        session.header("accept-patch"),
        "application/trickle-ice-sdpfrag"
    );
    assert_eq!(session.header("access-control-allow-origin"), "*");

    let created: Reply = server
        .agent
        .post(server.url("/cams/front/whep"))
        .header("Content-Type", "application/sdp")
        .header("Origin", "https://elsewhere.example")
        .send(OFFER)
        .into();
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), "*");
    let exposed = created.header("access-control-expose-headers");
    for name in ["Location", "ETag", "Link", "Accept-Patch"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

#[test]
fn cors_allows_only_the_listed_origins() {
    let opts = HttpOptions {
        allow_origins: vec!["https://a.example".into(), "http://b.example:8080".into()],
        ..options()
    };
    let server = Server::start(TestViewers::new(&["cam"]), opts);
    let post_from = |origin: &str| -> Reply {
        server
            .agent
            .post(server.url("/cam/whep"))
            .header("Content-Type", "application/sdp")
            .header("Origin", origin)
            .send(OFFER)
            .into()
    };
    for origin in ["https://a.example", "http://b.example:8080"] {
        let reply = post_from(origin);
        assert_eq!(reply.status, 201);
        assert_eq!(reply.header("access-control-allow-origin"), origin);
        assert_eq!(reply.header("vary"), "Origin");
        assert!(reply
            .header("access-control-expose-headers")
            .contains("Location"));
    }
    for origin in [
        "https://c.example",
        "https://a.example.evil",
        "http://a.example",
        "null",
    ] {
        let reply = post_from(origin);
        assert_eq!(reply.header("access-control-allow-origin"), "", "{origin}");
        assert_eq!(reply.header("vary"), "Origin");
    }
    let preflight: Reply = server
        .agent
        .options(server.url("/cam/whep"))
        .header("Origin", "https://c.example")
        .header("Access-Control-Request-Method", "POST")
        .call()
        .into();
    assert_eq!(preflight.header("access-control-allow-origin"), "");
    assert_eq!(preflight.header("access-control-allow-methods"), "");
}

#[test]
fn player_page_and_redirect() {
    let server = Server::start(TestViewers::new(&["cams/front"]), options());
    let page: Reply = server.agent.get(server.url("/cams/front/")).call().into();
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let html = &page.body;
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
        "url(",
    ] {
        assert!(
            !html.contains(external),
            "the page loads something: {external}"
        );
    }
    for whep in [
        "new RTCPeerConnection(",
        "{ direction: \"recvonly\" }",
        "createOffer()",
        "setLocalDescription(",
        "\"Content-Type\": \"application/sdp\"",
        "base + \"/whep\"",
        "setRemoteDescription(",
        "method: \"DELETE\"",
        "pagehide",
        "window.relayPlayer",
        "<video id=\"video\" autoplay muted playsinline",
    ] {
        assert!(html.contains(whep), "the page lacks {whep}");
    }
    assert!(
        !html.contains("icegatheringstatechange"),
        "the page must not wait for ICE"
    );

    let head: Reply = server.agent.head(server.url("/cams/front/")).call().into();
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    let bare: Reply = server
        .agent
        .get(server.url("/cams/front?x=1"))
        .call()
        .into();
    assert_eq!(bare.status, 308, "{bare:?}");
    assert_eq!(bare.header("location"), "/cams/front/?x=1");
}

impl Scrape for Registry {
    fn scrape(&self, _: &str) -> Result<String, String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self).map_err(|e| e.to_string())?;
        Ok(text)
    }
}

fn registry() -> Arc<dyn Scrape> {
    let mut registry = Registry::default();
    let viewers = Counter::<u64>::default();
    viewers.inc_by(3);
    registry.register("relay_viewers_created", "Viewers created", viewers);
    Arc::new(registry)
}

/// A metrics listener serving `registry()` to whom `auth` allows; its base URL.
fn metrics_server(auth: Arc<Authenticator>) -> String {
    spawn(|listener| {
        serve_metrics(
            listener,
            registry(),
            Duration::from_secs(10),
            auth,
            unlimited(),
        )
    })
}

#[test]
fn metrics_on_their_own_listener() {
    let base = metrics_server(options().auth);
    let agent = agent();
    let metrics: Reply = agent.get(format!("{base}/metrics")).call().into();
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metrics.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        metrics.body.contains("relay_viewers_created_total 3\n"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    let page: Reply = agent.get(format!("{base}/cam/")).call().into();
    page.assert_error(404, "metrics are at /metrics");
    let post: Reply = agent.post(format!("{base}/metrics")).send("").into();
    post.assert_error(405, "use GET, HEAD");
}

/// `readTimeout` in the tests of it: short, so that they run fast. What must happen
/// within it is waited for up to `PATIENCE`, so a loaded machine cannot fail them.
const SHORT: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(10);

fn short_timeout() -> HttpOptions {
    HttpOptions {
        read_timeout: SHORT,
        ..options()
    }
}

/// A plain TCP connection to the server at `base` (`http://host:port`).
fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(base.strip_prefix("http://").unwrap()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads until the server closes `stream`: what it sent, and how long after `since`.
/// Panics if the connection is still open after `PATIENCE`.
#[track_caller]
fn read_until_closed(stream: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open ({e}); it sent {received:?}"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        since.elapsed(),
    )
}

#[test]
fn idle_connections_are_closed_after_read_timeout() {
    let server = Server::start(TestViewers::new(&["cam"]), short_timeout());

    // Connected, and nothing sent.
    let start = Instant::now();
    let mut idle = connect(&server.base);
    let (sent, after) = read_until_closed(&mut idle, start);
    assert!(after >= SHORT, "closed after {after:?}, before readTimeout");
    assert!(!sent.contains("200"), "{sent}");

    // Kept alive after a full exchange: the wait for the next request is timed too.
    let mut kept = connect(&server.base);
    let asked = Instant::now();
    kept.write_all(b"GET /cam/ HTTP/1.1\r\nHost: relay\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (_, after) = read_until_closed(&mut kept, asked);
    assert!(after >= SHORT, "closed after {after:?}, before readTimeout");

    // A client that asks in time is served as ever.
    let created = server.post_offer("/cam/whep", OFFER);
    assert_eq!(created.status, 201, "{created:?}");
    let deleted: Reply = server
        .agent
        .delete(server.url(created.header("location")))
        .call()
        .into();
    assert_eq!(deleted.status, 200, "{deleted:?}");
}

#[test]
fn a_header_sent_slowly_is_cut_off_at_read_timeout() {
    let server = Server::start(TestViewers::new(&["cam"]), short_timeout());
    let start = Instant::now();
    let mut slow = connect(&server.base);
    slow.write_all(b"POST /cam/whep HTTP/1.1\r\nHost: relay\r\n")
        .unwrap();
    // One byte of a header every tenth of the timeout: the connection is never idle
    // for long, but its header is never done either.
    let mut writer = slow.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        while start.elapsed() < PATIENCE && writer.write_all(b"x").is_ok() {
            std::thread::sleep(SHORT / 10);
        }
    });
    let (sent, after) = read_until_closed(&mut slow, start);
    assert!(after >= SHORT, "closed after {after:?}, before readTimeout");
    assert!(!sent.contains("201"), "{sent}");
    dripping.join().unwrap();
    assert!(server.viewers.offers.lock().unwrap().is_empty());
}

#[test]
fn an_offer_body_sent_slowly_is_a_408() {
    let server = Server::start(TestViewers::new(&["cam"]), short_timeout());
    let mut slow = connect(&server.base);
    let start = Instant::now();
    slow.write_all(
        b"POST /cam/whep HTTP/1.1\r\nHost: relay\r\nContent-Type: application/sdp\r\n\
          Content-Length: 1000\r\n\r\nv=0\r\n",
    )
    .unwrap();
    let (sent, after) = read_until_closed(&mut slow, start);
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(
        sent.contains("the SDP offer did not arrive within 300ms (readTimeout)"),
        "{sent}"
    );
    assert!(
        after >= SHORT,
        "answered after {after:?}, before readTimeout"
    );
    assert!(server.viewers.offers.lock().unwrap().is_empty());
}

#[test]
fn headers_over_32_kib_are_a_431() {
    let server = Server::start(TestViewers::new(&["cam"]), options());
    let mut big = connect(&server.base);
    let padding = "x".repeat(33 * 1024);
    let request = format!("GET /cam/ HTTP/1.1\r\nHost: relay\r\nX-Padding: {padding}\r\n\r\n");
    // The server answers and closes once it has read 32 KiB: the rest of the request
    // may then meet a closed socket (EPIPE), and its reset may reach us before the 431.
    let cut_off = big.write_all(request.as_bytes()).is_err();
    let (sent, _) = read_until_closed(&mut big, Instant::now());
    assert!(
        sent.starts_with("HTTP/1.1 431") || (cut_off && sent.is_empty()),
        "{sent}"
    );

    // Just under the limit is served.
    let padding = "x".repeat(31 * 1024);
    let page: Reply = server
        .agent
        .get(server.url("/cam/"))
        .header("X-Padding", &padding)
        .call()
        .into();
    assert_eq!(page.status, 200);
}

#[test]
fn the_metrics_listener_closes_idle_connections_too() {
    let base =
        spawn(|listener| serve_metrics(listener, registry(), SHORT, options().auth, unlimited()));
    let start = Instant::now();
    let mut idle = connect(&base);
    let (_, after) = read_until_closed(&mut idle, start);
    assert!(after >= SHORT, "closed after {after:?}, before readTimeout");
    let metrics: Reply = agent().get(format!("{base}/metrics")).call().into();
    assert_eq!(metrics.status, 200, "{metrics:?}");
}

/// `reader` (password `s3cret`) may read `cam`; no one else may do anything, metrics
/// included, except `scraper` from this host.
fn guarded() -> HttpOptions {
    let user = |name: &str, ips: &[&str], permissions: Vec<Permission>| User {
        user: Some(Secret::parse(name).unwrap()),
        pass: Secret::parse("s3cret").unwrap(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        permissions,
    };
    let permission = |action, path: &str| Permission {
        action,
        path: PathRule::parse(path).unwrap(),
    };
    HttpOptions {
        auth: authenticator(AuthConfig::Internal(vec![
            user("reader", &[], vec![permission(Action::Read, "cam")]),
            user(
                "scraper",
                &["127.0.0.0/8"],
                vec![permission(Action::Metrics, "")],
            ),
            user(
                "elsewhere",
                &["192.0.2.0/24"],
                vec![permission(Action::Read, "")],
            ),
        ])),
        ..options()
    }
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

impl Server {
    fn post_offer_as(&self, path: &str, authorization: &str) -> Reply {
        self.agent
            .post(self.url(path))
            .header("Content-Type", "application/sdp")
            .header("Authorization", authorization)
            .send(OFFER)
            .into()
    }
}

#[test]
fn reading_needs_the_right_user_and_nothing_leaks_before() {
    let server = Server::start(TestViewers::new(&["cam", "secret"]), guarded());
    // No credentials: asked for some, whether the path exists or not.
    for path in ["/cam/whep", "/secret/whep", "/nowhere/whep"] {
        let reply = server.post_offer(path, OFFER);
        reply.assert_error(401, "authentication needed");
        assert_eq!(
            reply.headers.get("www-authenticate").unwrap(),
            "Basic realm=\"relay\""
        );
        // Its body unread, the connection is closed: said, so that it is not reused.
        assert_eq!(reply.header("connection"), "close");
    }
    assert_eq!(
        server
            .post_offer_as("/cam/whep", &basic("reader", "s3cret"))
            .status,
        201
    );
    // Allowed to read cam only: secret and unknown paths look alike.
    for path in ["/secret/whep", "/nowhere/whep"] {
        server
            .post_offer_as(path, &basic("reader", "s3cret"))
            .assert_error(401, "authentication failed");
    }
    server
        .post_offer_as("/cam/whep", &basic("reader", "wrong"))
        .assert_error(401, "authentication failed");
    // Publishing is not reading; a user allowed from elsewhere only is not allowed here.
    server
        .post_offer_as("/cam/whip", &basic("reader", "s3cret"))
        .assert_error(401, "authentication failed");
    server
        .post_offer_as("/cam/whep", &basic("elsewhere", "s3cret"))
        .assert_error(401, "authentication failed");
    // Pages ask for credentials themselves: they are served to anyone.
    let page: Reply = server.agent.get(server.url("/cam/")).call().into();
    assert_eq!(page.status, 200);
}

#[test]
fn credentials_in_the_query_are_refused_even_when_right() {
    let server = Server::start(TestViewers::new(&["cam"]), guarded());
    for query in ["user=reader&pass=s3cret", "token=abc", "jwt=abc"] {
        server
            .post_offer_as(&format!("/cam/whep?{query}"), &basic("reader", "s3cret"))
            .assert_error(400, "Authorization header");
    }
    assert_eq!(
        server
            .post_offer_as("/cam/whep?autoplay=1", &basic("reader", "s3cret"))
            .status,
        201
    );
}

#[test]
fn an_address_that_fails_too_often_is_refused_for_a_while_without_a_check() {
    let server = Server::start(TestViewers::new(&["cam"]), guarded());
    for _ in 0..Failures::LIMIT {
        server
            .post_offer_as("/cam/whep", &basic("reader", "guess"))
            .assert_error(401, "authentication failed");
    }
    // Asking without credentials is no failure; the right password is no longer checked.
    let limited = server.post_offer_as("/cam/whep", &basic("reader", "s3cret"));
    limited.assert_error(429, "too many failed authentications");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[test]
fn offers_past_the_pending_limit_are_429_with_retry_after_rounded_up() {
    let server = Server::start(TestViewers::new(&["crowded"]), options());
    for endpoint in ["/crowded/whep", "/crowded/whip"] {
        let refused = server.post_offer(endpoint, OFFER);
        refused.assert_error(429, "16 sessions from this address are answered but not");
        assert_eq!(refused.header("retry-after"), "3", "2.3 s, rounded up");
    }
}

#[test]
fn metrics_are_authenticated_like_the_rest() {
    let base = metrics_server(guarded().auth);
    let agent = agent();
    let get = |auth: Option<&str>| -> Reply {
        let request = agent.get(format!("{base}/metrics"));
        match auth {
            Some(a) => request.header("Authorization", a).call().into(),
            None => request.call().into(),
        }
    };
    get(None).assert_error(401, "authentication needed");
    get(Some(&basic("reader", "s3cret"))).assert_error(401, "authentication failed");
    let scraped = get(Some(&basic("scraper", "s3cret")));
    assert_eq!(scraped.status, 200, "{scraped:?}");
    assert!(scraped.body.contains("relay_viewers_created_total"));
    // MediaMTX's defaults: from this host, without credentials.
    let open = metrics_server(options().auth);
    let reply: Reply = agent.get(format!("{open}/metrics")).call().into();
    assert_eq!(reply.status, 200);
}
