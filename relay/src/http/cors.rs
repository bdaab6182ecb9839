//! CORS for the WHEP endpoints (`webrtcAllowOrigins`).
//!
//! Written here rather than taken from tower-http: its `CorsLayer` answers every
//! OPTIONS request itself, which would hide WHEP's own OPTIONS answer (204 with
//! `Accept-Post`, 404 for unknown paths). What remains is a few headers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

pub(crate) struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// `origins`: exact origins (`https://example.com`), or `*` among them for any.
    pub(crate) fn new(origins: Vec<String>) -> Cors {
        Cors {
            any: origins.iter().any(|o| o == "*"),
            origins,
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
    }
}

pub(crate) async fn cors(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !cors.any {
        // The answer depends on the origin: caches must not share it across origins.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    let Some(origin) = origin.filter(|o| cors.allows(o)) else {
        return response;
    };
    let allow_origin = if cors.any {
        HeaderValue::from_static("*")
    } else {
        origin
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PATCH, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, If-Match"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    response
}
