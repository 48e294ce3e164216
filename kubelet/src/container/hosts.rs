//! The pod's hostname and the `/etc/hosts` file the kubelet manages for it (upstream's
//! `GeneratePodHostNameAndDomain`, `GetNodenameForKernel`, `ensureHostsFile` and friends in
//! `kubelet_pods.go`).

use k8s_openapi::api::core::v1::{HostAlias, Pod};

use super::{host_network, pod_name, pod_namespace, ConfigError};

pub const ETC_HOSTS_PATH: &str = "/etc/hosts";
const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";
/// The kernel's nodename field holds 64 bytes with the terminator.
const HOSTNAME_MAX_LEN: usize = 63;
const FQDN_MAX_LEN: usize = 64;

/// Upstream's `truncatePodHostnameIfNeeded`: at most 63 characters, not ending in `-` or `.`.
fn truncate_hostname(pod: &str, hostname: &str) -> Result<String, ConfigError> {
    if hostname.len() <= HOSTNAME_MAX_LEN {
        return Ok(hostname.to_string());
    }
    let cut = hostname.get(..HOSTNAME_MAX_LEN).unwrap_or(hostname);
    let trimmed = cut.trim_end_matches(['-', '.']);
    if trimmed.is_empty() {
        return Err(ConfigError(format!(
            "hostname for pod {} was invalid: {}",
            super::go_quote(pod),
            super::go_quote(hostname)
        )));
    }
    Ok(trimmed.to_string())
}

/// The pod's short hostname and its domain (upstream's `GeneratePodHostNameAndDomain`): the
/// pod's name or `spec.hostname`, and with a `subdomain` the domain
/// `<subdomain>.<namespace>.svc.<cluster domain>`.
pub fn pod_hostname_and_domain(
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(String, String), ConfigError> {
    let spec = pod.spec.as_ref();
    let mut hostname = pod_name(pod).to_string();
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        let errs = ferrokube_common::labels::is_dns1123_label(h);
        if !errs.is_empty() {
            return Err(ConfigError(format!(
                "pod Hostname {} is not a valid DNS label: {}",
                super::go_quote(h),
                errs.join(";")
            )));
        }
        hostname = h.to_string();
    }
    let hostname = truncate_hostname(pod_name(pod), &hostname)?;
    let mut domain = String::new();
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        let errs = ferrokube_common::labels::is_dns1123_label(sub);
        if !errs.is_empty() {
            return Err(ConfigError(format!(
                "pod Subdomain {} is not a valid DNS label: {}",
                super::go_quote(sub),
                errs.join(";")
            )));
        }
        domain = format!("{sub}.{}.svc.{cluster_domain}", pod_namespace(pod));
    }
    Ok((hostname, domain))
}

/// The hostname the container's kernel reports (upstream's `GetNodenameForKernel`): the short
/// name, or the FQDN with `setHostnameAsFQDN` and a domain.
pub fn nodename_for_kernel(
    hostname: &str,
    domain: &str,
    set_hostname_as_fqdn: bool,
) -> Result<String, ConfigError> {
    if domain.is_empty() || !set_hostname_as_fqdn {
        return Ok(hostname.to_string());
    }
    let fqdn = format!("{hostname}.{domain}");
    if fqdn.len() > FQDN_MAX_LEN {
        return Err(ConfigError(format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
            fqdn.len()
        )));
    }
    Ok(fqdn)
}

/// Whether containers get the managed hosts file: once the pod has an IP (upstream's
/// `shouldMountHostsFile` on Linux), and unless the container mounts something at
/// `/etc/hosts` itself (checked when building mounts).
pub fn should_mount_hosts_file(pod_ips: &[String]) -> bool {
    !pod_ips.is_empty()
}

fn host_alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.as_deref().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

