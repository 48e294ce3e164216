//! API semantics through kube-rs: the same operations kubectl does, plus the corners of
//! optimistic concurrency, pagination, watch and compaction.

use ferrokube_testkit::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy, WatchEvent, WatchParams,
};
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }))
    .unwrap()
}

fn status_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_optimistic_concurrency() {
    let s = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({"x": "1"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let rv = created.metadata.resource_version.clone().unwrap();

    assert_eq!(
        status_code(
            api.create(&PostParams::default(), &cm("a", json!({})))
                .await
                .unwrap_err()
        ),
        409
    );

    let mut update = created.clone();
    update.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &update)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // The same stale resourceVersion again is a conflict.
    assert_eq!(
        status_code(
            api.replace("a", &PostParams::default(), &update)
                .await
                .unwrap_err()
        ),
        409
    );

    // An update that changes nothing writes nothing.
    let same = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    // generateName and dry run.
    let mut gen = cm("", json!({}));
    gen.metadata.name = None;
    gen.metadata.generate_name = Some("gen-".into());
    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &gen,
        )
        .await
        .unwrap();
    let dry_name = dry.metadata.name.unwrap();
    assert!(
        dry_name.starts_with("gen-") && dry_name.len() == 9,
        "{dry_name}"
    );
    assert_eq!(status_code(api.get(&dry_name).await.unwrap_err()), 404);
    let real = api.create(&PostParams::default(), &gen).await.unwrap();
    assert!(real.metadata.name.unwrap().starts_with("gen-"));

    // Delete preconditions.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("wrong".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(status_code(api.delete("a", &dp).await.unwrap_err()), 409);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(api.get("a").await.unwrap_err()), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_scale_and_status() {
    let s = TestServer::start().await;
    let api: Api<Deployment> = Api::namespaced(s.client().await, "default");
    api.create(&PostParams::default(), &deployment("d", 1))
        .await
        .unwrap();

    let p = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "b");
    assert_eq!(
        p.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );

    let p = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "x"}]}}}})),
        )
        .await
        .unwrap();
    let names: Vec<String> = p
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(p.metadata.generation, Some(2));

    // Scale subresource.
    let scale = api.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
    api.patch_scale(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("d").await.unwrap().spec.unwrap().replicas, Some(5));

    // Status writes change status only; main writes never change status.
    let st = api
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().replicas, Some(3));
    assert_eq!(st.spec.unwrap().replicas, Some(5));
    let main = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(main.status.unwrap().replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_pagination() {
    let s = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(
                &format!("c{i:02}"),
                json!({"tier": tier, "n": i.to_string()}),
            ),
        )
        .await
        .unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let notin = api
        .list(&ListParams::default().labels("tier notin (even),n"))
        .await
        .unwrap();
    assert_eq!(notin.items.len(), 12);
    let one = api
        .list(&ListParams::default().fields("metadata.name=c03"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let err = api
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .unwrap_err();
    assert_eq!(status_code(err), 400);

    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let first = api.list(&params).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let mut page = first;
    loop {
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.clone() {
            Some(c) if !c.is_empty() => {
                params = params.continue_token(&c);
                page = api.list(&params).await.unwrap();
            }
            _ => break,
        }
    }
    assert_eq!(names.len(), 25, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_in_order_and_from_a_revision() {
    // A small history, so that the start of the server falls out of it.
    let s = TestServer::start_sized(4).await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w", json!({})))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match stream.try_next().await.unwrap().expect("stream ended") {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(c) => {
                assert_eq!(c.data.unwrap()["k"], "2");
                kinds.push("MODIFIED")
            }
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);

    // Replaying from the start revision gives the same three events.
    let mut replay = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    let mut n = 0;
    while n < 3 {
        if let WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_) =
            replay.try_next().await.unwrap().unwrap()
        {
            n += 1;
        }
    }

    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("fill{i}"), json!({})))
            .await
            .unwrap();
    }
    // A revision older than anything kept is an error event with 410 Expired.
    let mut old = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match old.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_token_after_compaction_is_gone_with_an_inconsistent_token() {
    let s = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("p{i}"), json!({})))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    api.create(&PostParams::default(), &cm("late", json!({})))
        .await
        .unwrap();
    let current = s.app.registry.store.current_revision().await.unwrap();
    s.app.registry.store.compact(current).await.unwrap();
    let err = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected a Status")
    };
    assert_eq!(status.code, 410);
    assert_eq!(status.reason, "Expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_finalizers() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap(),
    )
    .await
    .unwrap();
    let ns = nss.get("t").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(
        ns.spec.unwrap().finalizers.unwrap(),
        vec!["kubernetes".to_string()]
    );
    assert_eq!(
        ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "t"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "t");
    let mut with_fin = cm("f", json!({}));
    with_fin.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &with_fin).await.unwrap();
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let held = cms.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(status_code(cms.get("f").await.unwrap_err()), 404);

    // Foreground deletion records its finalizer.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "t");
    deps.create(&PostParams::default(), &deployment("fg", 1))
        .await
        .unwrap();
    deps.delete(
        "fg",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fg = deps.get("fg").await.unwrap();
    assert_eq!(
        fg.metadata.finalizers.unwrap(),
        vec!["foregroundDeletion".to_string()]
    );

    // A terminating namespace takes nothing new; a missing one neither.
    nss.delete("t", &DeleteParams::default()).await.unwrap();
    let t = nss.get("t").await.unwrap();
    assert_eq!(t.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(
        status_code(
            cms.create(&PostParams::default(), &cm("late", json!({})))
                .await
                .unwrap_err()
        ),
        403
    );
    let missing: Api<ConfigMap> = Api::namespaced(client, "nope");
    assert_eq!(
        status_code(
            missing
                .create(&PostParams::default(), &cm("x", json!({})))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_delete_gracefully_once_bound() {
    let s = TestServer::start().await;
    let pods: Api<Pod> = Api::namespaced(s.client().await, "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // Unscheduled pods go at once.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(pods.get("p").await.unwrap_err()), 404);

    pods.create(&PostParams::default(), &pod).await.unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let req = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).unwrap())
        .unwrap();
    s.client().await.request_text(req).await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(status_code(pods.get("p").await.unwrap_err()), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_kube_rs() {
    let s = TestServer::start().await;
    let discovery = kube::discovery::Discovery::new(s.client().await)
        .run()
        .await
        .unwrap();
    let apps = discovery.get("apps").expect("apps group");
    let (ar, caps) = apps
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.kind == "Deployment")
        .expect("deployments");
    assert_eq!(ar.plural, "deployments");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "deployments/scale" || s.plural == "scale"),
        "{:?}",
        caps.subresources
    );
    let _ = discovery.groups().count();
    let list = kube::Api::<kube::api::DynamicObject>::all_with(s.client().await, &ar)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(list.items.is_empty());
    let stream = kube::Api::<ConfigMap>::all(s.client().await)
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let _ = stream.take(1).collect::<Vec<_>>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_a_ttl_after_their_last_write() {
    let s = TestServer::start().await;
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(s.client().await, "default");
    for name in ["quiet", "busy"] {
        let ev = serde_json::from_value(json!({
            "metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "R", "message": "m",
        }))
        .unwrap();
        events.create(&PostParams::default(), &ev).await.unwrap();
    }
    let ttl = std::time::Duration::from_secs(3600);
    let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
    let t0 = std::time::Instant::now();
    let mut sweeper = kube_apiserver::eventttl::Sweeper::default();
    s.app.registry.cache.sync().await.unwrap();
    assert_eq!(sweeper.sweep(&s.app, ttl, t0).await, 0);
    events
        .patch(
            "busy",
            &PatchParams::default(),
            &Patch::Merge(json!({"count": 2})),
        )
        .await
        .unwrap();
    s.app.registry.cache.sync().await.unwrap();
    assert_eq!(sweeper.sweep(&s.app, ttl, t0 + minutes(30)).await, 0);
    // 70 minutes in: "quiet" is past its hour, "busy" was written 40 minutes ago.
    assert_eq!(sweeper.sweep(&s.app, ttl, t0 + minutes(70)).await, 1);
    assert_eq!(status_code(events.get("quiet").await.unwrap_err()), 404);
    events.get("busy").await.unwrap();
}
