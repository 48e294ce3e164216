//! Image pulls through containerd from a real registry (Debian's docker-registry) that wants a
//! password: the pull policies, the pod's pull secrets (`dockerconfigjson` and legacy
//! `dockercfg`) and the back-off after a refused pull, through the kubelet's image manager.
//! Skipped when docker-registry is not installed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use ferrokube_testkit::Containerd;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kubelet::images::{normalize_image, ImageManager};
use kubelet::runtime::{api, cri::CriRuntime, Runtime};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const SOURCE_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1";
const USER: &str = "puller";
const PASSWORD: &str = "s3cret";

/// A docker-registry on a free loopback port with htpasswd auth, stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-registry-")
            .tempdir()
            .expect("tempdir");
        let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
        std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}/data\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: ferrokube-test\n\
             auth:\n  htpasswd:\n    realm: ferrokube\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let log_path = dir.path().join("registry.log");
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry");
        // The registry logs this once its listener is bound.
        let listening = ferrokube_testkit::copy_log_until(
            child.stderr.take().expect("stderr"),
            log_path.clone(),
            "listening on",
        );
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        if listening.await.is_err() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("docker-registry exited before listening:\n{log}");
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{uid}")),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn container(image: &str, policy: &str) -> Container {
    Container {
        name: "app".into(),
        image: Some(image.into()),
        image_pull_policy: Some(policy.into()),
        ..Default::default()
    }
}

fn secret(type_: &str, key: &str, json: serde_json::Value) -> Secret {
    Secret {
        type_: Some(type_.into()),
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(serde_json::to_vec(&json).expect("json")),
        )])),
        ..Default::default()
    }
}

fn docker_config_json(host: &str, user: &str, password: &str) -> Secret {
    secret(
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        serde_json::json!({ "auths": { host: { "username": user, "password": password } } }),
    )
}

fn reasons(events: &[kubelet::images::ImageEvent]) -> Vec<&str> {
    events.iter().map(|e| e.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_from_a_password_protected_registry_with_pull_secrets() {
    if !Path::new(REGISTRY_BIN).exists() {
        eprintln!("skipped: {REGISTRY_BIN} (Debian's docker-registry) is not installed");
        return;
    }
    let ctd = Containerd::start().await;
    let registry = Registry::start().await;
    let repo = format!("{}/library/busybox", registry.host());
    let credentials = format!("{USER}:{PASSWORD}");
    for tag in ["1.0", "2.0"] {
        let remote = format!("{repo}:{tag}");
        ctd.ctr(&[
            "images",
            "push",
            "--plain-http",
            "--user",
            &credentials,
            &remote,
            SOURCE_IMAGE,
        ]);
    }
    // Gone from the node, so that every pull below has to fetch from the registry.
    ctd.ctr(&["images", "rm", "--sync", SOURCE_IMAGE]);

    let rt = CriRuntime::connect(&ctd.endpoint()).expect("connect");
    let images = ImageManager::new();
    let v1 = format!("{repo}:1.0");

    // No secret: containerd is refused, and the next try is held back.
    let anonymous = images
        .ensure_image(&rt, &pod("u1"), &container(&v1, "IfNotPresent"), &[], None)
        .await;
    let err = anonymous.image.expect_err("anonymous pull");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.message.contains("401 Unauthorized"), "{}", err.message);
    assert_eq!(reasons(&anonymous.events), ["Pulling", "Failed"]);
    assert_eq!(
        anonymous.events[1].message,
        format!("Failed to pull image \"{v1}\": {}", err.message)
    );
    let held = images
        .ensure_image(&rt, &pod("u1"), &container(&v1, "IfNotPresent"), &[], None)
        .await;
    let err = held.image.expect_err("back-off");
    assert_eq!(err.reason(), "ImagePullBackOff");
    assert!(err
        .message
        .starts_with(&format!("Back-off pulling image \"{v1}\": ErrImagePull: ")));

    // The wrong password.
    let wrong = [docker_config_json(&registry.host(), USER, "nope")];
    let refused = images
        .ensure_image(
            &rt,
            &pod("u2"),
            &container(&v1, "IfNotPresent"),
            &wrong,
            None,
        )
        .await;
    assert_eq!(
        refused.image.expect_err("wrong password").reason(),
        "ErrImagePull"
    );

    // The right one, with the sandbox config passed along.
    let right = [docker_config_json(&registry.host(), USER, PASSWORD)];
    let sandbox = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "pod-u3".into(),
            uid: "u3".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let pulled = images
        .ensure_image(
            &rt,
            &pod("u3"),
            &container(&v1, "IfNotPresent"),
            &right,
            Some(&sandbox),
        )
        .await;
    let image_ref = pulled.image.expect("pull with the secret");
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    assert_eq!(reasons(&pulled.events), ["Pulling", "Pulled"]);
    let message = &pulled.events[1].message;
    assert!(
        message.starts_with(&format!("Successfully pulled image \"{v1}\" in ")),
        "{message}"
    );
    let size: u64 = message
        .rsplit("Image size: ")
        .next()
        .and_then(|s| s.strip_suffix(" bytes."))
        .and_then(|s| s.parse().ok())
        .expect("size in the message");
    assert!(size > 0);
    let status = rt
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: v1.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("image status")
        .image
        .expect("image present");
    assert_eq!(status.id, image_ref);
    assert!(status.repo_tags.contains(&normalize_image(&v1).unwrap()));

    // Present now: no pull, no secret needed.
    let present = images
        .ensure_image(&rt, &pod("u4"), &container(&v1, "IfNotPresent"), &[], None)
        .await;
    assert_eq!(present.image.as_deref(), Ok(image_ref.as_str()));
    assert_eq!(
        present.events[0].message,
        format!("Container image \"{v1}\" already present on machine")
    );

    // A legacy dockercfg secret, its credentials in the `auth` field.
    let v2 = format!("{repo}:2.0");
    let auth = base64::engine::general_purpose::STANDARD.encode(&credentials);
    let legacy = [secret(
        "kubernetes.io/dockercfg",
        ".dockercfg",
        serde_json::json!({ registry.host(): { "auth": auth, "email": "e2e@example.com" } }),
    )];
    let pulled = images
        .ensure_image(&rt, &pod("u5"), &container(&v2, "Always"), &legacy, None)
        .await;
    assert_eq!(
        pulled.image.as_deref(),
        Ok(image_ref.as_str()),
        "same content, same image"
    );

    // Never pulls what is not there.
    let v3 = format!("{repo}:3.0");
    let never = images
        .ensure_image(&rt, &pod("u6"), &container(&v3, "Never"), &right, None)
        .await;
    let err = never.image.expect_err("never");
    assert_eq!(err.reason(), "ErrImageNeverPull");
    assert_eq!(
        err.message,
        format!("Container image \"{v3}\" is not present with pull policy of Never")
    );
}
