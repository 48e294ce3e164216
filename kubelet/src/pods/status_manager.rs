//! Sends pod statuses to the apiserver: each pod's newest status is kept here and posted as
//! soon as it differs from what was last posted, several pods at a time. Once a deleted pod
//! is fully stopped, the final delete (grace period 0, uid precondition) goes from here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::Notify;

/// Status posts in flight at once.
const PARALLEL_POSTS: usize = 16;

struct Entry {
    namespace: String,
    name: String,
    status: PodStatus,
    /// Whether the API object carries this pod's uid (not so for a static pod's mirror).
    same_uid: bool,
    /// What the apiserver has (what was posted last, or what the pod arrived with).
    posted: Option<PodStatus>,
}

pub struct StatusManager {
    client: kube::Client,
    pods: Mutex<HashMap<String, Entry>>,
    wake: Notify,
}

impl StatusManager {
    pub fn new(client: kube::Client) -> Arc<StatusManager> {
        Arc::new(StatusManager {
            client,
            pods: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the status the kubelet computed for `pod`; it is posted if it differs from
    /// what the apiserver has.
    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut pods = self.lock();
        let entry = pods.entry(uid).or_insert_with(|| Entry {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            status: status.clone(),
            same_uid: !super::static_pods::is_static(pod),
            posted: pod.status.clone(),
        });
        entry.status = status;
        let dirty = entry.posted.as_ref() != Some(&entry.status);
        drop(pods);
        if dirty {
            self.wake.notify_one();
        }
    }

    /// The status last computed for a pod.
    pub fn get(&self, uid: &str) -> Option<PodStatus> {
        self.lock().get(uid).map(|e| e.status.clone())
    }

    /// Posts the pod's status now if it is not what the apiserver has.
    pub async fn post_now(&self, uid: &str) {
        let entry = self.lock().get(uid).and_then(|e| {
            (e.posted.as_ref() != Some(&e.status))
                .then(|| (e.namespace.clone(), e.name.clone(), e.status.clone()))
        });
        if let Some((ns, name, status)) = entry {
            self.post(uid, &ns, &name, status).await;
        }
    }

    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Posts changed statuses until dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            let batch: Vec<(String, String, String, PodStatus)> = self
                .lock()
                .iter()
                .filter(|(_, e)| e.posted.as_ref() != Some(&e.status))
                .map(|(uid, e)| {
                    (
                        uid.clone(),
                        e.namespace.clone(),
                        e.name.clone(),
                        e.status.clone(),
                    )
                })
                .collect();
            let this = &self;
            futures::stream::iter(batch)
                .for_each_concurrent(PARALLEL_POSTS, |(uid, ns, name, status)| async move {
                    this.post(&uid, &ns, &name, status).await;
                })
                .await;
        }
    }

    async fn post(&self, uid: &str, ns: &str, name: &str, status: PodStatus) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let same_uid = self.lock().get(uid).is_some_and(|e| e.same_uid);
        // The uid in the patch makes it fail on a different pod of the same name; a static
        // pod's status goes to its mirror, which has a uid of its own.
        let patch = if same_uid {
            json!({ "metadata": { "uid": uid }, "status": status })
        } else {
            json!({ "status": status })
        };
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {
                if let Some(e) = self.lock().get_mut(uid) {
                    e.posted = Some(status);
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.lock().remove(uid);
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "failed to update pod status");
                // Try again shortly; a later set() also retries.
                let wake = async {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                };
                wake.await;
                self.wake.notify_one();
            }
        }
    }

    /// The kubelet's last word on a deleted pod once its containers are gone: remove the
    /// object for good, but only if it is still the same pod.
    pub async fn finish_deletion(&self, ns: &str, name: &str, uid: &str) -> kube::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
        self.forget(uid);
        Ok(())
    }
}
