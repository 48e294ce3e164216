//! One node's kubelet put together: register the Node, keep its status and Lease, set up the
//! pod network once the node has a pod range, and run the pods bound to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;

use crate::config::{Dirs, KubeletConfiguration};
use crate::node::machine::Machine;
use crate::node::{self, NodeAgent};
use crate::pods::context::{PodSettings, Shared};
use crate::pods::status_manager::StatusManager;
use crate::pods::PodManager;
use crate::runtime::{api, Runtime};

/// How the node's pods get their network.
pub enum Network {
    /// containerd runs CNI; the kubelet writes the config once it knows the pod range.
    Cni { conf_dir: PathBuf, bridge: String },
    /// The runtime needs none (hollow nodes).
    None,
}

pub struct NodeOptions {
    pub name: String,
    pub node_ip: Option<String>,
    pub config: KubeletConfiguration,
    pub dirs: Dirs,
    pub network: Network,
    /// How often the runtime is relisted for changes.
    pub pleg_period: Duration,
    /// Machine facts to report; None reads this machine.
    pub machine: Option<Machine>,
    /// Every Service, shared by the nodes of one process.
    pub services: Store<Service>,
    /// Serve the kubelet API (logs, exec, port-forward...) on `address:port` of the config.
    pub serve: bool,
}

