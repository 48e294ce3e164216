//! Turns the configuration's profiles into frameworks: each plugin built once with its
//! args, then placed at every extension point the profile enables it on.

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::config::{self, Configuration, Profile};
use crate::framework::{Framework, ScoredPlugin};
use crate::plugins::{self, PluginContext, Registered};

/// Orders the queue; the queue implements it itself.
const PRIORITY_SORT: &str = "PrioritySort";

fn implements(r: &Registered, point: &str) -> bool {
    match point {
        "preEnqueue" => r.pre_enqueue.is_some(),
        "preFilter" => r.pre_filter.is_some(),
        "filter" => r.filter.is_some(),
        "postFilter" => r.post_filter.is_some(),
        "preScore" => r.pre_score.is_some(),
        "score" => r.score.is_some(),
        "reserve" => r.reserve.is_some(),
        "preBind" => r.pre_bind.is_some(),
        "bind" => r.bind.is_some(),
        _ => false,
    }
}

pub fn build(profile: &Profile, client: &kube::Client) -> Result<Framework> {
    let ctx = PluginContext {
        client: client.clone(),
        scheduler_name: profile.scheduler_name.clone(),
    };
    let mut names: Vec<String> = config::DEFAULT_PLUGINS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for set in profile.plugins.values() {
        names.extend(set.enabled.iter().map(|p| p.name.clone()));
    }
    let mut built: HashMap<String, Registered> = HashMap::new();
    for name in names {
        if name == PRIORITY_SORT || built.contains_key(&name) {
            continue;
        }
        let r = plugins::build(&name, &config::plugin_args(profile, &name), &ctx)?;
        built.insert(name, r);
    }
    let queue_sort = config::expand(profile, "queueSort", &|n| n == PRIORITY_SORT);
    if let Some(other) = queue_sort.iter().find(|p| p.name != PRIORITY_SORT) {
        bail!(
            "queueSort plugin {:?} is not supported: only PrioritySort",
            other.name
        );
    }
    for point in ["permit", "postBind"] {
        if let Some(p) = profile.plugins.get(point).and_then(|s| s.enabled.first()) {
            bail!("plugin {:?} does not implement {point}", p.name);
        }
    }
    let mut fw = Framework {
        scheduler_name: profile.scheduler_name.clone(),
        ..Default::default()
    };
    let at = |point: &str| -> Result<Vec<(&Registered, Option<i64>)>> {
        let mut out = Vec::new();
        for p in config::expand(profile, point, &|n| {
            built.get(n).is_some_and(|r| implements(r, point))
        }) {
            let Some(r) = built.get(&p.name) else {
                bail!("plugin {:?} does not exist", p.name);
            };
            if !implements(r, point) {
                bail!("plugin {:?} does not implement {point}", p.name);
            }
            out.push((r, p.weight));
        }
        Ok(out)
    };
    for (r, _) in at("preEnqueue")? {
        fw.pre_enqueue.extend(r.pre_enqueue.clone());
    }
    for (r, _) in at("preFilter")? {
        fw.pre_filter.extend(r.pre_filter.clone());
    }
    for (r, _) in at("filter")? {
        fw.filter.extend(r.filter.clone());
    }
    for (r, _) in at("postFilter")? {
        fw.post_filter.extend(r.post_filter.clone());
    }
    for (r, _) in at("preScore")? {
        fw.pre_score.extend(r.pre_score.clone());
    }
    for (r, weight) in at("score")? {
        if let Some(plugin) = r.score.clone() {
            let weight = weight.unwrap_or(1);
            if weight <= 0 {
                bail!("score plugin {:?} weight must be positive", plugin.name());
            }
            fw.score.push(ScoredPlugin { plugin, weight });
        }
    }
    for (r, _) in at("reserve")? {
        fw.reserve.extend(r.reserve.clone());
    }
    for (r, _) in at("preBind")? {
        fw.pre_bind.extend(r.pre_bind.clone());
    }
    for (r, _) in at("bind")? {
        fw.bind.extend(r.bind.clone());
    }
    if fw.bind.is_empty() {
        bail!(
            "profile {:?}: at least one bind plugin is needed",
            profile.scheduler_name
        );
    }
    for r in built.values() {
        let name = [
            r.filter.as_ref().map(|p| p.name()),
            r.pre_filter.as_ref().map(|p| p.name()),
            r.pre_enqueue.as_ref().map(|p| p.name()),
            r.score.as_ref().map(|p| p.name()),
        ]
        .into_iter()
        .flatten()
        .next();
        if let Some(name) = name {
            fw.events.insert(name, r.events.clone());
        }
    }
    Ok(fw)
}

/// Every profile's framework, by schedulerName.
pub fn build_all(
    config: &Configuration,
    client: &kube::Client,
) -> Result<HashMap<String, Framework>> {
    config
        .profiles
        .iter()
        .map(|p| Ok((p.scheduler_name.clone(), build(p, client)?)))
        .collect()
}
