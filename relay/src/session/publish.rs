//! The publisher's side of a session: which of its offered codecs relay takes, the
//! tracks its packets go into, and the keyframe requests it is sent.
//!
//! A publisher keeps str0m for its whole life (unlike a viewer): there is one per path,
//! its packets arrive already decrypted (`Event::RtpPacket`, RTP mode) and str0m answers
//! it as a receiver should (receiver reports, NACK, PLI). See docs/architecture.md.

use std::time::{Duration, Instant};

use str0m::media::Mid;

use crate::track::keyframe_requests::Forward;
use crate::track::{Codec, MediaKind, SourcePacket, TrackInfo, TrackWriter};

/// One m-line of a publisher's offer, with the codec relay takes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub mid: Mid,
    pub pt: u8,
    /// The RTX payload type that retransmits `pt`, if offered.
    pub rtx: Option<u8>,
    pub info: TrackInfo,
    /// Opus channels (2); None for video.
    pub channels: Option<u8>,
}

/// The codecs relay can relay, as a publisher's offer names them: per sending m-line,
/// the first format (the publisher's preference) of a codec relay has. `Err` says why
/// nothing could be taken.
pub fn choose_codecs(offer: &str) -> Result<Vec<Offered>, String> {
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for section in offer.split("\nm=").skip(1) {
        let lines: Vec<&str> = section.lines().map(str::trim).collect();
        let m_line = lines.first().copied().unwrap_or_default();
        let m: Vec<&str> = m_line.split_whitespace().collect();
        let kind = match m.first().copied() {
            Some("video") => MediaKind::Video,
            Some("audio") => MediaKind::Audio,
            _ => continue,
        };
        let attr = |key: &'static str| lines.iter().filter_map(move |l| l.strip_prefix(key));
        let receives_only = attr("a=").any(|a| a == "recvonly" || a == "inactive");
        let (Some(mid), false, false) =
            (attr("a=mid:").next(), m.get(1) == Some(&"0"), receives_only)
        else {
            continue;
        };
        let per_pt = |key: &'static str, pt: &str| {
            attr(key).find_map(|v| {
                let (p, value) = v.split_once(' ')?;
                (p == pt).then(|| value.trim())
            })
        };
        let take = m.iter().skip(3).find_map(|&pt| {
            let rtpmap = per_pt("a=rtpmap:", pt)?;
            let mut parts = rtpmap.split('/');
            let codec = Codec::from_encoding_name(parts.next()?)?;
            let rate: u32 = parts.next()?.parse().ok()?;
            let channels: Option<u8> = parts.next().and_then(|c| c.parse().ok());
            let fits = codec.kind() == kind
                && rate == codec.clock_rate()
                && (codec != Codec::Opus || channels == Some(2));
            fits.then_some((pt, codec, channels))
        });
        let Some((pt, codec, channels)) = take else {
            skipped.push(format!("{m_line} ({})", kind_name(kind)));
            continue;
        };
        let rtx = m.iter().skip(3).find(|&&r| {
            per_pt("a=rtpmap:", r).is_some_and(|v| v.to_ascii_lowercase().starts_with("rtx/"))
                && per_pt("a=fmtp:", r).is_some_and(|f| f.replace(' ', "") == format!("apt={pt}"))
        });
        chosen.push(Offered {
            mid: Mid::from(mid.trim()),
            pt: pt
                .parse()
                .map_err(|_| format!("payload type '{pt}' is not a number"))?,
            rtx: rtx.and_then(|r| r.parse().ok()),
            info: TrackInfo {
                codec,
                fmtp: per_pt("a=fmtp:", pt).unwrap_or_default().to_string(),
            },
            channels,
        });
    }
    if chosen.is_empty() {
        let why = match skipped.is_empty() {
            true => "no sendonly or sendrecv audio or video m-line".to_string(),
            false => format!("no codec relay can relay in {}", skipped.join(", ")),
        };
        return Err(format!(
            "{why}; relay takes H264, H265, VP8, VP9, AV1 (video) and Opus/48000/2, PCMU, PCMA (audio)"
        ));
    }
    Ok(chosen)
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

/// One m-line of the publisher and the track it feeds.
struct Inlet {
    mid: Mid,
    writer: TrackWriter,
}

