//! What every ferrokube component beside the apiserver needs, as upstream's component-base:
//! a client from `--kubeconfig`, watches feeding one loop, Lease leader election, the HTTPS `/healthz` + `/metrics`
//! endpoint, and upstream's duration flag syntax.

pub mod flags;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod serving;

use std::path::Path;

/// A client for the apiserver named in `kubeconfig`, or the in-cluster one without it.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// `<hostname>_<random>`, as upstream names leader-election candidates, so that two
/// instances on one host differ.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}_{:016x}", host.trim(), rand::random::<u64>())
}

/// Logs to stderr at the level `RUST_LOG` asks for (info by default).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
