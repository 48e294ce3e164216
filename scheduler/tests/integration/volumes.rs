//! VolumeBinding with the PV controller: a WaitForFirstConsumer claim is bound to the PV
//! that fits the node the pod goes to, and an Immediate claim that is unbound holds the pod.

use std::sync::Arc;

use crate::support::*;
use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

async fn create<K>(api: &Api<K>, v: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

#[tokio::test]
async fn wait_for_first_consumer_binds_the_pv_on_the_chosen_node() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    let ctx = Context::new(client.clone(), Settings::default());
    let binder = tokio::spawn(kube_controller_manager::pvbinder::run(Arc::clone(&ctx)));
    create_nodes(
        &client,
        vec![
            node("n1", "4", "8Gi", json!({})),
            node("n2", "4", "8Gi", json!({})),
        ],
    )
    .await;
    create::<StorageClass>(
        &Api::all(client.clone()),
        json!({"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer"}),
    )
    .await;
    // The only PV is reachable from n2 alone.
    create::<PersistentVolume>(
        &Api::all(client.clone()),
        json!({"metadata": {"name": "pv-n2"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}}),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    create(
        &claims,
        json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    create_pod(
        &client,
        "default",
        pod("db", "100m", json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})),
    )
    .await;
    assert_eq!(bound_node(&client, "default", "db").await, "n2");
    let claim = claims.get("data").await.expect("claim");
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some("pv-n2")
    );
    binder.abort();
}

#[tokio::test]
async fn unbound_immediate_claims_hold_the_pod() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let _sched = start(&s).await;
    create_nodes(&client, vec![node("n1", "4", "8Gi", json!({}))]).await;
    create::<StorageClass>(
        &Api::all(client.clone()),
        json!({"metadata": {"name": "now"}, "provisioner": "example.com/none", "volumeBindingMode": "Immediate"}),
    )
    .await;
    create::<PersistentVolumeClaim>(
        &Api::namespaced(client.clone(), "default"),
        json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": "now", "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    create_pod(
        &client,
        "default",
        pod("p", "100m", json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}})),
    )
    .await;
    let message = unschedulable_message(&client, "default", "p").await;
    assert!(
        message.starts_with(
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        ),
        "{message}"
    );
    create_pod(
        &client,
        "default",
        pod("q", "100m", json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "missing"}}]}})),
    )
    .await;
    let message = unschedulable_message(&client, "default", "q").await;
    assert!(
        message
            .starts_with("0/1 nodes are available: persistentvolumeclaim \"missing\" not found."),
        "{message}"
    );
}
