//! The endpointslice controller: for every Service with a selector, EndpointSlices listing
//! the selected pods (ready, serving and terminating conditions, ports resolved per pod,
//! zone from the pod's node), at most 100 endpoints a slice, rewritten as little as possible.

pub mod desired;
pub mod plan;
mod tracker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::shared::informer::{run as run_controller, watch_and_map, watch_main};
use crate::shared::ownership::controller_ref;
use crate::shared::retry::{is_status, Backoff, ReconcileError};
use tracker::Tracker;

const NAME: &str = "endpointslice";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const HEADLESS: &str = "service.kubernetes.io/headless";
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    tracker: Tracker,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (services, main) = watch_main(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        );
        let (pods, pod_triggers) = watch_and_map(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            pod_mapper(services.clone()),
        );
        let (slices, slice_triggers) = watch_and_map(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}")),
            |s: &EndpointSlice| service_of(s),
        );
        // Zones only: node changes alone do not move endpoints.
        let (nodes, _) = watch_and_map(
            Api::<Node>::all(client),
            watcher::Config::default(),
            |_: &Node| None::<ObjectRef<Service>>,
        );
        // Acting on a partial list of slices would create duplicates.
        pods.wait_until_ready().await?;
        slices.wait_until_ready().await?;
        nodes.wait_until_ready().await?;
        let state = Arc::new(State {
            ctx,
            pods,
            nodes,
            slices,
            tracker: Tracker::default(),
            backoff: Backoff::default(),
        });
        run_controller(
            services,
            main,
            vec![pod_triggers, slice_triggers],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

/// The Service a managed slice belongs to, by its service-name label.
pub fn service_of(slice: &EndpointSlice) -> Option<ObjectRef<Service>> {
    let name = slice.labels().get(SERVICE_NAME)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

/// Maps a pod change to the Services that select it now and those that selected it before
/// (a relabelled pod must leave the old Service's endpoints).
pub fn pod_mapper(
    services: Store<Service>,
) -> impl FnMut(&Pod) -> Vec<ObjectRef<Service>> + Send + 'static {
    let mut before: HashMap<String, HashSet<ObjectRef<Service>>> = HashMap::new();
    move |pod: &Pod| {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let now: HashSet<ObjectRef<Service>> = services
            .state()
            .iter()
            .filter(|s| desired::selects(s, pod))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let old = if now.is_empty() {
            before.remove(&key)
        } else {
            before.insert(key, now.clone())
        };
        now.into_iter().chain(old.into_iter().flatten()).collect()
    }
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
    let ns = svc.namespace().unwrap_or_default();
    let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    if desired::selector(&svc).is_none() || external || svc.metadata.deletion_timestamp.is_some() {
        // Selector-less Services are the mirroring controller's; deleted ones lose their
        // slices through garbage collection of the owner references.
        return Ok(Action::await_change());
    }
    let ours: Vec<EndpointSlice> = state
        .slices
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| s.labels().get(SERVICE_NAME) == Some(&svc.name_any()))
        .map(|s| (**s).clone())
        .collect();
    if !state.tracker.fresh(&key, &ours) {
        // Our own last writes are not in the cache yet; their watch events re-trigger us.
        return Ok(Action::await_change());
    }
    let pods: Vec<Arc<Pod>> = {
        let mut pods: Vec<Arc<Pod>> = state
            .pods
            .state()
            .into_iter()
            .filter(|p| desired::selects(&svc, p) && desired::pod_eligible(p, true))
            .collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    };
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), &ns);
    let owned = |s: &EndpointSlice| {
        s.owner_references().iter().any(|o| {
            Some(&o.uid) == svc.metadata.uid.as_ref()
                && o.kind == "Service"
                && o.api_version == "v1"
        })
    };
    let mut writes = tracker::Writes::default();
    let types = desired::address_types(&svc);
    for slice in ours
        .iter()
        .filter(|s| !owned(s) || !types.contains(&s.address_type.as_str()))
    {
        delete(&api, slice, &mut writes).await?;
    }
    for address_type in types {
        let existing: Vec<EndpointSlice> = ours
            .iter()
            .filter(|s| owned(s) && s.address_type == address_type)
            .cloned()
            .collect();
        let items = pods.iter().filter_map(|pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| state.nodes.get(&ObjectRef::new(n)));
            let ep = desired::pod_endpoint(pod, node.as_deref(), &svc, address_type)?;
            Some((desired::endpoint_ports(&svc, pod), ep))
        });
        let p = plan::plan(existing, plan::group(items), plan::MAX_ENDPOINTS);
        let trigger = trigger_time(&svc, &pods);
        for (ports, endpoints) in p.create {
            let slice = new_slice(&svc, address_type, ports, endpoints, trigger.as_ref());
            let made = api.create(&PostParams::default(), &slice).await?;
            writes.wrote(&made);
        }
        for mut slice in p.update {
            set_meta(&mut slice, &svc, trigger.as_ref());
            write(&api, slice, &mut writes).await?;
        }
        for slice in p.unchanged {
            // Labels follow the Service's even when the endpoints have not moved.
            let mut want = slice.clone();
            set_meta(&mut want, &svc, None);
            want.metadata.annotations = slice.metadata.annotations.clone();
            if want.metadata.labels != slice.metadata.labels {
                write(&api, want, &mut writes).await?;
            }
        }
        for slice in &p.delete {
            delete(&api, slice, &mut writes).await?;
        }
    }
    state.tracker.record(&key, writes);
    state.backoff.succeeded(&key);
    Ok(Action::await_change())
}

