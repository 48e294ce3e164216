//! The etcd backend, for keys as upstream stores them (`/registry/pods/<ns>/<name>`).
//!
//! Every trait call maps to one etcd request (a transaction where a precondition is
//! involved), so etcd's revisions are the store's revisions and its compaction is the store's
//! compaction. Watches resume from a revision with etcd's own replay.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, GetResponse, KvClient,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
};
use futures::stream;

use crate::{
    Error, Event, EventKind, EventStream, KeyValue, ListOptions, ListResult, Result, Revision,
    Store,
};

/// How to reach etcd and lay keys out in it.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Prepended to every key, and stripped from keys read back, so several stores can share
    /// one etcd without seeing each other. Empty: keys are used as given.
    pub key_prefix: String,
    pub connect_timeout: Duration,
    /// Bound on each request other than a watch's stream of events; past it the call fails
    /// with `Error::Unavailable`.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            key_prefix: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

pub struct EtcdStore {
    client: Client,
    key_prefix: String,
    request_timeout: Duration,
    /// The newest compaction point seen so far. etcd has no call that reports it, so it is
    /// learnt from our own compactions, from watches cancelled by compaction, and by probing
    /// (see `compacted_revision`).
    compacted: Arc<AtomicI64>,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (URLs such as `http://127.0.0.1:2379`) and checks that
    /// it answers. `key_prefix` is as in [`EtcdOptions::key_prefix`].
    pub async fn connect(endpoints: &[String], key_prefix: &str) -> Result<Arc<Self>> {
        Self::connect_with(
            endpoints,
            EtcdOptions {
                key_prefix: key_prefix.to_owned(),
                ..EtcdOptions::default()
            },
        )
        .await
    }

    pub async fn connect_with(endpoints: &[String], options: EtcdOptions) -> Result<Arc<Self>> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = with_timeout(
            options.request_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await?
        .map_err(|e| Error::Unavailable(format!("connecting to etcd at {endpoints:?}: {e}")))?;
        let store = EtcdStore {
            client,
            key_prefix: options.key_prefix,
            request_timeout: options.request_timeout,
            compacted: Arc::new(AtomicI64::new(0)),
        };
        store.current_revision().await?;
        Ok(Arc::new(store))
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.key_prefix.len() + key.len());
        full.extend_from_slice(self.key_prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// Runs one request with the store's time bound, mapping its failure.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        with_timeout(self.request_timeout, request)
            .await?
            .map_err(Failure::from)
    }

    /// The range `[start, end)` holding every key under `prefix`.
    fn prefix_range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        if start.is_empty() {
            // etcd's spelling of "every key".
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&start);
        (start, end)
    }

    /// A revision-checked read that returns nothing, for revision checks and counts.
    async fn count_at(&self, prefix: &str, revision: Revision) -> Result<GetResponse, Failure> {
        let (start, end) = self.prefix_range(prefix);
        let opts = GetOptions::new()
            .with_range(end)
            .with_count_only()
            .with_revision(revision);
        self.call(self.kv().get(start, Some(opts))).await
    }

    /// Turns a failure of a read at `revision` into the trait's error, looking up the
    /// compaction point or current revision the error reports.
    async fn revision_error(&self, failure: Failure, revision: Revision) -> Error {
        match failure {
            Failure::Compacted => match self.compacted_revision().await {
                Ok(compacted) => Error::Compacted {
                    requested: revision,
                    compacted,
                },
                Err(e) => e,
            },
            Failure::FutureRevision => match self.current_revision().await {
                Ok(current) => Error::FutureRevision {
                    requested: revision,
                    current,
                },
                Err(e) => e,
            },
            Failure::Other(e) => e,
        }
    }

    /// Whether a read at `revision` is still served.
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        match self.count_at("", revision).await {
            Ok(_) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(Failure::FutureRevision) => Ok(true),
            Err(Failure::Other(e)) => Err(e),
        }
    }

    fn to_key_value(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: self.strip(kv.key()),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    fn strip(&self, key: &[u8]) -> String {
        let key = key.strip_prefix(self.key_prefix.as_bytes()).unwrap_or(key);
        String::from_utf8_lossy(key).into_owned()
    }

    /// What a transaction whose compare failed found: its `or_else` reads the key.
    fn current_from_failed(&self, resp: &TxnResponse) -> Option<KeyValue> {
        resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| self.to_key_value(kv)),
            _ => None,
        })
    }
}

/// The last key after `prefix` in byte order, as etcd's range end: the prefix with its last
/// byte below 0xff incremented and what follows dropped.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: no key is greater, so range to the end of the key space.
    vec![0]
}

