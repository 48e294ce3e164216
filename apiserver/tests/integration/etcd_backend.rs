//! The apiserver on a real etcd: the same reads, writes, lists and watches as on the
//! embedded store, with keys laid out as upstream's.

use ferrokube_testkit::Etcd;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_list_watch_on_etcd() {
    let etcd = Etcd::start().await;
    let s = etcd.apiserver().await;
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch = Box::pin(cms.watch(&WatchParams::default(), &start).await.unwrap());
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("c{i}")}, "data": {"i": i.to_string()}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    cms.patch(
        "c0",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"i": "changed"}})),
    )
    .await
    .unwrap();
    cms.delete("c1", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 7 {
        match watch.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => seen.push(format!("MODIFIED {}", c.metadata.name.unwrap())),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.metadata.name.unwrap())),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "ADDED c0",
            "ADDED c1",
            "ADDED c2",
            "ADDED c3",
            "ADDED c4",
            "MODIFIED c0",
            "DELETED c1"
        ]
    );

    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.metadata.remaining_item_count, Some(2));

    // Keys as upstream lays them out, values without a resourceVersion.
    let mut raw = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let kv = raw
        .get("/registry/configmaps/default/c0", None)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(kv.kvs()[0].value()).unwrap();
    assert_eq!(stored["data"]["i"], "changed");
    assert!(stored["metadata"].get("resourceVersion").is_none());
    let svc = raw
        .get("/registry/services/specs/default/kubernetes", None)
        .await
        .unwrap();
    assert_eq!(svc.kvs().len(), 1);
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let k = svcs.get("kubernetes").await.unwrap();
    assert_eq!(
        k.metadata.resource_version.unwrap(),
        svc.kvs()[0].mod_revision().to_string()
    );
}
