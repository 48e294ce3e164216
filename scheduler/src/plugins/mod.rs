//! Upstream's default plugins, by their upstream names. Each module's `register` builds its
//! plugin from the profile's `pluginConfig` args and says which extension points it serves.

pub mod helpers;

use std::sync::Arc;

use crate::framework::*;

/// What a plugin constructor is given.
#[derive(Clone)]
pub struct PluginContext {
    pub client: kube::Client,
    /// The profile's `schedulerName`.
    pub scheduler_name: String,
}

/// One built plugin, at every extension point it implements.
#[derive(Clone, Default)]
pub struct Registered {
    pub pre_enqueue: Option<Arc<dyn PreEnqueuePlugin>>,
    pub pre_filter: Option<Arc<dyn PreFilterPlugin>>,
    pub filter: Option<Arc<dyn FilterPlugin>>,
    pub post_filter: Option<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Option<Arc<dyn PreScorePlugin>>,
    pub score: Option<Arc<dyn ScorePlugin>>,
    pub reserve: Option<Arc<dyn ReservePlugin>>,
    pub pre_bind: Option<Arc<dyn PreBindPlugin>>,
    pub bind: Option<Arc<dyn BindPlugin>>,
    /// The cluster events after which a pod it rejected may fit.
    pub events: Vec<crate::events::ClusterEvent>,
}
