//! Expectations, as upstream's ControllerExpectations: after a controller asks for N creations
//! or deletions it waits to see them in its watch before acting on that owner again, so that a
//! stale cache never makes it create twice. Expectations older than five minutes are dropped
//! (a lost event must not wedge an owner forever).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Pending {
    adds: i64,
    dels: i64,
    since: Instant,
}

#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Records that `adds` creations and `dels` deletions were asked for on `key`.
    pub fn expect(&self, key: &str, adds: i64, dels: i64) {
        self.pending.lock().unwrap().insert(
            key.to_string(),
            Pending {
                adds,
                dels,
                since: Instant::now(),
            },
        );
    }

    /// A creation was observed (or one asked for failed and will never be observed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(p) = self.pending.lock().unwrap().get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A deletion was observed (or failed).
    pub fn deletion_observed(&self, key: &str) {
        if let Some(p) = self.pending.lock().unwrap().get_mut(key) {
            p.dels -= 1;
        }
    }

    /// Whether the owner may be synced: nothing outstanding, or the expectations expired.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.pending.lock().unwrap().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.dels <= 0) || p.since.elapsed() > TTL,
        }
    }

    pub fn forget(&self, key: &str) {
        self.pending.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_everything_is_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect("ns/a", 2, 1);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a");
        assert!(e.satisfied("ns/a"));
    }
}
