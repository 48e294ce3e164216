//! A Service's Endpoints subsets from its pods: addresses grouped by the ports they serve,
//! ready ones apart from not-ready ones, at most 1000 addresses in all.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Pod, Service};

use crate::endpointslice::desired;

/// Upstream's cap on addresses in one Endpoints object.
pub const MAX_ADDRESSES: usize = 1000;

#[derive(Default)]
struct Subset {
    ports: Vec<EndpointPort>,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
}

/// The subsets, and whether addresses had to be dropped to stay under the cap.
pub fn build(svc: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        // Terminating pods are listed only when the Service publishes regardless of readiness.
        if !desired::pod_eligible(pod, publish) {
            continue;
        }
        let Some(ip) = desired::pod_ips(pod).first().map(|ip| ip.to_string()) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: desired::hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(desired::target_ref(pod)),
        };
        let mut ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: desired::find_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        // A Service with ports none of which this pod has: nothing to list it under, except
        // that headless Services without ports list bare addresses.
        if ports.is_empty() && !(svc_ports.is_empty() && desired::is_headless(svc)) {
            continue;
        }
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = format!("{ports:?}");
        let group = groups.entry(key).or_insert_with(|| Subset {
            ports: ports.clone(),
            ..Default::default()
        });
        if publish || desired::pod_ready(pod) {
            group.ready.push(address);
        } else {
            group.not_ready.push(address);
        }
    }
    let mut budget = MAX_ADDRESSES;
    let mut truncated = false;
    let subsets = groups
        .into_values()
        .filter_map(|mut g| {
            g.ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            g.not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            for list in [&mut g.ready, &mut g.not_ready] {
                if list.len() > budget {
                    list.truncate(budget);
                    truncated = true;
                }
                budget -= list.len();
            }
            if g.ready.is_empty() && g.not_ready.is_empty() {
                return None;
            }
            Some(EndpointSubset {
                addresses: Some(g.ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(g.not_ready).filter(|a| !a.is_empty()),
                ports: Some(g.ports).filter(|p| !p.is_empty()),
            })
        })
        .collect();
    (subsets, truncated)
}
