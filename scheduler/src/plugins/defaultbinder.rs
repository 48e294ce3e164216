//! DefaultBinder: writes the decision through the `pods/binding` subresource.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{PluginContext, Registered};
use crate::framework::{BindPlugin, CycleState, Plugin, Status};

pub const NAME: &str = "DefaultBinder";

pub struct DefaultBinder {
    client: kube::Client,
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
}

#[async_trait]
impl BindPlugin for DefaultBinder {
    async fn bind(&self, _state: &CycleState, pod: &Pod, node: &str) -> Status {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => Status::success(),
            Err(kube::Error::Api(e)) => Status::error(e.message),
            Err(e) => Status::error(e.to_string()),
        }
    }
}

pub fn register(_args: &serde_json::Value, ctx: &PluginContext) -> anyhow::Result<Registered> {
    Ok(Registered {
        bind: Some(Arc::new(DefaultBinder {
            client: ctx.client.clone(),
        })),
        ..Default::default()
    })
}
