//! A deployment claims its replica sets as the ReplicaSet controller claims pods: adopt
//! matching orphans, release owned ones that stopped matching.

use ferrokube_common::labels::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::Api;
use kube::ResourceExt;

use crate::shared::ownership::{adopt, controller_of, controller_ref, is_controlled_by, release};

pub fn selector(d: &Deployment) -> Option<Selector> {
    let json = serde_json::to_value(&d.spec.as_ref()?.selector).ok()?;
    Selector::from_label_selector(&json)
        .ok()
        .filter(|s| !s.is_empty())
}

pub async fn claim(
    d: &Deployment,
    selector: &Selector,
    candidates: Vec<ReplicaSet>,
    client: &kube::Client,
) -> kube::Result<Vec<ReplicaSet>> {
    let ns = d.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let empty = Default::default();
    let mut out = Vec::new();
    let mut adoptable: Option<bool> = None;
    for rs in candidates {
        let matches = selector.matches(rs.metadata.labels.as_ref().unwrap_or(&empty));
        if is_controlled_by(&rs.metadata, &d.metadata) {
            if matches {
                out.push(rs);
            } else if rs.metadata.deletion_timestamp.is_none() {
                match release(&api, &rs.metadata, d.metadata.uid.as_deref().unwrap_or("")).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            continue;
        }
        if controller_of(&rs.metadata).is_some()
            || !matches
            || rs.metadata.deletion_timestamp.is_some()
            || d.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if adoptable.is_none() {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            adoptable = Some(match deployments.get(&d.name_any()).await {
                Ok(fresh) => {
                    fresh.metadata.uid == d.metadata.uid
                        && fresh.metadata.deletion_timestamp.is_none()
                }
                Err(_) => false,
            });
        }
        if adoptable != Some(true) {
            continue;
        }
        match adopt(
            &api,
            &rs.metadata,
            &controller_ref("apps/v1", "Deployment", &d.metadata),
        )
        .await
        {
            Ok(a) => out.push(a),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
