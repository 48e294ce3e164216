//! Pod volumes fed by a real apiserver: configMap, secret and projected volumes follow their
//! objects across syncs, missing objects fail in upstream's words, and claims resolve through
//! their PersistentVolume.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, KeyToPath, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Pod,
    PodSpec, ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource, Volume,
    VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kubelet::volumes::{self, VolumeContext};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some("default".to_string()),
        ..Default::default()
    }
}

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    let mounts = volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: format!("/mnt/{}", v.name),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            uid: Some(uid.to_string()),
            ..meta("app")
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                volume_mounts: Some(mounts),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn mode(dir: &Path, file: &str) -> u32 {
    std::fs::metadata(dir.join(file)).expect("stat").mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_and_secrets_follow_the_api() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().expect("tempdir");
    let ctx = VolumeContext::new(
        client.clone(),
        root.path().to_path_buf(),
        "node-1".into(),
        BTreeMap::new(),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    cms.create(
        &pp,
        &ConfigMap {
            metadata: meta("settings"),
            data: Some(
                [
                    ("log.level".to_string(), "debug".to_string()),
                    ("stale".to_string(), "old".to_string()),
                ]
                .into(),
            ),
            binary_data: Some([("blob".to_string(), ByteString(vec![0, 159, 146]))].into()),
            ..Default::default()
        },
    )
    .await
    .expect("create configmap");
    secrets
        .create(
            &pp,
            &Secret {
                metadata: meta("creds"),
                data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create secret");

    let cfg = Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "settings".into(),
            default_mode: Some(0o640),
            ..Default::default()
        }),
        ..Default::default()
    };
    let picked = Volume {
        name: "picked".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "settings".into(),
            items: Some(vec![KeyToPath {
                key: "log.level".into(),
                path: "conf/level".into(),
                mode: Some(0o400),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secret = Volume {
        name: "secret".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    };
    let projected = Volume {
        name: "all".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "settings".into(),
                        items: Some(vec![KeyToPath {
                            key: "log.level".into(),
                            path: "level".into(),
                            mode: None,
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "creds".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    };
    let p = pod("uid-cm", vec![cfg, picked, secret, projected]);

    let mounted = volumes::mount_all(&ctx, &p).await.expect("mount_all");
    let cfg_dir = mounted.volumes["cfg"].host_path.clone();
    assert_eq!(
        cfg_dir,
        root.path()
            .join("pods/uid-cm/volumes/kubernetes.io~configmap/cfg")
    );
    assert!(mounted.volumes["cfg"].read_only);
    assert_eq!(read(&cfg_dir, "log.level"), "debug");
    assert_eq!(
        std::fs::read(cfg_dir.join("blob")).expect("blob"),
        vec![0, 159, 146]
    );
    assert_eq!(mode(&cfg_dir, "log.level"), 0o640);
    let picked_dir = &mounted.volumes["picked"].host_path;
    assert_eq!(read(picked_dir, "conf/level"), "debug");
    assert_eq!(mode(picked_dir, "conf/level"), 0o400);
    assert!(!picked_dir.join("stale").exists());
    let secret_dir = &mounted.volumes["secret"].host_path;
    assert_eq!(read(secret_dir, "password"), "hunter2");
    assert_eq!(mode(secret_dir, "password"), 0o400);
    let all_dir = &mounted.volumes["all"].host_path;
    assert_eq!(read(all_dir, "level"), "debug");
    assert_eq!(read(all_dir, "password"), "hunter2");

    // An update reaches the volume on the next sync, through a new ..data.
    let before = std::fs::read_link(cfg_dir.join("..data")).expect("..data");
    let mut cm = cms.get("settings").await.expect("get");
    let data = cm.data.as_mut().expect("data");
    data.insert("log.level".into(), "info".into());
    data.remove("stale");
    cms.replace("settings", &pp, &cm).await.expect("replace");
    volumes::mount_all(&ctx, &p).await.expect("resync");
    assert_eq!(read(&cfg_dir, "log.level"), "info");
    assert!(std::fs::symlink_metadata(cfg_dir.join("stale")).is_err());
    assert_ne!(
        std::fs::read_link(cfg_dir.join("..data")).expect("..data"),
        before
    );
    assert_eq!(read(picked_dir, "conf/level"), "info");
    assert_eq!(read(all_dir, "level"), "info");

    volumes::unmount_all(&ctx, "uid-cm")
        .await
        .expect("unmount_all");
    assert!(!root.path().join("pods/uid-cm/volumes").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_fail_unless_optional() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().expect("tempdir");
    let ctx = VolumeContext::new(
        client,
        root.path().to_path_buf(),
        "n".into(),
        BTreeMap::new(),
    );

    let required = Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "missing".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secret = Volume {
        name: "sec".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("missing".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = volumes::mount_all(&ctx, &pod("uid-missing", vec![required, secret]))
        .await
        .expect_err("missing objects");
    let messages: Vec<String> = err.failures().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        vec![
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found",
            "MountVolume.SetUp failed for volume \"sec\" : secret \"missing\" not found",
        ]
    );

    let optional = Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "missing".into(),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mounted = volumes::mount_all(&ctx, &pod("uid-optional", vec![optional]))
        .await
        .expect("optional configmap");
    let dir = &mounted.volumes["cfg"].host_path;
    assert!(dir.join("..data").exists());
    volumes::unmount_all(&ctx, "uid-missing")
        .await
        .expect("unmount");
    volumes::unmount_all(&ctx, "uid-optional")
        .await
        .expect("unmount");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_resolve_through_their_persistent_volume() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().expect("tempdir");
    let ctx = VolumeContext::new(
        client.clone(),
        root.path().to_path_buf(),
        "n".into(),
        BTreeMap::new(),
    );
    let data_dir = root.path().join("local-disk");
    std::fs::create_dir(&data_dir).expect("mkdir");

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pp = PostParams::default();
    let storage: BTreeMap<String, Quantity> =
        [("storage".to_string(), Quantity("1Gi".into()))].into();
    let claim = claims
        .create(
            &pp,
            &PersistentVolumeClaim {
                metadata: meta("data"),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(storage.clone()),
                        ..Default::default()
                    }),
                    storage_class_name: Some(String::new()),
                    volume_name: Some("pv-data".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create claim");

    let volume = Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: Some(true),
        }),
        ..Default::default()
    };
    let p = pod("uid-pvc", vec![volume]);
    let err = volumes::mount_all(&ctx, &p).await.expect_err("unbound");
    assert_eq!(
        err.to_string(),
        "error processing PVC default/data: PVC is not bound"
    );

    pvs.create(
        &pp,
        &PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-data".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some(storage),
                host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                    path: data_dir.to_string_lossy().into_owned(),
                    type_: Some("Directory".into()),
                }),
                claim_ref: Some(ObjectReference {
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: Some("default".into()),
                    name: Some("data".into()),
                    uid: claim.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("create pv");
    let mut bound = claims.get_status("data").await.expect("claim");
    bound.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        ..Default::default()
    });
    claims
        .replace_status("data", &pp, &bound)
        .await
        .expect("bind claim");

    let mounted = volumes::mount_all(&ctx, &p).await.expect("bound claim");
    assert_eq!(mounted.volumes["data"].host_path, data_dir);
    assert!(mounted.volumes["data"].read_only);
    volumes::unmount_all(&ctx, "uid-pvc")
        .await
        .expect("unmount");
    assert!(data_dir.is_dir(), "the PV's data is never removed");
}
