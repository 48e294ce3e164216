//! `NodeResourcesFitArgs` and `NodeResourcesBalancedAllocationArgs` as upstream decodes,
//! defaults and validates them. Errors read as upstream's field errors, rooted at the args
//! object (upstream's constructors validate with a nil path), so a user sees e.g.
//! `scoringStrategy.resources[0].weight: Invalid value: 0: resource weight of cpu not in
//! valid range (0, 100]`.

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use ferrokube_common::labels::validate_qualified_name;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

pub const LEAST_ALLOCATED: &str = "LeastAllocated";
pub const MOST_ALLOCATED: &str = "MostAllocated";
pub const REQUESTED_TO_CAPACITY_RATIO: &str = "RequestedToCapacityRatio";

/// The largest score a RequestedToCapacityRatio shape point may give.
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub weight: i64,
}

impl ResourceSpec {
    fn new(name: &str, weight: i64) -> ResourceSpec {
        ResourceSpec {
            name: name.to_string(),
            weight,
        }
    }
}

/// upstream's `defaultResourceSpec`.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![ResourceSpec::new("cpu", 1), ResourceSpec::new("memory", 1)]
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationShapePoint {
    #[serde(default)]
    pub utilization: i32,
    #[serde(default)]
    pub score: i32,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestedToCapacityRatioParam {
    #[serde(default)]
    pub shape: Option<Vec<UtilizationShapePoint>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub resources: Option<Vec<ResourceSpec>>,
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FitArgs {
    #[serde(default)]
    pub ignored_resources: Option<Vec<String>>,
    #[serde(default)]
    pub ignored_resource_groups: Option<Vec<String>>,
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BalancedAllocationArgs {
    #[serde(default)]
    pub resources: Option<Vec<ResourceSpec>>,
}

/// Fit's args after defaulting: every field has its effective value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitConfig {
    pub ignored_resources: Vec<String>,
    pub ignored_resource_groups: Vec<String>,
    pub strategy: String,
    pub resources: Vec<ResourceSpec>,
    /// Present only when the strategy is RequestedToCapacityRatio (validation enforces it).
    pub shape: Option<Vec<UtilizationShapePoint>>,
}

/// One field error, printed as `apimachinery`'s `field.Error` prints.
struct FieldError {
    field: String,
    body: String,
}

impl FieldError {
    fn invalid(field: String, value: impl std::fmt::Display, detail: &str) -> FieldError {
        FieldError {
            field,
            body: format!("Invalid value: {value}: {detail}"),
        }
    }

    fn invalid_str(field: String, value: &str, detail: &str) -> FieldError {
        Self::invalid(field, format!("{value:?}"), detail)
    }

    fn required(field: String, detail: &str) -> FieldError {
        FieldError {
            field,
            body: format!("Required value: {detail}"),
        }
    }

    fn forbidden(field: String, detail: &str) -> FieldError {
        FieldError {
            field,
            body: format!("Forbidden: {detail}"),
        }
    }

    fn not_supported(field: String, value: &str, supported: &[&str]) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            field,
            body: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    fn duplicate(field: String, value: &str) -> FieldError {
        FieldError {
            field,
            body: format!("Duplicate value: {value:?}"),
        }
    }
}

/// Joins errors as upstream's `utilerrors.Aggregate` does: a single error alone, several in
/// brackets, repeated messages once.
fn aggregate(errs: &[FieldError]) -> Option<String> {
    let mut seen = HashSet::new();
    let msgs: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.body))
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match msgs.len() {
        0 => None,
        1 => msgs.into_iter().next(),
        _ => Some(format!("[{}]", msgs.join(", "))),
    }
}

/// Keys the strict decoder accepts at one level of the args (besides `apiVersion`/`kind` at
/// the top), and how to check the values under them.
enum Shape {
    Object(&'static [(&'static str, Shape)]),
    List(&'static Shape),
    Scalar,
}

const RESOURCE_SPEC: Shape = Shape::Object(&[("name", Shape::Scalar), ("weight", Shape::Scalar)]);
const SHAPE_POINT: Shape =
    Shape::Object(&[("utilization", Shape::Scalar), ("score", Shape::Scalar)]);
