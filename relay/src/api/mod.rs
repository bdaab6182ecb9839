//! MediaMTX's control API (v3), for what relay has: its routes, JSON field names,
//! pagination and errors, so that MediaMTX's tools and scripts work against relay.
//! `api/openapi.yaml` at the repository root describes exactly what is served here.
//!
//! | request                                   | answer                                  |
//! |-------------------------------------------|-----------------------------------------|
//! | `GET /v3/info`                            | `Info`                                  |
//! | `GET /v3/config/global/get`               | the loaded config, without its paths    |
//! | `GET /v3/config/pathdefaults/get`         | `pathDefaults`: every key, the file's or relay's default |
//! | `GET /v3/config/paths/list`, `get/{name}` | the configured paths (`PathConf`)       |
//! | `GET /v3/paths/list`, `get/{name}`        | the paths served now (`Path`)           |
//! | `GET /v3/webrtcsessions/list`, `get/{id}` | viewers and publishers (`WebRTCSession`)|
//! | `POST /v3/webrtcsessions/kick/{id}`       | ends the session                        |
//! | `PATCH /v3/config/global/patch`           | sets top-level keys                     |
//! | `PATCH /v3/config/pathdefaults/patch`     | sets keys of `pathDefaults`             |
//! | `POST /v3/config/paths/add/{name}`        | adds a path                             |
//! | `PATCH /v3/config/paths/patch/{name}`     | sets keys of a path                     |
//! | `POST /v3/config/paths/replace/{name}`    | sets a path to these keys only          |
//! | `DELETE /v3/config/paths/delete/{name}`   | removes a path                          |
//!
//! A change is applied at once, as a reload of the file would ([`crate::reload`]):
//! accepted only if the config with it loads (else 400 with every problem), and kept
//! until the file is next reloaded (the file is not written). Every request (but a
//! CORS preflight) is authenticated with action `api` first; errors are MediaMTX's
//! `{"status":"error","error":"..."}`. The config is shown with passwords replaced by
//! `<redacted>`, as MediaMTX shows it.
//!
//! The API has a listener of its own (`apiAddress`), served like the WHEP one
//! ([`crate::http::serve_connections`]: `readTimeout`, the header size limit).

mod json;
mod page;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};

use crate::auth::{Action, Authenticator};
use crate::config::{Config, Edit, EditError};
use crate::http::{self, cors::Cors, Gate};
use crate::paths::ServedPath;
use crate::worker::session_info::SessionInfo;

use page::Page;

/// What the API asks of the relay.
pub trait Backend: Send + Sync + 'static {
    /// Every path served now.
    fn paths(&self) -> Vec<Arc<ServedPath>>;
    /// The path served now under `name`.
    fn path(&self, name: &str) -> Option<Arc<ServedPath>>;
    /// Every session, viewers and publishers, pending or live.
    fn sessions(&self) -> Vec<Arc<SessionInfo>>;
    /// Session `id`.
    fn session(&self, id: &str) -> Option<Arc<SessionInfo>>;
    /// Ends session `id`; false if there is none.
    fn kick(&self, id: &str) -> bool;
    /// The config in effect.
    fn config(&self) -> Arc<Config>;
    /// Makes `edit` to the config and applies it. Blocking: paths start and stop.
    fn edit(&self, edit: Edit) -> Result<(), EditError>;
}

pub struct ApiOptions {
    /// `apiAllowOrigins`.
    pub allow_origins: Vec<String>,
    /// `readTimeout`, as for WHEP.
    pub read_timeout: Duration,
    /// Who may use the API (action `api`).
    pub auth: Arc<Authenticator>,
    /// The listener's open connections and their limits.
    pub connections: Arc<http::connections::Connections>,
}

/// Serves the API on `listener`; drop the future to stop.
pub async fn serve(listener: tokio::net::TcpListener, backend: Arc<dyn Backend>, opts: ApiOptions) {
    let app = Arc::new(App {
        backend,
        started: SystemTime::now(),
    });
    let router = router(app)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Gate::new(opts.auth)),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Cors::new(opts.allow_origins)),
            http::cors::cors,
        ));
    http::serve_connections(
        listener,
        http::with_logging(router),
        opts.read_timeout,
        opts.connections,
    )
    .await
}

struct App {
    backend: Arc<dyn Backend>,
    /// `Info.started`: when the relay started serving the API, at its own start.
    started: SystemTime,
}

