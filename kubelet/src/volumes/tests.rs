//! `mount_all` / `unmount_all` end to end on a temp root dir, without an apiserver: the
//! volumes here need none, and tokens come from an in-test fetcher.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, HostPathVolumeSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeDevice, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

struct FakeTokens {
    calls: AtomicUsize,
    requests: std::sync::Mutex<Vec<(String, String, TokenRequest)>>,
}

#[async_trait]
impl TokenFetcher for FakeTokens {
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push((
            namespace.to_string(),
            service_account.to_string(),
            request.clone(),
        ));
        let exp = k8s_openapi::jiff::Timestamp::now()
            + std::time::Duration::from_secs(request.spec.expiration_seconds.unwrap_or(3600) as u64);
        Ok(TokenRequest {
            spec: request.spec.clone(),
            status: Some(TokenRequestStatus {
                token: format!("token-{n}"),
                expiration_timestamp: Time(exp),
            }),
            ..Default::default()
        })
    }
}

fn context(root: &Path) -> (VolumeContext, Arc<FakeTokens>) {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let mut ctx = VolumeContext::new(
        client,
        root.to_path_buf(),
        "node-1".to_string(),
        [("memory".to_string(), Quantity("1Gi".to_string()))].into(),
    );
    let fake = Arc::new(FakeTokens {
        calls: AtomicUsize::new(0),
        requests: Default::default(),
    });
    ctx.tokens = Arc::new(TokenManager::new(fake.clone()));
    (ctx, fake)
}

fn volume(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    }
}

fn downward_item(path: &str, field: &str) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.to_string(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field.to_string(),
            api_version: None,
        }),
        ..Default::default()
    }
}

fn test_pod(uid: &str, host: &Path) -> Pod {
    let mut cache = volume("cache");
    cache.empty_dir = Some(EmptyDirVolumeSource::default());
    let mut mem = volume("mem");
    mem.empty_dir = Some(EmptyDirVolumeSource {
        medium: Some("Memory".into()),
        size_limit: Some(Quantity("8Mi".into())),
    });
    let mut hp = volume("host");
    hp.host_path = Some(HostPathVolumeSource {
        path: host.to_string_lossy().into_owned(),
        type_: Some("DirectoryOrCreate".into()),
    });
    let mut info = volume("info");
    info.downward_api = Some(DownwardAPIVolumeSource {
        default_mode: Some(0o444),
        items: Some(vec![
            downward_item("labels", "metadata.labels"),
            downward_item("name", "metadata.name"),
        ]),
    });
    let mut proj = volume("kube-api-access");
    proj.projected = Some(ProjectedVolumeSource {
        default_mode: Some(0o644),
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some("vault".into()),
                    expiration_seconds: Some(7200),
                    path: "token".into(),
                }),
                ..Default::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![downward_item("namespace", "metadata.namespace")]),
                }),
                ..Default::default()
            },
        ]),
    });
    let mut unused = volume("unused");
    unused.empty_dir = Some(EmptyDirVolumeSource::default());
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some(uid.into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("builder".into()),
            security_context: Some(PodSecurityContext {
                fs_group: Some(3000),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "app".into(),
                volume_mounts: Some(vec![
                    mount("cache", "/cache"),
                    mount("mem", "/mem"),
                    mount("host", "/host"),
                    mount("info", "/etc/info"),
                    mount(
                        "kube-api-access",
                        "/var/run/secrets/kubernetes.io/serviceaccount",
                    ),
                    mount("cache", "/etc/info/nested"),
                ]),
                ..Default::default()
            }],
            volumes: Some(vec![cache, mem, hp, info, proj, unused]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[tokio::test]
async fn mount_all_lays_out_volumes_and_unmount_all_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("kubelet");
    let host = tmp.path().join("host-data");
    let (ctx, tokens) = context(&root);
    let pod = test_pod("uid-1", &host);

    let vols = mount_all(&ctx, &pod).await.unwrap();
    let pod_dir = pod_dir(&root, "uid-1");
    assert_eq!(pod_dir, root.join("pods/uid-1"));
    let names: Vec<&str> = vols.volumes.keys().map(|s| s.as_str()).collect();
    assert_eq!(names, ["cache", "host", "info", "kube-api-access", "mem"]);

    let cache = &vols.volumes["cache"];
    assert_eq!(
        cache.host_path,
        pod_dir.join("volumes/kubernetes.io~empty-dir/cache")
    );
    assert!(!cache.read_only);
    assert_eq!(mode(&cache.host_path), 0o2777);
    assert_eq!(fs::metadata(&cache.host_path).unwrap().gid(), 3000);

    let mem = &vols.volumes["mem"];
    assert!(mount::is_mount_point(&mem.host_path).unwrap());
    assert!(mount::is_tmpfs(&mem.host_path).unwrap());

    assert_eq!(vols.volumes["host"].host_path, host);
    assert!(host.is_dir());

    let info = &vols.volumes["info"];
    assert_eq!(
        info.host_path,
        pod_dir.join("volumes/kubernetes.io~downward-api/info")
    );
    assert!(info.read_only);
    assert_eq!(
        fs::read_to_string(info.host_path.join("labels")).unwrap(),
        "app=\"web\""
    );
    assert_eq!(
        fs::read_to_string(info.host_path.join("name")).unwrap(),
        "web"
    );
    // defaultMode 0444 is already group-readable, so fsGroup changes nothing but the group.
    assert_eq!(mode(&info.host_path.join("name")), 0o444);
    assert_eq!(
        fs::metadata(info.host_path.join("name")).unwrap().gid(),
        3000
    );
    assert!(info.host_path.join("nested").is_dir(), "nested mount point");

    let sa = &vols.volumes["kube-api-access"];
    assert_eq!(
        sa.host_path,
        pod_dir.join("volumes/kubernetes.io~projected/kube-api-access")
    );
    assert!(mount::is_tmpfs(&sa.host_path).unwrap());
    assert_eq!(
        fs::read_to_string(sa.host_path.join("token")).unwrap(),
        "token-0"
    );
    // 0600 because of fsGroup, widened to 0640 by the ownership pass.
    assert_eq!(mode(&sa.host_path.join("token")), 0o640);
    assert_eq!(
        fs::read_to_string(sa.host_path.join("namespace")).unwrap(),
        "prod"
    );
    {
        let reqs = tokens.requests.lock().unwrap();
        let (ns, name, req) = &reqs[0];
        assert_eq!((ns.as_str(), name.as_str()), ("prod", "builder"));
        assert_eq!(req.spec.audiences, vec!["vault".to_string()]);
        assert_eq!(req.spec.expiration_seconds, Some(7200));
        let bound = req.spec.bound_object_ref.as_ref().unwrap();
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.api_version.as_deref(), Some("v1"));
        assert_eq!(bound.name.as_deref(), Some("web"));
        assert_eq!(bound.uid.as_deref(), Some("uid-1"));
    }
    assert!(!pod_dir
        .join("volumes/kubernetes.io~empty-dir/unused")
        .exists());

    // Idempotent: a second sync rewrites nothing and requests no new token.
    fs::write(cache.host_path.join("state"), "kept").unwrap();
    let data_before = fs::read_link(sa.host_path.join("..data")).unwrap();
    let again = mount_all(&ctx, &pod).await.unwrap();
    assert_eq!(again, vols);
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        fs::read_link(sa.host_path.join("..data")).unwrap(),
        data_before
    );
    assert_eq!(
        fs::read_to_string(cache.host_path.join("state")).unwrap(),
        "kept"
    );
    assert_eq!(mount::mount_points_under(&pod_dir).unwrap().len(), 2);

    // A label change reaches the running pod on the next sync.
    let mut relabelled = pod.clone();
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "front".into());
    mount_all(&ctx, &relabelled).await.unwrap();
    assert_eq!(
        fs::read_to_string(info.host_path.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"front\""
    );

    fs::write(host.join("precious"), "keep me").unwrap();
    unmount_all(&ctx, "uid-1").await.unwrap();
    assert!(mount::mount_points_under(&pod_dir).unwrap().is_empty());
    assert!(!pod_dir.join("volumes").exists());
    assert!(!pod_dir.join("plugins").exists());
    assert_eq!(
        fs::read_to_string(host.join("precious")).unwrap(),
        "keep me"
    );
    // Nothing left to do the second time.
    unmount_all(&ctx, "uid-1").await.unwrap();
}