/// A running node: its parts, for the server and for tests.
pub struct RunningNode {
    pub agent: Arc<NodeAgent>,
    pub pods: Arc<PodManager>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RunningNode {
    /// Stops every loop of this node, as a killed kubelet would stop (containers stay).
    pub fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// Starts a node's kubelet loops; returns once the Node is registered.
pub async fn start(
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    opts: NodeOptions,
) -> anyhow::Result<RunningNode> {
    let cfg = &opts.config;
    std::fs::create_dir_all(&opts.dirs.root)?;
    std::fs::create_dir_all(&opts.dirs.pod_logs)?;
    let machine = opts
        .machine
        .clone()
        .unwrap_or_else(|| Machine::read(&opts.dirs.root));
    let machine_capacity = machine.capacity(cfg.max_pods);
    let memory_bytes = machine.memory_bytes;
    let runtime_name = runtime
        .version(api::VersionRequest::default())
        .await
        .map(|v| v.runtime_name)
        .unwrap_or_else(|_| "containerd".into());
    let mut labels = cfg.node_labels.clone();
    labels.retain(|k, _| !k.is_empty());
    let agent = NodeAgent::new(
        client.clone(),
        runtime.clone(),
        node::Settings {
            name: opts.name.clone(),
            node_ip: opts.node_ip.clone(),
            labels,
            taints: cfg.register_with_taints.clone(),
            kubelet_port: std::sync::atomic::AtomicI32::new(i32::from(cfg.port)),
            max_pods: cfg.max_pods,
            system_reserved: cfg.system_reserved.clone(),
            kube_reserved: cfg.kube_reserved.clone(),
            eviction_hard: cfg.eviction_hard.clone(),
            update_frequency: cfg.node_status_update_frequency,
            report_frequency: cfg.node_status_report_frequency,
            lease_duration_seconds: cfg.node_lease_duration_seconds,
            lease_renew_interval: cfg.lease_renew_interval(),
        },
        machine,
    );
    // Bound before registering, so that the Node reports the port actually in use.
    let listener = if opts.serve {
        let addr = format!("{}:{}", cfg.address, cfg.port);
        Some(
            tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the kubelet server to {addr}: {e}"))?,
        )
    } else {
        None
    };
    let kubelet_port = match &listener {
        Some(l) => i32::from(l.local_addr()?.port()),
        None => i32::from(cfg.port),
    };
    agent.set_kubelet_port(kubelet_port);
    agent.register().await;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(agent.clone().run_lease()));
    let real_node = matches!(opts.network, Network::Cni { .. });
    if let Network::Cni { conf_dir, bridge } = opts.network {
        let pod_cidr = (!cfg.pod_cidr.is_empty()).then(|| cfg.pod_cidr.clone());
        tasks.push(tokio::spawn(set_up_network(
            client.clone(),
            runtime.clone(),
            agent.clone(),
            conf_dir,
            bridge,
            opts.dirs.root.join("cni"),
            pod_cidr,
        )));
    }
    tasks.push(tokio::spawn(agent.clone().run_status()));

    let (probes, mut notices) = crate::prober::ProbeManager::new(runtime.clone());
    let allocatable = node::status::allocatable(
        &machine_capacity,
        &cfg.system_reserved,
        &cfg.kube_reserved,
        &cfg.eviction_hard,
    );
    let node_resources = crate::container::resources::NodeResources {
        memory_capacity: i64::try_from(memory_bytes).unwrap_or(i64::MAX),
        cgroup_v2: std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        probes,
        images: crate::images::ImageManager::new(),
        volumes: crate::volumes::VolumeContext::new(
            client.clone(),
            opts.dirs.root.clone(),
            opts.name.clone(),
            allocatable,
        ),
        node_resources,
        services: opts.services.clone(),
        evictions: Default::default(),
        admitted: Default::default(),
        pressure: agent.pressure(),
        stats: crate::stats::NodeSampler::new(&opts.dirs.root),
        client: client.clone(),
        runtime,
        runtime_name,
        node_name: opts.name.clone(),
        node: agent.subscribe(),
        status: StatusManager::new(client.clone()),
        events: crate::events::Recorder::new(client, &opts.name),
        backoff: Default::default(),
        settings: PodSettings {
            dirs: opts.dirs.clone(),
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            resolv_conf: PathBuf::from(&cfg.resolv_conf),
            cgroup_root: cfg.cgroup_root.clone(),
            allowed_unsafe_sysctls: cfg.allowed_unsafe_sysctls.clone(),
            resync: cfg.sync_frequency,
        },
    });
    let pods = PodManager::new(shared.clone());
    tasks.push(tokio::spawn(shared.status.clone().run()));
    tasks.push(tokio::spawn(pods.clone().run_source()));
    tasks.push(tokio::spawn(pods.clone().run_pleg(opts.pleg_period)));
    // Hollow nodes have no resources of their own to run short of, nor logs.
    if real_node {
        let max_size = ferrokube_common::quantity::Quantity::parse(&cfg.container_log_max_size)
            .map_err(|_| {
                anyhow::anyhow!(
                    "invalid containerLogMaxSize {:?}",
                    cfg.container_log_max_size
                )
            })?
            .value();
        if cfg.container_log_max_files < 2 {
            anyhow::bail!("invalid configuration: containerLogMaxFiles must be greater than 1");
        }
        let rotation = crate::log_rotation::LogRotation {
            runtime: shared.runtime.clone(),
            max_size: u64::try_from(max_size).unwrap_or(0),
            max_files: cfg.container_log_max_files,
            period: cfg.container_log_monitor_interval,
        };
        tasks.push(tokio::spawn(rotation.run()));
        if cfg.image_gc_low_threshold_percent >= cfg.image_gc_high_threshold_percent
            || cfg.image_gc_high_threshold_percent > 100
        {
            anyhow::bail!(
                "invalid configuration: imageGCLowThresholdPercent ({}) must be less than imageGCHighThresholdPercent ({})",
                cfg.image_gc_low_threshold_percent,
                cfg.image_gc_high_threshold_percent
            );
        }
        let gc = crate::image_gc::ImageGc {
            runtime: shared.runtime.clone(),
            image_fs: opts.dirs.root.clone(),
            high_percent: cfg.image_gc_high_threshold_percent,
            low_percent: cfg.image_gc_low_threshold_percent,
            minimum_age: cfg.image_minimum_gc_age,
            period: cfg.image_gc_period,
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
        };
        tasks.push(tokio::spawn(gc.run()));
        let thresholds = crate::eviction::signals::parse_thresholds(&cfg.eviction_hard)
            .map_err(|e| anyhow::anyhow!("evictionHard: {e}"))?;
        let manager = crate::eviction::EvictionManager {
            thresholds,
            root: opts.dirs.root.clone(),
            period: cfg.eviction_monitoring_period,
            transition: cfg.eviction_pressure_transition_period,
            pressure: agent.pressure(),
            pods: pods.clone(),
        };
        tasks.push(tokio::spawn(manager.run()));
    }
    if !cfg.static_pod_path.is_empty() {
        tasks.push(tokio::spawn(pods.clone().run_static(
            PathBuf::from(&cfg.static_pod_path),
            cfg.file_check_frequency,
        )));
    }
    // Probe results wake the pod's worker; probe events (Unhealthy) are recorded.
    let notified = pods.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match notice {
                crate::prober::ProbeNotice::Result(r) => notified.poke(&r.pod_uid),
                crate::prober::ProbeNotice::Event(e) => {
                    if let Some(pod) = notified.by_uid(&e.pod_uid) {
                        let object = crate::events::container_ref(&pod, &e.container_name);
                        notified
                            .shared
                            .events
                            .record(&object, e.event_type, e.reason, &e.message)
                            .await;
                    }
                }
            }
        }
    }));
    if let Some(listener) = listener {
        let mut server_config = crate::server::ServerConfig::new(opts.name.clone());
        server_config.node_ips = opts
            .node_ip
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        server_config.tls_cert_file =
            (!cfg.tls_cert_file.is_empty()).then(|| PathBuf::from(&cfg.tls_cert_file));
        server_config.tls_private_key_file = (!cfg.tls_private_key_file.is_empty())
            .then(|| PathBuf::from(&cfg.tls_private_key_file));
        server_config.auth.client_ca_file = (!cfg.authentication.x509.client_ca_file.is_empty())
            .then(|| PathBuf::from(&cfg.authentication.x509.client_ca_file));
        server_config.auth.anonymous = cfg.authentication.anonymous.enabled;
        server_config.auth.webhook_authentication = cfg.authentication.webhook.enabled;
        if cfg.authorization.mode == "AlwaysAllow" {
            server_config.auth.authorization = crate::server::AuthorizationMode::AlwaysAllow;
        }
        let server = crate::server::KubeletServer::new(
            server_config,
            Arc::new(crate::pods::node_view::PodsView(pods.clone())),
            Arc::new(crate::server::KubeReviews(shared.client.clone())),
        )?;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(listener).await {
                tracing::error!(error = %e, "kubelet server stopped");
            }
        }));
    }
    Ok(RunningNode { agent, pods, tasks })
}

