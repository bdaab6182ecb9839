//! AAC-LC RTP in, Opus 20 ms frames out: depacketize (RFC 3640), decode (symphonia),
//! resample to an Opus rate where needed (rubato), encode (libopus).

use bytes::Bytes;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia_codec_aac::AacDecoder;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration, Timestamp};

use super::asc::AudioSpecificConfig;
use super::rfc3640::{AuHeaderLayout, Depacketizer};
use super::{AudioError, OpusFrame, TranscodeStats};
use crate::track::fmtp;

/// Samples per AAC-LC access unit (the 960-sample variant does not occur in RTP).
const AU_SAMPLES: u32 = 1024;
/// The Opus RTP clock (RFC 7587), whatever the rate encoded.
const OPUS_CLOCK: u64 = 48_000;
/// 20 ms on the Opus clock: the timestamp step between frames.
const FRAME_TICKS: u32 = 960;
/// Rates libopus encodes without resampling.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// Per channel: 64 kbit/s for stereo, transparent for what cameras capture.
const BITRATE_PER_CHANNEL: i32 = 32_000;
/// One 20 ms Opus frame codes to at most 1275 bytes (RFC 6716 3.2.1).
const MAX_OPUS_PACKET: usize = 1275;

/// Transcodes one `mpeg4-generic` track to Opus. Sans-IO: RTP payloads in, frames out.
pub struct AacToOpus {
    depacketizer: Depacketizer,
    transcoder: AuTranscoder,
}

/// Whole AUs in, Opus frames out, on a clock kept from the AUs' timestamps.
struct AuTranscoder {
    decoder: AacDecoder,
    /// None when the source's rate is one libopus encodes as is.
    resampler: Option<Resample>,
    encoder: opus::Encoder,
    channels: usize,
    sample_rate: u32,
    clock_rate: u32,
    /// RTP clock ticks per AU.
    au_ticks: u32,
    /// Interleaved samples per 20 ms frame at the encoder's rate.
    frame_len: usize,
    run: Option<Run>,
    /// Opus timestamp of the next frame; continuous (+960 a frame) for the track's life.
    next_timestamp: u32,
    /// Interleaved PCM at the encoder's rate, short of a whole frame.
    pending: Vec<f32>,
    decoded: Vec<f32>,
    packet: Vec<u8>,
    stats: TranscodeStats,
}

/// A stretch of source audio whose RTP timestamps follow from its sample count.
#[derive(Debug)]
struct Run {
    /// Extended source timestamp of the run's first sample.
    start: i64,
    /// The last source timestamp seen, and its extension (to unwrap 32-bit timestamps).
    last: u32,
    last_ext: i64,
    /// Source samples fed since `start` (decoded or filled with silence).
    fed: u64,
}

impl Run {
    fn new(timestamp: u32) -> Run {
        let ext = i64::from(timestamp);
        Run {
            start: ext,
            last: timestamp,
            last_ext: ext,
            fed: 0,
        }
    }

    fn extend(&mut self, timestamp: u32) -> i64 {
        let ext = self.last_ext + i64::from(timestamp.wrapping_sub(self.last) as i32);
        self.last = timestamp;
        self.last_ext = ext;
        ext
    }
}

/// Where an AU falls against the samples already fed.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Within half an AU of where the last one ended (cameras' timestamps jitter).
    OnTime,
    /// AUs were lost: this many samples of silence keep the clock.
    Gap(u64),
    /// Behind what was already played (reordered or duplicate): dropped.
    Late,
    /// A jump of more than a second either way: the source restarted.
    Restart,
}

