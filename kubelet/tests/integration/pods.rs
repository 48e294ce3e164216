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
        .wait_pod("default", "hello", "Running and Ready", |p| phase(p) == "Running" && ready(p))
        .await;
    let st = running.status.clone().unwrap();
    let ip = st.pod_ip.clone().expect("pod ip");
    let prefix = n.containerd.pod_cidr.rsplit_once('.').unwrap().0;
    assert!(ip.starts_with(prefix), "pod ip {ip} in {}", n.containerd.pod_cidr);
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs.container_id.as_deref().unwrap().starts_with("containerd://"));
    assert_eq!(cs.restart_count, 0);
    assert_eq!(cs.started, Some(true));
    let conditions: Vec<String> = st
        .conditions
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c.type_, c.status))
        .collect();
    for want in ["PodReadyToStartContainers=True", "Initialized=True", "ContainersReady=True", "Ready=True"] {
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
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("stdout F hello from hello"), "{text}");

    n.pods("default").delete("hello", &Default::default()).await.expect("delete");
    n.wait_gone("default", "hello").await;
    assert!(n.containerd.task_ids().is_empty(), "containers left: {:?}", n.containerd.task_ids());
}
