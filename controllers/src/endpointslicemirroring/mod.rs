//! The endpointslice-mirroring controller: for every Service without a selector whose
//! Endpoints were written by someone else, EndpointSlices carrying the same addresses, so
//! that EndpointSlice consumers see custom endpoints too. One slice per address type and
//! port set, as upstream, with at most 1000 addresses taken from each subset.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::shared::informer::{run as run_controller, watch_and_map};
use crate::shared::ownership::controller_ref;
use crate::shared::retry::{is_status, Backoff, ReconcileError};

const NAME: &str = "endpointslice-mirroring";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Endpoints used as leader-election locks are not service endpoints.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upstream's default for --mirroring-max-endpoints-per-subset (also the API's cap a slice).
pub const MAX_PER_SUBSET: usize = 1000;

struct State {
    ctx: Arc<Context>,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    /// Slice name to the resourceVersion this controller last wrote (None: deleted), per
    /// Endpoints key, until the cache shows those writes; planning from a cache that has
    /// not seen them would create duplicates.
    written: Mutex<HashMap<String, HashMap<String, Option<u64>>>>,
    backoff: Backoff,
    recorder: Recorder,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        // Mirrored slices whose Endpoints may be gone; the Endpoints reconciler never sees
        // a deleted Endpoints, so these are checked on their own.
        let (orphan_tx, orphan_rx) = unbounded::<ObjectRef<EndpointSlice>>();
        let (slices, slice_triggers) = watch_and_map(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}")),
            {
                let orphan_tx = orphan_tx.clone();
                move |s: &EndpointSlice| {
                    let _ = orphan_tx.unbounded_send(ObjectRef::from_obj(s));
                    endpoints_of(s)
                }
            },
        );
        let (endpoints, ep_triggers) = watch_and_map(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            endpoints_mapper(slices.clone(), orphan_tx),
        );
        let (services, svc_triggers) = watch_and_map(
            Api::<Service>::all(client),
            watcher::Config::default(),
            |s: &Service| Some(ObjectRef::<Endpoints>::new(&s.name_any()).within(&s.namespace()?)),
        );
        endpoints.wait_until_ready().await?;
        services.wait_until_ready().await?;
        slices.wait_until_ready().await?;
        let state = Arc::new(State {
            recorder: Recorder::new(
                ctx.client.clone(),
                Reporter {
                    controller: "endpointslice-mirroring-controller".to_string(),
                    instance: None,
                },
            ),
            ctx,
            services,
            endpoints: endpoints.clone(),
            slices: slices.clone(),
            written: Mutex::default(),
            backoff: Backoff::default(),
        });
        let mirror = run_controller(
            endpoints,
            futures::stream::empty().boxed(),
            vec![ep_triggers, svc_triggers, slice_triggers],
            reconcile,
            error_policy,
            state.clone(),
        );
        let orphans = run_controller(
            slices,
            futures::stream::empty().boxed(),
            vec![orphan_rx],
            reconcile_orphan,
            orphan_error_policy,
            state,
        );
        futures::future::join(mirror, orphans).await;
        Ok(())
    })
}

/// An Endpoints change concerns that Endpoints and, as it may be a deletion the Endpoints
/// reconciler never sees, the slices mirroring it.
fn endpoints_mapper(
    slices: Store<EndpointSlice>,
    orphans: UnboundedSender<ObjectRef<EndpointSlice>>,
) -> impl FnMut(&Endpoints) -> Vec<ObjectRef<Endpoints>> + Send + 'static {
    move |ep: &Endpoints| {
        let Some(ns) = ep.namespace() else {
            return Vec::new();
        };
        let name = ep.name_any();
        for s in slices.state() {
            if s.namespace().as_deref() == Some(ns.as_str())
                && s.labels().get(SERVICE_NAME) == Some(&name)
            {
                let _ = orphans.unbounded_send(ObjectRef::from_obj(s.as_ref()));
            }
        }
        vec![ObjectRef::new(&name).within(&ns)]
    }
}

