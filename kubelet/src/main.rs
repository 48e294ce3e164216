//! `kubelet`: the node agent. Flags keep upstream's names; a `--config` file
//! (KubeletConfiguration) carries the rest, and flags given on the command line win over it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kubelet::agent::{self, Network, NodeOptions};
use kubelet::config::{Dirs, KubeletConfiguration};
use kubelet::node::machine;
use kubelet::runtime::{cri::CriRuntime, hollow::HollowRuntime, Runtime};

#[derive(Parser, Debug)]
#[command(name = "kubelet", about = "The ferrokube node agent")]
struct Flags {
    /// Kubeconfig for the apiserver.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// A KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The CRI endpoint (`unix:///run/containerd/containerd.sock`).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Directory of static pod manifests (staticPodPath).
    #[arg(long)]
    pod_manifest_path: Option<String>,
    /// The node's InternalIP; detected from the default route when absent.
    #[arg(long)]
    node_ip: Option<String>,
    /// The node name, instead of the machine's host name.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Cluster DNS server addresses, comma-separated (clusterDNS).
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    /// The cluster's DNS domain (clusterDomain).
    #[arg(long)]
    cluster_domain: Option<String>,
    /// Where the kubelet keeps pod volumes and state.
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// The node's pod range when no node IPAM assigns one (podCIDR).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// HTTPS port of the kubelet's server (port).
    #[arg(long)]
    port: Option<u16>,
    /// Clients presenting a certificate signed by this CA are authenticated
    /// (authentication.x509.clientCAFile).
    #[arg(long)]
    client_ca_file: Option<String>,
    /// The serving certificate of the kubelet API; a self-signed one is made without it.
    #[arg(long)]
    tls_cert_file: Option<String>,
    #[arg(long)]
    tls_private_key_file: Option<String>,
    /// The address the kubelet API listens on (address).
    #[arg(long)]
    address: Option<String>,
    /// `Webhook` (SubjectAccessReview) or `AlwaysAllow` (authorization.mode).
    #[arg(long)]
    authorization_mode: Option<String>,
    /// Let requests without credentials in as `system:anonymous` (authentication.anonymous).
    #[arg(long)]
    anonymous_auth: Option<bool>,
    /// Hard eviction thresholds, `signal<quantity` comma-separated
    /// (`memory.available<100Mi,nodefs.available<10%`; evictionHard).
    #[arg(long)]
    eviction_hard: Option<String>,
    /// Maximum pods on this node (maxPods).
    #[arg(long)]
    max_pods: Option<i64>,
    /// Labels to register the node with, `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// `cri` (containerd through CRI) or `hollow` (in-memory containers, for scale runs).
    #[arg(long, default_value = "cri")]
    runtime: String,
    /// With `--runtime hollow`: how many nodes this process runs, named
    /// `<hostname-override>-<i>`.
    #[arg(long, default_value_t = 1)]
    hollow_nodes: usize,
    /// Where containerd reads CNI configs; the kubelet writes the pod network's there.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The Linux bridge pods attach to.
    #[arg(long, default_value = "cni0")]
    cni_bridge: String,
    /// How often the runtime is relisted for container changes.
    #[arg(long, default_value = "500ms", value_parser = ferrokube_component::flags::parse_duration)]
    pleg_period: Duration,
}

