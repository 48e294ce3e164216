//! The kubelet's Node: registration, the status loop (posted when something changed or the
//! report period passed) and the Lease heartbeat.

pub mod lease;
pub mod machine;
pub mod status;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, GetParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::runtime::{api, Runtime};
use machine::Machine;

pub struct Settings {
    pub name: String,
    pub node_ip: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// The port the kubelet server listens on; set once it is bound.
    pub kubelet_port: std::sync::atomic::AtomicI32,
    pub max_pods: i64,
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    pub eviction_hard: BTreeMap<String, String>,
    pub update_frequency: Duration,
    pub report_frequency: Duration,
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
}

pub struct NodeAgent {
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    settings: Settings,
    machine: Machine,
    /// The Node as last read or written; pod code reads its uid, podCIDR and addresses.
    node: watch::Sender<Option<Node>>,
    /// Set by the eviction manager.
    pressure: Arc<crate::eviction::Pressure>,
}

impl NodeAgent {
    pub fn new(
        client: kube::Client,
        runtime: Arc<dyn Runtime>,
        settings: Settings,
        machine: Machine,
    ) -> Arc<NodeAgent> {
        Arc::new(NodeAgent {
            client,
            runtime,
            settings,
            machine,
            node: watch::channel(None).0,
            pressure: Arc::default(),
        })
    }

    /// The pressure flags the Node's conditions report.
    pub fn pressure(&self) -> Arc<crate::eviction::Pressure> {
        self.pressure.clone()
    }

