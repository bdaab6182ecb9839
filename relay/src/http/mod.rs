//! HTTP: WHEP and WHIP endpoints, the player and publish pages, metrics.
//!
//! The HTTP layer knows nothing of sessions: it calls a [`Viewers`] implementation
//! (the server's control plane) and maps its typed errors to status codes.
//!
//! | request                          | answer                                         |
//! |----------------------------------|------------------------------------------------|
//! | `POST /<path>/whep` (SDP offer)  | 201, the SDP answer, `Location: /<path>/whep/<id>` |
//! | `DELETE /<path>/whep/<id>`       | 200: the viewer is gone                        |
//! | `PATCH /<path>/whep/<id>`        | 204: trickled candidates, accepted and ignored |
//! | `POST /<path>/whip` (SDP offer)  | 201, the SDP answer, `Location: /<path>/whip/<id>`; 409 if someone publishes and `overridePublisher` is off |
//! | `DELETE`, `PATCH /<path>/whip/<id>` | as for WHEP: the publisher is gone / 204   |
//! | `OPTIONS` on these               | 204, with `Accept-Post` / `Accept-Patch` and CORS |
//! | `GET /<path>/`                   | the player page                                |
//! | `GET /<path>/publish`            | the publish page (camera and microphone by WHIP) |
//! | `GET /<path>`                    | redirect to `/<path>/`                         |
//!
//! The metrics have a listener of their own (`metricsAddress`, [`serve_metrics`]): `GET
//! /metrics` there answers Prometheus / OpenMetrics text.
//!
//! Publishing, reading and the metrics are authenticated first (auth/, `authMethod`),
//! before the path is looked up, so that no one learns which paths exist without the
//! right to read them: 401 with `WWW-Authenticate` (the pages then ask for
//! credentials), 429 with `Retry-After` for an address that failed too often. An offer
//! is also answered 429 with `Retry-After` when too many sessions, of its address or
//! overall, are answered and not yet connected (`webrtcMaxPendingSessionsPerIP`,
//! `webrtcMaxPendingSessions`, [`Crowded`]).
//! Credentials in the URL's query are refused (400).
//!
//! Path names may contain slashes (`cams/front`), so the routes are parsed from the
//! end of the URL rather than matched by a router pattern. Errors are `text/plain`
//! with a reason a person can act on.
//!
//! Connections are HTTP/1.1, served by hyper directly (axum::serve has no timeouts): a
//! client must send each request's header within `readTimeout` of connecting or of its
//! previous response, and the body of an offer within `readTimeout` more, or it is cut
//! off. So idle and slow clients cannot hold connections, and their buffers, open. Each
//! listener holds at most `httpMaxConnectionsPerIP` connections of one address and
//! `httpMaxConnections` in all ([`connections`]): past them a connection is answered 503
//! and closed, so that one address cannot take every file descriptor in the meantime.

pub mod connections;
pub(crate) mod cors;
mod pprof;
#[cfg(test)]
pub(crate) mod tests;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{self, Action, Authenticator, Credentials, Failures};
use crate::paths::{PathError, PublishRefused, ServedPath};
use crate::worker::admission::Crowded;
use connections::Connections;

/// What the HTTP layer asks of the relay.
pub trait Viewers: Send + Sync + 'static {
    /// Creates a viewer from a WHEP offer; returns its id and the SDP answer.
    fn create(&self, offer: &Offer) -> Result<Created, WhepError>;
    /// Creates the publisher of a path from a WHIP offer; returns its id and the answer.
    fn publish(&self, offer: &Offer) -> Result<Created, WhepError>;
    /// Ends session `id` (a viewer or the publisher) of `path`.
    fn delete(&self, path: &str, id: &str) -> Result<(), WhepError>;
    /// The path named `path` (made now if a `~regex` or `all_others` entry of the
    /// config stands for it): HTTP waits on its state before `create`.
    fn path(&self, path: &str) -> Result<Arc<ServedPath>, PathError>;
}

