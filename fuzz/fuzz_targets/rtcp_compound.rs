//! A viewer's compound RTCP, decrypted;
//! see `relay::fuzzing::rtcp_compound` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::rtcp_compound(data));
