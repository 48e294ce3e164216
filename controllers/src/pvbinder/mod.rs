//! The persistentvolume-binder controller, for pre-provisioned volumes: pending claims are
//! bound to the smallest Available volume that satisfies them (class, access modes, size,
//! volume mode, selector) or to the volume either side names; volumes whose claim is gone
//! are Released, or deleted under the Delete reclaim policy. No dynamic provisioning.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrokube_common::labels::Selector;
use ferrokube_common::quantity::Quantity;
use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::shared::informer::{run as run_controller, watch_and_map};
use crate::shared::retry::{is_status, Backoff, ReconcileError};

const NAME: &str = "persistentvolume-binder";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The class annotation that predates spec.storageClassName and still wins over it.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

struct State {
    ctx: Arc<Context>,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    recorder: Recorder,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (claim_self_tx, claim_self) = unbounded::<ObjectRef<PersistentVolumeClaim>>();
        let (volume_self_tx, volume_self) = unbounded::<ObjectRef<PersistentVolume>>();
        let (claims, claim_to_volume) = watch_and_map(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            claim_mapper(claim_self_tx.clone()),
        );
        let (volumes, volume_to_claims) = watch_and_map(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            volume_mapper(claims.clone(), volume_self_tx),
        );
        drop(claim_self_tx);
        claims.wait_until_ready().await?;
        volumes.wait_until_ready().await?;
        let state = Arc::new(State {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: NAME.to_string(),
                    instance: None,
                },
            ),
            ctx,
            volumes: volumes.clone(),
            claims: claims.clone(),
            backoff: Backoff::default(),
        });
        let claim_loop = run_controller(
            claims,
            futures::stream::empty().boxed(),
            vec![claim_self, volume_to_claims],
            sync_claim,
            claim_error_policy,
            state.clone(),
        );
        let volume_loop = run_controller(
            volumes,
            futures::stream::empty().boxed(),
            vec![volume_self, claim_to_volume],
            sync_volume,
            volume_error_policy,
            state,
        );
        futures::future::join(claim_loop, volume_loop).await;
        Ok(())
    })
}

/// A claim change concerns the claim itself and the volume it names (a deleted claim
/// releases its volume).
fn claim_mapper(
    me: UnboundedSender<ObjectRef<PersistentVolumeClaim>>,
) -> impl FnMut(&PersistentVolumeClaim) -> Vec<ObjectRef<PersistentVolume>> + Send + 'static {
    move |pvc: &PersistentVolumeClaim| {
        let _ = me.unbounded_send(ObjectRef::from_obj(pvc));
        pvc.spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|n| !n.is_empty())
            .map(ObjectRef::new)
            .into_iter()
            .collect()
    }
}

/// A volume change concerns the volume itself, the claim it references, and (as it may
/// have just become usable) every claim still waiting for a volume.
fn volume_mapper(
    claims: Store<PersistentVolumeClaim>,
    me: UnboundedSender<ObjectRef<PersistentVolume>>,
) -> impl FnMut(&PersistentVolume) -> Vec<ObjectRef<PersistentVolumeClaim>> + Send + 'static {
    move |pv: &PersistentVolume| {
        let _ = me.unbounded_send(ObjectRef::from_obj(pv));
        let mut out: Vec<ObjectRef<PersistentVolumeClaim>> = claims
            .state()
            .iter()
            .filter(|c| volume_name(c).is_none())
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect();
        if let Some(r) = claim_ref(pv) {
            if let (Some(ns), Some(name)) = (&r.namespace, &r.name) {
                out.push(ObjectRef::new(name).within(ns));
            }
        }
        out
    }
}