/// An SDP offer POSTed to a path's endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub path: &'a str,
    pub sdp: &'a str,
    /// The query of the URL it was POSTed to.
    pub query: &'a str,
    /// Who POSTed it: the HTTP client's address.
    pub client: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    /// 404 if no path answers to the name, 400 if it breaks the rules of path names
    #[error(transparent)]
    Path(#[from] PathError),
    /// 404
    #[error("no session '{0}' on this path")]
    UnknownSession(String),
    /// 400, with the reason
    #[error("the SDP offer was refused: {0}")]
    BadOffer(String),
    /// 503
    #[error("path '{0}' has reached maxReaders")]
    TooManyReaders(String),
    /// 404, as MediaMTX answers, with the path's state (the player page shows it)
    #[error("no stream is available on path '{0}': {1}")]
    NoStream(String, String),
    /// 409 when busy, 400 when the path has another source, 503 when a takeover stalls
    #[error(transparent)]
    Publish(#[from] PublishRefused),
    /// 429 with `Retry-After`: too many sessions answered and not yet connected
    #[error(transparent)]
    Crowded(#[from] Crowded),
}

pub struct HttpOptions {
    /// `webrtcAllowOrigins`: exact origins, or `*` for any.
    pub allow_origins: Vec<String>,
    /// `readTimeout`: how long a client has to send a request's header, from when it
    /// connects or had its previous response, and then an offer's body.
    pub read_timeout: Duration,
    /// Who may publish and read.
    pub auth: Arc<Authenticator>,
    /// The listener's open connections and their limits.
    pub connections: Arc<Connections>,
}

/// Serves WHEP, WHIP and their pages; drop the future to stop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    viewers: Arc<dyn Viewers>,
    opts: HttpOptions,
) {
    let app = App {
        serves: Serves::Signalling(viewers),
        read_timeout: opts.read_timeout,
        gate: Gate::new(opts.auth),
    };
    let router = router(app).layer(axum::middleware::from_fn_with_state(
        Arc::new(cors::Cors::new(opts.allow_origins)),
        cors::cors,
    ));
    serve_connections(
        listener,
        with_logging(router),
        opts.read_timeout,
        opts.connections,
    )
    .await
}

/// Serves only `/metrics` (on `metricsAddress`), with the same `readTimeout` and
/// authentication (action `metrics`).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<dyn Scrape>,
    read_timeout: Duration,
    auth: Arc<Authenticator>,
    connections: Arc<Connections>,
) {
    let serves = Serves::Metrics(registry);
    serve_only(listener, serves, read_timeout, auth, connections).await
}

/// Serves only CPU and heap profiles (`pprof: yes`, see [`pprof`]) on `pprofAddress`,
/// with the same `readTimeout` and authentication (action `pprof`).
pub async fn serve_pprof(
    listener: tokio::net::TcpListener,
    read_timeout: Duration,
    auth: Arc<Authenticator>,
    connections: Arc<Connections>,
) {
    serve_only(listener, Serves::Pprof, read_timeout, auth, connections).await
}

/// A listener of its own for what `serves` names.
async fn serve_only(
    listener: tokio::net::TcpListener,
    serves: Serves,
    read_timeout: Duration,
    auth: Arc<Authenticator>,
    connections: Arc<Connections>,
) {
    let app = App {
        serves,
        read_timeout,
        gate: Gate::new(auth),
    };
    let router = with_logging(router(app));
    serve_connections(listener, router, read_timeout, connections).await
}

/// Largest SDP offer accepted (browsers send 3-10 KiB).
const MAX_OFFER: usize = 64 * 1024;

/// Largest request line and headers accepted, a 431 beyond: browsers send a few hundred
/// bytes to the relay; nginx's default allows 4 x 8 KiB. (Without it, the limit would be
/// hyper's read buffer, ~400 KiB per connection.)
const MAX_HEADER: usize = 32 * 1024;

