//! Storage for the apiserver: a revisioned key-value store with watch, behind one trait.
//!
//! Both backends share etcd's model: every write gets the next cluster-wide revision, a key
//! remembers the revision it was created at and last modified at, reads can be served at an
//! older revision until it is compacted away, and a watch replays every change after a given
//! revision, in order.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub mod embedded;
pub mod etcd;

/// A cluster-wide revision. Revisions start at 1 and grow by one per write.
pub type Revision = i64;

/// One stored key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// How a list is bounded.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (used to resume a paginated list).
    pub start_after: Option<String>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// Read at this revision instead of the current one. Fails with `Compacted` if it is older
    /// than the compaction point and `FutureRevision` if it has not happened yet.
    pub revision: Option<Revision>,
}

/// The result of a list.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// How many keys under the prefix (at that revision) come after the last returned item.
    pub remaining: i64,
}

impl ListResult {
    pub fn more(&self) -> bool {
        self.remaining > 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    /// The new value for a put; the last value before deletion for a delete.
    pub value: Vec<u8>,
    /// The value before this change, if the key existed.
    pub prev_value: Option<Vec<u8>>,
    /// The revision of this change.
    pub revision: Revision,
    /// The revision that created the key (for a delete: of the deleted incarnation).
    pub create_revision: Revision,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key's current mod revision differs from the expected one.
    #[error("key {key} was modified (expected revision {expected}, current {current})")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is in the future (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage every apiserver resource is kept in.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of a key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Number of keys starting with `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Creates a key that must not exist. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Replaces a key whose mod revision must equal `expected`. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes a key, if `expected` is given only when its mod revision equals it.
    /// Returns the revision of the delete and the value that was removed.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in revision
    /// order, then every later change as it happens. Fails with `Compacted` when changes after
    /// `after` are no longer kept.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets history at and before `revision` (the latest version of every live key stays).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest revision that has been compacted away (0 if none).
    async fn compacted_revision(&self) -> Result<Revision>;
}
