//! Error requeues with per-key exponential backoff, as upstream's workqueue rate limiter
//! (5ms doubling to 1000s), and an error type kube-runtime's `Controller` accepts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(1000);

/// A reconcile failure; wraps anyhow so reconcilers can use `?` freely.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileError(#[from] pub anyhow::Error);

impl From<kube::Error> for ReconcileError {
    fn from(e: kube::Error) -> Self {
        ReconcileError(e.into())
    }
}

/// Failure counts per key: each failure doubles the next delay, a success clears it.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_default();
        let delay = BASE.saturating_mul(1u32 << (*n).min(20));
        *n = n.saturating_add(1);
        delay.min(MAX)
    }

    /// `key` reconciled cleanly; its next failure starts from the base delay again.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Whether an apiserver error is `code` (404 NotFound, 409 AlreadyExists/Conflict...).
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), BASE);
        assert_eq!(b.failed("a"), BASE * 2);
        assert_eq!(b.failed("a"), BASE * 4);
        b.succeeded("a");
        assert_eq!(b.failed("a"), BASE);
        for _ in 0..40 {
            assert!(b.failed("b") <= MAX);
        }
    }
}
