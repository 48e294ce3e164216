//! ResourceQuota status against a real apiserver: hard mirrors the spec and used follows
//! pods and configmaps as they are created, finish and are deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrokube_common::quantity::Quantity;
use ferrokube_testkit::TestServer;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube_controller_manager::context::{Context, Settings};
use serde_json::json;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "resources": {
                "requests": {"cpu": cpu, "memory": mem},
                "limits": {"cpu": cpu, "memory": mem},
            },
        }]},
    }))
    .unwrap()
}

/// Waits until status.used is `want` by value (1000m and 1 are equal).
async fn wait_used(api: &Api<ResourceQuota>, want: &[(&str, &str)]) {
    let want: BTreeMap<String, Quantity> = want
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
        .collect();
    let w = want.clone();
    let cond = move |o: Option<&ResourceQuota>| {
        let Some(used) = o.and_then(|q| q.status.as_ref()?.used.as_ref()) else {
            return false;
        };
        let got: BTreeMap<String, Quantity> = used
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0).ok()?)))
            .collect();
        got == w
    };
    if tokio::time::timeout(HANG_GUARD, await_condition(api.clone(), "q", cond))
        .await
        .is_err()
    {
        let q = api.get("q").await.unwrap();
        panic!("used never became {want:?}: {:?}", q.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_follows_pods_and_configmaps() {
    let s = TestServer::start().await;
    let client = s.client().await;
    tokio::spawn(kube_controller_manager::resourcequota::run(Context::new(
        client.clone(),
        Settings::default(),
    )));
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let cm = |n: &str| -> ConfigMap {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}}),
        )
        .unwrap()
    };
    cms.create(&pp, &cm("before")).await.unwrap();
    let hard = json!({
        "pods": "10", "configmaps": "10", "count/configmaps": "10", "resourcequotas": "1",
        "requests.cpu": "4", "requests.memory": "4Gi", "limits.cpu": "4",
        "limits.memory": "4Gi", "cpu": "4", "memory": "4Gi",
    });
    let quota: ResourceQuota = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q"},
        "spec": {"hard": hard},
    }))
    .unwrap();
    quotas.create(&pp, &quota).await.unwrap();
    // Configmaps the apiserver may publish itself (kube-root-ca.crt) are not running here.
    wait_used(
        &quotas,
        &[
            ("pods", "0"),
            ("configmaps", "1"),
            ("count/configmaps", "1"),
            ("resourcequotas", "1"),
            ("requests.cpu", "0"),
            ("requests.memory", "0"),
            ("limits.cpu", "0"),
            ("limits.memory", "0"),
            ("cpu", "0"),
            ("memory", "0"),
        ],
    )
    .await;
    let q = quotas.get("q").await.unwrap();
    let status_hard = q.status.unwrap().hard.unwrap();
    assert_eq!(status_hard.len(), 10);
    assert_eq!(status_hard["requests.memory"].0, "4Gi");

    pods.create(&pp, &pod("a", "500m", "1Gi")).await.unwrap();
    pods.create(&pp, &pod("b", "250m", "512Mi")).await.unwrap();
    cms.create(&pp, &cm("after")).await.unwrap();
    wait_used(
        &quotas,
        &[
            ("pods", "2"),
            ("configmaps", "2"),
            ("count/configmaps", "2"),
            ("resourcequotas", "1"),
            ("requests.cpu", "750m"),
            ("requests.memory", "1536Mi"),
            ("limits.cpu", "750m"),
            ("limits.memory", "1536Mi"),
            ("cpu", "750m"),
            ("memory", "1536Mi"),
        ],
    )
    .await;

    // A finished pod no longer counts against `pods` nor holds compute resources.
    pods.patch_status(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    wait_used(
        &quotas,
        &[
            ("pods", "1"),
            ("configmaps", "1"),
            ("count/configmaps", "1"),
            ("resourcequotas", "1"),
            ("requests.cpu", "500m"),
            ("requests.memory", "1Gi"),
            ("limits.cpu", "500m"),
            ("limits.memory", "1Gi"),
            ("cpu", "500m"),
            ("memory", "1Gi"),
        ],
    )
    .await;

    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.delete("b", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_used(
        &quotas,
        &[
            ("pods", "0"),
            ("configmaps", "1"),
            ("count/configmaps", "1"),
            ("resourcequotas", "1"),
            ("requests.cpu", "0"),
            ("requests.memory", "0"),
            ("limits.cpu", "0"),
            ("limits.memory", "0"),
            ("cpu", "0"),
            ("memory", "0"),
        ],
    )
    .await;
}
