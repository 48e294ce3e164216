//! What the collector does to one object (upstream's attemptToDeleteItem and
//! attemptToOrphan): owners are always checked live, by name and uid, before anything is
//! deleted, so a stale graph can never cost a dependent with a living owner.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::json;

use super::graph::{Node, FOREGROUND, ORPHAN};
use super::Collector;

/// How an owner reference stands, as upstream classifies them.
enum OwnerState {
    /// The owner exists and is not waiting on its dependents.
    Solid,
    /// No object with that name and uid exists.
    Dangling,
    /// The owner is being deleted in the foreground: its dependents go first.
    WaitingForDependents,
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn api_for(c: &Collector, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(c.ctx.client.clone(), ns, resource),
        None => Api::all_with(c.ctx.client.clone(), resource),
    }
}

async fn owner_state(
    c: &Collector,
    dependent: &Node,
    r: &OwnerReference,
) -> anyhow::Result<OwnerState> {
    let Some((resource, namespaced)) = c.resolve(&r.api_version, &r.kind) else {
        anyhow::bail!("unable to resolve owner kind {} {}", r.api_version, r.kind);
    };
    // A namespaced owner lives in its dependent's namespace; a cluster-scoped dependent
    // cannot have one.
    let ns = if namespaced {
        match &dependent.namespace {
            Some(ns) => Some(ns.as_str()),
            None => return Ok(OwnerState::Dangling),
        }
    } else {
        None
    };
    let api = api_for(c, &resource, ns);
    match api.get_metadata(&r.name).await {
        Ok(owner) if owner.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
            let m = &owner.metadata;
            let foreground = m.deletion_timestamp.is_some()
                && m.finalizers.iter().flatten().any(|f| f == FOREGROUND);
            Ok(if foreground {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            })
        }
        Ok(_) => Ok(OwnerState::Dangling),
        Err(e) if not_found(&e) => Ok(OwnerState::Dangling),
        Err(e) => Err(e.into()),
    }
}

