//! The Node's status as upstream's status setters build it: capacity and allocatable,
//! conditions with upstream's reasons, addresses, nodeInfo, images and the kubelet endpoint.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity as Q;
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the status is computed from, gathered by the status loop.
pub struct Inputs<'a> {
    pub capacity: BTreeMap<String, Quantity>,
    pub system_reserved: &'a BTreeMap<String, String>,
    pub kube_reserved: &'a BTreeMap<String, String>,
    pub eviction_hard: &'a BTreeMap<String, String>,
    pub addresses: Vec<NodeAddress>,
    pub node_info: NodeSystemInfo,
    pub kubelet_port: i32,
    /// Problems that keep the node from being Ready (runtime down, network not ready...).
    pub not_ready: Vec<String>,
    pub memory_pressure: bool,
    pub disk_pressure: bool,
    pub pid_pressure: bool,
    pub images: Vec<ContainerImage>,
}

/// Upstream reports at most this many images, the largest first.
const MAX_IMAGES: usize = 50;

/// Capacity minus what is reserved for the system and the kubelet and the hard eviction
/// thresholds (upstream's node allocatable), floored at zero.
pub fn allocatable(
    capacity: &BTreeMap<String, Quantity>,
    system_reserved: &BTreeMap<String, String>,
    kube_reserved: &BTreeMap<String, String>,
    eviction_hard: &BTreeMap<String, String>,
) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for (name, cap) in capacity {
        let Ok(mut v) = Q::parse(&cap.0) else {
            out.insert(name.clone(), cap.clone());
            continue;
        };
        for reserved in [system_reserved, kube_reserved] {
            if let Some(r) = reserved.get(name).and_then(|r| Q::parse(r).ok()) {
                v.sub_assign_ref(&r);
            }
        }
        let signal = match name.as_str() {
            "memory" => Some("memory.available"),
            "ephemeral-storage" => Some("nodefs.available"),
            _ => None,
        };
        if let Some(threshold) = signal.and_then(|s| eviction_hard.get(s)) {
            if let Some(pct) = threshold
                .strip_suffix('%')
                .and_then(|p| p.parse::<f64>().ok())
            {
                let cut =
                    (Q::parse(&cap.0).map(|c| c.value()).unwrap_or(0) as f64 * pct / 100.0) as i64;
                v.sub_assign_ref(&Q::new(cut, ferrokube_common::quantity::Format::BinarySI));
            } else if let Ok(t) = Q::parse(threshold) {
                v.sub_assign_ref(&t);
            }
        }
        if v.sign() < 0 {
            v = Q::new(0, v.format());
        }
        out.insert(name.clone(), Quantity(v.to_string()));
    }
    out
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
    old: Option<&NodeCondition>,
) -> NodeCondition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status does.
    let transition = old
        .filter(|o| o.status == status)
        .and_then(|o| o.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

/// The status to report, given the one the Node has now.
pub fn build(inputs: Inputs<'_>, old: Option<&NodeStatus>, now: Time) -> NodeStatus {
    let old_conditions = old.and_then(|o| o.conditions.as_ref());
    let find = |t: &str| old_conditions.and_then(|cs| cs.iter().find(|c| c.type_ == t));
    let memory = if inputs.memory_pressure {
        (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let disk = if inputs.disk_pressure {
        ("KubeletHasDiskPressure", "kubelet has disk pressure")
    } else {
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
    };
    let pid = if inputs.pid_pressure {
        (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        )
    } else {
        (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        )
    };
    let ready_message = inputs.not_ready.join(", ");
    let (ready_reason, ready_message) = if inputs.not_ready.is_empty() {
        ("KubeletReady", "kubelet is posting ready status")
    } else {
        ("KubeletNotReady", ready_message.as_str())
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            inputs.memory_pressure,
            memory.0,
            memory.1,
            &now,
            find("MemoryPressure"),
        ),
        condition(
            "DiskPressure",
            inputs.disk_pressure,
            disk.0,
            disk.1,
            &now,
            find("DiskPressure"),
        ),
        condition(
            "PIDPressure",
            inputs.pid_pressure,
            pid.0,
            pid.1,
            &now,
            find("PIDPressure"),
        ),
        condition(
            "Ready",
            inputs.not_ready.is_empty(),
            ready_reason,
            ready_message,
            &now,
            find("Ready"),
        ),
    ];
    let allocatable = allocatable(
        &inputs.capacity,
        inputs.system_reserved,
        inputs.kube_reserved,
        inputs.eviction_hard,
    );
    let mut images = inputs.images;
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(MAX_IMAGES);
    NodeStatus {
        capacity: Some(inputs.capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(inputs.addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: inputs.kubelet_port,
            }),
        }),
        node_info: Some(inputs.node_info),
        images: Some(images),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times: what decides an early
/// update, as upstream's `nodeStatusHasChanged`.
pub fn changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_heartbeat_time = None;
            }
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        // Fields other writers own are not ours to compare.
        s.volumes_attached = None;
        s.volumes_in_use = None;
        s.phase = None;
        s.config = None;
        s.runtime_handlers = None;
        s.features = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        empty: &'a BTreeMap<String, String>,
        eviction: &'a BTreeMap<String, String>,
    ) -> Inputs<'a> {
        Inputs {
            capacity: [("cpu", "2"), ("memory", "1000Mi"), ("pods", "110")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                .collect(),
            system_reserved: empty,
            kube_reserved: empty,
            eviction_hard: eviction,
            addresses: vec![],
            node_info: NodeSystemInfo::default(),
            kubelet_port: 10250,
            not_ready: vec![],
            memory_pressure: false,
            disk_pressure: false,
            pid_pressure: false,
            images: vec![],
        }
    }

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn allocatable_subtracts_reservations_and_eviction() {
        let empty = BTreeMap::new();
        let eviction: BTreeMap<_, _> =
            [("memory.available".to_string(), "100Mi".to_string())].into();
        let mut reserved = BTreeMap::new();
        reserved.insert("cpu".to_string(), "500m".to_string());
        let cap = inputs(&empty, &eviction).capacity;
        let a = allocatable(&cap, &reserved, &empty, &eviction);
        assert_eq!(a["cpu"].0, "1500m");
        assert_eq!(a["memory"].0, "900Mi");
        assert_eq!(a["pods"].0, "110");
    }

    #[test]
    fn ready_and_pressure_conditions_with_upstream_reasons() {
        let empty = BTreeMap::new();
        let s = build(inputs(&empty, &empty), None, t("2026-01-01T00:00:00Z"));
        let cs = s.conditions.unwrap();
        let ready = cs.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let mem = cs.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.reason.as_deref(), Some("KubeletHasSufficientMemory"));
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let empty = BTreeMap::new();
        let first = build(inputs(&empty, &empty), None, t("2026-01-01T00:00:00Z"));
        let second = build(
            inputs(&empty, &empty),
            Some(&first),
            t("2026-01-01T00:00:10Z"),
        );
        assert!(!changed(&first, &second), "only heartbeats moved");
        let ready = |s: &NodeStatus| {
            s.conditions
                .clone()
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
        };
        assert_eq!(
            ready(&second).last_transition_time,
            Some(t("2026-01-01T00:00:00Z"))
        );
        let mut down = inputs(&empty, &empty);
        down.not_ready = vec!["container runtime is down".into()];
        let third = build(down, Some(&second), t("2026-01-01T00:00:20Z"));
        assert!(changed(&second, &third));
        assert_eq!(ready(&third).reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready(&third).last_transition_time,
            Some(t("2026-01-01T00:00:20Z"))
        );
    }
}
