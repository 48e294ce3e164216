//! The pod sandbox config (upstream's `kuberuntime_sandbox.go` and `_linux.go`), with the pod's
//! DNS (`pkg/kubelet/network/dns`) and the sysctl admission check (`pkg/kubelet/sysctl`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodDNSConfig};
use k8s_openapi::api::node::v1::RuntimeClass;

use super::hosts::{nodename_for_kernel, pod_hostname_and_domain};
use super::resources::{overhead_resources, sandbox_resources, NodeResources};
use super::security::{namespace_options, selinux_option, supplemental_groups_policy};
use super::{format_pod, go_quote, host_network, pod_name, pod_namespace, pod_uid, ConfigError};
use crate::runtime::api::security_profile::ProfileType;
use crate::runtime::api::{
    DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, Protocol, SecurityProfile,
};

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// A warning event the caller should record on the pod (upstream records these itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub reason: &'static str,
    pub message: String,
}

// ---- DNS --------------------------------------------------------------------------------------

pub const MAX_DNS_NAMESERVERS: usize = 3;
/// The expanded limits, GA since v1.28.
pub const MAX_DNS_SEARCH_PATHS: usize = 32;
pub const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
/// Longer search domains make some resolvers (glibc 2.28) abort.
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// The node's DNS settings, from the kubelet's flags.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// `--cluster-dns`.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// The content of `--resolv-conf`; `None` when the flag is empty (then pods that take the
    /// host's DNS get a localhost nameserver, i.e. none).
    pub resolv_conf: Option<String>,
    /// The node's IPs, for that localhost fallback's address family.
    pub node_ips: Vec<String>,
}

/// What a resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Upstream's `parseResolvConf`: nameservers accumulate, the last `search` and `options` lines
/// win, search domains lose a trailing dot and `.` itself is dropped.
pub fn parse_resolv_conf(content: &str) -> Result<ResolvConf, String> {
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut options = Vec::new();
    let mut errors = Vec::new();
    for line in content.split('\n') {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") => match fields.get(1) {
                Some(ns) => servers.push(ns.to_string()),
                None => errors.push("nameserver list is empty "),
            },
            Some(&"search") => {
                searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                    .collect();
            }
            Some(&"options") => options = fields[1..].iter().map(|s| s.to_string()).collect(),
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(match errors.len() {
            1 => errors[0].to_string(),
            _ => format!("[{}]", errors.join(", ")),
        });
    }
    Ok(ResolvConf {
        nameservers: servers,
        searches,
        options,
    })
}

fn omit_duplicates(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// Upstream's `mergeDNSOptions`: `name[:value]` options, the pod's replacing the base's of the
/// same name (kept in first-appearance order; upstream's order is a Go map's).
fn merge_dns_options(existing: &[String], pod: &PodDNSConfig) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |name: String, value: String| {
        if !values.contains_key(&name) {
            order.push(name.clone());
        }
        values.insert(name, value);
    };
    for op in existing {
        match op.split_once(':') {
            Some((name, value)) => set(name.to_string(), value.to_string()),
            None => set(op.clone(), String::new()),
        }
    }
    for op in pod.options.iter().flatten() {
        set(
            op.name.clone().unwrap_or_default(),
            op.value.clone().unwrap_or_default(),
        );
    }
    order
        .into_iter()
        .map(|name| match values.get(&name).map(String::as_str) {
            Some(v) if !v.is_empty() => format!("{name}:{v}"),
            _ => name,
        })
        .collect()
}

/// Upstream's `formDNSSearchFitsLimits`: at most 32 domains, none over 253 characters, and the
/// line at most 2048 characters, dropping domains from the end.
fn fit_search_limits(mut search: Vec<String>, events: &mut Vec<Event>) -> Vec<String> {
    let mut exceeded = false;
    if search.len() > MAX_DNS_SEARCH_PATHS {
        search.truncate(MAX_DNS_SEARCH_PATHS);
        exceeded = true;
    }
    let before = search.len();
    search.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    exceeded |= search.len() != before;
    let line_len = search.join(" ").len();
    if line_len > MAX_DNS_SEARCH_LIST_CHARS {
        let mut cut = 0;
        let mut cut_len = 0;
        for s in search.iter().rev() {
            cut_len += s.len() + 1;
            cut += 1;
            if line_len - cut_len <= MAX_DNS_SEARCH_LIST_CHARS {
                break;
            }
        }
        search.truncate(search.len() - cut);
        exceeded = true;
    }
    if exceeded {
        events.push(Event {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                search.join(" ")
            ),
        });
    }
    search
}

