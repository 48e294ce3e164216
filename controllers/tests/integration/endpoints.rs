//! The endpointslice controller against a real apiserver; the test plays the kubelet by
//! writing pod status.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::endpointslice;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(90);

async fn start() -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client.clone(), Settings::default());
    tokio::spawn(endpointslice::run(ctx));
    (server, client)
}

fn slices_api(client: &kube::Client) -> Api<EndpointSlice> {
    Api::namespaced(client.clone(), "default")
}

/// Watches the Service's slices until `done` holds for the whole set; returns that set.
async fn until_slices(
    client: &kube::Client,
    svc: &str,
    done: impl Fn(&[EndpointSlice]) -> bool,
) -> Vec<EndpointSlice> {
    let api = slices_api(client);
    let lp = format!("kubernetes.io/service-name={svc}");
    let check = async {
        let mut stream =
            std::pin::pin!(watcher(api.clone(), watcher::Config::default().labels(&lp)).boxed());
        loop {
            let list = api
                .list(&ListParams::default().labels(&lp))
                .await
                .expect("list");
            if done(&list.items) {
                return list.items;
            }
            // Wait for the next change before looking again.
            stream.try_next().await.expect("watch");
        }
    };
    tokio::time::timeout(GUARD, check)
        .await
        .expect("slices never reached the wanted state")
}

fn endpoints(slices: &[EndpointSlice]) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

async fn create_service(client: &kube::Client, body: serde_json::Value) -> Service {
    let svc: Service = serde_json::from_value(body).unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service")
}

/// A pod bound to a node (so deleting it leaves it terminating), with a named port.
async fn create_pod(client: &kube::Client, name: &str, app: &str, port: i32) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": port}]}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

