//! The CRI client against a real containerd: a sandbox on the CNI bridge and a busybox
//! container whose output lands in its CRI log file.

use std::collections::HashMap;

use ferrokube_testkit::Containerd;
use kubelet::cni;
use kubelet::runtime::{api, cri::CriRuntime, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_and_container_run_on_containerd() {
    let ctd = Containerd::start().await;
    let ipam = ctd.dir.path().join("ipam");
    let cidrs = [ctd.pod_cidr.clone()];
    cni::write(&cni::Network {
        conf_dir: &ctd.cni_conf_dir,
        bridge: &ctd.bridge,
        pod_cidrs: &cidrs,
        ipam_dir: &ipam,
    })
    .expect("cni config");
    let rt = CriRuntime::connect(&ctd.endpoint()).expect("connect");
    let version = rt
        .version(api::VersionRequest::default())
        .await
        .expect("version");
    assert_eq!(version.runtime_api_version, "v1");

    let logs = ctd.dir.path().join("logs");
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "smoke".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "smoke".into(),
        log_directory: logs.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let sandbox = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .pod_sandbox_id;
    let status = rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .expect("sandbox status")
        .status
        .expect("status");
    let ip = status.network.expect("network").ip;
    let prefix = ctd.pod_cidr.rsplit_once('.').unwrap().0;
    assert!(
        ip.starts_with(prefix),
        "pod ip {ip} outside {}",
        ctd.pod_cidr
    );

    let container = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "hello".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "registry.k8s.io/e2e-test-images/busybox:1.36.1-1".into(),
                    ..Default::default()
                }),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello from $(hostname)".into(),
                ],
                log_path: "hello/0.log".into(),
                labels: HashMap::new(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .expect("create container")
        .container_id;
    let mut events = ctd.events().await;
    rt.start_container(api::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .expect("start");
    // containerd reports the exit as an event; the status reflects it from then on.
    let exit = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        events.until(|l| l.contains("/tasks/exit") && l.contains(&container)),
    )
    .await
    .expect("the container exits");
    // The event's JSON leaves a zero exit status out.
    assert!(!exit.contains("\"exit_status\":"), "{exit}");
    // CRI handles the exit on its own time; StopContainer returns once it has.
    rt.stop_container(api::StopContainerRequest {
        container_id: container.clone(),
        timeout: 0,
    })
    .await
    .expect("stop the exited container");
    let exited = rt
        .container_status(api::ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .expect("container status")
        .status
        .expect("status");
    assert_eq!(exited.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(exited.exit_code, 0);
    let log = std::fs::read_to_string(logs.join("hello/0.log")).expect("log file");
    assert!(log.contains(" stdout F hello from smoke"), "log: {log}");

    rt.remove_container(api::RemoveContainerRequest {
        container_id: container,
    })
    .await
    .expect("remove container");
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .expect("stop sandbox");
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .expect("remove sandbox");
    assert!(ctd.task_ids().is_empty());
}