const FIT_ARGS: Shape = Shape::Object(&[
    ("apiVersion", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("ignoredResources", Shape::Scalar),
    ("ignoredResourceGroups", Shape::Scalar),
    (
        "scoringStrategy",
        Shape::Object(&[
            ("type", Shape::Scalar),
            ("resources", Shape::List(&RESOURCE_SPEC)),
            (
                "requestedToCapacityRatio",
                Shape::Object(&[("shape", Shape::List(&SHAPE_POINT))]),
            ),
        ]),
    ),
]);
const BALANCED_ARGS: Shape = Shape::Object(&[
    ("apiVersion", Shape::Scalar),
    ("kind", Shape::Scalar),
    ("resources", Shape::List(&RESOURCE_SPEC)),
]);

fn unknown_fields(value: &Value, shape: &Shape, path: &str, out: &mut Vec<String>) {
    match (shape, value) {
        (Shape::Object(fields), Value::Object(map)) => {
            for (key, v) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, sub)) => unknown_fields(v, sub, &child, out),
                    None => out.push(child),
                }
            }
        }
        (Shape::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                unknown_fields(v, item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes args strictly, as upstream's scheduler config codec does: unknown fields are an
/// error, `null` means "not set".
fn decode<T: DeserializeOwned + Default>(kind: &str, args: &Value, shape: &Shape) -> Result<T> {
    if args.is_null() {
        return Ok(T::default());
    }
    if !args.is_object() {
        return Err(anyhow!(
            "decoding {kind}: args must be an object, got {args}"
        ));
    }
    let mut unknown = Vec::new();
    unknown_fields(args, shape, "", &mut unknown);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        return Err(anyhow!("strict decoding error: {}", list.join(", ")));
    }
    serde_json::from_value(args.clone()).map_err(|e| anyhow!("decoding {kind}: {e}"))
}

/// upstream's `metav1validation.ValidateLabelName`.
fn validate_label_name(field: &str, name: &str, errs: &mut Vec<FieldError>) {
    for msg in validate_qualified_name(name) {
        errs.push(FieldError::invalid_str(field.to_string(), name, &msg));
    }
}

fn validate_resources(resources: &[ResourceSpec], path: &str, errs: &mut Vec<FieldError>) {
    for (i, r) in resources.iter().enumerate() {
        if r.weight <= 0 || r.weight > 100 {
            errs.push(FieldError::invalid(
                format!("{path}[{i}].weight"),
                r.weight,
                &format!("resource weight of {} not in valid range (0, 100]", r.name),
            ));
        }
    }
}

fn validate_function_shape(
    shape: &[UtilizationShapePoint],
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if shape.is_empty() {
        errs.push(FieldError::required(
            path.to_string(),
            "at least one point must be specified",
        ));
        return;
    }
    if let Some(i) = (1..shape.len()).find(|&i| shape[i - 1].utilization >= shape[i].utilization) {
        errs.push(FieldError::invalid(
            format!("{path}[{i}].utilization"),
            shape[i].utilization,
            "values must be sorted in increasing order",
        ));
    }
    for (i, p) in shape.iter().enumerate() {
        if !(0..=100).contains(&p.utilization) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}].utilization"),
                p.utilization,
                "not in valid range [0, 100]",
            ));
        }
        if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&i64::from(p.score)) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}].score"),
                p.score,
                &format!("not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]"),
            ));
        }
    }
}

