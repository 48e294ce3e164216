//! Writes events.k8s.io/v1 Events about pods, as upstream's scheduler does. Each event is a
//! plain create: kube-runtime's recorder keeps a cache it sweeps on every event, which costs
//! a pass over every event written recently when the scheduler writes one per pod.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Resource as _;

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    /// The profile's schedulerName, as upstream reports it.
    controller: String,
    instance: String,
}

pub struct Note<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
    pub related: Option<ObjectReference>,
}

impl Recorder {
    pub fn new(client: kube::Client, controller: &str) -> Recorder {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        Recorder {
            client,
            controller: controller.to_string(),
            instance: format!("{controller}-{}", host.trim()),
        }
    }

    pub async fn record(&self, pod: &Pod, n: Note<'_>) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // Upstream names events `<object>.<unique hex>`.
                name: Some(format!("{name}.{:x}", unique(now))),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(n.action.to_string()),
            reason: Some(n.reason.to_string()),
            regarding: Some(pod.object_ref(&())),
            related: n.related,
            note: Some(n.note),
            type_: Some(if n.warning { "Warning" } else { "Normal" }.to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!("event {} for {ns}/{name}: {e}", n.reason);
        }
    }
}

/// Nanoseconds since the epoch mixed with a random part: unique enough across replicas.
fn unique(now: k8s_openapi::jiff::Timestamp) -> u64 {
    (now.as_nanosecond() as u64) ^ (rand::random::<u64>() & 0xffff)
}
