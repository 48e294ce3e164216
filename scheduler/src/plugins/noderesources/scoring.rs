//! upstream's `resourceAllocationScorer`: per configured resource, what the node can give and
//! what it would hold with the pod on it, folded into one score by a strategy.

use crate::framework::resource::{is_scalar, CPU, EPHEMERAL_STORAGE, MEMORY};
use crate::framework::{NodeInfo, Resource, Status, MAX_NODE_SCORE};

use super::args::{ResourceSpec, UtilizationShapePoint, MAX_CUSTOM_PRIORITY_SCORE};

/// Utilization, in percent, at which RequestedToCapacityRatio's shape stops.
const MAX_UTILIZATION: i64 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// The shape with scores already scaled from [0, 10] to [0, MAX_NODE_SCORE], as
    /// (utilization, score) points.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
    BalancedAllocation,
}

impl Strategy {
    pub fn requested_to_capacity_ratio(shape: &[UtilizationShapePoint]) -> Strategy {
        Strategy::RequestedToCapacityRatio(
            shape
                .iter()
                .map(|p| {
                    (
                        i64::from(p.utilization),
                        i64::from(p.score) * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                    )
                })
                .collect(),
        )
    }
}

#[derive(Clone, Debug)]
pub struct Scorer {
    pub strategy: Strategy,
    pub resources: Vec<ResourceSpec>,
    /// Count the node's real requests for cpu and memory instead of the ones with upstream's
    /// defaults for containers that request nothing (BalancedAllocation does; Fit does not).
    pub use_requested: bool,
}

/// A resource's amount in a `Resource` as upstream's pod requests list it: `pods` is not a
/// request, and anything else not native is looked up among the scalar resources.
fn amount(r: &Resource, name: &str) -> i64 {
    match name {
        CPU => r.milli_cpu,
        MEMORY => r.memory,
        EPHEMERAL_STORAGE => r.ephemeral_storage,
        _ => r.scalar.get(name).copied().unwrap_or(0),
    }
}

impl Scorer {
    /// The pod's request for each configured resource, in `resources` order.
    pub fn pod_requests(&self, pod: &crate::framework::PodInfo) -> Vec<i64> {
        let requests = if self.use_requested {
            &pod.requests
        } else {
            &pod.non_zero_requests
        };
        self.resources
            .iter()
            .map(|r| amount(requests, &r.name))
            .collect()
    }

    /// (allocatable, requested with the pod) for one resource; (0, 0) leaves the resource
    /// out of the score.
    fn allocatable_and_requested(
        &self,
        node: &NodeInfo,
        name: &str,
        pod_request: i64,
    ) -> (i64, i64) {
        let requested = if self.use_requested {
            &node.requested
        } else {
            &node.non_zero_requested
        };
        // An extended resource the pod does not ask for says nothing about the node's fit
        // for this pod, so upstream leaves it out rather than scoring it.
        if pod_request == 0 && is_scalar(name) {
            return (0, 0);
        }
        match name {
            CPU => (
                node.allocatable.milli_cpu,
                requested.milli_cpu + pod_request,
            ),
            MEMORY => (node.allocatable.memory, requested.memory + pod_request),
            EPHEMERAL_STORAGE => (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage + pod_request,
            ),
            _ => match node.allocatable.scalar.get(name) {
                Some(&alloc) => (
                    alloc,
                    node.requested.scalar.get(name).copied().unwrap_or(0) + pod_request,
                ),
                None => (0, 0),
            },
        }
    }

    pub fn score(&self, node: &NodeInfo, pod_requests: &[i64]) -> Result<i64, Status> {
        if self.resources.is_empty() {
            return Err(Status::error("resources not found"));
        }
        let mut requested = vec![0i64; self.resources.len()];
        let mut allocatable = vec![0i64; self.resources.len()];
        for (i, r) in self.resources.iter().enumerate() {
            let pod_request = pod_requests.get(i).copied().unwrap_or(0);
            let (alloc, req) = self.allocatable_and_requested(node, &r.name, pod_request);
            if alloc == 0 {
                continue;
            }
            allocatable[i] = alloc;
            requested[i] = req;
        }
        Ok(match &self.strategy {
            Strategy::LeastAllocated => {
                self.weighted(&requested, &allocatable, least_requested_score, false)
            }
            Strategy::MostAllocated => {
                self.weighted(&requested, &allocatable, most_requested_score, false)
            }
            Strategy::RequestedToCapacityRatio(shape) => self.weighted(
                &requested,
                &allocatable,
                |req, alloc| ratio_score(shape, req, alloc),
                true,
            ),
            Strategy::BalancedAllocation => balanced_score(&requested, &allocatable),
        })
    }

