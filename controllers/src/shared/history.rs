//! ControllerRevision history, as upstream's `controller/history` package keeps it for
//! StatefulSets and DaemonSets: a revision stores the pod template as a replace patch, is named
//! `<owner>-<hash>`, and carries its hash as a label so pods can point at it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::ownership;

/// The pod label naming the revision a pod was made from (upstream's
/// `ControllerRevisionHashLabelKey`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label a revision carries with its own hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Go's `fnv.New32` (FNV-1, not 1a), which upstream hashes revision data with.
fn fnv1_32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: maps every character into an alphabet without vowels
/// (so that hashes never spell words) and without look-alike characters.
pub fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The hash of revision data, with the collision count mixed in when there is one.
pub fn hash_data(raw: &[u8], collision_count: Option<i32>) -> String {
    let mut bytes = raw.to_vec();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv1_32(&bytes).to_string())
}

/// `<prefix>-<hash>`, with the prefix cut so the name fits 253 bytes.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut = prefix
        .char_indices()
        .nth(223)
        .map_or(prefix.len(), |(i, _)| i);
    format!("{}-{hash}", &prefix[..cut])
}

/// The data a revision stores for a pod template: a patch that replaces the template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// The pod template a revision recorded, if its data holds one.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Serialised revision data, the bytes the hash covers and equality compares.
pub fn raw(data: &Value) -> Vec<u8> {
    serde_json::to_vec(data).unwrap_or_default()
}

/// Whether two revisions hold the same data.
pub fn same_data(a: &ControllerRevision, b: &Value) -> bool {
    a.data.as_ref().map(|d| &d.0) == Some(b)
}

/// Revisions in ascending revision order, ties broken by creation time then name.
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The revision number after the newest of `revs`.
pub fn next_revision(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Revisions in the owner's namespace matching `selector` that the owner controls, adopting
/// orphans the selector matches as upstream does.
pub async fn list_owned(
    api: &Api<ControllerRevision>,
    owner: &ObjectMeta,
    owner_ref: &OwnerReference,
    selector: &str,
) -> kube::Result<Vec<ControllerRevision>> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let mut owned = Vec::new();
    for rev in list.items {
        match ownership::controller_of(&rev.metadata) {
            Some(r) if Some(&r.uid) == owner.uid.as_ref() => owned.push(rev),
            Some(_) => {}
            None if owner.deletion_timestamp.is_none() => {
                if let Ok(adopted) = ownership::adopt(api, &rev.metadata, owner_ref).await {
                    owned.push(adopted);
                }
            }
            None => {}
        }
    }
    sort(&mut owned);
    Ok(owned)
}

/// Creates a revision of `data` for the owner, its hash in `hash_label` (StatefulSets use
/// [`HASH_LABEL`], DaemonSets [`REVISION_LABEL`]). On a name clash with different data the
/// collision count goes up and the hash is taken again; a clash with equal data returns the
/// existing revision.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    api: &Api<ControllerRevision>,
    hash_label: &str,
    owner_name: &str,
    owner_ref: &OwnerReference,
    template_labels: &BTreeMap<String, String>,
    data: &Value,
    revision: i64,
    collision_count: &mut i32,
) -> kube::Result<ControllerRevision> {
    let bytes = raw(data);
    loop {
        let hash = hash_data(&bytes, Some(*collision_count));
        let mut labels = template_labels.clone();
        labels.insert(hash_label.to_string(), hash.clone());
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(owner_name, &hash)),
                labels: Some(labels),
                owner_references: Some(vec![owner_ref.clone()]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision,
        };
        match api.create(&PostParams::default(), &rev).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let name = rev.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                if same_data(&existing, data) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// The revision recording `template`: the newest one when it already does, an older one with
/// the same data renumbered to be the newest (a rollback), or a new one. `revs` (oldest
/// first) is kept in step.
pub async fn current(
    api: &Api<ControllerRevision>,
    revs: &mut Vec<ControllerRevision>,
    hash_label: &str,
    owner_name: &str,
    owner_ref: &OwnerReference,
    template: &PodTemplateSpec,
    collision_count: &mut i32,
) -> kube::Result<ControllerRevision> {
    let data = template_patch(template);
    let next = next_revision(revs);
    match revs.iter().rposition(|r| same_data(r, &data)) {
        Some(i) if i + 1 == revs.len() => Ok(revs[i].clone()),
        Some(i) => {
            let r = renumber(api, &revs[i], next).await?;
            revs[i] = r.clone();
            Ok(r)
        }
        None => {
            let labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let r = create(
                api,
                hash_label,
                owner_name,
                owner_ref,
                &labels,
                &data,
                next,
                collision_count,
            )
            .await?;
            revs.push(r.clone());
            Ok(r)
        }
    }
}

/// Moves an existing revision to number `revision` (a rollback to old data makes that
/// revision the newest again).
pub async fn renumber(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
    revision: i64,
) -> kube::Result<ControllerRevision> {
    if rev.revision == revision {
        return Ok(rev.clone());
    }
    let name = rev.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "revision": revision })),
    )
    .await
}

/// Deletes the oldest revisions that are not `live`, keeping `limit` of the rest.
pub async fn trim(
    api: &Api<ControllerRevision>,
    revs: &[ControllerRevision],
    live: &[String],
    limit: i32,
) -> kube::Result<()> {
    let dead: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| !live.iter().any(|l| Some(l) == r.metadata.name.as_ref()))
        .collect();
    let excess = dead
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    for rev in dead.into_iter().take(excess) {
        let name = rev.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_go() {
        // Go: fnv.New32() over "a" gives 0x050c5d7e.
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv1_32(b""), 0x811c_9dc5);
    }

    #[test]
    fn encoding_avoids_vowels() {
        let h = hash_data(b"{}", None);
        assert!(h.chars().all(|c| !"aeiou013".contains(c)));
        assert_ne!(hash_data(b"{}", Some(1)), h);
    }

    #[test]
    fn template_round_trips() {
        let t = PodTemplateSpec::default();
        let rev = ControllerRevision {
            data: Some(RawExtension(template_patch(&t))),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(t));
    }
}
