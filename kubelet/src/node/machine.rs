//! What the node is made of, read from the machine: capacity, identity and addresses.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{NodeAddress, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The version the kubelet reports, the upstream release it is compatible with.
pub const KUBELET_VERSION: &str = "v1.33.0";

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub hugepage_sizes: Vec<String>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Reads this machine; `storage_root` is the filesystem whose size is the node's
    /// ephemeral storage (the kubelet's root dir).
    pub fn read(storage_root: &Path) -> Machine {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let mut hugepage_sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let kb: u64 = name
                            .strip_prefix("hugepages-")?
                            .strip_suffix("kB")?
                            .parse()
                            .ok()?;
                        Some(hugepage_name(kb))
                    })
                    .collect()
            })
            .unwrap_or_default();
        hugepage_sizes.sort();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes: filesystem_size(storage_root),
            hugepage_sizes,
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
        }
    }

    /// The node's capacity as upstream reports it.
    pub fn capacity(&self, max_pods: i64) -> BTreeMap<String, Quantity> {
        let mut c = BTreeMap::new();
        c.insert("cpu".into(), Quantity(self.cpus.to_string()));
        c.insert(
            "memory".into(),
            Quantity(format!("{}Ki", self.memory_bytes / 1024)),
        );
        c.insert(
            "ephemeral-storage".into(),
            Quantity(format!("{}Ki", self.ephemeral_storage_bytes / 1024)),
        );
        c.insert("pods".into(), Quantity(max_pods.to_string()));
        for h in &self.hugepage_sizes {
            c.insert(h.clone(), Quantity("0".into()));
        }
        c
    }

    pub fn system_info(&self, runtime_version: &str) -> NodeSystemInfo {
        NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: self.boot_id.clone(),
            container_runtime_version: runtime_version.into(),
            kernel_version: self.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: self.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: self.os_image.clone(),
            system_uuid: self.system_uuid.clone(),
            ..Default::default()
        }
    }
}

/// `hugepages-2Mi` from a size in KiB.
fn hugepage_name(kb: u64) -> String {
    if kb.is_multiple_of(1024 * 1024) {
        format!("hugepages-{}Gi", kb / (1024 * 1024))
    } else if kb.is_multiple_of(1024) {
        format!("hugepages-{}Mi", kb / 1024)
    } else {
        format!("hugepages-{kb}Ki")
    }
}

/// Go's GOARCH name for this build.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn filesystem_size(path: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st.f_blocks.saturating_mul(st.f_frsize)
    }
}

/// The node's addresses: its InternalIP (`--node-ip`, else the address of the interface the
/// default route leaves by) and its Hostname.
pub fn addresses(node_ip: Option<&str>, hostname: &str) -> Vec<NodeAddress> {
    let ip = node_ip
        .map(str::to_string)
        .or_else(default_route_ip)
        .unwrap_or_else(|| "127.0.0.1".into());
    vec![
        NodeAddress {
            type_: "InternalIP".into(),
            address: ip,
        },
        NodeAddress {
            type_: "Hostname".into(),
            address: hostname.into(),
        },
    ]
}

/// The local address the kernel would pick for traffic leaving the machine; connecting a
/// UDP socket sends nothing.
fn default_route_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// The machine's host name, lower-cased as upstream's node names are.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    raw.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let m = Machine::read(Path::new("/"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
        let cap = m.capacity(110);
        assert_eq!(cap["pods"].0, "110");
        assert!(cap["memory"].0.ends_with("Ki"));
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_name(2048), "hugepages-2Mi");
        assert_eq!(hugepage_name(1024 * 1024), "hugepages-1Gi");
    }

    #[test]
    fn explicit_node_ip_wins() {
        let a = addresses(Some("10.1.2.3"), "n1");
        assert_eq!(a[0].address, "10.1.2.3");
        assert_eq!(a[1].type_, "Hostname");
    }
}