/// What a kubelet would report: the pod runs at `ip`, ready or not.
async fn set_status(client: &kube::Client, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z"}]
            }})),
        )
        .await
        .expect("patch status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_follow_pod_readiness_and_termination() {
    let (server, client) = start().await;
    create_pod(&client, "web-1", "web", 8080).await;
    create_pod(&client, "web-2", "web", 9090).await;
    create_service(
        &client,
        json!({
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }),
    )
    .await;

    // No pod has an IP yet: a single placeholder slice, labelled and owned as upstream's.
    let slices = until_slices(&client, "web", |s| {
        s.len() == 1 && s[0].endpoints.is_empty()
    })
    .await;
    let s = &slices[0];
    assert!(s.name_any().starts_with("web-"));
    assert_eq!(
        s.labels()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s.labels()["tier"], "front");
    assert_eq!(s.owner_references()[0].kind, "Service");
    assert_eq!(s.address_type, "IPv4");

    set_status(&client, "web-1", "10.244.0.1", true).await;
    set_status(&client, "web-2", "10.244.0.2", false).await;
    let slices = until_slices(&client, "web", |s| {
        s.len() == 2
            && endpoints(s)
                == [
                    ("web-1".to_string(), true, true, false),
                    ("web-2".to_string(), false, false, false),
                ]
    })
    .await;
    // The named target port resolves per pod: two port sets, so two slices.
    let mut ports: Vec<i32> = slices
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port.unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, [8080, 9090]);
    let web1 = slices
        .iter()
        .find(|s| s.endpoints[0].addresses == ["10.244.0.1"])
        .unwrap();
    assert_eq!(web1.endpoints[0].node_name.as_deref(), Some("node-a"));
    assert!(web1
        .annotations()
        .contains_key("endpoints.kubernetes.io/last-change-trigger-time"));

    // Deleting a bound pod leaves it terminating: not ready, still serving, terminating.
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("web-1", &DeleteParams::default().grace_period(30))
        .await
        .expect("delete pod");
    until_slices(&client, "web", |s| {
        endpoints(s).first() == Some(&("web-1".to_string(), false, true, true))
    })
    .await;

    let out = server
        .kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ])
        .await
        .expect_ok("get endpointslices");
    assert!(out.contains("endpointslice.discovery.k8s.io/web-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_100_endpoints_a_slice_and_publish_not_ready() {
    let (_server, client) = start().await;
    create_service(
        &client,
        json!({
            "metadata": {"name": "many"},
            "spec": {"selector": {"app": "many"}, "publishNotReadyAddresses": true, "ports": [{"port": 80, "targetPort": 8080}]}
        }),
    )
    .await;
    for i in 0..150 {
        let name = format!("many-{i:03}");
        create_pod(&client, &name, "many", 8080).await;
        set_status(
            &client,
            &name,
            &format!("10.245.{}.{}", i / 200, i % 200 + 1),
            false,
        )
        .await;
    }
    let slices = until_slices(&client, "many", |s| endpoints(s).len() == 150).await;
    assert!(slices.iter().all(|s| s.endpoints.len() <= 100));
    // Slices are never rebalanced, so how many there are depends on arrival order.
    assert!(slices.len() >= 2);
    // publishNotReadyAddresses: not-ready pods are still ready endpoints.
    assert!(endpoints(&slices)
        .iter()
        .all(|(_, ready, serving, _)| *ready && !*serving));

    // A relabelled pod leaves; only the slice that held it changes.
    let before: Vec<(String, String)> = slices
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap()))
        .collect();
    let holder = slices
        .iter()
        .find(|s| {
            s.endpoints
                .iter()
                .any(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("many-000"))
        })
        .unwrap()
        .name_any();
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch(
            "many-000",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await
        .expect("relabel");
    let after = until_slices(&client, "many", |s| endpoints(s).len() == 149).await;
    for (name, rv) in before {
        let now = after
            .iter()
            .find(|s| s.name_any() == name)
            .expect("slice kept");
        assert_eq!(
            now.resource_version().unwrap() == rv,
            name != holder,
            "slice {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_labelled_and_selectorless_skipped() {
    let (_server, client) = start().await;
    create_pod(&client, "db-0", "db", 5432).await;
    set_status(&client, "db-0", "10.244.1.1", true).await;
    create_service(
        &client,
        json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
    )
    .await;
    let slices = until_slices(&client, "db", |s| endpoints(s).len() == 1).await;
    assert_eq!(
        slices[0]
            .labels()
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );

    // A Service without a selector gets nothing from this controller; a later Service with
    // one proves the controller has handled events after it.
    create_service(
        &client,
        json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create_service(
        &client,
        json!({"metadata": {"name": "after"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}),
    )
    .await;
    until_slices(&client, "after", |s| s.len() == 1).await;
    let manual = slices_api(&client)
        .list(&ListParams::default().labels("kubernetes.io/service-name=manual"))
        .await
        .unwrap();
    assert!(manual.items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_ready_and_not_ready_addresses() {
    use k8s_openapi::api::core::v1::Endpoints;
    use kube::runtime::wait::await_condition;
    let server = TestServer::start().await;
    let client = server.client().await;
    tokio::spawn(kube_controller_manager::endpoint::run(Context::new(
        client.clone(),
        Settings::default(),
    )));
    create_pod(&client, "api-1", "api", 8080).await;
    create_pod(&client, "api-2", "api", 8080).await;
    set_status(&client, "api-1", "10.244.2.1", true).await;
    set_status(&client, "api-2", "10.244.2.2", false).await;
    create_service(
        &client,
        json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ips = |e: &Endpoints, ready: bool| -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| {
                if ready {
                    s.addresses.clone()
                } else {
                    s.not_ready_addresses.clone()
                }
            })
            .flatten()
            .map(|a| a.ip)
            .collect()
    };
    let wait = |f: Box<dyn Fn(&Endpoints) -> bool + Send>| {
        let api = api.clone();
        async move {
            tokio::time::timeout(
                GUARD,
                await_condition(api, "api", move |e: Option<&Endpoints>| e.is_some_and(&f)),
            )
            .await
            .expect("endpoints never reached the wanted state")
            .expect("watch")
            .expect("endpoints exist")
        }
    };
    let ep = wait(Box::new(move |e| {
        ips(e, true) == ["10.244.2.1"] && ips(e, false) == ["10.244.2.2"]
    }))
    .await;
    let subset = &ep.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
    assert!(ep
        .annotations()
        .contains_key("endpoints.kubernetes.io/last-change-trigger-time"));

    // Terminating pods leave the Endpoints object (the Service does not publish them).
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("api-1", &DeleteParams::default().grace_period(30))
        .await
        .expect("delete pod");
    wait(Box::new(move |e| {
        ips(e, true).is_empty() && ips(e, false) == ["10.244.2.2"]
    }))
    .await;

    // Deleting the Service deletes its Endpoints.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete svc");
    tokio::time::timeout(
        GUARD,
        await_condition(api, "api", |e: Option<&Endpoints>| e.is_none()),
    )
    .await
    .expect("endpoints never went away")
    .expect("watch");
    let _ = server;
}