async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Error::Unavailable(format!("etcd did not answer within {limit:?}")))
}

/// An etcd failure before it is turned into the trait's error, which for revision errors
/// needs a value etcd did not send.
enum Failure {
    Compacted,
    FutureRevision,
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        match e {
            E::GRpcStatus(status) => {
                let message = status.message();
                match status.code() {
                    tonic::Code::OutOfRange if message.contains("compacted") => Failure::Compacted,
                    tonic::Code::OutOfRange if message.contains("future revision") => {
                        Failure::FutureRevision
                    }
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown => {
                        Failure::Other(Error::Unavailable(format!("etcd: {message}")))
                    }
                    code => Failure::Other(Error::Internal(format!("etcd: {code:?}: {message}"))),
                }
            }
            E::TransportError(e) => Failure::Other(Error::Unavailable(format!("etcd: {e}"))),
            E::IoError(e) => Failure::Other(Error::Unavailable(format!("etcd: {e}"))),
            e => Failure::Other(Error::Internal(format!("etcd: {e}"))),
        }
    }
}

impl From<Failure> for Error {
    /// For calls where etcd has no business reporting a revision error.
    fn from(f: Failure) -> Self {
        match f {
            Failure::Compacted => Error::Internal("etcd: unexpected compaction error".into()),
            Failure::FutureRevision => {
                Error::Internal("etcd: unexpected future revision error".into())
            }
            Failure::Other(e) => e,
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Internal("etcd response without header".into()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.call(self.kv().get(self.full_key(key), None)).await?;
        Ok(resp.kvs().first().map(|kv| self.to_key_value(kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let revision = opts.revision.filter(|r| *r > 0).unwrap_or(0);
        let (mut start, end) = self.prefix_range(prefix);
        if let Some(after) = opts.start_after.as_deref().filter(|a| *a >= prefix) {
            start = self.full_key(after);
            start.push(0);
        }
        if end != [0] && start >= end {
            // Resuming past the last key: nothing is left, but the revision must still be
            // checked and reported.
            let resp = match self.count_at(prefix, revision).await {
                Ok(resp) => resp,
                Err(f) => return Err(self.revision_error(f, revision).await),
            };
            let read_at = header_revision(resp.header())?;
            return Ok(ListResult {
                items: Vec::new(),
                revision: if revision > 0 { revision } else { read_at },
                remaining: 0,
            });
        }
        let limit = i64::try_from(opts.limit).unwrap_or(i64::MAX);
        let get = GetOptions::new()
            .with_range(end)
            .with_limit(limit)
            .with_revision(revision);
        let resp = match self.call(self.kv().get(start, Some(get))).await {
            Ok(resp) => resp,
            Err(f) => return Err(self.revision_error(f, revision).await),
        };
        let read_at = header_revision(resp.header())?;
        let items: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.to_key_value(kv)).collect();
        // etcd counts the whole range regardless of the limit.
        let remaining = (resp.count() - items.len() as i64).max(0);
        Ok(ListResult {
            items,
            revision: if revision > 0 { revision } else { read_at },
            remaining,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        Ok(self.count_at(prefix, 0).await?.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value, None)]);
        let resp = self.call(self.kv().txn(txn)).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        header_revision(resp.header())
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let full = self.full_key(key);
        // A missing key has mod revision 0, so existence is compared separately: an update
        // must never create.
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(full.clone(), value, None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.call(self.kv().txn(txn)).await?;
        if resp.succeeded() {
            return header_revision(resp.header());
        }
        match self.current_from_failed(&resp) {
            None => Err(Error::NotFound(key.to_owned())),
            Some(current) => Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current: current.mod_revision,
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let full = self.full_key(key);
        let with_prev = DeleteOptions::new().with_prev_key();
        let Some(expected) = expected else {
            let resp = self.call(self.kv().delete(full, Some(with_prev))).await?;
            let removed = resp.prev_kvs().first().map(|kv| self.to_key_value(kv));
            return match removed {
                Some(removed) if resp.deleted() > 0 => {
                    Ok((header_revision(resp.header())?, removed))
                }
                _ => Err(Error::NotFound(key.to_owned())),
            };
        };
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::delete(full.clone(), Some(with_prev))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.call(self.kv().txn(txn)).await?;
        if resp.succeeded() {
            let removed = resp.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.to_key_value(kv)),
                _ => None,
            });
            let removed = removed.ok_or_else(|| Error::NotFound(key.to_owned()))?;
            return Ok((header_revision(resp.header())?, removed));
        }
        match self.current_from_failed(&resp) {
            None => Err(Error::NotFound(key.to_owned())),
            Some(current) => Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current: current.mod_revision,
            }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        // etcd reads a start revision of 0 as "from now"; the trait means "from the start".
        let after = after.max(0);
        // etcd would accept the watch and cancel it a moment later; a read at the same
        // revision fails the same way (both need `after` at or past the compaction point), so
        // it gives the caller the error now. Matches the embedded store, which refuses
        // exactly the same revisions.
        let check_at = after.max(1);
        match self.count_at(prefix, check_at).await {
            Ok(_) | Err(Failure::FutureRevision) => {}
            Err(Failure::Compacted) => {
                return Err(self.revision_error(Failure::Compacted, after).await)
            }
            Err(Failure::Other(e)) => return Err(e),
        }
        let (start, end) = self.prefix_range(prefix);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut watch_client = self.client.watch_client();
        let mut stream = self.call(watch_client.watch(start, Some(opts))).await?;
        // The first response confirms the watch exists; waiting for it makes a refused watch
        // fail here rather than in the stream.
        let created = self.call(stream.message()).await?;
        let mut state = WatchState {
            stream,
            buffered: VecDeque::new(),
            key_prefix: self.key_prefix.clone(),
            compacted: self.compacted.clone(),
            last: after,
            done: false,
        };
        match created {
            Some(resp) => state.take(resp)?,
            None => return Err(Error::Unavailable("etcd closed the watch".into())),
        }
        Ok(Box::pin(stream::unfold(state, |mut state| async move {
            if state.done {
                return None;
            }
            let item = state.next().await;
            state.done = item.is_err();
            Some((item, state))
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self.count_at("", 0).await?;
        header_revision(resp.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.call(self.kv().compact(revision, None)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            // Already compacted at or past it: there is nothing left to do.
            Err(Failure::Compacted) => Ok(()),
            Err(f) => Err(self.revision_error(f, revision).await),
        }
    }

    /// Found by binary search over reads at old revisions (a read fails exactly below the
    /// compaction point), starting from the last point known, so it costs two requests when
    /// nothing was compacted since and O(log revisions) when something was.
    async fn compacted_revision(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::Acquire);
        let current = self.current_revision().await?;
        let mut low = known.max(1);
        if low >= current || self.readable_at(low).await? {
            return Ok(known);
        }
        // Invariant: `low` is compacted away, `high` is readable.
        let mut high = current;
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.readable_at(mid).await? {
                high = mid;
            } else {
                low = mid;
            }
        }
        self.compacted.fetch_max(high, Ordering::AcqRel);
        Ok(high)
    }
}

struct WatchState {
    /// Kept whole: dropping its request half would make etcd end the watch.
    stream: WatchStream,
    buffered: VecDeque<Event>,
    key_prefix: String,
    compacted: Arc<AtomicI64>,
    last: Revision,
    done: bool,
}

impl WatchState {
    async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.last = event.revision;
                return Ok(event);
            }
            match self.stream.message().await {
                Ok(Some(resp)) => self.take(resp)?,
                Ok(None) => return Err(Error::Unavailable("etcd closed the watch".into())),
                Err(e) => return Err(Failure::from(e).into()),
            }
        }
    }

    /// Queues a response's events, or turns a cancellation into the error that ends the
    /// stream.
    fn take(&mut self, resp: etcd_client::WatchResponse) -> Result<()> {
        if resp.canceled() {
            let compacted = resp.compact_revision();
            if compacted > 0 {
                self.compacted.fetch_max(compacted, Ordering::AcqRel);
                return Err(Error::Compacted {
                    requested: self.last,
                    compacted,
                });
            }
            return Err(Error::Unavailable(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            )));
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key = kv.key();
            let key = key.strip_prefix(self.key_prefix.as_bytes()).unwrap_or(key);
            let key = String::from_utf8_lossy(key).into_owned();
            let prev = event.prev_kv();
            let prev_value = prev.map(|p| p.value().to_vec());
            // A delete leaves version 0; this reads the kind without `event_type`, which
            // panics on a kind it does not know.
            let event = if kv.version() == 0 {
                Event {
                    kind: EventKind::Delete,
                    key,
                    value: prev_value.clone().unwrap_or_default(),
                    prev_value,
                    revision: kv.mod_revision(),
                    create_revision: prev.map_or(0, |p| p.create_revision()),
                }
            } else {
                Event {
                    kind: EventKind::Put,
                    key,
                    value: kv.value().to_vec(),
                    prev_value,
                    revision: kv.mod_revision(),
                    create_revision: kv.create_revision(),
                }
            };
            self.buffered.push_back(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