/// What a publishing session holds: the writers of its path's tracks, while it lives.
pub(crate) struct Publication {
    inlets: Vec<Inlet>,
    keyframe_interval: Duration,
    /// When a keyframe request waiting for its interval is due.
    keyframe_due: Option<Instant>,
    /// Workers reading a track fed since the last `take_readers`.
    readers: u64,
}

impl Publication {
    /// `writers` in the order of `offered` (the m-lines the answer accepted).
    pub fn new(
        offered: &[Offered],
        writers: Vec<TrackWriter>,
        keyframe_interval: Duration,
    ) -> Publication {
        let inlets = offered
            .iter()
            .zip(writers)
            .map(|(o, writer)| Inlet { mid: o.mid, writer })
            .collect();
        Publication {
            inlets,
            keyframe_interval,
            keyframe_due: None,
            readers: 0,
        }
    }

    /// An RTP packet str0m decrypted from m-line `mid`. Padding-only packets (bandwidth
    /// probes) carry nothing for viewers.
    pub fn push(&mut self, mid: Mid, packet: SourcePacket) {
        if packet.payload.is_empty() {
            return;
        }
        if let Some(inlet) = self.inlets.iter_mut().find(|i| i.mid == mid) {
            inlet.writer.push(packet);
            self.readers |= inlet.writer.track().readers();
        }
    }

    /// The workers to wake for what was pushed since the last call.
    pub fn take_readers(&mut self) -> u64 {
        std::mem::take(&mut self.readers)
    }

    /// The m-lines whose viewers asked for a keyframe, to be asked now (at most once
    /// per interval per track). Notes when the next waiting one is due.
    pub fn keyframes_to_request(&mut self, now: Instant) -> Vec<Mid> {
        self.keyframe_due = None;
        let mut now_due = Vec::new();
        for inlet in &self.inlets {
            let requests = &inlet.writer.track().keyframe_requests;
            match requests.take(now, self.keyframe_interval) {
                Forward::Now => now_due.push(inlet.mid),
                Forward::At(t) => {
                    self.keyframe_due = Some(self.keyframe_due.map_or(t, |d| d.min(t)))
                }
                Forward::Nothing => {}
            }
        }
        now_due
    }

    pub fn keyframe_due(&self) -> Option<Instant> {
        self.keyframe_due
    }

    /// Viewers' keyframe requests reach worker `worker`, which holds this session.
    pub fn attach(&self, worker: usize) {
        for inlet in &self.inlets {
            inlet.writer.track().keyframe_requests.attach(worker);
        }
    }

    /// Gives the writers back (the session ended), for the path's next publisher.
    pub fn into_writers(self) -> Vec<TrackWriter> {
        for inlet in &self.inlets {
            inlet.writer.track().keyframe_requests.detach();
        }
        self.inlets.into_iter().map(|i| i.writer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(media: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{media}")
    }

    #[test]
    fn the_first_relayable_codec_of_each_sending_mline_is_taken_with_its_rtx() {
        let sdp = offer(
            "m=video 9 UDP/TLS/RTP/SAVPF 100 101 102 103\r\na=mid:0\r\na=sendonly\r\n\
             a=rtpmap:100 red/90000\r\na=rtpmap:101 H264/90000\r\n\
             a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtpmap:102 rtx/90000\r\na=fmtp:102 apt=101\r\na=rtpmap:103 VP8/90000\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n",
        );
        let chosen = choose_codecs(&sdp).unwrap();
        assert_eq!(chosen.len(), 2, "the recvonly m-line is not a track");
        assert_eq!(chosen[0].info.codec, Codec::H264);
        assert_eq!((chosen[0].pt, chosen[0].rtx), (101, Some(102)));
        assert!(chosen[0].info.fmtp.contains("profile-level-id=42e01f"));
        assert_eq!(
            (chosen[1].info.codec, chosen[1].channels),
            (Codec::Opus, Some(2))
        );
        assert_eq!(chosen[1].mid, Mid::from("1"));
    }

    #[test]
    fn an_offer_without_a_relayable_codec_is_refused_saying_what_relay_takes() {
        let sdp = offer(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 MP4V-ES/90000\r\n",
        );
        let e = choose_codecs(&sdp).unwrap_err();
        assert!(e.contains("no codec relay can relay in video 9"), "{e}");
        assert!(e.contains("H264"), "{e}");
        let e = choose_codecs(&offer("")).unwrap_err();
        assert!(e.starts_with("no sendonly or sendrecv"), "{e}");
    }
}
