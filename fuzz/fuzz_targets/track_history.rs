//! A track's history fed packets numbered as the input says;
//! see `relay::fuzzing::track_history` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::track_history(data));
