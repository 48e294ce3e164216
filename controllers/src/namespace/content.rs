//! Emptying a namespace: every namespaced resource the server serves (found through
//! discovery, so custom resources are included) is deleted, by collection where the
//! resource allows it, and what is left afterwards is counted for the conditions.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PropagationPolicy};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Client, ResourceExt};

use super::conditions::Findings;

/// The namespaced resources that can be deleted, in each group's preferred version.
pub async fn deletable_resources(
    client: &Client,
    findings: &mut Findings,
) -> Vec<(ApiResource, ApiCapabilities)> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        // Aggregated discovery is an optimisation; the per-group walk is the fallback.
        Err(_) => match Discovery::new(client.clone()).run().await {
            Ok(d) => d,
            Err(e) => {
                findings.discovery_error =
                    Some(format!("Discovery failed for some groups, 1 failing: {e}"));
                return Vec::new();
            }
        },
    };
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
            {
                out.push((ar, caps));
            }
        }
    }
    out
}

fn group_resource(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

/// Whether an error only says the thing is already gone or cannot be done this way.
fn ignorable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 405)
}

/// Deletes everything of one resource in `ns`, then records what remains and which
/// finalizers hold it.
pub async fn delete_all_of(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    findings: &mut Findings,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    // Background propagation, as upstream: the garbage collector takes care of dependents
    // outside the namespace, and nothing here should wait on it.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    if caps.supports_operation(verbs::DELETE_COLLECTION) {
        if let Err(e) = api.delete_collection(&dp, &ListParams::default()).await {
            if !ignorable(&e) {
                findings
                    .delete_errors
                    .push(format!("{}: {e}", group_resource(ar)));
            }
        }
    } else {
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for item in list.items {
                    if item.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if let Err(e) = api.delete(&item.name_any(), &dp).await {
                        if !ignorable(&e) {
                            findings
                                .delete_errors
                                .push(format!("{}: {e}", group_resource(ar)));
                        }
                    }
                }
            }
            Err(e) if ignorable(&e) => {}
            Err(e) => findings
                .delete_errors
                .push(format!("{}: {e}", group_resource(ar))),
        }
    }

    match api.list_metadata(&ListParams::default()).await {
        Ok(list) => {
            if !list.items.is_empty() {
                *findings.remaining.entry(group_resource(ar)).or_default() += list.items.len();
            }
            for item in &list.items {
                for f in item.finalizers() {
                    *findings.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
        }
        Err(e) if ignorable(&e) => {}
        Err(e) => findings
            .delete_errors
            .push(format!("{}: {e}", group_resource(ar))),
    }
}
