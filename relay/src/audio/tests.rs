//! The transcoder on real AAC: ffmpeg's RTP captures of a 1 kHz sine (testdata/capture.py).

use proptest::prelude::*;

use super::*;

/// A capture: the SDP's rtpmap and fmtp, and the RTP packets as (timestamp, marker, payload).
struct Capture {
    clock_rate: u32,
    channels: usize,
    fmtp: String,
    packets: Vec<(u32, bool, Vec<u8>)>,
}

fn capture(name: &str) -> Capture {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/audio/testdata/");
    let sdp = std::fs::read_to_string(format!("{dir}{name}.sdp")).unwrap();
    let attribute = |prefix: &str| {
        let line = sdp.lines().find(|l| l.starts_with(prefix)).unwrap();
        line.split_once(' ').unwrap().1.trim().to_owned()
    };
    // "MPEG4-GENERIC/44100/1"
    let rtpmap = attribute("a=rtpmap:");
    let mut parts = rtpmap.split('/').skip(1);
    let clock_rate = parts.next().unwrap().parse().unwrap();
    let channels = parts.next().unwrap().parse().unwrap();

    let rtp = std::fs::read(format!("{dir}{name}.rtp")).unwrap();
    let mut packets = Vec::new();
    let mut at = 0;
    while at < rtp.len() {
        let len = u16::from_be_bytes([rtp[at], rtp[at + 1]]) as usize;
        let p = &rtp[at + 2..at + 2 + len];
        at += 2 + len;
        assert_eq!(p[0], 0x80, "RTP v2, no padding, extension or CSRC");
        let timestamp = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        packets.push((timestamp, p[1] & 0x80 != 0, p[12..].to_vec()));
    }
    Capture {
        clock_rate,
        channels,
        fmtp: attribute("a=fmtp:"),
        packets,
    }
}

fn transcoder(c: &Capture) -> AacToOpus {
    AacToOpus::from_sdp("MPEG4-GENERIC", c.clock_rate, &c.fmtp).unwrap()
}

fn transcode(c: &Capture, packets: impl IntoIterator<Item = usize>) -> (AacToOpus, Vec<OpusFrame>) {
    let mut t = transcoder(c);
    let mut frames = Vec::new();
    for i in packets {
        let (ts, marker, payload) = &c.packets[i];
        t.push(*ts, *marker, payload, &mut |f| frames.push(f));
    }
    (t, frames)
}

/// The AUs in a capture, counted from its AU headers (16 bits each in AAC-hbr),
/// a fragmented AU once.
fn access_units(c: &Capture) -> usize {
    let mut count = 0;
    let mut last_ts = None;
    for (ts, _, p) in &c.packets {
        if last_ts != Some(*ts) {
            count += u16::from_be_bytes([p[0], p[1]]) as usize / 16;
        }
        last_ts = Some(*ts);
    }
    count
}

/// Decodes the frames with libopus at 48 kHz; returns the first channel.
fn decode(frames: &[OpusFrame], channels: usize) -> Vec<f32> {
    let layout = if channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut decoder = opus::Decoder::new(48_000, layout).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0.0; 960 * channels];
    for f in frames {
        let n = decoder.decode_float(&f.payload, &mut buf, false).unwrap();
        assert_eq!(n, 960, "20 ms frames");
        pcm.extend(buf.chunks(channels).map(|frame| frame[0]));
    }
    pcm
}

