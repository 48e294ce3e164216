//! The pod network: a CNI config for containerd, which runs the plugins from
//! containernetworking-plugins (bridge with host-local IPAM over the node's pod range, portmap
//! for hostPorts; containerd adds loopback itself). Upstream leaves this file to the cluster
//! installer; ferrokube's kubelet writes it once it knows the node's podCIDR.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The file name containerd picks up (it takes the first config in lexical order).
pub const CONF_NAME: &str = "10-ferrokube.conflist";

pub struct Network<'a> {
    pub conf_dir: &'a Path,
    pub bridge: &'a str,
    /// Every pod range of the node (one per IP family).
    pub pod_cidrs: &'a [String],
    /// Where host-local records its leases; kept under the kubelet's root dir so that two
    /// nodes on one machine do not share them.
    pub ipam_dir: &'a Path,
}

/// The conflist for `net`, as JSON text.
pub fn conflist(net: &Network<'_>) -> String {
    let ranges: Vec<_> = net
        .pod_cidrs
        .iter()
        .map(|c| json!([{ "subnet": c }]))
        .collect();
    let routes: Vec<_> = net
        .pod_cidrs
        .iter()
        .map(|c| json!({ "dst": if c.contains(':') { "::/0" } else { "0.0.0.0/0" } }))
        .collect();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "ferrokube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": true,
                // A pod reaching itself through a Service comes back over its own port.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": net.ipam_dir,
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

/// Writes the conflist when it differs from what is there; returns its path. Written to a
/// temp file and renamed so containerd never reads half a file.
pub fn write(net: &Network<'_>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(net.conf_dir)?;
    std::fs::create_dir_all(net.ipam_dir)?;
    let path = net.conf_dir.join(CONF_NAME);
    let text = conflist(net);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(path);
    }
    let tmp = net.conf_dir.join(format!(".{CONF_NAME}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_ranges_and_routes() {
        let cidrs = ["10.244.1.0/24".to_string(), "fd00:1::/64".to_string()];
        let text = conflist(&Network {
            conf_dir: Path::new("/x"),
            bridge: "cni0",
            pod_cidrs: &cidrs,
            ipam_dir: Path::new("/ipam"),
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ipam = &v["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][1][0]["subnet"], "fd00:1::/64");
        assert_eq!(ipam["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(ipam["routes"][1]["dst"], "::/0");
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn rewrites_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let cidrs = ["10.1.0.0/24".to_string()];
        let net = Network {
            conf_dir: dir.path(),
            bridge: "b0",
            pod_cidrs: &cidrs,
            ipam_dir: &dir.path().join("ipam"),
        };
        let p = write(&net).unwrap();
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        write(&net).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
    }
}
