//! `rtpSDP`: the SDP that describes what an RTP pusher sends (as ffmpeg's `-sdp_file`
//! writes it), read into one track per payload type.

use std::io::Cursor;

use base64::Engine;
use bytes::Bytes;

use crate::track::{fmtp, h264, h265, Codec, ParameterSets, TrackInfo};

/// One payload type announced by the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpTrack {
    pub payload_type: u8,
    pub info: TrackInfo,
    /// H264 `sprop-parameter-sets`, to start viewers before the first in-band SPS/PPS.
    pub parameter_sets: Option<ParameterSets>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("not valid SDP: {0}")]
    Syntax(String),
    #[error("no m= line describes a stream")]
    NoMedia,
    #[error("payload type '{0}' is not a number from 0 to 127")]
    BadPayloadType(String),
    #[error("payload type {0} collides with RTCP on the same port (RFC 5761): use 96-127")]
    RtcpPayloadType(u8),
    #[error("payload type {0} appears twice: tracks on one port are told apart by payload type")]
    DuplicatePayloadType(u8),
    #[error("payload type {0} has no a=rtpmap line")]
    NoRtpmap(u8),
    #[error(
        "unsupported codec {codec} (payload type {payload_type}); supported: \
         H264/90000, H265/90000, VP8/90000, VP9/90000, AV1/90000, opus/48000/2, \
         PCMU/8000, PCMA/8000"
    )]
    UnsupportedCodec { codec: String, payload_type: u8 },
    #[error(
        "the parameter sets of payload type {0} are not base64 SPS and PPS \
         (sprop-parameter-sets), or VPS, SPS and PPS (sprop-vps, sprop-sps, sprop-pps)"
    )]
    BadParameterSets(u8),
}

/// An `rtpSDP`, read once: the text as written (what a config writes back) and the
/// tracks it describes (what the ingest builds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSdp {
    text: String,
    tracks: Vec<SdpTrack>,
}

impl RtpSdp {
    pub fn parse(text: &str) -> Result<RtpSdp, SdpError> {
        Ok(RtpSdp {
            text: text.to_owned(),
            tracks: parse(text)?,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tracks(&self) -> &[SdpTrack] {
        &self.tracks
    }
}

/// Reads the tracks of an SDP. Lines may be indented or end in LF (YAML block scalars).
fn parse(text: &str) -> Result<Vec<SdpTrack>, SdpError> {
    let session = session(text)?;
    let mut tracks: Vec<SdpTrack> = Vec::new();
    for media in &session.media_descriptions {
        for format in &media.media_name.formats {
            let track = format_track(media, format)?;
            let payload_type = track.payload_type;
            if tracks.iter().any(|t| t.payload_type == payload_type) {
                return Err(SdpError::DuplicatePayloadType(payload_type));
            }
            tracks.push(track);
        }
    }
    if tracks.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(tracks)
}

/// One m= line of a camera's SDP: the fmtp of its first payload format, and its track
/// or why relay cannot pass it through.
pub type DescribedMedia = (String, Result<SdpTrack, SdpError>);

/// A camera's SDP (an RTSP DESCRIBE answer), m= line by m= line.
pub fn media_tracks(text: &str) -> Result<Vec<DescribedMedia>, SdpError> {
    let session = session(text)?;
    Ok(session
        .media_descriptions
        .iter()
        .map(|media| match media.media_name.formats.first() {
            Some(format) => {
                let fmtp = format
                    .parse()
                    .ok()
                    .and_then(|pt| attribute(media, "fmtp", pt))
                    .unwrap_or_default();
                (fmtp.to_owned(), format_track(media, format))
            }
            None => (String::new(), Err(SdpError::NoMedia)),
        })
        .collect())
}

fn session(text: &str) -> Result<sdp::SessionDescription, SdpError> {
    let mut normalized = String::with_capacity(text.len() + 64);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        normalized.push_str(line);
        normalized.push_str("\r\n");
    }
    sdp::SessionDescription::unmarshal(&mut Cursor::new(normalized))
        .map_err(|e| SdpError::Syntax(e.to_string()))
}

/// The track one payload format of an m= line describes.
fn format_track(media: &sdp::MediaDescription, format: &str) -> Result<SdpTrack, SdpError> {
    let payload_type = format
        .parse::<u8>()
        .ok()
        .filter(|pt| *pt < 128)
        .ok_or_else(|| SdpError::BadPayloadType(format.to_owned()))?;
    if super::rtp::RTCP_TYPES.contains(&(payload_type | 0x80)) {
        return Err(SdpError::RtcpPayloadType(payload_type));
    }
    let rtpmap = attribute(media, "rtpmap", payload_type);
    let fmtp = attribute(media, "fmtp", payload_type).unwrap_or_default();
    let codec = codec(payload_type, rtpmap)?;
    let parameter_sets = match codec {
        Codec::H264 => sprop_parameter_sets(fmtp, payload_type)?,
        Codec::H265 => h265_sprops(fmtp, payload_type)?,
        _ => None,
    };
    Ok(SdpTrack {
        payload_type,
        info: TrackInfo {
            codec,
            fmtp: fmtp.to_string(),
        },
        parameter_sets,
    })
}

/// The value of `a=<key>:<pt> <value>` for payload type `pt`.
fn attribute<'a>(media: &'a sdp::MediaDescription, key: &str, pt: u8) -> Option<&'a str> {
    media
        .attributes
        .iter()
        .filter(|a| a.key == key)
        .filter_map(|a| a.value.as_deref()?.trim().split_once(char::is_whitespace))
        .find(|(p, _)| p.parse() == Ok(pt))
        .map(|(_, v)| v.trim())
}

