//! `hack/bench.sh pods`: pod startup latency on one real node, and how many hollow nodes one
//! core of kubelet holds with their heartbeats on time.
//!
//! Startup: 100 pods (the pause image, so no pull) created against an in-process apiserver,
//! bound to a kubelet on a real containerd; latency is from the create request to the watch
//! showing the pod Running. Twice: paced (one pod every 250 ms, as upstream's density tests
//! create pods at a steady rate) and as a burst (all 100 at once). Reference, in the same run
//! and with the same pacing: the same sandboxes and containers started straight through CRI,
//! the floor the runtime sets.
//!
//! Hollow: `kubelet --runtime hollow --hollow-nodes N` as a child process against the same
//! kind of apiserver; after registration, a window in which every Lease renewal is watched.
//! On time = no lease went longer than 1.5 renew intervals without a renewal. Cores = the
//! child's user+system CPU over the window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_testkit::{Containerd, TestServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{watcher, Config, Event};
use kubelet::agent::{self, Network, NodeOptions};
use kubelet::config::{Dirs, KubeletConfiguration};
use kubelet::runtime::{api, cri::CriRuntime, Runtime};
use serde_json::json;

const PODS: usize = 100;
const PACE: Duration = Duration::from_millis(250);
const PAUSE: &str = "registry.k8s.io/pause:3.10";
const HOLLOW_NODES: usize = 500;
const WINDOW: Duration = Duration::from_secs(60);

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Waits until the `i`-th start of a run begun at `t0` is due (never, for a burst).
async fn pace(t0: Instant, i: usize, paced: bool) {
    if paced {
        tokio::time::sleep_until((t0 + PACE * u32::try_from(i).unwrap_or(0)).into()).await;
    }
}

async fn startup(paced: bool) -> (Vec<Duration>, Vec<Duration>) {
    let server = TestServer::start().await;
    let ctd = Containerd::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().unwrap();
    let (services, _services) = agent::services(client.clone());
    let node = agent::start(
        client.clone(),
        Arc::new(CriRuntime::connect(&ctd.endpoint()).unwrap()),
        NodeOptions {
            name: "bench-node".into(),
            node_ip: Some("127.0.0.1".into()),
            config: KubeletConfiguration {
                pod_cidr: ctd.pod_cidr.clone(),
                max_pods: 200,
                ..Default::default()
            },
            dirs: Dirs::new(root.path()),
            network: Network::Cni {
                conf_dir: ctd.cni_conf_dir.clone(),
                bridge: ctd.bridge.clone(),
            },
            pleg_period: Duration::from_millis(500),
            machine: None,
            services,
            serve: false,
        },
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Running as the watch reports it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch_api = pods.clone();
    let watch = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(watch_api, Config::default()));
        while let Ok(Some(ev)) = events.try_next().await {
            if let Event::Apply(p) | Event::InitApply(p) = ev {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if running {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    let mut created: HashMap<String, Instant> = HashMap::new();
    let t0 = Instant::now();
    let creates = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pace(t0, i, paced).await;
                let name = format!("pod-{i}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {
                        "nodeName": "bench-node",
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": PAUSE}],
                    },
                }))
                .unwrap();
                let start = Instant::now();
                pods.create(&PostParams::default(), &pod).await.unwrap();
                (name, start)
            }
        })
        .buffer_unordered(PODS);
    let mut creates = std::pin::pin!(creates);
    while let Some((name, t)) = creates.next().await {
        created.insert(name, t);
    }
    let mut latencies = HashMap::new();
    while latencies.len() < PODS {
        let (name, t) = rx.recv().await.expect("watch ended");
        if let Some(start) = created.get(&name) {
            latencies
                .entry(name)
                .or_insert_with(|| t.duration_since(*start));
        }
    }
    watch.abort();
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    watch_until(pods.clone(), |items| items.is_empty()).await;
    node.stop();

    // Reference: the same sandboxes and containers straight through CRI.
    let rt = Arc::new(CriRuntime::connect(&ctd.endpoint()).unwrap());
    let logs = root.path().join("direct");
    let t0 = Instant::now();
    let direct: Vec<Duration> = futures::stream::iter(0..PODS)
        .map(|i| {
            let rt = rt.clone();
            let logs = logs.clone();
            async move {
                pace(t0, i, paced).await;
                let start = Instant::now();
                let sandbox = api::PodSandboxConfig {
                    metadata: Some(api::PodSandboxMetadata {
                        name: format!("direct-{i}-{paced}"),
                        uid: format!("direct-uid-{i}-{paced}"),
                        namespace: "default".into(),
                        attempt: 0,
                    }),
                    log_directory: logs.join(i.to_string()).display().to_string(),
                    linux: Some(api::LinuxPodSandboxConfig::default()),
                    ..Default::default()
                };
                let id = rt
                    .run_pod_sandbox(api::RunPodSandboxRequest {
                        config: Some(sandbox.clone()),
                        runtime_handler: String::new(),
                    })
                    .await
                    .unwrap()
                    .pod_sandbox_id;
                let c = rt
                    .create_container(api::CreateContainerRequest {
                        pod_sandbox_id: id,
                        config: Some(api::ContainerConfig {
                            metadata: Some(api::ContainerMetadata {
                                name: "c".into(),
                                attempt: 0,
                            }),
                            image: Some(api::ImageSpec {
                                image: PAUSE.into(),
                                ..Default::default()
                            }),
                            log_path: "c/0.log".into(),
                            ..Default::default()
                        }),
                        sandbox_config: Some(sandbox),
                    })
                    .await
                    .unwrap()
                    .container_id;
                rt.start_container(api::StartContainerRequest { container_id: c })
                    .await
                    .unwrap();
                start.elapsed()
            }
        })
        .buffer_unordered(PODS)
        .collect()
        .await;
    let mut kubelet: Vec<Duration> = latencies.into_values().collect();
    kubelet.sort();
    let mut direct = direct;
    direct.sort();
    (kubelet, direct)
}

