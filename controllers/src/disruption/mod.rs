//! The disruption controller: keeps each PodDisruptionBudget's status (expected pods,
//! healthy pods, disruptions allowed, the DisruptionAllowed condition) in step with its pods,
//! as upstream's `pkg/controller/disruption`. The eviction subresource in the apiserver spends
//! the budget this controller computes.
//!
//! Pods and budgets come from two reflectors whose streams also drive the work queue, so a
//! budget is only ever reconciled after the pod store has taken in the change that
//! triggered it (kube-runtime's `applier`, which `Controller` is built on).

pub mod backoff;
mod scale;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{applier, trigger_self, trigger_with, Action, Config};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;

use crate::context::Context;
use backoff::Backoff;

pub const NAME: &str = "disruption";

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    recorder: Recorder,
    backoff: Backoff,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SyncError(pub anyhow::Error);

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> Self {
        SyncError(e.into())
    }
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (pdb_store, pdb_writer) = reflector::store::<PodDisruptionBudget>();
        let (pod_store, pod_writer) = reflector::store::<Pod>();
        let pdb_events = reflector::reflector(
            pdb_writer,
            watcher(
                Api::<PodDisruptionBudget>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .touched_objects();
        let pod_events = reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects();
        let budgets = pdb_store.clone();
        // A pod whose labels change must also wake the budgets it used to match.
        let last_labels: Mutex<HashMap<(String, String), BTreeMap<String, String>>> =
            Mutex::default();
        let pod_triggers = trigger_with(pod_events, move |pod: Pod| {
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let old = match last_labels.lock() {
                Ok(mut seen) => seen.insert(key.clone(), labels.clone()),
                Err(_) => None,
            };
            let mut refs: Vec<ObjectRef<PodDisruptionBudget>> =
                budgets_matching(&budgets, &key.0, &labels);
            if let Some(old) = old.filter(|o| *o != labels) {
                refs.extend(budgets_matching(&budgets, &key.0, &old));
            }
            refs
        });
        let queue = futures::stream::select(trigger_self(pdb_events, ()), pod_triggers);
        let state = Arc::new(State {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "controllermanager".into(),
                    instance: None,
                },
            ),
            ctx,
            pods: pod_store,
            backoff: Backoff::default(),
        });
        applier(
            |pdb, st| -> Pin<Box<dyn Future<Output = Result<Action, SyncError>> + Send>> {
                Box::pin(reconcile(pdb, st))
            },
            error_policy,
            state,
            pdb_store,
            queue,
            Config::default(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
        Ok(())
    })
}

fn selector_of(pdb: &PodDisruptionBudget) -> Option<ferrokube_common::labels::Selector> {
    let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    let value = serde_json::to_value(sel).ok()?;
    ferrokube_common::labels::Selector::from_label_selector(&value).ok()
}

fn budgets_matching(
    budgets: &Store<PodDisruptionBudget>,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
        .filter(|b| selector_of(b).is_some_and(|s| s.matches(labels)))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

async fn event(st: &State, pdb: &PodDisruptionBudget, warning: bool, reason: &str, note: String) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = st.recorder.publish(&ev, &pdb.object_ref(&())).await {
        tracing::debug!(error = %e, "recording a disruption budget event");
    }
}

fn key(pdb: &PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        pdb.metadata.namespace.as_deref().unwrap_or(""),
        pdb.metadata.name.as_deref().unwrap_or("")
    )
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, st: Arc<State>) -> Result<Action, SyncError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    // Before the first pod list arrives an empty store would read as "no pods".
    if st.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let selector = selector_of(&pdb);
    let all = st.pods.state();
    let pods: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| {
            selector
                .as_ref()
                .is_some_and(|s| s.matches(&p.metadata.labels.clone().unwrap_or_default()))
        })
        .collect();
    let result = sync(&st, &pdb, &pods).await;
    match result {
        Ok(action) => {
            st.backoff.reset(&key(&pdb));
            Ok(action)
        }
        Err(e) => {
            // Nothing may be disrupted while the budget's numbers are unknown.
            let now = Timestamp::now();
            let mut failed = pdb.as_ref().clone();
            let mut s = failed.status.clone().unwrap_or_default();
            status::set_sync_failed(&mut s, format!("{:#}", e.0), now);
            if status::differs(pdb.status.as_ref(), &s) {
                failed.status = Some(s);
                let _ = write_status(&st, &failed).await;
            }
            Err(e)
        }
    }
}

async fn sync(st: &State, pdb: &PodDisruptionBudget, pods: &[&Pod]) -> Result<Action, SyncError> {
    if pods.is_empty() {
        event(st, pdb, false, "NoPods", "No matching pods found".into()).await;
    }
    let expected = match scale::expected(&st.ctx.client, pdb, pods).await {
        Ok(e) => e,
        Err(e) => {
            event(
                st,
                pdb,
                true,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e:#}"),
            )
            .await;
            return Err(SyncError(e));
        }
    };
    if !expected.unmanaged.is_empty() {
        let sel = selector_of(pdb).map(|s| s.to_string()).unwrap_or_default();
        event(
            st,
            pdb,
            false,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            ),
        )
        .await;
    }
    let now = Timestamp::now();
    let disrupted = status::disrupted_pods(pdb, pods, now);
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
    let name = pdb.metadata.name.as_deref().unwrap_or("");
    for pod in &disrupted.overdue {
        event(
            st,
            pdb,
            true,
            "NotDeleted",
            format!("Pod {ns}/{pod} was expected by PDB {ns}/{name} to be deleted but it wasn't"),
        )
        .await;
    }
    let healthy = status::current_healthy(pods, &disrupted.pods, now);
    let wanted = status::desired_status(
        pdb,
        healthy,
        expected.desired_healthy,
        expected.expected,
        disrupted.pods,
        now,
    );
    if status::differs(pdb.status.as_ref(), &wanted) {
        let mut updated = pdb.clone();
        updated.status = Some(wanted);
        write_status(st, &updated).await?;
    }
    // An eviction that never happened stops counting once its entry times out.
    Ok(match disrupted.recheck_at {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs() + Duration::from_millis(100);
            Action::requeue(wait)
        }
        None => Action::await_change(),
    })
}

async fn write_status(st: &State, pdb: &PodDisruptionBudget) -> Result<(), SyncError> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(
        st.ctx.client.clone(),
        pdb.metadata.namespace.as_deref().unwrap_or(""),
    );
    api.replace_status(
        pdb.metadata.name.as_deref().unwrap_or(""),
        &PostParams::default(),
        pdb,
    )
    .await?;
    Ok(())
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, err: &SyncError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    tracing::warn!(pdb = %key(&pdb), error = %err, "disruption budget sync failed");
    Action::requeue(st.backoff.next(&key(&pdb)))
}