fn fit_nameserver_limits(mut servers: Vec<String>, events: &mut Vec<Event>) -> Vec<String> {
    if servers.len() > MAX_DNS_NAMESERVERS {
        servers.truncate(MAX_DNS_NAMESERVERS);
        events.push(Event {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                servers.join(" ")
            ),
        });
    }
    servers
}

/// The pod's resolver config (upstream's `GetPodDNS`):
/// - `ClusterFirst` (and `ClusterFirstWithHostNet`, and `ClusterFirst` off the host network):
///   the cluster DNS servers only, search `<ns>.svc.<domain> svc.<domain> <domain>` followed by
///   the host's search domains, options `ndots:5`; without cluster DNS, as `Default`;
/// - `Default` (and `ClusterFirst` on the host network): the host's resolv.conf;
/// - `None`: nothing but the pod's `dnsConfig`.
///
/// The pod's `dnsConfig` is then appended (duplicates dropped, options merged by name) and the
/// result cut to the resolver's limits. Events to record on the pod are appended to `events`.
pub fn pod_dns_config(
    pod: &Pod,
    settings: &DnsSettings,
    events: &mut Vec<Event>,
) -> Result<DnsConfig, ConfigError> {
    let host = match settings.resolv_conf.as_deref() {
        Some(content) => parse_resolv_conf(content).map_err(ConfigError)?,
        None => ResolvConf::default(),
    };
    let (mut servers, mut searches, mut options) = (host.nameservers, host.searches, host.options);
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    #[derive(PartialEq)]
    enum Kind {
        Cluster,
        Host,
        None,
    }
    let kind = match policy {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "ClusterFirst" if !host_network(pod) => Kind::Cluster,
        "ClusterFirst" | "Default" => Kind::Host,
        // Rejected by the apiserver; upstream falls back to ClusterFirst.
        _ => Kind::Cluster,
    };
    let mut use_host = kind == Kind::Host;
    match kind {
        Kind::None => (servers, searches, options) = Default::default(),
        Kind::Cluster if !settings.cluster_dns.is_empty() => {
            servers = settings.cluster_dns.clone();
            let domain = &settings.cluster_domain;
            if !domain.is_empty() {
                let mut cluster = vec![
                    format!("{}.svc.{domain}", pod_namespace(pod)),
                    format!("svc.{domain}"),
                    domain.clone(),
                ];
                cluster.append(&mut searches);
                searches = omit_duplicates(cluster);
            }
            options = vec!["ndots:5".to_string()];
        }
        Kind::Cluster => {
            events.push(Event {
                reason: "MissingClusterDNS",
                message: format!(
                    "pod: {}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                    go_quote(&format_pod(pod))
                ),
            });
            use_host = true;
        }
        Kind::Host => {}
    }
    if use_host && settings.resolv_conf.is_none() {
        servers = settings
            .node_ips
            .iter()
            .map(|ip| if ip.contains(':') { "::1" } else { "127.0.0.1" }.to_string())
            .collect();
        if servers.is_empty() {
            servers.push("127.0.0.1".to_string());
        }
        searches = vec![".".to_string()];
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers = omit_duplicates(
            servers
                .into_iter()
                .chain(extra.nameservers.iter().flatten().cloned()),
        );
        searches = omit_duplicates(
            searches
                .into_iter()
                .chain(extra.searches.iter().flatten().cloned()),
        );
        options = merge_dns_options(&options, extra);
    }
    Ok(DnsConfig {
        servers: fit_nameserver_limits(servers, events),
        searches: fit_search_limits(searches, events),
        options,
    })
}

