//! Creating and deleting pods to reach the wanted count: creations in slow-start batches
//! (1, 2, 4, ...) so a failing template costs one request rather than hundreds, deletions of
//! the least valuable pods first.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::owner::ReplicaOwner;
use super::podutil::sort_least_valuable_first;
use super::status::Failure;
use super::State;
use crate::shared::ownership::controller_ref;
use crate::shared::pods::{from_template, generate_name_prefix};

/// At most this many creations or deletions per sync, as upstream's burstReplicas.
const BURST: usize = 500;

pub async fn manage<O: ReplicaOwner>(
    state: &State<O>,
    owner: &O,
    key: &str,
    pods: &[Pod],
) -> Option<Failure> {
    let want = owner.replicas().max(0) as usize;
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    if pods.len() < want {
        create(state, owner, key, &api, (want - pods.len()).min(BURST)).await
    } else if pods.len() > want {
        let mut victims = pods.to_vec();
        sort_least_valuable_first(&mut victims);
        victims.truncate((pods.len() - want).min(BURST));
        delete(state, owner, key, &api, victims).await
    } else {
        None
    }
}

async fn create<O: ReplicaOwner>(
    state: &State<O>,
    owner: &O,
    key: &str,
    api: &Api<Pod>,
    n: usize,
) -> Option<Failure> {
    let template = owner.template()?;
    let ns = owner.namespace().unwrap_or_default();
    let r = controller_ref(&O::api_version(&()), &O::kind(&()), owner.meta());
    let pod = from_template(template, &ns, r, &generate_name_prefix(&owner.name_any()));
    let mut batch = 1;
    let mut left = n;
    while left > 0 {
        let size = batch.min(left);
        let pp = PostParams::default();
        let results = futures::future::join_all((0..size).map(|_| api.create(&pp, &pod))).await;
        let mut failed = None;
        for res in results {
            match res {
                Ok(created) => {
                    let name = created.name_any();
                    state.tracker.created(key, &name);
                    state
                        .event(
                            owner,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        )
                        .await;
                }
                Err(e) => {
                    let msg = error_text(&e);
                    if !namespace_terminating(&e) {
                        state
                            .event(
                                owner,
                                EventType::Warning,
                                "FailedCreate",
                                format!("Error creating: {msg}"),
                            )
                            .await;
                    }
                    failed.get_or_insert(msg);
                }
            }
        }
        if let Some(message) = failed {
            return Some(Failure {
                reason: "FailedCreate",
                message,
            });
        }
        left -= size;
        batch *= 2;
    }
    None
}

async fn delete<O: ReplicaOwner>(
    state: &State<O>,
    owner: &O,
    key: &str,
    api: &Api<Pod>,
    victims: Vec<Pod>,
) -> Option<Failure> {
    for v in &victims {
        state
            .tracker
            .deleted(key, &v.name_any(), v.metadata.uid.as_deref().unwrap_or(""));
    }
    let dp = DeleteParams::default();
    let names: Vec<String> = victims.iter().map(|v| v.name_any()).collect();
    let results = futures::future::join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let mut failed = None;
    for (v, res) in victims.iter().zip(results) {
        let name = v.name_any();
        match res {
            Ok(_) => {
                state
                    .event(
                        owner,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let msg = error_text(&e);
                state
                    .event(
                        owner,
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {msg}"),
                    )
                    .await;
                failed.get_or_insert(msg);
            }
        }
    }
    failed.map(|message| Failure {
        reason: "FailedDelete",
        message,
    })
}

fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")),
        _ => false,
    }
}
