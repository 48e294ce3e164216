//! ImageLocality: favours nodes that already hold the pod's images, weighting each image by
//! how widely it has spread so pods do not pile onto the few nodes that pulled it first.

use std::collections::HashMap;
use std::sync::Arc;

use super::{PluginContext, Registered};
use crate::cache::Cluster;
use crate::framework::{
    CycleState, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "ImageLocality";

const PRE_SCORE_STATE_KEY: &str = "PreScoreImageLocality";

const MB: i64 = 1024 * 1024;
// Upstream's bounds, chosen from the sizes of most images on Docker Hub: below the minimum
// an image is cheap to pull anyway; the maximum is per container.
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

/// What Score needs from the whole cluster, which it cannot see.
#[derive(Clone)]
struct PreScoreState {
    /// Normalised image name → number of nodes holding it, for the pod's images.
    image_nodes: HashMap<String, usize>,
    /// Nodes in the cluster (not only those that passed filtering), as upstream.
    total_nodes: usize,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Upstream's `normalizedImageName`: appends `:latest` when the reference has no tag (no
/// `:` after the last `/`). Digests keep their `@sha256:…` form.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    // Mirrors `LastIndex(":") <= LastIndex("/")` with -1 for "absent".
    let tagged = match (colon, slash) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(s)) => c > s,
    };
    if tagged {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The images of the pod's init containers and containers, normalised, one per container.
fn pod_images(pod: &PodInfo) -> Vec<String> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or_default()))
        .collect()
}

fn scaled_image_score(size: i64, nodes_with_image: usize, total_nodes: usize) -> i64 {
    if total_nodes == 0 {
        return 0;
    }
    let spread = nodes_with_image as f64 / total_nodes as f64;
    (size as f64 * spread) as i64
}

fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers as i64;
    let clamped = if sum < MIN_THRESHOLD {
        MIN_THRESHOLD
    } else if sum > max_threshold {
        max_threshold
    } else {
        sum
    };
    // A pod with no containers clamps to MIN_THRESHOLD, so the numerator is 0 and the
    // denominator is never 0.
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        cluster: &Cluster,
    ) -> Status {
        let image_nodes = pod_images(pod)
            .into_iter()
            .map(|image| {
                let n = cluster.image_node_count(&image);
                (image, n)
            })
            .collect();
        let total_nodes = cluster.nodes().iter().filter(|n| n.node.is_some()).count();
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                image_nodes,
                total_nodes,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Err(Status::error(format!(
                "reading {PRE_SCORE_STATE_KEY:?} from cycleState: not found"
            )));
        };
        let images = pod_images(pod);
        let sum: i64 = images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let holders = s.image_nodes.get(image).copied().unwrap_or(0);
                Some(scaled_image_score(size, holders, s.total_nodes))
            })
            .fold(0i64, i64::saturating_add);
        Ok(calculate_priority(sum, images.len()))
    }
}

pub fn register(args: &serde_json::Value, _ctx: &PluginContext) -> anyhow::Result<Registered> {
    build(args)
}

fn build(_args: &serde_json::Value) -> anyhow::Result<Registered> {
    let plugin = Arc::new(ImageLocality);
    Ok(Registered {
        pre_score: Some(plugin.clone()),
        score: Some(plugin),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str, images: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"images": images}}))
            .unwrap(),
        )
    }

    fn pod(spec: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap(),
        ))
    }

    fn scores(cluster: &Cluster, p: &PodInfo, names: &[&str]) -> Vec<i64> {
        let mut st = CycleState::default();
        assert!(ImageLocality
            .pre_score(&mut st, p, cluster.nodes(), cluster)
            .is_success());
        names
            .iter()
            .map(|n| {
                let info = cluster.node(n).unwrap();
                ImageLocality.score(&st, p, info).unwrap()
            })
            .collect()
    }

    #[test]
    fn normalizes_untagged_names() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized_image_name("registry:5000/team/app"),
            "registry:5000/team/app:latest"
        );
        assert_eq!(
            normalized_image_name("registry:5000/team/app:v2"),
            "registry:5000/team/app:v2"
        );
        assert_eq!(normalized_image_name("app@sha256:abcd"), "app@sha256:abcd");
    }

    #[test]
    fn score_scales_image_size_by_spread() {
        let mut c = Cluster::default();
        c.upsert_node(node(
            "a",
            json!([{"names": ["nginx:latest"], "sizeBytes": 500 * MB}]),
        ));
        c.upsert_node(node("b", json!([])));
        let p = pod(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        // spread 1/2: 250MB → 100 * (250 - 23) / (1000 - 23) = 23.
        assert_eq!(scores(&c, &p, &["a", "b"]), vec![23, 0]);

        c.upsert_node(node(
            "b",
            json!([{"names": ["nginx:latest"], "sizeBytes": 500 * MB}]),
        ));
        // spread 1: 500MB → 100 * 477 / 977 = 48.
        assert_eq!(scores(&c, &p, &["a", "b"]), vec![48, 48]);
    }

    #[test]
    fn init_containers_count_and_raise_the_ceiling() {
        let mut c = Cluster::default();
        c.upsert_node(node(
            "a",
            json!([{"names": ["big:1"], "sizeBytes": 3000 * MB},
                   {"names": ["small:1"], "sizeBytes": 10 * MB}]),
        ));
        let p = pod(json!({
            "initContainers": [{"name": "i", "image": "big:1"}],
            "containers": [{"name": "c", "image": "small:1"}]}));
        // 3010MB clamps to the two-container ceiling of 2000MB.
        assert_eq!(scores(&c, &p, &["a"]), vec![100]);
        let p = pod(json!({
            "initContainers": [{"name": "i", "image": "small:1"}],
            "containers": [{"name": "c", "image": "small:1"}]}));
        // 20MB is under the 23MB floor.
        assert_eq!(scores(&c, &p, &["a"]), vec![0]);
        let p = pod(json!({
            "initContainers": [{"name": "i", "image": "other"}],
            "containers": [{"name": "c", "image": "big:1"}]}));
        // 100 * (2000 - 23) / (2000 - 23).
        assert_eq!(scores(&c, &p, &["a"]), vec![100]);
        let p = pod(json!({"containers": [
            {"name": "c", "image": "big:1"}, {"name": "d", "image": "x"}, {"name": "e", "image": "y"}]}));
        // 3000MB of a 3000MB ceiling.
        assert_eq!(scores(&c, &p, &["a"]), vec![100]);
        let p = pod(json!({"containers": [
            {"name": "c", "image": "big:1"}, {"name": "d", "image": "x"},
            {"name": "e", "image": "y"}, {"name": "f", "image": "z"}]}));
        // 100 * (3000 - 23) / (4000 - 23) = 74.
        assert_eq!(scores(&c, &p, &["a"]), vec![74]);
    }

    #[test]
    fn score_without_pre_score_state_is_an_error() {
        let p = pod(json!({"containers": []}));
        assert!(ImageLocality
            .score(&CycleState::default(), &p, &NodeInfo::new("a"))
            .is_err());
    }

    #[test]
    fn registers_pre_score_and_score() {
        let r = build(&serde_json::Value::Null).unwrap();
        assert!(r.pre_score.is_some() && r.score.is_some());
        assert!(r.filter.is_none());
        assert!(r.events.is_empty());
    }
}