// ---- Sysctls ----------------------------------------------------------------------------------

/// Sysctls upstream considers safe: namespaced, and without effect outside the pod. (Upstream
/// drops the later ones on kernels older than 4.6, which this kubelet does not run on.)
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

const SYSCTL_MAX_LENGTH: usize = 253;
const SYSCTL_PATTERN_REGEX: &str =
    r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysctlNamespace {
    Ipc,
    Net,
}

impl SysctlNamespace {
    fn name(self) -> &'static str {
        match self {
            SysctlNamespace::Ipc => "ipc",
            SysctlNamespace::Net => "net",
        }
    }
}

/// Which kernel namespace isolates a sysctl (upstream's `NamespacedBy`).
fn namespaced_by(name: &str) -> Option<SysctlNamespace> {
    if name == "kernel.sem" {
        return Some(SysctlNamespace::Ipc);
    }
    if ["kernel.shm", "kernel.msg", "fs.mqueue."]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Some(SysctlNamespace::Ipc);
    }
    name.starts_with("net.").then_some(SysctlNamespace::Net)
}

/// `net/ipv4/conf/eth0.100/rp_filter` → `net.ipv4.conf.eth0/100.rp_filter` (upstream's
/// `NormalizeName`: a name whose first separator is `/` has `.` and `/` swapped).
pub fn normalize_sysctl_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => ok(f) && ok(l) && b.iter().all(|c| ok(c) || *c == b'-' || *c == b'_'),
        _ => false,
    }
}

fn is_pattern_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let Some((last, head)) = b.split_last() else {
        return false;
    };
    (ok(last) || *last == b'*')
        && head.first().is_none_or(ok)
        && head.iter().all(|c| ok(c) || *c == b'-' || *c == b'_')
}

/// Upstream's `IsValidSysctlPattern`: dotted or slashed segments, the last possibly ending in
/// `*`.
pub fn is_valid_sysctl_pattern(pattern: &str) -> bool {
    if pattern.len() > SYSCTL_MAX_LENGTH {
        return false;
    }
    let parts: Vec<&str> = pattern.split(['.', '/']).collect();
    let Some((last, head)) = parts.split_last() else {
        return false;
    };
    head.iter().all(|s| is_segment(s)) && is_pattern_segment(last)
}

/// The sysctls pods may set: upstream's safe set plus `--allowed-unsafe-sysctls`.
#[derive(Debug, Clone)]
pub struct SysctlAllowlist {
    exact: BTreeMap<String, SysctlNamespace>,
    prefixes: BTreeMap<String, SysctlNamespace>,
}

/// A pod refused at admission: upstream's reason and message, for the pod's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SysctlForbidden {
    pub reason: &'static str,
    pub message: String,
}

impl SysctlAllowlist {
    /// The allowlist with `allowed_unsafe` added (names or `prefix*` patterns); each must be a
    /// valid pattern and known to be namespaced, as upstream checks at start-up.
    pub fn new(allowed_unsafe: &[String]) -> Result<Self, String> {
        let mut list = Self {
            exact: BTreeMap::new(),
            prefixes: BTreeMap::new(),
        };
        let all = SAFE_SYSCTLS
            .iter()
            .map(|s| s.to_string())
            .chain(allowed_unsafe.iter().cloned());
        for pattern in all {
            if !is_valid_sysctl_pattern(&pattern) {
                return Err(format!(
                    "sysctl {} must have at most {SYSCTL_MAX_LENGTH} characters and match regex {SYSCTL_PATTERN_REGEX}",
                    go_quote(&pattern)
                ));
            }
            let pattern = normalize_sysctl_name(&pattern);
            match pattern.strip_suffix('*') {
                Some(prefix) => {
                    let ns = namespaced_by(prefix).ok_or_else(|| {
                        format!(
                            "the sysctls {} are not known to be namespaced",
                            go_quote(&pattern)
                        )
                    })?;
                    list.prefixes.insert(prefix.to_string(), ns);
                }
                None => {
                    let ns = namespaced_by(&pattern).ok_or_else(|| {
                        format!(
                            "the sysctl {} are not known to be namespaced",
                            go_quote(&pattern)
                        )
                    })?;
                    list.exact.insert(pattern, ns);
                }
            }
        }
        Ok(list)
    }

