//! How to get from the slices a Service has to the endpoints it should have, touching as few
//! slices as possible: endpoints stay in the slice they are in, changed ones are rewritten
//! in place, new ones fill slices already being written before any other slice is touched,
//! and a Service with no endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS: usize = 100;

/// Endpoints that share one set of ports, in the order they should be placed.
#[derive(Default, Debug, Clone)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Default, Debug)]
pub struct Plan {
    /// New slices: only ports and endpoints are filled in.
    pub create: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    /// Existing slices with new endpoints.
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Existing slices whose endpoints are right as they are.
    pub unchanged: Vec<EndpointSlice>,
}

/// A canonical key for a set of ports, so that slices and groups can be matched up.
pub fn ports_key(ports: &[EndpointPort]) -> String {
    let mut ps: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                p.name.as_deref(),
                p.protocol.as_deref(),
                p.port,
                p.app_protocol.as_deref(),
            )
        })
        .collect();
    ps.sort();
    format!("{ps:?}")
}

/// Which endpoint an entry is, across updates: the pod it stands for.
pub fn endpoint_key(ep: &Endpoint) -> String {
    match ep.target_ref.as_ref() {
        Some(r) => format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        ),
        None => ep.addresses.join(","),
    }
}

/// Groups endpoints by their port sets, keeping first-seen order within each.
pub fn group(
    items: impl IntoIterator<Item = (Vec<EndpointPort>, Endpoint)>,
) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (ports, ep) in items {
        let g = groups.entry(ports_key(&ports)).or_insert_with(|| Group {
            ports,
            endpoints: Vec::new(),
        });
        g.endpoints.push(ep);
    }
    groups
}

/// A group's ports, endpoints, and each endpoint's index by key.
type Wanted = (Vec<EndpointPort>, Vec<Endpoint>, HashMap<String, usize>);

pub fn plan(existing: Vec<EndpointSlice>, desired: BTreeMap<String, Group>, max: usize) -> Plan {
    let max = max.max(1);
    let mut wanted: HashMap<String, Wanted> = desired
        .into_iter()
        .map(|(k, g)| {
            let index = g
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| (endpoint_key(e), i))
                .collect();
            (k, (g.ports, g.endpoints, index))
        })
        .collect();
    let mut placed: HashMap<String, Vec<bool>> = wanted
        .iter()
        .map(|(k, (_, eps, _))| (k.clone(), vec![false; eps.len()]))
        .collect();
    let mut out = Plan::default();

    for slice in existing {
        let key = ports_key(slice.ports.as_deref().unwrap_or(&[]));
        let Some((_, eps, index)) = wanted.get(&key) else {
            out.delete.push(slice);
            continue;
        };
        let Some(done) = placed.get_mut(&key) else {
            continue;
        };
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &slice.endpoints {
            match index.get(&endpoint_key(ep)) {
                Some(&i) if !done[i] => {
                    done[i] = true;
                    changed |= &eps[i] != ep;
                    kept.push(eps[i].clone());
                }
                _ => changed = true,
            }
        }
        if !changed {
            out.unchanged.push(slice);
        } else if kept.is_empty() {
            out.delete.push(slice);
        } else {
            let mut s = slice;
            s.endpoints = kept;
            out.update.push(s);
        }
    }

    let mut keys: Vec<String> = wanted.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let (ports, eps, _) = wanted.remove(&key).unwrap_or_default();
        let done = placed.remove(&key).unwrap_or_default();
        let mut left: Vec<Endpoint> = eps
            .into_iter()
            .zip(done)
            .filter(|(_, d)| !d)
            .map(|(e, _)| e)
            .collect();
        let same = |s: &EndpointSlice| ports_key(s.ports.as_deref().unwrap_or(&[])) == key;
        // Slices being written anyway take new endpoints first: no extra writes.
        for s in out.update.iter_mut().filter(|s| same(s)) {
            let room = max.saturating_sub(s.endpoints.len()).min(left.len());
            s.endpoints.extend(left.drain(..room));
        }
        while !left.is_empty() {
            // Only an untouched slice that can take everything left is worth touching, and
            // the fullest such one, so that slices stay packed.
            let fit = out
                .unchanged
                .iter()
                .enumerate()
                .filter(|(_, s)| same(s) && s.endpoints.len() + left.len() <= max)
                .max_by_key(|(_, s)| s.endpoints.len())
                .map(|(i, _)| i);
            if let Some(i) = fit {
                let mut s = out.unchanged.remove(i);
                s.endpoints.append(&mut left);
                out.update.push(s);
            } else {
                let n = left.len().min(max);
                out.create.push((ports.clone(), left.drain(..n).collect()));
            }
        }
    }

    // Empty slices go, except that a Service with no endpoints keeps one placeholder.
    let (empty, full): (Vec<_>, Vec<_>) = out
        .unchanged
        .into_iter()
        .partition(|s| s.endpoints.is_empty());
    out.unchanged = full;
    out.delete.extend(empty);
    if out.unchanged.is_empty() && out.update.is_empty() && out.create.is_empty() {
        let placeholder = out
            .delete
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.as_deref().unwrap_or(&[]).is_empty());
        match placeholder {
            Some(i) => out.unchanged.push(out.delete.remove(i)),
            None => out.create.push((Vec::new(), Vec::new())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ep(name: &str, ip: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            target_ref: Some(ObjectReference {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(n: i32) -> Vec<EndpointPort> {
        vec![EndpointPort {
            port: Some(n),
            name: Some(String::new()),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    fn slice(name: &str, ports: Vec<EndpointPort>, eps: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: Some(ports),
        }
    }

    fn desired(n: usize, p: i32) -> BTreeMap<String, Group> {
        group((0..n).map(|i| {
            (
                port(p),
                ep(&format!("p{i}"), &format!("10.0.{}.{}", i / 250, i % 250)),
            )
        }))
    }

    #[test]
    fn splits_at_the_maximum() {
        let p = plan(Vec::new(), desired(250, 80), MAX_ENDPOINTS);
        let sizes: Vec<usize> = p.create.iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_new_endpoints_fill_the_fullest() {
        let d = desired(3, 80);
        let eps: Vec<Endpoint> = d.values().next().unwrap().endpoints.clone();
        let existing = vec![slice("a", port(80), eps[..2].to_vec())];
        let p = plan(existing.clone(), d, MAX_ENDPOINTS);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 3);

        let p = plan(existing, desired(2, 80), MAX_ENDPOINTS);
        assert_eq!(p.unchanged.len(), 1);
        assert!(p.update.is_empty() && p.create.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn port_change_replaces_slices_and_empty_keeps_a_placeholder() {
        let d = desired(2, 80);
        let eps = d.values().next().unwrap().endpoints.clone();
        let p = plan(
            vec![slice("a", port(80), eps)],
            desired(2, 81),
            MAX_ENDPOINTS,
        );
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.create.len(), 1);

        let p = plan(
            vec![slice("a", port(80), vec![ep("x", "1.1.1.1")])],
            BTreeMap::new(),
            MAX_ENDPOINTS,
        );
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.create, vec![(Vec::new(), Vec::new())]);

        let p = plan(
            vec![slice("a", Vec::new(), Vec::new())],
            BTreeMap::new(),
            MAX_ENDPOINTS,
        );
        assert!(p.delete.is_empty() && p.create.is_empty());
        assert_eq!(p.unchanged.len(), 1);
    }
}
