//! Config changes through the control API, one after another;
//! see `relay::fuzzing::api_bodies` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::api_bodies(data));
