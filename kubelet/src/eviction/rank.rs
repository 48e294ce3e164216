//! Which pod goes first under pressure, as upstream's `rankMemoryPressure` and
//! `rankDiskPressureFunc`: pods using more than they requested, then lower priority, then
//! the larger use above the request.

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::Pod;

/// A pod with what it uses of the starved resource.
pub struct Candidate {
    pub pod: Pod,
    pub usage: i64,
}

/// The pod's request of `resource` (containers summed, init containers as the largest).
pub fn request(pod: &Pod, resource: &str) -> i64 {
    let spec = match pod.spec.as_ref() {
        Some(s) => s,
        None => return 0,
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| Quantity::parse(&q.0).ok())
            .map_or(0, |q| q.value())
    };
    let sum: i64 = spec.containers.iter().map(of).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(of)
        .max()
        .unwrap_or(0);
    sum.max(init)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Orders candidates so the first is evicted first.
pub fn rank(candidates: &mut [Candidate], resource: &str) {
    candidates.sort_by(|a, b| {
        let over = |c: &Candidate| c.usage > request(&c.pod, resource);
        over(b)
            .cmp(&over(a))
            .then_with(|| priority(&a.pod).cmp(&priority(&b.pod)))
            .then_with(|| {
                let above = |c: &Candidate| c.usage - request(&c.pod, resource);
                above(b).cmp(&above(a))
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, request: Option<&str>, priority: i32) -> Pod {
        let resources = request.map_or(json!({}), |r| json!({"requests": {"memory": r}}));
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
        }))
        .unwrap()
    }

    #[test]
    fn over_request_then_priority_then_usage() {
        let mut c = vec![
            Candidate {
                pod: pod("within", Some("1Gi"), 0),
                usage: 100 << 20,
            },
            Candidate {
                pod: pod("high", None, 1000),
                usage: 10 << 20,
            },
            Candidate {
                pod: pod("small", None, 0),
                usage: 10 << 20,
            },
            Candidate {
                pod: pod("big", None, 0),
                usage: 500 << 20,
            },
        ];
        rank(&mut c, "memory");
        let names: Vec<_> = c
            .iter()
            .map(|c| c.pod.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["big", "small", "high", "within"]);
    }
}
