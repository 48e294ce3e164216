//! The kubelet's settings: a `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) file from
//! `--config`, with upstream's defaults, overridden by the command-line flags upstream still
//! accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The fields of upstream's KubeletConfiguration this kubelet acts on. Unknown fields are
/// accepted and ignored, as upstream's lenient decoding of the file does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    pub address: String,
    pub port: u16,
    pub healthz_port: u16,
    pub healthz_bind_address: String,
    pub tls_cert_file: String,
    pub tls_private_key_file: String,
    pub authentication: Authentication,
    pub authorization: Authorization,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    pub max_pods: i64,
    pub pods_per_core: i64,
    #[serde(with = "duration_text")]
    pub sync_frequency: Duration,
    #[serde(with = "duration_text")]
    pub file_check_frequency: Duration,
    #[serde(with = "duration_text")]
    pub node_status_update_frequency: Duration,
    #[serde(with = "duration_text")]
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: i32,
    pub static_pod_path: String,
    pub cgroup_root: String,
    pub cgroup_driver: String,
    pub resolv_conf: String,
    pub container_runtime_endpoint: String,
    #[serde(with = "duration_text")]
    pub runtime_request_timeout: Duration,
    pub serialize_image_pulls: bool,
    pub register_node: bool,
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub node_labels: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    pub eviction_hard: BTreeMap<String, String>,
    #[serde(with = "duration_text")]
    pub eviction_pressure_transition_period: Duration,
    /// How often eviction signals are read (upstream's `--eviction-monitoring-period`
    /// flag; here also a config field).
    #[serde(with = "duration_text")]
    pub eviction_monitoring_period: Duration,
    pub allowed_unsafe_sysctls: Vec<String>,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    #[serde(with = "duration_text")]
    pub image_minimum_gc_age: Duration,
    /// How often image GC runs (upstream's fixed 5 minutes; a config field here).
    #[serde(with = "duration_text")]
    pub image_gc_period: Duration,
    pub container_log_max_size: String,
    pub container_log_max_files: usize,
    #[serde(with = "duration_text")]
    pub container_log_monitor_interval: Duration,
    pub hairpin_mode: String,
    pub fail_swap_on: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Authentication {
    pub x509: X509,
    pub webhook: Webhook,
    pub anonymous: Anonymous,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct X509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Webhook {
    pub enabled: bool,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook { enabled: true }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Anonymous {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Authorization {
    pub mode: String,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            mode: "Webhook".into(),
        }
    }
}

impl Default for KubeletConfiguration {
    /// Upstream's v1beta1 defaults (pkg/kubelet/apis/config/v1beta1/defaults.go).
    fn default() -> Self {
        KubeletConfiguration {
            api_version: "kubelet.config.k8s.io/v1beta1".into(),
            kind: "KubeletConfiguration".into(),
            address: "0.0.0.0".into(),
            port: 10250,
            healthz_port: 10248,
            healthz_bind_address: "127.0.0.1".into(),
            tls_cert_file: String::new(),
            tls_private_key_file: String::new(),
            authentication: Authentication::default(),
            authorization: Authorization::default(),
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            pod_cidr: String::new(),
            max_pods: 110,
            pods_per_core: 0,
            sync_frequency: Duration::from_secs(60),
            file_check_frequency: Duration::from_secs(20),
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            node_lease_duration_seconds: 40,
            static_pod_path: String::new(),
            cgroup_root: "/".into(),
            cgroup_driver: "cgroupfs".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            container_runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
            runtime_request_timeout: Duration::from_secs(120),
            serialize_image_pulls: true,
            register_node: true,
            register_with_taints: Vec::new(),
            node_labels: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            eviction_hard: [
                ("memory.available", "100Mi"),
                ("nodefs.available", "10%"),
                ("imagefs.available", "15%"),
                ("nodefs.inodesFree", "5%"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            eviction_pressure_transition_period: Duration::from_secs(300),
            eviction_monitoring_period: Duration::from_secs(10),
            allowed_unsafe_sysctls: Vec::new(),
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: Duration::from_secs(120),
            image_gc_period: Duration::from_secs(300),
            container_log_max_size: "10Mi".into(),
            container_log_max_files: 5,
            container_log_monitor_interval: Duration::from_secs(10),
            hairpin_mode: "promiscuous-bridge".into(),
            fail_swap_on: true,
        }
    }
}

impl KubeletConfiguration {
    /// Reads a KubeletConfiguration file (YAML or JSON), rejecting other kinds as upstream
    /// does.
    pub fn load(path: &Path) -> anyhow::Result<KubeletConfiguration> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("failed to read kubelet config file {path:?}: {e}"))?;
        let cfg: KubeletConfiguration = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("failed to decode kubelet config file {path:?}: {e}"))?;
        if cfg.kind != "KubeletConfiguration"
            || !matches!(
                cfg.api_version.as_str(),
                "kubelet.config.k8s.io/v1beta1" | "kubelet.config.k8s.io/v1"
            )
        {
            anyhow::bail!(
                "failed to decode kubelet config file {path:?}: no kind \"{}\" is registered for version \"{}\"",
                cfg.kind,
                cfg.api_version
            );
        }
        Ok(cfg)
    }

    /// The lease renew interval: a quarter of the lease duration, as upstream's
    /// `nodeLeaseRenewIntervalFraction`.
    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_millis(
            u64::try_from(self.node_lease_duration_seconds.max(1)).unwrap_or(40) * 250,
        )
    }
}

/// Where the kubelet keeps its state (`--root-dir`), and the paths below it.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
    /// Container logs, `/var/log/pods` upstream; kept under the root dir when the root is not
    /// the default so that several kubelets on one machine do not mix their logs.
    pub pod_logs: PathBuf,
}

impl Dirs {
    pub fn new(root: &Path) -> Dirs {
        let pod_logs = if root == Path::new("/var/lib/kubelet") {
            PathBuf::from("/var/log/pods")
        } else {
            root.join("pod-logs")
        };
        Dirs {
            root: root.to_path_buf(),
            pod_logs,
        }
    }
}

/// Go-style durations in the config file (`10s`, `1m30s`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        ferrokube_component::flags::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.yaml");
        std::fs::write(
            &p,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nnodeStatusUpdateFrequency: 4s\nmaxPods: 20\nsomethingNew: true\n",
        )
        .unwrap();
        let c = KubeletConfiguration::load(&p).unwrap();
        assert_eq!(c.cluster_dns, ["10.96.0.10"]);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
        assert_eq!(c.lease_renew_interval(), Duration::from_secs(10));
    }

    #[test]
    fn other_kinds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.yaml");
        std::fs::write(&p, "apiVersion: v1\nkind: Pod\n").unwrap();
        let err = KubeletConfiguration::load(&p).unwrap_err().to_string();
        assert!(err.contains("no kind \"Pod\" is registered"), "{err}");
    }
}