/// The hosts file of a pod with its own network namespace (upstream's
/// `managedHostsFileContent`): localhost entries, each pod IP with the hostname (FQDN first
/// when the pod has a domain), then the pod's host aliases.
pub fn managed_hosts_content(
    pod_ips: &[String],
    hostname: &str,
    domain: &str,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_alias_entries(aliases));
    out
}

/// The hosts file of a host-network pod (upstream's `nodeHostsFileContent`): the node's own
/// `/etc/hosts` under a header, with the pod's host aliases appended. Upstream writes this copy
/// rather than mounting the node's file, so aliases never touch the host.
pub fn node_hosts_content(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_alias_entries(aliases));
    out
}

/// The content of the pod's `etc-hosts` file, either kind. `node_hosts` is the node's
/// `/etc/hosts`, read only for host-network pods.
pub fn hosts_file_content(
    pod: &Pod,
    pod_ips: &[String],
    hostname: &str,
    domain: &str,
    node_hosts: &str,
) -> String {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if host_network(pod) {
        node_hosts_content(node_hosts, aliases)
    } else {
        managed_hosts_content(pod_ips, hostname, domain, aliases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn alias(ip: &str, names: &[&str]) -> HostAlias {
        HostAlias {
            ip: ip.into(),
            hostnames: Some(names.iter().map(|s| s.to_string()).collect()),
        }
    }

    // Expected texts from upstream's kubelet_pods_test.go (TestManagedHostsFileContent).
    #[test]
    fn managed_content() {
        let got = managed_hosts_content(&["123.45.67.89".into()], "podFoo", "", &[]);
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             123.45.67.89\tpodFoo\n"
        );
        let got = managed_hosts_content(
            &["203.0.113.1".into()],
            "podFoo",
            "domainFoo",
            &[
                alias("123.45.67.89", &["foo", "bar", "baz"]),
                alias("456.78.90.123", &["park", "doo", "boo"]),
            ],
        );
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             203.0.113.1\tpodFoo.domainFoo\tpodFoo\n\
             \n\
             # Entries added by HostAliases.\n\
             123.45.67.89\tfoo\tbar\tbaz\n\
             456.78.90.123\tpark\tdoo\tboo\n"
        );
        let dual =
            managed_hosts_content(&["203.0.113.1".into(), "fd00::6".into()], "podFoo", "", &[]);
        assert!(dual.ends_with("203.0.113.1\tpodFoo\nfd00::6\tpodFoo\n"));
    }

    #[test]
    fn host_network_content() {
        let node = "127.0.0.1\tlocalhost\n10.0.0.2\tnode-a\n";
        assert_eq!(
            node_hosts_content(node, &[alias("1.2.3.4", &["x"])]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n10.0.0.2\tnode-a\n\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
        );
    }

    fn pod(name: &str, hostname: Option<&str>, subdomain: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: hostname.map(str::to_string),
                subdomain: subdomain.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hostnames() {
        let (h, d) = pod_hostname_and_domain(&pod("web-0", None, None), "cluster.local").unwrap();
        assert_eq!((h.as_str(), d.as_str()), ("web-0", ""));
        let (h, d) =
            pod_hostname_and_domain(&pod("web-0", Some("db"), Some("svc")), "cluster.local")
                .unwrap();
        assert_eq!((h.as_str(), d.as_str()), ("db", "svc.ns.svc.cluster.local"));
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let (h, _) = pod_hostname_and_domain(&pod(&long, None, None), "cluster.local").unwrap();
        assert_eq!(h, "a".repeat(62));
        assert!(pod_hostname_and_domain(&pod("p", Some("Bad_Name"), None), "c").is_err());
        assert_eq!(
            nodename_for_kernel("db", "svc.ns.svc.cluster.local", true).unwrap(),
            "db.svc.ns.svc.cluster.local"
        );
        assert_eq!(
            nodename_for_kernel("db", "svc.ns.svc.cluster.local", false).unwrap(),
            "db"
        );
        assert!(nodename_for_kernel(&"a".repeat(40), &"b".repeat(30), true).is_err());
    }
}
