//! `hack/bench.sh controllers`: a Deployment scaled from 0 to 5,000 replicas.
//!
//! The real `kube-controller-manager` binary runs as its own process against an apiserver in
//! this process; a status writer plays the kubelet (every new pod is marked Running and
//! Ready). Measured: the time until the Deployment reports 5,000 ready replicas, and the
//! controller manager's peak memory. Reference, in the same run: the same 5,000 pods created
//! straight through the API with the same client concurrency, and marked ready the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_testkit::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{watcher, Config, Event};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPLICAS: usize = 5_000;
const CONCURRENCY: usize = 32;

fn ready_patch() -> Patch<serde_json::Value> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    Patch::Merge(json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "busybox",
            "imageID": "", "started": true, "state": {"running": {"startedAt": now}}}],
    }}))
}

/// Plays the kubelet for every pod carrying `label`: marks it Running and Ready once.
fn status_writer(pods: Api<Pod>, label: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher(pods.clone(), Config::default().labels(label));
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(REPLICAS);
        let writer = tokio::spawn(async move {
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(CONCURRENCY, |name| {
                    let pods = pods.clone();
                    async move {
                        let _ = pods
                            .patch_status(&name, &PatchParams::default(), &ready_patch())
                            .await;
                    }
                })
                .await
        });
        let mut seen = std::collections::HashSet::new();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(ev)) = stream.try_next().await {
            if let Event::Apply(p) | Event::InitApply(p) = ev {
                let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                let name = p.metadata.name.clone().unwrap_or_default();
                if phase.as_deref() != Some("Running") && seen.insert(name.clone()) {
                    let _ = tx.send(name).await;
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    })
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("direct-{i}"), "labels": {"app": "direct"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .expect("pod")
}

/// Waits until `count` pods with the label are Ready (watching, not polling).
async fn ready_count(pods: &Api<Pod>, label: &str, count: usize) {
    let stream = watcher(pods.clone(), Config::default().labels(label));
    let mut ready = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(stream);
    while let Ok(Some(ev)) = stream.try_next().await {
        if let Event::Apply(p) | Event::InitApply(p) = ev {
            let is_ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if is_ready {
                ready.insert(p.metadata.name.unwrap_or_default());
                if ready.len() >= count {
                    return;
                }
            }
        }
    }
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = TestServer::start().await;
        let client = server.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

        // Reference: the same number of pods created directly, then made ready.
        let writer = status_writer(pods.clone(), "app=direct");
        let start = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let pods = pods.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= REPLICAS {
                        break;
                    }
                    pods.create(&PostParams::default(), &pod(i)).await.expect("create pod");
                }
            }));
        }
        for t in tasks {
            t.await.expect("creator");
        }
        ready_count(&pods, "app=direct", REPLICAS).await;
        let direct = start.elapsed();
        writer.abort();

        // The controller manager, as its own process.
        let mut manager = std::process::Command::new(env!("CARGO_BIN_EXE_kube-controller-manager"))
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--controllers", "replicaset,deployment", "--leader-elect=false", "--secure-port", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start kube-controller-manager");
        let pid = manager.id();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "scale"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "scale"}},
                "template": {"metadata": {"labels": {"app": "scale"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
        }))
        .expect("deployment");
        deployments.create(&PostParams::default(), &deployment).await.expect("create deployment");
        let writer = status_writer(pods.clone(), "app=scale");
        let idle_rss = peak_rss_mib(pid);
        let start = Instant::now();
        deployments
            .patch("scale", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": REPLICAS}})))
            .await
            .expect("scale");
        let stream = watcher(deployments.clone(), Config::default().fields("metadata.name=scale"));
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(ev)) = stream.try_next().await {
            if let Event::Apply(d) | Event::InitApply(d) = ev {
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                if ready as usize >= REPLICAS {
                    break;
                }
            }
        }
        let scaled = start.elapsed();
        let peak = peak_rss_mib(pid);
        writer.abort();
        let _ = manager.kill();
        let _ = manager.wait();

        let rate = |d: Duration| REPLICAS as f64 / d.as_secs_f64();
        println!(
            "{REPLICAS} pods, client concurrency {CONCURRENCY}, a status writer marking each pod Running and Ready; \
             embedded store; the controller manager runs as its own process (replicaset and deployment controllers).\n"
        );
        println!("| measurement | time | pods/s | vs direct |");
        println!("|---|---|---|---|");
        println!("| reference: {REPLICAS} pods created directly and made ready | {:.1} s | {:.0} | — |", direct.as_secs_f64(), rate(direct));
        println!(
            "| Deployment 0 → {REPLICAS} ready replicas | {:.1} s | {:.0} | {:.0}% |",
            scaled.as_secs_f64(),
            rate(scaled),
            100.0 * rate(scaled) / rate(direct)
        );
        println!("\n| kube-controller-manager memory | MiB |\n|---|---|");
        println!("| peak RSS before scaling | {idle_rss:.0} |");
        println!("| peak RSS at {REPLICAS} replicas | {peak:.0} |");
    });
}
