//! Who may do what: MediaMTX's authentication (`authMethod`), for the actions relay
//! serves (publish by WHIP, read by WHEP, metrics).
//!
//! - `internal`: users in the config file ([`User`]), each with its password (plain,
//!   `sha256:` or `argon2:`), the networks it may come from and its permissions. The
//!   user `any` matches everyone, with or without credentials.
//! - `http`: each request is POSTed as JSON to `authHTTPAddress`; a 2xx allows it.
//! - `jwt`: a bearer token (or the password) signed by a key of `authJWTJWKS`, whose
//!   claim `authJWTClaimKey` lists the permissions.
//!
//! Credentials come only from the `Authorization` header (Basic or Bearer); ones in
//! the query string are refused, since URLs end up in logs and browser history. The
//! checks are blocking (the http and jwt methods ask another server), so callers run
//! them off the async threads. Failed attempts are limited per address ([`Failures`]).

mod failures;
mod jwt;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub use failures::{Failures, Verdict};
use jwt::Jwks;

/// What a request wants to do, as MediaMTX names it in permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Read,
    Playback,
    Api,
    Metrics,
    Pprof,
}

impl Action {
    /// Publish, read and playback are of a path; the rest are of the whole server.
    pub fn has_path(self) -> bool {
        matches!(self, Action::Publish | Action::Read | Action::Playback)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Read => "read",
            Action::Playback => "playback",
            Action::Api => "api",
            Action::Metrics => "metrics",
            Action::Pprof => "pprof",
        }
    }
}

/// The paths a permission covers: all (empty), one name, or `~regex`.
#[derive(Debug, Clone)]
pub enum PathRule {
    Any,
    Name(String),
    Pattern(regex::Regex),
}

impl PathRule {
    pub fn parse(text: &str) -> Result<PathRule, String> {
        Ok(match text.strip_prefix('~') {
            _ if text.is_empty() => PathRule::Any,
            Some(pattern) => PathRule::Pattern(
                regex::Regex::new(pattern).map_err(|e| format!("'{text}' is not a regex: {e}"))?,
            ),
            None => PathRule::Name(text.to_owned()),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Any => true,
            PathRule::Name(name) => name == path,
            PathRule::Pattern(re) => re.is_match(path),
        }
    }

    /// As written in the config.
    pub fn as_str(&self) -> String {
        match self {
            PathRule::Any => String::new(),
            PathRule::Name(name) => name.clone(),
            PathRule::Pattern(re) => format!("~{}", re.as_str()),
        }
    }
}

impl PartialEq for PathRule {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub action: Action,
    /// Only for publish, read and playback (MediaMTX ignores it for the others).
    pub path: PathRule,
}

/// Whether `permissions` allow `action` on `path`.
fn permits(permissions: &[Permission], action: Action, path: &str) -> bool {
    permissions
        .iter()
        .any(|p| p.action == action && (!action.has_path() || p.path.matches(path)))
}

/// A user name or password as written: plain, `sha256:` and the base64 of its SHA-256,
/// or `argon2:` and its PHC string (`$argon2id$v=19$...`), as MediaMTX writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, String> {
        if let Some(hash) = text.strip_prefix("sha256:") {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(hash)
                .map_err(|_| "a sha256: value is the base64 of the SHA-256 digest".to_owned())?;
            if digest.len() != 32 {
                return Err("a sha256: value is the base64 of a 32-byte SHA-256 digest".into());
            }
        } else if let Some(phc) = text.strip_prefix("argon2:") {
            let hash = argon2::PasswordHash::new(phc)
                .map_err(|e| format!("an argon2: value is a PHC string ($argon2id$...): {e}"))?;
            let known = argon2::Algorithm::new(hash.algorithm.as_str()).is_ok();
            if !known || hash.hash.is_none() {
                return Err(
                    "an argon2: value is a whole argon2 hash ($argon2id$v=19$m=...,t=...,\
                            p=...$salt$hash)"
                        .into(),
                );
            }
        }
        Ok(Secret(text.to_owned()))
    }

    /// Whether `guess` is this secret; in constant time for the plain and sha256 forms.
    pub fn check(&self, guess: &str) -> bool {
        let same = |a: &[u8], b: &[u8]| bool::from(subtle::ConstantTimeEq::ct_eq(a, b));
        if let Some(hash) = self.0.strip_prefix("sha256:") {
            let digest = ring::digest::digest(&ring::digest::SHA256, guess.as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
            same(hash.as_bytes(), encoded.as_bytes())
        } else if let Some(phc) = self.0.strip_prefix("argon2:") {
            use argon2::PasswordVerifier;
            argon2::PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(guess.as_bytes(), &hash)
                    .is_ok()
            })
        } else {
            // MediaMTX: an empty password is no password.
            self.0.is_empty() || same(self.0.as_bytes(), guess.as_bytes())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One entry of `authInternalUsers`.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `None`: `any`, everyone, with credentials or without.
    pub user: Option<Secret>,
    pub pass: Secret,
    /// Where this user may come from; empty: anywhere.
    pub ips: Vec<ipnet::IpNet>,
    pub permissions: Vec<Permission>,
}

