//! The single writer: it owns the log file, orders every write, and commits them in groups.
//!
//! Requests queue on a channel. The writer takes all that are waiting, checks each against the
//! index plus the batch's own earlier writes, appends their records in one write, syncs once,
//! and only then applies them to the index, wakes watchers and answers. Concurrent writers
//! thus share one fsync, the way etcd's raft log batches proposals, and nothing is readable
//! before it is durable.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::index::Version;
use super::log::Log;
use super::record;
use super::watch::Change;
use super::Shared;
use crate::{Error, KeyValue, Result, Revision};

/// Bounds on what is committed together, so one sync never waits on an unbounded amount of
/// encoding and writing, nor holds an unbounded buffer.
const MAX_BATCH: usize = 4096;
const MAX_BATCH_BYTES: usize = 16 << 20;

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

pub(super) enum Outcome {
    Written(Revision),
    Deleted(Revision, KeyValue),
    Compacted,
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

pub(super) fn run(
    shared: Arc<Shared>,
    mut log: Log,
    mut requests: mpsc::UnboundedReceiver<WriteRequest>,
) {
    let _close = CloseWatchersOnExit(shared.clone());
    let mut batch = Vec::new();
    while let Some(first) = requests.blocking_recv() {
        let mut bytes = first.op.size();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match requests.try_recv() {
                Ok(request) => {
                    bytes += request.op.size();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let mut group = Group::default();
        for request in batch.drain(..) {
            match request.op {
                WriteOp::Compact { revision } => {
                    // Compaction must see every write queued before it.
                    std::mem::take(&mut group).commit(&shared, &mut log);
                    let result = compact(&shared, &mut log, revision).map(|()| Outcome::Compacted);
                    let _ = request.reply.send(result);
                }
                op => group.stage(&shared, &log, op, request.reply),
            }
        }
        group.commit(&shared, &mut log);
    }
}

/// Ends every watch when the writer stops, however it stops, so no stream waits forever for
/// changes that cannot come.
struct CloseWatchersOnExit(Arc<Shared>);

impl Drop for CloseWatchersOnExit {
    fn drop(&mut self) {
        self.0.watchers().close();
    }
}

impl WriteOp {
    /// Roughly what the request adds to the group's write.
    fn size(&self) -> usize {
        match self {
            WriteOp::Create { key, value } | WriteOp::Update { key, value, .. } => {
                key.len() + value.len()
            }
            WriteOp::Delete { key, .. } => key.len(),
            WriteOp::Compact { .. } => 0,
        }
    }
}

/// Writes checked and encoded, waiting for their shared sync.
#[derive(Default)]
struct Group {
    records: Vec<u8>,
    changes: Vec<Change>,
    /// Keys this group writes, with their state after its writes so far (`None`: deleted),
    /// so later requests in the group are checked against earlier ones.
    pending: HashMap<Arc<str>, Option<Version>>,
    /// Answers in request order; `Ok` ones hold until the sync succeeds.
    replies: Vec<(oneshot::Sender<Result<Outcome>>, Result<Outcome>)>,
}

impl Group {
    fn stage(
        &mut self,
        shared: &Shared,
        log: &Log,
        op: WriteOp,
        reply: oneshot::Sender<Result<Outcome>>,
    ) {
        let outcome = match log.broken() {
            Some(e) => Err(e),
            None => self.check_and_encode(shared, op),
        };
        self.replies.push((reply, outcome));
    }

    fn check_and_encode(&mut self, shared: &Shared, op: WriteOp) -> Result<Outcome> {
        let index = shared.read_index();
        let revision = index.current() + self.changes.len() as Revision + 1;
        let (key, value, expected, create) = match op {
            WriteOp::Create { key, value } => (key, Some(value), None, true),
            WriteOp::Update {
                key,
                value,
                expected,
            } => (key, Some(value), Some(expected), false),
            WriteOp::Delete { key, expected } => (key, None, expected, false),
            WriteOp::Compact { .. } => {
                return Err(Error::Internal("compaction staged as a write".into()))
            }
        };
        if key.is_empty() {
            return Err(Error::Internal("key must not be empty".into()));
        }
        let (name, current) = match self.pending.get_key_value(key.as_str()) {
            Some((name, state)) => (name.clone(), state.clone()),
            None => (
                index
                    .key_name(&key)
                    .unwrap_or_else(|| Arc::from(key.as_str())),
                index.latest(&key).cloned(),
            ),
        };
        drop(index);

        if create {
            if current.is_some() {
                return Err(Error::AlreadyExists(key));
            }
        } else {
            let Some(current) = &current else {
                return Err(Error::NotFound(key));
            };
            if let Some(expected) = expected {
                if current.mod_revision != expected {
                    return Err(Error::Conflict {
                        key,
                        expected,
                        current: current.mod_revision,
                    });
                }
            }
        }
        let create_revision = current.as_ref().map_or(revision, |c| c.create_revision);

        let (version, outcome) = match value {
            Some(value) => {
                record::encode_put(&mut self.records, revision, create_revision, &key, &value)?;
                let version = Version {
                    mod_revision: revision,
                    create_revision,
                    value: Some(value.into()),
                };
                (version, Outcome::Written(revision))
            }
            None => {
                record::encode_delete(&mut self.records, revision, &key)?;
                let removed = current.as_ref().and_then(|c| {
                    c.value.as_ref().map(|v| KeyValue {
                        key: key.clone(),
                        value: v.to_vec(),
                        create_revision: c.create_revision,
                        mod_revision: c.mod_revision,
                    })
                });
                let removed = removed.ok_or_else(|| Error::NotFound(key.clone()))?;
                let version = Version {
                    mod_revision: revision,
                    create_revision,
                    value: None,
                };
                (version, Outcome::Deleted(revision, removed))
            }
        };
        let after = version.value.is_some().then(|| version.clone());
        self.pending.insert(name.clone(), after);
        self.changes.push(Change {
            key: name,
            version,
            prev: current,
        });
        Ok(outcome)
    }

    fn commit(self, shared: &Shared, log: &mut Log) {
        let Group {
            records,
            changes,
            replies,
            ..
        } = self;
        let written = if changes.is_empty() {
            Ok(())
        } else {
            log.append(&records)
        };
        if written.is_ok() && !changes.is_empty() {
            let mut index = shared.write_index();
            for change in &changes {
                index.apply(change.key.clone(), change.version.clone());
            }
            // Still under the index lock, so a watch being set up sees each change either in
            // its replay or live, never both or neither.
            shared.watchers().dispatch(&changes);
        }
        for (reply, outcome) in replies {
            let outcome = match (&written, outcome) {
                (Err(e), Ok(_)) => Err(e.clone()),
                (_, outcome) => outcome,
            };
            // The caller may have gone away; the write stands regardless, as in etcd.
            let _ = reply.send(outcome);
        }
    }
}

fn compact(shared: &Shared, log: &mut Log, revision: Revision) -> Result<()> {
    if let Some(e) = log.broken() {
        return Err(e);
    }
    {
        let index = shared.read_index();
        if revision > index.current() {
            return Err(Error::FutureRevision {
                requested: revision,
                current: index.current(),
            });
        }
        if revision <= index.compacted() {
            return Ok(());
        }
    }
    shared.write_index().compact(revision);
    // Readers may proceed while the file is rewritten; writes wait in the queue, since this
    // thread is the only one that changes the index.
    let index = shared.read_index();
    // If the rewrite fails the old file still holds everything, so a restart merely brings
    // back history that was compacted in memory.
    log.rewrite(&index)
}
