//! downwardAPI volumes: the pod's own metadata and its containers' resources as files.

use std::collections::BTreeMap;

use ferrokube_common::labels::validate_qualified_name;
use ferrokube_common::quantity::Quantity as ParsedQuantity;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, Pod, ResourceFieldSelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::api_content::{file_mode, write_volume, DEFAULT_MODE};
use super::atomic_writer::{FileProjection, Payload};
use super::empty_dir::Medium;
use super::error::aggregate;
use super::quote::go_quote;
use super::{MountedVolume, VolumeContext, VolumeSite};

pub(crate) const PLUGIN: &str = "kubernetes.io~downward-api";

pub(crate) async fn setup(
    ctx: &VolumeContext,
    site: &VolumeSite<'_>,
    source: &DownwardAPIVolumeSource,
) -> Result<MountedVolume, String> {
    let payload = collect_data(
        source.items.as_deref().unwrap_or_default(),
        site.pod,
        &ctx.node_allocatable,
        source.default_mode.unwrap_or(DEFAULT_MODE),
    )?;
    let dir = write_volume(site, PLUGIN, Medium::Disk, None, payload).await?;
    Ok(MountedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// Upstream's `downwardapi.CollectData`: every item is attempted and the failures are reported
/// together.
pub(crate) fn collect_data(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
    default_mode: i32,
) -> Result<Payload, String> {
    let default_mode = file_mode(default_mode)?;
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let mode = match item.mode {
            Some(m) => match file_mode(m) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
            None => default_mode,
        };
        let value = if let Some(field) = &item.field_ref {
            extract_field_path(pod, &field.field_path)
        } else if let Some(resource) = &item.resource_field_ref {
            extract_resource(resource, pod, node_allocatable)
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.into_bytes(),
                        mode,
                        fs_user: None,
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    match aggregate(errors) {
        Some(e) => Err(e),
        None => Ok(payload),
    }
}

/// Upstream's `fieldpath.ExtractFieldPathAsString` for the fields a volume may expose.
pub(crate) fn extract_field_path(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((path, key)) = split_subscript(field_path) {
        let map = match path {
            "metadata.annotations" => &meta.annotations,
            "metadata.labels" => &meta.labels,
            _ => {
                return Err(format!(
                    "fieldPath {} does not support subscript",
                    go_quote(field_path)
                ))
            }
        };
        let errs = validate_qualified_name(&key.to_lowercase());
        if !errs.is_empty() {
            return Err(format!(
                "invalid key subscript in {field_path}: {}",
                errs.join(";")
            ));
        }
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    match field_path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {field_path}")),
    }
}

/// `metadata.labels['key']` into the path and the key.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, key))
}

/// Sorted `key="value"` lines, values quoted as Go's `%q`, no trailing newline.
pub(crate) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upstream's `ExtractResourceValueByContainerNameAndNodeAllocatable`: limits the container
/// leaves unset are the node's allocatable amount.
pub(crate) fn extract_resource(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let container =
        find_container(pod, name).ok_or_else(|| format!("container {name} not found"))?;
    let resources = container.resources.as_ref();
    let mut limits: BTreeMap<String, Quantity> =
        resources.and_then(|r| r.limits.clone()).unwrap_or_default();
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        let unset = limits
            .get(resource)
            .is_none_or(|q| parse(q).is_ok_and(|q| q.is_zero()));
        if unset {
            if let Some(cap) = node_allocatable.get(resource) {
                limits.insert(resource.to_string(), cap.clone());
            }
        }
    }
    let requests = resources
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();

    let divisor = match &selector.divisor {
        Some(d) => parse(d)?,
        None => ParsedQuantity::default(),
    };
    let divisor = if divisor.is_zero() {
        ParsedQuantity::new(1, Default::default())
    } else {
        divisor
    };

    let (list, resource) = if let Some(r) = selector.resource.strip_prefix("limits.") {
        (&limits, r)
    } else if let Some(r) = selector.resource.strip_prefix("requests.") {
        (&requests, r)
    } else {
        return Err(unsupported(&selector.resource));
    };
    let amount = match list.get(resource) {
        Some(q) => parse(q)?,
        None => ParsedQuantity::default(),
    };
    match resource {
        "cpu" => ceil_div(amount.milli_value(), divisor.milli_value()),
        "memory" | "ephemeral-storage" => ceil_div(amount.value(), divisor.value()),
        r if r.starts_with("hugepages-") => ceil_div(amount.value(), divisor.value()),
        _ => Err(unsupported(&selector.resource)),
    }
}

fn unsupported(resource: &str) -> String {
    format!("unsupported container resource : {resource}")
}

fn parse(q: &Quantity) -> Result<ParsedQuantity, String> {
    ParsedQuantity::parse(&q.0).map_err(|e| format!("invalid quantity {}: {e}", go_quote(&q.0)))
}

/// `int64(math.Ceil(float64(a) / float64(b)))`, as upstream computes it.
fn ceil_div(amount: i64, divisor: i64) -> Result<String, String> {
    if divisor == 0 {
        return Err("divisor must not be zero".to_string());
    }
    Ok(((amount as f64 / divisor as f64).ceil() as i64).to_string())
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectFieldSelector, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("prod".into()),
                uid: Some("1234-abcd".into()),
                labels: Some(
                    [
                        ("tier".to_string(), "frontend".to_string()),
                        ("app".to_string(), "web".to_string()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        ("quote".to_string(), "say \"hi\"\n\tbye\\".to_string()),
                        ("builder".to_string(), "jenkins ✓".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some([("memory".to_string(), q("64Mi"))].into()),
                        requests: Some(
                            [
                                ("cpu".to_string(), q("250m")),
                                ("memory".to_string(), q("32Mi")),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field(path: &str, field_path: &str) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: Some("v1".into()),
            }),
            ..Default::default()
        }
    }

    fn resource(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: Some("app".into()),
            resource: resource.into(),
            divisor: divisor.map(q),
        }
    }

    #[test]
    fn labels_and_annotations_render_as_upstream() {
        let p = pod();
        assert_eq!(
            extract_field_path(&p, "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"frontend\""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.annotations").unwrap(),
            "builder=\"jenkins ✓\"\nquote=\"say \\\"hi\\\"\\n\\tbye\\\\\""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.labels['tier']").unwrap(),
            "frontend"
        );
        assert_eq!(
            extract_field_path(&p, "metadata.annotations['missing']").unwrap(),
            ""
        );
        assert_eq!(
            extract_field_path(&Pod::default(), "metadata.labels").unwrap(),
            ""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.name['x']").unwrap_err(),
            "fieldPath \"metadata.name['x']\" does not support subscript"
        );
        assert_eq!(
            extract_field_path(&p, "spec.nodeName").unwrap_err(),
            "unsupported fieldPath: spec.nodeName"
        );
    }

    #[test]
    fn payload_uses_modes_and_aggregates_errors() {
        let mut items = vec![
            field("name", "metadata.name"),
            field("ns", "metadata.namespace"),
            field("uid", "metadata.uid"),
            field("meta/labels", "metadata.labels"),
        ];
        items[0].mode = Some(0o400);
        let payload = collect_data(&items, &pod(), &BTreeMap::new(), 0o644).unwrap();
        assert_eq!(payload["name"].data, b"web-0");
        assert_eq!(payload["name"].mode, 0o400);
        assert_eq!(payload["ns"].data, b"prod");
        assert_eq!(payload["uid"].data, b"1234-abcd");
        assert_eq!(payload["meta/labels"].mode, 0o644);

        items.push(field("bad1", "spec.a"));
        items.push(field("bad2", "spec.b"));
        assert_eq!(
            collect_data(&items, &pod(), &BTreeMap::new(), 0o644).unwrap_err(),
            "[unsupported fieldPath: spec.a, unsupported fieldPath: spec.b]"
        );
    }

    #[test]
    fn resources_with_divisors_and_allocatable_fallback() {
        let p = pod();
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), q("4")),
            ("memory".to_string(), q("8Gi")),
            ("ephemeral-storage".to_string(), q("100Gi")),
        ]
        .into();
        let get = |r: &str, d: Option<&str>| extract_resource(&resource(r, d), &p, &alloc);
        assert_eq!(
            get("limits.memory", None).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(get("limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(get("requests.memory", Some("1Gi")).unwrap(), "1");
        assert_eq!(get("requests.cpu", None).unwrap(), "1");
        assert_eq!(get("requests.cpu", Some("1m")).unwrap(), "250");
        // No CPU limit: the node's allocatable CPU.
        assert_eq!(get("limits.cpu", None).unwrap(), "4");
        assert_eq!(get("limits.cpu", Some("1m")).unwrap(), "4000");
        assert_eq!(get("limits.ephemeral-storage", Some("1Gi")).unwrap(), "100");
        assert_eq!(get("requests.ephemeral-storage", None).unwrap(), "0");
        assert_eq!(
            get("limits.gpu", None).unwrap_err(),
            "unsupported container resource : limits.gpu"
        );
        let mut other = resource("limits.cpu", None);
        other.container_name = Some("nope".into());
        assert_eq!(
            extract_resource(&other, &p, &alloc).unwrap_err(),
            "container nope not found"
        );
    }
}
