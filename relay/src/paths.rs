//! The paths the relay serves: what the HTTP side, the workers and the metrics share of
//! each.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::track::Track;

/// A configured path and what is published on it.
#[derive(Debug)]
pub struct ServedPath {
    pub name: String,
    pub tracks: Vec<Arc<Track>>,
    /// 0: no limit.
    pub max_readers: usize,
    /// Viewers answered or connected.
    pub readers: AtomicUsize,
}
