//! Load tools and micro benchmarks for relay.
//!
//! - `benches/fanout.rs` (criterion): the per-packet egress cost against the AES-GCM seal.
//! - `relay-bench egress`: the relay process under N WHEP viewers against a bare
//!   `sendmmsg` loop sending the same datagrams. docs/benchmarks.md has the numbers.

pub mod baseline;
pub mod procfs;
pub mod relay_proc;
pub mod sink;
