//! Per-object exponential backoff for failed syncs, as upstream's rate-limited work queue:
//! each consecutive failure doubles the wait, and a success forgets the object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub fn next(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(key.to_string()).or_default();
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        BASE.saturating_mul(1u32 << (n - 1).min(16)).min(MAX)
    }

    pub fn reset(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.next("a"), BASE);
        assert_eq!(b.next("a"), BASE * 2);
        b.reset("a");
        assert_eq!(b.next("a"), BASE);
        for _ in 0..40 {
            b.next("b");
        }
        assert_eq!(b.next("b"), MAX);
    }
}