fn codec(payload_type: u8, rtpmap: Option<&str>) -> Result<Codec, SdpError> {
    let Some(rtpmap) = rtpmap else {
        // Static payload types (RFC 3551) need no rtpmap; ffmpeg writes none for them.
        return match payload_type {
            0 => Ok(Codec::Pcmu),
            8 => Ok(Codec::Pcma),
            _ => Err(SdpError::NoRtpmap(payload_type)),
        };
    };
    let unsupported = || SdpError::UnsupportedCodec {
        codec: rtpmap.to_string(),
        payload_type,
    };
    let mut parts = rtpmap.split('/');
    let name = parts.next().unwrap_or_default();
    let rate: Option<u32> = parts.next().and_then(|r| r.parse().ok());
    let codec = Codec::from_encoding_name(name).ok_or_else(unsupported)?;
    if rate != Some(codec.clock_rate()) {
        return Err(unsupported());
    }
    Ok(codec)
}

fn sprop_parameter_sets(fmtp: &str, pt: u8) -> Result<Option<ParameterSets>, SdpError> {
    let Some(value) = fmtp::param(fmtp, "sprop-parameter-sets") else {
        return Ok(None);
    };
    let (mut sps, mut pps) = (None, None);
    for nal in base64_nal_units(value, pt)? {
        match nal.first().map(|b| b & 0x1f) {
            Some(h264::NAL_SPS) => sps = Some(nal),
            Some(h264::NAL_PPS) => pps = Some(nal),
            _ => {}
        }
    }
    match (sps, pps) {
        (Some(sps), Some(pps)) => Ok(Some(ParameterSets {
            vps: None,
            sps,
            pps,
        })),
        _ => Err(SdpError::BadParameterSets(pt)),
    }
}

