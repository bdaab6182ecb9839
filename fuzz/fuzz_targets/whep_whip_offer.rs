//! A WHEP viewer's or WHIP publisher's SDP offer, answered;
//! see `relay::fuzzing::whep_whip_offer` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::whep_whip_offer(data));
