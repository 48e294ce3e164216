//! Test scaffolding the plugin tests share.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::cache::{pod_info, Cluster};
use crate::framework::{CycleState, FilterPlugin, PodInfo, PreFilterPlugin, Status};

/// Binds `p` (which names its node) into the cache.
pub fn place(c: &mut Cluster, p: Pod) {
    c.upsert_bound_pod(pod_info(p));
}

/// Runs PreFilter then Filter on every node; `None` when PreFilter skipped.
pub fn filter_all<P: PreFilterPlugin + FilterPlugin>(
    pl: &P,
    c: &Cluster,
    incoming: &PodInfo,
) -> Option<BTreeMap<String, Status>> {
    let mut state = CycleState::default();
    let (s, nodes) = pl.pre_filter(&mut state, incoming, c);
    assert!(nodes.is_none());
    if s.is_skip() {
        return None;
    }
    assert!(s.is_success(), "{s:?}");
    Some(
        c.nodes()
            .iter()
            .map(|n| (n.name.clone(), pl.filter(&state, incoming, n)))
            .collect(),
    )
}

/// The nodes that passed.
pub fn passing(statuses: &BTreeMap<String, Status>) -> Vec<&str> {
    statuses
        .iter()
        .filter(|(_, s)| s.is_success())
        .map(|(n, _)| n.as_str())
        .collect()
}
