//! A camera's DESCRIBE SDP and RTP packets, carried as the RTSP source does;
//! see `relay::fuzzing::rtsp_camera` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::rtsp_camera(data));
