use super::*;
use crate::runtime::api;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": spec,
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
    }))
    .unwrap()
}

fn container(
    name: &str,
    state: api::ContainerState,
    exit: i32,
    created: i64,
    restarts: i32,
) -> api::ContainerStatus {
    api::ContainerStatus {
        id: format!("{name}-{created}"),
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: u32::try_from(restarts).unwrap(),
        }),
        state: state as i32,
        created_at: created,
        started_at: created + 1,
        finished_at: if state == api::ContainerState::ContainerExited {
            created + 2
        } else {
            0
        },
        exit_code: exit,
        image_ref: "sha256:abc".into(),
        annotations: [(
            "io.kubernetes.container.restartCount".to_string(),
            restarts.to_string(),
        )]
        .into(),
        ..Default::default()
    }
}

fn sandbox() -> api::PodSandboxStatus {
    api::PodSandboxStatus {
        id: "s1".into(),
        state: api::PodSandboxState::SandboxReady as i32,
        created_at: 1,
        network: Some(api::PodSandboxNetworkStatus {
            ip: "10.1.0.5".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn build_with(
    pod: &Pod,
    rt: &PodRuntime,
    waiting: &HashMap<String, Waiting>,
    ready: bool,
) -> PodStatus {
    let ready_fn = move |_: &str, _: &str| ready;
    let started = |_: &str, _: &str| true;
    build(&Inputs {
        pod,
        runtime: rt,
        runtime_name: "containerd",
        host_ips: &["192.168.1.2".to_string()],
        waiting,
        ready: &ready_fn,
        started: &started,
        terminal: None,
        qos_class: "BestEffort",
        now: Time("2026-01-01T00:00:00Z".parse().unwrap()),
    })
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[test]
fn running_and_ready() {
    let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
    let rt = PodRuntime {
        sandboxes: vec![sandbox()],
        containers: vec![container(
            "a",
            api::ContainerState::ContainerRunning,
            0,
            10,
            0,
        )],
    };
    let s = build_with(&p, &rt, &HashMap::new(), true);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.0.5"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.2"));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(
        cond(&s, "PodScheduled").status,
        "True",
        "kept from the old status"
    );
    let cs = &s.container_statuses.unwrap()[0];
    assert_eq!(cs.container_id.as_deref(), Some("containerd://a-10"));
    assert!(cs.ready);
}

#[test]
fn unready_container_message() {
    let p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
    let rt = PodRuntime {
        sandboxes: vec![sandbox()],
        containers: vec![
            container("a", api::ContainerState::ContainerRunning, 0, 10, 0),
            container("b", api::ContainerState::ContainerRunning, 0, 11, 0),
        ],
    };
    let s = build_with(&p, &rt, &HashMap::new(), false);
    let ready = cond(&s, "Ready");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a b]")
    );
}

#[test]
fn crash_loop_shows_waiting_with_last_state() {
    let p = pod(json!({"containers": [{"name": "a"}]}));
    let rt = PodRuntime {
        sandboxes: vec![sandbox()],
        containers: vec![container(
            "a",
            api::ContainerState::ContainerExited,
            1,
            10,
            2,
        )],
    };
    let waiting: HashMap<String, Waiting> = [(
        "a".to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 20s".into(),
        },
    )]
    .into();
    let s = build_with(&p, &rt, &waiting, true);
    assert_eq!(
        s.phase.as_deref(),
        Some("Running"),
        "restartPolicy Always keeps it Running"
    );
    let cs = &s.container_statuses.unwrap()[0];
    assert_eq!(cs.restart_count, 2);
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(
        cs.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
}

#[test]
fn completed_pod_phases() {
    for (policy, exit, phase) in [
        ("Never", 0, "Succeeded"),
        ("Never", 3, "Failed"),
        ("OnFailure", 0, "Succeeded"),
        ("OnFailure", 3, "Running"),
    ] {
        let p = pod(json!({"restartPolicy": policy, "containers": [{"name": "a"}]}));
        let rt = PodRuntime {
            sandboxes: vec![sandbox()],
            containers: vec![container(
                "a",
                api::ContainerState::ContainerExited,
                exit,
                10,
                0,
            )],
        };
        let s = build_with(&p, &rt, &HashMap::new(), true);
        assert_eq!(s.phase.as_deref(), Some(phase), "{policy} exit {exit}");
        if phase == "Succeeded" {
            assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        }
    }
}

#[test]
fn init_containers_hold_the_pod_pending() {
    let p = pod(json!({"initContainers": [{"name": "init"}], "containers": [{"name": "a"}]}));
    let rt = PodRuntime {
        sandboxes: vec![sandbox()],
        containers: vec![container(
            "init",
            api::ContainerState::ContainerRunning,
            0,
            10,
            0,
        )],
    };
    let s = build_with(&p, &rt, &HashMap::new(), true);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init = cond(&s, "Initialized");
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [init]")
    );
    let a = &s.container_statuses.unwrap()[0];
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    let _ = PodSpec::default();
}
