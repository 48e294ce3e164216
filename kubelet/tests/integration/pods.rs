//! Pods on a real containerd through the kubelet: lifecycle, status and deletion.

use serde_json::json;

use crate::support::{self, phase, ready};

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_reports_status_and_goes_on_delete() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    let pod = n
        .create_pod(
            "default",
            json!({
                "metadata": {"name": "hello"},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main",
                        "image": BUSYBOX,
                        "command": ["sh", "-c", "echo hello from $(hostname); exec sleep 3600"],
                    }],
                },
            }),
        )
        .await;
    let running = n
        .wait_pod("default", "hello", "Running and Ready", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await;
    let st = running.status.clone().unwrap();
    let ip = st.pod_ip.clone().expect("pod ip");
    let prefix = n.containerd.pod_cidr.rsplit_once('.').unwrap().0;
    assert!(
        ip.starts_with(prefix),
        "pod ip {ip} in {}",
        n.containerd.pod_cidr
    );
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("containerd://"));
    assert_eq!(cs.restart_count, 0);
    assert_eq!(cs.started, Some(true));
    let conditions: Vec<String> = st
        .conditions
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c.type_, c.status))
        .collect();
    for want in [
        "PodReadyToStartContainers=True",
        "Initialized=True",
        "ContainersReady=True",
        "Ready=True",
    ] {
        assert!(conditions.contains(&want.to_string()), "{conditions:?}");
    }

    // The log file the runtime writes holds the container's output.
    let uid = pod.metadata.uid.clone().unwrap();
    let log = n
        .root
        .path()
        .join("pod-logs")
        .join(format!("default_hello_{uid}"))
        .join("main/0.log");
    // Through the apiserver and the kubelet's server: following the log until the line
    // comes (Running is reported once the process started; its output follows).
    let out = n
        .follow_logs("default", "hello", None, |o| o.ends_with('\n'))
        .await;
    assert_eq!(out, "hello from hello\n");
    // The file the runtime writes holds it in the CRI format.
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("stdout F hello from hello"), "{text}");
    let out = n
        .server
        .kubectl(&["logs", "hello", "--timestamps"])
        .await
        .expect_ok("logs --timestamps");
    assert!(out.ends_with("Z hello from hello\n"), "{out}");

    n.pods("default")
        .delete("hello", &Default::default())
        .await
        .expect("delete");
    n.wait_gone("default", "hello").await;
    assert!(
        n.containerd.task_ids().is_empty(),
        "containers left: {:?}",
        n.containerd.task_ids()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_probe_restarts_the_container() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "live"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "echo run $(cat /proc/uptime); touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"],
                    "livenessProbe": {
                        "exec": {"command": ["cat", "/tmp/healthy"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }],
            },
        }),
    )
    .await;
    let restarted = n
        .wait_pod("default", "live", "a restart", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count >= 1)
        })
        .await;
    let cs = &restarted.status.unwrap().container_statuses.unwrap()[0];
    let last = cs
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .expect("last state terminated");
    assert_eq!(
        last.exit_code, 137,
        "killed after the grace period: {last:?}"
    );
    // Each run printed its own uptime; --previous shows the first run's line.
    let previous = n
        .server
        .kubectl(&["logs", "live", "--previous"])
        .await
        .expect_ok("logs --previous");
    let current = n
        .follow_logs("default", "live", None, |o| o.ends_with('\n'))
        .await;
    assert!(previous.starts_with("run "), "{previous}");
    assert!(current.starts_with("run "), "{current}");
    assert_ne!(previous, current);
    let events: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(n.client.clone(), "default");
    // Events are written in the background; wait for both.
    let said = |e: &k8s_openapi::api::core::v1::Event, reason: &str, message: &str| {
        e.reason.as_deref() == Some(reason)
            && e.message.as_deref().is_some_and(|m| m.starts_with(message))
    };
    support::wait_list(events, "Unhealthy and Killing events", |evs| {
        evs.iter()
            .any(|e| said(e, "Unhealthy", "Liveness probe failed"))
            && evs.iter().any(|e| {
                said(
                    e,
                    "Killing",
                    "Container main failed liveness probe, will be restarted",
                )
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_runs_pre_stop_and_frees_the_pod_ip() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    let shared = tempfile::tempdir().unwrap();
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "bye"},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "volumes": [{"name": "out", "hostPath": {"path": shared.path(), "type": "Directory"}}],
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                    "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo goodbye > /out/prestop"]}}},
                }],
            },
        }),
    )
    .await;
    let running = n
        .wait_pod("default", "bye", "Running", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await;
    let ip = running.status.unwrap().pod_ip.unwrap();
    let lease = n.root.path().join("cni").join("ferrokube").join(&ip);
    assert!(
        lease.exists(),
        "host-local lease {} while running",
        lease.display()
    );
    n.pods("default")
        .delete("bye", &Default::default())
        .await
        .expect("delete");
    n.wait_gone("default", "bye").await;
    assert_eq!(
        std::fs::read_to_string(shared.path().join("prestop"))
            .expect("preStop ran")
            .trim(),
        "goodbye"
    );
    assert!(!lease.exists(), "the pod IP {ip} is still leased");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_updates_reach_a_mounted_volume() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(n.client.clone(), "default");
    let cm =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"greeting": "one"}}))
            .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "reader"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "exec sleep 3600"],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                    "readinessProbe": {
                        "exec": {"command": ["grep", "-q", "two", "/etc/cfg/greeting"]},
                        "periodSeconds": 1,
                    },
                }],
            },
        }),
    )
    .await;
    n.wait_pod("default", "reader", "Running, not ready", |p| {
        phase(p) == "Running" && !ready(p)
    })
    .await;
    cms.patch(
        "cfg",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"greeting": "two"}})),
    )
    .await
    .unwrap();
    // The file inside the running container changes; its readiness probe sees it.
    n.wait_pod("default", "reader", "Ready after the update", ready)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_from_files_with_mirror_pods() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("web.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kube-system\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo static; exec sleep 3600']\n"
        ),
    )
    .unwrap();
    let dir = manifests.path().display().to_string();
    let n = support::node_with(|c| {
        c.static_pod_path = dir;
    })
    .await;
    let mirror = n
        .wait_pod("kube-system", "web-node-1", "the mirror pod Running", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await;
    let annotations = mirror.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations
            .get("kubernetes.io/config.source")
            .map(String::as_str),
        Some("file")
    );
    assert!(annotations.contains_key("kubernetes.io/config.mirror"));
    let owner = &mirror.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", "node-1")
    );
    let out = n
        .follow_logs("kube-system", "web-node-1", None, |o| o.ends_with('\n'))
        .await;
    assert_eq!(out, "static\n");

    // Deleting the mirror only brings it back; the static pod keeps running.
    let first_uid = mirror.metadata.uid.clone().unwrap();
    n.pods("kube-system")
        .delete("web-node-1", &Default::default())
        .await
        .expect("delete mirror");
    n.wait_pod("kube-system", "web-node-1", "a new mirror", |p| {
        p.metadata.uid.as_deref() != Some(first_uid.as_str()) && phase(p) == "Running"
    })
    .await;
    assert_eq!(
        n.containerd.task_ids().len(),
        2,
        "sandbox and container, never restarted"
    );

    // Removing the manifest stops the pod and removes the mirror.
    let mut events = n.containerd.events().await;
    std::fs::remove_file(manifests.path().join("web.yaml")).unwrap();
    n.wait_gone("kube-system", "web-node-1").await;
    // Each removed task is an event; look again after each one.
    let stopped = async {
        while !n.containerd.task_ids().is_empty() {
            events.until(|l| l.contains("/tasks/delete")).await;
        }
    };
    tokio::time::timeout(support::GUARD, stopped)
        .await
        .expect("containers stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_run_once_in_the_pod() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "target"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "shareProcessNamespace": false,
                "containers": [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "exec sleep 3600"]}],
            },
        }),
    )
    .await;
    n.wait_pod("default", "target", "Running", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    n.pods("default")
        .patch_subresource(
            "ephemeralcontainers",
            "target",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {"ephemeralContainers": [{
                "name": "debugger",
                "image": BUSYBOX,
                "targetContainerName": "app",
                "command": ["sh", "-c", "ps -o comm | grep -c sleep; exec sleep 3600"],
            }]}})),
        )
        .await
        .expect("add an ephemeral container");
    let p = n
        .wait_pod("default", "target", "the debugger running", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.ephemeral_container_statuses.as_ref())
                .is_some_and(|l| {
                    l.iter().any(|c| {
                        c.name == "debugger"
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        })
        .await;
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );
    // It shares the target's process namespace: it sees the target's sleep.
    let out = n
        .follow_logs("default", "target", Some("debugger"), |o| o.ends_with('\n'))
        .await;
    assert_eq!(out.trim(), "1", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_evicts_pods_but_not_static_ones() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("critical.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: critical}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: {BUSYBOX}, command: [sleep, '3600']}}]\n"),
    )
    .unwrap();
    let dir = manifests.path().display().to_string();
    // A threshold no machine meets: the node is under memory pressure from the start.
    let n = support::node_with(|c| {
        c.static_pod_path = dir;
        c.eviction_hard = [("memory.available".to_string(), "100Ti".to_string())].into();
        c.eviction_monitoring_period = std::time::Duration::from_millis(500);
    })
    .await;
    n.wait_pod(
        "default",
        "critical-node-1",
        "the static pod Running",
        |p| phase(p) == "Running",
    )
    .await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "victim"},
            "spec": {
                "terminationGracePeriodSeconds": 30,
                // Burstable: admitted under memory pressure (BestEffort pods are turned away).
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "10m"}},
                }],
            },
        }),
    )
    .await;
    let evicted = n
        .wait_pod("default", "victim", "eviction", |p| phase(p) == "Failed")
        .await;
    let st = evicted.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    let message = st.message.unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: "
        ),
        "{message}"
    );
    let disruption = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(disruption.reason.as_deref(), Some("TerminationByKubelet"));
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(n.client.clone());
    let pressure = |node: Option<&k8s_openapi::api::core::v1::Node>| {
        node.and_then(|n| n.status.as_ref()?.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "MemoryPressure" && c.status == "True")
            })
    };
    tokio::time::timeout(
        support::GUARD,
        kube::runtime::wait::await_condition(nodes, "node-1", pressure),
    )
    .await
    .expect("MemoryPressure")
    .unwrap();
    let critical = n.pods("default").get("critical-node-1").await.unwrap();
    assert_eq!(phase(&critical), "Running", "static pods are not evicted");
}

