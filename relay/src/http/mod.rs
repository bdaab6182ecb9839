//! HTTP: WHEP endpoints, the player page, metrics (being written).
//!
//! The HTTP layer knows nothing of sessions: it calls a [`Viewers`] implementation
//! (the server's control plane) and maps its typed errors to status codes.

/// What the HTTP layer asks of the relay.
pub trait Viewers: Send + Sync + 'static {
    /// Creates a viewer of `path` from a WHEP offer; returns its id and the SDP answer.
    fn create(&self, path: &str, offer: &str) -> Result<Created, WhepError>;
    /// Ends viewer `id` of `path`.
    fn delete(&self, path: &str, id: &str) -> Result<(), WhepError>;
    /// Whether `path` is configured (for the player page).
    fn has_path(&self, path: &str) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    /// 404
    #[error("no path named '{0}' is configured")]
    UnknownPath(String),
    /// 404
    #[error("no session '{0}' on this path")]
    UnknownSession(String),
    /// 400, with the reason
    #[error("the SDP offer was refused: {0}")]
    BadOffer(String),
    /// 503
    #[error("path '{0}' has reached maxReaders")]
    TooManyReaders(String),
}