impl AacToOpus {
    /// From the source's SDP: `a=rtpmap:<pt> <encoding_name>/<clock_rate>[/channels]` and
    /// its `a=fmtp` (which must carry `config=`, the AudioSpecificConfig).
    pub fn from_sdp(
        encoding_name: &str,
        clock_rate: u32,
        fmtp: &str,
    ) -> Result<AacToOpus, AudioError> {
        if !encoding_name.eq_ignore_ascii_case("mpeg4-generic") {
            return Err(AudioError::UnsupportedEncoding(encoding_name.to_owned()));
        }
        if clock_rate == 0 {
            return Err(AudioError::BadFmtp("clock rate"));
        }
        let config = fmtp::param(fmtp, "config").ok_or(AudioError::MissingConfig)?;
        let asc = AudioSpecificConfig::from_hex(config)?;
        let layout = AuHeaderLayout::from_fmtp(fmtp)?;
        let au_ticks =
            (u64::from(AU_SAMPLES) * u64::from(clock_rate) / u64::from(asc.sample_rate)) as u32;

        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_extra_data(asc.bytes.clone().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|e| AudioError::Decoder(e.to_string()))?;

        let channels = usize::from(asc.channels);
        let (encoder_rate, resampler) = if OPUS_RATES.contains(&asc.sample_rate) {
            (asc.sample_rate, None)
        } else {
            (48_000, Some(Resample::new(asc.sample_rate, channels)?))
        };
        let opus_channels = match channels {
            1 => opus::Channels::Mono,
            _ => opus::Channels::Stereo,
        };
        let mut encoder =
            opus::Encoder::new(encoder_rate, opus_channels, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(BITRATE_PER_CHANNEL * channels as i32))?;
        // Every frame is sent: viewers' jitter buffers see a steady 20 ms cadence.
        encoder.set_dtx(false)?;

        Ok(AacToOpus {
            depacketizer: Depacketizer::new(layout, au_ticks),
            transcoder: AuTranscoder {
                decoder,
                resampler,
                encoder,
                channels,
                sample_rate: asc.sample_rate,
                clock_rate,
                au_ticks,
                frame_len: encoder_rate as usize / 50 * channels,
                run: None,
                next_timestamp: 0,
                pending: Vec::new(),
                decoded: Vec::new(),
                packet: vec![0; MAX_OPUS_PACKET],
                stats: TranscodeStats::default(),
            },
        })
    }

    /// Opus channels: 2 if the source is stereo, else 1.
    pub fn channels(&self) -> usize {
        self.transcoder.channels
    }

    pub fn stats(&self) -> &TranscodeStats {
        &self.transcoder.stats
    }

    /// Takes one RTP packet's payload; calls `out` for each 20 ms Opus frame completed.
    /// A malformed payload is counted in the stats and dropped.
    pub fn push(
        &mut self,
        rtp_timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut impl FnMut(OpusFrame),
    ) {
        let transcoder = &mut self.transcoder;
        let result = self
            .depacketizer
            .push(rtp_timestamp, marker, payload, &mut |ts, au| {
                transcoder.push(ts, au, out)
            });
        let stats = &mut self.transcoder.stats;
        stats.incomplete_aus = self.depacketizer.incomplete;
        if result.is_err() {
            stats.malformed_payloads += 1;
        }
    }

    /// Takes one whole AU with its RTP timestamp, for sources that depacketize themselves
    /// (retina's demuxed audio frames).
    pub fn push_access_unit(&mut self, timestamp: u32, au: &[u8], out: &mut impl FnMut(OpusFrame)) {
        self.transcoder.push(timestamp, au, out);
    }
}

impl AuTranscoder {
    fn push(&mut self, timestamp: u32, au: &[u8], out: &mut impl FnMut(OpusFrame)) {
        match self.place(timestamp) {
            Placement::OnTime => {}
            Placement::Gap(samples) => {
                self.stats.concealed_gaps += 1;
                let silence = vec![0.0; samples as usize * self.channels];
                self.feed(&silence, out);
            }
            Placement::Late => {
                self.stats.late_aus += 1;
                return;
            }
            Placement::Restart => self.restart(timestamp),
        }
        let packet = PacketRef::new(0, Timestamp::from(0u32), Duration::from(AU_SAMPLES), au);
        let mut decoded = std::mem::take(&mut self.decoded);
        match self.decoder.decode_ref(&packet) {
            Ok(buf) => buf.copy_to_vec_interleaved(&mut decoded),
            // The AU's time is filled with silence when the next one comes.
            Err(_) => {
                self.stats.decode_errors += 1;
                decoded.clear();
            }
        }
        self.feed(&decoded, out);
        self.decoded = decoded;
    }