/// Decodes, defaults (upstream's `SetDefaults_NodeResourcesFitArgs`) and validates
/// (`ValidateNodeResourcesFitArgs`) Fit's args.
pub fn fit_config(args: &Value) -> Result<FitConfig> {
    let raw: FitArgs = decode("NodeResourcesFitArgs", args, &FIT_ARGS)?;
    let strategy = raw.scoring_strategy.unwrap_or_else(|| ScoringStrategy {
        type_: Some(LEAST_ALLOCATED.to_string()),
        resources: Some(default_resources()),
        requested_to_capacity_ratio: None,
    });
    let mut resources = strategy.resources.unwrap_or_default();
    if resources.is_empty() {
        resources = default_resources();
    }
    for r in &mut resources {
        if r.weight == 0 {
            r.weight = 1;
        }
    }
    let config = FitConfig {
        ignored_resources: raw.ignored_resources.unwrap_or_default(),
        ignored_resource_groups: raw.ignored_resource_groups.unwrap_or_default(),
        strategy: strategy.type_.unwrap_or_default(),
        resources,
        shape: strategy
            .requested_to_capacity_ratio
            .map(|r| r.shape.unwrap_or_default()),
    };

    let mut errs = Vec::new();
    for (i, res) in config.ignored_resources.iter().enumerate() {
        validate_label_name(&format!("ignoredResources[{i}]"), res, &mut errs);
    }
    for (i, group) in config.ignored_resource_groups.iter().enumerate() {
        let field = format!("ignoredResourceGroups[{i}]");
        if group.contains('/') {
            errs.push(FieldError::invalid_str(
                field.clone(),
                group,
                "resource group name can't contain '/'",
            ));
        }
        validate_label_name(&field, group, &mut errs);
    }
    let supported = [LEAST_ALLOCATED, MOST_ALLOCATED, REQUESTED_TO_CAPACITY_RATIO];
    if !supported.contains(&config.strategy.as_str()) {
        errs.push(FieldError::not_supported(
            "scoringStrategy.type".to_string(),
            &config.strategy,
            &supported,
        ));
    }
    validate_resources(&config.resources, "scoringStrategy.resources", &mut errs);
    let ratio_path = "scoringStrategy.requestedToCapacityRatio";
    if config.strategy == REQUESTED_TO_CAPACITY_RATIO {
        match &config.shape {
            None => errs.push(FieldError::required(
                ratio_path.to_string(),
                "must be specified when type is RequestedToCapacityRatio",
            )),
            Some(shape) => {
                validate_function_shape(shape, &format!("{ratio_path}.shape"), &mut errs)
            }
        }
    } else if config.shape.is_some() {
        errs.push(FieldError::forbidden(
            ratio_path.to_string(),
            "must be nil when type is not RequestedToCapacityRatio",
        ));
    }
    match aggregate(&errs) {
        Some(msg) => Err(anyhow!(msg)),
        None => Ok(config),
    }
}

