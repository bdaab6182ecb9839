//! The one test kit of relay: what its integration tests (`relay/tests`) and its load
//! tools (`benches/`) need to run the relay from the outside, once.
//!
//! - [`process`]: the relay binary in a child process, started from a typed
//!   [`relay::config::Config`] ([`config`] writes it as YAML), in a network namespace or
//!   not, through a wrapper command or not; its log and its metrics.
//! - [`chromium`]: headless Chromium over WebDriver, and what it sees of the player page.
//! - [`client`]: str0m on a UDP socket of its own, as a browser's peer connection; the
//!   WebRTC end of every viewer. [`whep`] signals for it.
//! - [`publisher`]: a WHIP publisher of H264 (the demo clip) and Opus.
//! - [`viewer`]: the viewer tests watch the relay with: it keeps every packet it gets.
//!   (The load tools drive many clients from one thread instead: `benches/src/sink.rs`.)
//! - [`rtsp_server`]: GStreamer's RTSP server with live test cameras, to pull from.
//! - [`netns`]: network namespaces and the veth pairs that join them (root only).
//! - [`metrics`]: reading the relay's Prometheus text.
//! - [`log`], [`tempdir`], [`wait`]: a child's output lines, a directory removed on drop,
//!   polling until a condition holds.
//!
//! Failures that a load tool reports are `anyhow` errors; the viewer, made for tests,
//! panics with what went wrong.

pub mod auth_server;
pub mod chromium;
pub mod client;
pub mod config;
pub mod http;
pub mod jwt;
pub mod log;
pub mod metrics;
pub mod netns;
pub mod process;
pub mod publisher;
pub mod rtsp_server;
pub mod tempdir;
pub mod viewer;
pub mod wait;
pub mod whep;