fn volume_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn claim_ref(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

fn claim_class(pvc: &PersistentVolumeClaim) -> String {
    pvc.annotations()
        .get(BETA_CLASS)
        .cloned()
        .or_else(|| pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

fn volume_class(pv: &PersistentVolume) -> String {
    pv.annotations()
        .get(BETA_CLASS)
        .cloned()
        .or_else(|| pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

fn storage(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<Quantity> {
    Quantity::parse(&map?.get("storage")?.0).ok()
}

fn requested(pvc: &PersistentVolumeClaim) -> Quantity {
    storage(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
    .unwrap_or_else(|| Quantity::new(0, ferrokube_common::quantity::Format::BinarySI))
}

fn capacity(pv: &PersistentVolume) -> Option<Quantity> {
    storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn mode_of(m: Option<&String>) -> &str {
    m.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether `pv` can serve `pvc` on size, access modes and volume mode.
fn fits(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    let modes_ok = cs.access_modes.iter().flatten().all(|m| {
        vs.access_modes
            .as_ref()
            .is_some_and(|have| have.contains(m))
    });
    let size_ok = capacity(pv).is_some_and(|c| c >= requested(pvc));
    modes_ok && size_ok && mode_of(vs.volume_mode.as_ref()) == mode_of(cs.volume_mode.as_ref())
}

/// Whether `pv` is reserved for `pvc` by its claimRef (by name, and by uid once set).
fn reserved_for(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    claim_ref(pv).is_some_and(|r| {
        r.name.as_deref() == pvc.metadata.name.as_deref()
            && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
            && (r.uid.as_deref().unwrap_or_default().is_empty()
                || r.uid.as_deref() == pvc.metadata.uid.as_deref())
    })
}

fn selector_matches(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let Some(sel) = pvc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return true;
    };
    serde_json::to_value(sel)
        .ok()
        .and_then(|v| Selector::from_label_selector(&v).ok())
        .is_some_and(|s| s.matches(pv.labels()))
}

/// The volume `pvc` should bind to among `volumes`: one reserved for it if it fits, else
/// the smallest Available, unreserved one that satisfies it.
pub fn best_match(
    pvc: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
) -> Option<Arc<PersistentVolume>> {
    if let Some(pv) = volumes.iter().find(|pv| reserved_for(pv, pvc)) {
        return fits(pv, pvc).then(|| pv.clone());
    }
    let class = claim_class(pvc);
    volumes
        .iter()
        .filter(|pv| claim_ref(pv).is_none())
        .filter(|pv| phase(pv) == "Available")
        .filter(|pv| pv.metadata.deletion_timestamp.is_none())
        .filter(|pv| volume_class(pv) == class)
        .filter(|pv| selector_matches(pvc, pv))
        .filter(|pv| fits(pv, pvc))
        .min_by(|a, b| {
            capacity(a)
                .cmp(&capacity(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        })
        .cloned()
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default()
    )
}

impl State {
    async fn event(&self, pvc: &PersistentVolumeClaim, reason: &str, note: &str) {
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: Some(note.to_string()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &pvc.object_ref(&())).await {
            tracing::warn!("{NAME}: event {reason}: {e}");
        }
    }

    fn pv_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    async fn set_volume_phase(&self, pv: &PersistentVolume, phase_: &str) -> kube::Result<()> {
        if phase(pv) == phase_ {
            return Ok(());
        }
        let mut pv = pv.clone();
        let status = pv
            .status
            .get_or_insert_with(PersistentVolumeStatus::default);
        status.phase = Some(phase_.to_string());
        status.last_phase_transition_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        self.pv_api()
            .replace_status(&pv.name_any(), &PostParams::default(), &pv)
            .await?;
        Ok(())
    }
}

async fn sync_claim(
    pvc: Arc<PersistentVolumeClaim>,
    state: Arc<State>,
) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let key = key_of(pvc.as_ref());
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let volumes = state.volumes.state();
    let pv = match volume_name(&pvc) {
        Some(name) => {
            let Some(pv) = volumes.iter().find(|v| v.name_any() == name).cloned() else {
                // The named volume may appear later; its creation brings us back.
                ensure_claim_phase(&state, &pvc, "Pending").await?;
                return Ok(Action::await_change());
            };
            let free = claim_ref(&pv).is_none()
                && fits(&pv, &pvc)
                && volume_class(&pv) == claim_class(&pvc);
            if !free && !reserved_for(&pv, &pvc) {
                if claim_phase(&pvc) == "Bound" {
                    // A volume bound elsewhere: the claim lost it.
                    ensure_claim_phase(&state, &pvc, "Lost").await?;
                } else {
                    ensure_claim_phase(&state, &pvc, "Pending").await?;
                }
                return Ok(Action::await_change());
            }
            pv
        }
        None => match best_match(&pvc, &volumes) {
            Some(pv) => pv,
            None => {
                if claim_phase(&pvc) != "Pending" {
                    ensure_claim_phase(&state, &pvc, "Pending").await?;
                }
                if claim_class(&pvc).is_empty() {
                    state
                        .event(
                            &pvc,
                            "FailedBinding",
                            "no persistent volumes available for this claim and no storage class is set",
                        )
                        .await;
                }
                return Ok(Action::await_change());
            }
        },
    };
    bind(&state, &pvc, &pv).await?;
    state.backoff.succeeded(&format!("claim/{key}"));
    Ok(Action::await_change())
}

/// Binds both ways in upstream's order: the volume's claimRef, the volume's phase, the
/// claim's volumeName and annotations, the claim's status. Each step is skipped when done,
/// so an interrupted bind completes on the next pass.
async fn bind(
    state: &State,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> kube::Result<()> {
    let pv_api = state.pv_api();
    let mut pv = pv.clone();
    let bound = claim_ref(&pv).is_some_and(|r| {
        r.uid.as_deref() == pvc.metadata.uid.as_deref()
            && r.name.as_deref() == pvc.metadata.name.as_deref()
            && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
    });
    if !bound {
        let was_free = claim_ref(&pv).is_none();
        let spec = pv.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: pvc.metadata.namespace.clone(),
            name: pvc.metadata.name.clone(),
            uid: pvc.metadata.uid.clone(),
            resource_version: pvc.metadata.resource_version.clone(),
            field_path: None,
        });
        if was_free {
            pv.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        pv = pv_api
            .replace(&pv.name_any(), &PostParams::default(), &pv)
            .await?;
    }
    state.set_volume_phase(&pv, "Bound").await?;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(
        state.ctx.client.clone(),
        &pvc.namespace().unwrap_or_default(),
    );
    let mut pvc = pvc.clone();
    let named = volume_name(&pvc) == Some(pv.name_any().as_str());
    let completed = pvc.annotations().get(BIND_COMPLETED).map(String::as_str) == Some("yes");
    if !named || !completed {
        if !named {
            pvc.spec.get_or_insert_with(Default::default).volume_name = Some(pv.name_any());
            pvc.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        pvc.annotations_mut()
            .insert(BIND_COMPLETED.into(), "yes".into());
        pvc = claims
            .replace(&pvc.name_any(), &PostParams::default(), &pvc)
            .await?;
    }
    let want = PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        capacity: pv.spec.as_ref().and_then(|s| s.capacity.clone()),
        access_modes: pv.spec.as_ref().and_then(|s| s.access_modes.clone()),
        ..pvc.status.clone().unwrap_or_default()
    };
    if pvc.status.as_ref() != Some(&want) {
        pvc.status = Some(want);
        claims
            .replace_status(&pvc.name_any(), &PostParams::default(), &pvc)
            .await?;
    }
    Ok(())
}

async fn ensure_claim_phase(
    state: &State,
    pvc: &PersistentVolumeClaim,
    phase_: &str,
) -> kube::Result<()> {
    if claim_phase(pvc) == phase_ {
        return Ok(());
    }
    let mut pvc = pvc.clone();
    pvc.status.get_or_insert_with(Default::default).phase = Some(phase_.into());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(
        state.ctx.client.clone(),
        &pvc.namespace().unwrap_or_default(),
    );
    claims
        .replace_status(&pvc.name_any(), &PostParams::default(), &pvc)
        .await?;
    Ok(())
}

async fn sync_volume(
    pv: Arc<PersistentVolume>,
    state: Arc<State>,
) -> Result<Action, ReconcileError> {
    let key = key_of(pv.as_ref());
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(r) = claim_ref(&pv).cloned() else {
        state.set_volume_phase(&pv, "Available").await?;
        state.backoff.succeeded(&format!("volume/{key}"));
        return Ok(Action::await_change());
    };
    let uid = r.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        // Reserved for a claim that has not bound yet.
        state.set_volume_phase(&pv, "Available").await?;
        state.backoff.succeeded(&format!("volume/{key}"));
        return Ok(Action::await_change());
    }
    let (ns, name) = (r.namespace.unwrap_or_default(), r.name.unwrap_or_default());
    let mut claim = state
        .claims
        .get(&ObjectRef::new(&name).within(&ns))
        .map(|c| (*c).clone());
    if claim.is_none() {
        // The cache may simply not have the claim yet; releasing a volume is not undone,
        // so ask the apiserver before concluding the claim is gone.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(state.ctx.client.clone(), &ns);
        claim = api.get_opt(&name).await?;
    }
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
    match claim {
        None => release(&state, &pv).await?,
        Some(c) => match volume_name(&c) {
            None => {}
            Some(v) if v == pv.name_any() => state.set_volume_phase(&pv, "Bound").await?,
            Some(_) => {
                // The claim went to another volume: give this one back.
                let mut pv = (*pv).clone();
                let by_us = pv
                    .annotations()
                    .get(BOUND_BY_CONTROLLER)
                    .map(String::as_str)
                    == Some("yes");
                if let Some(spec) = pv.spec.as_mut() {
                    if by_us {
                        spec.claim_ref = None;
                    } else if let Some(r) = spec.claim_ref.as_mut() {
                        r.uid = None;
                    }
                }
                if by_us {
                    pv.annotations_mut().remove(BOUND_BY_CONTROLLER);
                }
                let pv = state
                    .pv_api()
                    .replace(&pv.name_any(), &PostParams::default(), &pv)
                    .await?;
                state.set_volume_phase(&pv, "Available").await?;
            }
        },
    }
    state.backoff.succeeded(&format!("volume/{key}"));
    Ok(Action::await_change())
}

/// The claim is gone: Released, then reclaimed as the volume's policy says.
async fn release(state: &State, pv: &PersistentVolume) -> kube::Result<()> {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    if phase(pv) != "Released" && phase(pv) != "Failed" {
        state.set_volume_phase(pv, "Released").await?;
    }
    if policy == "Delete" {
        match state
            .pv_api()
            .delete(&pv.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn claim_error_policy(
    pvc: Arc<PersistentVolumeClaim>,
    err: &ReconcileError,
    state: Arc<State>,
) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = key_of(pvc.as_ref());
    tracing::warn!("{NAME}: syncing claim {key}: {err}");
    Action::requeue(state.backoff.failed(&format!("claim/{key}")))
}

fn volume_error_policy(
    pv: Arc<PersistentVolume>,
    err: &ReconcileError,
    state: Arc<State>,
) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    let key = key_of(pv.as_ref());
    tracing::warn!("{NAME}: syncing volume {key}: {err}");
    Action::requeue(state.backoff.failed(&format!("volume/{key}")))
}
