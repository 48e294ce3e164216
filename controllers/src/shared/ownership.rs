//! Controller references: which object controls which, and adopting or releasing objects
//! as upstream's ControllerRefManager does (through patches guarded by the owner's uid).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The reference that marks `owner` as the controller of an object.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller reference of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `owner` (by uid) controls the object.
pub fn is_controlled_by(meta: &ObjectMeta, owner: &ObjectMeta) -> bool {
    controller_of(meta).is_some_and(|r| Some(&r.uid) == owner.uid.as_ref())
}

/// Makes `owner` the controller of an orphan. The patch carries the object's uid and
/// resourceVersion, so it fails rather than adopting something that changed meanwhile.
pub async fn adopt<K>(
    api: &Api<K>,
    object: &ObjectMeta,
    owner_ref: &OwnerReference,
) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut refs = object.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref.clone());
    let patch = json!({
        "metadata": {
            "uid": object.uid,
            "resourceVersion": object.resource_version,
            "ownerReferences": refs,
        }
    });
    api.patch(
        object.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

/// Removes `owner_uid`'s reference from an object that no longer matches its selector.
pub async fn release<K>(api: &Api<K>, object: &ObjectMeta, owner_uid: &str) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<OwnerReference> = object
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = json!({
        "metadata": {
            "uid": object.uid,
            "resourceVersion": object.resource_version,
            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        }
    });
    api.patch(
        object.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}
