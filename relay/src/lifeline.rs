//! What happens when a data-plane thread dies. A worker owns its sessions outright, so
//! one that panicked or failed would leave them silent while HTTP went on placing new
//! sessions on it: a half-dead relay that looks alive. Instead the relay stops, with
//! the reason in its log and a failing exit code, and whatever supervises it (systemd,
//! Docker, Kubernetes) starts a whole one again. Restarting the worker in place was
//! the alternative; it would need its sessions closed and every other worker's
//! forwarding table purged, for a state no test could show is sound after a panic.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing::error;

/// Told by the first data-plane thread that ends before it was asked to stop.
#[derive(Debug, Default)]
pub struct Lifeline {
    why: OnceLock<String>,
    ended: tokio::sync::Notify,
}

impl Lifeline {
    /// Runs `body`, the whole life of thread `name`, and reports if it panics, fails, or
    /// returns while `stop` is unset.
    pub fn guard<E: std::fmt::Display>(
        &self,
        name: &str,
        stop: &AtomicBool,
        body: impl FnOnce() -> Result<(), E>,
    ) {
        let why = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) if stop.load(Ordering::Relaxed) => return,
            Ok(Ok(())) => format!("{name} ended without being asked to"),
            Ok(Err(e)) => format!("{name} failed: {e}"),
            Err(panic) => format!("{name} panicked: {}", panic_message(&*panic)),
        };
        error!("{why}; stopping the relay (its sessions on {name} can no longer be served)");
        let _ = self.why.set(why);
        self.ended.notify_one();
    }

    /// Waits until a guarded thread has ended; says why.
    pub async fn ended(&self) -> String {
        self.ended.notified().await;
        self.why.get().cloned().unwrap_or_default()
    }
}

/// What a panic said, if it said it in words.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "(no message)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn told(lifeline: &Lifeline) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), lifeline.ended())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_panicking_thread_ends_the_relay_with_its_message() {
        let lifeline = Arc::new(Lifeline::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lifeline, stop) = (lifeline.clone(), stop.clone());
            std::thread::spawn(move || {
                lifeline.guard("worker-1", &stop, || -> Result<(), String> {
                    let empty: &[u8] = &[];
                    let _ = empty[std::hint::black_box(0)];
                    Ok(())
                })
            })
        };
        thread.join().expect("the guard caught the panic");
        let why = told(&lifeline).await.expect("the relay was told");
        assert!(
            why.starts_with("worker-1 panicked: index out of bounds"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_failing_or_returning_thread_ends_it_too_but_not_when_asked() {
        let stop = AtomicBool::new(false);
        let lifeline = Lifeline::default();
        lifeline.guard("worker-0", &stop, || Err("epoll_wait: bad file descriptor"));
        assert_eq!(
            told(&lifeline).await.as_deref(),
            Some("worker-0 failed: epoll_wait: bad file descriptor")
        );

        let lifeline = Lifeline::default();
        lifeline.guard("ingest", &stop, || Ok::<(), String>(()));
        assert_eq!(
            told(&lifeline).await.as_deref(),
            Some("ingest ended without being asked to")
        );

        let lifeline = Lifeline::default();
        stop.store(true, Ordering::Relaxed);
        lifeline.guard("worker-0", &stop, || Ok::<(), String>(()));
        assert_eq!(
            lifeline.why.get(),
            None,
            "a thread asked to stop is no casualty"
        );
    }
}
