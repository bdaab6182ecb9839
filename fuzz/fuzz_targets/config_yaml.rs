//! A config file's YAML, loaded;
//! see `relay::fuzzing::config_yaml` for the input's layout and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::config_yaml(data));
