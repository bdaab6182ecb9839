//! What a viewer's offer must have before str0m sees it: SDP's line syntax (RFC 8866),
//! ICE credentials as RFC 8839 defines them and DTLS fingerprints strong enough to
//! authenticate the viewer's certificate (RFC 8122, RFC 8827).
//!
//! str0m parses more loosely: it takes any ufrag (one with a ':' makes the STUN username
//! `ours:theirs` ambiguous), any password length, MD5 and SHA-1 fingerprints, and stops
//! at the first line it cannot read, silently ignoring the rest of the offer. So the
//! offer's text is checked here first, and every refusal names the line and what the
//! RFC asks for. What str0m still refuses is told the same way ([`unreadable`]).

use str0m::error::SdpError;

/// Why an offer was refused. Lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferFault {
    #[error(
        "the offer is not valid SDP: line {line} ('{text}') is not <letter>=<value> \
         (RFC 8866 section 5)"
    )]
    NotSdp { line: usize, text: String },
    #[error(
        "the offer is not valid SDP: line {line} must be the {expected}= line (a \
         description starts with v=, o= and s= lines, RFC 8866 section 5)"
    )]
    OutOfOrder { line: usize, expected: char },
    /// Past this check, str0m's parser refused the offer.
    #[error("the offer is not valid SDP: {}", unreadable_message(.at, .detail))]
    Unreadable {
        /// The line it stopped at, and its start.
        at: Option<(usize, String)>,
        /// What str0m says is wrong, when it says more than where.
        detail: Option<String>,
    },
    #[error(
        "line {line}: a={attribute} {problem}: RFC 8839 section 5.4 wants {min} to \
         {ICE_MAX} letters, digits, '+' or '/'"
    )]
    BadIceCredential {
        line: usize,
        attribute: &'static str,
        min: usize,
        problem: String,
    },
    #[error(
        "the m= section at line {line} has no a={attribute}, and the session has none \
         for it to inherit (RFC 8839 section 5.4)"
    )]
    MissingIceCredential {
        line: usize,
        attribute: &'static str,
    },
    #[error("line {line}: a=fingerprint {problem} (RFC 8122 section 5)")]
    BadFingerprint { line: usize, problem: String },
    #[error(
        "line {line}: a=fingerprint uses {hash}, which is too weak to authenticate the \
         DTLS certificate (RFC 8122, RFC 8827): use sha-256"
    )]
    WeakFingerprint { line: usize, hash: &'static str },
    #[error(
        "the offer has no a=fingerprint:sha-256 line: relay checks the viewer's DTLS \
         certificate against its SHA-256 fingerprint (RFC 8122, RFC 8827)"
    )]
    NoSha256Fingerprint,
}

/// The longest ufrag and password RFC 8839 allows.
const ICE_MAX: usize = 256;

/// An ICE credential attribute and its shortest length (RFC 8839 section 5.4).
struct IceRule {
    attribute: &'static str,
    min: usize,
}

const UFRAG: IceRule = IceRule {
    attribute: "ice-ufrag",
    min: 4,
};
const PWD: IceRule = IceRule {
    attribute: "ice-pwd",
    min: 22,
};

/// How much of a client's line a message repeats.
const EXCERPT: usize = 40;
/// How much of str0m's own explanation a message repeats.
const DETAIL: usize = 200;