/// Watches `api` until its objects satisfy `cond`.
async fn watch_until<K>(api: Api<K>, cond: impl Fn(&[K]) -> bool)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let mut stream = std::pin::pin!(kube::runtime::reflector::reflector(
        writer,
        watcher(api, Config::default())
    ));
    while let Some(ev) = stream.next().await {
        if matches!(ev, Ok(Event::InitApply(_)) | Err(_)) {
            continue;
        }
        let items: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
        if cond(&items) {
            return;
        }
    }
}

/// User+system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

struct Hollow {
    nodes: usize,
    cores: f64,
    max_gap: Duration,
    late: usize,
}

async fn hollow() -> Hollow {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["--runtime", "hollow", "--hostname-override", "hollow"])
        .arg("--hollow-nodes")
        .arg(HOLLOW_NODES.to_string())
        .arg("--root-dir")
        .arg(root.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("kubelet binary");
    let pid = child.id().expect("pid");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    // The steady state starts once every node has registered, taken its Lease and posted a
    // Ready status: registration's burst is then over.
    watch_until(leases.clone(), |l| l.len() >= HOLLOW_NODES).await;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    watch_until(Api::<Node>::all(client.clone()), |nodes| {
        nodes.len() >= HOLLOW_NODES && nodes.iter().all(ready)
    })
    .await;
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut max_gap = Duration::ZERO;
    let start = Instant::now();
    let cpu0 = cpu_seconds(pid);
    let mut events = std::pin::pin!(watcher(leases.clone(), Config::default()));
    let deadline = tokio::time::sleep(WINDOW);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            ev = events.try_next() => {
                let Ok(Some(ev)) = ev else { break };
                if let Event::Apply(l) | Event::InitApply(l) = ev {
                    let now = Instant::now();
                    let name = l.metadata.name.unwrap_or_default();
                    if let Some(prev) = last.insert(name, now) {
                        max_gap = max_gap.max(now - prev);
                    }
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let end = Instant::now();
    // A lease never renewed in the window, or not for 1.5 intervals before its end, is late.
    let limit = Duration::from_secs(15);
    let mut late = HOLLOW_NODES.saturating_sub(last.len());
    for t in last.values() {
        if end - *t > limit {
            late += 1;
        }
    }
    if max_gap > limit {
        late = late.max(1);
    }
    let _ = child.kill().await;
    Hollow {
        nodes: HOLLOW_NODES,
        cores: cpu / elapsed.as_secs_f64(),
        max_gap,
        late,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("### Pod startup, {PODS} pods on one node (containerd, pause image)\n");
    println!("| creation | path | p50 | p99 | p99 / CRI floor | p99 against the 5 s SLO | target p99 <= 1 s |");
    println!("|---|---|---|---|---|---|---|");
    for (label, paced) in [("one every 250 ms", true), ("all at once", false)] {
        let (kubelet, direct) = rt.block_on(startup(paced));
        let (p50, p99) = (quantile(&kubelet, 0.5), quantile(&kubelet, 0.99));
        let (d50, d99) = (quantile(&direct, 0.5), quantile(&direct, 0.99));
        println!(
            "| {label} | create -> Running seen through a watch (apiserver + kubelet + containerd) | {} | {} | {:.2}x | {:.2} | {} |",
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / d99.as_secs_f64().max(1e-9),
            p99.as_secs_f64() / 5.0,
            if p99 <= Duration::from_secs(1) { "met" } else { "not met" }
        );
        println!(
            "| {label} | reference: RunPodSandbox + CreateContainer + StartContainer straight through CRI | {} | {} | 1.00x | {:.2} | |",
            ms(d50),
            ms(d99),
            d99.as_secs_f64() / 5.0
        );
    }
    println!();
    let h = rt.block_on(hollow());
    println!(
        "### Hollow nodes, one kubelet process (`--runtime hollow --hollow-nodes {}`)\n",
        h.nodes
    );
    println!("| nodes | kubelet CPU (cores, {}s window) | nodes per core | longest gap between lease renewals | late nodes |", WINDOW.as_secs());
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {:.3} | {:.0} | {:.1} s | {} |",
        h.nodes,
        h.cores,
        h.nodes as f64 / h.cores.max(1e-9),
        h.max_gap.as_secs_f64(),
        h.late
    );
    println!("\nOn time means every Lease renewed within 1.5 renew intervals (15 s). Kubemark, for scale, holds about 17 hollow nodes a core.");
}
