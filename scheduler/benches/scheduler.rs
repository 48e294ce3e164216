//! `hack/bench.sh scheduler`: upstream scheduler_perf's SchedulingBasic shape — 5,000 nodes,
//! 1,000 pods placed first, then 10,000 pods measured — and the same with required pod
//! anti-affinity and with topology spreading.
//!
//! The apiserver runs in this process; the scheduler runs on its own runtime and threads.
//! Measured: pods/s from the first measured pod's creation to the last one's binding, and
//! the p99 of the scheduler's attempt latency (`scheduler_scheduling_attempt_duration_seconds`,
//! upstream's buckets, interpolated as Prometheus' histogram_quantile does). Reference, in the
//! same run: the same pods bound straight through `pods/binding` with the same client
//! concurrency, which is the ceiling the apiserver puts on any scheduler here.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_component::metrics::Registry;
use ferrokube_testkit::TestServer;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{watcher, Config, Event};
use kube_scheduler::config::Configuration;
use kube_scheduler::profile;
use kube_scheduler::scheduler::Scheduler;
use serde_json::{json, Value};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODES: usize = 5_000;
const INITIAL: usize = 1_000;
const MEASURED: usize = 10_000;
const CONCURRENCY: usize = 32;
const ZONES: usize = 10;

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Basic,
    AntiAffinity,
    TopologySpread,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Basic => "SchedulingBasic",
            Shape::AntiAffinity => "SchedulingPodAntiAffinity",
            Shape::TopologySpread => "SchedulingPodTopologySpread",
        }
    }

    fn pod(self, ns: &str, i: usize) -> Pod {
        // Groups of 100 pods that must not share a node (anti-affinity) or must spread
        // evenly over zones (topology spread).
        let group = format!("g{}", i / 100);
        let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]});
        match self {
            Shape::Basic => {}
            Shape::AntiAffinity => {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"group": group}},
                    "topologyKey": "kubernetes.io/hostname"}]}});
            }
            Shape::TopologySpread => {
                spec["topologySpreadConstraints"] = json!([{"maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"group": group}}}]);
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}"), "namespace": ns, "labels": {"group": group}},
            "spec": spec,
        }))
        .expect("pod")
    }
}

fn node(i: usize) -> Node {
    let name = format!("node-{i}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES)}},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .expect("node")
}

/// Runs `f(i)` for i in 0..n with CONCURRENCY requests in flight.
async fn concurrently<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let next = next.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

async fn create_nodes(client: &kube::Client) {
    let api: Api<Node> = Api::all(client.clone());
    concurrently(NODES, move |i| {
        let api = api.clone();
        async move {
            let n = node(i);
            let created = api.create(&PostParams::default(), &n).await.expect("node");
            let mut with_status = created;
            with_status.status = n.status;
            api.replace_status(&format!("node-{i}"), &PostParams::default(), &with_status)
                .await
                .expect("node status");
        }
    })
    .await;
}

async fn create_namespace(client: &kube::Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("namespace");
}

async fn create_pods(client: &kube::Client, ns: &str, shape: Shape, range: std::ops::Range<usize>) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ns = ns.to_string();
    let start = range.start;
    concurrently(range.len(), move |i| {
        let api = api.clone();
        let pod = shape.pod(&ns, start + i);
        async move {
            api.create(&PostParams::default(), &pod).await.expect("pod");
        }
    })
    .await;
}

/// Waits (watching) until `count` pods in `ns` have a node.
async fn bound(client: &kube::Client, ns: &str, count: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut seen = HashSet::new();
    let stream = watcher(api, Config::default());
    let mut stream = std::pin::pin!(stream);
    while let Ok(Some(ev)) = stream.try_next().await {
        if let Event::Apply(p) | Event::InitApply(p) = ev {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                seen.insert(p.metadata.name.unwrap_or_default());
                if seen.len() >= count {
                    return;
                }
            }
        }
    }
}