/// Decodes, defaults (`SetDefaults_NodeResourcesBalancedAllocationArgs`) and validates
/// (`ValidateNodeResourcesBalancedAllocationArgs`) BalancedAllocation's args.
pub fn balanced_allocation_resources(args: &Value) -> Result<Vec<ResourceSpec>> {
    let raw: BalancedAllocationArgs =
        decode("NodeResourcesBalancedAllocationArgs", args, &BALANCED_ARGS)?;
    let mut resources = raw.resources.unwrap_or_default();
    if resources.is_empty() {
        resources = default_resources();
    }
    for r in &mut resources {
        if r.weight == 0 {
            r.weight = 1;
        }
    }
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in resources.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            errs.push(FieldError::duplicate(
                format!("resources[{i}].name"),
                &r.name,
            ));
        }
        if r.weight != 1 {
            errs.push(FieldError::invalid(
                format!("resources[{i}].weight"),
                r.weight,
                "must be 1",
            ));
        }
    }
    match aggregate(&errs) {
        Some(msg) => Err(anyhow!(msg)),
        None => Ok(resources),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fit_err(args: Value) -> String {
        match fit_config(&args) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fit_defaults() {
        let c = fit_config(&Value::Null).unwrap();
        assert_eq!(c.strategy, LEAST_ALLOCATED);
        assert_eq!(c.resources, default_resources());
        assert!(c.shape.is_none());
        assert!(c.ignored_resources.is_empty());

        let c = fit_config(&json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "NodeResourcesFitArgs",
            "scoringStrategy": {"type": "MostAllocated", "resources": [{"name": "cpu"}, {"name": "example.com/gpu", "weight": 5}]}
        }))
        .unwrap();
        assert_eq!(c.strategy, MOST_ALLOCATED);
        assert_eq!(
            c.resources,
            vec![
                ResourceSpec::new("cpu", 1),
                ResourceSpec::new("example.com/gpu", 5)
            ]
        );

        // A strategy without resources gets the default set, not an empty one.
        let c = fit_config(&json!({"scoringStrategy": {"type": "MostAllocated"}})).unwrap();
        assert_eq!(c.resources, default_resources());
    }

    #[test]
    fn fit_validation_messages() {
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "LeastAllocated",
                "resources": [{"name": "memory", "weight": -1}, {"name": "cpu", "weight": 1}]}})),
            "scoringStrategy.resources[0].weight: Invalid value: -1: resource weight of memory not in valid range (0, 100]"
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "LeastAllocated",
                "resources": [{"name": "memory", "weight": 1}, {"name": "cpu", "weight": 101}]}})),
            "scoringStrategy.resources[1].weight: Invalid value: 101: resource weight of cpu not in valid range (0, 100]"
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "Balanced"}})),
            "scoringStrategy.type: Unsupported value: \"Balanced\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
        );
        // A strategy given without a type is not defaulted: upstream rejects it.
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": 1}]}})),
            "scoringStrategy.type: Unsupported value: \"\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}})),
            "scoringStrategy.requestedToCapacityRatio: Required value: must be specified when type is RequestedToCapacityRatio"
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "LeastAllocated",
                "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 10}]}}})),
            "scoringStrategy.requestedToCapacityRatio: Forbidden: must be nil when type is not RequestedToCapacityRatio"
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
                "requestedToCapacityRatio": {"shape": []}}})),
            "scoringStrategy.requestedToCapacityRatio.shape: Required value: at least one point must be specified"
        );
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
                "requestedToCapacityRatio": {"shape": [
                    {"utilization": 50, "score": 5}, {"utilization": 10, "score": 11}, {"utilization": 101, "score": 0}]}}})),
            "[scoringStrategy.requestedToCapacityRatio.shape[1].utilization: Invalid value: 10: values must be sorted in increasing order, \
             scoringStrategy.requestedToCapacityRatio.shape[1].score: Invalid value: 11: not in valid range [0, 10], \
             scoringStrategy.requestedToCapacityRatio.shape[2].utilization: Invalid value: 101: not in valid range [0, 100]]"
        );
        assert_eq!(
            fit_err(json!({"ignoredResourceGroups": ["example.com/foo"]})),
            "ignoredResourceGroups[0]: Invalid value: \"example.com/foo\": resource group name can't contain '/'"
        );
        let err = fit_err(json!({"ignoredResources": ["bad name"]}));
        assert!(
            err.starts_with("ignoredResources[0]: Invalid value: \"bad name\": "),
            "{err}"
        );
    }

    #[test]
    fn fit_strict_decoding() {
        assert_eq!(
            fit_err(json!({"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu", "wieght": 2}]},
                "foo": 1})),
            "strict decoding error: unknown field \"scoringStrategy.resources[0].wieght\", unknown field \"foo\""
        );
        assert!(fit_err(json!({"ignoredResources": "cpu"}))
            .starts_with("decoding NodeResourcesFitArgs: "));
    }

    #[test]
    fn balanced_allocation_args() {
        assert_eq!(
            balanced_allocation_resources(&Value::Null).unwrap(),
            default_resources()
        );
        assert_eq!(
            balanced_allocation_resources(
                &json!({"resources": [{"name": "cpu"}, {"name": "example.com/gpu", "weight": 1}]})
            )
            .unwrap(),
            vec![
                ResourceSpec::new("cpu", 1),
                ResourceSpec::new("example.com/gpu", 1)
            ]
        );
        let err = balanced_allocation_resources(&json!({"resources": [
            {"name": "cpu", "weight": 1}, {"name": "cpu", "weight": 2}]}))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "[resources[1].name: Duplicate value: \"cpu\", resources[1].weight: Invalid value: 2: must be 1]"
        );
    }
}
