//! The persistentvolume-binder controller against a real apiserver, for pre-provisioned
//! volumes: matching, pre-binding, pending claims and reclaiming.

use std::time::Duration;

use ferrokube_testkit::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::{await_condition, Condition};
use kube::runtime::watcher;
use kube::ResourceExt;
use kube_controller_manager::context::{Context, Settings};
use kube_controller_manager::pvbinder;
use serde_json::json;

/// A hang guard only; nothing asserts on how long things take.
const GUARD: Duration = Duration::from_secs(90);

async fn start() -> (TestServer, kube::Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ctx = Context::new(client.clone(), Settings::default());
    tokio::spawn(pvbinder::run(ctx));
    (server, client)
}

fn pv(name: &str, size: &str, class: &str, modes: &[&str], policy: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"size": size}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": format!("/tmp/{name}")},
        },
    }))
    .expect("pv")
}

fn pvc(name: &str, size: &str, class: &str, modes: &[&str]) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "resources": {"requests": {"storage": size}},
            "accessModes": modes,
            "storageClassName": class,
        },
    }))
    .expect("pvc")
}

fn pv_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().and_then(|s| s.phase.as_deref())
}

async fn wait_pv(
    client: &kube::Client,
    name: &str,
    cond: impl Condition<PersistentVolume>,
) -> Option<PersistentVolume> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    tokio::time::timeout(GUARD, await_condition(api, name, cond))
        .await
        .expect("volume never reached the wanted state")
        .expect("watch")
}

async fn wait_pvc(
    client: &kube::Client,
    name: &str,
    cond: impl Condition<PersistentVolumeClaim>,
) -> PersistentVolumeClaim {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    tokio::time::timeout(GUARD, await_condition(api, name, cond))
        .await
        .expect("claim never reached the wanted state")
        .expect("watch")
        .expect("claim exists")
}

fn claim_bound(pvc: Option<&PersistentVolumeClaim>) -> bool {
    pvc.and_then(|c| c.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        == Some("Bound")
}

fn phase_is(p: &'static str) -> impl Fn(Option<&PersistentVolume>) -> bool {
    move |v| v.and_then(pv_phase) == Some(p)
}

#[tokio::test]
async fn binds_smallest_fitting_volume() {
    let (_server, client) = start().await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    for v in [
        pv("small", "1Gi", "", &["ReadWriteOnce"], "Retain"),
        pv("big", "10Gi", "", &["ReadWriteOnce"], "Retain"),
        pv("mid", "5Gi", "", &["ReadWriteOnce"], "Retain"),
        pv("mid-rox", "4Gi", "", &["ReadOnlyMany"], "Retain"),
        pv("mid-fast", "3Gi", "fast", &["ReadWriteOnce"], "Retain"),
    ] {
        pvs.create(&pp, &v).await.expect("create pv");
    }
    for v in ["small", "big", "mid", "mid-rox", "mid-fast"] {
        wait_pv(&client, v, phase_is("Available")).await;
    }
    claims
        .create(&pp, &pvc("data", "2Gi", "", &["ReadWriteOnce"]))
        .await
        .expect("create pvc");
    let claim = wait_pvc(&client, "data", claim_bound).await;
    let spec = claim.spec.as_ref().expect("spec");
    assert_eq!(spec.volume_name.as_deref(), Some("mid"));
    let ann = claim.annotations();
    assert_eq!(
        ann.get(pvbinder::BIND_COMPLETED).map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        ann.get(pvbinder::BOUND_BY_CONTROLLER).map(String::as_str),
        Some("yes")
    );
    let status = claim.status.as_ref().expect("status");
    assert_eq!(
        status.capacity.as_ref().expect("capacity")["storage"].0,
        "5Gi"
    );
    assert_eq!(
        status.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );

    let vol = wait_pv(&client, "mid", phase_is("Bound"))
        .await
        .expect("pv");
    let r = vol
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .expect("claimRef");
    assert_eq!(r.name.as_deref(), Some("data"));
    assert_eq!(r.uid, claim.metadata.uid);
    assert_eq!(r.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(
        vol.annotations()
            .get(pvbinder::BOUND_BY_CONTROLLER)
            .map(String::as_str),
        Some("yes")
    );

    // A class and a selector narrow the choice.
    let mut fast = pvc("fast", "1Gi", "fast", &["ReadWriteOnce"]);
    fast.spec.as_mut().expect("spec").selector = None;
    claims.create(&pp, &fast).await.expect("create pvc");
    let claim = wait_pvc(&client, "fast", claim_bound).await;
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("mid-fast")
    );
    let mut picky = pvc("picky", "1Gi", "", &["ReadWriteOnce"]);
    picky.spec.as_mut().expect("spec").selector =
        serde_json::from_value(json!({"matchLabels": {"size": "10Gi"}})).expect("selector");
    claims.create(&pp, &picky).await.expect("create pvc");
    let claim = wait_pvc(&client, "picky", claim_bound).await;
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("big")
    );
}