/// RFC 7798 7.1 `sprop-vps`, `sprop-sps`, `sprop-pps`: all three or none, each with a
/// NAL unit of its type (an empty or misplaced one would go to viewers before keyframes).
fn h265_sprops(fmtp: &str, pt: u8) -> Result<Option<ParameterSets>, SdpError> {
    let last = |key, nal_type| -> Result<Option<Bytes>, SdpError> {
        let Some(value) = fmtp::param(fmtp, key) else {
            return Ok(None);
        };
        let nal = base64_nal_units(value, pt)?
            .into_iter()
            .rfind(|nal| nal.len() >= 2 && h265::nal_type(nal[0]) == nal_type);
        nal.map(Some).ok_or(SdpError::BadParameterSets(pt))
    };
    let (vps, sps, pps) = (
        last("sprop-vps", h265::NAL_VPS)?,
        last("sprop-sps", h265::NAL_SPS)?,
        last("sprop-pps", h265::NAL_PPS)?,
    );
    match (vps, sps, pps) {
        (None, None, None) => Ok(None),
        (Some(vps), Some(sps), Some(pps)) => Ok(Some(ParameterSets {
            vps: Some(vps),
            sps,
            pps,
        })),
        _ => Err(SdpError::BadParameterSets(pt)),
    }
}