    fn validate(&self, name: &str, host_net: bool, host_ipc: bool) -> Result<(), String> {
        let name = normalize_sysctl_name(name);
        let ns = self.exact.get(&name).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
                .map(|(_, ns)| *ns)
        });
        let Some(ns) = ns else {
            return Err(format!("{} not allowlisted", go_quote(&name)));
        };
        if (ns == SysctlNamespace::Ipc && host_ipc) || (ns == SysctlNamespace::Net && host_net) {
            return Err(format!(
                "{} not allowed with host {} enabled",
                go_quote(&name),
                ns.name()
            ));
        }
        Ok(())
    }

    /// Upstream's sysctl admission handler: every sysctl of the pod must be allowed, and not
    /// one of a namespace the pod shares with the host.
    pub fn admit(&self, pod: &Pod) -> Result<(), SysctlForbidden> {
        let spec = pod.spec.as_ref();
        let sysctls = spec
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.sysctls.as_deref())
            .unwrap_or_default();
        let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
        let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
        for s in sysctls {
            self.validate(&s.name, host_net, host_ipc)
                .map_err(|e| SysctlForbidden {
                    reason: "SysctlForbidden",
                    message: format!("forbidden sysctl: {e}"),
                })?;
        }
        Ok(())
    }
}

// ---- The sandbox ------------------------------------------------------------------------------

/// Upstream's `BuildPodLogsDirectory`: `<root>/<namespace>_<name>_<uid>`.
pub fn pod_logs_directory(pod_logs_root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    pod_logs_root.join(format!("{namespace}_{name}_{uid}"))
}

/// The runtime handler for the pod's RuntimeClass (upstream's `LookupRuntimeHandler`); the
/// caller passes the RuntimeClass it found under `spec.runtimeClassName`, if any.
pub fn runtime_handler(
    pod: &Pod,
    runtime_class: Option<&RuntimeClass>,
) -> Result<String, ConfigError> {
    let Some(name) = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|n| !n.is_empty())
    else {
        return Ok(String::new());
    };
    match runtime_class {
        Some(rc) => Ok(rc.handler.clone()),
        None => Err(ConfigError(format!(
            "runtimeclass.node.k8s.io {} not found",
            go_quote(name)
        ))),
    }
}

/// CRI's protocol for a container port's (upstream's `toRuntimeProtocol`: anything unknown is
/// TCP).
pub fn runtime_protocol(protocol: Option<&str>) -> Protocol {
    match protocol {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// Upstream's `MakePortMappings` for one container: every declared port, the second of two
/// with the same name (or, unnamed, the same family, protocol, host IP and ports) dropped.
pub fn port_mappings(container: &Container) -> Vec<PortMapping> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in container.ports.iter().flatten() {
        let host_ip = p.host_ip.clone().unwrap_or_default();
        let protocol = p.protocol.as_deref().unwrap_or_default();
        let host_port = p.host_port.unwrap_or(0);
        let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let family = match host_ip.as_str() {
                    "" => "any",
                    ip if ip.contains(':') => "v6",
                    _ => "v4",
                };
                format!(
                    "{family}-{protocol}-{host_ip}:{}:{host_port}",
                    p.container_port
                )
            }
        };
        if !seen.insert(name) {
            continue;
        }
        out.push(PortMapping {
            protocol: runtime_protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port,
            host_ip,
        });
    }
    out
}

fn any_privileged(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let privileged = |sc: Option<&k8s_openapi::api::core::v1::SecurityContext>| {
        sc.and_then(|s| s.privileged).unwrap_or(false)
    };
    super::containers(pod)
        .iter()
        .chain(super::init_containers(pod))
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .and_then(|s| s.ephemeral_containers.as_ref())
            .into_iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The sandbox's labels (upstream's `newPodLabels`): the pod's labels plus its name,
