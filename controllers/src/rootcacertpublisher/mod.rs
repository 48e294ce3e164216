//! The root-ca-certificate-publisher: a `kube-root-ca.crt` ConfigMap in every namespace
//! holding the cluster CA, so that pods can verify the apiserver. Edits to the ConfigMap
//! are put back; other keys in it are dropped, as upstream does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::serviceaccount::is_terminating;
use crate::shared::informer::{run as run_controller, watch_and_map, watch_main};
use crate::shared::retry::{is_status, Backoff, ReconcileError};

const NAME: &str = "root-ca-certificate-publisher";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other \
usage is guaranteed across distributions of Kubernetes clusters.";

struct State {
    ctx: Arc<Context>,
    root_ca: String,
    config_maps: Store<ConfigMap>,
    backoff: Backoff,
}

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        // Upstream falls back to the CA of its own client config; ours has none to offer
        // through kube::Client, so without --root-ca-file there is nothing to publish.
        let Some(root_ca) = ctx.settings.root_ca.clone() else {
            tracing::warn!("{NAME}: no --root-ca-file given; not publishing {CONFIG_MAP}");
            return Ok(());
        };
        let client = ctx.client.clone();
        let (config_maps, triggers) = watch_and_map(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}")),
            |cm: &ConfigMap| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        );
        config_maps.wait_until_ready().await?;
        let state = Arc::new(State {
            ctx,
            root_ca,
            config_maps,
            backoff: Backoff::default(),
        });
        let (namespaces, main) =
            watch_main(Api::<Namespace>::all(client), watcher::Config::default());
        run_controller(
            namespaces,
            main,
            vec![triggers],
            reconcile,
            error_policy,
            state,
        )
        .await;
        Ok(())
    })
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, ReconcileError> {
    state.ctx.metrics.inc("workqueue_adds_total", NAME);
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(state.ctx.client.clone(), &name);
    let data = BTreeMap::from([("ca.crt".to_string(), state.root_ca.clone())]);
    let existing = state
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP).within(&name));
    match existing {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.to_string()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                // A lagging cache (the watch event will follow) or a namespace on its way out.
                Err(e) if is_status(&e, 409) || is_status(&e, 404) || is_terminating(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(cm) => {
            let described = cm
                .annotations()
                .get(DESCRIPTION_ANNOTATION)
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() != Some(&data) || cm.binary_data.is_some() || !described {
                let mut cm = (*cm).clone();
                cm.data = Some(data);
                cm.binary_data = None;
                cm.annotations_mut()
                    .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
                match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await {
                    Ok(_) => {}
                    // Someone else wrote meanwhile; their event re-triggers this namespace.
                    Err(e) if is_status(&e, 409) || is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    state.backoff.succeeded(&name);
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, err: &ReconcileError, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("workqueue_retries_total", NAME);
    tracing::warn!("{NAME}: syncing namespace {}: {err}", ns.name_any());
    Action::requeue(state.backoff.failed(&ns.name_any()))
}
