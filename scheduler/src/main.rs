//! The kube-scheduler binary, with upstream's flag names.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ferrokube_component::flags::parse_duration;
use ferrokube_component::metrics::Registry;
use ferrokube_component::{leader, serving};
use kube_scheduler::config::Configuration;
use kube_scheduler::profile;
use kube_scheduler::scheduler::Scheduler;

#[derive(Parser)]
#[command(name = "kube-scheduler", version, about = "ferrokube's scheduler")]
struct Flags {
    /// A KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kubeconfig to reach the apiserver with; overrides clientConnection.kubeconfig.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Take a Lease before scheduling; overrides leaderElection.leaderElect.
    #[arg(long, action = clap::ArgAction::Set)]
    leader_elect: Option<bool>,
    #[arg(long, value_parser = parse_duration)]
    leader_elect_lease_duration: Option<Duration>,
    #[arg(long, value_parser = parse_duration)]
    leader_elect_renew_deadline: Option<Duration>,
    #[arg(long, value_parser = parse_duration)]
    leader_elect_retry_period: Option<Duration>,
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
    #[arg(long)]
    leader_elect_resource_name: Option<String>,
    /// Address for /healthz and /metrics.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port for /healthz and /metrics; 0 turns it off.
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
}

fn configuration(flags: &Flags) -> Result<Configuration> {
    let mut config = match &flags.config {
        Some(path) => Configuration::load(path)?,
        None => Configuration::parse(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
        )?,
    };
    let le = &mut config.leader_election;
    if let Some(v) = flags.leader_elect {
        le.leader_elect = v;
    }
    if let Some(v) = flags.leader_elect_lease_duration {
        le.lease_duration = v;
    }
    if let Some(v) = flags.leader_elect_renew_deadline {
        le.renew_deadline = v;
    }
    if let Some(v) = flags.leader_elect_retry_period {
        le.retry_period = v;
    }
    if let Some(v) = &flags.leader_elect_resource_namespace {
        le.resource_namespace = v.clone();
    }
    if let Some(v) = &flags.leader_elect_resource_name {
        le.resource_name = v.clone();
    }
    if let Some(k) = &flags.kubeconfig {
        config.client_connection.kubeconfig = Some(k.clone());
    }
    Ok(config)
}

async fn run(flags: Flags) -> Result<()> {
    let config = configuration(&flags)?;
    let client =
        ferrokube_component::client(config.client_connection.kubeconfig.as_deref()).await?;
    let frameworks = profile::build_all(&config, &client)?;
    let metrics = Arc::new(Registry::default());
    if flags.secure_port != 0 {
        let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
        let m = metrics.clone();
        let render: serving::MetricsRenderer = Arc::new(move || m.render());
        tokio::spawn(async move {
            if let Err(e) = serving::serve(addr, render).await {
                tracing::error!("health server: {e}");
            }
        });
    }
    let scheduler = Scheduler::new(client.clone(), &config, frameworks, metrics);
    let le = &config.leader_election;
    if le.leader_elect {
        leader::run(
            client,
            leader::Config {
                namespace: le.resource_namespace.clone(),
                name: le.resource_name.clone(),
                identity: ferrokube_component::identity(),
                lease_duration: le.lease_duration,
                renew_deadline: le.renew_deadline,
                retry_period: le.retry_period,
            },
            scheduler.run(),
        )
        .await
    } else {
        scheduler.run().await
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