    /// The weighted mean of per-resource scores over the resources the node has.
    /// RequestedToCapacityRatio (`ratio`) counts only resources scoring above zero and rounds
    /// the mean; the others truncate it.
    fn weighted(
        &self,
        requested: &[i64],
        allocatable: &[i64],
        per_resource: impl Fn(i64, i64) -> i64,
        ratio: bool,
    ) -> i64 {
        let mut node_score = 0i64;
        let mut weight_sum = 0i64;
        for (i, spec) in self.resources.iter().enumerate() {
            if allocatable[i] == 0 {
                continue;
            }
            let s = per_resource(requested[i], allocatable[i]);
            if ratio && s <= 0 {
                continue;
            }
            node_score += s * spec.weight;
            weight_sum += spec.weight;
        }
        if weight_sum == 0 {
            return 0;
        }
        if ratio {
            (node_score as f64 / weight_sum as f64).round() as i64
        } else {
            node_score / weight_sum
        }
    }
}

/// The unused share of the resource, on [0, MAX_NODE_SCORE].
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The used share of the resource, on [0, MAX_NODE_SCORE]; over-commitment counts as full
/// (it happens when pods without requests get the scoring defaults).
pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// upstream's `BuildBrokenLinearFunction`: the shape's first score below its first point,
/// its last score past its last point, and integer linear interpolation between points.
pub fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(utilization, score)) in shape.iter().enumerate() {
        if p <= utilization {
            if i == 0 {
                return score;
            }
            let (prev_u, prev_s) = shape[i - 1];
            return prev_s + (score - prev_s) * (p - prev_u) / (utilization - prev_u);
        }
    }
    shape.last().map(|&(_, s)| s).unwrap_or(0)
}

fn ratio_score(shape: &[(i64, i64)], requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return broken_linear(shape, MAX_UTILIZATION);
    }
    broken_linear(shape, requested * MAX_UTILIZATION / capacity)
}

/// (1 − standard deviation of the requested fractions) × MAX_NODE_SCORE, fractions capped at
/// 1, over the resources the node has.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, &a)| a != 0)
        .map(|(&r, &a)| (r as f64 / a as f64).min(1.0))
        .collect();
    // Two resources (the usual cpu and memory) use the closed form, exactly as upstream, so
    // float rounding lands the same way.
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            let sum: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / n as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_linear_matches_upstream_cases() {
        let a = [(10, 1), (90, 9)];
        for (p, want) in [
            (-10, 1),
            (0, 1),
            (9, 1),
            (10, 1),
            (15, 1),
            (19, 1),
            (20, 2),
            (89, 8),
            (90, 9),
            (99, 9),
            (100, 9),
            (110, 9),
        ] {
            assert_eq!(broken_linear(&a, p), want, "p={p}");
        }
        let b = [(0, 2), (40, 10), (100, 0)];
        for (p, want) in [
            (-10, 2),
            (0, 2),
            (20, 6),
            (30, 8),
            (40, 10),
            (70, 5),
            (100, 0),
            (110, 0),
        ] {
            assert_eq!(broken_linear(&b, p), want, "p={p}");
        }
    }

    #[test]
    fn per_resource_scores() {
        assert_eq!(least_requested_score(3000, 4000), 25);
        assert_eq!(least_requested_score(5000, 4000), 0);
        assert_eq!(least_requested_score(0, 0), 0);
        assert_eq!(most_requested_score(3000, 4000), 75);
        assert_eq!(most_requested_score(5000, 4000), 100);
        assert_eq!(most_requested_score(1, 0), 0);
    }

    #[test]
    fn balanced_std() {
        assert_eq!(balanced_score(&[3000, 5000], &[4000, 10000]), 87);
        assert_eq!(balanced_score(&[3000, 5000], &[6000, 10000]), 100);
        // Fractions above 1 are capped, so an over-committed resource counts as full.
        assert_eq!(balanced_score(&[8000, 5000], &[4000, 10000]), 75);
        // Three resources: fractions 0.6, 0.25, 0.5, mean 0.45,
        // std = sqrt((0.0225 + 0.04 + 0.0025) / 3) ≈ 0.1472 → 85.
        assert_eq!(balanced_score(&[6, 5, 2], &[10, 20, 4]), 85);
        // A resource the node does not have is left out entirely.
        assert_eq!(balanced_score(&[3000, 5000, 0], &[4000, 10000, 0]), 87);
        assert_eq!(balanced_score(&[1], &[2]), 100);
    }
}
