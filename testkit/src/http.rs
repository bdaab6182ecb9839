//! HTTP as the kit speaks it to the relay and to the servers it is compared with.

use std::time::Duration;

/// An agent that hands back every status (callers judge 4xx and 5xx themselves) and
/// gives up on a request after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// `scheme://host:port` of `url`.
pub fn origin(url: &str) -> &str {
    let host = url.find("://").map_or(0, |i| i + 3);
    match url[host..].find('/') {
        Some(end) => &url[..host + end],
        None => url,
    }
}

/// `location` (a header's value, often only a path) resolved against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else {
        format!("{}{location}", origin(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_endpoint() {
        let base = "http://127.0.0.1:8889/cam/whep";
        assert_eq!(origin(base), "http://127.0.0.1:8889");
        assert_eq!(origin("http://127.0.0.1:8889"), "http://127.0.0.1:8889");
        assert_eq!(
            absolute(base, "/cam/whep/abc"),
            "http://127.0.0.1:8889/cam/whep/abc"
        );
        assert_eq!(absolute(base, "http://x/y"), "http://x/y");
    }
}
