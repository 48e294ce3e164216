//! The kube-controller-manager binary, with upstream's flag names.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use ferrokube_component::flags::parse_duration;
use ferrokube_component::{leader, serving};
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::registry;

#[derive(Parser)]
#[command(
    name = "kube-controller-manager",
    version,
    about = "ferrokube's controller manager"
)]
struct Flags {
    /// Kubeconfig to reach the apiserver with (in-cluster config when absent).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Controllers to run: `*` for the defaults, `name` to add, `-name` to remove.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Take a Lease before doing anything, so that only one manager acts at a time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// Address for /healthz and /metrics.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port for /healthz and /metrics; 0 turns it off.
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// CIDR node pod ranges come from (node IPAM).
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Prefix length of each node's pod range.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// CA published as kube-root-ca.crt in every namespace.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// CA certificate that signs kubelet certificates.
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// CA key that signs kubelet certificates.
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// Finished pods kept before pod GC deletes the oldest.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Time without a node heartbeat before its Ready condition turns Unknown.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
}

fn read(path: &Option<PathBuf>) -> Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

async fn run(flags: Flags) -> Result<()> {
    let client = ferrokube_component::client(flags.kubeconfig.as_deref()).await?;
    let settings = Settings {
        cluster_cidr: flags.cluster_cidr.clone(),
        node_cidr_mask_size: flags.node_cidr_mask_size,
        root_ca: read(&flags.root_ca_file)?,
        signing_cert: read(&flags.cluster_signing_cert_file)?,
        signing_key: read(&flags.cluster_signing_key_file)?,
        terminated_pod_gc_threshold: flags.terminated_pod_gc_threshold,
        node_monitor_grace_period: flags.node_monitor_grace_period,
    };
    let ctx = Context::new(client.clone(), settings);
    let selected = registry::select(registry::all(), &flags.controllers)?;
    if flags.secure_port != 0 {
        let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
        let metrics = ctx.metrics.clone();
        let render: serving::MetricsRenderer = std::sync::Arc::new(move || metrics.render());
        tokio::spawn(async move {
            if let Err(e) = serving::serve(addr, render).await {
                tracing::error!("health server: {e}");
            }
        });
    }
    let work = async move {
        let mut tasks = tokio::task::JoinSet::new();
        for c in selected {
            tracing::info!("starting controller {}", c.name);
            let name = c.name;
            let fut = (c.run)(ctx.clone());
            tasks.spawn(async move { (name, fut.await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (name, result) = done?;
            result.with_context(|| format!("controller {name}"))?;
        }
        Ok(())
    };
    if flags.leader_elect {
        let identity = ferrokube_component::identity();
        leader::run(
            client,
            leader::Config {
                namespace: flags.leader_elect_resource_namespace.clone(),
                name: flags.leader_elect_resource_name.clone(),
                identity,
                lease_duration: flags.leader_elect_lease_duration,
                renew_deadline: flags.leader_elect_renew_deadline,
                retry_period: flags.leader_elect_retry_period,
            },
            work,
        )
        .await
    } else {
        work.await
    }
}

fn main() -> Result<()> {
    ferrokube_component::init_logging();
    let flags = Flags::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(flags))
}
