//! How many pods a budget expects, and how many of them must stay healthy. A percentage (or
//! maxUnavailable) is taken of the pods' controllers' declared scale, not of the pods that
//! happen to exist, so a budget cannot be satisfied by a workload that lost pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client};

use super::status::scaled;

pub struct Expected {
    pub expected: i32,
    pub desired_healthy: i32,
    /// Pods without a controller; a percentage budget cannot account for them.
    pub unmanaged: Vec<String>,
}

/// Upstream's getExpectedPodCount.
pub async fn expected(
    client: &Client,
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
) -> anyhow::Result<Expected> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = controllers_scale(client, ns, pods).await?;
        let max = scaled(max_unavailable, expected).map_err(anyhow::Error::msg)?;
        return Ok(Expected {
            expected,
            desired_healthy: (expected - max).max(0),
            unmanaged,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Expected {
            expected: pods.len() as i32,
            desired_healthy: *n,
            unmanaged: Vec::new(),
        }),
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = controllers_scale(client, ns, pods).await?;
            let desired_healthy = scaled(min, expected).map_err(anyhow::Error::msg)?;
            Ok(Expected {
                expected,
                desired_healthy,
                unmanaged,
            })
        }
        None => Ok(Expected {
            expected: 0,
            desired_healthy: 0,
            unmanaged: Vec::new(),
        }),
    }
}

/// Sums the declared replicas of the distinct controllers of `pods`.
async fn controllers_scale(
    client: &Client,
    ns: &str,
    pods: &[&Pod],
) -> anyhow::Result<(i32, Vec<String>)> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    let mut seen_refs: BTreeMap<String, ()> = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(owner) = crate::shared::ownership::controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        if seen_refs.insert(owner.uid.clone(), ()).is_some() {
            continue;
        }
        match scale_of(client, ns, owner).await? {
            Some((uid, replicas)) => {
                scales.insert(uid, replicas);
            }
            None => anyhow::bail!("found no controllers for pod {name:?}"),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The (uid, replicas) of the workload that finally owns a pod through `owner`: a
/// ReplicaSet run by a Deployment answers with the Deployment's scale.
async fn scale_of(
    client: &Client,
    ns: &str,
    owner: &OwnerReference,
) -> anyhow::Result<Option<(String, i32)>> {
    let group = group_of(&owner.api_version);
    match (group, owner.kind.as_str()) {
        ("", "ReplicationController") => {
            let rc = Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?;
            Ok(rc
                .filter(|o| o.metadata.uid.as_deref() == Some(&owner.uid))
                .map(|o| {
                    (
                        owner.uid.clone(),
                        o.spec.and_then(|s| s.replicas).unwrap_or(1),
                    )
                }))
        }
        ("apps", "ReplicaSet") => {
            let Some(rs) = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?
                .filter(|o| o.metadata.uid.as_deref() == Some(&owner.uid))
            else {
                return Ok(None);
            };
            if let Some(dep_ref) = crate::shared::ownership::controller_of(&rs.metadata)
                .filter(|r| r.kind == "Deployment" && group_of(&r.api_version) == "apps")
            {
                let dep = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(&dep_ref.name)
                    .await?;
                return Ok(dep
                    .filter(|d| d.metadata.uid.as_deref() == Some(&dep_ref.uid))
                    .map(|d| {
                        (
                            dep_ref.uid.clone(),
                            d.spec.and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }));
            }
            Ok(Some((
                owner.uid.clone(),
                rs.spec.and_then(|s| s.replicas).unwrap_or(1),
            )))
        }
        ("apps", "StatefulSet") => {
            let ss = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?;
            Ok(ss
                .filter(|o| o.metadata.uid.as_deref() == Some(&owner.uid))
                .map(|o| {
                    (
                        owner.uid.clone(),
                        o.spec.and_then(|s| s.replicas).unwrap_or(1),
                    )
                }))
        }
        _ => Ok(None),
    }
}