impl User {
    fn allows(&self, request: &Request) -> bool {
        (self.ips.is_empty() || self.ips.iter().any(|net| net.contains(&request.ip)))
            && permits(&self.permissions, request.action, request.path)
            && self.user.as_ref().is_none_or(|user| {
                user.check(&request.credentials.user) && self.pass.check(&request.credentials.pass)
            })
    }
}

/// `authMethod` and its keys, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    Internal(Vec<User>),
    Http {
        /// `authHTTPAddress`: an http:// or https:// URL.
        address: String,
        /// `authHTTPExclude`: allowed without asking.
        exclude: Vec<Permission>,
    },
    Jwt {
        /// `authJWTJWKS`: the URL of the key set.
        jwks: String,
        /// `authJWTClaimKey`: the claim that lists the permissions.
        claim_key: String,
        /// `authJWTIssuer`, `authJWTAudience`: checked when set.
        issuer: Option<String>,
        audience: Option<String>,
        /// `authJWTExclude`: allowed without a token.
        exclude: Vec<Permission>,
    },
}

impl AuthConfig {
    /// MediaMTX's defaults: anyone may publish, read and play back anything; the API,
    /// metrics and pprof are open from this host only.
    pub fn mediamtx_default() -> AuthConfig {
        let any = |ips: &[&str], actions: &[Action]| User {
            user: None,
            pass: Secret(String::new()),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            permissions: actions
                .iter()
                .map(|&action| Permission {
                    action,
                    path: PathRule::Any,
                })
                .collect(),
        };
        AuthConfig::Internal(vec![
            any(&[], &[Action::Publish, Action::Read, Action::Playback]),
            any(
                &["127.0.0.1/32", "::1/128"],
                &[Action::Api, Action::Metrics, Action::Pprof],
            ),
        ])
    }
}

/// What a request offers to prove who it is, from its `Authorization` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub pass: String,
    /// A Bearer token.
    pub token: String,
}

impl Credentials {
    /// From an `Authorization` header: `Basic` (user:password) or `Bearer` (a token).
    /// Anything else is no credentials.
    pub fn from_header(value: Option<&str>) -> Credentials {
        let Some((scheme, rest)) = value.and_then(|v| v.trim().split_once(' ')) else {
            return Credentials::default();
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credentials {
                token: rest.to_owned(),
                ..Credentials::default()
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Credentials::default();
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, pass)) => Credentials {
                user: user.to_owned(),
                pass: pass.to_owned(),
                token: String::new(),
            },
            None => Credentials::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.user.is_empty() && self.pass.is_empty() && self.token.is_empty()
    }

    /// The JWT: the bearer token, or else the password (as MediaMTX takes it).
    fn jwt(&self) -> &str {
        if self.token.is_empty() {
            &self.pass
        } else {
            &self.token
        }
    }
}

/// The query-string keys MediaMTX once read credentials from; relay refuses them.
pub const QUERY_CREDENTIALS: &[&str] = &["user", "pass", "token", "jwt"];

/// Whether a URL query carries credentials (which are refused, not read).
pub fn query_has_credentials(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| QUERY_CREDENTIALS.contains(&&*k))
}