impl Flags {
    /// The config file's settings with the flags given on top.
    fn configuration(&self) -> anyhow::Result<KubeletConfiguration> {
        let mut cfg = match &self.config {
            Some(p) => KubeletConfiguration::load(p)?,
            None => KubeletConfiguration::default(),
        };
        if let Some(e) = &self.container_runtime_endpoint {
            cfg.container_runtime_endpoint = e.clone();
        }
        if let Some(p) = &self.pod_manifest_path {
            cfg.static_pod_path = p.clone();
        }
        if !self.cluster_dns.is_empty() {
            cfg.cluster_dns = self.cluster_dns.clone();
        }
        if let Some(d) = &self.cluster_domain {
            cfg.cluster_domain = d.clone();
        }
        if let Some(c) = &self.pod_cidr {
            cfg.pod_cidr = c.clone();
        }
        if let Some(p) = self.port {
            cfg.port = p;
        }
        if let Some(f) = &self.client_ca_file {
            cfg.authentication.x509.client_ca_file = f.clone();
        }
        if let Some(f) = &self.tls_cert_file {
            cfg.tls_cert_file = f.clone();
        }
        if let Some(f) = &self.tls_private_key_file {
            cfg.tls_private_key_file = f.clone();
        }
        if let Some(a) = &self.address {
            cfg.address = a.clone();
        }
        if let Some(m) = &self.authorization_mode {
            cfg.authorization.mode = m.clone();
        }
        if let Some(a) = self.anonymous_auth {
            cfg.authentication.anonymous.enabled = a;
        }
        if let Some(e) = &self.eviction_hard {
            cfg.eviction_hard.clear();
            for part in e.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('<').ok_or_else(|| {
                    anyhow::anyhow!("invalid --eviction-hard entry {part:?}: want signal<quantity")
                })?;
                cfg.eviction_hard
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        if let Some(m) = self.max_pods {
            cfg.max_pods = m;
        }
        for l in &self.node_labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("invalid node label {l:?}: want key=value"))?;
            cfg.node_labels.insert(k.to_string(), v.to_string());
        }
        Ok(cfg)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ferrokube_component::init_logging();
    let flags = Flags::parse();
    let cfg = flags.configuration()?;
    let client = ferrokube_component::client(flags.kubeconfig.as_deref()).await?;
    let base_name = flags
        .hostname_override
        .clone()
        .unwrap_or_else(machine::hostname);
    let (services, _services_task) = agent::services(client.clone());
    let mut nodes = Vec::new();
    match flags.runtime.as_str() {
        "cri" => {
            let runtime: Arc<dyn Runtime> =
                Arc::new(CriRuntime::connect(&cfg.container_runtime_endpoint)?);
            let node = agent::start(
                client.clone(),
                runtime,
                NodeOptions {
                    name: base_name,
                    node_ip: flags.node_ip.clone(),
                    config: cfg.clone(),
                    dirs: Dirs::new(&flags.root_dir),
                    network: Network::Cni {
                        conf_dir: flags.cni_conf_dir.clone(),
                        bridge: flags.cni_bridge.clone(),
                    },
                    pleg_period: flags.pleg_period,
                    machine: None,
                    services: services.clone(),
                    serve: true,
                },
            )
            .await?;
            nodes.push(node);
        }
        "hollow" => {
            let machine = machine::Machine::read(&flags.root_dir);
            for i in 0..flags.hollow_nodes {
                let name = if flags.hollow_nodes == 1 {
                    base_name.clone()
                } else {
                    format!("{base_name}-{i}")
                };
                let runtime: Arc<dyn Runtime> = Arc::new(HollowRuntime::new(&format!(
                    "10.{}.{}.0/24",
                    128 + (i / 256) % 128,
                    i % 256
                )));
                let node = agent::start(
                    client.clone(),
                    runtime,
                    NodeOptions {
                        name,
                        node_ip: flags.node_ip.clone(),
                        config: cfg.clone(),
                        dirs: Dirs::new(&flags.root_dir.join(format!("hollow-{i}"))),
                        network: Network::None,
                        pleg_period: flags.pleg_period.max(Duration::from_secs(1)),
                        machine: Some(machine.clone()),
                        services: services.clone(),
                        serve: false,
                    },
                )
                .await?;
                nodes.push(node);
            }
        }
        other => anyhow::bail!("unknown --runtime {other:?}: want cri or hollow"),
    }
    tracing::info!(nodes = nodes.len(), "kubelet running");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