/// Serves HTTP/1.1 on every connection `listener` accepts, each in its own task, as
/// long as `connections` has a place for it.
pub(crate) async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    read_timeout: Duration,
    connections: Arc<Connections>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper runs the header read timeout whenever it waits for a request: on a new
    // connection and on a kept-alive one after each response. So it is the idle timeout.
    http.timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .max_header_size(MAX_HEADER);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let held = match connections.admit(client.ip()) {
            Ok(held) => held,
            Err(full) => {
                // Best effort, without waiting: the socket's buffer is empty, and a
                // client that cannot take 200 bytes now learns it from the close.
                let _ = stream.try_write(full.response().as_bytes());
                tracing::debug!(%client, reason = full.reason(), "HTTP connection refused");
                continue;
            }
        };
        let service = router.clone().layer(axum::Extension(Client(client)));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        tokio::spawn(async move {
            let _held = held;
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
}

/// A connection that failed before it was accepted concerns only its client. Anything
/// else (out of file descriptors, most likely) is the relay's: it waits a second for
/// connections to close rather than spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept HTTP connections: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

const SDP: &str = "application/sdp";
const TRICKLE_ICE: &str = "application/trickle-ice-sdpfrag";
const PLAYER: &str = include_str!("player.html");
const PUBLISH: &str = include_str!("publish.html");
const ACCEPT_POST: HeaderName = HeaderName::from_static("accept-post");
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

struct App {
    serves: Serves,
    read_timeout: Duration,
    gate: Gate,
}

/// What a listener serves: each of these has its own.
enum Serves {
    /// WHEP, WHIP and their pages (`webrtcAddress`).
    Signalling(Arc<dyn Viewers>),
    /// `/metrics` (`metricsAddress`).
    Metrics(Arc<dyn Scrape>),
    /// CPU profiles (`pprofAddress`).
    Pprof,
}

/// The address of the connection a request came on (authentication's `ip`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub(crate) std::net::SocketAddr);

fn router(app: App) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(app))
        .layer(DefaultBodyLimit::max(MAX_OFFER))
}

/// One debug line per request (method, URI, status, latency); 5xx such as a full
/// path are the client's business, not errors of the relay.
pub(crate) fn with_logging(router: Router) -> Router {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
            .on_request(())
            .on_response(DefaultOnResponse::new().level(Level::DEBUG))
            .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
    )
}

/// The signalling protocol of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Viewers (`/whep`).
    Whep,
    /// Publishers (`/whip`).
    Whip,
}

impl Signal {
    fn segment(self) -> &'static str {
        match self {
            Signal::Whep => "whep",
            Signal::Whip => "whip",
        }
    }

    /// `<path>` of `<path>/whep` or `<path>/whip`.
    fn strip(url: &str) -> Option<(&str, Signal)> {
        [Signal::Whep, Signal::Whip].into_iter().find_map(|signal| {
            let path = url.strip_suffix(signal.segment())?.strip_suffix('/')?;
            Some((path, signal))
        })
    }
}

