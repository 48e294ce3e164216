//! One pass over a StatefulSet: bring its revisions, claims and pods one step closer to the
//! spec, in the order its pod management policy allows, then report status.

use std::time::Duration;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::identity::{self, ordinal_of};
use super::status::{self, Revisions};
use super::Ctx;
use crate::shared::{history, ownership, pods};

/// What a pass over the pods ended with.
#[derive(Default)]
struct Outcome {
    /// An ordered set stopped at a pod that is not yet ready (or is going away).
    blocked: bool,
    /// Ready pods that become available after minReadySeconds: look again then.
    requeue: Option<Duration>,
}

impl Outcome {
    fn wake_at(&mut self, d: Option<Duration>) {
        if let Some(d) = d {
            self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
        }
    }
}

pub async fn sync(set: &StatefulSet, state: &Ctx) -> Result<Action, kube::Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = state.ctx.client.clone();
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let selector = match serde_json::to_value(&spec.selector)
        .ok()
        .and_then(|v| Selector::from_label_selector(&v).ok())
    {
        Some(s) if !s.is_empty() => s,
        // A set that selects everything or nothing is invalid; upstream skips it too.
        _ => return Ok(Action::await_change()),
    };
    let sel = selector.to_string();
    let owner = ownership::controller_ref("apps/v1", "StatefulSet", &set.metadata);

    // Revisions: the update revision records the current template.
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut revs = history::list_owned(&rev_api, &set.metadata, &owner, &sel).await?;
    let mut collision = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let update_rev = history::current(
        &rev_api,
        &mut revs,
        history::HASH_LABEL,
        &set_name,
        &owner,
        &spec.template,
        &mut collision,
    )
    .await?;
    history::sort(&mut revs);
    let update_name = update_rev.metadata.name.clone().unwrap_or_default();
    let current_rev = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_ref())
        .and_then(|name| revs.iter().find(|r| r.metadata.name.as_ref() == Some(name)))
        .cloned()
        .unwrap_or_else(|| update_rev.clone());
    let current_name = current_rev.metadata.name.clone().unwrap_or_default();
    let current_template =
        history::template_of(&current_rev).unwrap_or_else(|| spec.template.clone());

    // Pods: the set's own, sorted into ordinal slots and condemned ones.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let mut slots: Vec<Option<Pod>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, Pod)> = Vec::new();
    for pod in pod_api
        .list(&ListParams::default().labels(&sel))
        .await?
        .items
    {
        let Some(ord) = ordinal_of(&set_name, pod.metadata.name.as_deref().unwrap_or("")) else {
            continue;
        };
        let pod = match ownership::controller_of(&pod.metadata) {
            Some(r) if Some(&r.uid) == set.metadata.uid.as_ref() => pod,
            Some(_) => continue,
            None => match ownership::adopt(&pod_api, &pod.metadata, &owner).await {
                Ok(p) => p,
                Err(_) => continue,
            },
        };
        match usize::try_from(ord - start)
            .ok()
            .filter(|&i| i < slots.len())
        {
            Some(i) => slots[i] = Some(pod),
            None => condemned.push((ord, pod)),
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let rolling_strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = rolling_strategy
        .type_
        .as_deref()
        .is_none_or(|t| t == "RollingUpdate");
    let partition = rolling_strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let has_partition = rolling_strategy
        .rolling_update
        .as_ref()
        .is_some_and(|r| r.partition.is_some());
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut out = Outcome::default();
    let set_owner_for_claims = retention_owner(set, "whenDeleted");

    // Replicas in range, lowest ordinal first.
    for (i, slot) in slots.iter_mut().enumerate() {
        let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
        let idx = i32::try_from(i).unwrap_or(i32::MAX);
        if let Some(p) = slot
            .as_ref()
            .filter(|p| pods::is_finished(p) && !pods::is_terminating(p))
        {
            // A finished pod never runs again: replace it under the same name.
            delete_pod(state, set, &pod_api, p).await?;
            *slot = None;
            if ordered {
                out.blocked = true;
                break;
            }
            continue;
        }
        match &*slot {
            None => {
                // Pods below the partition (or the current count) keep the current revision.
                let use_current = rolling
                    && ((!has_partition && idx < current_replicas)
                        || (has_partition && idx < partition));
                let (template, rev) = if use_current && current_name != update_name {
                    (&current_template, current_name.as_str())
                } else {
                    (&spec.template, update_name.as_str())
                };
                ensure_claims(state, set, &client, &ns, ord, set_owner_for_claims.as_ref()).await?;
                let pod = identity::new_pod(set, template, rev, ord, owner.clone());
                *slot = create_pod(state, set, &pod_api, &pod).await?;
                if ordered {
                    out.blocked = true;
                    break;
                }
            }
            Some(p) if pods::is_terminating(p) => {
                if ordered {
                    out.blocked = true;
                    break;
                }
            }
            Some(p) => {
                let (available, wait) = pods::availability(p, min_ready);
                out.wake_at(wait);
                if ordered && !(pods::is_running(p) && pods::is_ready(p) && available) {
                    out.blocked = true;
                    break;
                }
                ensure_claims(state, set, &client, &ns, ord, set_owner_for_claims.as_ref()).await?;
                if !identity::identity_matches(set, p, ord) {
                    fix_identity(state, set, &pod_api, p, ord).await?;
                }
            }
        }
    }

    // Condemned pods, highest ordinal first; an ordered set removes one at a time and only
    // once the rest are healthy.
    if !out.blocked {
        let first_unhealthy = condemned
            .iter()
            .rev()
            .find(|(_, p)| !(pods::is_running(p) && pods::is_ready(p)))
            .map(|(o, _)| *o);
        for (ord, p) in condemned.iter() {
            if pods::is_terminating(p) {
                if ordered {
                    out.blocked = true;
                    break;
                }
                continue;
            }
            if ordered
                && !(pods::is_running(p) && pods::is_ready(p))
                && Some(*ord) != first_unhealthy
            {
                out.blocked = true;
                break;
            }
            if retention_owner(set, "whenScaled").is_some() {
                hand_claims_to_pod(&client, &ns, set, *ord, p).await?;
            }
            delete_pod(state, set, &pod_api, p).await?;
            if ordered {
                out.blocked = true;
                break;
            }
        }
    }

    // Rolling update: from the highest ordinal down to the partition, one pod at a time.
    if !out.blocked && rolling {
        let lowest = usize::try_from(partition).unwrap_or(0);
        for i in (lowest..slots.len()).rev() {
            let Some(p) = slots[i].as_ref() else { break };
            if identity::revision_of(p) != Some(update_name.as_str()) && !pods::is_terminating(p) {
                delete_pod(state, set, &pod_api, p).await?;
                break;
            }
            if !(pods::is_running(p) && pods::is_ready(p) && pods::availability(p, min_ready).0) {
                break;
            }
        }
    }

    // History: keep revisions pods still use, plus revisionHistoryLimit others.
    let mut live = vec![current_name.clone(), update_name.clone()];
    for p in slots
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, p)| p))
    {
        if let Some(r) = identity::revision_of(p) {
            live.push(r.to_string());
        }
    }
    history::trim(
        &rev_api,
        &revs,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    let all: Vec<&Pod> = slots
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, p)| p))
        .collect();
    let revisions = Revisions {
        current: &current_name,
        update: &update_name,
        collision_count: collision,
    };
    let st = status::compute(set, &all, &revisions);
    status::write(&Api::namespaced(client, &ns), set, st).await?;
    Ok(match out.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The reference a claim gets under the set's retention policy for `field`
/// (`whenDeleted`/`whenScaled`), when that policy is Delete.
fn retention_owner(set: &StatefulSet, field: &str) -> Option<OwnerReference> {
    let policy = set
        .spec
        .as_ref()?
        .persistent_volume_claim_retention_policy
        .as_ref()?;
    let value = match field {
        "whenDeleted" => policy.when_deleted.as_deref(),
        _ => policy.when_scaled.as_deref(),
    };
    (value == Some("Delete")).then(|| {
        let mut r = ownership::controller_ref("apps/v1", "StatefulSet", &set.metadata);
        r.controller = Some(false);
        r
    })
}

async fn create_pod(
    state: &Ctx,
    set: &StatefulSet,
    api: &Api<Pod>,
    pod: &Pod,
) -> Result<Option<Pod>, kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => {
            state
                .event(
                    set,
                    false,
                    "SuccessfulCreate",
                    format!("create Pod {name} in StatefulSet {set_name} successful"),
                )
                .await;
            Ok(Some(p))
        }
        // Already there: our list was behind; the watch will bring it.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => {
            state
                .event(
                    set,
                    true,
                    "FailedCreate",
                    format!("create Pod {name} in StatefulSet {set_name} failed error: {e}"),
                )
                .await;
            Err(e)
        }
    }
}

