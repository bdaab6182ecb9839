//! WHEP signalling: a viewer POSTs its SDP offer to the endpoint, the server
//! answers with 201 Created, its SDP answer and the session's URL in `Location`, and
//! the viewer leaves with DELETE on that URL.

use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The WHEP endpoint of `path` (a query after it too) on the relay serving at `http`.
pub fn endpoint(http: &str, path: &str) -> String {
    signalling(http, path, "whep")
}

/// The `signal` (`whep`, `whip`) endpoint of `path` on the relay serving at `http`; a
/// query after the path goes after the endpoint (`live?a=1`: `/live/whep?a=1`).
pub(crate) fn signalling(http: &str, path: &str, signal: &str) -> String {
    match path.split_once('?') {
        Some((path, query)) => format!("{http}/{path}/{signal}?{query}"),
        None => format!("{http}/{path}/{signal}"),
    }
}

/// What the server said to an offer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The session's URL, absolute.
    pub location: Option<String>,
    /// How long the server asked to wait before offering again (`Retry-After`, in
    /// seconds), on a refusal for being busy.
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// POSTs an SDP offer to `endpoint`, whatever the server answers.
pub fn post_offer(agent: &ureq::Agent, endpoint: &str, sdp: &str) -> anyhow::Result<Reply> {
    post_offer_as(agent, endpoint, sdp, None)
}

/// [`post_offer`] with an `Authorization` header (`Basic ...`, `Bearer ...`).
pub fn post_offer_as(
    agent: &ureq::Agent,
    endpoint: &str,
    sdp: &str,
    authorization: Option<&str>,
) -> anyhow::Result<Reply> {
    let mut request = agent
        .post(endpoint)
        .header("Content-Type", "application/sdp");
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = request
        .send(sdp)
        .with_context(|| format!("POST {endpoint}"))?;
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| crate::http::absolute(endpoint, l));
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|r| r.to_str().ok()?.trim().parse().ok())
        .map(Duration::from_secs);
    Ok(Reply {
        status: response.status().as_u16(),
        location,
        retry_after,
        body: response.body_mut().read_to_string()?,
    })
}

/// An offer the server did not take: a caller that expects refusals (a full server's
/// 503, a limit's 429) finds this under the error's context with `downcast_ref`.
#[derive(Debug)]
pub struct Refused {
    pub endpoint: String,
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "WHEP offer to {} refused with HTTP {}: {}",
            self.endpoint, self.status, self.body
        )
    }
}

impl std::error::Error for Refused {}

/// POSTs an offer the server must take (201 Created): its SDP answer and the session's
/// URL; any other status is a [`Refused`].
pub fn answer(
    agent: &ureq::Agent,
    endpoint: &str,
    sdp: &str,
) -> anyhow::Result<(String, Option<String>)> {
    answer_patiently(agent, endpoint, sdp, Duration::ZERO)
}

/// How long a load tool keeps offering to a relay that says it is busy: a worker
/// catching up after a burst of joins takes a second or two.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// [`answer`], but an offer refused for the server being busy (503: a worker running
/// late; 429: too many sessions not yet connected) is made again after the reply's
/// `Retry-After`, as a WHEP player does, for at most `patience`. For load tools that
/// need all their viewers: a relay at capacity refuses while its workers catch up.
pub fn answer_patiently(
    agent: &ureq::Agent,
    endpoint: &str,
    sdp: &str,
    patience: Duration,
) -> anyhow::Result<(String, Option<String>)> {
    let give_up = Instant::now() + patience;
    loop {
        let reply = post_offer(agent, endpoint, sdp)?;
        match (reply.status, reply.retry_after) {
            (201, _) => return Ok((reply.body, reply.location)),
            (429 | 503, Some(wait)) if Instant::now() + wait <= give_up => std::thread::sleep(wait),
            (status, _) => {
                return Err(Refused {
                    endpoint: endpoint.to_string(),
                    status,
                    body: reply.body,
                }
                .into())
            }
        }
    }
}

/// Ends the session at `url` (the `Location` of its offer): the HTTP status.
pub fn delete(agent: &ureq::Agent, url: &str) -> anyhow::Result<u16> {
    let response = agent
        .delete(url)
        .call()
        .with_context(|| format!("DELETE {url}"))?;
    Ok(response.status().as_u16())
}

/// The `Authorization` header of Basic credentials.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}
