//! A job's pods: how they are stamped, classified, and released from the tracking finalizer.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde_json::json;

use crate::shared::ownership::controller_ref;
use crate::shared::pods::{from_template, generate_name_prefix};

/// Keeps a finished pod around until its outcome is counted in the job's status.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

pub fn succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// Upstream's notion of a failed pod: Failed, or deleted before it could finish unless the job
/// only replaces pods once they are really Failed (then the kubelet will say so).
pub fn failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && !succeeded(pod)
}

pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The completion index of an Indexed job's pod, from the annotation (the label mirrors it).
pub fn index_of(pod: &Pod) -> Option<i32> {
    let text = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    text.parse().ok().filter(|i: &i32| *i >= 0)
}

pub fn index_failures(pod: &Pod) -> i32 {
    let ann = pod.metadata.annotations.as_ref();
    ann.and_then(|a| a.get(INDEX_FAILURE_COUNT))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A new pod for the job; Indexed jobs pass the index and how often it already failed.
pub fn stamp(job: &Job, index: Option<(i32, i32)>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let owner = controller_ref("batch/v1", "Job", &job.metadata);
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let prefix = match index {
        Some((i, _)) => generate_name_prefix(&format!("{name}-{i}")),
        None => generate_name_prefix(&name),
    };
    let mut pod = from_template(&template, &ns, owner, &prefix);
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.to_string());
    if let Some((i, failures)) = index {
        let ann = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        ann.insert(COMPLETION_INDEX.into(), i.to_string());
        if job
            .spec
            .as_ref()
            .is_some_and(|s| s.backoff_limit_per_index.is_some())
        {
            ann.insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
        }
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

/// Drops the tracking finalizer. The patch carries the resourceVersion, so a stale view of the
/// pod cannot clobber other finalizers; on a conflict the pod is read again and retried.
pub async fn release(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let name = pod.meta().name.clone().unwrap_or_default();
    let mut current = pod.clone();
    for _ in 0..3 {
        if !has_finalizer(&current) {
            return Ok(());
        }
        let rest: Vec<&String> = current
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = json!({"metadata": {"resourceVersion": current.metadata.resource_version, "finalizers": rest}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await? {
                Some(fresh) if fresh.metadata.uid == pod.metadata.uid => current = fresh,
                _ => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
    Err(kube::Error::Api(
        kube::core::Status::failure("pod kept changing", "Conflict")
            .with_code(409)
            .boxed(),
    ))
}