/// Where a request goes, parsed from its URL path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `/<path>/whep`, `/<path>/whip`
    Endpoint(&'a str, Signal),
    /// `/<path>/whep/<id>`, `/<path>/whip/<id>`
    Session(&'a str, Signal, &'a str),
    /// `/<path>/`
    Page(&'a str),
    /// `/<path>/publish`
    PublishPage(&'a str),
    /// `/<path>`
    Bare(&'a str),
}

impl<'a> Route<'a> {
    /// Paths cannot contain a `whep`, `whip` or `publish` segment (config.rs refuses
    /// them), so the first match from the end is the only one.
    fn parse(url_path: &'a str) -> Option<Route<'a>> {
        let rest = url_path.strip_prefix('/')?;
        let route = if let Some((path, signal)) = Signal::strip(rest) {
            Route::Endpoint(path, signal)
        } else if let Some((path, signal, id)) = rest
            .rsplit_once('/')
            .and_then(|(before, id)| Some((Signal::strip(before)?, id)))
            .filter(|(_, id)| !id.is_empty())
            .map(|((path, signal), id)| (path, signal, id))
        {
            Route::Session(path, signal, id)
        } else if let Some(path) = rest.strip_suffix("/publish") {
            Route::PublishPage(path)
        } else if let Some(path) = rest.strip_suffix('/') {
            Route::Page(path)
        } else {
            Route::Bare(rest)
        };
        (!route.path().is_empty()).then_some(route)
    }

    fn path(&self) -> &'a str {
        match *self {
            Route::Endpoint(path, _)
            | Route::Session(path, ..)
            | Route::Page(path)
            | Route::PublishPage(path)
            | Route::Bare(path) => path,
        }
    }
}

async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let method = request.method().clone();
    let viewers = match &app.serves {
        Serves::Signalling(viewers) => viewers,
        Serves::Metrics(registry) => {
            return match (request.uri().path(), method) {
                ("/metrics", Method::GET | Method::HEAD) => {
                    match app.gate.authorize(&request, Action::Metrics, "").await {
                        Ok(()) => metrics(&**registry, request.uri().query().unwrap_or_default()),
                        Err(refused) => refused.respond(text),
                    }
                }
                ("/metrics", method) => method_not_allowed(&method, "GET, HEAD"),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "nothing here: metrics are at /metrics",
                ),
            };
        }
        Serves::Pprof => {
            return match (request.uri().path(), method) {
                (pprof::PROFILE, Method::GET) => {
                    match app.gate.authorize(&request, Action::Pprof, "").await {
                        Ok(()) => pprof::profile(request.uri().query().unwrap_or_default()).await,
                        Err(refused) => refused.respond(text),
                    }
                }
                (pprof::HEAP, Method::GET) => {
                    match app.gate.authorize(&request, Action::Pprof, "").await {
                        Ok(()) => pprof::heap().await,
                        Err(refused) => refused.respond(text),
                    }
                }
                (pprof::PROFILE | pprof::HEAP, method) => method_not_allowed(&method, "GET"),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "nothing here: CPU profiles are at /debug/pprof/profile?seconds=N, heap \
                     profiles at /debug/pprof/heap",
                ),
            };
        }
    };
    let Some(route) = Route::parse(request.uri().path()) else {
        return not_found();
    };
    let path = route.path().to_owned();
    if let (Route::Endpoint(_, signal), &Method::POST) = (&route, &method) {
        let action = match signal {
            Signal::Whep => Action::Read,
            Signal::Whip => Action::Publish,
        };
        if let Err(refused) = app.gate.authorize(&request, action, &path).await {
            return refused.respond(text);
        }
    }
    let served = match viewers.path(&path) {
        Ok(served) => served,
        Err(_) if matches!(route, Route::Bare(_)) => return not_found(),
        Err(e) => return whep_error(e.into()),
    };
    match (route, method) {
        (Route::Endpoint(_, signal), Method::POST) => {
            create(viewers.clone(), served, request, app.read_timeout, signal).await
        }
        (Route::Endpoint(..), Method::OPTIONS) => options(ACCEPT_POST, SDP),
        (Route::Endpoint(..), method) => method_not_allowed(&method, "POST, OPTIONS"),
        (Route::Session(_, _, id), Method::DELETE) => {
            let (viewers, id) = (viewers.clone(), id.to_owned());
            match call_viewers(move || viewers.delete(&path, &id)).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(response) => response,
            }
        }
        // The relay is ICE-lite: it learns each peer's address from the peer's own
        // connectivity checks, so trickled candidates carry nothing it needs.
        (Route::Session(..), Method::PATCH) => match content_type(request.headers()) {
            Some(t) if t.eq_ignore_ascii_case(TRICKLE_ICE) => {
                StatusCode::NO_CONTENT.into_response()
            }
            other => unsupported_type(TRICKLE_ICE, other),
        },
        (Route::Session(..), Method::OPTIONS) => options(ACCEPT_PATCH, TRICKLE_ICE),
        (Route::Session(..), method) => method_not_allowed(&method, "DELETE, PATCH, OPTIONS"),
        (Route::Page(_), Method::GET | Method::HEAD) => {
            ([(header::CACHE_CONTROL, "no-cache")], Html(PLAYER)).into_response()
        }
        (Route::Page(_), method) => method_not_allowed(&method, "GET, HEAD"),
        (Route::PublishPage(_), Method::GET | Method::HEAD) => {
            ([(header::CACHE_CONTROL, "no-cache")], Html(PUBLISH)).into_response()
        }
        (Route::PublishPage(_), method) => method_not_allowed(&method, "GET, HEAD"),
        (Route::Bare(_), Method::GET | Method::HEAD) => {
            let query = request
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            Redirect::permanent(&format!("/{path}/{query}")).into_response()
        }
        (Route::Bare(_), method) => method_not_allowed(&method, "GET, HEAD"),
    }
}

