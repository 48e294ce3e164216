//! The embedded backend: an MVCC store kept in one append-only log file.
//!
//! Every write is appended to `<dir>/store.log` and synced before it is acknowledged, with
//! concurrent writes sharing one sync (see [`writer`]). The whole store lives in memory as an
//! index of each key's history (see [`index`]); the log is read only on open, to rebuild it.
//! Compaction drops old history from the index and rewrites the log, so the file stays
//! proportional to what is retained.
//!
//! Only one store may have a data dir open at a time; a second `open` fails with
//! `Error::Unavailable`.

mod index;
mod log;
mod record;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use self::index::Index;
use self::watch::Watchers;
use self::writer::{Outcome, WriteOp, WriteRequest};
use crate::{Error, EventStream, KeyValue, ListOptions, ListResult, Result, Revision, Store};

/// Tuning for [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Live events buffered per watcher before it counts as lagging and has to catch up from
    /// history (see the `watch` module).
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { watch_buffer: 1024 }
    }
}

pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::UnboundedSender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    log_path: PathBuf,
}

/// State shared by the store, its writer thread and its watch streams.
struct Shared {
    index: RwLock<Index>,
    watchers: Mutex<Watchers>,
    watch_buffer: usize,
}

impl Shared {
    // Nothing panics while holding these locks, so a poisoned one still guards sound data.
    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating it if needed. Replays the log, so this blocks for as
    /// long as reading the file takes; async callers with a large store may want
    /// `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Arc<Self>> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Arc<Self>> {
        let (log, index) = log::Log::open(dir.as_ref())?;
        let log_path = log.path().to_owned();
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            watchers: Mutex::new(Watchers::default()),
            watch_buffer: options.watch_buffer,
        });
        let (requests, queue) = mpsc::unbounded_channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || writer::run(writer_shared, log, queue))
            .map_err(|e| Error::Internal(format!("starting the store writer: {e}")))?;
        Ok(Arc::new(EmbeddedStore {
            shared,
            requests: Some(requests),
            writer: Some(writer),
            log_path,
        }))
    }

    /// The log file, for tools and tests that look at its size.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(WriteRequest { op, reply })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Drop for EmbeddedStore {
    /// Waits for the writer to finish, so that the file and the dir lock are released when
    /// the store is gone and it can be opened again at once.
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable("embedded store writer has stopped".into())
}

fn unexpected(outcome: Outcome) -> Error {
    let what = match outcome {
        Outcome::Written(_) => "a write",
        Outcome::Deleted(..) => "a delete",
        Outcome::Compacted => "a compaction",
    };
    Error::Internal(format!("embedded store writer answered with {what}"))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.read_index().get(key))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.shared.read_index().list(prefix, &opts)
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        Ok(self.shared.read_index().count(prefix))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        match self.write(op).await? {
            Outcome::Written(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        match self.write(op).await? {
            Outcome::Written(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected,
        };
        match self.write(op).await? {
            Outcome::Deleted(revision, removed) => Ok((revision, removed)),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        watch::watch(self.shared.clone(), prefix, after.max(0))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.read_index().current())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(WriteOp::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.read_index().compacted())
    }
}
