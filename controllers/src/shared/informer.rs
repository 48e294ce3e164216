//! A watch whose cache other code reads (a lister, in upstream's terms) and whose changes,
//! deletions included, are mapped to the objects a controller should reconcile.

use std::fmt::Debug;

use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{
    applier, trigger_self, Action, Config as ControllerConfig, ReconcileRequest,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::shared::retry::ReconcileError;

/// Starts watching `api` into a store and returns the store with a stream of the objects
/// `map` says each change concerns (feed it to `Controller::reconcile_on`). The store is
/// written before `map` runs, so a reconcile that the mapping triggers sees the change.
/// The watch ends when the receiver is dropped.
pub fn watch_and_map<K, T, F, I>(
    api: Api<K>,
    config: watcher::Config,
    mut map: F,
) -> (Store<K>, UnboundedReceiver<ObjectRef<T>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Resource<DynamicType = ()> + 'static,
    F: FnMut(&K) -> I + Send + 'static,
    I: IntoIterator<Item = ObjectRef<T>>,
{
    let (reader, writer) = reflector::store();
    let (tx, rx) = unbounded();
    tokio::spawn(async move {
        let stream =
            reflector::reflector(writer, watcher(api, config).default_backoff()).touched_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(obj) => {
                    for r in map(&obj) {
                        if tx.unbounded_send(r).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("watch of {}: {e}", K::kind(&())),
            }
        }
    });
    (reader, rx)
}

/// What a controller reconciles on: its own objects' changes and the related objects'.
pub type Queue<K> = BoxStream<'static, Result<ReconcileRequest<K>, watcher::Error>>;

/// Watches a controller's own kind into a store; each change asks for that object's
/// reconcile. Deletions do not: the reconciler only ever sees objects in the store.
pub fn watch_main<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Queue<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, config).default_backoff()).applied_objects();
    (reader, trigger_self(stream, ()).boxed())
}

/// Runs a reconciler over `store`'s objects as `main` and `triggers` ask, until the watches
/// end. Reconciles of one object never overlap; errors requeue as `error_policy` says.
pub async fn run<K, Ctx, R, Fut>(
    store: Store<K>,
    main: Queue<K>,
    triggers: Vec<UnboundedReceiver<ObjectRef<K>>>,
    mut reconcile: R,
    error_policy: impl Fn(Arc<K>, &ReconcileError, Arc<Ctx>) -> Action,
    ctx: Arc<Ctx>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    R: FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let related = futures::stream::select_all(triggers).map(|r| Ok(ReconcileRequest::from(r)));
    let queue = futures::stream::select(main, related);
    applier(
        move |obj, ctx| reconcile(obj, ctx).boxed(),
        error_policy,
        ctx,
        store,
        queue,
        ControllerConfig::default(),
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            // Reconcile errors were already handled by the error policy; what is left
            // (a watch failing, an object gone before its turn) is worth a trace only.
            tracing::debug!("{}: {e}", K::kind(&()));
        }
    })
    .await;
}