/// The Endpoints a mirrored slice belongs to, by its service-name label.
pub fn endpoints_of(slice: &EndpointSlice) -> Option<ObjectRef<Endpoints>> {
    let name = slice.labels().get(SERVICE_NAME)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

fn key_of(ep: &Endpoints) -> String {
    format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any())
}

/// Whether `ep` should be mirrored at all: its Service exists without a selector, and the
/// Endpoints is neither marked to skip nor a leader-election lock.
fn wants_mirror(ep: &Endpoints, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else {
        return false;
    };
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some();
    !has_selector
        && ep.labels().get(SKIP_MIRROR).map(String::as_str) != Some("true")
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
        && ep.metadata.deletion_timestamp.is_none()
}

/// The slices a reconcile should produce: key (address type, ports) to endpoints, keeping
/// the first of duplicate addresses.
type Desired = BTreeMap<(String, Vec<PortKey>), (Vec<EndpointPort>, Vec<Endpoint>)>;
type PortKey = (String, i32, String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or_default(),
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

fn ports_key(ports: &[EndpointPort]) -> Vec<PortKey> {
    let mut k: Vec<PortKey> = ports.iter().map(port_key).collect();
    k.sort();
    k
}

/// An Endpoints address as a slice endpoint, with its family; None for an invalid IP.
fn to_endpoint(addr: &EndpointAddress, ready: bool) -> Option<(&'static str, Endpoint)> {
    let ip: IpAddr = addr.ip.parse().ok()?;
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    Some((
        family,
        Endpoint {
            // Re-rendered so that irregular spellings compare equal.
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                ..Default::default()
            }),
            hostname: addr.hostname.clone().filter(|h| !h.is_empty()),
            node_name: addr.node_name.clone(),
            target_ref: addr.target_ref.clone(),
            ..Default::default()
        },
    ))
}

/// What to mirror, and how many addresses were skipped as invalid and as over the limit.
pub fn desired(ep: &Endpoints, max_per_subset: usize) -> (Desired, usize, usize) {
    let mut out: Desired = BTreeMap::new();
    let (mut invalid, mut over) = (0, 0);
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let pk = ports_key(&ports);
        let all = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        let mut added = 0;
        for (addr, ready) in all {
            if added >= max_per_subset {
                over += 1;
                continue;
            }
            let Some((family, endpoint)) = to_endpoint(addr, ready) else {
                invalid += 1;
                continue;
            };
            added += 1;
            let entry = out
                .entry((family.to_string(), pk.clone()))
                .or_insert_with(|| (ports.clone(), Vec::new()));
            if !entry.1.iter().any(|e| e.addresses == endpoint.addresses) {
                entry.1.push(endpoint);
            }
        }
    }
    for (_, endpoints) in out.values_mut() {
        endpoints.truncate(max_per_subset);
    }
    (out, invalid, over)
}

/// Labels and annotations a mirrored slice carries: the Endpoints' own, then ours.
fn set_meta(slice: &mut EndpointSlice, ep: &Endpoints) {
    let mut labels = ep.labels().clone();
    labels.insert(SERVICE_NAME.into(), ep.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    let mut annotations = ep.annotations().clone();
    annotations.remove(TRIGGER_TIME);
    annotations.remove(LAST_APPLIED);
    slice.metadata.labels = Some(labels);
    slice.metadata.annotations = Some(annotations);
    slice.metadata.owner_references = Some(vec![controller_ref("v1", "Endpoints", &ep.metadata)]);
}

fn same_endpoints(a: &[Endpoint], b: &[Endpoint]) -> bool {
    let norm = |v: &[Endpoint]| {
        let mut v: Vec<String> = v
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

impl State {
    async fn warn(&self, ep: &Endpoints, reason: &str, note: String) {
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &ep.object_ref(&())).await {
            tracing::warn!("{NAME}: event {reason}: {e}");
        }
    }

    fn ours(&self, ns: &str, name: &str) -> Vec<EndpointSlice> {
        self.slices
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns))
            .filter(|s| s.labels().get(SERVICE_NAME).map(String::as_str) == Some(name))
            .map(|s| (**s).clone())
            .collect()
    }

    /// Whether the cache shows every write recorded for `key`; the record goes once it does.
    fn fresh(&self, key: &str, cached: &[EndpointSlice]) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writes) = written.get(key) else {
            return true;
        };
        let seen = writes.iter().all(|(name, want)| {
            let have = cached.iter().find(|s| &s.name_any() == name);
            match (want, have) {
                (None, have) => have.is_none(),
                (Some(_), None) => false,
                (Some(rv), Some(s)) => s
                    .resource_version()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_none_or(|have| have >= *rv),
            }
        });
        if seen {
            written.remove(key);
        }
        seen
    }

    fn record(&self, key: &str, writes: HashMap<String, Option<u64>>) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if writes.is_empty() {
            written.remove(key);
        } else {
            written.insert(key.to_string(), writes);
        }
    }
}