    /// The port the Node reports for the kubelet API.
    pub fn set_kubelet_port(&self, port: i32) {
        self.settings
            .kubelet_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Follows the Node object as this agent last saw it.
    pub fn subscribe(&self) -> watch::Receiver<Option<Node>> {
        self.node.subscribe()
    }

    fn api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// The labels upstream's kubelet puts on its Node.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let arch = machine::go_arch().to_string();
        labels.insert("kubernetes.io/hostname".into(), self.settings.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), arch.clone());
        labels.insert("beta.kubernetes.io/os".into(), "linux".into());
        labels.insert("beta.kubernetes.io/arch".into(), arch);
        labels.extend(self.settings.labels.clone());
        labels
    }

    /// Registers the Node, retrying until the apiserver takes it. An existing Node of the same
    /// name is taken over, as upstream does after a kubelet restart.
    pub async fn register(&self) -> Node {
        let mut failures = 0u32;
        loop {
            match self.try_register().await {
                Ok(node) => {
                    self.node.send_replace(Some(node.clone()));
                    return node;
                }
                Err(e) => {
                    tracing::warn!(node = %self.settings.name, error = %e, "unable to register node");
                    tokio::time::sleep(lease::retry_delay(failures)).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    async fn try_register(&self) -> kube::Result<Node> {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                labels: Some(self.labels()),
                annotations: Some(
                    [(
                        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.settings.taints.is_empty()).then(|| self.settings.taints.clone()),
                ..Default::default()
            }),
            status: None,
        };
        match self.api().create(&PostParams::default(), &node).await {
            Ok(n) => {
                tracing::info!(node = %self.settings.name, "successfully registered node");
                Ok(n)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = self.api().get(&self.settings.name).await?;
                // Keep the labels the kubelet owns current on a node it takes over.
                let missing: BTreeMap<_, _> = self
                    .labels()
                    .into_iter()
                    .filter(|(k, v)| {
                        existing.metadata.labels.as_ref().and_then(|l| l.get(k)) != Some(v)
                    })
                    .collect();
                if missing.is_empty() {
                    return Ok(existing);
                }
                self.api()
                    .patch(
                        &self.settings.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "labels": missing } })),
                    )
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// Why the node is not ready, from the runtime's own conditions.
    async fn runtime_problems(&self) -> (Vec<String>, String) {
        let version = match self.runtime.version(api::VersionRequest::default()).await {
            Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(e) => {
                return (
                    vec![format!("container runtime is down: {}", e.message())],
                    String::new(),
                )
            }
        };
        let status = match self.runtime.status(api::StatusRequest::default()).await {
            Ok(s) => s.status.unwrap_or_default(),
            Err(e) => {
                return (
                    vec![format!(
                        "container runtime status check failed: {}",
                        e.message()
                    )],
                    version,
                )
            }
        };
        let mut problems = Vec::new();
        for (kind, label) in [
            ("RuntimeReady", "container runtime not ready"),
            ("NetworkReady", "container runtime network not ready"),
        ] {
            match status.conditions.iter().find(|c| c.r#type == kind) {
                Some(c) if c.status => {}
                Some(c) => problems.push(format!(
                    "{label}: {kind}=false reason:{} message:{}",
                    c.reason, c.message
                )),
                None => problems.push(format!("{label}: {kind} condition missing")),
            }
        }
        (problems, version)
    }

    async fn images(&self) -> Vec<ContainerImage> {
        let Ok(list) = self
            .runtime
            .list_images(api::ListImagesRequest::default())
            .await
        else {
            return Vec::new();
        };
        list.images
            .into_iter()
            .map(|i| {
                let mut names = i.repo_digests;
                names.extend(i.repo_tags);
                ContainerImage {
                    names: Some(names),
                    size_bytes: i64::try_from(i.size).ok(),
                }
            })
            .collect()
    }

    async fn compute(&self, old: Option<&NodeStatus>) -> NodeStatus {
        let (not_ready, runtime_version) = self.runtime_problems().await;
        let inputs = status::Inputs {
            capacity: self.machine.capacity(self.settings.max_pods),
            system_reserved: &self.settings.system_reserved,
            kube_reserved: &self.settings.kube_reserved,
            eviction_hard: &self.settings.eviction_hard,
            addresses: machine::addresses(self.settings.node_ip.as_deref(), &self.settings.name),
            node_info: self.machine.system_info(&runtime_version),
            kubelet_port: self
                .settings
                .kubelet_port
                .load(std::sync::atomic::Ordering::Relaxed),
            not_ready,
            memory_pressure: self.pressure.memory.load(Ordering::Relaxed),
            disk_pressure: self.pressure.disk.load(Ordering::Relaxed),
            pid_pressure: self.pressure.pid.load(Ordering::Relaxed),
            images: self.images().await,
        };
        status::build(inputs, old, Time(k8s_openapi::jiff::Timestamp::now()))
    }

    /// One round of the status loop: post the status if it changed or `force`.
    pub async fn sync_status(&self, force: bool) -> kube::Result<bool> {
        // From the apiserver's cache; a node registered a moment ago may not be there yet.
        let current = match self
            .api()
            .get_with(&self.settings.name, &GetParams::any())
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.api().get(&self.settings.name).await?
            }
            other => other?,
        };
        let new = self.compute(current.status.as_ref()).await;
        let changed = current
            .status
            .as_ref()
            .is_none_or(|old| status::changed(old, &new));
        if !changed && !force {
            self.node.send_replace(Some(current));
            return Ok(false);
        }
        let node = self
            .api()
            .patch_status(
                &self.settings.name,
                &PatchParams::default(),
                &Patch::Strategic(json!({ "status": new })),
            )
            .await?;
        self.node.send_replace(Some(node));
        Ok(true)
    }

    /// Posts the status every update period when it changed, and at least every report
    /// period, until the task is dropped.
    pub async fn run_status(self: Arc<Self>) {
        let mut last_report: Option<Instant> = None;
        loop {
            let due = last_report.is_none_or(|t| t.elapsed() >= self.settings.report_frequency);
            match self.sync_status(due).await {
                Ok(true) => last_report = Some(Instant::now()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %self.settings.name, error = %e, "error updating node status")
                }
            }
            tokio::time::sleep(self.settings.update_frequency).await;
        }
    }

    /// Renews the node's Lease every renew interval, retrying failures quickly.
    pub async fn run_lease(self: Arc<Self>) {
        let heartbeat = lease::Heartbeat {
            client: self.client.clone(),
            node_name: self.settings.name.clone(),
            duration_seconds: self.settings.lease_duration_seconds,
        };
        let mut failures = 0u32;
        loop {
            let node = self.node.borrow().clone();
            match heartbeat.renew(node.as_ref()).await {
                Ok(_) => {
                    failures = 0;
                    tokio::time::sleep(self.settings.lease_renew_interval).await;
                }
                Err(e) => {
                    tracing::warn!(node = %self.settings.name, error = %e, "failed to renew node lease");
                    tokio::time::sleep(lease::retry_delay(failures)).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}
