//! The ReplicationController controller: the ReplicaSet controller's logic over the older
//! kind, with its map selector, as upstream also shares one implementation between them.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ReplicationController;

use crate::context::Context;

pub fn run(ctx: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
    crate::replicaset::run_for::<ReplicationController>(ctx)
}
