//! Camera audio that browsers can play: AAC (RFC 3640 `mpeg4-generic`) to Opus.
//!
//! Browsers decode Opus, PCMU and PCMA, not AAC, which is what most IP cameras send.
//! The ingest transcodes such a track once, as it arrives, into an Opus track: viewers
//! then read Opus from the ring like any other track, so the cost does not grow with them.
//! Everything here is pure: RTP payloads in, Opus frames out, no clock and no socket.
//!
//! ```ignore
//! let mut aac = AacToOpus::from_sdp("mpeg4-generic", 44_100, fmtp)?; // once per track
//! let mut opus = OpusSource::new(ssrc);
//! aac.push(rtp.timestamp, rtp.marker, &rtp.payload, &mut |frame| {
//!     writer.push(opus.packet(&frame, arrival));
//! });
//! ```

mod asc;
mod rfc3640;
mod transcode;

#[cfg(test)]
mod tests;

use std::time::Instant;

use bytes::Bytes;

use crate::track::SourcePacket;

pub use transcode::AacToOpus;

/// Why a track cannot be transcoded: the caller logs it once and leaves the track out.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("audio encoding {0} is not supported (AAC must come as mpeg4-generic)")]
    UnsupportedEncoding(String),
    #[error("the fmtp has no config= (the AAC AudioSpecificConfig)")]
    MissingConfig,
    #[error("the fmtp's config= is not a valid AudioSpecificConfig")]
    BadConfig,
    #[error("AAC object type {0} is not supported (only AAC-LC, 2)")]
    UnsupportedObjectType(u32),
    #[error("AAC channel configuration {0} is not supported (mono or stereo only)")]
    UnsupportedChannels(u8),
    #[error("the fmtp's {0} is missing or not a number of bits")]
    BadFmtp(&'static str),
    #[error("AAC decoder: {0}")]
    Decoder(String),
    #[error("resampler: {0}")]
    Resampler(String),
    #[error("Opus encoder: {0}")]
    Encoder(#[from] opus::Error),
}

/// One 20 ms Opus frame: an RTP payload on the 48 kHz clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrame {
    /// Advances by 960 a frame; starts from the source's first timestamp, so that gaps
    /// in the source (lost packets) keep their length in the output.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// What a transcoder dropped or made up, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Opus frames produced.
    pub frames: u64,
    /// Payloads whose AU headers or sizes did not add up.
    pub malformed_payloads: u64,
    /// Fragmented AUs abandoned because a fragment was lost.
    pub incomplete_aus: u64,
    /// AUs the AAC decoder refused; their time becomes silence.
    pub decode_errors: u64,
    pub encode_errors: u64,
    /// AUs behind the audio already produced (reordered or repeated).
    pub late_aus: u64,
    /// Gaps in the source's timestamps (lost AUs) filled with silence.
    pub concealed_gaps: u64,
    /// Jumps of over a second in the source's timestamps (the source restarted).
    pub restarts: u64,
}

/// Numbers Opus frames as the packets of one RTP source, for a [`crate::track::TrackWriter`].
#[derive(Debug)]
pub struct OpusSource {
    ssrc: u32,
    next_seq: u16,
}

impl OpusSource {
    pub fn new(ssrc: u32) -> OpusSource {
        OpusSource { ssrc, next_seq: 0 }
    }

    /// The frame as the next packet: consecutive sequence numbers, no marker (no DTX,
    /// so no talkspurts to mark).
    pub fn packet<'a>(&mut self, frame: &'a OpusFrame, arrival: Instant) -> SourcePacket<'a> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        SourcePacket {
            ssrc: self.ssrc,
            seq,
            timestamp: frame.timestamp,
            marker: false,
            payload: &frame.payload,
            arrival,
        }
    }
}
