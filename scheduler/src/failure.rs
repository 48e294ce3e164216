//! What the loop writes back when a pod did not get a node: the FailedScheduling event, the
//! PodScheduled=False condition, and preemption's side effects (victims marked and deleted,
//! the preemptor nominated).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Resource as _;
use serde_json::json;

use crate::framework::{Framework, PodInfo};
use crate::plugins::defaultpreemption;
use crate::recorder::Note;
use crate::scheduler::Scheduler;

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn pods(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    )
}

async fn patch_status(api: &Api<Pod>, name: &str, patch: serde_json::Value) {
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        tracing::debug!("patching the status of pod {name}: {e}");
    }
}

/// Records a failed attempt: a FailedScheduling event and, when it changed, the pod's
/// PodScheduled condition.
pub fn record(s: &Scheduler, fw: &Framework, info: &Arc<PodInfo>, reason: &str, message: &str) {
    let recorder = s
        .profiles
        .get(&fw.scheduler_name)
        .map(|p| p.recorder.clone());
    let current = info
        .pod
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let api = pods(&s.client, &info.pod);
    let info = info.clone();
    let slots = s.api_slots.clone();
    let (reason, message) = (reason.to_string(), message.to_string());
    tokio::spawn(async move {
        let _slot = slots.acquire_owned().await;
        if let Some(recorder) = recorder {
            let note = Note {
                warning: true,
                reason: "FailedScheduling",
                action: "Scheduling",
                note: message.clone(),
                related: None,
            };
            recorder.record(&info.pod, note).await;
        }
        if !unchanged {
            let condition = json!({
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": now(),
            });
            patch_status(
                &api,
                info.name(),
                json!({"status": {"conditions": [condition]}}),
            )
            .await;
        }
    });
}

/// Drops a nomination preemption no longer stands behind.
pub fn clear_nomination(s: &mut Scheduler, info: &Arc<PodInfo>) {
    let nominated = info
        .pod
        .status
        .as_ref()
        .and_then(|st| st.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    s.cluster.remove_nominated(info.uid());
    if nominated {
        let api = pods(&s.client, &info.pod);
        let name = info.name().to_string();
        tokio::spawn(async move {
            patch_status(&api, &name, json!({"status": {"nominatedNodeName": null}})).await;
        });
    }
}

/// Carries out a preemption decision: the preemptor is nominated to `node`, pods of lower
/// priority nominated there lose their nomination, and each victim gets the
/// DisruptionTarget condition and is deleted gracefully.
pub fn preempt(
    s: &mut Scheduler,
    fw: &Framework,
    info: &Arc<PodInfo>,
    node: &str,
    victims: &[Arc<Pod>],
) {
    s.metrics.inc("scheduler_preemption_attempts_total", &[]);
    s.metrics.observe(
        "scheduler_preemption_victims",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        &[],
        victims.len() as f64,
    );
    let displaced = defaultpreemption::lower_priority_nominated(&s.cluster, node, info.priority());
    for other in &displaced {
        s.cluster.remove_nominated(other.uid());
        let api = pods(&s.client, &other.pod);
        let name = other.name().to_string();
        tokio::spawn(async move {
            patch_status(&api, &name, json!({"status": {"nominatedNodeName": null}})).await;
        });
    }
    s.cluster.add_nominated(info.clone(), node);
    let api = pods(&s.client, &info.pod);
    let name = info.name().to_string();
    let nominated = node.to_string();
    tokio::spawn(async move {
        patch_status(
            &api,
            &name,
            json!({"status": {"nominatedNodeName": nominated}}),
        )
        .await;
    });

    let recorder = s
        .profiles
        .get(&fw.scheduler_name)
        .map(|p| p.recorder.clone());
    // Victims already on their way out need no second push.
    for victim in victims
        .iter()
        .filter(|v| v.metadata.deletion_timestamp.is_none())
    {
        let api = pods(&s.client, victim);
        let victim = victim.clone();
        let recorder = recorder.clone();
        let preemptor = info.pod.clone();
        let scheduler_name = fw.scheduler_name.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            let name = victim.metadata.name.clone().unwrap_or_default();
            let condition = json!({
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": format!("{scheduler_name}: preempting to accommodate a higher priority pod"),
                "lastProbeTime": null,
                "lastTransitionTime": now(),
            });
            patch_status(&api, &name, json!({"status": {"conditions": [condition]}})).await;
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!("deleting preemption victim {name}: {e}");
                return;
            }
            if let Some(recorder) = recorder {
                let uid = preemptor.metadata.uid.clone().unwrap_or_default();
                let note = Note {
                    warning: false,
                    reason: "Preempted",
                    action: "Preempting",
                    note: format!("Preempted by pod {uid} on node {node}"),
                    related: Some(preemptor.object_ref(&())),
                };
                recorder.record(&victim, note).await;
            }
        });
    }
}