/// Reads what a plain-TCP HTTP GET of `/` returns from `addr`.
async fn http_get(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_ip_and_host_port_reach_the_container() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    // A port no other test or service on the machine uses.
    let host_port = 30000 + (std::process::id() % 2000) as i32;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "httpd",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "mkdir -p /www && echo served-by-pod > /www/index.html && exec httpd -f -p 8080 -h /www"],
                    "ports": [{"containerPort": 8080, "hostPort": host_port}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                }],
            },
        }),
    )
    .await;
    let p = n.wait_pod("default", "web", "Ready", ready).await;
    let ip = p.status.unwrap().pod_ip.unwrap();
    let direct = http_get(&format!("{ip}:8080")).await.expect("pod IP");
    assert!(direct.contains("served-by-pod"), "{direct}");
    // hostPort through CNI's portmap, on an address of the node other than loopback.
    let node_ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .expect("a non-loopback address");
    let via_host = http_get(&format!("{node_ip}:{host_port}"))
        .await
        .expect("hostPort");
    assert!(via_host.contains("served-by-pod"), "{via_host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_is_mounted_and_authenticates() {
    // ServiceAccount admission on, as in a real cluster: the pod gets kube-api-access-*.
    let server =
        ferrokube_testkit::TestServer::start_configured(|c| c.disable_admission_plugins.clear())
            .await;
    let client = server.client().await;
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), "default");
    sas.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
    )
    .await
    .unwrap();
    let ca = std::fs::read_to_string(server.path("pki").join("ca.crt")).unwrap();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "default");
    cms.create(
        &Default::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let n = support::node_on(server, |_| {}).await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "sa"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && echo && head -n 1 ca.crt && cat token && echo && exec sleep 3600"],
                }],
            },
        }),
    )
    .await;
    n.wait_pod("default", "sa", "Running", |p| phase(p) == "Running")
        .await;
    // Running is reported once the process started; its output follows.
    let out = n
        .follow_logs("default", "sa", None, |o| o.lines().count() >= 3)
        .await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("default"));
    assert_eq!(lines.next(), Some("-----BEGIN CERTIFICATE-----"));
    let token = lines.next().expect("token").to_string();
    let who = n
        .server
        .kubectl(&[
            "auth",
            "whoami",
            "--token",
            &token,
            "--kubeconfig",
            "/dev/null",
            "--server",
            &n.server.url,
            "--insecure-skip-tls-verify",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await
        .expect_ok("whoami with the pod's token");
    assert_eq!(who, "system:serviceaccount:default:default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_does_not_fit_is_rejected_by_the_node() {
    let n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "huge"},
            "spec": {"containers": [{"name": "c", "image": BUSYBOX, "resources": {"requests": {"cpu": "1000"}}}]},
        }),
    )
    .await;
    let p = n
        .wait_pod("default", "huge", "rejection", |p| phase(p) == "Failed")
        .await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("OutOfcpu"));
    let message = st.message.unwrap();
    assert!(
        message.starts_with("Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: 0, capacity: "),
        "{message}"
    );
    assert!(n.containerd.task_ids().is_empty(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_are_rotated_and_pruned() {
    let n = support::node_with(|c| {
        c.container_log_max_size = "2Ki".into();
        c.container_log_max_files = 3;
        c.container_log_monitor_interval = std::time::Duration::from_millis(300);
    })
    .await;
    n.wait_pod_node_ready().await;
    let pod = n
        .create_pod(
            "default",
            json!({
                "metadata": {"name": "chatty"},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main",
                        "image": BUSYBOX,
                        "command": ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i padding-padding-padding-padding-padding; sleep 0.01; done"],
                    }],
                },
            }),
        )
        .await;
    let uid = pod.metadata.uid.unwrap();
    let dir = n
        .root
        .path()
        .join("pod-logs")
        .join(format!("default_chatty_{uid}"))
        .join("main");
    n.wait_pod("default", "chatty", "Running", |p| phase(p) == "Running")
        .await;
    // Every rename and removal in the log directory is a file-system event; look at the
    // directory after each until rotation has pruned to the live file and two rotated ones.
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .expect("inotify watcher");
    notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)
        .expect("watch the log directory");
    let rotated = async {
        loop {
            let names: Vec<String> = std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let old = names.iter().filter(|n| n.starts_with("0.log.")).count();
            // Between the rename and the runtime's reopen there is no live file for a moment.
            if old == 2 && names.iter().any(|n| n == "0.log") {
                return names;
            }
            assert!(
                old <= 2,
                "more rotated files than containerLogMaxFiles allows: {names:?}"
            );
            changes
                .recv()
                .await
                .expect("file-system events")
                .expect("inotify");
        }
    };
    let names = tokio::time::timeout(support::GUARD, rotated)
        .await
        .expect("rotation");
    assert!(names.contains(&"0.log".to_string()), "{names:?}");
    // The live file goes on after the reopen and `kubectl logs` reads it.
    let out = n
        .follow_logs("default", "chatty", None, |o| o.starts_with("line "))
        .await;
    assert!(out.starts_with("line "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kubelet_adopts_running_pods() {
    let mut n = support::node().await;
    n.wait_pod_node_ready().await;
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "survivor"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", "exec sleep 3600"]}],
            },
        }),
    )
    .await;
    let before = n
        .wait_pod("default", "survivor", "Running", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await;
    let id = |p: &k8s_openapi::api::core::v1::Pod| {
        p.status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .container_id
            .clone()
    };
    let tasks = n.containerd.task_ids();
    n.restart_kubelet().await;
    // A pod created after the restart runs too, so the new kubelet has synced by then.
    n.create_pod(
        "default",
        json!({
            "metadata": {"name": "after"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", "exec sleep 3600"]}],
            },
        }),
    )
    .await;
    n.wait_pod("default", "after", "Running", |p| phase(p) == "Running")
        .await;
    let after = n.pods("default").get("survivor").await.unwrap();
    assert_eq!(phase(&after), "Running");
    assert_eq!(id(&after), id(&before), "the same container, not a new one");
    assert_eq!(
        after.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );
    for t in tasks {
        assert!(
            n.containerd.task_ids().contains(&t),
            "task {t} survived the restart"
        );
    }
    n.pods("default")
        .delete("survivor", &Default::default())
        .await
        .unwrap();
    n.wait_gone("default", "survivor").await;
}
