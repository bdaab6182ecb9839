//! Drivers of the cargo-fuzz targets in `fuzz/`: each turns the fuzzer's bytes into
//! inputs for a part of the relay, deterministically, and checks what must hold
//! whatever comes in. `cargo test` replays the checked-in corpus of every target
//! through them ([`TARGETS`]), so an input that once failed keeps being tried.
//!
//! One target per parser or state machine that reads what others send: see
//! docs/architecture.md ("Fuzzing") for what each asserts and how to run them.

mod api;
mod consent;
mod media;
mod offer;
mod rtsp;
mod srtp;

use std::sync::OnceLock;
use std::time::Instant;

pub use api::{api_bodies, config_yaml};
pub use consent::consent_datagrams;
pub use media::{rtcp_compound, rtp_ingest, track_history};
pub use offer::whep_whip_offer;
pub use rtsp::rtsp_camera;
pub use srtp::srtp_open;

/// A target's driver: one input, checked.
pub type Driver = fn(&[u8]);

/// Every target by its name in `fuzz/fuzz_targets` and `fuzz/corpus`.
pub const TARGETS: &[(&str, Driver)] = &[
    ("consent_datagrams", consent_datagrams),
    ("rtp_ingest", rtp_ingest),
    ("rtcp_compound", rtcp_compound),
    ("srtp_open", srtp_open),
    ("track_history", track_history),
    ("whep_whip_offer", whep_whip_offer),
    ("rtsp_camera", rtsp_camera),
    ("config_yaml", config_yaml),
    ("api_bodies", api_bodies),
];

/// The records most drivers read: an op byte, a length byte, then that many bytes of
/// payload (fewer if the input ends first).
fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    records_of(data, 1)
}

/// [`records`] with a 16-bit (big-endian) length: whole datagrams, up to 64 KiB.
fn wide_records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    records_of(data, 2)
}

fn records_of(data: &[u8], len_bytes: usize) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&op, tail) = rest.split_first()?;
        let len = tail
            .get(..len_bytes)?
            .iter()
            .fold(0, |len, &b| len << 8 | usize::from(b));
        let tail = &tail[len_bytes..];
        let (payload, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        Some((op, payload))
    })
}

/// The same instant for every run: drivers add to it, never read the clock.
fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");

    /// Every input of every target's checked-in corpus (see docs/architecture.md,
    /// "Fuzzing"): what once crashed or found new code keeps being tried.
    #[test]
    fn every_corpus_replays_clean() {
        for (name, driver) in TARGETS {
            let dir = format!("{FUZZ}/corpus/{name}");
            let mut inputs = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
                driver(&std::fs::read(entry.unwrap().path()).unwrap());
                inputs += 1;
            }
            assert!(inputs > 0, "{dir} is empty");
        }
    }

    /// A target the fuzzer runs is a target the corpus test replays, and back.
    #[test]
    fn every_fuzz_target_is_listed() {
        let mut files: Vec<String> = std::fs::read_dir(format!("{FUZZ}/fuzz_targets"))
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.trim_end_matches(".rs").to_owned()
            })
            .collect();
        files.sort();
        let mut listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
        listed.sort();
        assert_eq!(files, listed);
    }

    #[test]
    fn records_split_where_their_lengths_say() {
        let data = [1, 2, b'a', b'b', 3, 5, b'c'];
        let got: Vec<_> = records(&data).collect();
        assert_eq!(got, [(1, &b"ab"[..]), (3, &b"c"[..])]);
        let got: Vec<_> = wide_records(&[7, 0, 1, b'x', 8, 0]).collect();
        assert_eq!(got, [(7, &b"x"[..])]);
    }
}
