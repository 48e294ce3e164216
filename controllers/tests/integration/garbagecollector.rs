//! The garbage collector against a real apiserver: background, foreground and orphan
//! deletion, dangling owner references and an ownership cycle.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::Client;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

async fn start() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    tokio::spawn(kube_controller_manager::garbagecollector::run(
        Context::new(client.clone(), Settings::default()),
    ));
    (server, client)
}

fn owned_by(api_version: &str, kind: &str, owner: &ObjectMeta, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap(),
        uid: owner.uid.clone().unwrap(),
        controller: None,
        block_owner_deletion: Some(block),
    }
}

fn cm(name: &str, owners: Vec<OwnerReference>, finalizers: Vec<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn gone<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let name = obj.meta().name.clone().unwrap();
    let uid = obj.meta().uid.clone().unwrap();
    tokio::time::timeout(
        HANG_GUARD,
        await_condition(api.clone(), &name, conditions::is_deleted(&uid)),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} was never deleted"))
    .unwrap();
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_removes_dependents() {
    let (_server, client) = start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let owner = deployments.create(&pp, &deployment("web")).await.unwrap();
    let r = owned_by("apps/v1", "Deployment", &owner.metadata, false);
    let dep_cm = cms
        .create(&pp, &cm("web-config", vec![r.clone()], vec![]))
        .await
        .unwrap();
    let mut s = Secret::default();
    s.metadata.name = Some("web-secret".into());
    s.metadata.owner_references = Some(vec![r]);
    let dep_secret = secrets.create(&pp, &s).await.unwrap();
    let bystander = cms
        .create(&pp, &cm("unrelated", vec![], vec![]))
        .await
        .unwrap();

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    gone(&cms, &dep_cm).await;
    gone(&secrets, &dep_secret).await;
    assert_eq!(
        cms.get("unrelated").await.unwrap().metadata.uid,
        bystander.metadata.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let owner = cms.create(&pp, &cm("owner", vec![], vec![])).await.unwrap();
    let blocking = cms
        .create(
            &pp,
            &cm(
                "blocking",
                vec![owned_by("v1", "ConfigMap", &owner.metadata, true)],
                vec!["example.com/hold"],
            ),
        )
        .await
        .unwrap();
    let loose = cms
        .create(
            &pp,
            &cm(
                "loose",
                vec![owned_by("v1", "ConfigMap", &owner.metadata, false)],
                vec![],
            ),
        )
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();

    // The dependent is deleted first; its own finalizer keeps it, and so the owner.
    tokio::time::timeout(
        HANG_GUARD,
        await_condition(cms.clone(), "blocking", |o: Option<&ConfigMap>| {
            o.is_some_and(|o| o.metadata.deletion_timestamp.is_some())
        }),
    )
    .await
    .expect("blocking dependent never marked for deletion")
    .unwrap();
    gone(&cms, &loose).await;
    let held = cms.get("owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(held
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"foregroundDeletion".to_string()));

    cms.patch(
        "blocking",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    gone(&cms, &blocking).await;
    gone(&cms, &owner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let owner = cms.create(&pp, &cm("owner", vec![], vec![])).await.unwrap();
    let other = cms
        .create(&pp, &cm("other-owner", vec![], vec![]))
        .await
        .unwrap();
    let to_owner = owned_by("v1", "ConfigMap", &owner.metadata, true);
    let to_other = owned_by("v1", "ConfigMap", &other.metadata, false);
    let child = cms
        .create(
            &pp,
            &cm("child", vec![to_owner.clone(), to_other.clone()], vec![]),
        )
        .await
        .unwrap();
    let mut s = Secret::default();
    s.metadata.name = Some("child-secret".into());
    s.metadata.owner_references = Some(vec![to_owner]);
    let secret = secrets.create(&pp, &s).await.unwrap();

    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    gone(&cms, &owner).await;

    let child_now = cms.get("child").await.unwrap();
    assert_eq!(child_now.metadata.uid, child.metadata.uid);
    assert_eq!(child_now.metadata.owner_references, Some(vec![to_other]));
    let secret_now = secrets.get("child-secret").await.unwrap();
    assert_eq!(secret_now.metadata.uid, secret.metadata.uid);
    assert!(secret_now
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_owner_references_are_collected() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    // An owner that never existed, and one whose name is taken by a different object.
    let ghost = ObjectMeta {
        name: Some("ghost".into()),
        uid: Some("00000000-0000-0000-0000-000000000001".into()),
        ..Default::default()
    };
    let namesake = cms
        .create(&pp, &cm("namesake", vec![], vec![]))
        .await
        .unwrap();
    let impostor = ObjectMeta {
        name: Some("namesake".into()),
        uid: Some("00000000-0000-0000-0000-000000000002".into()),
        ..Default::default()
    };
    let orphan1 = cms
        .create(
            &pp,
            &cm(
                "of-ghost",
                vec![owned_by("v1", "ConfigMap", &ghost, false)],
                vec![],
            ),
        )
        .await
        .unwrap();
    let orphan2 = cms
        .create(
            &pp,
            &cm(
                "of-impostor",
                vec![owned_by("v1", "ConfigMap", &impostor, false)],
                vec![],
            ),
        )
        .await
        .unwrap();
    // The real namesake's dependent, created before the dangling ones are collected and
    // checked after: a living owner keeps it.
    let kept = cms
        .create(
            &pp,
            &cm(
                "of-namesake",
                vec![owned_by("v1", "ConfigMap", &namesake.metadata, false)],
                vec![],
            ),
        )
        .await
        .unwrap();
    gone(&cms, &orphan1).await;
    gone(&cms, &orphan2).await;
    assert_eq!(
        cms.get("of-namesake").await.unwrap().metadata.uid,
        kept.metadata.uid
    );
    assert_eq!(
        cms.get("namesake").await.unwrap().metadata.uid,
        namesake.metadata.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownership_cycle_is_deleted() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let a = cms.create(&pp, &cm("a", vec![], vec![])).await.unwrap();
    let b = cms
        .create(
            &pp,
            &cm(
                "b",
                vec![owned_by("v1", "ConfigMap", &a.metadata, true)],
                vec![],
            ),
        )
        .await
        .unwrap();
    let a = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [
                owned_by("v1", "ConfigMap", &b.metadata, true)
            ]}})),
        )
        .await
        .unwrap();

    cms.delete("a", &DeleteParams::background()).await.unwrap();
    gone(&cms, &a).await;
    gone(&cms, &b).await;

    // The same cycle deleted in the foreground must not deadlock either.
    let c = cms.create(&pp, &cm("c", vec![], vec![])).await.unwrap();
    let d = cms
        .create(
            &pp,
            &cm(
                "d",
                vec![owned_by("v1", "ConfigMap", &c.metadata, true)],
                vec![],
            ),
        )
        .await
        .unwrap();
    let c = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [
                owned_by("v1", "ConfigMap", &d.metadata, true)
            ]}})),
        )
        .await
        .unwrap();
    cms.delete("c", &DeleteParams::foreground()).await.unwrap();
    gone(&cms, &c).await;
    gone(&cms, &d).await;
}
