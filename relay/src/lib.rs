//! relay: a WebRTC media relay. Streams come in (RTP over UDP, the built-in demo) and
//! fan out to WebRTC viewers (WHEP). The packet's way, stage by stage, is one module
//! each; docs/architecture.md walks through it.

pub mod api;
pub mod audio;
pub mod auth;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod heap;
pub mod hooks;
pub mod http;
pub mod ingest;
pub mod io;
pub mod lifeline;
pub mod logs;
pub mod metrics;
pub mod paths;
pub mod reload;
pub mod server;
pub mod session;
pub mod srtp;
pub mod track;
pub mod worker;
