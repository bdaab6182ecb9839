//! SRTP and SRTCP from a peer, under keys from the input;
//! see `relay::fuzzing::srtp_open` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::srtp_open(data));
