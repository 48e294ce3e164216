//! The in-memory MVCC index: every key's retained history, and which key each revision since
//! the compaction point changed.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::{Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision};

/// One version of a key. A tombstone (`value: None`) marks a delete and keeps the create
/// revision of the incarnation it ended, which the delete event reports.
#[derive(Clone, Debug)]
pub(super) struct Version {
    pub mod_revision: Revision,
    pub create_revision: Revision,
    pub value: Option<Arc<[u8]>>,
}

/// A key's versions, oldest first.
type History = Vec<Version>;

#[derive(Default)]
pub(super) struct Index {
    keys: BTreeMap<Arc<str>, History>,
    /// The key written at each revision after `compacted`, in revision order. It lets a watch
    /// replay from a revision in time proportional to the changes since, not to the key space.
    changes: VecDeque<(Revision, Arc<str>)>,
    current: Revision,
    compacted: Revision,
}

impl Index {
    pub fn current(&self) -> Revision {
        self.current
    }

    pub fn compacted(&self) -> Revision {
        self.compacted
    }

    /// The live version of a key.
    pub fn latest(&self, key: &str) -> Option<&Version> {
        self.keys
            .get(key)
            .and_then(|h| h.last())
            .filter(|v| v.value.is_some())
    }

    /// The revision of the key's newest version, live or not.
    pub fn last_revision(&self, key: &str) -> Option<Revision> {
        self.keys
            .get(key)
            .and_then(|h| h.last())
            .map(|v| v.mod_revision)
    }

    /// The revision of the newest change kept as an event.
    pub fn last_change(&self) -> Revision {
        self.changes.back().map_or(self.compacted, |(r, _)| *r)
    }

    /// The key's map entry, so that callers storing it share one allocation of the name.
    pub fn key_name(&self, key: &str) -> Option<Arc<str>> {
        self.keys.get_key_value(key).map(|(k, _)| k.clone())
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.latest(key).and_then(|v| key_value(key, v))
    }

    pub fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let revision = self.read_revision(opts.revision)?;
        let lower = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut items = Vec::new();
        let mut remaining = 0;
        for (key, history) in self.keys.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let Some(version) = version_at(history, revision) else {
                continue;
            };
            if version.value.is_none() {
                continue;
            }
            if opts.limit == 0 || items.len() < opts.limit {
                items.extend(key_value(key, version));
            } else {
                remaining += 1;
            }
        }
        Ok(ListResult {
            items,
            revision,
            remaining,
        })
    }

    pub fn count(&self, prefix: &str) -> i64 {
        self.keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, h)| h.last().is_some_and(|v| v.value.is_some()))
            .count() as i64
    }

    /// The revision a read asked for, checked against what is kept. Zero or less means now,
    /// as in etcd.
    fn read_revision(&self, requested: Option<Revision>) -> Result<Revision> {
        match requested {
            Some(r) if r > 0 => {
                if r < self.compacted {
                    Err(Error::Compacted {
                        requested: r,
                        compacted: self.compacted,
                    })
                } else if r > self.current {
                    Err(Error::FutureRevision {
                        requested: r,
                        current: self.current,
                    })
                } else {
                    Ok(r)
                }
            }
            _ => Ok(self.current),
        }
    }

    /// Records one write. The caller hands revisions out in order.
    pub fn apply(&mut self, key: Arc<str>, version: Version) {
        let revision = version.mod_revision;
        self.current = self.current.max(revision);
        if revision > self.compacted {
            self.changes.push_back((revision, key.clone()));
        }
        self.keys.entry(key).or_default().push(version);
    }

    /// Raises the current revision without a write, for the head revision a rewritten log
    /// carries.
    pub fn advance_to(&mut self, revision: Revision) {
        self.current = self.current.max(revision);
    }

    /// Drops history at and before `revision`, keeping each live key's latest version there.
    /// Only keys changed since the last compaction can have history to drop, and `changes`
    /// names exactly those.
    pub fn compact(&mut self, revision: Revision) {
        if revision <= self.compacted {
            return;
        }
        let mut touched = Vec::new();
        while let Some((r, _)) = self.changes.front() {
            if *r > revision {
                break;
            }
            if let Some((_, key)) = self.changes.pop_front() {
                touched.push(key);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            let Some(history) = self.keys.get_mut(&key) else {
                continue;
            };
            let kept_from = history.partition_point(|v| v.mod_revision <= revision);
            let drop_to = match kept_from.checked_sub(1).map(|i| &history[i]) {
                // The newest version at the compaction point stays, unless it is a delete.
                Some(v) if v.value.is_some() => kept_from - 1,
                _ => kept_from,
            };
            history.drain(..drop_to);
            if history.is_empty() {
                self.keys.remove(&key);
            }
        }
        self.compacted = revision;
    }

    /// Every change under `prefix` after `after`, in revision order.
    pub fn events_after(&self, prefix: &str, after: Revision) -> Result<Vec<Event>> {
        if after < self.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        let start = self.changes.partition_point(|(r, _)| *r <= after);
        Ok(self
            .changes
            .range(start..)
            .filter(|(_, key)| key.starts_with(prefix))
            .filter_map(|(r, key)| self.event_at(key, *r))
            .collect())
    }

    fn event_at(&self, key: &str, revision: Revision) -> Option<Event> {
        let history = self.keys.get(key)?;
        let i = history
            .binary_search_by_key(&revision, |v| v.mod_revision)
            .ok()?;
        let version = &history[i];
        let prev = i
            .checked_sub(1)
            .and_then(|p| history[p].value.as_ref())
            .map(|v| v.to_vec());
        Some(match &version.value {
            Some(value) => Event {
                kind: EventKind::Put,
                key: key.to_owned(),
                value: value.to_vec(),
                prev_value: prev,
                revision,
                create_revision: version.create_revision,
            },
            None => Event {
                kind: EventKind::Delete,
                key: key.to_owned(),
                value: prev.clone().unwrap_or_default(),
                prev_value: prev,
                revision,
                create_revision: version.create_revision,
            },
        })
    }

    /// Calls `f` with every version a rewritten log must hold, in an order replay accepts:
    /// first each live key's version at or before the compaction point, then every later
    /// change in revision order.
    pub fn for_each_retained(&self, mut f: impl FnMut(&str, &Version) -> Result<()>) -> Result<()> {
        for (key, history) in &self.keys {
            if let Some(first) = history.first() {
                if first.mod_revision <= self.compacted {
                    f(key, first)?;
                }
            }
        }
        for (revision, key) in &self.changes {
            let version = self.keys.get(key).and_then(|h| {
                h.binary_search_by_key(revision, |v| v.mod_revision)
                    .ok()
                    .map(|i| &h[i])
            });
            if let Some(version) = version {
                f(key, version)?;
            }
        }
        Ok(())
    }
}