async fn write(
    api: &Api<EndpointSlice>,
    slice: EndpointSlice,
    writes: &mut tracker::Writes,
) -> kube::Result<()> {
    match api
        .replace(&slice.name_any(), &PostParams::default(), &slice)
        .await
    {
        Ok(s) => {
            writes.wrote(&s);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn delete(
    api: &Api<EndpointSlice>,
    slice: &EndpointSlice,
    writes: &mut tracker::Writes,
) -> kube::Result<()> {
    match api
        .delete(&slice.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    writes.deleted(&slice.name_any());
    Ok(())
}

/// The latest change that moved this Service's endpoints, as far as the objects show it:
/// pods' Ready transitions (or creation) and the Service's creation.
fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<Time> {
    let ready_change = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| p.metadata.creation_timestamp.clone())
    };
    pods.iter()
        .filter_map(|p| ready_change(p))
        .chain(svc.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0)
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let reserved = |k: &str| k == SERVICE_NAME || k == MANAGED_BY || k == HEADLESS;
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if desired::is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// Labels, owner and (when given) trigger time as a slice of `svc` carries them.
fn set_meta(slice: &mut EndpointSlice, svc: &Service, trigger: Option<&Time>) {
    slice.metadata.labels = Some(labels_for(svc));
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => {
            annotations.insert(TRIGGER_TIME.into(), format_time(t));
        }
        None => {
            annotations.remove(TRIGGER_TIME);
        }
    }
}

/// RFC 3339 in UTC with as many fractional digits as needed, as Go's RFC3339Nano.
pub fn format_time(t: &Time) -> String {
    t.0.to_string()
}

fn new_slice(
    svc: &Service,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
    trigger: Option<&Time>,
) -> EndpointSlice {
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(&svc.name_any())),
            namespace: svc.namespace(),
            owner_references: Some(vec![controller_ref("v1", "Service", &svc.metadata)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints,
        ports: Some(ports),
    };
    set_meta(&mut slice, svc, trigger);
    slice
}

/// `<service>-`, unless the dash would make the prefix an invalid name.
fn slice_prefix(service: &str) -> String {
    if service.len() < 253 {
        format!("{service}-")
    } else {
        service.to_string()
    }
}

fn error_policy(svc: Arc<Service>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
    tracing::warn!("{NAME}: syncing service {key}: {err}");
    // A failed write leaves the cache's view uncertain; start again from what it shows.
    state.tracker.forget(&key);
    Action::requeue(state.backoff.failed(&key))
}