async fn create(
    viewers: Arc<dyn Viewers>,
    served: Arc<ServedPath>,
    request: Request,
    read_timeout: Duration,
    signal: Signal,
) -> Response {
    match content_type(request.headers()) {
        Some(t) if t.eq_ignore_ascii_case(SDP) => {}
        other => return unsupported_type(SDP, other),
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let client = client_ip(&request);
    let offer = match tokio::time::timeout(read_timeout, Bytes::from_request(request, &())).await {
        Ok(Ok(body)) => body,
        Ok(Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)))) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the SDP offer is larger than {} KiB", MAX_OFFER / 1024),
            );
        }
        // The rest is the connection failing under the body (hyper's message says how).
        Ok(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        }
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the SDP offer did not arrive within {read_timeout:?} (readTimeout)"),
            )
        }
    };
    let Ok(offer) = String::from_utf8(offer.into()) else {
        return text(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8 text");
    };
    if offer.trim().is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send the SDP offer",
        );
    }
    // An on-demand source starts now; a viewer's offer is answered once it is ready.
    if signal == Signal::Whep {
        if let Err(state) = served.wait_ready().await {
            return whep_error(WhepError::NoStream(served.name.clone(), state.to_string()));
        }
    }
    let path = served.name.clone();
    let location_path = path.clone();
    let created = match call_viewers(move || {
        let offer = Offer {
            path: &path,
            sdp: &offer,
            query: &query,
            client,
        };
        match signal {
            Signal::Whep => viewers.create(&offer),
            Signal::Whip => viewers.publish(&offer),
        }
    })
    .await
    {
        Ok(created) => created,
        Err(response) => return response,
    };
    let location = format!("/{location_path}/{}/{}", signal.segment(), created.id);
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, SDP.to_owned()),
            (header::LOCATION, location),
            (ACCEPT_PATCH, TRICKLE_ICE.to_owned()),
        ],
        created.answer,
    )
        .into_response()
}

/// Authentication of one listener's requests, and the addresses that failed it too
/// often.
pub(crate) struct Gate {
    auth: Arc<Authenticator>,
    failures: Arc<Mutex<Failures>>,
}

/// Why a request was not let through; each listener answers it in its own format
/// ([`Refusal::respond`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400: credentials in the URL's query.
    CredentialsInQuery,
    /// 429: this address failed too often; it may try again after this long.
    TooManyFailures(Duration),
    /// 401: no credentials were sent, and some are needed.
    CredentialsNeeded,
    /// 401: the credentials sent do not allow the request.
    Failed,
    /// 500: the authentication itself failed inside the relay.
    Internal,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::CredentialsInQuery => StatusCode::BAD_REQUEST,
            Refusal::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::CredentialsNeeded | Refusal::Failed => StatusCode::UNAUTHORIZED,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::CredentialsInQuery => format!(
                "credentials in the URL ({}) are refused, since URLs end up in logs: send \
                 them in the Authorization header (Basic user:password, or Bearer token)",
                auth::QUERY_CREDENTIALS.join(", ")
            ),
            Refusal::TooManyFailures(_) => {
                "too many failed authentications from this address: try again later".into()
            }
            Refusal::CredentialsNeeded => {
                "authentication needed: send credentials in the Authorization header".into()
            }
            Refusal::Failed => "authentication failed".into(),
            Refusal::Internal => {
                "the relay failed to authenticate this request (see its log)".into()
            }
        }
    }

    /// The answer, its body made by `body` from the status and the message, with
    /// `WWW-Authenticate` (the pages then ask for credentials) or `Retry-After`.
    pub(crate) fn respond(self, body: fn(StatusCode, String) -> Response) -> Response {
        let mut response = body(self.status(), self.message());
        let headers = response.headers_mut();
        // Refused before its body is read, so the server closes the connection after
        // the answer: said, a client does not send its next request on it to find it
        // closed (ureq's pool did, in the tests).
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        match self {
            Refusal::CredentialsNeeded | Refusal::Failed => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"relay\""),
                );
            }
            Refusal::TooManyFailures(wait) => {
                headers.insert(header::RETRY_AFTER, retry_after(wait));
            }
            Refusal::CredentialsInQuery | Refusal::Internal => {}
        }
        response
    }
}

impl Gate {
    pub(crate) fn new(auth: Arc<Authenticator>) -> Gate {
        Gate {
            auth,
            failures: Arc::default(),
        }
    }

    /// Allows `request` to do `action` on `path` (empty: the whole server), or says why
    /// not.
    pub(crate) fn authorize(
        &self,
        request: &Request,
        action: Action,
        path: &str,
    ) -> impl std::future::Future<Output = Result<(), Refusal>> + Send + 'static {
        // What the decision needs, taken before waiting (a request body is not Sync).
        let query = request.uri().query().unwrap_or_default().to_owned();
        let ip = client_ip(request);
        let header = request.headers().get(header::AUTHORIZATION);
        let credentials = Credentials::from_header(header.and_then(|v| v.to_str().ok()));
        let (authenticator, failures, path) =
            (self.auth.clone(), self.failures.clone(), path.to_owned());
        async move {
            decide(
                authenticator,
                &failures,
                action,
                path,
                ip,
                credentials,
                query,
            )
            .await
        }
    }
}

