//! The relay's per-packet egress cost against the cost of the AES-GCM seal alone.
//!
//! One run measures (a) ring's AES-GCM `seal_in_place_separate_tag` of a 1200-byte
//! payload, (b) `ViewerEgress::fan_out` of one 1200-byte packet to 100 viewers (header rewrite,
//! payload copy, seal, commit) into a sender that recycles one buffer and sends nothing,
//! for AES-128-GCM and AES-256-GCM, and (c) the same with the legacy AES-CM/HMAC-SHA1
//! profile. It then prints (b) per viewer over (a): what the relay spends around the
//! cipher, as a ratio that holds on any machine.
//!
//! `cargo bench -p relay --bench fanout`

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

use relay::io::{SendStats, Sender, MAX_DATAGRAM};
use relay::session::Route;
use relay::srtp::{MasterKey, Outbound, Profile};
use relay::track::rewrite::{Rewrite, HEADER_LEN};
use relay::track::{Codec, Packet, SourcePacket, Track, TrackInfo};
use relay::worker::session_info::{Role, SessionCounts, SessionInfo};
use relay::worker::stats::EgressStats;
use relay::worker::viewer::{MediaOut, MediaState, ViewerEgress};

const PAYLOAD: usize = 1200;
const VIEWERS: usize = 100;
const GROUP: &str = "egress_1200B";

/// A `Sender` that hands out the same buffer every time and sends nothing: what is
/// left is the relay's own work per frame.
struct Discard {
    buf: Box<[u8]>,
    stats: SendStats,
}

impl Sender for Discard {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    fn commit(&mut self, len: usize, _source: SocketAddr, _destination: SocketAddr) {
        black_box(len);
        self.stats.sent += 1;
    }

    fn flush(&mut self) {}

    fn stats(&self) -> SendStats {
        self.stats
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| fastrand::u8(..)).collect()
}

/// One 1200-byte packet in a track's history ring, as fan-out reads it.
fn ring_packet() -> (std::sync::Arc<Track>, std::sync::Arc<Packet>) {
    let info = TrackInfo {
        codec: Codec::H264,
        fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
    };
    let (track, mut writer) = Track::new(info, relay::track::history::Retention::default());
    // A non-IDR slice NAL (type 1): no keyframe bookkeeping.
    let mut payload = random_bytes(PAYLOAD);
    payload[0] = 0x41;
    writer.push(SourcePacket {
        ssrc: 1,
        seq: 1000,
        timestamp: 90_000,
        marker: false,
        payload: &payload,
        arrival: Instant::now(),
    });
    let packet = track.get(0).expect("just pushed");
    (track, packet)
}

/// `n` live viewers of one video track, each with its own keys and numbering.
fn viewers(profile: Profile, n: usize, first: &Packet) -> Vec<ViewerEgress> {
    (0..n)
        .map(|i| {
            let key = random_bytes(profile.key_len());
            let salt = random_bytes(profile.salt_len());
            let master = MasterKey::new(profile, &key, &salt).expect("profile's lengths");
            let ssrc = fastrand::u32(..);
            let rewrite = Rewrite::starting_at(first, ssrc, 96, fastrand::u16(..), 0);
            ViewerEgress {
                srtp: Outbound::new(&master),
                route: Route {
                    local: "127.0.0.1:8189".parse().unwrap(),
                    remote: SocketAddr::from(([127, 0, 0, 2], 10_000 + i as u16)),
                },
                overhead: profile.rtp_overhead(),
                media: vec![MediaOut::new(
                    0,
                    (ssrc, 96),
                    90_000,
                    "bench".into(),
                    MediaState::Sending(rewrite),
                    None,
                )],
                retransmit_budget: 0,
                info: Arc::new(SessionInfo::new(
                    format!("v{i}"),
                    "bench".into(),
                    Role::Read,
                    String::new(),
                )),
                sent: SessionCounts::default(),
            }
        })
        .collect()
}

