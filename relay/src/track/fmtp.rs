//! SDP `a=fmtp` parameter lists (`key=value; key=value`, RFC 8866 6.15).

/// The value of `key` (case-insensitive, as the payload formats' RFCs define their keys).
pub fn param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_case_insensitively_and_trims() {
        let fmtp = "profile-level-id=1;mode=AAC-hbr;SizeLength=13; config=1210";
        assert_eq!(param(fmtp, "sizelength"), Some("13"));
        assert_eq!(param(fmtp, "config"), Some("1210"));
        assert_eq!(param(fmtp, "indexlength"), None);
        assert_eq!(param("", "mode"), None);
    }
}
