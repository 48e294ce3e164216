//! Finding or making the replica set of the current template, and keeping revision numbers:
//! the new RS gets one more than the highest old one, and the deployment mirrors it.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;

use super::conditions as cond;
use super::util::*;
use super::State;
use crate::shared::ownership::controller_ref;

/// Splits the deployment's RSes into the one matching its template (the oldest, should
/// there be several) and the rest.
pub fn split(d: &Deployment, rss: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    let want = template_without_hash(d.spec.as_ref().map(|s| &s.template));
    let mut rss = rss;
    rss.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    let pos = rss.iter().position(|r| {
        template_without_hash(r.spec.as_ref().and_then(|s| s.template.as_ref())) == want
    });
    let new = pos.map(|i| rss.remove(i));
    (new, rss)
}

/// The new RS (made when `create` and missing) and the old ones, with revisions synced.
pub async fn sync_revision(
    state: &State,
    d: &mut Deployment,
    rss: Vec<ReplicaSet>,
    create: bool,
) -> kube::Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
    let (new, old) = split(d, rss);
    let max_old = old.iter().map(rs_revision).max().unwrap_or(0);
    let revision = max_old + 1;
    let ns = d.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &ns);
    let new = match new {
        Some(rs) => Some(bump_existing(&rs_api, d, rs, revision).await?),
        None if create => Some(
            create_new(
                state,
                &rs_api,
                d,
                revision,
                old.iter().map(rs_replicas).sum(),
            )
            .await?,
        ),
        None => None,
    };
    if let Some(rs) = &new {
        let rev = rs_revision(rs);
        if revision_of(d.metadata.annotations.as_ref()) != rev {
            let api: Api<Deployment> = Api::namespaced(state.ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {REVISION: rev.to_string()}}});
            let updated = api
                .patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            d.metadata.annotations = updated.metadata.annotations;
            d.metadata.resource_version = updated.metadata.resource_version;
        }
    }
    Ok((new, old))
}

/// An existing RS taken back into use (a rollback) gets the next revision, remembering its
/// earlier ones in revision-history; its minReadySeconds follows the deployment's.
async fn bump_existing(
    api: &Api<ReplicaSet>,
    d: &Deployment,
    rs: ReplicaSet,
    revision: i64,
) -> kube::Result<ReplicaSet> {
    let current = rs_revision(&rs);
    let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let mut annotations = copied_annotations(d);
    let mut changed = annotations
        .iter()
        .any(|(k, v)| rs.metadata.annotations.as_ref().and_then(|a| a.get(k)) != Some(v));
    if current < revision {
        annotations.insert(REVISION.to_string(), revision.to_string());
        if current > 0 {
            let history = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_HISTORY))
                .map(|h| format!("{h},{current}"))
                .unwrap_or_else(|| current.to_string());
            annotations.insert(REVISION_HISTORY.to_string(), history);
        }
        changed = true;
    }
    if min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
        changed = true;
    }
    if !changed {
        return Ok(rs);
    }
    let patch = json!({
        "metadata": {"resourceVersion": rs.metadata.resource_version, "annotations": annotations},
        "spec": {"minReadySeconds": min_ready.unwrap_or(0)},
    });
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

async fn create_new(
    state: &State,
    api: &Api<ReplicaSet>,
    d: &mut Deployment,
    revision: i64,
    old_total: i32,
) -> kube::Result<ReplicaSet> {
    let Some(spec) = d.spec.as_ref() else {
        return Err(kube::Error::Api(
            kube::core::Status::failure("deployment has no spec", "Invalid").boxed(),
        ));
    };
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&template_without_hash(Some(&spec.template)), collisions);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let name = format!("{}-{hash}", d.name_any());
    let (surge, _) = surge_and_unavailable(d);
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), replicas(d).to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas(d) + surge).to_string());
    let mut rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": d.namespace(),
            "labels": meta.labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
            "selector": selector,
            "template": template,
        }
    }))
    .map_err(kube::Error::SerdeError)?;
    rs.metadata.owner_references = Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]);
    // Size it as the first step of the strategy would, so a fresh deployment starts at once.
    let initial = if is_recreate(d) {
        replicas(d)
    } else {
        first_size(d, old_total)
    };
    if let Some(s) = rs.spec.as_mut() {
        s.replicas = Some(initial);
    }
    let created = match api.create(&PostParams::default(), &rs).await {
        Ok(c) => c,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = crate::shared::ownership::is_controlled_by(&existing.metadata, &d.metadata);
            let same =
                template_without_hash(existing.spec.as_ref().and_then(|s| s.template.as_ref()))
                    == template_without_hash(Some(&spec.template));
            if ours && same {
                return Ok(existing);
            }
            // A different RS holds the name: count the collision so the next hash differs.
            bump_collision_count(state, d).await?;
            return Err(kube::Error::Api(e));
        }
        Err(e) => return Err(e),
    };
    if initial > 0 {
        state
            .event(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled up replica set {} from 0 to {initial}",
                    created.name_any()
                ),
            )
            .await;
    }
    let mut status = d.status.clone().unwrap_or_default();
    cond::set(
        &mut status,
        cond::new(
            cond::PROGRESSING,
            "True",
            cond::NEW_RS,
            format!("Created new replica set \"{}\"", created.name_any()),
            Timestamp::now(),
        ),
    );
    write_status(state, d, &status).await?;
    d.status = Some(status);
    Ok(created)
}

/// How big a brand-new RS starts during a rolling update: up to the surge room.
fn first_size(d: &Deployment, old_total: i32) -> i32 {
    let (surge, _) = surge_and_unavailable(d);
    let want = replicas(d);
    (want + surge - old_total).clamp(0, want)
}

async fn bump_collision_count(state: &State, d: &Deployment) -> kube::Result<()> {
    let n = d
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0)
        + 1;
    let api: Api<Deployment> =
        Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
    api.patch_status(
        &d.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"collisionCount": n}})),
    )
    .await
    .map(|_| ())
}

pub async fn write_status(
    state: &State,
    d: &Deployment,
    status: &DeploymentStatus,
) -> kube::Result<()> {
    if d.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<Deployment> =
        Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
    let mut body = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    // Merge patch: absent counters must be cleared explicitly.
    if let Some(o) = body.as_object_mut() {
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "conditions",
        ] {
            o.entry(k).or_insert(serde_json::Value::Null);
        }
    }
    api.patch_status(
        &d.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": body})),
    )
    .await
    .map(|_| ())
}
