//! `rtsp_camera`: what a camera sends once retina has read the RTSP exchange: the SDP of
//! its DESCRIBE answer and its RTP packets, through what the RTSP source does with them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::audio::{AacToOpus, OpusSource};
use crate::ingest::demo::PACKET_OVERHEAD;
use crate::ingest::rtp;
use crate::ingest::rtsp::Carry;
use crate::ingest::sdp;
use crate::track::fragment::{self, NalFormat};
use crate::track::history::Retention;
use crate::track::{h264, h265, Codec, SourcePacket, Track, TrackInfo, TrackWriter};

use super::media::check_track;
use super::{start, wide_records};

/// The clock rates an AAC stream is tried at (its rtpmap's, which the input cannot set).
const AAC_RATES: [u32; 4] = [8_000, 16_000, 44_100, 48_000];
/// The payload budgets packets are re-cut to: tiny ones cut everything, the last is
/// the default `udpMaxPayloadSize`'s.
const BUDGETS: [usize; 4] = [8, 64, 300, 1472 - PACKET_OVERHEAD];

/// The input is the SDP (up to the first zero byte), then RTP packets as records of an
/// op byte (bits 0-2 the stream, counted among those carried; 6-7 the budget) and a
/// 16-bit length. Each m= line is carried as the RTSP source carries it: passed through
/// (with its parameter sets from the SDP) or, when its fmtp says AAC, transcoded.
///
/// Parameter sets are NAL units of their type; re-cut payloads fit the budget, and a
/// NAL unit cut into fragments comes back whole from them; Opus frames fit an Opus
/// packet; every track's history stays consistent.
pub fn rtsp_camera(data: &[u8]) {
    let (text, packets) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(described) = sdp::media_tracks(&String::from_utf8_lossy(text)) else {
        return;
    };
    let mut carried: Vec<(Carry, TrackWriter, Arc<Track>)> = Vec::new();
    for (i, (fmtp, described)) in described.into_iter().enumerate() {
        match described {
            Ok(t) => {
                let (track, writer) = Track::new(t.info, Retention::default());
                if let Some(sets) = t.parameter_sets {
                    for (nal, want) in parameter_set_types(track.info.codec, &sets) {
                        let format = NalFormat::of(track.info.codec).expect("sets of NAL units");
                        assert_eq!(nal_type(format, nal), Some(want), "{nal:x?}");
                    }
                    writer.set_parameter_sets(sets);
                }
                carried.push((Carry::Passthrough { shift: 0 }, writer, track));
            }
            Err(_) => {
                let rate = AAC_RATES[i % AAC_RATES.len()];
                let Ok(aac) = AacToOpus::from_sdp("mpeg4-generic", rate, &fmtp) else {
                    continue;
                };
                let info = TrackInfo {
                    codec: Codec::Opus,
                    fmtp: String::new(),
                };
                let (track, writer) = Track::new(info, Retention::default());
                let how = Carry::Transcoded(Box::new(aac), OpusSource::new(0));
                carried.push((how, writer, track));
            }
        }
    }
    if carried.is_empty() {
        return;
    }
    let mut now = start();
    for (op, packet) in wide_records(packets) {
        let Ok(p) = rtp::parse(packet) else {
            continue;
        };
        now += Duration::from_millis(5);
        let n = carried.len();
        let (how, writer, track) = &mut carried[usize::from(op & 7) % n];
        let budget = BUDGETS[usize::from(op >> 6)];
        let payload = Bytes::copy_from_slice(p.payload);
        let format = NalFormat::of(track.info.codec);
        let fits = match (&*how, format) {
            (Carry::Passthrough { .. }, Some(format)) => {
                let fit = fragment::fit(format, &payload, budget);
                if let Ok(pieces) = &fit {
                    check_pieces(format, &payload, budget, pieces);
                }
                fit.is_ok()
            }
            _ => true,
        };
        let head = track.head();
        let packet = SourcePacket {
            ssrc: p.ssrc,
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            payload: &payload,
            arrival: now,
        };
        assert_eq!(how.push(writer, budget, packet).is_ok(), fits);
        if matches!(how, Carry::Transcoded(..)) {
            for opus in track.range(head, track.head()) {
                assert!(!opus.payload.is_empty() && opus.payload.len() <= 1275);
            }
        }
    }
    for (_, _, track) in &carried {
        check_track(track, None);
    }
}

/// Each parameter set and the NAL unit type it must be.
fn parameter_set_types(codec: Codec, sets: &crate::track::ParameterSets) -> Vec<(&Bytes, u8)> {
    match codec {
        Codec::H265 => {
            let mut nals = vec![(&sets.sps, h265::NAL_SPS), (&sets.pps, h265::NAL_PPS)];
            nals.extend(sets.vps.as_ref().map(|vps| (vps, h265::NAL_VPS)));
            nals
        }
        _ => vec![(&sets.sps, h264::NAL_SPS), (&sets.pps, h264::NAL_PPS)],
    }
}

/// The type of a NAL unit, None if it is shorter than its header.
fn nal_type(format: NalFormat, nal: &[u8]) -> Option<u8> {
    match format {
        NalFormat::H264 => nal.first().map(|b| b & 0x1f),
        NalFormat::H265 => (nal.len() >= 2).then(|| h265::nal_type(nal[0])),
    }
}

/// Re-cut pieces fit the budget; a single NAL unit cut into fragmentation units comes
/// back whole from them, a fragmentation unit cut smaller keeps its data and bounds.
fn check_pieces(format: NalFormat, payload: &Bytes, budget: usize, pieces: &[Bytes]) {
    assert!(!pieces.is_empty());
    for piece in pieces {
        assert!(piece.len() <= budget, "{} bytes for {budget}", piece.len());
    }
    if payload.len() <= budget {
        return assert_eq!(pieces, std::slice::from_ref(payload));
    }
    let (fu, header_len) = match format {
        NalFormat::H264 => (h264::FU_A, 1),
        NalFormat::H265 => (h265::FU, 2),
    };
    let single = match format {
        NalFormat::H264 => (1..=23).contains(&(payload[0] & 0x1f)),
        NalFormat::H265 => h265::nal_type(payload[0]) <= 47,
    };
    let from_fu = payload.len() > header_len && nal_type(format, payload) == Some(fu);
    if !single && !from_fu {
        return;
    }
    let mut whole = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        assert_eq!(nal_type(format, piece), Some(fu), "a fragmentation unit");
        let fu_header = piece[header_len];
        let (first, last) = (i == 0, i == pieces.len() - 1);
        let (was_start, was_end) = match from_fu {
            true => (
                payload[header_len] & 0x80 != 0,
                payload[header_len] & 0x40 != 0,
            ),
            false => (true, true),
        };
        assert_eq!(
            fu_header & 0x80 != 0,
            first && was_start,
            "start bit of {i}"
        );
        assert_eq!(fu_header & 0x40 != 0, last && was_end, "end bit of {i}");
        if first && !from_fu {
            // The NAL unit header, from the FU indicator (or PayloadHdr) and FU header.
            match format {
                NalFormat::H264 => whole.push(piece[0] & 0xe0 | fu_header & 0x1f),
                NalFormat::H265 => {
                    whole.extend([piece[0] & 0x81 | (fu_header & 0x3f) << 1, piece[1]])
                }
            }
        }
        whole.extend_from_slice(&piece[header_len + 1..]);
    }
    match from_fu {
        true => assert_eq!(whole, payload[header_len + 1..]),
        false => assert_eq!(whole, payload[..]),
    }
}
