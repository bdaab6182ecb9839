//! `whep_whip_offer`: an SDP offer as a WHEP viewer or a WHIP publisher posts it, through
//! everything the HTTP handler calls: our checks, str0m's parser and negotiation, the
//! tracks bound to the answer.

use std::sync::{Arc, Once};

use str0m::change::SdpAnswer;

use crate::session::{OfferError, Session, SessionConfig};
use crate::track::history::Retention;
use crate::track::{Codec, Track, TrackInfo};

use super::start;

/// The first byte: bit 0 a publisher's offer (WHIP) rather than a viewer's (WHEP); bits
/// 1-5 which of an H264, H265, VP8, Opus and PCMU track the viewer's path has. The rest
/// is the offer (UTF-8, as the handler insists).
///
/// An answered offer gives an answer str0m reads back, with the session's own ICE
/// credentials, and at most one track per path track (a viewer) or at least one
/// track (a publisher); one our checks refuse says why in a bounded message.
pub fn whep_whip_offer(data: &[u8]) {
    // A panic str0m raises on an offer is caught and the offer refused (session::answer),
    // but libFuzzer's panic hook aborts before anything is caught: the default hook
    // instead. A panic nothing catches still unwinds to libFuzzer, which aborts on it.
    static DEFAULT_HOOK: Once = Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let Some((&pick, offer)) = data.split_first() else {
        return;
    };
    let Ok(offer) = std::str::from_utf8(offer) else {
        return;
    };
    let config = SessionConfig::for_tests();
    let tracks: Vec<Arc<Track>> = [
        (Codec::H264, "packetization-mode=1;profile-level-id=42e01f"),
        (Codec::H265, "profile-id=1;tier-flag=0;level-id=93"),
        (Codec::Vp8, ""),
        (Codec::Opus, "sprop-stereo=1"),
        (Codec::Pcmu, ""),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| pick >> (i + 1) & 1 == 1)
    .map(|(_, (codec, fmtp))| {
        let info = TrackInfo {
            codec,
            fmtp: fmtp.into(),
        };
        Track::new(info, Retention::default()).0
    })
    .collect();
    let publisher = pick & 1 == 1;
    let answered = match publisher {
        false => Session::viewer(start(), offer, &tracks, &config),
        true => Session::publisher(start(), offer, &config),
    };
    match answered {
        Ok((session, answer)) => {
            let parsed = SdpAnswer::from_sdp_string(&answer).expect("str0m reads our answer");
            let ufrag = format!("a=ice-ufrag:{}", session.ufrag());
            assert!(answer.contains(&ufrag), "{answer}");
            assert!(answer.contains("a=ice-lite"), "{answer}");
            drop(parsed);
            match publisher {
                false => assert!(session.media.len() <= tracks.len()),
                true => assert!(!session.published_tracks().is_empty()),
            }
        }
        // Our checks quote the offer only in excerpts.
        Err(OfferError::Invalid(fault)) => assert!(fault.to_string().len() < 1024, "{fault}"),
        Err(_) => {}
    }
}