fn rv(s: &EndpointSlice) -> Option<u64> {
    s.resource_version()
        .and_then(|v| v.parse().ok())
        .or(Some(0))
}

async fn delete(
    api: &Api<EndpointSlice>,
    name: &str,
    writes: &mut HashMap<String, Option<u64>>,
) -> kube::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    writes.insert(name.to_string(), None);
    Ok(())
}

async fn reconcile(ep: Arc<Endpoints>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let key = key_of(&ep);
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let ours = state.ours(&ns, &name);
    if !state.fresh(&key, &ours) {
        // Our last writes are not cached yet; their watch events bring us back.
        return Ok(Action::await_change());
    }
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), &ns);
    let mut writes = HashMap::new();
    let svc = state.services.get(&ObjectRef::new(&name).within(&ns));
    if !wants_mirror(&ep, svc.as_deref()) {
        for s in &ours {
            delete(&api, &s.name_any(), &mut writes).await?;
        }
        state.record(&key, writes);
        state.backoff.succeeded(&key);
        return Ok(Action::await_change());
    }
    let (want, invalid, over) = desired(&ep, MAX_PER_SUBSET);
    if invalid > 0 {
        state
            .warn(
                &ep,
                "InvalidIPAddress",
                format!("Skipped {invalid} invalid IP addresses when mirroring to EndpointSlices"),
            )
            .await;
    }
    if over > 0 {
        state
            .warn(
                &ep,
                "TooManyAddressesToMirror",
                format!(
                    "A max of {MAX_PER_SUBSET} addresses can be mirrored to EndpointSlices per \
                     Endpoints subset. {} addresses were skipped",
                    over + invalid
                ),
            )
            .await;
    }
    // Existing slices by the same key; the first of each group is kept and rewritten.
    let mut existing: BTreeMap<(String, Vec<PortKey>), Vec<EndpointSlice>> = BTreeMap::new();
    let mut sorted = ours.clone();
    sorted.sort_by_key(|s| s.name_any());
    for s in sorted {
        let k = (
            s.address_type.clone(),
            ports_key(s.ports.as_deref().unwrap_or_default()),
        );
        existing.entry(k).or_default().push(s);
    }
    // Slices no key wants any more, kept aside to be recycled rather than deleted.
    let mut spare: Vec<EndpointSlice> = Vec::new();
    for (k, group) in existing.iter_mut() {
        let keep = if want.contains_key(k) { 1 } else { 0 };
        spare.extend(group.drain(keep.min(group.len())..));
    }
    for (k, (ports, endpoints)) in &want {
        let current = existing.get(k).and_then(|g| g.first()).cloned();
        let base = current.or_else(|| spare.pop());
        let mut slice = base.clone().unwrap_or_else(|| EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(slice_prefix(&name)),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            address_type: String::new(),
            endpoints: Vec::new(),
            ports: None,
        });
        set_meta(&mut slice, &ep);
        slice.address_type = k.0.clone();
        slice.ports = Some(ports.clone());
        slice.endpoints = endpoints.clone();
        match base {
            None => {
                let made = api.create(&PostParams::default(), &slice).await?;
                writes.insert(made.name_any(), rv(&made));
            }
            Some(old) => {
                let unchanged = old.address_type == slice.address_type
                    && old.ports == slice.ports
                    && old.metadata.labels == slice.metadata.labels
                    && old.metadata.annotations == slice.metadata.annotations
                    && old.metadata.owner_references == slice.metadata.owner_references
                    && same_endpoints(&old.endpoints, &slice.endpoints);
                if !unchanged {
                    let made = api
                        .replace(&slice.name_any(), &PostParams::default(), &slice)
                        .await?;
                    writes.insert(made.name_any(), rv(&made));
                }
            }
        }
    }
    for s in &spare {
        delete(&api, &s.name_any(), &mut writes).await?;
    }
    state.record(&key, writes);
    state.backoff.succeeded(&key);
    Ok(Action::await_change())
}

