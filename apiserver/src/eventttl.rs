//! Events expire, as upstream's `--event-ttl` makes them do: there an Event's etcd lease runs
//! from its last write. Here a sweeper remembers when it first saw each revision of each
//! Event and removes those unchanged for longer than the TTL, which works the same on both
//! backends. After a restart the clocks start again, so an Event may outlive its TTL by the
//! server's downtime, never the other way round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::meta;
use crate::registry::WriteOptions;
use crate::server::App;

/// When each Event (by storage key) was first seen at its current revision.
#[derive(Default)]
pub struct Sweeper {
    seen: HashMap<String, (i64, Instant)>,
}

impl Sweeper {
    /// Deletes the Events unchanged for longer than `ttl` as of `now`; returns how many.
    pub async fn sweep(&mut self, app: &App, ttl: Duration, now: Instant) -> usize {
        let Some(res) = app.table.lookup("", "v1", "events") else {
            return 0;
        };
        let Some(cache) = res
            .key_prefix(None)
            .and_then(|p| app.registry.cache.cache(&p))
        else {
            return 0;
        };
        let current = cache.list(cache.prefix());
        let mut seen = HashMap::with_capacity(current.len());
        let mut removed = 0;
        for obj in current {
            let since = match self.seen.get(&obj.key) {
                Some((rev, t)) if *rev == obj.revision => *t,
                _ => now,
            };
            if now.saturating_duration_since(since) > ttl {
                // The precondition keeps an Event written since the look from being removed.
                let options =
                    json!({"preconditions": {"resourceVersion": obj.revision.to_string()}});
                let ns = meta::namespace(&obj.value).to_string();
                let name = meta::name(&obj.value).to_string();
                if app
                    .registry
                    .delete(&res, Some(&ns), &name, &options, &WriteOptions::default())
                    .await
                    .is_ok()
                {
                    removed += 1;
                    continue;
                }
            }
            seen.insert(obj.key.clone(), (obj.revision, since));
        }
        self.seen = seen;
        removed
    }
}

pub async fn run(app: Arc<App>, ttl: Duration) {
    let mut sweeper = Sweeper::default();
    let mut tick =
        tokio::time::interval(Duration::from_secs(60).min(ttl.max(Duration::from_secs(1))));
    loop {
        tick.tick().await;
        let n = sweeper.sweep(&app, ttl, Instant::now()).await;
        if n > 0 {
            tracing::debug!("expired {n} events");
        }
    }
}
