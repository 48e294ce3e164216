//! One pass over a DaemonSet: record its revision, put a pod on every node that should have
//! one and take pods off nodes that should not, replace old pods within the update budget,
//! and report status.

use std::collections::BTreeMap;

use ferrokube_common::labels::Selector;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::{eligibility, pod, Ctx};
use crate::shared::{history, ownership, pods};

pub async fn sync(ds: &DaemonSet, state: &Ctx) -> Result<Action, kube::Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = state.ctx.client.clone();
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = match serde_json::to_value(&spec.selector)
        .ok()
        .and_then(|v| Selector::from_label_selector(&v).ok())
    {
        Some(s) if !s.is_empty() => s,
        _ => return Ok(Action::await_change()),
    };
    let sel = selector.to_string();
    let owner = ownership::controller_ref("apps/v1", "DaemonSet", &ds.metadata);

    // The revision of the current template; its hash labels the pods made from it.
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut revs = history::list_owned(&rev_api, &ds.metadata, &owner, &sel).await?;
    let mut collision = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let cur = history::current(
        &rev_api,
        &mut revs,
        history::REVISION_LABEL,
        &name,
        &owner,
        &spec.template,
        &mut collision,
    )
    .await?;
    let hash = cur
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(history::REVISION_LABEL).cloned())
        .unwrap_or_default();

    // Pods by the node they are for, oldest first.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in pod_api
        .list(&ListParams::default().labels(&sel))
        .await?
        .items
    {
        let p = match ownership::controller_of(&p.metadata) {
            Some(r) if Some(&r.uid) == ds.metadata.uid.as_ref() => p,
            Some(_) => continue,
            None => match ownership::adopt(&pod_api, &p.metadata, &owner).await {
                Ok(p) => p,
                Err(_) => continue,
            },
        };
        if let Some(node) = pod::target_node(&p) {
            by_node.entry(node).or_default().push(p);
        }
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
    }
    let updated = |p: &Pod| p.labels().get(history::REVISION_LABEL) == Some(&hash);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| pods::availability(p, min_ready).0;

    let judged = pod::judged_spec(ds);
    let nodes = state.nodes.state();
    let mut eligible: Vec<String> = Vec::new();
    let mut to_create: Vec<String> = Vec::new();
    let mut to_delete: Vec<Pod> = Vec::new();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy
        .type_
        .as_deref()
        .is_none_or(|t| t == "RollingUpdate");
    let ru = strategy.rolling_update.clone().unwrap_or_default();
    let surge_allowed = rolling && scaled(ru.max_surge.as_ref(), 0, 0) > 0;

    for node in &nodes {
        let node_name = node.name_any();
        let (run, keep) = eligibility::should_run(&judged, node);
        let live: Vec<&Pod> = by_node
            .get(&node_name)
            .map(|v| v.iter().filter(|p| !pods::is_terminating(p)).collect())
            .unwrap_or_default();
        if run {
            eligible.push(node_name.clone());
        }
        if !keep {
            to_delete.extend(live.into_iter().cloned());
            continue;
        }
        // Failed daemon pods are killed so that a fresh one takes their place.
        let (failed, running): (Vec<&Pod>, Vec<&Pod>) =
            live.into_iter().partition(|p| pods::phase(p) == "Failed");
        for p in failed {
            state
                .event(
                    ds,
                    true,
                    "FailedDaemonPod",
                    format!(
                        "Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it",
                        p.name_any()
                    ),
                )
                .await;
            to_delete.push(p.clone());
        }
        if running.is_empty() {
            if run {
                to_create.push(node_name.clone());
            }
        } else if running.len() > 1 {
            if surge_allowed {
                // During a surge one old and one new pod may share the node.
                let keep_new = running.iter().find(|p| updated(p)).map(|p| p.name_any());
                let keep_old = running.iter().find(|p| !updated(p)).map(|p| p.name_any());
                for p in &running {
                    let n = p.name_any();
                    if Some(&n) != keep_new.as_ref() && Some(&n) != keep_old.as_ref() {
                        to_delete.push((*p).clone());
                    }
                }
            } else {
                to_delete.extend(running[1..].iter().map(|p| (*p).clone()));
            }
        }
    }
    // Pods for nodes that no longer exist.
    for (node_name, list) in &by_node {
        if !nodes.iter().any(|n| &n.name_any() == node_name) {
            to_delete.extend(list.iter().filter(|p| !pods::is_terminating(p)).cloned());
        }
    }

    // Rolling update, only once the node-level work above is settled.
    if rolling && to_create.is_empty() && to_delete.is_empty() {
        let desired = i32::try_from(eligible.len()).unwrap_or(i32::MAX);
        let max_surge = scaled(ru.max_surge.as_ref(), desired, 0);
        let max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, 1);
        let mut unavailable = 0;
        let mut allowed_now: Vec<Pod> = Vec::new();
        let mut candidates: Vec<Pod> = Vec::new();
        let mut surge_nodes_now: Vec<String> = Vec::new();
        let mut surge_candidates: Vec<String> = Vec::new();
        let mut surging = 0;
        for node_name in &eligible {
            let live: Vec<&Pod> = by_node
                .get(node_name)
                .map(|v| v.iter().filter(|p| !pods::is_terminating(p)).collect())
                .unwrap_or_default();
            let new = live.iter().find(|p| updated(p));
            let old = live.iter().find(|p| !updated(p));
            if max_surge == 0 {
                match (old, new) {
                    (None, Some(n)) => {
                        if !available(n) {
                            unavailable += 1;
                        }
                    }
                    (Some(o), None) => {
                        if !available(o) {
                            allowed_now.push((*o).clone());
                        } else {
                            candidates.push((*o).clone());
                        }
                    }
                    _ => unavailable += 1,
                }
            } else {
                match (old, new) {
                    (None, _) => {}
                    (Some(o), _) if !available(o) => {
                        if new.is_none() {
                            surge_nodes_now.push(node_name.clone());
                        } else {
                            to_delete.push((*o).clone());
                        }
                    }
                    (Some(o), Some(n)) => {
                        surging += 1;
                        if available(n) {
                            to_delete.push((*o).clone());
                        }
                    }
                    (Some(_), None) => surge_candidates.push(node_name.clone()),
                }
            }
        }
        if max_surge == 0 {
            let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            to_delete.extend(allowed_now);
            to_delete.extend(candidates.into_iter().take(room));
        } else {
            let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
            to_create.extend(surge_nodes_now);
            to_create.extend(surge_candidates.into_iter().take(room));
        }
    }

    for node_name in &to_create {
        let p = pod::for_node(ds, node_name, &hash, owner.clone());
        match pod_api.create(&PostParams::default(), &p).await {
            Ok(created) => {
                state
                    .event(
                        ds,
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.name_any()),
                    )
                    .await;
                by_node.entry(node_name.clone()).or_default().push(created);
            }
            Err(e) => {
                state
                    .event(ds, true, "FailedCreate", format!("Error creating: {e}"))
                    .await;
                return Err(e);
            }
        }
    }
    for p in &to_delete {
        match pod_api.delete(&p.name_any(), &Default::default()).await {
            Ok(_) => {
                state
                    .event(
                        ds,
                        false,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", p.name_any()),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                state
                    .event(ds, true, "FailedDelete", format!("Error deleting: {e}"))
                    .await;
                return Err(e);
            }
        }
    }

    // History: keep the revisions pods still use, plus revisionHistoryLimit others.
    let mut live_revs = vec![cur.metadata.name.clone().unwrap_or_default()];
    for p in by_node.values().flatten() {
        if let Some(h) = p.labels().get(history::REVISION_LABEL) {
            for r in &revs {
                if r.labels().get(history::REVISION_LABEL) == Some(h) {
                    live_revs.push(r.name_any());
                }
            }
        }
    }
    history::sort(&mut revs);
    history::trim(
        &rev_api,
        &revs,
        &live_revs,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    // Status, from the pods as this pass left them.
    let deleted: Vec<String> = to_delete.iter().map(|p| p.name_any()).collect();
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: Some(collision),
        ..Default::default()
    };
    let mut number_available = 0;
    let mut number_ready = 0;
    let mut updated_scheduled = 0;
    for node in &nodes {
        let node_name = node.name_any();
        let (run, _) = eligibility::should_run(&judged, node);
        let live: Vec<&Pod> = by_node
            .get(&node_name)
            .map(|v| {
                v.iter()
                    .filter(|p| !pods::is_terminating(p) && !deleted.contains(&p.name_any()))
                    .collect()
            })
            .unwrap_or_default();
        if run {
            st.desired_number_scheduled += 1;
            if let Some(p) = live.iter().find(|p| updated(p)).or(live.first()) {
                st.current_number_scheduled += 1;
                if pods::is_ready(p) {
                    number_ready += 1;
                    if available(p) {
                        number_available += 1;
                    }
                }
                if updated(p) {
                    updated_scheduled += 1;
                }
            }
        } else if !live.is_empty() {
            st.number_misscheduled += 1;
        }
    }
    st.number_ready = number_ready;
    st.number_available = Some(number_available);
    st.number_unavailable = Some(st.desired_number_scheduled - number_available);
    st.updated_number_scheduled = Some(updated_scheduled);
    let mut old = ds.status.clone().unwrap_or_default();
    old.conditions = None;
    if old != st {
        Api::<DaemonSet>::namespaced(client, &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": st })),
            )
            .await?;
    }
    // Ready pods turn available after minReadySeconds without any event to wake us.
    let wait = by_node
        .values()
        .flatten()
        .filter_map(|p| pods::availability(p, min_ready).1)
        .min();
    Ok(wait.map_or_else(Action::await_change, Action::requeue))
}

/// An int-or-percent budget over `total`, percentages rounded up as upstream does.
fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
                Some(pct) => i32::try_from((pct * i64::from(total) + 99) / 100).unwrap_or(default),
                None => s.parse().unwrap_or(default),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 5, 1), 1);
        assert_eq!(scaled(Some(&IntOrString::String("50%".into())), 5, 1), 3);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 5, 1), 2);
        assert_eq!(scaled(None, 5, 1), 1);
    }
}
