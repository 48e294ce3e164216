//! A watch feeding one channel: every change to one kind of object arrives as a `Change`,
//! with the whole list at start and after every relist, so a single loop can own its cache.

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;

/// A change to one kind of object.
pub enum Change<K> {
    Apply(Box<K>),
    Delete(Box<K>),
    /// A complete list (at start and after the watch had to relist): anything the loop
    /// holds that is not in it was deleted meanwhile.
    Relist(Vec<K>),
}

/// Watches `api` (with back-off on errors) and sends every change, wrapped by `wrap`, until
/// the receiver goes.
pub fn spawn<K, T>(
    api: Api<K>,
    config: watcher::Config,
    tx: UnboundedSender<T>,
    wrap: fn(Change<K>) -> T,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut listing: Vec<K> = Vec::new();
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(Event::InitApply(obj)) => {
                    listing.push(obj);
                    continue;
                }
                Ok(Event::InitDone) => Change::Relist(std::mem::take(&mut listing)),
                Ok(Event::Apply(obj)) => Change::Apply(Box::new(obj)),
                Ok(Event::Delete(obj)) => Change::Delete(Box::new(obj)),
                Err(e) => {
                    tracing::warn!("watch: {e}");
                    continue;
                }
            };
            if tx.send(wrap(change)).is_err() {
                return;
            }
        }
    });
}
