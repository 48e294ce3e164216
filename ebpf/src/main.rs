//! kube-lb: one per node, in place of kube-proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use ferrokube_component::metrics::Registry;
use kube_lb::{controller::Controller, datapath, node};

#[derive(Parser, Debug)]
#[command(
    name = "kube-lb",
    about = "Service load balancing in BPF, in place of kube-proxy"
)]
struct Flags {
    /// Kubeconfig of the apiserver (in-cluster configuration without it).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node this kube-lb serves: endpoints on it are local for the Local traffic
    /// policies. Defaults to the host name.
    #[arg(long = "hostname-override")]
    hostname_override: Option<String>,
    /// The cgroup v2 directory whose processes get ClusterIP translation at the socket layer.
    /// Defaults to the root of the mounted cgroup2 hierarchy.
    #[arg(long)]
    cgroup_path: Option<PathBuf>,
    /// Where the maps are pinned (on bpffs, mounted at /sys/fs/bpf when missing).
    #[arg(long, default_value = "/sys/fs/bpf/ferrokube")]
    bpf_dir: PathBuf,
    /// The network namespace of the node's interfaces, when kube-lb runs outside it.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Interfaces that get the TC program for node ports and external IPs (comma-separated).
    /// Defaults to every interface with an IPv4 address other than loopback.
    #[arg(long, value_delimiter = ',')]
    interfaces: Option<Vec<String>>,
    /// Where /healthz and /metrics are served (HTTPS); port 0 turns it off.
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: SocketAddr,
    /// Remove the pinned maps and exit.
    #[arg(long)]
    cleanup: bool,
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .to_lowercase()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ferrokube_component::init_logging();
    let flags = Flags::parse();
    if flags.cleanup {
        datapath::unpin(&flags.bpf_dir)?;
        return Ok(());
    }
    let node_name = flags.hostname_override.clone().unwrap_or_else(hostname);
    let cgroup = match flags.cgroup_path.clone() {
        Some(p) => p,
        None => node::cgroup2_root()?,
    };

    let (bpf, mut maps) = datapath::load(&flags.bpf_dir)?;
    let tables = maps.adopt()?;
    let (report, mut node_state) = tokio::sync::watch::channel(Ok(Default::default()));
    node::spawn(
        bpf,
        node::NodeOptions {
            cgroup,
            netns: flags.netns.clone(),
            interfaces: flags.interfaces.clone(),
            bpf_dir: flags.bpf_dir.clone(),
        },
        report,
    );
    // Attached, or failed to: only then is it worth talking to the API.
    node_state
        .changed()
        .await
        .context("the node thread ended")?;
    if let Err(e) = &*node_state.borrow() {
        anyhow::bail!("{e}");
    }
    tokio::spawn(async move {
        while node_state.changed().await.is_ok() {
            if let Err(e) = &*node_state.borrow() {
                tracing::error!("node: {e}");
                std::process::exit(1);
            }
        }
    });

    let metrics = Arc::new(Registry::default());
    if flags.metrics_bind_address.port() != 0 {
        let m = metrics.clone();
        let addr = flags.metrics_bind_address;
        // The connection-tracking table is the programs' to fill; it is counted when scraped.
        let ct = datapath::ConnTrack::open(&flags.bpf_dir)?;
        m.describe(
            "kubelb_conntrack_entries",
            "Flows in the node-port connection-tracking map.",
        );
        tokio::spawn(async move {
            let render = Arc::new(move || {
                m.set("kubelb_conntrack_entries", &[], ct.count() as f64);
                m.render()
            });
            if let Err(e) = ferrokube_component::serving::serve(addr, render).await {
                tracing::error!("serving /healthz and /metrics: {e}");
            }
        });
    }
    let client = ferrokube_component::client(flags.kubeconfig.as_deref()).await?;
    tracing::info!(node = %node_name, "kube-lb started");
    Controller::new(node_name, tables, maps, metrics)
        .run(client)
        .await
}
