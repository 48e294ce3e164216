//! What every controller is given: the API client, the manager's settings, and metrics.

use std::sync::Arc;

use crate::metrics::Metrics;

/// Settings that controllers read, with upstream's flag names in `main.rs`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CIDR pod ranges are cut from (node IPAM), e.g. 10.244.0.0/16.
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's pod range.
    pub node_cidr_mask_size: u8,
    /// The cluster CA, published as `kube-root-ca.crt` in every namespace (PEM).
    pub root_ca: Option<String>,
    /// CA certificate and key that sign kubelet certificates (PEM).
    pub signing_cert: Option<String>,
    pub signing_key: Option<String>,
    /// Finished pods kept before pod GC removes the oldest.
    pub terminated_pod_gc_threshold: usize,
    /// How long a node may go without a heartbeat before it is NotReady/Unknown.
    pub node_monitor_grace_period: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_cidr: None,
            node_cidr_mask_size: 24,
            root_ca: None,
            signing_cert: None,
            signing_key: None,
            terminated_pod_gc_threshold: 12500,
            node_monitor_grace_period: std::time::Duration::from_secs(50),
        }
    }
}

pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(client: kube::Client, settings: Settings) -> Arc<Context> {
        Arc::new(Context {
            client,
            settings,
            metrics: Arc::new(Metrics::default()),
        })
    }
}