fn version_at(history: &History, revision: Revision) -> Option<&Version> {
    // Reads at the current revision are the common case; skip the search for them.
    match history.last() {
        Some(last) if last.mod_revision <= revision => Some(last),
        _ => {
            let n = history.partition_point(|v| v.mod_revision <= revision);
            n.checked_sub(1).map(|i| &history[i])
        }
    }
}

fn key_value(key: &str, version: &Version) -> Option<KeyValue> {
    version.value.as_ref().map(|value| KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: version.create_revision,
        mod_revision: version.mod_revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(index: &mut Index, key: &str, rev: Revision, create: Revision, value: &str) {
        index.apply(
            key.into(),
            Version {
                mod_revision: rev,
                create_revision: create,
                value: Some(value.as_bytes().into()),
            },
        );
    }

    fn delete(index: &mut Index, key: &str, rev: Revision, create: Revision) {
        index.apply(
            key.into(),
            Version {
                mod_revision: rev,
                create_revision: create,
                value: None,
            },
        );
    }

    #[test]
    fn compaction_keeps_latest_live_versions_only() {
        let mut index = Index::default();
        put(&mut index, "a", 1, 1, "a1");
        put(&mut index, "b", 2, 2, "b1");
        put(&mut index, "a", 3, 1, "a2");
        delete(&mut index, "b", 4, 2);
        put(&mut index, "a", 5, 1, "a3");
        index.compact(4);
        assert_eq!(index.keys.len(), 1);
        assert_eq!(index.keys["a"].len(), 2);
        assert_eq!(index.changes.len(), 1);
        let at4 = index
            .list(
                "",
                &ListOptions {
                    revision: Some(4),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(at4.items.len(), 1);
        assert_eq!(at4.items[0].value, b"a2");
        let events = index.events_after("", 4).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].prev_value.as_deref(), Some(&b"a2"[..]));
        assert!(matches!(
            index.events_after("", 3),
            Err(Error::Compacted {
                requested: 3,
                compacted: 4
            })
        ));
    }
}
