//! `DefaultPreemptionArgs` (kubescheduler.config.k8s.io/v1): defaults and validation as
//! upstream.

use anyhow::anyhow;
use serde::Deserialize;

const DEFAULT_PERCENTAGE: i32 = 10;
const DEFAULT_ABSOLUTE: i32 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultPreemptionArgs {
    /// The share of nodes (0-100) to dry-run preemption on, at least.
    pub min_candidate_nodes_percentage: i32,
    /// The number of nodes to dry-run preemption on, at least.
    pub min_candidate_nodes_absolute: i32,
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        DefaultPreemptionArgs {
            min_candidate_nodes_percentage: DEFAULT_PERCENTAGE,
            min_candidate_nodes_absolute: DEFAULT_ABSOLUTE,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    // Accepted because args are a typed object in the profile and may name themselves.
    #[serde(default)]
    #[allow(dead_code)]
    api_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<String>,
    min_candidate_nodes_percentage: Option<i32>,
    min_candidate_nodes_absolute: Option<i32>,
}

impl DefaultPreemptionArgs {
    /// Decodes the profile's pluginConfig args (`Null` when absent), fills upstream's
    /// defaults for fields left out and validates the result.
    pub fn from_value(value: &serde_json::Value) -> anyhow::Result<DefaultPreemptionArgs> {
        let args = if value.is_null() {
            DefaultPreemptionArgs::default()
        } else {
            let wire: Wire = serde_json::from_value(value.clone())
                // The detail goes in the message itself: callers print only the outermost.
                .map_err(|e| anyhow!("decoding DefaultPreemptionArgs: {e}"))?;
            DefaultPreemptionArgs {
                min_candidate_nodes_percentage: wire
                    .min_candidate_nodes_percentage
                    .unwrap_or(DEFAULT_PERCENTAGE),
                min_candidate_nodes_absolute: wire
                    .min_candidate_nodes_absolute
                    .unwrap_or(DEFAULT_ABSOLUTE),
            }
        };
        args.validate().map_err(|e| anyhow!(e))?;
        Ok(args)
    }

    /// Upstream's `ValidateDefaultPreemptionArgs`, with its aggregate error wording
    /// (one error as is, several in brackets).
    pub fn validate(&self) -> Result<(), String> {
        const PCT: &str = "minCandidateNodesPercentage";
        const ABS: &str = "minCandidateNodesAbsolute";
        let invalid = |field: &str, value: i32, detail: &str| {
            format!("{field}: Invalid value: {value}: {detail}")
        };
        let (pct, abs) = (
            self.min_candidate_nodes_percentage,
            self.min_candidate_nodes_absolute,
        );
        let mut errs = Vec::new();
        if !(0..=100).contains(&pct) {
            errs.push(invalid(PCT, pct, "not in valid range [0, 100]"));
        }
        if abs < 0 {
            errs.push(invalid(ABS, abs, "not in valid range [0, inf)"));
        }
        if pct == 0 && abs == 0 {
            errs.push(invalid(
                PCT,
                pct,
                "cannot be zero at the same time as minCandidateNodesAbsolute",
            ));
            errs.push(invalid(
                ABS,
                abs,
                "cannot be zero at the same time as minCandidateNodesPercentage",
            ));
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }

    /// How many candidates the dry run looks for among `nodes` potential nodes: the share,
    /// raised to the absolute minimum, capped at the node count (upstream's
    /// `calculateNumCandidates`).
    pub fn num_candidates(&self, nodes: usize) -> usize {
        let nodes = nodes as i64;
        let share = nodes * i64::from(self.min_candidate_nodes_percentage) / 100;
        share
            .max(i64::from(self.min_candidate_nodes_absolute))
            .min(nodes)
            .max(0) as usize
    }
}
