//! `KubeSchedulerConfiguration` (kubescheduler.config.k8s.io/v1) as upstream reads it from
//! `--config`: defaults applied, profiles expanded into the plugins each extension point runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeaderElection {
    pub leader_elect: bool,
    #[serde(deserialize_with = "duration")]
    pub lease_duration: Duration,
    #[serde(deserialize_with = "duration")]
    pub renew_deadline: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_period: Duration,
    pub resource_name: String,
    pub resource_namespace: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_name: "kube-scheduler".into(),
            resource_namespace: "kube-system".into(),
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    ferrokube_component::flags::parse_duration(&s).map_err(serde::de::Error::custom)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PluginSet {
    pub enabled: Vec<PluginRef>,
    pub disabled: Vec<PluginRef>,
}

/// The extension points a profile can name, as in `Plugins` upstream.
pub const EXTENSION_POINTS: [&str; 12] = [
    "preEnqueue",
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
];

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Profile {
    pub scheduler_name: String,
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Extension point name (`multiPoint`, `filter`, ...) → its plugin set.
    pub plugins: HashMap<String, PluginSet>,
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Configuration {
    pub api_version: String,
    pub kind: String,
    pub client_connection: ClientConnection,
    pub leader_election: LeaderElection,
    pub parallelism: i32,
    pub percentage_of_nodes_to_score: Option<i32>,
    pub pod_initial_backoff_seconds: i64,
    pub pod_max_backoff_seconds: i64,
    pub profiles: Vec<Profile>,
}

impl Default for Configuration {
    fn default() -> Self {
        Configuration {
            api_version: "kubescheduler.config.k8s.io/v1".into(),
            kind: "KubeSchedulerConfiguration".into(),
            client_connection: ClientConnection::default(),
            leader_election: LeaderElection::default(),
            parallelism: 16,
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            profiles: Vec::new(),
        }
    }
}

/// Upstream's default plugins (the v1 `MultiPoint` list) with their score weights.
pub const DEFAULT_PLUGINS: [(&str, i64); 18] = [
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeRestrictions", 0),
    ("NodeVolumeLimits", 0),
    ("VolumeBinding", 0),
    ("VolumeZone", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
    ("DefaultBinder", 0),
];

impl Configuration {
    pub fn load(path: &std::path::Path) -> Result<Configuration> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Configuration::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Configuration> {
        let mut config: Configuration =
            serde_yaml_ng::from_str(text).context("decoding KubeSchedulerConfiguration")?;
        if config.kind != "KubeSchedulerConfiguration" {
            bail!(
                "unexpected kind {:?}: want KubeSchedulerConfiguration",
                config.kind
            );
        }
        if config.api_version != "kubescheduler.config.k8s.io/v1" {
            bail!(
                "unsupported apiVersion {:?}: want kubescheduler.config.k8s.io/v1",
                config.api_version
            );
        }
        config.default_and_validate()?;
        Ok(config)
    }

    fn default_and_validate(&mut self) -> Result<()> {
        if self.profiles.is_empty() {
            self.profiles.push(Profile::default());
        }
        let mut names = std::collections::HashSet::new();
        for p in &mut self.profiles {
            if p.scheduler_name.is_empty() {
                p.scheduler_name = DEFAULT_SCHEDULER_NAME.into();
            }
            if !names.insert(p.scheduler_name.clone()) {
                bail!(
                    "profiles[].schedulerName: Duplicate value: {:?}",
                    p.scheduler_name
                );
            }
            for point in p.plugins.keys() {
                if point != "multiPoint" && !EXTENSION_POINTS.contains(&point.as_str()) {
                    bail!("profiles[].plugins: unknown extension point {point:?}");
                }
            }
            if let Some(pct) = p.percentage_of_nodes_to_score {
                if !(0..=100).contains(&pct) {
                    bail!("profiles[].percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]");
                }
            }
        }
        if let Some(pct) = self.percentage_of_nodes_to_score {
            if !(0..=100).contains(&pct) {
                bail!("percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]");
            }
        }
        if self.parallelism <= 0 {
            bail!(
                "parallelism: Invalid value: {}: should be an integer value greater than zero",
                self.parallelism
            );
        }
        if self.pod_initial_backoff_seconds <= 0 {
            bail!(
                "podInitialBackoffSeconds: Invalid value: {}: must be greater than 0",
                self.pod_initial_backoff_seconds
            );
        }
        if self.pod_max_backoff_seconds < self.pod_initial_backoff_seconds {
            bail!("podMaxBackoffSeconds: Invalid value: {}: must be greater than or equal to PodInitialBackoffSeconds", self.pod_max_backoff_seconds);
        }
        Ok(())
    }
}

/// The plugins one extension point runs, in order, with their weights (score only).
pub fn expand(profile: &Profile, point: &str, implements: &dyn Fn(&str) -> bool) -> Vec<PluginRef> {
    let empty = PluginSet::default();
    let multi = profile.plugins.get("multiPoint").unwrap_or(&empty);
    let specific = profile.plugins.get(point).unwrap_or(&empty);
    let disabled_all = |set: &PluginSet| set.disabled.iter().any(|p| p.name == "*");
    let disabled = |set: &PluginSet, name: &str| set.disabled.iter().any(|p| p.name == name);

    // Multi-point plugins: the defaults (unless disabled there) then the profile's own,
    // a profile entry replacing a default of the same name.
    let mut multipoint: Vec<PluginRef> = Vec::new();
    if !disabled_all(multi) {
        for (name, weight) in DEFAULT_PLUGINS {
            if !disabled(multi, name) {
                multipoint.push(PluginRef {
                    name: name.into(),
                    weight: (weight > 0).then_some(weight),
                });
            }
        }
    }
    for p in &multi.enabled {
        multipoint.retain(|m| m.name != p.name);
        multipoint.push(p.clone());
    }

    // Plugins enabled on the point itself come first, then the multi-point ones that
    // implement it and are not disabled on it.
    let mut out: Vec<PluginRef> = specific.enabled.clone();
    if !disabled_all(specific) {
        for p in multipoint {
            if implements(&p.name)
                && !disabled(specific, &p.name)
                && !out.iter().any(|o| o.name == p.name)
            {
                out.push(p);
            }
        }
    }
    out
}

/// Args for a plugin from the profile's `pluginConfig` (`Null` when none).
pub fn plugin_args(profile: &Profile, name: &str) -> Value {
    profile
        .plugin_config
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.args.clone())
        .unwrap_or(Value::Null)
}

/// How many feasible nodes to find before scoring, as upstream's numFeasibleNodesToFind:
/// everything in small clusters, otherwise an adaptive share (50% minus 1% per 125 nodes,
/// at least 5%) and never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: Option<i32>, all_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    let pct = percentage.unwrap_or(0);
    if all_nodes < MIN_FEASIBLE || pct >= 100 {
        return all_nodes;
    }
    let pct = if pct <= 0 {
        (50 - all_nodes as i64 / 125).max(5)
    } else {
        pct as i64
    };
    let n = all_nodes as i64 * pct / 100;
    (n as usize).max(MIN_FEASIBLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_one_profile() {
        let c = Configuration::parse(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
        )
        .unwrap();
        assert_eq!(c.profiles.len(), 1);
        assert_eq!(c.profiles[0].scheduler_name, DEFAULT_SCHEDULER_NAME);
        assert!(c.leader_election.leader_elect);
        let score = expand(&c.profiles[0], "score", &|n| {
            ["TaintToleration", "NodeResourcesFit", "ImageLocality"].contains(&n)
        });
        let names: Vec<_> = score.iter().map(|p| (p.name.as_str(), p.weight)).collect();
        assert_eq!(
            names,
            [
                ("TaintToleration", Some(3)),
                ("NodeResourcesFit", Some(1)),
                ("ImageLocality", Some(1))
            ]
        );
    }

    #[test]
    fn disabling_and_enabling_on_a_point() {
        let c = Configuration::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: a
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: ImageLocality, weight: 5}]
- schedulerName: b
  plugins:
    multiPoint:
      disabled: [{name: TaintToleration}]
"#,
        )
        .unwrap();
        let implements =
            |n: &str| ["TaintToleration", "NodeResourcesFit", "ImageLocality"].contains(&n);
        let a = expand(&c.profiles[0], "score", &implements);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].name.as_str(), a[0].weight),
            ("ImageLocality", Some(5))
        );
        let b = expand(&c.profiles[1], "score", &implements);
        assert!(!b.iter().any(|p| p.name == "TaintToleration"));
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |extra: &str| {
            Configuration::parse(&format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n{extra}"
            ))
            .is_err()
        };
        assert!(bad("percentageOfNodesToScore: 120\n"));
        assert!(bad("profiles: [{schedulerName: x}, {schedulerName: x}]\n"));
        assert!(bad(
            "podInitialBackoffSeconds: 5\npodMaxBackoffSeconds: 2\n"
        ));
        assert!(Configuration::parse("kind: Other\n").is_err());
    }

    #[test]
    fn feasible_node_counts() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(Some(1), 5000), 100);
    }
}
