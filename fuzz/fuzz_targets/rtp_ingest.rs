//! RTP datagrams pushed to an ingest port with five tracks;
//! see `relay::fuzzing::rtp_ingest` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::rtp_ingest(data));
