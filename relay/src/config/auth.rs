//! The authentication keys as written (`authMethod`, `authInternalUsers`,
//! `authHTTP*`, `authJWT*`), checked into an [`AuthConfig`] and written back.

use serde::{Deserialize, Serialize};

use super::{null_default, Problems, RawConfig};
use crate::auth::{Action, AuthConfig, PathRule, Permission, Secret, User};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AuthMethod {
    #[default]
    Internal,
    Http,
    Jwt,
}

/// One entry of `authInternalUsers` as written. MediaMTX's file leaves `pass:` and
/// `path:` empty (null) for "none" and "any".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    #[serde(deserialize_with = "null_default")]
    user: String,
    #[serde(default, deserialize_with = "null_default")]
    pass: String,
    #[serde(default, deserialize_with = "null_default")]
    ips: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    permissions: Vec<RawPermission>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPermission {
    action: Action,
    #[serde(default, deserialize_with = "null_default")]
    path: String,
}

/// The authentication keys of `raw`, checked; `None` with the problems noted.
pub(super) fn check(raw: &RawConfig, problems: &mut Problems) -> Option<AuthConfig> {
    let before = problems.0.len();
    let config = match raw.auth_method {
        AuthMethod::Internal => AuthConfig::Internal(
            raw.auth_internal_users
                .iter()
                .enumerate()
                .filter_map(|(i, u)| check_user(u, &format!("authInternalUsers.{i}"), problems))
                .collect(),
        ),
        AuthMethod::Http => AuthConfig::Http {
            address: check_url("authHTTPAddress", &raw.auth_http_address, problems),
            exclude: permissions("authHTTPExclude", &raw.auth_http_exclude, problems),
        },
        AuthMethod::Jwt => {
            if raw.auth_jwt_claim_key.trim().is_empty() {
                problems.add(
                    "authJWTClaimKey",
                    "name the claim with the permissions, e.g. mediamtx_permissions",
                );
            }
            let set = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
            AuthConfig::Jwt {
                jwks: check_url("authJWTJWKS", &raw.auth_jwt_jwks, problems),
                claim_key: raw.auth_jwt_claim_key.trim().to_owned(),
                issuer: set(&raw.auth_jwt_issuer),
                audience: set(&raw.auth_jwt_audience),
                exclude: permissions("authJWTExclude", &raw.auth_jwt_exclude, problems),
            }
        }
    };
    // Values relay would have to ignore, changing who may do what: refused.
    for (key, value, why) in [
        (
            "authHTTPFingerprint",
            &raw.auth_http_fingerprint,
            "relay does not pin certificates",
        ),
        (
            "authJWTJWKSFingerprint",
            &raw.auth_jwt_jwks_fingerprint,
            "relay does not pin certificates",
        ),
    ] {
        if !value.trim().is_empty() {
            problems.add(
                key,
                format!("{why}: give the server a certificate this host trusts and remove the key"),
            );
        }
    }
    if raw.auth_jwt_in_http_query {
        problems.add(
            "authJWTInHTTPQuery",
            "relay reads tokens only from the Authorization header (URLs end up in logs): \
             write no",
        );
    }
    (problems.0.len() == before).then_some(config)
}

fn check_url(key: &str, value: &str, problems: &mut Problems) -> String {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => value.trim().to_owned(),
        _ if value.trim().is_empty() => {
            problems.add(
                key,
                "is needed by this authMethod: write an http:// or https:// URL",
            );
            String::new()
        }
        _ => {
            problems.add(key, format!("'{value}' is not an http:// or https:// URL"));
            String::new()
        }
    }
}

fn check_user(raw: &RawUser, key: &str, problems: &mut Problems) -> Option<User> {
    let user = match raw.user.trim() {
        "" => {
            problems.add(
                format!("{key}.user"),
                "name the user, or write 'any' for everyone",
            );
            None
        }
        "any" => Some(None),
        name => problems
            .take(&format!("{key}.user"), Secret::parse(name))
            .map(Some),
    };
    let pass = problems.take(&format!("{key}.pass"), Secret::parse(raw.pass.trim()));
    let ips = raw
        .ips
        .iter()
        .enumerate()
        .filter_map(|(i, ip)| problems.take(&format!("{key}.ips.{i}"), network(ip)))
        .collect();
    let permissions = permissions(&format!("{key}.permissions"), &raw.permissions, problems);
    Some(User {
        user: user?,
        pass: pass?,
        ips,
        permissions,
    })
}

/// An address (a network of one) or a network in CIDR notation.
fn network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{text}' is not an IP address or a network such as 192.168.0.0/16"))
}

fn permissions(key: &str, raw: &[RawPermission], problems: &mut Problems) -> Vec<Permission> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let path = problems.take(&format!("{key}.{i}.path"), PathRule::parse(p.path.trim()))?;
            Some(Permission {
                action: p.action,
                path,
            })
        })
        .collect()
}

/// MediaMTX's claim key.
pub(super) const CLAIM_KEY: &str = "mediamtx_permissions";

/// Writes `config` into `raw`'s keys.
pub(super) fn write(config: &AuthConfig, raw: &mut RawConfig) {
    let written = |permissions: &[Permission]| {
        permissions
            .iter()
            .map(|p| RawPermission {
                action: p.action,
                path: p.path.as_str(),
            })
            .collect()
    };
    match config {
        AuthConfig::Internal(users) => {
            raw.auth_method = AuthMethod::Internal;
            raw.auth_internal_users = users
                .iter()
                .map(|u| RawUser {
                    user: u.user.as_ref().map_or("any", Secret::as_str).to_owned(),
                    pass: u.pass.as_str().to_owned(),
                    ips: u.ips.iter().map(ToString::to_string).collect(),
                    permissions: written(&u.permissions),
                })
                .collect();
        }
        AuthConfig::Http { address, exclude } => {
            raw.auth_method = AuthMethod::Http;
            raw.auth_http_address.clone_from(address);
            raw.auth_http_exclude = written(exclude);
        }
        AuthConfig::Jwt {
            jwks,
            claim_key,
            issuer,
            audience,
            exclude,
        } => {
            raw.auth_method = AuthMethod::Jwt;
            raw.auth_jwt_jwks.clone_from(jwks);
            raw.auth_jwt_claim_key.clone_from(claim_key);
            raw.auth_jwt_issuer = issuer.clone().unwrap_or_default();
            raw.auth_jwt_audience = audience.clone().unwrap_or_default();
            raw.auth_jwt_exclude = written(exclude);
        }
    }
}
