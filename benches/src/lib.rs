//! Load tools for relay. They run the relay binary with the test kit
//! (`relay-testkit`: the relay process, its config, WHEP clients, network namespaces,
//! metrics) and measure it.
//!
//! - `relay-bench egress`: the relay process under N WHEP viewers against a bare
//!   `sendmmsg` loop sending the same datagrams.
//! - `relay-bench xdp-egress`: the relay in XDP mode against portable mode on one veth
//!   pair, viewers counted by a sink XDP program (`sink_program`, `sink-ebpf/`).
//! - `relay-bench xdp-flood`: the relay's XDP program under a flood from unknown sources.
//! - `relay-bench http-abuse`: the relay's HTTP listener under idle, slow and flooding
//!   clients and offers never connected, while an honest viewer joins (`http_abuse`).
//! - `relay-bench publish`: N RTP streams of a recorded H264 clip at real-time pace, with
//!   a send-time stamp (`stamp`) before every frame, to any RTP-ingesting server.
//! - `relay-bench swarm`: WHEP viewers against any server (`swarm`, `sink`), verifying
//!   every packet (`verify`) or counting it cheaply (`sink_program`).
//! - `relay-bench first-frame`: time to the first decoded frame in headless Chromium
//!   joining mid-GOP, with or without the relay's keyframe cache.
//! - `relay-bench suite` (`cargo xtask bench`): the standard workloads W1-W4 against the
//!   relay and Janus (`janus`) side by side, and W1R, W1 pulled over RTSP from one
//!   GStreamer RTSP server (the test kit's `rtsp_server`); its results (`suite_results`) go into
//!   docs/benchmarks.md (`suite_docs`, `plot`).
//!
//! The micro benchmark of the fan-out sits beside what it measures:
//! `relay/benches/fanout.rs`. docs/benchmarks.md has the numbers.

pub mod baseline;
pub mod first_frame;
pub mod flood;
pub mod http_abuse;
pub mod janus;
pub mod netns;
pub mod plot;
pub mod procfs;
pub mod publish;
pub mod relay_config;
pub mod report;
pub mod sink;
pub mod sink_program;
pub mod stamp;
pub mod suite;
pub mod suite_docs;
pub mod suite_results;
pub mod swarm;
pub mod verify;
pub mod xdp_egress;
pub mod xdp_flood;