/// Checks `offer` against the minimums above; the first fault found is returned.
pub fn check(offer: &str) -> Result<(), OfferFault> {
    let mut session = Credentials::default();
    let mut media: Vec<(usize, Credentials)> = Vec::new();
    let mut sha256 = false;
    for (line, text) in lines(offer) {
        let (kind, value) = match text.as_bytes() {
            [kind @ b'a'..=b'z', b'=', ..] => (*kind, &text[2..]),
            _ => {
                return Err(OfferFault::NotSdp {
                    line,
                    text: excerpt(text, EXCERPT),
                })
            }
        };
        // RFC 8866: a description starts with its v=, o= and s= lines.
        if let Some(&expected) = b"vos".get(line - 1) {
            if kind != expected {
                return Err(OfferFault::OutOfOrder {
                    line,
                    expected: expected.into(),
                });
            }
        }
        match kind {
            b'm' => media.push((line, Credentials::for_media_line(value))),
            b'a' => {
                let (name, value) = value.split_once(':').unwrap_or((value, ""));
                let section = media.last_mut().map_or(&mut session, |(_, c)| c);
                match name {
                    "ice-ufrag" => {
                        ice_credential(line, &UFRAG, value)?;
                        section.ufrag = true;
                    }
                    "ice-pwd" => {
                        ice_credential(line, &PWD, value)?;
                        section.pwd = true;
                    }
                    "fingerprint" => sha256 |= fingerprint(line, value)? == SHA256,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (line, own) in media.iter().filter(|(_, own)| own.own_transport) {
        for (rule, present) in [
            (&UFRAG, own.ufrag || session.ufrag),
            (&PWD, own.pwd || session.pwd),
        ] {
            if !present {
                return Err(OfferFault::MissingIceCredential {
                    line: *line,
                    attribute: rule.attribute,
                });
            }
        }
    }
    if !sha256 {
        return Err(OfferFault::NoSha256Fingerprint);
    }
    Ok(())
}

/// Which ICE credentials a section (the session, or one m= section) carries.
#[derive(Default)]
struct Credentials {
    ufrag: bool,
    pwd: bool,
    /// Whether an m= section has a transport of its own, and so needs credentials (its
    /// own or the session's). One with port 0 has none: it is disabled, or bundle-only
    /// and on the BUNDLE group's transport, whose first section has credentials.
    own_transport: bool,
}

impl Credentials {
    /// For the m= section whose line has this value (`<media> <port> <proto> <fmt>...`).
    fn for_media_line(value: &str) -> Credentials {
        Credentials {
            own_transport: value.split(' ').nth(1) != Some("0"),
            ..Credentials::default()
        }
    }
}

/// `offer`'s lines, numbered from 1, without their CRLF or LF. Blank lines at the end
/// are left out; a blank line before the end is kept, to be refused as not SDP.
fn lines(offer: &str) -> impl Iterator<Item = (usize, &str)> {
    offer
        .trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

/// Checks an ICE ufrag or password.
fn ice_credential(line: usize, rule: &IceRule, value: &str) -> Result<(), OfferFault> {
    let fault = |problem: String| OfferFault::BadIceCredential {
        line,
        attribute: rule.attribute,
        min: rule.min,
        problem,
    };
    // RFC 8839's ice-char: ALPHA / DIGIT / "+" / "/".
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Err(fault(format!(
            "has '{}', which is not allowed",
            c.escape_debug()
        )));
    }
    if !(rule.min..=ICE_MAX).contains(&value.len()) {
        return Err(fault(format!("is {} characters long", value.len())));
    }
    Ok(())
}

const SHA256: &str = "sha-256";
/// The hash functions of RFC 8122 accepted, with their digests' lengths in bytes.
const STRONG: [(&str, usize); 4] = [
    ("sha-224", 28),
    (SHA256, 32),
    ("sha-384", 48),
    ("sha-512", 64),
];
/// Those refused: broken (practical collisions are known for both).
const WEAK: [&str; 2] = ["md5", "sha-1"];

/// Checks `<hash-func> <hex pairs>`; returns the hash function, lower case.
fn fingerprint(line: usize, value: &str) -> Result<&'static str, OfferFault> {
    let fault = |problem: String| OfferFault::BadFingerprint { line, problem };
    let Some((hash, digest)) = value.split_once(' ') else {
        return Err(fault(format!(
            "'{}' is not '<hash function> <hex pairs>', e.g. 'sha-256 AB:CD:...'",
            excerpt(value, EXCERPT)
        )));
    };
    // Hash function names are case-insensitive (RFC 8122's ABNF).
    let named = hash.to_ascii_lowercase();
    if let Some(&weak) = WEAK.iter().find(|&&weak| weak == named) {
        return Err(OfferFault::WeakFingerprint { line, hash: weak });
    }
    let Some(&(hash, len)) = STRONG.iter().find(|(strong, _)| *strong == named) else {
        return Err(fault(format!(
            "names the hash function '{}': use sha-256 (or sha-224, sha-384, sha-512)",
            excerpt(hash, EXCERPT)
        )));
    };
    let pairs = digest.split(':');
    if !pairs
        .clone()
        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(fault(format!(
            "has '{}' where {len} hex pairs separated by ':' belong",
            excerpt(digest, EXCERPT)
        )));
    }
    let count = pairs.count();
    if count != len {
        return Err(fault(format!(
            "has {count} bytes, but a {hash} digest has {len}"
        )));
    }
    Ok(hash)
}

/// The refusal for an offer that passed [`check`] but that str0m's parser refused with
/// `error`: the line it stopped at, and its own explanation if it has one.
pub fn unreadable(offer: &str, error: &SdpError) -> OfferFault {
    let (SdpError::ParseError(message) | SdpError::Inconsistent(message)) = error;
    let at = stopped_at(offer, message).and_then(|offset| {
        let line = 1 + offer.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        let (_, text) = lines(offer).nth(line - 1)?;
        Some((line, excerpt(text, EXCERPT)))
    });
    // The rest of the message is combine's lists of tokens ("Unexpected `x`", "Expected
    // `y`", "sdp line"), which say little to a person, and str0m's own sentences.
    // str0m's sentences quote the offer too ("Media is missing a=mid: <media>"): the
    // whole detail is one excerpt.
    let detail: Vec<&str> = message
        .lines()
        .filter(|l| !l.is_empty() && *l != "sdp line")
        .filter(|l| {
            !["Parse error at ", "Unexpected ", "Expected "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    OfferFault::Unreadable {
        at,
        detail: (!detail.is_empty()).then(|| excerpt(&detail.join("; "), DETAIL)),
    }
}

/// The byte offset in `offer` where str0m's parser stopped. Its error tells the position
/// only as the address of that character (combine's `PointerOffset` into the `&str` it
/// parsed, which is `offer`): the offset is that less `offer`'s address, if it falls
/// inside `offer`. Nothing is dereferenced, and the address goes no further.
fn stopped_at(offer: &str, message: &str) -> Option<usize> {
    let (_, rest) = message.split_once("PointerOffset(0x")?;
    let (hex, _) = rest.split_once(')')?;
    let offset = usize::from_str_radix(hex, 16)
        .ok()?
        .checked_sub(offer.as_ptr() as usize)?;
    (offset <= offer.len()).then_some(offset)
}

fn unreadable_message(at: &Option<(usize, String)>, detail: &Option<String>) -> String {
    let parser = "relay's SDP parser (str0m)";
    let mut message = match at {
        Some((line, text)) => format!("{parser} stops at line {line} ('{text}')"),
        None => format!("{parser} refuses it"),
    };
    if let Some(detail) = detail {
        message = format!("{message}: {detail}");
    }
    message
}

/// The start of a client's text for a message: control characters and quotes escaped,
/// at most `max` characters as printed (an escape counts for all it prints), then
/// "..." if there was more.
fn excerpt(text: &str, max: usize) -> String {
    let (mut out, mut printed) = (String::new(), 0);
    for c in text.chars() {
        let escaped = c.escape_debug();
        printed += escaped.len();
        if printed > max {
            out.push_str("...");
            break;
        }
        out.extend(escaped);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use str0m::change::SdpOffer;
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc};

    use super::*;
    use crate::session::{OfferError, Session, SessionConfig};
    use crate::track::{Codec, Track, TrackInfo};

    // Offers like these clients send to a WHEP endpoint (receive-only), cut to the lines
    // that matter here and enough for str0m to answer them.

    /// Chromium: credentials and fingerprint in every m= section.
    const CHROMIUM: &str = "v=0
o=- 4215775240449105457 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 102 103
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=ice-options:trickle
a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:0D:24:AE:ED:D3:BC:71:9D:F5:DA:05
a=setup:actpass
a=mid:0
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:102 H264/90000
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=ice-options:trickle
a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:0D:24:AE:ED:D3:BC:71:9D:F5:DA:05
a=setup:actpass
a=mid:1
a=recvonly
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
";

    /// Firefox: the fingerprint at session level, hex credentials in each section.
    const FIREFOX: &str = "v=0
o=mozilla...THIS_IS_SDPARTA-128.0 6530193524567180125 0 IN IP4 0.0.0.0
s=-
t=0 0
a=fingerprint:sha-256 5B:D0:39:7C:07:8E:55:33:AE:01:45:3A:C0:A3:55:7A:1C:E4:5B:D3:A0:4C:0A:6A:06:84:1C:61:84:8E:D6:47
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=video 9 UDP/TLS/RTP/SAVPF 126
c=IN IP4 0.0.0.0
a=recvonly
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=ice-pwd:a6d8bd5e5bd30bcb4bb0ebcf3eb8a9d2
a=ice-ufrag:0a8ff1e4
a=mid:0
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-mux
a=rtpmap:126 H264/90000
a=setup:actpass
m=audio 9 UDP/TLS/RTP/SAVPF 109
c=IN IP4 0.0.0.0
a=recvonly
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=ice-pwd:a6d8bd5e5bd30bcb4bb0ebcf3eb8a9d2
a=ice-ufrag:0a8ff1e4
a=mid:1
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=setup:actpass
";

    /// GStreamer's webrtcbin (libnice credentials use '+' and '/'), one video section.
    const GSTREAMER: &str = "v=0
o=- 7170379540127435373 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:z+Xv/0Ds8mRgRdPwT0yKb1UpGZd2fh6F
a=ice-pwd:pC1d9/F2eyFPt+dcMYE6ElN3vjdM7Xrj
a=rtcp-mux
a=rtcp-rsize
a=recvonly
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack pli
a=fmtp:96 packetization-mode=1;profile-level-id=42e01f
a=mid:video0
a=fingerprint:sha-256 1C:5E:91:17:36:C1:4F:1E:07:0A:C0:DA:2D:8E:B2:A5:2D:2C:3D:4F:47:28:44:C4:6B:23:8E:4B:32:35:D4:A1
";

    /// Shaped like ffmpeg's WHIP offers: hex credentials, a lower-case fingerprint.
    const FFMPEG: &str = "v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 106
c=IN IP4 0.0.0.0
a=ice-ufrag:08a9c3f4
a=ice-pwd:a202d23be47d1decaa6f67d04d4e6c16
a=fingerprint:sha-256 21:69:7c:46:d3:dc:4d:d3:66:61:5c:c5:6a:0b:f7:36:1a:5a:b1:c8:d2:1c:47:cd:d6:ff:56:e6:f5:f2:67:3b
a=setup:actpass
a=mid:0
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
";

    /// A str0m client's offer (what the relay's own tests connect with).
    fn str0m_offer() -> String {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host("10.9.0.1:5000".parse().unwrap(), "udp").unwrap());
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        change.apply().unwrap().0.to_sdp_string()
    }

    /// `offer` with the first `from` replaced by `to`.
    #[track_caller]
    fn edit(offer: &str, from: &str, to: &str) -> String {
        assert!(offer.contains(from), "{from:?} is not in the offer");
        offer.replacen(from, to, 1)
    }

    /// The number of the first line of `offer` that contains `needle`.
    #[track_caller]
    fn line_of(offer: &str, needle: &str) -> usize {
        1 + offer
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} is not in the offer"))
    }

    #[test]
    fn offers_of_browsers_gstreamer_ffmpeg_and_str0m_pass() {
        let str0m = str0m_offer();
        for (client, offer) in [
            ("Chromium", CHROMIUM),
            ("Firefox", FIREFOX),
            ("GStreamer", GSTREAMER),
            ("ffmpeg", FFMPEG),
            ("str0m", &str0m),
        ] {
            let crlf = offer.replace("\r\n", "\n").replace('\n', "\r\n");
            for offer in [offer, &crlf] {
                assert_eq!(check(offer), Ok(()), "{client}");
                // The fixtures are offers str0m reads, not just text that passes here.
                SdpOffer::from_sdp_string(offer).unwrap_or_else(|e| panic!("{client}: {e}"));
            }
        }
    }

    #[test]
    fn browser_offers_are_answered() {
        let track = Track::new(
            TrackInfo {
                codec: Codec::H264,
                fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
            },
            crate::track::history::Retention::default(),
        )
        .0;
        let config = SessionConfig::for_tests();
        for offer in [CHROMIUM, FIREFOX, GSTREAMER, FFMPEG] {
            let offer = offer.replace('\n', "\r\n");
            let (session, answer) =
                Session::viewer(Instant::now(), &offer, &[Arc::clone(&track)], &config).unwrap();
            assert_eq!(session.media.len(), 1, "{answer}");
        }
        let refused = edit(CHROMIUM, "a=ice-ufrag:EsAw", "a=ice-ufrag:Es:w");
        assert!(matches!(
            Session::viewer(Instant::now(), &refused, &[track], &config),
            Err(OfferError::Invalid(OfferFault::BadIceCredential { .. }))
        ));
    }

    #[test]
    fn text_that_is_not_sdp_is_refused_at_its_line() {
        let not_sdp = |line, text: &str| {
            Err(OfferFault::NotSdp {
                line,
                text: text.into(),
            })
        };
        assert_eq!(check("hello"), not_sdp(1, "hello"));
        assert_eq!(check(""), not_sdp(1, ""));
        assert_eq!(
            check("v=0\r\nthis is not sdp"),
            not_sdp(2, "this is not sdp")
        );
        assert_eq!(
            check("v=0\r\nO=- 1 1 IN IP4 0.0.0.0"),
            not_sdp(2, "O=- 1 1 IN IP4 0.0.0.0")
        );
        assert_eq!(check("v=0\n\no=x"), not_sdp(2, ""));
        let blank = edit(CHROMIUM, "m=audio", "\nm=audio");
        assert_eq!(check(&blank), not_sdp(line_of(&blank, "m=audio") - 1, ""));
        // Control characters and quotes are escaped, long lines cut: 40 characters as
        // printed, escapes counted whole.
        assert_eq!(
            check(&format!("v=0\n'\u{1b}[2J{}", "x".repeat(100))),
            not_sdp(2, &format!("\\'\\u{{1b}}[2J{}...", "x".repeat(29)))
        );

        assert_eq!(
            check("v=0\r\ns=-\r\no=- 1 1 IN IP4 0.0.0.0\r\n"),
            Err(OfferFault::OutOfOrder {
                line: 2,
                expected: 'o'
            })
        );
        assert_eq!(
            check("o=- 1 1 IN IP4 0.0.0.0\r\n"),
            Err(OfferFault::OutOfOrder {
                line: 1,
                expected: 'v'
            })
        );
    }

    #[test]
    fn ice_credentials_are_held_to_rfc_8839() {
        let ufrag = line_of(CHROMIUM, "a=ice-ufrag");
        let pwd = line_of(CHROMIUM, "a=ice-pwd");
        let bad = |line, attribute, min, problem: &str| {
            Err(OfferFault::BadIceCredential {
                line,
                attribute,
                min,
                problem: problem.into(),
            })
        };
        for (from, to, expected) in [
            // A ':' would make the STUN username `ours:theirs` ambiguous.
            (
                "ice-ufrag:EsAw",
                "ice-ufrag:Es:w",
                bad(ufrag, "ice-ufrag", 4, "has ':', which is not allowed"),
            ),
            (
                "ice-ufrag:EsAw",
                "ice-ufrag:EsA",
                bad(ufrag, "ice-ufrag", 4, "is 3 characters long"),
            ),
            (
                "ice-ufrag:EsAw",
                "ice-ufrag:",
                bad(ufrag, "ice-ufrag", 4, "is 0 characters long"),
            ),
            (
                "ice-ufrag:EsAw",
                "ice-ufrag",
                bad(ufrag, "ice-ufrag", 4, "is 0 characters long"),
            ),
            (
                "ice-ufrag:EsAw",
                "ice-ufrag:EsAw ",
                bad(ufrag, "ice-ufrag", 4, "has ' ', which is not allowed"),
            ),
            (
                "ice-ufrag:EsAw",
                "ice-ufrag:Es\u{e9}w",
                bad(ufrag, "ice-ufrag", 4, "has '\u{e9}', which is not allowed"),
            ),
            (
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
                "ice-pwd:bP+XJMM09aR8AiX1jdukz",
                bad(pwd, "ice-pwd", 22, "is 21 characters long"),
            ),
            (
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y=",
                bad(pwd, "ice-pwd", 22, "has '=', which is not allowed"),
            ),
        ] {
            assert_eq!(check(&edit(CHROMIUM, from, to)), expected, "{to}");
        }
        let long = |n| "A".repeat(n);
        for (from, to) in [
            ("ice-ufrag:EsAw", format!("ice-ufrag:{}", long(256))),
            (
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR".into(),
            ),
            (
                "ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
                format!("ice-pwd:{}", long(256)),
            ),
        ] {
            assert_eq!(check(&edit(CHROMIUM, from, &to)), Ok(()), "{to}");
        }
        assert_eq!(
            check(&edit(
                CHROMIUM,
                "ice-ufrag:EsAw",
                &format!("ice-ufrag:{}", long(257))
            )),
            bad(ufrag, "ice-ufrag", 4, "is 257 characters long")
        );
    }

    #[test]
    fn every_m_section_with_a_transport_needs_credentials() {
        // The audio section loses its password: none at session level to inherit.
        let audio = line_of(CHROMIUM, "m=audio");
        let (video, audio_section) = CHROMIUM.split_at(CHROMIUM.find("m=audio").unwrap());
        let no_pwd = format!(
            "{video}{}",
            edit(audio_section, "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\n", "")
        );
        assert_eq!(
            check(&no_pwd),
            Err(OfferFault::MissingIceCredential {
                line: audio,
                attribute: "ice-pwd"
            })
        );
        let no_ice = FFMPEG.replace("a=ice-ufrag:08a9c3f4\n", "");
        assert_eq!(
            check(&no_ice),
            Err(OfferFault::MissingIceCredential {
                line: line_of(&no_ice, "m=video"),
                attribute: "ice-ufrag"
            })
        );

        // At session level, they serve every section.
        let session_level = FIREFOX
            .replace(
                "a=ice-pwd:a6d8bd5e5bd30bcb4bb0ebcf3eb8a9d2\na=ice-ufrag:0a8ff1e4\n",
                "",
            )
            .replace(
                "t=0 0\n",
                "t=0 0\na=ice-ufrag:0a8ff1e4\na=ice-pwd:a6d8bd5e5bd30bcb4bb0ebcf3eb8a9d2\n",
            );
        assert_eq!(session_level.matches("a=ice-ufrag").count(), 1);
        assert_eq!(check(&session_level), Ok(()));
        // A bundle-only section (port 0) rides on the BUNDLE transport of the first.
        let bundle_only = FIREFOX.replacen("m=audio 9", "m=audio 0", 1).replace(
            "a=ice-pwd:a6d8bd5e5bd30bcb4bb0ebcf3eb8a9d2\na=ice-ufrag:0a8ff1e4\na=mid:1",
            "a=bundle-only\na=mid:1",
        );
        assert_eq!(bundle_only.matches("a=ice-ufrag").count(), 1);
        assert_eq!(check(&bundle_only), Ok(()));
    }

    #[test]
    fn fingerprints_must_be_well_formed_and_strong() {
        let line = line_of(FFMPEG, "a=fingerprint");
        let digest = "21:69:7c:46:d3:dc:4d:d3:66:61:5c:c5:6a:0b:f7:36:1a:5a:b1:c8:d2:1c:47:cd:d6:ff:56:e6:f5:f2:67:3b";
        let with = |value: &str| check(&edit(FFMPEG, &format!("sha-256 {digest}"), value));
        let bad = |problem: &str| {
            Err(OfferFault::BadFingerprint {
                line,
                problem: problem.into(),
            })
        };

        assert_eq!(
            with(&format!("md5 {}", &digest[..47])),
            Err(OfferFault::WeakFingerprint { line, hash: "md5" })
        );
        assert_eq!(
            with(&format!("SHA-1 {}", &digest[..59])),
            Err(OfferFault::WeakFingerprint {
                line,
                hash: "sha-1"
            })
        );
        assert_eq!(
            with(&format!("sha-256 {}", &digest[..92])),
            bad("has 31 bytes, but a sha-256 digest has 32")
        );
        assert_eq!(
            with(&format!("sha-256 {digest}:00")),
            bad("has 33 bytes, but a sha-256 digest has 32")
        );
        assert_eq!(
            with(&format!("sha-256 {}", digest.replacen("7c", "7g", 1))),
            bad(&format!(
                "has '{}...' where 32 hex pairs separated by ':' belong",
                &digest.replacen("7c", "7g", 1)[..40]
            ))
        );
        assert_eq!(
            with(&format!("sha-256 {}", digest.replace(':', ""))),
            bad(&format!(
                "has '{}...' where 32 hex pairs separated by ':' belong",
                &digest.replace(':', "")[..40]
            ))
        );
        assert_eq!(
            with(&format!("sha-256 {digest} ")),
            bad(&format!(
                "has '{}...' where 32 hex pairs separated by ':' belong",
                &digest[..40]
            ))
        );
        assert_eq!(
            with("sha-256"),
            bad("'sha-256' is not '<hash function> <hex pairs>', e.g. 'sha-256 AB:CD:...'")
        );
        assert_eq!(
            with(&format!("sha3-256 {digest}")),
            bad("names the hash function 'sha3-256': use sha-256 (or sha-224, sha-384, sha-512)")
        );

        // Upper case, and the other SHA-2 digests beside a sha-256 one.
        assert_eq!(with(&format!("SHA-256 {}", digest.to_uppercase())), Ok(()));
        let sha512 = format!("a=fingerprint:sha-512 {}\n", ["AB"; 64].join(":"));
        let sha384 = format!("a=fingerprint:sha-384 {}\n", ["AB"; 48].join(":"));
        let sha224 = format!("a=fingerprint:sha-224 {}\n", ["AB"; 28].join(":"));
        let all = edit(
            FFMPEG,
            "a=setup",
            &format!("{sha512}{sha384}{sha224}a=setup"),
        );
        assert_eq!(check(&all), Ok(()));

        // relay's DTLS verifies a sha-256 fingerprint: without one, nothing is authenticated.
        let no_fingerprint = FFMPEG.replace(&format!("a=fingerprint:sha-256 {digest}\n"), "");
        assert_eq!(check(&no_fingerprint), Err(OfferFault::NoSha256Fingerprint));
        let only_sha384 = edit(&no_fingerprint, "a=setup", &format!("{sha384}a=setup"));
        assert_eq!(check(&only_sha384), Err(OfferFault::NoSha256Fingerprint));
    }

    #[test]
    fn excerpts_are_bounded_as_printed_from_empty_on() {
        assert_eq!(excerpt("", 10), "");
        assert_eq!(excerpt("abc", 3), "abc", "what fits is not cut");
        assert_eq!(excerpt("abcd", 3), "abc...");
        // An escape is not split: ESC prints as 6 characters, which 5 cannot hold.
        assert_eq!(excerpt("\u{1b}", 5), "...");
        assert_eq!(excerpt("\u{1b}", 6), "\\u{1b}");
    }

    #[test]
    fn what_str0m_cannot_read_is_told_by_line_in_words() {
        // Each passes `check`; str0m's parser refuses it.
        for (from, to, line, detail) in [
            // RFC 8866's sess-id is numeric.
            ("o=FFmpeg 4489045141692799359", "o=FFmpeg sess", 2, None),
            // str0m takes only t=0 0.
            ("t=0 0", "t=1 2", 4, None),
            (
                "a=mid:0\n",
                "",
                8,
                Some("Media is missing a=mid: video UDP/TLS/RTP/SAVPF"),
            ),
        ] {
            let offer = edit(FFMPEG, from, to).replace('\n', "\r\n");
            assert_eq!(check(&offer), Ok(()), "{to}");
            let error = SdpOffer::from_sdp_string(&offer).unwrap_err();
            let text = offer.lines().nth(line - 1).unwrap().to_owned();
            let fault = unreadable(&offer, &error);
            assert_eq!(
                fault,
                OfferFault::Unreadable {
                    at: Some((line, text)),
                    detail: detail.map(String::from)
                },
                "{error}"
            );
            let message = fault.to_string();
            assert!(
                message.starts_with("the offer is not valid SDP: "),
                "{message}"
            );
            for internal in ["0x", "PointerOffset", "Unexpected", "\r"] {
                assert!(!message.contains(internal), "{message}");
            }
        }
        // str0m's own sentences quote the offer too: an m-line of control characters
        // (6 printed characters each) without its a=mid (what the fuzzer found) is told
        // in a bounded message all the same.
        let offer = format!(
            "{FFMPEG}m=appl{}ication 9 UDP/DTLS/SCTP webrtc-datachannel\nc=IN IP4 0.0.0.0\n\
             a=ice-ufrag:HhS+\na=ice-pwd:FhYTGhlAtKCe6KFIX8b+AThW\n",
            "\u{11}".repeat(600)
        )
        .replace('\n', "\r\n");
        assert_eq!(check(&offer), Ok(()));
        let error = SdpOffer::from_sdp_string(&offer).unwrap_err();
        let message = unreadable(&offer, &error).to_string();
        assert!(
            message.contains("Media is missing a=mid: appl\\u{11}"),
            "{message}"
        );
        assert!(
            message.len() < 400,
            "{} characters: {message}",
            message.len()
        );
        assert_eq!(
            unreadable(
                FFMPEG,
                &SdpError::ParseError("Parse error at PointerOffset(0x10)\n".into())
            ),
            OfferFault::Unreadable {
                at: None,
                detail: None
            },
            "an address outside the offer is no line"
        );
        assert_eq!(
            unreadable(FFMPEG, &SdpError::Inconsistent("Mid 0 is used by more than one m-line".into()))
                .to_string(),
            "the offer is not valid SDP: relay's SDP parser (str0m) refuses it: Mid 0 is used by more than one m-line"
        );
    }

    #[test]
    fn refusals_say_what_to_fix_in_words() {
        for (offer, says) in [
            ("v=0\r\nthis is not sdp\r\n".to_owned(), "the offer is not valid SDP: line 2 ('this is not sdp') is not <letter>=<value> (RFC 8866 section 5)"),
            (edit(CHROMIUM, "ice-ufrag:EsAw", "ice-ufrag:a:b:c"), "line 11: a=ice-ufrag has ':', which is not allowed: RFC 8839 section 5.4 wants 4 to 256 letters, digits, '+' or '/'"),
            (edit(FFMPEG, "sha-256", "sha-1"), "line 12: a=fingerprint uses sha-1, which is too weak to authenticate the DTLS certificate (RFC 8122, RFC 8827): use sha-256"),
        ] {
            assert_eq!(check(&offer).unwrap_err().to_string(), says);
        }
    }
}