/// namespace and uid.
pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(POD_NAME_LABEL.into(), pod_name(pod).into());
    labels.insert(POD_NAMESPACE_LABEL.into(), pod_namespace(pod).into());
    labels.insert(POD_UID_LABEL.into(), pod_uid(pod).into());
    labels
}

/// What a sandbox config depends on besides the pod.
#[derive(Debug, Clone, Copy)]
pub struct SandboxInputs<'a> {
    /// How many sandboxes the pod had before this one.
    pub attempt: u32,
    /// `--pod-logs-dir` (`/var/log/pods`).
    pub pod_logs_root: &'a Path,
    /// The pod's cgroup, from [`super::resources::pod_cgroup_parent`].
    pub cgroup_parent: &'a str,
    pub dns: &'a DnsSettings,
    pub node: &'a NodeResources,
    /// Extra groups from the pod's volumes (the `pv.beta.kubernetes.io/gid` annotations).
    pub extra_supplemental_groups: &'a [i64],
}

/// A sandbox config and the events that building it produced.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub config: PodSandboxConfig,
    pub events: Vec<Event>,
}

fn linux_sandbox_config(
    pod: &Pod,
    inputs: &SandboxInputs<'_>,
) -> Result<LinuxPodSandboxConfig, ConfigError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut sc = LinuxSandboxSecurityContext {
        privileged: any_privileged(pod),
        // The pause process needs no syscalls beyond the default set, whatever the
        // containers use (upstream issue #84623).
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        // Upstream sets these only when the pod has a security context, which the apiserver
        // always defaults; setting them always keeps an undefaulted host-network pod on the
        // host network.
        namespace_options: Some(namespace_options(pod)?),
        ..Default::default()
    };
    let mut sysctls = HashMap::new();
    if let Some(p) = pod_sc {
        for s in p.sysctls.iter().flatten() {
            sysctls.insert(normalize_sysctl_name(&s.name), s.value.clone());
        }
        sc.run_as_user = p.run_as_user.map(|value| Int64Value { value });
        sc.run_as_group = p.run_as_group.map(|value| Int64Value { value });
        sc.supplemental_groups.extend(p.fs_group);
    }
    sc.supplemental_groups
        .extend_from_slice(inputs.extra_supplemental_groups);
    if let Some(p) = pod_sc {
        sc.supplemental_groups
            .extend(p.supplemental_groups.iter().flatten().copied());
        sc.supplemental_groups_policy =
            supplemental_groups_policy(p.supplemental_groups_policy.as_deref())?;
        sc.selinux_options = p.se_linux_options.as_ref().map(selinux_option);
    }
    Ok(LinuxPodSandboxConfig {
        cgroup_parent: inputs.cgroup_parent.to_string(),
        security_context: Some(sc),
        sysctls,
        overhead: Some(overhead_resources(pod, inputs.node)),
        resources: Some(sandbox_resources(pod, inputs.node)),
    })
}

