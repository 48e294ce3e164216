//! ResourceQuota status (upstream's `pkg/controller/resourcequota` with the core evaluators of
//! `pkg/quota/v1/evaluator/core`): status.hard mirrors spec.hard and status.used holds what
//! the namespace consumes of each hard resource: object counts, and the requests and limits
//! of pods that are not finished. A change to any counted object re-evaluates the quotas of
//! its namespace.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use ferrokube_common::quantity::Quantity;
use futures::channel::mpsc::UnboundedReceiver;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::shared::informer;
use crate::shared::retry::{is_status, Backoff, ReconcileError};

pub const NAME: &str = "resourcequota";

struct Stores {
    pods: Store<Pod>,
    services: Store<Service>,
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    pvcs: Store<PersistentVolumeClaim>,
    rcs: Store<ReplicationController>,
    quotas: Store<ResourceQuota>,
}

struct State {
    ctx: Arc<Context>,
    stores: Stores,
    backoff: Backoff,
}

/// Watches a counted kind; each change asks for every quota of the object's namespace.
fn counted<K>(
    client: &kube::Client,
    quotas: &Store<ResourceQuota>,
) -> (Store<K>, UnboundedReceiver<ObjectRef<ResourceQuota>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let quotas = quotas.clone();
    informer::watch_and_map(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        move |obj: &K| {
            let ns = obj.meta().namespace.clone();
            quotas
                .state()
                .iter()
                .filter(|q| q.metadata.namespace == ns)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        },
    )
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (quotas, main) = informer::watch_main(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default(),
        );
        let (pods, t1) = counted::<Pod>(&client, &quotas);
        let (services, t2) = counted::<Service>(&client, &quotas);
        let (configmaps, t3) = counted::<ConfigMap>(&client, &quotas);
        let (secrets, t4) = counted::<Secret>(&client, &quotas);
        let (pvcs, t5) = counted::<PersistentVolumeClaim>(&client, &quotas);
        let (rcs, t6) = counted::<ReplicationController>(&client, &quotas);
        let state = Arc::new(State {
            ctx,
            stores: Stores {
                pods,
                services,
                configmaps,
                secrets,
                pvcs,
                rcs,
                quotas: quotas.clone(),
            },
            backoff: Backoff::default(),
        });
        informer::run(
            quotas,
            main,
            vec![t1, t2, t3, t4, t5, t6],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

fn in_ns<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .collect()
}

/// Succeeded and Failed pods hold no resources, as upstream's `QuotaV1Pod` says.
fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

type Amounts = BTreeMap<String, Quantity>;

fn parse(q: &ApiQuantity) -> Option<Quantity> {
    Quantity::parse(&q.0).ok()
}

fn add_all(into: &mut Amounts, from: Option<&BTreeMap<String, ApiQuantity>>) {
    for (k, v) in from.into_iter().flatten() {
        if let Some(v) = parse(v) {
            into.entry(k.clone())
                .and_modify(|e| e.add_assign_ref(&v))
                .or_insert(v);
        }
    }
}

fn max_all(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        match into.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// A pod's effective requests and limits: its containers' sum, raised to any single
/// init container's needs (sidecar init containers run alongside, so they add), plus the
/// runtime overhead.
fn pod_amounts(pod: &Pod) -> (Amounts, Amounts) {
    let mut requests = Amounts::new();
    let mut limits = Amounts::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (requests, limits);
    };
    for c in &spec.containers {
        let r = c.resources.as_ref();
        add_all(&mut requests, r.and_then(|r| r.requests.as_ref()));
        add_all(&mut limits, r.and_then(|r| r.limits.as_ref()));
    }
    let mut sidecar_req = Amounts::new();
    let mut sidecar_lim = Amounts::new();
    for c in spec.init_containers.iter().flatten() {
        let r = c.resources.as_ref();
        let mut own_req = Amounts::new();
        let mut own_lim = Amounts::new();
        add_all(&mut own_req, r.and_then(|r| r.requests.as_ref()));
        add_all(&mut own_lim, r.and_then(|r| r.limits.as_ref()));
        if c.restart_policy.as_deref() == Some("Always") {
            add_all_amounts(&mut sidecar_req, &own_req);
            add_all_amounts(&mut sidecar_lim, &own_lim);
            add_all_amounts(&mut requests, &own_req);
            add_all_amounts(&mut limits, &own_lim);
        } else {
            // A regular init container runs next to the sidecars started before it.
            add_all_amounts(&mut own_req, &sidecar_req);
            add_all_amounts(&mut own_lim, &sidecar_lim);
            max_all(&mut requests, &own_req);
            max_all(&mut limits, &own_lim);
        }
    }
    add_all(&mut requests, spec.overhead.as_ref());
    add_all(&mut limits, spec.overhead.as_ref());
    (requests, limits)
}

fn add_all_amounts(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        into.entry(k.clone())
            .and_modify(|e| e.add_assign_ref(v))
            .or_insert_with(|| v.clone());
    }
}