/// The q-quantile of a rendered Prometheus histogram, interpolated within its bucket.
fn quantile(metrics: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{")) else {
            continue;
        };
        if !rest.contains("result=\"scheduled\"") {
            continue;
        }
        // `le` is the last label (and `profile=` also ends in `le=`).
        let le = rest
            .rsplit_once("le=\"")
            .and_then(|(_, v)| v.split('"').next())
            .unwrap_or("");
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0);
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(0.0)
        };
        buckets.push((bound, count));
    }
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return prev.0;
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                1.0
            };
            return prev.0 + (bound - prev.0) * within;
        }
        prev = (bound, count);
    }
    0.0
}

struct Outcome {
    scheduled: Duration,
    p99: f64,
    direct: Duration,
}

async fn run(shape: Shape) -> Outcome {
    let server = TestServer::start().await;
    let client = server.client().await;
    create_nodes(&client).await;

    // Reference: bind pods directly, round-robin over the nodes.
    create_namespace(&client, "direct").await;
    create_pods(&client, "direct", Shape::Basic, 0..MEASURED).await;
    let started = Instant::now();
    let api: Api<Pod> = Api::namespaced(client.clone(), "direct");
    concurrently(MEASURED, move |i| {
        let api = api.clone();
        async move {
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": format!("p-{i}")},
                "target": {"kind": "Node", "name": format!("node-{}", i % NODES)}});
            let _: Value = api
                .create_subresource(
                    "binding",
                    &format!("p-{i}"),
                    &PostParams::default(),
                    &binding,
                )
                .await
                .expect("bind");
        }
    })
    .await;
    let direct = started.elapsed();
    // Those pods leave; they would otherwise take room on the nodes.
    let api: Api<Pod> = Api::namespaced(client.clone(), "direct");
    api.delete_collection(&Default::default(), &Default::default())
        .await
        .expect("clean up");

    let metrics = Arc::new(Registry::default());
    let config = Configuration::parse(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
    )
    .expect("config");
    let frameworks = profile::build_all(&config, &client).expect("profiles");
    let scheduler = Scheduler::new(client.clone(), &config, frameworks, metrics.clone());
    let scheduler_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("scheduler")
            .enable_all()
            .build()
            .expect("runtime");
        let _ = rt.block_on(scheduler.run());
    });

    create_namespace(&client, "bench").await;
    create_pods(&client, "bench", shape, 0..INITIAL).await;
    bound(&client, "bench", INITIAL).await;
    let before = metrics.render();
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        tokio::spawn(async move {
            create_pods(&client, "bench", shape, INITIAL..INITIAL + MEASURED).await
        })
    };
    bound(&client, "bench", INITIAL + MEASURED).await;
    let scheduled = started.elapsed();
    creating.await.expect("creator");
    let after = metrics.render();
    let _ = before;
    drop(scheduler_thread);
    Outcome {
        scheduled,
        p99: quantile(
            &after,
            "scheduler_scheduling_attempt_duration_seconds",
            0.99,
        ),
        direct,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{NODES} nodes ({ZONES} zones), {INITIAL} pods placed first, then {MEASURED} pods measured; \
         client concurrency {CONCURRENCY}; embedded store; apiserver in the bench process, the scheduler \
         on its own runtime. Upstream's published floor for SchedulingBasic is 270 pods/s.\n"
    );
    println!(
        "| workload | measured pods/s | attempt p99 | reference: direct binds/s | vs reference |"
    );
    println!("|---|---|---|---|---|");
    // `cargo bench -- Basic` runs only the workloads whose name contains an argument.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for shape in [Shape::Basic, Shape::AntiAffinity, Shape::TopologySpread] {
        if !only.is_empty() && !only.iter().any(|o| shape.name().contains(o.as_str())) {
            continue;
        }
        let o = runtime.block_on(run(shape));
        let rate = MEASURED as f64 / o.scheduled.as_secs_f64();
        let direct = MEASURED as f64 / o.direct.as_secs_f64();
        println!(
            "| {} | {:.0} | {:.1} ms | {:.0} | {:.0}% |",
            shape.name(),
            rate,
            o.p99 * 1000.0,
            direct,
            100.0 * rate / direct
        );
    }
}
