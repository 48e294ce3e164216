use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::cache::{pod_info, Cluster};
use crate::framework::*;
use crate::plugins::{interpodaffinity, podtopologyspread};

fn cluster(anti: bool, spread: bool) -> Cluster {
    let mut c = Cluster::default();
    for i in 0..5000 {
        let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({"metadata": {"name": format!("node-{i}"),
            "labels": {"kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 10),
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux"}}})).unwrap();
        c.upsert_node(Arc::new(n));
    }
    for i in 0..10000 {
        c.upsert_bound_pod(pod_info(pod(
            i,
            Some(format!("node-{}", i % 5000)),
            anti,
            spread,
        )));
    }
    c
}

fn pod(
    i: usize,
    node: Option<String>,
    anti: bool,
    spread: bool,
) -> k8s_openapi::api::core::v1::Pod {
    let app = format!("app-{}", i % 50);
    let mut spec = json!({"containers": [{"name": "c", "image": "x"}], "nodeName": node});
    if anti {
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}});
    }
    if spread {
        spec["topologySpreadConstraints"] = json!([
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": app}}}]);
    }
    serde_json::from_value(
        json!({"metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("u{i}"),
        "labels": {"app": app}}, "spec": spec}),
    )
    .unwrap()
}

#[test]
#[ignore]
fn bench_cycles() {
    let ctx_args = serde_json::Value::Null;
    let ipa = interpodaffinity::tests_build(&ctx_args);
    let pts = podtopologyspread::tests_build(&ctx_args);
    for (anti, spread) in [(true, false), (false, true)] {
        let c = cluster(anti, spread);
        let incoming = PodInfo::new(Arc::new(pod(10001, None, anti, spread)));
        let nodes: Vec<Arc<NodeInfo>> = c.nodes().to_vec();
        let (pf, f, ps, sc) = if anti {
            (
                ipa.pre_filter.clone().unwrap(),
                ipa.filter.clone().unwrap(),
                ipa.pre_score.clone().unwrap(),
                ipa.score.clone().unwrap(),
            )
        } else {
            (
                pts.pre_filter.clone().unwrap(),
                pts.filter.clone().unwrap(),
                pts.pre_score.clone().unwrap(),
                pts.score.clone().unwrap(),
            )
        };
        let n = 50;
        let t = Instant::now();
        let mut state = CycleState::default();
        for _ in 0..n {
            state = CycleState::default();
            pf.pre_filter(&mut state, &incoming, &c);
        }
        let pre = t.elapsed() / n;
        let t = Instant::now();
        let mut ok = 0;
        for node in &nodes {
            if f.filter(&state, &incoming, node).is_success() {
                ok += 1;
            }
        }
        let filt = t.elapsed();
        let t = Instant::now();
        let s = ps.pre_score(&mut state, &incoming, &nodes[..500], &c);
        let prescore = t.elapsed();
        let t = Instant::now();
        if s.is_success() {
            for node in &nodes[..500] {
                let _ = sc.score(&state, &incoming, node);
            }
        }
        let score = t.elapsed();
        eprintln!("anti={anti} spread={spread}: prefilter {pre:?}, filter(5000) {filt:?} ok={ok}, prescore {prescore:?} ({s:?}), score(500) {score:?}");
    }
}
