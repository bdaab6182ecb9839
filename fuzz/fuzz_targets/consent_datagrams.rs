//! Datagrams from a live viewer and from strangers, to two workers in memory; see
//! `relay::fuzzing::consent_datagrams` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::consent_datagrams(data));
