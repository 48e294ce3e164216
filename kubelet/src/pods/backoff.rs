//! Crash-loop back-off: how long a container that exited waits before the next start, per
//! pod and container, as upstream's kubelet (10s doubling to 5 minutes, forgotten after a
//! container ran cleanly for 10 minutes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts over at the initial delay.
const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Backoff {
    /// Per `<pod uid>/<container>`: the exit (finish time, ns) last seen, the delay that exit
    /// waits, and the delay the next exit will wait.
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    finished_at: i64,
    this: Duration,
    next: Duration,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long after its exit at `finished_at` a container that started at `started_at`
    /// (both ns) waits before its next start. As upstream, the first exit restarts at once
    /// and each later one waits twice as long as the one before.
    pub fn delay_for(&self, key: &str, started_at: i64, finished_at: i64) -> Duration {
        let ran = Duration::from_nanos(u64::try_from(finished_at - started_at).unwrap_or(0));
        let mut entries = self.lock();
        match entries.get(key).copied() {
            Some(e) if e.finished_at == finished_at => e.this,
            Some(e) if ran < RESET_AFTER => {
                let entry = Entry {
                    finished_at,
                    this: e.next,
                    next: (e.next * 2).min(MAX),
                };
                entries.insert(key.to_string(), entry);
                entry.this
            }
            _ => {
                entries.insert(
                    key.to_string(),
                    Entry {
                        finished_at,
                        this: Duration::ZERO,
                        next: INITIAL,
                    },
                );
                Duration::ZERO
            }
        }
    }

    /// Forgets everything about a pod.
    pub fn forget_pod(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.lock().retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn doubles_per_exit_and_caps() {
        let b = Backoff::default();
        assert_eq!(
            b.delay_for("p/c", 0, S),
            Duration::ZERO,
            "the first exit restarts at once"
        );
        assert_eq!(b.delay_for("p/c", 2 * S, 3 * S), INITIAL);
        assert_eq!(
            b.delay_for("p/c", 2 * S, 3 * S),
            INITIAL,
            "same exit, same delay"
        );
        assert_eq!(b.delay_for("p/c", 20 * S, 21 * S), Duration::from_secs(20));
        let mut t = 100 * S;
        for _ in 0..10 {
            t += S;
            b.delay_for("p/c", t - S / 2, t);
        }
        assert_eq!(b.delay_for("p/c", t, t + S), MAX);
    }

    #[test]
    fn a_long_run_resets_it() {
        let b = Backoff::default();
        b.delay_for("p/c", 0, S);
        b.delay_for("p/c", 2 * S, 3 * S);
        assert_eq!(b.delay_for("p/c", 10 * S, 700 * S), Duration::ZERO);
        assert_eq!(b.delay_for("p/c", 701 * S, 702 * S), INITIAL);
        b.forget_pod("p");
        assert_eq!(b.delay_for("p/c", 0, 1000 * S), Duration::ZERO);
    }
}