/// The pod's sandbox config (upstream's `generatePodSandboxConfig`): metadata, hostname (not
/// for host-network pods, which keep the node's), log directory, DNS, port mappings of the
/// regular containers, labels and annotations, and the Linux part: cgroup, namespaces, sandbox
/// user and groups, sysctls, RuntimeDefault seccomp, pod resources and overhead.
pub fn pod_sandbox_config(pod: &Pod, inputs: &SandboxInputs<'_>) -> Result<Sandbox, ConfigError> {
    let mut events = Vec::new();
    let dns = pod_dns_config(pod, inputs.dns, &mut events)?;
    let hostname = if host_network(pod) {
        String::new()
    } else {
        let (hostname, domain) = pod_hostname_and_domain(pod, &inputs.dns.cluster_domain)?;
        let fqdn = pod
            .spec
            .as_ref()
            .and_then(|s| s.set_hostname_as_fqdn)
            .unwrap_or(false);
        nodename_for_kernel(&hostname, &domain, fqdn)?
    };
    let log_directory = pod_logs_directory(
        inputs.pod_logs_root,
        pod_namespace(pod),
        pod_name(pod),
        pod_uid(pod),
    );
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod_name(pod).to_string(),
            uid: pod_uid(pod).to_string(),
            namespace: pod_namespace(pod).to_string(),
            attempt: inputs.attempt,
        }),
        hostname,
        log_directory: log_directory.to_string_lossy().into_owned(),
        dns_config: Some(dns),
        port_mappings: super::containers(pod)
            .iter()
            .flat_map(port_mappings)
            .collect(),
        labels: sandbox_labels(pod),
        annotations: pod
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(linux_sandbox_config(pod, inputs)?),
        windows: None,
    };
    Ok(Sandbox { config, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, PodDNSConfigOption, PodSecurityContext, PodSpec, SecurityContext, Sysctl,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-0".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                annotations: Some([("a".to_string(), "b".to_string())].into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            resolv_conf: Some(
                "# generated\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch example.com corp.example.com. .\noptions ndots:2 timeout:1\n".into(),
            ),
            node_ips: vec!["192.168.1.2".into()],
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolv_conf_parsing() {
        let conf =
            parse_resolv_conf(settings().resolv_conf.as_deref().unwrap_or_default()).unwrap();
        assert_eq!(conf.nameservers, strings(&["1.1.1.1", "8.8.8.8"]));
        assert_eq!(conf.searches, strings(&["example.com", "corp.example.com"]));
        assert_eq!(conf.options, strings(&["ndots:2", "timeout:1"]));
        assert_eq!(
            parse_resolv_conf("nameserver\n").unwrap_err(),
            "nameserver list is empty "
        );
        let conf = parse_resolv_conf("search a b\nsearch c\n").unwrap();
        assert_eq!(conf.searches, strings(&["c"]));
    }

    #[test]
    fn cluster_first() {
        let mut events = Vec::new();
        let dns = pod_dns_config(&pod(PodSpec::default()), &settings(), &mut events).unwrap();
        assert_eq!(dns.servers, strings(&["10.96.0.10"]));
        assert_eq!(
            dns.searches,
            strings(&[
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.com",
                "corp.example.com"
            ])
        );
        assert_eq!(dns.options, strings(&["ndots:5"]));
        assert!(events.is_empty());
    }

    #[test]
    fn host_policies() {
        let mut events = Vec::new();
        let host_net = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        let dns = pod_dns_config(&pod(host_net.clone()), &settings(), &mut events).unwrap();
        assert_eq!(dns.servers, strings(&["1.1.1.1", "8.8.8.8"]));
        assert_eq!(dns.options, strings(&["ndots:2", "timeout:1"]));
        let with_host_net = PodSpec {
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            ..host_net
        };
        let dns = pod_dns_config(&pod(with_host_net), &settings(), &mut events).unwrap();
        assert_eq!(dns.servers, strings(&["10.96.0.10"]));
        // No --resolv-conf: a localhost nameserver, search ".".
        let default = PodSpec {
            dns_policy: Some("Default".into()),
            ..Default::default()
        };
        let no_resolv = DnsSettings {
            resolv_conf: None,
            node_ips: strings(&["fd00::2"]),
            ..settings()
        };
        let dns = pod_dns_config(&pod(default), &no_resolv, &mut events).unwrap();
        assert_eq!(
            (dns.servers, dns.searches),
            (strings(&["::1"]), strings(&["."]))
        );
        // No cluster DNS: Default, with an event.
        let no_cluster = DnsSettings {
            cluster_dns: vec![],
            ..settings()
        };
        let dns = pod_dns_config(&pod(PodSpec::default()), &no_cluster, &mut events).unwrap();
        assert_eq!(dns.servers, strings(&["1.1.1.1", "8.8.8.8"]));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "MissingClusterDNS");
        assert!(events[0].message.starts_with(
            "pod: \"web-0_ns(uid-0)\". kubelet does not have ClusterDNS IP configured"
        ));
    }

    #[test]
    fn dns_config_merging() {
        let opt = |n: &str, v: Option<&str>| PodDNSConfigOption {
            name: Some(n.into()),
            value: v.map(str::to_string),
        };
        let spec = PodSpec {
            dns_config: Some(PodDNSConfig {
                nameservers: Some(strings(&["10.96.0.10", "9.9.9.9", "4.4.4.4", "5.5.5.5"])),
                searches: Some(strings(&["svc.cluster.local", "my.dns.search.suffix"])),
                options: Some(vec![
                    opt("ndots", Some("2")),
                    opt("edns0", None),
                    opt("single-request", Some("")),
                ]),
            }),
            ..Default::default()
        };
        let mut events = Vec::new();
        let dns = pod_dns_config(&pod(spec), &settings(), &mut events).unwrap();
        assert_eq!(dns.servers, strings(&["10.96.0.10", "9.9.9.9", "4.4.4.4"]));
        assert_eq!(
            dns.searches.last().map(String::as_str),
            Some("my.dns.search.suffix")
        );
        assert_eq!(dns.searches.len(), 6);
        assert_eq!(
            dns.options,
            strings(&["ndots:2", "edns0", "single-request"])
        );
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].message,
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 9.9.9.9 4.4.4.4"
        );
        // None: only what the pod says.
        let none = PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(strings(&["1.2.3.4"])),
                searches: None,
                options: Some(vec![opt("ndots", Some("1"))]),
            }),
            ..Default::default()
        };
        let dns = pod_dns_config(&pod(none), &settings(), &mut events).unwrap();
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (strings(&["1.2.3.4"]), vec![], strings(&["ndots:1"]))
        );
    }

    #[test]
    fn search_limits() {
        let mut events = Vec::new();
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let fitted = fit_search_limits(many, &mut events);
        assert_eq!(fitted.len(), 32);
        assert_eq!(fitted[31], "d31.example");
        assert!(events[0]
            .message
            .starts_with("Search Line limits were exceeded"));
        // 2048 characters at most: 10 domains of 250 characters keep 8 (8*251-1 = 2007).
        let long: Vec<String> = (0..10).map(|i| format!("{i}{}", "a".repeat(249))).collect();
        assert_eq!(fit_search_limits(long, &mut events).len(), 8);
        let too_long = vec!["a".repeat(254), "ok".to_string()];
        assert_eq!(fit_search_limits(too_long, &mut events), strings(&["ok"]));
    }

    #[test]
    fn sysctl_admission() {
        let list = SysctlAllowlist::new(&strings(&["net.core.somaxconn", "kernel.msg*"])).unwrap();
        let with = |names: &[&str], host_network: bool| {
            pod(PodSpec {
                host_network: Some(host_network),
                security_context: Some(PodSecurityContext {
                    sysctls: Some(
                        names
                            .iter()
                            .map(|n| Sysctl {
                                name: n.to_string(),
                                value: "1".into(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert!(list
            .admit(&with(
                &["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range"],
                false
            ))
            .is_ok());
        assert!(list
            .admit(&with(
                &[
                    "net/ipv4/tcp_syncookies",
                    "net.core.somaxconn",
                    "kernel.msgmax"
                ],
                false
            ))
            .is_ok());
        let err = list.admit(&with(&["kernel.panic"], false)).unwrap_err();
        assert_eq!(
            (err.reason, err.message.as_str()),
            (
                "SysctlForbidden",
                "forbidden sysctl: \"kernel.panic\" not allowlisted"
            )
        );
        let err = list
            .admit(&with(&["net.ipv4.tcp_syncookies"], true))
            .unwrap_err();
        assert_eq!(
            err.message,
            "forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled"
        );
        let err = SysctlAllowlist::new(&strings(&["kernel.panic"])).unwrap_err();
        assert_eq!(
            err,
            "the sysctl \"kernel.panic\" are not known to be namespaced"
        );
        let err = SysctlAllowlist::new(&strings(&["Bad"])).unwrap_err();
        assert!(err.starts_with("sysctl \"Bad\" must have at most 253 characters and match regex"));
        assert_eq!(
            normalize_sysctl_name("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize_sysctl_name("net.ipv4.conf.eno2/100.rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert!(
            is_valid_sysctl_pattern("net.*")
                && is_valid_sysctl_pattern("a/b.c")
                && !is_valid_sysctl_pattern("net..x")
        );
    }

    #[test]
    fn sandbox_config() {
        let spec = PodSpec {
            hostname: Some("db".into()),
            subdomain: Some("svc".into()),
            set_hostname_as_fqdn: Some(true),
            containers: vec![
                Container {
                    name: "a".into(),
                    ports: Some(vec![
                        ContainerPort {
                            container_port: 80,
                            host_port: Some(8080),
                            host_ip: Some("127.0.0.1".into()),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 53,
                            protocol: Some("UDP".into()),
                            name: Some("dns".into()),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 54,
                            protocol: Some("UDP".into()),
                            name: Some("dns".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                },
                Container {
                    name: "b".into(),
                    security_context: Some(SecurityContext {
                        privileged: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                fs_group: Some(2000),
                supplemental_groups: Some(vec![3000]),
                sysctls: Some(vec![Sysctl {
                    name: "net/ipv4/ip_local_port_range".into(),
                    value: "1024 65000".into(),
                }]),
                ..Default::default()
            }),
            share_process_namespace: Some(true),
            ..Default::default()
        };
        let node = NodeResources {
            cgroup_v2: false,
            ..Default::default()
        };
        let dns = settings();
        let inputs = SandboxInputs {
            attempt: 2,
            pod_logs_root: Path::new("/var/log/pods"),
            cgroup_parent: "/kubepods/besteffort/poduid-0",
            dns: &dns,
            node: &node,
            extra_supplemental_groups: &[42],
        };
        let Sandbox { config, events } = pod_sandbox_config(&pod(spec), &inputs).unwrap();
        assert!(events.is_empty());
        let meta = config.metadata.unwrap();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str(),
                meta.attempt
            ),
            ("web-0", "ns", "uid-0", 2)
        );
        assert_eq!(config.hostname, "db.svc.ns.svc.cluster.local");
        assert_eq!(config.log_directory, "/var/log/pods/ns_web-0_uid-0");
        assert_eq!(
            config.labels.get(POD_NAME_LABEL).map(String::as_str),
            Some("web-0")
        );
        assert_eq!(
            config.labels.get(POD_NAMESPACE_LABEL).map(String::as_str),
            Some("ns")
        );
        assert_eq!(
            config.labels.get(POD_UID_LABEL).map(String::as_str),
            Some("uid-0")
        );
        assert_eq!(config.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(config.annotations.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            config.port_mappings,
            vec![
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 8080,
                    host_ip: "127.0.0.1".into(),
                },
                PortMapping {
                    protocol: Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ]
        );
        let linux = config.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/poduid-0");
        assert_eq!(
            linux
                .sysctls
                .get("net.ipv4.ip_local_port_range")
                .map(String::as_str),
            Some("1024 65000")
        );
        let sc = linux.security_context.unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.supplemental_groups, [2000, 42, 3000]);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(
            sc.namespace_options.unwrap().pid,
            crate::runtime::api::NamespaceMode::Pod as i32
        );
        let res = linux.resources.unwrap();
        assert_eq!((res.cpu_shares, res.cpu_period), (2, 100_000));
    }

    #[test]
    fn runtime_handlers() {
        let mut p = pod(PodSpec::default());
        assert_eq!(runtime_handler(&p, None).unwrap(), "");
        if let Some(s) = p.spec.as_mut() {
            s.runtime_class_name = Some("gvisor".into());
        }
        assert_eq!(
            runtime_handler(&p, None).unwrap_err().0,
            "runtimeclass.node.k8s.io \"gvisor\" not found"
        );
        let rc = RuntimeClass {
            handler: "runsc".into(),
            ..Default::default()
        };
        assert_eq!(runtime_handler(&p, Some(&rc)).unwrap(), "runsc");
    }
}
