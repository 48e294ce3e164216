//! A node for tests: a real apiserver in the process, a real containerd, and the kubelet's
//! loops running against both.

#![allow(dead_code)]

use std::time::Duration;

use ferrokube_testkit::{Containerd, TestServer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kubelet::agent::{self, Network, NodeOptions, RunningNode};
use kubelet::config::{Dirs, KubeletConfiguration};
use kubelet::runtime::cri::CriRuntime;

/// Only a guard against hangs; nothing asserts on time.
pub const GUARD: Duration = Duration::from_secs(120);

pub struct Node {
    pub node: Option<RunningNode>,
    pub name: String,
    pub client: kube::Client,
    pub root: tempfile::TempDir,
    pub config: KubeletConfiguration,
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
    // Dropped last: the containerd after the kubelet, the apiserver after both.
    pub containerd: Containerd,
    pub server: TestServer,
    _services: tokio::task::JoinHandle<()>,
}

pub async fn node() -> Node {
    node_with(|_| {}).await
}

/// A node whose KubeletConfiguration `edit` adjusts first.
pub async fn node_with(edit: impl FnOnce(&mut KubeletConfiguration)) -> Node {
    node_on(TestServer::start().await, edit).await
}

/// A node of the apiserver `server`.
pub async fn node_on(server: TestServer, edit: impl FnOnce(&mut KubeletConfiguration)) -> Node {
    let containerd = Containerd::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().expect("root dir");
    let mut config = KubeletConfiguration {
        pod_cidr: containerd.pod_cidr.clone(),
        cluster_domain: "cluster.local".into(),
        node_status_update_frequency: Duration::from_secs(1),
        sync_frequency: Duration::from_secs(10),
        // The test machine's free disk is not the test's business; memory keeps upstream's.
        eviction_hard: [("memory.available".to_string(), "100Mi".to_string())].into(),
        // Nor is how full it is: images stay unless a test asks for garbage collection.
        image_gc_high_threshold_percent: 100,
        image_gc_low_threshold_percent: 99,
        ..Default::default()
    };
    config.port = 0;
    config.address = "127.0.0.1".into();
    edit(&mut config);
    // The kubelet trusts the cluster CA; the apiserver reaches it with a certificate from it.
    let pki = server.path("pki");
    config.authentication.x509.client_ca_file = pki.join("ca.crt").display().to_string();
    let issuer = kube_apiserver::pki::load_issuer(&pki).expect("issuer");
    let (cert, key) = kube_apiserver::pki::client_cert(
        &issuer,
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )
    .expect("kubelet client cert");
    std::fs::write(pki.join("kubelet-client.crt"), cert).expect("write cert");
    std::fs::write(pki.join("kubelet-client.key"), key).expect("write key");
    server
        .app
        .kubelet
        .configure(&kube_apiserver::proxy::KubeletClientConfig {
            client_certificate: Some(pki.join("kubelet-client.crt")),
            client_key: Some(pki.join("kubelet-client.key")),
            // As kubeadm sets it: node names need not resolve.
            preferred_address_types: vec!["InternalIP".into(), "Hostname".into()],
            ..Default::default()
        })
        .expect("kubelet client config");
    let (services, services_task) = agent::services(client.clone());
    let name = "node-1".to_string();
    let running = start_kubelet(
        &client,
        &containerd,
        root.path(),
        &name,
        &config,
        services.clone(),
    )
    .await;
    Node {
        node: Some(running),
        name,
        client,
        root,
        config,
        services,
        containerd,
        server,
        _services: services_task,
    }
}

/// Starts the kubelet's loops for `name` on `containerd`, keeping its state under `root`.
async fn start_kubelet(
    client: &kube::Client,
    containerd: &Containerd,
    root: &std::path::Path,
    name: &str,
    config: &KubeletConfiguration,
    services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
) -> RunningNode {
    agent::start(
        client.clone(),
        std::sync::Arc::new(CriRuntime::connect(&containerd.endpoint()).expect("cri")),
        NodeOptions {
            name: name.to_string(),
            node_ip: Some("127.0.0.1".into()),
            config: config.clone(),
            dirs: Dirs::new(root),
            network: Network::Cni {
                conf_dir: containerd.cni_conf_dir.clone(),
                bridge: containerd.bridge.clone(),
            },
            pleg_period: Duration::from_millis(200),
            machine: None,
            services,
            serve: true,
        },
    )
    .await
    .expect("kubelet")
}

impl Node {
    /// Stops the kubelet as a crash would (containers keep running) and starts a new one on
    /// the same state.
    pub async fn restart_kubelet(&mut self) {
        if let Some(running) = self.node.take() {
            running.stop();
        }
        let running = start_kubelet(
            &self.client,
            &self.containerd,
            self.root.path(),
            &self.name,
            &self.config,
            self.services.clone(),
        )
        .await;
        self.node = Some(running);
    }

    pub fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates a pod bound to this node.
    pub async fn create_pod(&self, ns: &str, mut pod: serde_json::Value) -> Pod {
        pod["spec"]["nodeName"] = serde_json::json!(self.name);
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        self.pods(ns)
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Waits until `cond` holds for the pod.
    pub async fn wait_pod(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        cond: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let cond = move |p: Option<&Pod>| p.is_some_and(&cond);
        match tokio::time::timeout(GUARD, await_condition(self.pods(ns), name, cond)).await {
            Ok(Ok(Some(p))) => p,
            Ok(other) => panic!("waiting for {what}: {other:?}"),
            Err(_) => {
                let now = self.pods(ns).get_opt(name).await.ok().flatten();
                panic!(
                    "timed out waiting for {what}; pod now: {:#?}",
                    now.map(|p| p.status)
                );
            }
        }
    }

    /// Waits until the pod is gone from the API.
    pub async fn wait_gone(&self, ns: &str, name: &str) {
        let api = self.pods(ns);
        let gone = async {
            let mut events = std::pin::pin!(kube::runtime::watcher(
                api.clone(),
                kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"))
            ));
            loop {
                if api.get_opt(name).await.ok().flatten().is_none() {
                    return;
                }
                events.next().await;
            }
        };
        tokio::time::timeout(GUARD, gone)
            .await
            .expect("pod deletion");
    }
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Node {
    /// Waits until the Node reports Ready (the pod network is configured).
    pub async fn wait_pod_node_ready(&self) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let cond = |n: Option<&k8s_openapi::api::core::v1::Node>| {
            n.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        tokio::time::timeout(GUARD, await_condition(nodes, &self.name, cond))
            .await
            .expect("node Ready")
            .expect("watch");
    }
}

impl Node {
    /// Follows a container's log (as `kubectl logs -f`) until what came so far satisfies
    /// `cond`: a container's output lands in its log a moment after it is reported running.
    pub async fn follow_logs(
        &self,
        ns: &str,
        pod: &str,
        container: Option<&str>,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        use futures::AsyncBufReadExt;
        let params = kube::api::LogParams {
            follow: true,
            container: container.map(str::to_string),
            ..Default::default()
        };
        let read = async {
            let stream = self
                .pods(ns)
                .log_stream(pod, &params)
                .await
                .expect("log stream");
            let mut lines = std::pin::pin!(stream.lines());
            let mut seen = String::new();
            while let Some(line) = lines.next().await {
                seen.push_str(&line.expect("log line"));
                seen.push('\n');
                if cond(&seen) {
                    return seen;
                }
            }
            panic!("the log ended before the expected output: {seen:?}");
        };
        tokio::time::timeout(GUARD, read)
            .await
            .expect("expected log output")
    }
}

/// Watches `api` until its objects (as a list) satisfy `cond`; returns them.
pub async fn wait_list<K>(api: Api<K>, what: &str, cond: impl Fn(&[K]) -> bool) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector::reflector(
        writer,
        kube::runtime::watcher(api, kube::runtime::watcher::Config::default()),
    );
    let wait = async {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            // The store holds the whole list once the initial listing is in.
            if matches!(
                ev.expect("watch"),
                kube::runtime::watcher::Event::InitApply(_)
            ) {
                continue;
            }
            let items: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
            if cond(&items) {
                return items;
            }
        }
        panic!("the watch ended");
    };
    match tokio::time::timeout(GUARD, wait).await {
        Ok(items) => items,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}