    fn place(&mut self, timestamp: u32) -> Placement {
        let Some(run) = &mut self.run else {
            return Placement::Restart;
        };
        let at = run.extend(timestamp);
        let fed_ticks = run.fed * u64::from(self.clock_rate) / u64::from(self.sample_rate);
        let drift = at - (run.start + fed_ticks as i64);
        let half_au = i64::from(self.au_ticks / 2);
        let second = i64::from(self.clock_rate);
        match drift {
            d if d.abs() < half_au.max(1) => Placement::OnTime,
            d if d > 0 && d <= second => {
                Placement::Gap(d as u64 * u64::from(self.sample_rate) / u64::from(self.clock_rate))
            }
            d if d < 0 && -d <= second => Placement::Late,
            _ => Placement::Restart,
        }
    }

    /// Starts a new run at `timestamp`; Opus timestamps go on from where they were.
    fn restart(&mut self, timestamp: u32) {
        if self.run.is_none() {
            self.next_timestamp =
                (u64::from(timestamp) * OPUS_CLOCK / u64::from(self.clock_rate)) as u32;
        } else {
            self.stats.restarts += 1;
            self.decoder.reset();
            if let Some(r) = &mut self.resampler {
                r.reset();
            }
            // What is pending belongs to the old run; a partial frame is dropped.
            self.pending.clear();
        }
        self.run = Some(Run::new(timestamp));
    }

    /// Takes interleaved samples at the source's rate and encodes every whole frame.
    fn feed(&mut self, samples: &[f32], out: &mut impl FnMut(OpusFrame)) {
        if let Some(run) = &mut self.run {
            run.fed += (samples.len() / self.channels) as u64;
        }
        match &mut self.resampler {
            Some(r) => r.push(samples, &mut self.pending),
            None => self.pending.extend_from_slice(samples),
        }
        let mut at = 0;
        while self.pending.len() - at >= self.frame_len {
            let frame = &self.pending[at..at + self.frame_len];
            at += self.frame_len;
            match self.encoder.encode_float(frame, &mut self.packet) {
                Ok(len) => {
                    self.stats.frames += 1;
                    out(OpusFrame {
                        timestamp: self.next_timestamp,
                        payload: Bytes::copy_from_slice(&self.packet[..len]),
                    });
                }
                Err(_) => self.stats.encode_errors += 1,
            }
            // An unencodable frame still took its 20 ms.
            self.next_timestamp = self.next_timestamp.wrapping_add(FRAME_TICKS);
        }
        self.pending.drain(..at);
    }
}

/// A fixed-ratio resampler to 48 kHz, fed any number of samples at a time.
struct Resample {
    fft: Fft<f32>,
    channels: usize,
    /// Interleaved input short of the resampler's chunk.
    input: Vec<f32>,
    output: Vec<f32>,
    /// Output frames still to drop: the resampler's delay, so output lines up with input.
    trim: usize,
}

impl Resample {
    fn new(from: u32, channels: usize) -> Result<Resample, AudioError> {
        // Small chunks keep the audio held in the resampler under 10 ms (44.1 kHz: 294
        // frames in, 160 of delay out).
        let fft = Fft::new(from as usize, 48_000, 256, channels, FixedSync::Input)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let output = vec![0.0; fft.output_frames_max() * channels];
        let trim = fft.output_delay();
        Ok(Resample {
            fft,
            channels,
            input: Vec::new(),
            output,
            trim,
        })
    }

    fn reset(&mut self) {
        self.fft.reset();
        self.input.clear();
        self.trim = self.fft.output_delay();
    }

    fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) {
        self.input.extend_from_slice(samples);
        let chunk = self.fft.input_frames_next() * self.channels;
        let mut at = 0;
        while self.input.len() - at >= chunk {
            let frames_out = self.output.len() / self.channels;
            const SIZED: &str = "buffers are sized from the resampler's own figures";
            let input = &self.input[at..at + chunk];
            let input =
                InterleavedSlice::new(input, self.channels, chunk / self.channels).expect(SIZED);
            let mut output = InterleavedSlice::new_mut(&mut self.output, self.channels, frames_out)
                .expect(SIZED);
            at += chunk;
            let (_, written) = self
                .fft
                .process_into_buffer(&input, &mut output, None)
                .expect(SIZED);
            let skip = self.trim.min(written);
            self.trim -= skip;
            out.extend_from_slice(&self.output[skip * self.channels..written * self.channels]);
        }
        self.input.drain(..at);
    }
}