type AppState = State<Arc<App>>;

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v3/info", get(info))
        .route("/v3/config/global/get", get(config_global))
        .route("/v3/config/pathdefaults/get", get(config_path_defaults))
        .route("/v3/config/paths/list", get(config_paths_list))
        .route("/v3/config/paths/get/{*name}", get(config_paths_get))
        .route("/v3/paths/list", get(paths_list))
        .route("/v3/paths/get/{*name}", get(paths_get))
        .route("/v3/webrtcsessions/list", get(sessions_list))
        .route("/v3/webrtcsessions/get/{id}", get(sessions_get))
        .route("/v3/webrtcsessions/kick/{id}", post(sessions_kick))
        .route("/v3/config/global/patch", patch(config_global_patch))
        .route(
            "/v3/config/pathdefaults/patch",
            patch(config_path_defaults_patch),
        )
        .route("/v3/config/paths/add/{*name}", post(config_paths_add))
        .route("/v3/config/paths/patch/{*name}", patch(config_paths_patch))
        .route(
            "/v3/config/paths/replace/{*name}",
            post(config_paths_replace),
        )
        .route(
            "/v3/config/paths/delete/{*name}",
            delete(config_paths_delete),
        )
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|method: Method| async move { ApiError::Method(method) })
        .with_state(app)
}

/// Action `api` for every request but a CORS preflight (a browser sends no credentials
/// with it), which is answered here.
async fn authenticate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    match gate.authorize(&request, Action::Api, "").await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.respond(error_body),
    }
}

/// Why a request failed, as MediaMTX answers it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400
    #[error("{0}")]
    BadRequest(String),
    /// 404
    #[error("path '{0}' not found")]
    NoPath(String),
    /// 404
    #[error("path configuration '{0}' not found")]
    NoPathConf(String),
    /// 404
    #[error("session '{0}' not found")]
    NoSession(String),
    /// 404
    #[error("no such route: relay serves the routes in api/openapi.yaml")]
    NoRoute,
    /// 405
    #[error("{0} is not allowed on this route")]
    Method(Method),
    /// 400 or 404: a config change refused.
    #[error(transparent)]
    Edit(#[from] EditError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoPath(_)
            | ApiError::NoPathConf(_)
            | ApiError::NoSession(_)
            | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Edit(EditError::NoPath(_)) => StatusCode::NOT_FOUND,
            ApiError::Edit(_) => StatusCode::BAD_REQUEST,
        };
        error_body(status, self.to_string())
    }
}

/// MediaMTX's error object.
fn error_body(status: StatusCode, message: String) -> Response {
    let body = json::Error {
        status: "error",
        error: message,
    };
    (status, Json(body)).into_response()
}

type Answer<T> = Result<Json<T>, ApiError>;

async fn info(State(app): AppState) -> Json<json::Info> {
    Json(json::Info::new(app.started))
}

/// The config as MediaMTX's JSON: the keys of relay's config file, as it writes them,
/// with the users' passwords redacted as MediaMTX redacts them.
pub(crate) fn config_json(config: &Config) -> serde_json::Map<String, serde_json::Value> {
    let mut keys = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        other => unreachable!("a config serializes to a map, not {other:?}"),
    };
    if let Some(serde_json::Value::Array(users)) = keys.get_mut("authInternalUsers") {
        for user in users {
            match user.get_mut("pass") {
                Some(pass) if pass.as_str().is_some_and(|p| !p.is_empty()) => {
                    *pass = REDACTED.into();
                }
                _ => {}
            }
        }
    }
    keys
}

/// What a password reads as in the API's answers.
pub(crate) const REDACTED: &str = "<redacted>";

async fn config_global(State(app): AppState) -> Json<serde_json::Value> {
    let mut global = config_json(&app.backend.config());
    global.remove("paths");
    global.remove("pathDefaults");
    Json(global.into())
}

async fn config_path_defaults(State(app): AppState) -> Json<serde_json::Value> {
    let mut config = config_json(&app.backend.config());
    Json(config.remove("pathDefaults").unwrap_or_default())
}

/// Each configured path's keys, with its `name` (MediaMTX's `PathConf`).
pub(crate) fn path_confs(config: &Config) -> Vec<serde_json::Value> {
    let Some(serde_json::Value::Object(paths)) = config_json(config).remove("paths") else {
        return Vec::new();
    };
    paths
        .into_iter()
        .map(|(name, mut conf)| {
            if let serde_json::Value::Object(keys) = &mut conf {
                keys.insert("name".into(), name.into());
            }
            conf
        })
        .collect()
}

