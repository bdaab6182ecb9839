//! The MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) that an SDP carries as the hex
//! `config=` of an `mpeg4-generic` fmtp: which AAC, at what rate, how many channels.

use symphonia_core::io::{BitReaderLtr, ReadBitsLtr};

use super::AudioError;

/// AAC Low Complexity, the only object type the decoder handles (and what cameras send).
pub const AAC_LC: u8 = 2;

/// ISO/IEC 14496-3 table 1.18, indices 0..=12 (13 and 14 are reserved, 15 is explicit).
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    /// Channel configuration 1 (mono) or 2 (stereo): all the decoder can output.
    pub channels: u8,
    /// The config as sent, which the decoder reads again.
    pub bytes: Vec<u8>,
}

impl AudioSpecificConfig {
    /// Reads the fmtp's `config=` hex string; only AAC-LC mono or stereo is accepted.
    pub fn from_hex(hex: &str) -> Result<AudioSpecificConfig, AudioError> {
        let hex = hex.trim();
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return Err(AudioError::BadConfig);
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or(AudioError::BadConfig)?;
        Self::read(bytes)
    }

    fn read(bytes: Vec<u8>) -> Result<AudioSpecificConfig, AudioError> {
        let mut bits = BitReaderLtr::new(&bytes);
        let mut read = |n| bits.read_bits_leq32(n).map_err(|_| AudioError::BadConfig);
        let mut object_type = read(5)?;
        if object_type == 31 {
            object_type = 32 + read(6)?;
        }
        let sample_rate = match read(4)? {
            15 => read(24)?,
            i => *SAMPLE_RATES.get(i as usize).ok_or(AudioError::BadConfig)?,
        };
        let channels = read(4)?;
        // Object types 5 and 29 (HE-AAC, HE-AACv2) signal SBR/PS explicitly here.
        if object_type != u32::from(AAC_LC) {
            return Err(AudioError::UnsupportedObjectType(object_type));
        }
        if !(1..=2).contains(&channels) {
            return Err(AudioError::UnsupportedChannels(channels as u8));
        }
        // An explicit rate outside AAC's own table's range is no camera's (and would size
        // the resampler's FFT by it).
        if !(7_350..=96_000).contains(&sample_rate) {
            return Err(AudioError::BadConfig);
        }
        Ok(AudioSpecificConfig {
            object_type: AAC_LC,
            sample_rate,
            channels: channels as u8,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ffmpeg_configs() {
        // From ffmpeg 5.1's SDPs in testdata/ (with the explicit "no SBR" extension).
        let mono = AudioSpecificConfig::from_hex("120856E500").unwrap();
        assert_eq!(
            (mono.object_type, mono.sample_rate, mono.channels),
            (2, 44_100, 1)
        );
        let stereo = AudioSpecificConfig::from_hex("119056E500").unwrap();
        assert_eq!((stereo.sample_rate, stereo.channels), (48_000, 2));
        assert_eq!(stereo.bytes, [0x11, 0x90, 0x56, 0xe5, 0x00]);
        // Explicit rate (index 15): 2 | 15 | 0x00ac44 (44100) | 1 channel.
        let explicit = AudioSpecificConfig::from_hex("1780562208").unwrap();
        assert_eq!((explicit.sample_rate, explicit.channels), (44_100, 1));
    }

    #[test]
    fn refuses_other_aac_and_bad_hex() {
        // HE-AAC (object type 5), 24 kHz core, stereo.
        assert!(matches!(
            AudioSpecificConfig::from_hex("2B10"),
            Err(AudioError::UnsupportedObjectType(5))
        ));
        // AAC-LC 48 kHz 5.1 (channel configuration 6).
        assert!(matches!(
            AudioSpecificConfig::from_hex("11B0"),
            Err(AudioError::UnsupportedChannels(6))
        ));
        // Explicit rate 1 Hz: 2 | 15 | 0x000001 | 1 channel.
        for bad in ["", "1", "zz10", "12", "1f90", "1780000088"] {
            assert!(
                matches!(
                    AudioSpecificConfig::from_hex(bad),
                    Err(AudioError::BadConfig)
                ),
                "{bad}"
            );
        }
    }
}