#[tokio::test]
async fn failures_are_reported_per_volume_in_upstream_words() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, _) = context(&tmp.path().join("root"));
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();

    let mut not_dir = volume("needs-dir");
    not_dir.host_path = Some(HostPathVolumeSource {
        path: file.to_string_lossy().into_owned(),
        type_: Some("Directory".into()),
    });
    let mut nfs = volume("share");
    nfs.nfs = Some(Default::default());
    let mut block = volume("raw");
    block.empty_dir = Some(EmptyDirVolumeSource::default());
    let mut ok = volume("fine");
    ok.empty_dir = Some(EmptyDirVolumeSource::default());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("uid-2".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                volume_mounts: Some(vec![
                    mount("needs-dir", "/a"),
                    mount("share", "/b"),
                    mount("fine", "/c"),
                ]),
                volume_devices: Some(vec![VolumeDevice {
                    name: "raw".into(),
                    device_path: "/dev/xvda".into(),
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![not_dir, nfs, block, ok]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = mount_all(&ctx, &pod).await.unwrap_err();
    let messages: Vec<String> = err.failures().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        vec![
            format!(
                "MountVolume.SetUp failed for volume \"needs-dir\" : hostPath type check failed: {} is not a directory",
                file.display()
            ),
            "failed to get Plugin from volumeSpec for volume \"share\" err=no volume plugin matched (nfs volumes are not supported by this kubelet)".to_string(),
            "failed to get Plugin from volumeSpec for volume \"raw\" err=no volume plugin matched (block (volumeDevices) volumes are not supported by this kubelet)".to_string(),
        ]
    );
    assert_eq!(err.failures()[0].volume(), Some("needs-dir"));
    // The healthy volume was set up regardless.
    assert!(pod_dir(&ctx.root_dir, "uid-2")
        .join("volumes/kubernetes.io~empty-dir/fine")
        .is_dir());
    unmount_all(&ctx, "uid-2").await.unwrap();
}

#[tokio::test]
async fn unsafe_pod_uids_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, _) = context(tmp.path());
    for uid in ["", "..", "a/b"] {
        assert!(matches!(
            unmount_all(&ctx, uid).await,
            Err(VolumeError::InvalidPod(_))
        ));
    }
    assert!(mount_all(&ctx, &Pod::default()).await.is_err());
}

#[tokio::test]
async fn unmount_all_never_follows_links_out_of_the_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, _) = context(&tmp.path().join("root"));
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("data"), "keep").unwrap();
    let plugin_dir = pod_dir(&ctx.root_dir, "uid-3").join("volumes/kubernetes.io~empty-dir");
    fs::create_dir_all(&plugin_dir).unwrap();
    std::os::unix::fs::symlink(&outside, plugin_dir.join("planted")).unwrap();
    unmount_all(&ctx, "uid-3").await.unwrap();
    assert_eq!(fs::read_to_string(outside.join("data")).unwrap(), "keep");
    assert!(!plugin_dir.exists());
}
