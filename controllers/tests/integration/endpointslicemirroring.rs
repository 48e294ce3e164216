//! The endpointslice-mirroring controller against a real apiserver: custom Endpoints of
//! selector-less Services become EndpointSlices, and follow the Endpoints and Service.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::endpointslicemirroring;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(90);
const MANAGED: &str =
    "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io";

async fn start() -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client.clone(), Settings::default());
    tokio::spawn(endpointslicemirroring::run(ctx));
    (server, client)
}

/// Watches all mirrored slices until `done` holds for those of `svc`; returns them.
async fn until_slices(
    client: &kube::Client,
    svc: &str,
    done: impl Fn(&[EndpointSlice]) -> bool,
) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let check = async {
        let mut stream =
            std::pin::pin!(
                watcher(api.clone(), watcher::Config::default().labels(MANAGED)).boxed()
            );
        loop {
            let lp = ListParams::default().labels(MANAGED);
            let items: Vec<EndpointSlice> = api
                .list(&lp)
                .await
                .expect("list")
                .items
                .into_iter()
                .filter(|s| {
                    s.labels()
                        .get("kubernetes.io/service-name")
                        .map(String::as_str)
                        == Some(svc)
                })
                .collect();
            if done(&items) {
                return items;
            }
            stream.try_next().await.expect("watch");
        }
    };
    tokio::time::timeout(GUARD, check)
        .await
        .expect("slices never reached the wanted state")
}

fn addresses(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

async fn make_service(client: &kube::Client, name: &str, selector: bool) {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    if selector {
        spec["selector"] = json!({"app": "x"});
    }
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("service");
    api.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
}

fn endpoints(name: &str, ready: &[&str], not_ready: &[&str]) -> Endpoints {
    let addrs = |ips: &[&str]| ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "subsets": [{
            "addresses": addrs(ready),
            "notReadyAddresses": addrs(not_ready),
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }],
    }))
    .expect("endpoints")
}

#[tokio::test]
async fn mirrors_custom_endpoints() {
    let (_server, client) = start().await;
    make_service(&client, "ext", false).await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eps.create(
        &PostParams::default(),
        &endpoints("ext", &["10.1.0.1", "10.1.0.2"], &["10.1.0.3"]),
    )
    .await
    .expect("create endpoints");

    let slices = until_slices(&client, "ext", |s| addresses(s).len() == 3).await;
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    assert!(slice.name_any().starts_with("ext-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.labels().get("team").map(String::as_str), Some("a"));
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Endpoints", "ext")
    );
    assert_eq!(owner.controller, Some(true));
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!(port.port, Some(8080));
    assert_eq!(port.name.as_deref(), Some("http"));
    assert_eq!(
        addresses(&slices),
        [
            ("10.1.0.1".to_string(), true),
            ("10.1.0.2".to_string(), true),
            ("10.1.0.3".to_string(), false)
        ]
    );

    // An update is mirrored into the same slice; an IPv6 address gets its own.
    let mut ep = eps.get("ext").await.expect("get");
    ep.subsets = endpoints("ext", &["10.1.0.9", "fd00::9"], &[]).subsets;
    eps.replace("ext", &PostParams::default(), &ep)
        .await
        .expect("update endpoints");
    let slices = until_slices(&client, "ext", |s| {
        addresses(s)
            == [
                ("10.1.0.9".to_string(), true),
                ("fd00::9".to_string(), true),
            ]
    })
    .await;
    assert_eq!(slices.len(), 2);
    assert!(slices.iter().any(|s| s.name_any() == slice.name_any()));

    // Deleting the Endpoints removes its slices.
    eps.delete("ext", &DeleteParams::default())
        .await
        .expect("delete endpoints");
    until_slices(&client, "ext", |s| s.is_empty()).await;

    // The apiserver's own `kubernetes` Endpoints is never mirrored: a later Service's
    // slice appearing proves the controller has looked at everything before it.
    make_service(&client, "later", false).await;
    eps.create(
        &PostParams::default(),
        &endpoints("later", &["10.2.0.1"], &[]),
    )
    .await
    .expect("create endpoints");
    until_slices(&client, "later", |s| s.len() == 1).await;
    assert!(until_slices(&client, "kubernetes", |_| true)
        .await
        .is_empty());
}

#[tokio::test]
async fn follows_the_service() {
    let (_server, client) = start().await;
    make_service(&client, "ext", false).await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eps.create(
        &PostParams::default(),
        &endpoints("ext", &["10.1.0.1"], &[]),
    )
    .await
    .expect("create endpoints");
    until_slices(&client, "ext", |s| s.len() == 1).await;

    // A Service that gains a selector is the endpointslice controller's business.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    svcs.patch(
        "ext",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "x"}}})),
    )
    .await
    .expect("add selector");
    until_slices(&client, "ext", |s| s.is_empty()).await;

    // Back without a selector, then deleted: mirrored, then gone with the Service.
    svcs.patch(
        "ext",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": null}})),
    )
    .await
    .expect("remove selector");
    until_slices(&client, "ext", |s| s.len() == 1).await;
    svcs.delete("ext", &DeleteParams::default())
        .await
        .expect("delete service");
    until_slices(&client, "ext", |s| s.is_empty()).await;
}
