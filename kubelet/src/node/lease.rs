//! The node's heartbeat: a Lease in `kube-node-lease` named after the node, renewed every
//! quarter of its duration, owned by the Node so it goes when the Node does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

pub const NAMESPACE: &str = "kube-node-lease";

pub struct Heartbeat {
    pub client: kube::Client,
    pub node_name: String,
    pub duration_seconds: i32,
}

impl Heartbeat {
    /// Creates or renews the lease once. The owner reference is set when the Node is known,
    /// as upstream does once registration succeeded.
    pub async fn renew(&self, node: Option<&Node>) -> kube::Result<Lease> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), NAMESPACE);
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let owner = node.and_then(|n| {
            Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: n.metadata.name.clone()?,
                uid: n.metadata.uid.clone()?,
                ..Default::default()
            })
        });
        match api.get_opt(&self.node_name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.node_name.clone()),
                        namespace: Some(NAMESPACE.into()),
                        owner_references: owner.map(|o| vec![o]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.node_name.clone()),
                        lease_duration_seconds: Some(self.duration_seconds),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(self.node_name.clone());
                spec.lease_duration_seconds = Some(self.duration_seconds);
                spec.renew_time = Some(now);
                if let Some(o) = owner {
                    let refs = lease.metadata.owner_references.get_or_insert_with(Vec::new);
                    if !refs.iter().any(|r| r.uid == o.uid) {
                        refs.retain(|r| r.kind != "Node");
                        refs.push(o);
                    }
                }
                api.replace(&self.node_name, &PostParams::default(), &lease)
                    .await
            }
        }
    }
}

/// Upstream's lease controller retries a failed renewal after 200ms, doubling up to 7s.
pub fn retry_delay(failures: u32) -> Duration {
    let ms = 200u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_millis(ms.min(7000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_seven_seconds() {
        assert_eq!(retry_delay(0), Duration::from_millis(200));
        assert_eq!(retry_delay(1), Duration::from_millis(400));
        assert_eq!(retry_delay(10), Duration::from_secs(7));
    }
}
