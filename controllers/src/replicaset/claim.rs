//! Claiming pods as upstream's ControllerRefManager does: adopt matching orphans, release
//! owned pods that stopped matching, ignore pods other controllers own.

use ferrokube_common::labels::Selector;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::ResourceExt;

use super::owner::ReplicaOwner;
use crate::shared::ownership::{adopt, controller_of, controller_ref, is_controlled_by, release};

fn matches(selector: &Selector, pod: &Pod) -> bool {
    let empty = Default::default();
    selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
}

/// Whether the owner as the apiserver has it now may still adopt: same uid, not being
/// deleted. A cached copy could be a deleted-and-recreated namesake.
async fn can_adopt<O: ReplicaOwner>(owners: &Api<O>, owner: &O) -> bool {
    match owners.get(&owner.name_any()).await {
        Ok(fresh) => {
            fresh.meta().uid == owner.meta().uid && fresh.meta().deletion_timestamp.is_none()
        }
        Err(_) => false,
    }
}

/// The owner's pods among `candidates` (already filtered to active pods of its namespace),
/// after adopting and releasing.
pub async fn claim<O: ReplicaOwner>(
    owners: &Api<O>,
    pods_api: &Api<Pod>,
    owner: &O,
    selector: &Selector,
    candidates: Vec<Pod>,
) -> kube::Result<Vec<Pod>> {
    let mut claimed = Vec::new();
    let mut adoptable: Option<bool> = None;
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    for pod in candidates {
        if is_controlled_by(&pod.metadata, owner.meta()) {
            if matches(selector, &pod) {
                claimed.push(pod);
            } else if pod.metadata.deletion_timestamp.is_none() {
                match release(pods_api, &pod.metadata, &owner_uid).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            continue;
        }
        let orphan = controller_of(&pod.metadata).is_none();
        if !orphan || !matches(selector, &pod) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if owner.meta().deletion_timestamp.is_some() {
            continue;
        }
        if adoptable.is_none() {
            adoptable = Some(can_adopt(owners, owner).await);
        }
        if adoptable != Some(true) {
            continue;
        }
        let r = controller_ref(&O::api_version(&()), &O::kind(&()), owner.meta());
        match adopt(pods_api, &pod.metadata, &r).await {
            Ok(adopted) => claimed.push(adopted),
            // Changed or gone since the cache saw it: the next event brings us back.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(claimed)
}
