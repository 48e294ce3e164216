//! `hack/bench.sh apiserver`: the apiserver on both backends against raw etcd, in one run.
//!
//! Reference: etcd put and range throughput with the same concurrency and value size, from
//! the same etcd the apiserver's etcd backend uses. Measured: create, get, list (1,000 and
//! 10,000 pods, cached `resourceVersion=0` and consistent), and watch fan-out to 100 watchers.
//! Prints a markdown report on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const CONCURRENCY: usize = 32;
const CREATES: usize = 1_000;
const GETS: usize = 4_000;
const WATCHERS: usize = 100;
const WATCH_EVENTS: usize = 200;

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:06}"), "labels": {"app": "bench", "shard": (i % 10).to_string()},
            "annotations": {"bench.ferrokube.io/note": "a pod of realistic size for the benchmark"}},
        "spec": {
            "containers": [{
                "name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                "args": ["serve-hostname", "--port", "8080"],
                "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            }],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    }))
    .expect("pod")
}

struct Stats {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
    fn row(&self, what: &str, reference: Option<f64>) -> String {
        let ratio = reference
            .map(|r| format!("{:.0}%", 100.0 * self.rate() / r))
            .unwrap_or_else(|| "—".into());
        format!(
            "| {what} | {:.0}/s | {:.2} ms | {:.2} ms | {ratio} |",
            self.rate(),
            self.pct(0.5).as_secs_f64() * 1e3,
            self.pct(0.99).as_secs_f64() * 1e3
        )
    }
}

/// Runs `n` operations with `CONCURRENCY` in flight, timing each.
async fn run<F, Fut>(n: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("bench task"));
    }
    Stats {
        ops: n,
        elapsed: start.elapsed(),
        latencies,
    }
}

async fn raw_etcd(endpoint: &str) -> (Stats, Stats) {
    let client = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect");
    let value = serde_json::to_vec(&pod(0)).expect("json");
    let c = client.clone();
    let v = value.clone();
    let puts = run(GETS, move |i| {
        let mut c = c.clone();
        let v = v.clone();
        async move {
            c.put(format!("/raw/pods/default/pod-{i:06}"), v, None)
                .await
                .expect("put");
        }
    })
    .await;
    let c = client.clone();
    let ranges = run(GETS, move |i| {
        let mut c = c.clone();
        async move {
            c.get(format!("/raw/pods/default/pod-{:06}", i % CREATES), None)
                .await
                .expect("range");
        }
    })
    .await;
    (puts, ranges)
}

use ferrokube_testkit as common;

// The same allocator as the kube-apiserver binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One request through the client, answered as text: the client does no typed decoding, so
/// the figures are the server's (the etcd reference decodes nothing either).
async fn send(client: &kube::Client, method: &str, path: &str, body: Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    client
        .request_text(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
}

const PODS: &str = "/api/v1/namespaces/default/pods";

async fn create_range(client: &kube::Client, from: usize, to: usize) -> Stats {
    let c = client.clone();
    run(to - from, move |i| {
        let c = c.clone();
        async move {
            let body = serde_json::to_vec(&pod(from + i)).expect("json");
            send(&c, "POST", PODS, body).await;
        }
    })
    .await
}

async fn lists(client: &kube::Client, name: &str, count: usize, out: &mut Vec<String>) {
    // One untimed list first: each object is serialised once, on its first read, and then
    // shared by every later list and watch.
    send(
        client,
        "GET",
        &format!("{PODS}?resourceVersion=0"),
        Vec::new(),
    )
    .await;
    for (label, query) in [
        ("cached list (resourceVersion=0)", "?resourceVersion=0"),
        ("consistent list", ""),
    ] {
        let rounds = 20;
        let mut lat = Vec::new();
        let start = Instant::now();
        for _ in 0..rounds {
            let t = Instant::now();
            send(client, "GET", &format!("{PODS}{query}"), Vec::new()).await;
            lat.push(t.elapsed());
        }
        let stats = Stats {
            ops: rounds,
            elapsed: start.elapsed(),
            latencies: lat,
        };
        out.push(stats.row(&format!("{name}: {label} of {count} pods"), None));
    }
}

async fn apiserver(
    name: &str,
    server: &common::TestServer,
    reference: (f64, f64),
    out: &mut Vec<String>,
) {
    let client = server.client().await;
    let creates = create_range(&client, 0, CREATES).await;
    out.push(creates.row(&format!("{name}: create pod"), Some(reference.0)));
    let c = client.clone();
    let gets = run(GETS, move |i| {
        let c = c.clone();
        async move {
            send(
                &c,
                "GET",
                &format!("{PODS}/pod-{:06}", i % CREATES),
                Vec::new(),
            )
            .await;
        }
    })
    .await;
    out.push(gets.row(&format!("{name}: get pod"), Some(reference.1)));
    lists(&client, name, CREATES, out).await;
    create_range(&client, CREATES, 10_000).await;
    lists(&client, name, 10_000, out).await;

    // Watch fan-out: 100 watchers, each event timed from its create's start to arrival.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("rv")
        .metadata
        .resource_version
        .expect("rv");
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Default::default();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = pods
            .watch(&WatchParams::default().labels("app=watched"), &rv)
            .await
            .expect("watch");
        let sent = sent.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut lat = Vec::new();
            while lat.len() < WATCH_EVENTS {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(p))) => {
                        let name = p.metadata.name.unwrap_or_default();
                        if let Some(t) = sent.lock().unwrap().get(&name) {
                            lat.push(t.elapsed());
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    for i in 0..WATCH_EVENTS {
        let mut p = pod(900_000 + i);
        p.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("app".into(), "watched".into());
        sent.lock()
            .unwrap()
            .insert(p.metadata.name.clone().unwrap_or_default(), Instant::now());
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create watched");
    }
    let mut latencies = Vec::new();
    for w in watchers {
        latencies.extend(w.await.expect("watcher"));
    }
    let delivered = latencies.len();
    let stats = Stats {
        ops: delivered,
        elapsed: start.elapsed(),
        latencies,
    };
    out.push(stats.row(&format!("{name}: watch fan-out, {WATCHERS} watchers x {WATCH_EVENTS} events (delivered/s, create→event)"), None));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let etcd = common::Etcd::start().await;
        let (puts, ranges) = raw_etcd(&etcd.endpoint).await;
        let mut rows = vec![
            "| measurement | throughput | p50 | p99 | vs raw etcd |".to_string(),
            "|---|---|---|---|---|".to_string(),
            puts.row("raw etcd: put (pod-sized value)", None),
            ranges.row("raw etcd: range (one key)", None),
        ];
        let reference = (puts.rate(), ranges.rate());

        let server = etcd.apiserver().await;
        apiserver("etcd", &server, reference, &mut rows).await;
        drop(server);

        let server = common::TestServer::start().await;
        apiserver("embedded", &server, reference, &mut rows).await;
        drop(server);

        println!(
            "Concurrency {CONCURRENCY}; {GETS} raw etcd puts and ranges; per backend {CREATES} timed creates, {GETS} gets, \
             20 lists at 1,000 and at 10,000 pods (after one untimed list), {WATCHERS} watchers; pod objects of about {} bytes \
             as sent. The client, the apiserver and etcd share the machine's cores.\n",
            serde_json::to_vec(&pod(0)).map(|v| v.len()).unwrap_or(0)
        );
        for r in rows {
            println!("{r}");
        }
    });
}
