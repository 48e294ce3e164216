//! Watchers of the embedded store.
//!
//! A watch first replays history from the index, then receives live changes over a bounded
//! channel that the writer fills without ever waiting: when a watcher's channel is full the
//! writer drops it and marks it lagged. The stream then drains what is buffered and catches up
//! from the index's history, as etcd does for its slow ("unsynced") watchers. Only if that
//! history has been compacted meanwhile does the watcher see `Error::Compacted`, after which
//! the stream ends; the caller re-lists and watches again, as after any 410 Gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::stream;
use tokio::sync::mpsc;

use super::index::Version;
use super::Shared;
use crate::{Error, Event, EventKind, EventStream, Result, Revision};

/// One committed write, as watchers receive it.
pub(super) struct Change {
    pub key: Arc<str>,
    pub version: Version,
    /// The live version this write replaced, if any.
    pub prev: Option<Version>,
}

impl Change {
    fn event(&self) -> Event {
        let prev_value = self
            .prev
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .map(|v| v.to_vec());
        let (kind, value) = match &self.version.value {
            Some(value) => (EventKind::Put, value.to_vec()),
            None => (EventKind::Delete, prev_value.clone().unwrap_or_default()),
        };
        Event {
            kind,
            key: self.key.to_string(),
            value,
            prev_value,
            revision: self.version.mod_revision,
            create_revision: self.version.create_revision,
        }
    }
}

struct Watcher {
    prefix: String,
    events: mpsc::Sender<Event>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
pub(super) struct Watchers {
    list: Vec<Watcher>,
    closed: bool,
}

impl Watchers {
    /// Hands committed changes to every interested watcher, never blocking.
    pub fn dispatch(&mut self, changes: &[Change]) {
        self.list.retain(|w| {
            if w.events.is_closed() {
                return false;
            }
            for change in changes.iter().filter(|c| c.key.starts_with(&w.prefix)) {
                match w.events.try_send(change.event()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.lagged.store(true, Ordering::Release);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// Ends every watch: their streams report the store closed.
    pub fn close(&mut self) {
        self.closed = true;
        self.list.clear();
    }
}

/// What a new or catching-up watcher starts from.
pub(super) struct Subscription {
    replay: Vec<Event>,
    events: mpsc::Receiver<Event>,
    lagged: Arc<AtomicBool>,
}

impl Shared {
    /// Replays history after `after` and registers for live changes, atomically with respect
    /// to commits: the writer applies a batch and dispatches it under the index write lock,
    /// and this runs under the read lock, so each change lands in exactly one of the two.
    fn subscribe(&self, prefix: &str, after: Revision) -> Result<Subscription> {
        let index = self.read_index();
        let replay = index.events_after(prefix, after)?;
        let (tx, rx) = mpsc::channel(self.watch_buffer.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut watchers = self.watchers();
        if watchers.closed {
            return Err(closed());
        }
        watchers.list.push(Watcher {
            prefix: prefix.to_owned(),
            events: tx,
            lagged: lagged.clone(),
        });
        Ok(Subscription {
            replay,
            events: rx,
            lagged,
        })
    }
}

pub(super) fn watch(shared: Arc<Shared>, prefix: &str, after: Revision) -> Result<EventStream> {
    let sub = shared.subscribe(prefix, after)?;
    let state = WatchState {
        shared,
        prefix: prefix.to_owned(),
        replay: sub.replay.into(),
        events: sub.events,
        lagged: sub.lagged,
        last: after,
        done: false,
    };
    Ok(Box::pin(stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let item = state.next().await;
        state.done = item.is_err();
        Some((item, state))
    })))
}

struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    replay: VecDeque<Event>,
    events: mpsc::Receiver<Event>,
    lagged: Arc<AtomicBool>,
    /// The revision of the last event delivered: where catching up resumes.
    last: Revision,
    done: bool,
}

impl WatchState {
    async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.replay.pop_front() {
                self.last = event.revision;
                return Ok(event);
            }
            match self.events.recv().await {
                Some(event) if event.revision > self.last => {
                    self.last = event.revision;
                    return Ok(event);
                }
                Some(_) => {}
                None if self.lagged.load(Ordering::Acquire) => {
                    let sub = self.shared.subscribe(&self.prefix, self.last)?;
                    self.replay = sub.replay.into();
                    self.events = sub.events;
                    self.lagged = sub.lagged;
                }
                None => return Err(closed()),
            }
        }
    }
}

fn closed() -> Error {
    Error::Unavailable("embedded store closed".into())
}