/// One request to authenticate.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: Action,
    /// The path's name; empty for actions of the whole server.
    pub path: &'a str,
    pub ip: IpAddr,
    pub credentials: Credentials,
    /// The URL's query, passed on to an http hook.
    pub query: &'a str,
    /// `webrtc` for WHIP and WHEP, empty for the server's own endpoints.
    pub protocol: &'static str,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// For the log, never for the client: it may say which part was wrong.
    pub reason: String,
    /// The request had no credentials: the client should ask its user for some.
    pub ask_credentials: bool,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Decides requests by the configured method. Shared by the HTTP listeners.
pub struct Authenticator {
    /// Replaced when the config is reloaded; a request is decided under one config.
    config: ArcSwap<AuthConfig>,
    /// For the http hook and the JWKS: `readTimeout` bounds each call.
    agent: ureq::Agent,
    jwks: Jwks,
}

impl Authenticator {
    pub fn new(config: AuthConfig, timeout: Duration) -> Authenticator {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Authenticator {
            config: ArcSwap::from_pointee(config),
            agent,
            jwks: Jwks::default(),
        }
    }

    /// Decides by `config` from now on (a reload). Keys fetched from a JWKS are
    /// forgotten: a new key set (or none) must not let the old one's tokens in.
    pub fn replace(&self, config: AuthConfig) {
        self.config.store(Arc::new(config));
        self.jwks.forget();
    }

    /// Allows or refuses `request`. Blocking: the http and jwt methods ask a server.
    pub fn authenticate(&self, request: &Request) -> Result<(), Denied> {
        self.authenticate_at(request, Instant::now())
    }

    /// [`Authenticator::authenticate`] at `now`, which says whether the JWKS is due to
    /// be fetched again.
    fn authenticate_at(&self, request: &Request, now: Instant) -> Result<(), Denied> {
        let config = self.config.load();
        let result = match &**config {
            AuthConfig::Internal(users) => {
                if users.iter().any(|u| u.allows(request)) {
                    Ok(())
                } else {
                    Err("no user of authInternalUsers matches".to_owned())
                }
            }
            AuthConfig::Http { address, exclude } => {
                if permits(exclude, request.action, request.path) {
                    Ok(())
                } else {
                    self.ask_hook(address, request)
                }
            }
            AuthConfig::Jwt {
                jwks,
                claim_key,
                issuer,
                audience,
                exclude,
            } => {
                if permits(exclude, request.action, request.path) {
                    Ok(())
                } else {
                    let token = request.credentials.jwt();
                    if token.is_empty() {
                        Err("no JWT given".to_owned())
                    } else {
                        let claims = jwt::Claims {
                            key: claim_key,
                            issuer: issuer.as_deref(),
                            audience: audience.as_deref(),
                        };
                        let keys = |url: &str| self.fetch_jwks(url);
                        let permissions = self.jwks.verify(jwks, token, &claims, now, keys);
                        permissions.and_then(|p| {
                            if permits(&p, request.action, request.path) {
                                Ok(())
                            } else {
                                Err("the JWT does not permit this action".to_owned())
                            }
                        })
                    }
                }
            }
        };
        result.map_err(|reason| Denied {
            reason,
            ask_credentials: request.credentials.is_empty(),
        })
    }

    /// MediaMTX's hook request: a 2xx answer allows.
    fn ask_hook(&self, address: &str, request: &Request) -> Result<(), String> {
        let body = serde_json::json!({
            "ip": request.ip.to_string(),
            "user": request.credentials.user,
            "password": request.credentials.pass,
            "token": request.credentials.token,
            "action": request.action.name(),
            "path": request.path,
            "protocol": request.protocol,
            "id": null,
            "query": request.query,
        });
        match self.agent.post(address).send_json(&body) {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("{address} answered {}", response.status())),
            Err(e) => Err(format!("cannot reach authHTTPAddress {address}: {e}")),
        }
    }

    fn fetch_jwks(&self, url: &str) -> Result<String, String> {
        let fail = |e: &dyn fmt::Display| format!("cannot fetch authJWTJWKS {url}: {e}");
        let mut response = self.agent.get(url).call().map_err(|e| fail(&e))?;
        if !response.status().is_success() {
            return Err(fail(&response.status()));
        }
        response
            .body_mut()
            .with_config()
            .limit(jwt::MAX_JWKS)
            .read_to_string()
            .map_err(|e| fail(&e))
    }
}