#[tokio::test]
async fn prebinding_pending_and_reclaim() {
    let (_server, client) = start().await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // No volume at all: the claim stays Pending, with upstream's event.
    claims
        .create(&pp, &pvc("waiting", "1Gi", "", &["ReadWriteOnce"]))
        .await
        .expect("create pvc");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let saw_event = async {
        let mut stream =
            std::pin::pin!(watcher(events.clone(), watcher::Config::default()).boxed());
        loop {
            let list = events.list(&ListParams::default()).await.expect("events");
            if list.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some("waiting")
                    && e.reason.as_deref() == Some("FailedBinding")
                    && e.message.as_deref()
                        == Some("no persistent volumes available for this claim and no storage class is set")
            }) {
                return;
            }
            stream.try_next().await.expect("watch");
        }
    };
    tokio::time::timeout(GUARD, saw_event)
        .await
        .expect("no FailedBinding event");
    let claim = claims.get("waiting").await.expect("get");
    assert_eq!(
        claim.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    // A matching volume appearing later binds it.
    pvs.create(&pp, &pv("late", "1Gi", "", &["ReadWriteOnce"], "Retain"))
        .await
        .expect("create pv");
    wait_pvc(&client, "waiting", claim_bound).await;

    // A claim naming its volume gets that one, not a better fit; no bound-by-controller.
    pvs.create(&pp, &pv("named", "8Gi", "", &["ReadWriteOnce"], "Delete"))
        .await
        .expect("create pv");
    pvs.create(&pp, &pv("exact", "1Gi", "", &["ReadWriteOnce"], "Retain"))
        .await
        .expect("create pv");
    let mut wants = pvc("wants", "1Gi", "", &["ReadWriteOnce"]);
    wants.spec.as_mut().expect("spec").volume_name = Some("named".into());
    claims.create(&pp, &wants).await.expect("create pvc");
    let claim = wait_pvc(&client, "wants", claim_bound).await;
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("named")
    );
    assert!(!claim
        .annotations()
        .contains_key(pvbinder::BOUND_BY_CONTROLLER));

    // A volume reserving a claim by claimRef gets that claim.
    let mut reserved = pv("reserved", "2Gi", "", &["ReadWriteOnce"], "Retain");
    reserved.spec.as_mut().expect("spec").claim_ref =
        serde_json::from_value(json!({"namespace": "default", "name": "reserved-for"}))
            .expect("ref");
    pvs.create(&pp, &reserved).await.expect("create pv");
    wait_pv(&client, "reserved", phase_is("Available")).await;
    claims
        .create(&pp, &pvc("reserved-for", "1Gi", "", &["ReadWriteOnce"]))
        .await
        .expect("create pvc");
    let claim = wait_pvc(&client, "reserved-for", claim_bound).await;
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("reserved")
    );

    // Deleting bound claims: Retain releases the volume, Delete removes it.
    claims
        .delete("waiting", &DeleteParams::default())
        .await
        .expect("delete pvc");
    let vol = wait_pv(&client, "late", phase_is("Released"))
        .await
        .expect("pv");
    assert!(vol.spec.and_then(|s| s.claim_ref).is_some());
    claims
        .delete("wants", &DeleteParams::default())
        .await
        .expect("delete pvc");
    wait_pv(&client, "named", |v: Option<&PersistentVolume>| v.is_none()).await;
    // The unclaimed volume was left alone throughout.
    let exact = pvs.get("exact").await.expect("get");
    assert_eq!(pv_phase(&exact), Some("Available"));
    assert!(exact.spec.and_then(|s| s.claim_ref).is_none());
}