/// (name, profile) of the egress benchmarks, and the raw seal each is compared with.
const EGRESS: [(&str, Profile, &str); 3] = [
    (
        "fan_out_aes128gcm_x100",
        Profile::AeadAes128Gcm,
        "ring_seal_aes128gcm",
    ),
    (
        "fan_out_aes256gcm_x100",
        Profile::AeadAes256Gcm,
        "ring_seal_aes256gcm",
    ),
    (
        "fan_out_aes128cm_sha1_80_x100",
        Profile::Aes128CmHmacSha1_80,
        "ring_seal_aes128gcm",
    ),
];

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);

    // (a) The cipher alone: a 12-byte RTP header as associated data, 1200 bytes sealed.
    for (name, algorithm) in [
        ("ring_seal_aes128gcm", &AES_128_GCM),
        ("ring_seal_aes256gcm", &AES_256_GCM),
    ] {
        let key = UnboundKey::new(algorithm, &random_bytes(algorithm.key_len())).unwrap();
        let key = LessSafeKey::new(key);
        let header = random_bytes(HEADER_LEN);
        let mut payload = random_bytes(PAYLOAD);
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([7; 12]);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&header), &mut payload)
                    .unwrap();
                let _ = black_box(tag);
            })
        });
    }

    // (b), (c) The relay's egress: one ring packet to 100 viewers.
    let (track, packet) = ring_packet();
    let batch = [packet.clone()];
    for (name, profile, _) in EGRESS {
        let mut egress = viewers(profile, VIEWERS, &packet);
        let mut tx = Discard {
            buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
            stats: SendStats::default(),
        };
        let mut stats = EgressStats::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let (end, now) = (packet.index + 1, std::time::Instant::now());
        group.throughput(Throughput::Elements(VIEWERS as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for viewer in &mut egress {
                    viewer.fan_out(0, &track, &batch, end, now, &mut tx, &mut stats, &mut rng);
                }
            })
        });
        // (Zero when a filter skipped this benchmark.)
        assert_eq!(
            stats.packets, tx.stats.sent,
            "each fan-out committed a frame"
        );
        assert_eq!(
            stats.packets % VIEWERS as u64,
            0,
            "to every viewer, every time"
        );
        assert_eq!(stats.oversized, 0);
    }
    group.finish();
}

/// Where criterion writes its estimates: $CRITERION_HOME, else `criterion/` in the
/// target directory this bench binary was built into (target/release/deps/fanout-*).
fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("criterion")
}

/// Nanoseconds per iteration of a benchmark that ran in this process (its estimates
/// are newer than `since`): the slope when criterion fitted one, else the mean.
fn estimate(dir: &Path, name: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(GROUP).join(name).join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}

/// Prints the per-viewer egress cost over the raw seal, and the same as one JSON line.
fn report(dir: &Path, since: SystemTime) {
    let mut json = serde_json::Map::new();
    let mut lines = Vec::new();
    for raw in ["ring_seal_aes128gcm", "ring_seal_aes256gcm"] {
        if let Some(ns) = estimate(dir, raw, since) {
            lines.push(format!("  {raw:<32} {ns:>8.1} ns"));
            json.insert(format!("{raw}_ns"), ns.into());
        }
    }
    for (name, _, raw) in EGRESS {
        let Some(total) = estimate(dir, name, since) else {
            continue;
        };
        let per_viewer = total / VIEWERS as f64;
        json.insert(format!("{name}_ns_per_viewer"), per_viewer.into());
        let Some(seal) = estimate(dir, raw, since) else {
            lines.push(format!("  {name:<32} {per_viewer:>8.1} ns"));
            continue;
        };
        let ratio = per_viewer / seal;
        lines.push(format!(
            "  {name:<32} {per_viewer:>8.1} ns  = {ratio:.2} x {raw}"
        ));
        json.insert(format!("{name}_over_{raw}"), ratio.into());
    }
    // Nothing measured (a filter, or `cargo test --benches`): nothing to report.
    if lines.is_empty() {
        return;
    }
    println!("\nper packet and viewer, {PAYLOAD}-byte payload:");
    for line in lines {
        println!("{line}");
    }
    json.insert("bench".into(), "fanout".into());
    println!("{}", serde_json::Value::Object(json));
}

fn main() {
    // Estimates written before this moment belong to an earlier run.
    let since = SystemTime::now();
    let dir = output_directory();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    report(&dir, since);
}