/// A store of every Service, kept by a watch that runs until the returned task is dropped.
pub fn services(client: kube::Client) -> (Store<Service>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<Service>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    (reader, task)
}

/// Waits for the node's pod range (the config's, else the one node IPAM puts in
/// spec.podCIDR), then writes the CNI config and tells the runtime, as upstream's kubelet
/// does with UpdateRuntimeConfig. Follows later changes too.
async fn set_up_network(
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    agent: Arc<NodeAgent>,
    conf_dir: PathBuf,
    bridge: String,
    ipam_dir: PathBuf,
    fixed: Option<String>,
) {
    let apply = |cidrs: Vec<String>| {
        let conf_dir = conf_dir.clone();
        let bridge = bridge.clone();
        let ipam_dir = ipam_dir.clone();
        let runtime = runtime.clone();
        async move {
            let net = crate::cni::Network {
                conf_dir: &conf_dir,
                bridge: &bridge,
                pod_cidrs: &cidrs,
                ipam_dir: &ipam_dir,
            };
            if let Err(e) = crate::cni::write(&net) {
                tracing::error!(error = %e, "writing the CNI config");
                return;
            }
            let _ = runtime
                .update_runtime_config(api::UpdateRuntimeConfigRequest {
                    runtime_config: Some(api::RuntimeConfig {
                        network_config: Some(api::NetworkConfig {
                            pod_cidr: cidrs.join(","),
                        }),
                    }),
                })
                .await;
            tracing::info!(pod_cidrs = ?cidrs, "pod network configured");
        }
    };
    if let Some(cidr) = fixed {
        apply(vec![cidr]).await;
        return;
    }
    let api: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", agent.name()));
    let mut nodes = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    let mut current: Vec<String> = Vec::new();
    while let Some(ev) = nodes.next().await {
        let Ok(node) = ev else { continue };
        let spec = node.spec.unwrap_or_default();
        let cidrs = spec
            .pod_cidrs
            .filter(|c| !c.is_empty())
            .or_else(|| spec.pod_cidr.map(|c| vec![c]))
            .unwrap_or_default();
        if !cidrs.is_empty() && cidrs != current {
            apply(cidrs.clone()).await;
            current = cidrs;
        }
    }
}