pub async fn attempt_to_delete(c: &Arc<Collector>, uid: &str) -> anyhow::Result<()> {
    let Some(node) = c.graph().get(uid).cloned() else {
        return Ok(());
    };
    if node.deleting_dependents() {
        return finish_foreground(c, &node).await;
    }
    if node.being_deleted || node.owners.is_empty() {
        return Ok(());
    }
    // The object itself, live: the graph may lag behind a re-pointed or deleted object.
    let api = api_for(c, &node.resource, node.namespace.as_deref());
    let live = match api.get_metadata(&node.name).await {
        Ok(o) if o.metadata.uid.as_deref() == Some(uid) => o.metadata,
        Ok(_) => return Ok(()),
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if live.deletion_timestamp.is_some() {
        return Ok(());
    }
    let mut node = node;
    node.owners = live.owner_references.clone().unwrap_or_default();
    if node.owners.is_empty() {
        return Ok(());
    }

    let mut solid = 0;
    let mut gone: Vec<String> = Vec::new();
    let mut waiting: Vec<String> = Vec::new();
    for r in &node.owners {
        match owner_state(c, &node, r).await? {
            OwnerState::Solid => solid += 1,
            OwnerState::Dangling => gone.push(r.uid.clone()),
            OwnerState::WaitingForDependents => waiting.push(r.uid.clone()),
        }
    }

    if solid > 0 {
        // Something still owns it: it stays, only the references to owners that are gone
        // or going are dropped.
        if gone.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let keep: Vec<&OwnerReference> = node
            .owners
            .iter()
            .filter(|r| !gone.contains(&r.uid) && !waiting.contains(&r.uid))
            .collect();
        patch_owner_refs(&api, &live, json!(keep)).await?;
        return Ok(());
    }

    let has_dependents = !c.graph().dependents(uid).is_empty();
    let policy = if !waiting.is_empty() && has_dependents {
        // Its own dependents could be blocking the foreground owner, and it them: stop
        // blocking the owner first so that a cycle cannot deadlock.
        let unblocked: Vec<OwnerReference> = node
            .owners
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if waiting.contains(&r.uid) {
                    r.block_owner_deletion = Some(false);
                }
                r
            })
            .collect();
        if unblocked != node.owners {
            patch_owner_refs(&api, &live, json!(unblocked)).await?;
        }
        PropagationPolicy::Foreground
    } else if live.finalizers.iter().flatten().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if live.finalizers.iter().flatten().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::info!(object = %node.name, resource = %node.resource.plural, "garbage collecting");
    match api.delete(&node.name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        // A uid precondition failure means a new object took the name: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn patch_owner_refs(
    api: &Api<DynamicObject>,
    live: &ObjectMeta,
    refs: serde_json::Value,
) -> anyhow::Result<()> {
    let refs = if refs.as_array().is_some_and(|a| a.is_empty()) {
        serde_json::Value::Null
    } else {
        refs
    };
    let patch = json!({"metadata": {
        "uid": live.uid,
        "resourceVersion": live.resource_version,
        "ownerReferences": refs,
    }});
    match api
        .patch(
            live.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// An owner in foreground deletion: its blocking dependents are deleted, and once none is
/// left its `foregroundDeletion` finalizer is removed so the apiserver can let it go.
async fn finish_foreground(c: &Arc<Collector>, owner: &Node) -> anyhow::Result<()> {
    let dependents = c.graph().dependents(&owner.uid);
    let blocking: Vec<&Node> = dependents
        .iter()
        .filter(|d| {
            d.owners
                .iter()
                .any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true))
        })
        .collect();
    if !blocking.is_empty() {
        for d in dependents.iter().filter(|d| !d.being_deleted) {
            c.enqueue(super::graph::Work::AttemptToDelete(d.uid.clone()));
        }
        return Ok(());
    }
    // Non-blocking dependents are deleted too, without waiting for them.
    for d in dependents.iter().filter(|d| !d.being_deleted) {
        c.enqueue(super::graph::Work::AttemptToDelete(d.uid.clone()));
    }
    remove_finalizer(c, owner, FOREGROUND).await
}

async fn remove_finalizer(c: &Collector, node: &Node, finalizer: &str) -> anyhow::Result<()> {
    let api = api_for(c, &node.resource, node.namespace.as_deref());
    let live = match api.get_metadata(&node.name).await {
        Ok(o) if o.metadata.uid.as_deref() == Some(node.uid.as_str()) => o.metadata,
        Ok(_) => return Ok(()),
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let finalizers: Vec<String> = live.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let left: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {
        "uid": live.uid,
        "resourceVersion": live.resource_version,
        "finalizers": if left.is_empty() { serde_json::Value::Null } else { json!(left) },
    }});
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// An owner deleted with the Orphan policy: every dependent loses its reference to it, then
/// the owner loses its `orphan` finalizer.
pub async fn attempt_to_orphan(c: &Arc<Collector>, uid: &str) -> anyhow::Result<()> {
    let Some(owner) = c.graph().get(uid).cloned() else {
        return Ok(());
    };
    if !owner.orphaning() {
        return Ok(());
    }
    let dependents = c.graph().dependents(uid);
    for d in dependents {
        let api = api_for(c, &d.resource, d.namespace.as_deref());
        let live = match api.get_metadata(&d.name).await {
            Ok(o) if o.metadata.uid.as_deref() == Some(d.uid.as_str()) => o.metadata,
            Ok(_) => continue,
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        let refs = live.owner_references.clone().unwrap_or_default();
        if !refs.iter().any(|r| r.uid == uid) {
            continue;
        }
        let keep: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
        patch_owner_refs(&api, &live, json!(keep)).await?;
    }
    remove_finalizer(c, &owner, ORPHAN).await
}
