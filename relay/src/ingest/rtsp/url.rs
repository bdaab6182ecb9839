//! `source: rtsp://user:pass@cam:554/stream`: the camera's URL with its credentials
//! taken out (retina refuses URLs that carry them, and logs must not show them).

use std::fmt;

use retina::client::Credentials;
use url::Url;

/// A camera's RTSP URL, read once when the config is loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// Without user and password.
    url: Url,
    /// Percent-decoded, as the camera checks them (Basic or Digest).
    credentials: Option<(String, String)>,
}

impl RtspUrl {
    /// Parses `rtsp://[user[:pass]@]host[:port][/path]`; the error says what to write.
    pub fn parse(given: &str) -> Result<RtspUrl, String> {
        let mut url = Url::parse(given).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "rtsp" => {}
            "rtsps" => return Err("rtsps (RTSP over TLS) is not supported yet: use rtsp://".into()),
            other => return Err(format!("'{other}' is not an RTSP scheme: write rtsp://")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("no host: write rtsp://HOST[:PORT]/PATH".into());
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "the user or password is not valid UTF-8".to_string())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, pass) => Some((decode(user)?, decode(pass.unwrap_or(""))?)),
        };
        // Setting these cannot fail on a URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(RtspUrl { url, credentials })
    }

    /// The URL retina connects to (no credentials).
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn credentials(&self) -> Option<Credentials> {
        self.credentials
            .as_ref()
            .map(|(username, password)| Credentials {
                username: username.clone(),
                password: password.clone(),
            })
    }

    /// The URL without its credentials, for logs and path states.
    pub fn redacted(&self) -> &str {
        self.url.as_str()
    }
}

/// The URL as the config wrote it, credentials included (a config writes back whole).
impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if let Some((user, pass)) = &self.credentials {
            let _ = url.set_username(user);
            if !pass.is_empty() {
                let _ = url.set_password(Some(pass));
            }
        }
        f.write_str(url.as_str())
    }
}

/// Never the password: configs are logged with `{:?}`.
impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.credentials.as_ref().map(|(u, _)| u.as_str());
        f.debug_struct("RtspUrl")
            .field("url", &self.url.as_str())
            .field("user", &user)
            .finish()
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let u = RtspUrl::parse("rtsp://admin:p%40ss%3Aw@cam.local:8554/stream1").unwrap();
        assert_eq!(u.url().as_str(), "rtsp://cam.local:8554/stream1");
        assert_eq!(u.redacted(), "rtsp://cam.local:8554/stream1");
        let c = u.credentials().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss:w")
        );
        assert!(!format!("{u:?}").contains("p@ss"), "{u:?}");
        // Written back whole, and read back the same.
        assert_eq!(RtspUrl::parse(&u.to_string()).unwrap(), u);
        let plain = RtspUrl::parse("rtsp://10.0.0.7/live").unwrap();
        assert_eq!(plain.credentials(), None);
        assert_eq!(plain.to_string(), "rtsp://10.0.0.7/live");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for (bad, why) in [
            ("rtsp://", "no host"),
            ("rtsps://cam/x", "rtsps"),
            ("http://cam/x", "not an RTSP scheme"),
            ("rtsp://cam:99999/x", "not a URL"),
        ] {
            let e = RtspUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