/// Goertzel power of `freq` Hz in `pcm` at 48 kHz.
fn power(pcm: &[f32], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in pcm {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn dominant_frequency(pcm: &[f32]) -> f64 {
    (4..=160)
        .map(|i| i as f64 * 25.0)
        .max_by(|a, b| power(pcm, *a).total_cmp(&power(pcm, *b)))
        .unwrap()
}

/// Opus timestamps step by 960 (20 ms at 48 kHz) from frame to frame.
fn assert_continuous(frames: &[OpusFrame]) {
    for pair in frames.windows(2) {
        assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 960);
    }
}

/// The checks every capture must pass: a 1 kHz tone out, 960 ticks a frame from the
/// source's first timestamp, as long as the AAC that went in.
fn assert_transcodes_to_1khz(name: &str) {
    let c = capture(name);
    let (t, frames) = transcode(&c, 0..c.packets.len());
    let first_ts = u64::from(c.packets[0].0) * 48_000 / u64::from(c.clock_rate);
    assert_eq!(frames[0].timestamp, first_ts as u32);
    assert_continuous(&frames);
    let stats = t.stats();
    assert_eq!(stats.frames, frames.len() as u64);
    assert_eq!(
        (
            stats.malformed_payloads,
            stats.decode_errors,
            stats.incomplete_aus
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(t.channels(), c.channels);

    let input_ms = access_units(&c) as f64 * 1024.0 * 1000.0 / c.clock_rate as f64;
    let output_ms = frames.len() as f64 * 20.0;
    // Short of a whole frame, plus what the resampler holds (rates Opus does not take).
    let held_ms = if [16_000, 48_000].contains(&c.clock_rate) {
        0.0
    } else {
        10.0
    };
    assert!(
        input_ms - output_ms >= 0.0 && input_ms - output_ms < 20.0 + held_ms,
        "{input_ms} ms of AAC gave {output_ms} ms of Opus"
    );

    let pcm = decode(&frames, c.channels);
    // Past the encoders' start-up (AAC priming, Opus look-ahead).
    let steady = &pcm[4800..];
    let f = dominant_frequency(steady);
    assert!((975.0..=1025.0).contains(&f), "dominant frequency {f} Hz");
    assert!(power(steady, 1000.0) > 100.0 * power(steady, 3000.0));
}

#[test]
fn aac_44100_mono_several_aus_a_packet_resampled_to_opus() {
    let c = capture("sine1k_44100_mono");
    assert!(
        c.packets.iter().all(|(_, _, p)| p[1] >= 32),
        "2 or more AUs a packet"
    );
    assert_transcodes_to_1khz("sine1k_44100_mono");
}

#[test]
fn aac_48000_stereo_fragmented_aus_to_opus() {
    let c = capture("sine1k_48000_stereo");
    let fragments = c.packets.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(fragments > 10, "ffmpeg split the AUs over packets");
    assert_transcodes_to_1khz("sine1k_48000_stereo");
}

#[test]
fn aac_16000_mono_is_encoded_at_its_own_rate() {
    assert_transcodes_to_1khz("sine1k_16000_mono");
}

#[test]
fn lost_packet_becomes_silence_of_its_length() {
    let c = capture("sine1k_44100_mono");
    let all = transcode(&c, 0..c.packets.len()).1;
    // Packet 2 (4 AUs, 93 ms) lost: the output keeps its length and its timestamps.
    let (t, lossy) = transcode(&c, (0..c.packets.len()).filter(|&i| i != 2));
    assert_eq!(t.stats().concealed_gaps, 1);
    assert_eq!(lossy.len(), all.len());
    assert_eq!(
        lossy.last().unwrap().timestamp,
        all.last().unwrap().timestamp
    );
}

#[test]
fn lost_fragment_drops_only_its_au() {
    let c = capture("sine1k_48000_stereo");
    let (t, frames) = transcode(&c, (0..c.packets.len()).filter(|&i| i != 4));
    assert_eq!(t.stats().incomplete_aus, 1);
    assert_eq!(t.stats().concealed_gaps, 1);
    assert_continuous(&frames);
}

#[test]
fn reordered_packet_is_dropped_as_late() {
    let c = capture("sine1k_44100_mono");
    let (t, frames) = transcode(&c, [0, 2, 1, 3, 4]);
    // Packet 2 came before 1: 1's AUs fill in as silence, 1 itself is late.
    assert_eq!((t.stats().concealed_gaps, t.stats().late_aus), (1, 4));
    assert_continuous(&frames);
}

#[test]
fn source_restart_keeps_opus_timestamps_continuous() {
    let c = capture("sine1k_44100_mono");
    let mut t = transcoder(&c);
    let mut frames = Vec::new();
    for (i, (ts, marker, payload)) in c.packets.iter().enumerate() {
        // The camera restarts before packet 3 with unrelated timestamps.
        let ts = if i >= 3 {
            ts.wrapping_add(1 << 30)
        } else {
            *ts
        };
        t.push(ts, *marker, payload, &mut |f| frames.push(f));
    }
    assert_eq!(t.stats().restarts, 1);
    assert_continuous(&frames);
}

#[test]
fn garbage_is_counted_not_played() {
    let c = capture("sine1k_48000_stereo");
    let mut t = transcoder(&c);
    let mut frames = 0;
    // Two AU headers that promise more than the payload holds, and an empty payload.
    t.push(0, true, &[0, 32, 0, 0x40, 0, 0x40, 1, 2, 3], &mut |_| {
        frames += 1
    });
    t.push(1024, true, &[], &mut |_| frames += 1);
    // Well-formed RFC 3640 carrying AUs that are not AAC.
    let mut noise = vec![0, 16, 0x03, 0x20];
    noise.extend((0..100u8).map(|i| i.wrapping_mul(37)));
    for k in 0..20 {
        t.push(2048 + k * 1024, true, &noise, &mut |_| frames += 1);
    }
    let stats = t.stats();
    assert_eq!(stats.malformed_payloads, 2);
    assert!(stats.decode_errors > 0, "{stats:?}");
    assert_eq!(frames as u64, stats.frames, "only silence comes out");
}

#[test]
fn opus_source_numbers_frames_consecutively() {
    let mut source = OpusSource::new(7);
    let now = Instant::now();
    let frame = |timestamp| OpusFrame {
        timestamp,
        payload: Bytes::from_static(b"\xfc"),
    };
    let (first, second) = (frame(960), frame(1920));
    let a = source.packet(&first, now);
    let b = source.packet(&second, now);
    assert_eq!((a.ssrc, a.seq, a.timestamp), (7, 0, 960));
    assert_eq!((b.seq, b.timestamp), (1, 1920));
}

#[test]
fn unsupported_tracks_are_typed_errors() {
    let fmtp = "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1210";
    assert!(matches!(
        AacToOpus::from_sdp("MP4A-LATM", 44_100, "cpresent=0;config=40002410"),
        Err(AudioError::UnsupportedEncoding(_))
    ));
    assert!(matches!(
        AacToOpus::from_sdp("mpeg4-generic", 44_100, "mode=AAC-hbr;sizelength=13"),
        Err(AudioError::MissingConfig)
    ));
    // HE-AAC (object type 5).
    assert!(matches!(
        AacToOpus::from_sdp("mpeg4-generic", 24_000, &fmtp.replace("1210", "2B10")),
        Err(AudioError::UnsupportedObjectType(5))
    ));
    assert!(AacToOpus::from_sdp("mpeg4-generic", 44_100, fmtp).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary payloads, and arbitrary AUs behind valid headers, never panic.
    #[test]
    fn arbitrary_payloads_never_panic(
        packets in prop::collection::vec(
            (any::<u32>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..600)), 1..8),
        framed in any::<bool>(),
    ) {
        let c = capture("sine1k_48000_stereo");
        let mut t = transcoder(&c);
        for (ts, marker, mut payload) in packets {
            if framed {
                // One AU header that matches the bytes: the garbage reaches the decoder.
                let size = (payload.len() as u16) << 3;
                let mut p = vec![0, 16];
                p.extend_from_slice(&size.to_be_bytes());
                p.append(&mut payload);
                payload = p;
            }
            t.push(ts % 100_000, marker, &payload, &mut |_| {});
        }
    }
}