async fn delete_pod(
    state: &Ctx,
    set: &StatefulSet,
    api: &Api<Pod>,
    pod: &Pod,
) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &Default::default()).await {
        Ok(_) => {
            state
                .event(
                    set,
                    false,
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {set_name} successful"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            state
                .event(
                    set,
                    true,
                    "FailedDelete",
                    format!("delete Pod {name} in StatefulSet {set_name} failed error: {e}"),
                )
                .await;
            Err(e)
        }
    }
}

/// Creates the claims pod `ordinal` needs that do not exist yet.
async fn ensure_claims(
    state: &Ctx,
    set: &StatefulSet,
    client: &kube::Client,
    ns: &str,
    ordinal: i32,
    owner: Option<&OwnerReference>,
) -> Result<(), kube::Error> {
    let claims = identity::claims_for(set, ordinal, owner);
    if claims.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let pod = identity::pod_name(&set_name, ordinal);
    for claim in claims {
        let name = claim.metadata.name.clone().unwrap_or_default();
        if api.get_opt(&name).await?.is_some() {
            continue;
        }
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                state
                    .event(
                        set,
                        false,
                        "SuccessfulCreate",
                        format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                state
                    .event(set, true, "FailedCreate", format!("create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"))
                    .await;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Under `whenScaled: Delete`, a condemned pod's claims become owned by the pod, so they go
/// when it does.
async fn hand_claims_to_pod(
    client: &kube::Client,
    ns: &str,
    set: &StatefulSet,
    ordinal: i32,
    pod: &Pod,
) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pod_ref = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(true),
    };
    for claim in identity::claims_for(set, ordinal, None) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let Some(existing) = api.get_opt(&name).await? else {
            continue;
        };
        let mut refs = existing
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        if refs.iter().any(|r| r.uid == pod_ref.uid) {
            continue;
        }
        refs.push(pod_ref.clone());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "ownerReferences": refs } })),
        )
        .await?;
    }
    Ok(())
}

async fn fix_identity(
    state: &Ctx,
    set: &StatefulSet,
    api: &Api<Pod>,
    pod: &Pod,
    ordinal: i32,
) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let patch = json!({ "metadata": { "labels": {
        identity::POD_NAME_LABEL: name,
        identity::POD_INDEX_LABEL: ordinal.to_string(),
    } } });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    state
        .event(
            set,
            false,
            "SuccessfulUpdate",
            format!("update Pod {name} in StatefulSet {set_name} successful"),
        )
        .await;
    Ok(())
}