/// A comma-separated list of base64 NAL units.
fn base64_nal_units(value: &str, pt: u8) -> Result<Vec<Bytes>, SdpError> {
    value
        .split(',')
        .map(|nal| {
            base64::engine::general_purpose::STANDARD
                .decode(nal.trim())
                .map(Bytes::from)
                .map_err(|_| SdpError::BadParameterSets(pt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // As ffmpeg 5.1 writes it (`-f rtp -flags:v +global_header` of libx264), indented as
    // in a YAML block.
    const FFMPEG_H264: &str = "
        v=0
        o=- 0 0 IN IP4 127.0.0.1
        s=No Name
        c=IN IP4 127.0.0.1
        t=0 0
        a=tool:libavformat LIBAVFORMAT_VERSION
        m=video 5004 RTP/AVP 96
        a=rtpmap:96 H264/90000
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoC/5cBEAAAMAAQAAAwA8DxYuSA==,aMuDyyA=; profile-level-id=42C01E
    ";

    // ffmpeg 5.1, libx265 with `-flags:v +global_header`.
    const FFMPEG_H265: &str = "
        v=0
        o=- 0 0 IN IP4 127.0.0.1
        s=No Name
        c=IN IP4 127.0.0.1
        t=0 0
        a=tool:libavformat LIBAVFORMAT_VERSION
        m=video 5999 RTP/AVP 96
        a=rtpmap:96 H265/90000
        a=fmtp:96 sprop-vps=QAEMAf//BAgAAAMAnggAAAMAADyVmAk=; sprop-sps=QgEBBAgAAAMAnggAAAMAADyQAUEB4ssrNJJleAtwICAAQAAAAwBAAAADAoI=; sprop-pps=RAHBcoYMRiQ=
    ";

    #[test]
    fn reads_ffmpeg_h265_with_parameter_sets() {
        let tracks = parse(FFMPEG_H265).unwrap();
        assert_eq!(tracks[0].info.codec, Codec::H265);
        let sets = tracks[0].parameter_sets.as_ref().unwrap();
        let types: Vec<u8> = sets
            .nal_units()
            .iter()
            .map(|n| crate::track::h265::nal_type(n[0]))
            .collect();
        assert_eq!(types, [32, 33, 34]);
        // Two of the three are no usable set.
        let partial = FFMPEG_H265.replace("sprop-vps", "x-vps");
        assert_eq!(parse(&partial).unwrap_err(), SdpError::BadParameterSets(96));
    }

    /// Found by the `rtsp_camera` fuzz target's check that parameter sets are NAL units
    /// of their type: an empty `sprop-vps`, or a VPS given as the PPS, was taken as is.
    #[test]
    fn h265_parameter_sets_must_be_nal_units_of_their_type() {
        let vps = "QAEMAf//BAgAAAMAnggAAAMAADyVmAk=";
        for bad in [
            FFMPEG_H265.replace(vps, ""),
            FFMPEG_H265.replace("RAHBcoYMRiQ=", vps),
            FFMPEG_H265.replace("RAHBcoYMRiQ=", "RA=="),
        ] {
            assert_eq!(
                parse(&bad).unwrap_err(),
                SdpError::BadParameterSets(96),
                "{bad}"
            );
        }
        // Of several, the last of the right type.
        let two = FFMPEG_H265.replace(vps, &format!("{vps},RAHBcoYMRiQ="));
        let sets = parse(&two).unwrap()[0].parameter_sets.clone().unwrap();
        assert_eq!(h265::nal_type(sets.vps.unwrap()[0]), h265::NAL_VPS);
    }

    fn session(media: &str) -> String {
        format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{media}")
    }

    #[test]
    fn reads_ffmpeg_h264_with_parameter_sets() {
        let tracks = parse(FFMPEG_H264).unwrap();
        assert_eq!(tracks.len(), 1);
        let t = &tracks[0];
        assert_eq!(t.payload_type, 96);
        assert_eq!(t.info.codec, Codec::H264);
        assert_eq!(
            h264::profile_level_id(&t.info.fmtp),
            Some([0x42, 0xc0, 0x1e])
        );
        let sets = t.parameter_sets.as_ref().unwrap();
        assert_eq!(&sets.sps[..4], &[0x67, 0x42, 0xc0, 0x1e]);
        assert_eq!(&sets.pps[..], &[0x68, 0xcb, 0x83, 0xcb, 0x20]);
    }

    #[test]
    fn audio_and_video_on_one_port_with_static_payload_types() {
        let text = session(
            "m=audio 5004 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 sprop-stereo=1\r\n\
             m=audio 5004 RTP/AVP 0 8\r\n\
             m=video 5004 RTP/AVP 96\r\na=rtpmap:96 h264/90000\r\n",
        );
        let tracks = parse(&text).unwrap();
        let got: Vec<(u8, Codec, &str)> = tracks
            .iter()
            .map(|t| (t.payload_type, t.info.codec, t.info.fmtp.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (111, Codec::Opus, "sprop-stereo=1"),
                (0, Codec::Pcmu, ""),
                (8, Codec::Pcma, ""),
                (96, Codec::H264, ""),
            ]
        );
        assert_eq!(tracks[3].parameter_sets, None);
    }

    #[test]
    fn clear_errors() {
        let err = |media: &str| parse(&session(media)).unwrap_err();
        assert_eq!(
            err("m=video 5004 RTP/AVP 96\r\na=rtpmap:96 MP4V-ES/90000\r\n"),
            SdpError::UnsupportedCodec {
                codec: "MP4V-ES/90000".into(),
                payload_type: 96
            }
        );
        assert!(
            err("m=video 5004 RTP/AVP 96\r\na=rtpmap:96 MP4V-ES/90000\r\n")
                .to_string()
                .contains("MP4V-ES/90000")
        );
        assert!(matches!(
            err("m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 opus/8000/2\r\n"),
            SdpError::UnsupportedCodec { .. }
        ));
        assert_eq!(err("m=video 5004 RTP/AVP 97\r\n"), SdpError::NoRtpmap(97));
        assert_eq!(
            err("m=audio 5004 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\n"),
            SdpError::DuplicatePayloadType(0)
        );
        assert_eq!(
            err("m=audio 5004 RTP/AVP 200\r\n"),
            SdpError::BadPayloadType("200".into())
        );
        for pt in [72, 79] {
            let e = err(&format!("m=audio 5004 RTP/AVP {pt}\r\n"));
            assert_eq!(e, SdpError::RtcpPayloadType(pt));
        }
        assert_eq!(
            err("m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!\r\n"),
            SdpError::BadParameterSets(96)
        );
        assert_eq!(err(""), SdpError::NoMedia);
        assert!(matches!(parse("hello"), Err(SdpError::Syntax(_))));
    }
}