/// Deletes a mirrored slice whose Endpoints no longer exists (or is a newer object).
async fn reconcile_orphan(
    slice: Arc<EndpointSlice>,
    state: Arc<State>,
) -> Result<Action, ReconcileError> {
    let Some(r) = endpoints_of(&slice) else {
        return Ok(Action::await_change());
    };
    let ep = state.endpoints.get(&r);
    let owner_uid = slice
        .owner_references()
        .iter()
        .find(|o| o.kind == "Endpoints")
        .map(|o| o.uid.clone());
    let alive = match (&ep, owner_uid) {
        (Some(ep), Some(uid)) => ep.metadata.uid.as_ref() == Some(&uid),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if alive {
        return Ok(Action::await_change());
    }
    if ep.is_some() {
        // A newer Endpoints of the same name: its own reconcile rewrites the slice.
        return Ok(Action::await_change());
    }
    let ns = slice.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), &ns);
    let mut writes = HashMap::new();
    delete(&api, &slice.name_any(), &mut writes).await?;
    Ok(Action::await_change())
}

/// `<name>-`, unless the dash would make the prefix an invalid name.
fn slice_prefix(name: &str) -> String {
    if name.len() < 253 {
        format!("{name}-")
    } else {
        name.to_string()
    }
}

fn error_policy(ep: Arc<Endpoints>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = key_of(&ep);
    tracing::warn!("{NAME}: syncing endpoints {key}: {err}");
    state
        .written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    Action::requeue(state.backoff.failed(&key))
}

fn orphan_error_policy(s: Arc<EndpointSlice>, err: &ReconcileError, state: Arc<State>) -> Action {
    let key = format!(
        "slice/{}/{}",
        s.namespace().unwrap_or_default(),
        s.name_any()
    );
    tracing::warn!("{NAME}: deleting orphaned slice {key}: {err}");
    Action::requeue(state.backoff.failed(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointPort as CorePort, EndpointSubset};

    fn addr(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    #[test]
    fn families_limits_and_readiness() {
        let mut many: Vec<EndpointAddress> = (0..1200)
            .map(|i| addr(&format!("10.0.{}.{}", i / 250, i % 250)))
            .collect();
        many.push(addr("not-an-ip"));
        let ep = Endpoints {
            subsets: Some(vec![
                EndpointSubset {
                    addresses: Some(vec![addr("10.0.0.1"), addr("fd00::1")]),
                    not_ready_addresses: Some(vec![addr("10.0.0.2"), addr("bogus")]),
                    ports: Some(vec![CorePort {
                        port: 80,
                        ..Default::default()
                    }]),
                },
                EndpointSubset {
                    addresses: Some(many),
                    ports: Some(vec![CorePort {
                        port: 81,
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let (d, invalid, over) = desired(&ep, MAX_PER_SUBSET);
        assert_eq!(d.len(), 3);
        assert_eq!(invalid, 1);
        assert_eq!(over, 201);
        let v4_80 = d
            .iter()
            .find(|((f, p), _)| f == "IPv4" && p[0].1 == 80)
            .map(|(_, v)| v)
            .expect("v4 slice");
        let ready: Vec<Option<bool>> = v4_80
            .1
            .iter()
            .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        assert_eq!(v4_80.0[0].protocol.as_deref(), Some("TCP"));
        let v4_81 = d
            .iter()
            .find(|((f, p), _)| f == "IPv4" && p[0].1 == 81)
            .map(|(_, v)| v)
            .expect("v4 81 slice");
        assert_eq!(v4_81.1.len(), MAX_PER_SUBSET);
    }
}
