//! The API side of volume binding, run in PreBind: write the bindings the scheduler chose
//! (a claimRef on each chosen PV, the selected node on each claim to provision), then wait
//! on watches until the PV controller has bound every claim, or something says it won't.

use std::convert::Infallible;
use std::fmt::Debug;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::storage::*;
use super::Reserved;

fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

fn name_of<K: Resource>(obj: &K) -> &str {
    obj.meta().name.as_deref().unwrap_or_default()
}

fn namespace_of<K: Resource>(obj: &K) -> &str {
    obj.meta().namespace.as_deref().unwrap_or_default()
}

/// Makes the API updates for the reserved bindings and waits (at most `timeout`) until
/// the PV controller has bound all the pod's claims it touched.
pub async fn bind_pod_volumes(
    client: &kube::Client,
    timeout: Duration,
    pod: &Pod,
    reserved: &Reserved,
) -> Result<(), String> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for (pv, _) in &reserved.bindings {
        pvs.replace(name_of(pv.as_ref()), &PostParams::default(), pv)
            .await
            .map_err(api_error)?;
    }
    for claim in &reserved.provisions {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(client.clone(), namespace_of(claim.as_ref()));
        claims
            .replace(name_of(claim.as_ref()), &PostParams::default(), claim)
            .await
            .map_err(api_error)?;
    }
    match tokio::time::timeout(timeout, wait_for_bindings(client, pod, reserved)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("binding volumes: {e}")),
        Err(_) => Err("binding volumes: context deadline exceeded".to_string()),
    }
}

async fn wait_for_bindings(
    client: &kube::Client,
    pod: &Pod,
    reserved: &Reserved,
) -> Result<(), String> {
    let node = reserved.node.as_str();
    let claims_api = |claim: &PersistentVolumeClaim| -> Api<PersistentVolumeClaim> {
        Api::namespaced(client.clone(), namespace_of(claim))
    };

    let mut bound = Vec::new();
    for (_, claim) in &reserved.bindings {
        let name = name_of(claim.as_ref()).to_string();
        bound.push(futures::future::Either::Left(watch_until(
            claims_api(claim),
            name.clone(),
            move |pvc: Option<&PersistentVolumeClaim>| match pvc {
                None => Some(Err(format!(
                    "failed to check binding: {}",
                    not_found("persistentvolumeclaim", &name)
                ))),
                Some(pvc) if is_fully_bound(pvc) => Some(Ok(pvc.clone())),
                Some(_) => None,
            },
        )));
    }
    for claim in &reserved.provisions {
        let name = name_of(claim.as_ref()).to_string();
        let node = node.to_string();
        bound.push(futures::future::Either::Right(watch_until(
            claims_api(claim),
            name.clone(),
            move |pvc: Option<&PersistentVolumeClaim>| {
                let Some(pvc) = pvc else {
                    return Some(Err(format!(
                        "failed to check provisioning pvc: {}",
                        not_found("persistentvolumeclaim", &name)
                    )));
                };
                if pvc.metadata.annotations.is_none() {
                    return Some(Err(format!(
                        "selectedNode annotation reset for PVC {name:?}"
                    )));
                }
                // The provisioner drops the selected node to hand the claim back to us.
                if annotation(&pvc.metadata, ANN_SELECTED_NODE) != Some(node.as_str()) {
                    return Some(Err(format!("provisioning failed for PVC {name:?}")));
                }
                is_fully_bound(pvc).then(|| Ok(pvc.clone()))
            },
        )));
    }

    // Anything that makes the binding impossible ends the wait early: the pod going away,
    // or the PV controller dropping a claimRef we wrote.
    let mut failures: FuturesUnordered<futures::future::BoxFuture<'_, String>> =
        FuturesUnordered::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace_of(pod));
    let pod_name = name_of(pod).to_string();
    let pod_uid = pod.metadata.uid.clone();
    failures.push(Box::pin(async move {
        let gone = format!(
            "pod does not exist any more: {}",
            not_found("pods", &pod_name)
        );
        never(
            watch_until(pods, pod_name.clone(), move |p: Option<&Pod>| match p {
                Some(p) if p.metadata.uid == pod_uid => None,
                _ => Some(Err(gone.clone())),
            })
            .await,
        )
    }));
    for (pv, _) in &reserved.bindings {
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        let name = name_of(pv.as_ref()).to_string();
        failures.push(Box::pin(async move {
            never(
                watch_until(pvs, name.clone(), move |pv: Option<&PersistentVolume>| {
                    let Some(pv) = pv else {
                        return Some(Err(format!(
                            "failed to check binding: {}",
                            not_found("persistentvolume", &name)
                        )));
                    };
                    let reset = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_none_or(|r| r.uid.as_deref().unwrap_or_default().is_empty());
                    reset.then(|| Err(format!("ClaimRef got reset for pv {name:?}")))
                })
                .await,
            )
        }));
    }
    let first_failure = async move {
        match failures.next().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    };

    let claims = tokio::select! {
        claims = futures::future::try_join_all(bound) => claims?,
        e = first_failure => return Err(e),
    };

    // A provisioned PV (or one whose node changed labels) must still be reachable from the
    // node the pod is about to be bound to.
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for claim in claims {
        let pv_name = volume_name(&claim);
        let pv = pvs.get(pv_name).await.map_err(api_error)?;
        if !node_affinity_matches(&pv, &reserved.node_labels) {
            return Err(format!(
                "pv {pv_name:?} node affinity doesn't match node {node:?}: no matching NodeSelectorTerms"
            ));
        }
    }
    Ok(())
}

fn never(r: Result<Infallible, String>) -> String {
    match r {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Watches one object by name until `decide` returns a verdict (`None`: keep waiting). The
/// object is `None` when it does not exist. Watch errors are retried with backoff: the
/// caller's timeout bounds the wait.
async fn watch_until<K, T>(
    api: Api<K>,
    name: String,
    mut decide: impl FnMut(Option<&K>) -> Option<Result<T, String>>,
) -> Result<T, String>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut seen = false;
    while let Some(event) = events.next().await {
        let verdict = match event {
            Err(e) => {
                tracing::debug!(object = %name, error = %e, "watch failed while waiting for volume binding");
                None
            }
            Ok(Event::Init) => {
                seen = false;
                None
            }
            Ok(Event::InitApply(obj)) => {
                seen = true;
                decide(Some(&obj))
            }
            Ok(Event::InitDone) if !seen => decide(None),
            Ok(Event::InitDone) => None,
            Ok(Event::Apply(obj)) => decide(Some(&obj)),
            Ok(Event::Delete(_)) => decide(None),
        };
        if let Some(verdict) = verdict {
            return verdict;
        }
    }
    Err(format!("the watch on {name:?} ended"))
}
