//! Upstream's default plugins, by their upstream names. Each module's `register` builds its
//! plugin from the profile's `pluginConfig` args and says which extension points it serves.

pub mod defaultbinder;
pub mod defaultpreemption;
pub mod helpers;
pub mod imagelocality;
pub mod interpodaffinity;
pub mod nodeaffinity;
pub mod nodename;
pub mod nodeports;
pub mod noderesources;
pub mod nodeunschedulable;
pub mod nodevolumelimits;
pub mod podtopologyspread;
pub mod schedulinggates;
pub mod tainttoleration;
#[cfg(test)]
pub mod testing;
pub mod volumebinding;
pub mod volumerestrictions;
pub mod volumezone;

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

/// Builds a plugin by its upstream name.
pub fn build(
    name: &str,
    args: &serde_json::Value,
    ctx: &PluginContext,
) -> anyhow::Result<Registered> {
    let register = match name {
        schedulinggates::NAME => schedulinggates::register,
        nodeunschedulable::NAME => nodeunschedulable::register,
        nodename::NAME => nodename::register,
        tainttoleration::NAME => tainttoleration::register,
        nodeaffinity::NAME => nodeaffinity::register,
        nodeports::NAME => nodeports::register,
        noderesources::fit::NAME => noderesources::fit::register,
        noderesources::balanced_allocation::NAME => noderesources::balanced_allocation::register,
        volumerestrictions::NAME => volumerestrictions::register,
        nodevolumelimits::NAME => nodevolumelimits::register,
        volumebinding::NAME => volumebinding::register,
        volumezone::NAME => volumezone::register,
        podtopologyspread::NAME => podtopologyspread::register,
        interpodaffinity::NAME => interpodaffinity::register,
        defaultpreemption::NAME => defaultpreemption::register,
        imagelocality::NAME => imagelocality::register,
        defaultbinder::NAME => defaultbinder::register,
        _ => anyhow::bail!("plugin {name:?} does not exist"),
    };
    register(args, ctx).map_err(|e| anyhow::anyhow!("plugin {name}: {e}"))
}