async fn decide(
    authenticator: Arc<Authenticator>,
    failures: &Mutex<Failures>,
    action: Action,
    path: String,
    ip: std::net::IpAddr,
    credentials: Credentials,
    query: String,
) -> Result<(), Refusal> {
    if auth::query_has_credentials(&query) {
        return Err(Refusal::CredentialsInQuery);
    }
    let now = std::time::Instant::now();
    let verdict = failures.lock().unwrap().verdict(ip, now);
    if let auth::Verdict::Limited(wait) = verdict {
        return Err(Refusal::TooManyFailures(wait));
    }
    let for_log = path.clone();
    let decided = tokio::task::spawn_blocking(move || {
        authenticator.authenticate(&auth::Request {
            action,
            path: &path,
            ip,
            credentials,
            query: &query,
            protocol: if action.has_path() { "webrtc" } else { "" },
        })
    })
    .await;
    let path = for_log;
    let denied = match decided {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(denied)) => denied,
        Err(e) => {
            tracing::error!("an authentication failed inside the relay: {e}");
            return Err(Refusal::Internal);
        }
    };
    if denied.ask_credentials {
        return Err(Refusal::CredentialsNeeded);
    }
    // Counted and logged; a client that sent none is only asked for some.
    let limit_reached = failures.lock().unwrap().failed(ip, now);
    let action = action.name();
    if limit_reached {
        tracing::warn!(%ip, action, path, reason = %denied,
            "authentication failed; this address is refused for the rest of the minute");
    } else {
        tracing::warn!(%ip, action, path, reason = %denied, "authentication failed");
    }
    Err(Refusal::Failed)
}

/// The address `request` came from; none (a request made in process): 0.0.0.0, which
/// no `ips` rule matches.
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<Client>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip())
}

/// `Retry-After` in whole seconds, rounded up, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// Runs a [`Viewers`] call off the async threads (the trait is synchronous and may
/// wait on the data plane) and turns its error into the response.
async fn call_viewers<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WhepError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(whep_error),
        Err(e) => {
            tracing::error!("a WHEP request failed inside the relay: {e}");
            Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the relay failed to handle this request (see its log)",
            ))
        }
    }
}

/// What `/metrics` serves.
pub trait Scrape: Send + Sync + 'static {
    /// The OpenMetrics text for the URL's `query` (its filters), or why the query is
    /// refused (an error a person can act on).
    fn scrape(&self, query: &str) -> Result<String, String>;
}

fn metrics(source: &dyn Scrape, query: &str) -> Response {
    match source.scrape(query) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

/// The media type of the request body, without parameters (`; charset=...`).
fn content_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

fn options(accept: HeaderName, media_type: &'static str) -> Response {
    (StatusCode::NO_CONTENT, [(accept, media_type)]).into_response()
}

fn whep_error(e: WhepError) -> Response {
    let status = match e {
        WhepError::Path(PathError::Unknown(_))
        | WhepError::UnknownSession(_)
        | WhepError::NoStream(..) => StatusCode::NOT_FOUND,
        WhepError::Path(PathError::BadName { .. } | PathError::BadSource { .. }) => {
            StatusCode::BAD_REQUEST
        }
        WhepError::BadOffer(_) => StatusCode::BAD_REQUEST,
        WhepError::TooManyReaders(_) | WhepError::Path(PathError::NotStarted { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        WhepError::Publish(PublishRefused::Busy(_)) => StatusCode::CONFLICT,
        WhepError::Publish(PublishRefused::NotPublisherPath(_)) => StatusCode::BAD_REQUEST,
        WhepError::Publish(PublishRefused::TakeoverTimedOut(_)) => StatusCode::SERVICE_UNAVAILABLE,
        WhepError::Crowded(Crowded::Full { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        WhepError::Crowded(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut response = text(status, e.to_string());
    if let WhepError::Crowded(crowded) = e {
        (response.headers_mut()).insert(header::RETRY_AFTER, retry_after(crowded.wait()));
    }
    response
}

fn unsupported_type(expected: &str, got: Option<&str>) -> Response {
    let got = got.map_or("none".to_owned(), |t| format!("'{t}'"));
    text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("send the body with Content-Type: {expected} (got {got})"),
    )
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Response {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here: use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "nothing here: a path's player page is /<path>/, its WHEP endpoint /<path>/whep, \
         its publish page /<path>/publish and its WHIP endpoint /<path>/whip",
    )
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