/// What the namespace uses of `resource`, or None when no evaluator here covers it.
fn usage(st: &Stores, ns: &str, resource: &str, pods: &[Arc<Pod>]) -> Option<Quantity> {
    let count = |n: usize| Some(Quantity::new(n as i64, Default::default()));
    let object_count = match resource {
        // As upstream, `pods` counts what can still run and `count/pods` every object.
        "pods" => Some(pods.iter().filter(|p| !pod_is_terminal(p)).count()),
        "count/pods" => Some(pods.len()),
        "services" | "count/services" => Some(in_ns(&st.services, ns).len()),
        "configmaps" | "count/configmaps" => Some(in_ns(&st.configmaps, ns).len()),
        "secrets" | "count/secrets" => Some(in_ns(&st.secrets, ns).len()),
        "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
            Some(in_ns(&st.pvcs, ns).len())
        }
        "replicationcontrollers" | "count/replicationcontrollers" => Some(in_ns(&st.rcs, ns).len()),
        "resourcequotas" | "count/resourcequotas" => Some(in_ns(&st.quotas, ns).len()),
        "services.loadbalancers" => Some(
            in_ns(&st.services, ns)
                .iter()
                .filter(|s| service_type(s) == "LoadBalancer")
                .count(),
        ),
        "services.nodeports" => Some(
            in_ns(&st.services, ns)
                .iter()
                .map(|s| node_ports(s))
                .sum::<usize>(),
        ),
        _ => None,
    };
    if let Some(n) = object_count {
        return count(n);
    }
    if resource == "requests.storage" {
        let mut total = Quantity::new(0, Default::default());
        for pvc in in_ns(&st.pvcs, ns) {
            let requested = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
                .and_then(parse);
            if let Some(q) = requested {
                total.add_assign_ref(&q);
            }
        }
        return Some(total);
    }
    let (side, name) = match resource {
        "cpu" | "memory" | "ephemeral-storage" => ("requests", resource),
        r => r.split_once('.')?,
    };
    if side != "requests" && side != "limits" {
        return None;
    }
    let mut total = Quantity::new(0, Default::default());
    for pod in pods.iter().filter(|p| !pod_is_terminal(p)) {
        let (requests, limits) = pod_amounts(pod);
        let amounts = if side == "requests" { requests } else { limits };
        if let Some(q) = amounts.get(name) {
            total.add_assign_ref(q);
        }
    }
    Some(total)
}

fn service_type(s: &Service) -> &str {
    s.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

/// Node ports a service holds: every port of a NodePort service, and of a LoadBalancer
/// unless it opted out of node port allocation.
fn node_ports(s: &Service) -> usize {
    let Some(spec) = s.spec.as_ref() else {
        return 0;
    };
    let ports = spec.ports.as_ref().map_or(0, Vec::len);
    match service_type(s) {
        "NodePort" => ports,
        "LoadBalancer" if spec.allocate_load_balancer_node_ports != Some(false) => ports,
        "LoadBalancer" => spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.node_port.is_some())
            .count(),
        _ => 0,
    }
}

/// The quota's status as it should be now.
fn desired_status(st: &Stores, quota: &ResourceQuota) -> ResourceQuotaStatus {
    let ns = quota.metadata.namespace.clone().unwrap_or_default();
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let pods = in_ns(&st.pods, &ns);
    let previous = quota.status.as_ref().and_then(|s| s.used.as_ref());
    let mut used = BTreeMap::new();
    for resource in hard.keys() {
        match usage(st, &ns, resource, &pods) {
            Some(q) => {
                used.insert(resource.clone(), ApiQuantity(q.to_string()));
            }
            None => {
                // Not evaluated here: keep what someone else recorded rather than erase it.
                if let Some(old) = previous.and_then(|p| p.get(resource)) {
                    used.insert(resource.clone(), old.clone());
                }
            }
        }
    }
    ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    }
}

/// Quantities compare by value, not spelling, so `1000m` and `1` are the same status.
fn same(
    a: &Option<BTreeMap<String, ApiQuantity>>,
    b: &Option<BTreeMap<String, ApiQuantity>>,
) -> bool {
    let a = a.clone().unwrap_or_default();
    let b = b.clone().unwrap_or_default();
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| v.0 == w.0 || (parse(v).is_some() && parse(v) == parse(w)))
        })
}

async fn reconcile(quota: Arc<ResourceQuota>, st: Arc<State>) -> Result<Action, ReconcileError> {
    st.ctx.metrics.inc("workqueue_adds_total", NAME);
    let key = format!(
        "{}/{}",
        quota.metadata.namespace.as_deref().unwrap_or_default(),
        quota.metadata.name.as_deref().unwrap_or_default()
    );
    // Counting from a cache that has not listed yet would publish zeros.
    let s = &st.stores;
    for ready in [
        s.pods.wait_until_ready().await,
        s.services.wait_until_ready().await,
        s.configmaps.wait_until_ready().await,
        s.secrets.wait_until_ready().await,
        s.pvcs.wait_until_ready().await,
        s.rcs.wait_until_ready().await,
    ] {
        ready.map_err(anyhow::Error::from)?;
    }
    let desired = desired_status(s, &quota);
    let current = quota.status.clone().unwrap_or_default();
    if same(&current.hard, &desired.hard) && same(&current.used, &desired.used) {
        return Ok(Action::await_change());
    }
    let mut updated = (*quota).clone();
    updated.status = Some(desired);
    let api: Api<ResourceQuota> = Api::namespaced(
        st.ctx.client.clone(),
        quota.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let name = quota.metadata.name.clone().unwrap_or_default();
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {}
        // Changed since the cache saw it: the watch brings the new version to recount.
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => return Err(e.into()),
    }
    st.backoff.succeeded(&key);
    Ok(Action::await_change())
}

fn error_policy(quota: Arc<ResourceQuota>, err: &ReconcileError, st: Arc<State>) -> Action {
    st.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = format!(
        "{}/{}",
        quota.metadata.namespace.as_deref().unwrap_or_default(),
        quota.metadata.name.as_deref().unwrap_or_default()
    );
    tracing::warn!(quota = %key, error = %err, "resource quota sync failed");
    Action::requeue(st.backoff.failed(&key))
}