async fn config_paths_list(
    State(app): AppState,
    page: Page,
) -> Json<page::List<serde_json::Value>> {
    Json(page.of(path_confs(&app.backend.config())))
}

async fn config_paths_get(
    State(app): AppState,
    UrlPath(name): UrlPath<String>,
) -> Answer<serde_json::Value> {
    path_confs(&app.backend.config())
        .into_iter()
        .find(|conf| conf["name"] == name.as_str())
        .map(Json)
        .ok_or(ApiError::NoPathConf(name))
}

/// A change's body: a JSON object of MediaMTX's keys.
pub(crate) type Keys = serde_json::Map<String, serde_json::Value>;

/// Reads a change's body, refusing what is not a JSON object with a 400 that says so
/// (axum's own `Json` rejection is not MediaMTX's error object).
pub(crate) fn keys(body: &[u8]) -> Result<Keys, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be a JSON object of config keys: {e}"
        ))
    })
}

/// Applies `edit` off the async threads (it may start and stop paths).
async fn change(app: &App, edit: Edit) -> Answer<json::Success> {
    let backend = app.backend.clone();
    tokio::task::spawn_blocking(move || backend.edit(edit))
        .await
        .map_err(|e| ApiError::BadRequest(format!("the change failed: {e}")))??;
    Ok(Json(json::Success { status: "ok" }))
}

async fn config_global_patch(State(app): AppState, body: Bytes) -> Answer<json::Success> {
    change(&app, Edit::Global(keys(&body)?)).await
}

async fn config_path_defaults_patch(State(app): AppState, body: Bytes) -> Answer<json::Success> {
    change(&app, Edit::PathDefaults(keys(&body)?)).await
}

async fn config_paths_add(
    State(app): AppState,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer<json::Success> {
    change(&app, Edit::AddPath(name, keys(&body)?)).await
}

async fn config_paths_patch(
    State(app): AppState,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer<json::Success> {
    change(&app, Edit::PatchPath(name, keys(&body)?)).await
}

async fn config_paths_replace(
    State(app): AppState,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer<json::Success> {
    change(&app, Edit::ReplacePath(name, keys(&body)?)).await
}

async fn config_paths_delete(
    State(app): AppState,
    UrlPath(name): UrlPath<String>,
) -> Answer<json::Success> {
    change(&app, Edit::DeletePath(name)).await
}

async fn paths_list(State(app): AppState, page: Page) -> Json<page::List<json::Path>> {
    let sessions = app.backend.sessions();
    let mut paths = app.backend.paths();
    paths.sort_by(|a, b| a.name.cmp(&b.name));
    let config = app.backend.config();
    let items = paths
        .iter()
        .map(|p| json::Path::new(p, &config, &sessions))
        .collect();
    Json(page.of(items))
}

async fn paths_get(State(app): AppState, UrlPath(name): UrlPath<String>) -> Answer<json::Path> {
    let path = app.backend.path(&name).ok_or(ApiError::NoPath(name))?;
    let sessions = app.backend.sessions();
    Ok(Json(json::Path::new(
        &path,
        &app.backend.config(),
        &sessions,
    )))
}

async fn sessions_list(State(app): AppState, page: Page) -> Json<page::List<json::WebRtcSession>> {
    let mut sessions = app.backend.sessions();
    // MediaMTX lists sessions in the order they came; the id breaks ties.
    sessions.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let items = sessions
        .iter()
        .map(|s| json::WebRtcSession::new(s))
        .collect();
    Json(page.of(items))
}

async fn sessions_get(
    State(app): AppState,
    UrlPath(id): UrlPath<String>,
) -> Answer<json::WebRtcSession> {
    let session = app.backend.session(&id).ok_or(ApiError::NoSession(id))?;
    Ok(Json(json::WebRtcSession::new(&session)))
}

async fn sessions_kick(
    State(app): AppState,
    UrlPath(id): UrlPath<String>,
) -> Answer<json::Success> {
    match app.backend.kick(&id) {
        true => Ok(Json(json::Success { status: "ok" })),
        false => Err(ApiError::NoSession(id)),
    }
}
