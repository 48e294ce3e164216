//! Content negotiation: which media type a client sent and which it will accept back.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// The shape of a response body the client asked for with `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The object itself.
    Object,
    /// `as=Table`: rows for printing.
    Table,
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`: metadata only.
    Metadata,
}

/// The serialization of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub shape: Shape,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            format: Format::Json,
            shape: Shape::Object,
        }
    }
}

struct MediaRange<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
}

fn media_ranges(header: &str) -> Vec<MediaRange<'_>> {
    header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let essence = pieces.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = pieces
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
                })
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

/// Picks the first acceptable representation in the client's order. `allow_table` is false
/// where the server cannot render a Table (e.g. a single object from a subresource).
pub fn negotiate(accept: Option<&str>, allow_table: bool) -> ApiResult<Negotiated> {
    let accept = match accept {
        Some(a) if !a.trim().is_empty() => a,
        _ => return Ok(Negotiated::default()),
    };
    for range in media_ranges(accept) {
        let format = match range.essence.as_str() {
            "application/json" | "application/*" | "*/*" | "application/json-seq" => Format::Json,
            "application/yaml" => Format::Yaml,
            _ => continue,
        };
        let param = |k: &str| range.params.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let shape = match param("as") {
            None => Shape::Object,
            Some("Table") => {
                let group_ok = param("g") == Some("meta.k8s.io");
                let version_ok = matches!(param("v"), Some("v1") | Some("v1beta1"));
                if !(allow_table && group_ok && version_ok) {
                    continue;
                }
                Shape::Table
            }
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList") => {
                if param("g") != Some("meta.k8s.io")
                    || !matches!(param("v"), Some("v1") | Some("v1beta1"))
                {
                    continue;
                }
                Shape::Metadata
            }
            Some(_) => continue,
        };
        return Ok(Negotiated { format, shape });
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept})"
    )))
}

/// The formats a request body may arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    Protobuf,
}

pub fn body_format(content_type: Option<&str>) -> Option<BodyFormat> {
    let essence = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match essence.as_str() {
        "application/json" | "" => BodyFormat::Json,
        "application/yaml" => BodyFormat::Yaml,
        "application/json-patch+json" => BodyFormat::JsonPatch,
        "application/merge-patch+json" => BodyFormat::MergePatch,
        "application/strategic-merge-patch+json" => BodyFormat::StrategicMergePatch,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => BodyFormat::ApplyPatch,
        "application/vnd.kubernetes.protobuf" => BodyFormat::Protobuf,
        _ => return None,
    })
}

/// Decodes a JSON or YAML body into a JSON value; malformed input is a 400.
pub fn decode(body: &[u8], format: BodyFormat) -> ApiResult<Value> {
    match format {
        BodyFormat::Yaml | BodyFormat::ApplyPatch => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
            let v: Value = serde_yaml_ng::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("error converting YAML to JSON: {e}"))
            })?;
            Ok(v)
        }
        BodyFormat::Protobuf => ferrokube_common::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("unable to decode the protobuf body: {e}"))),
        _ => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
    }
}

/// Serializes a response body.
pub fn encode(value: &Value, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(value).unwrap_or_default(),
        Format::Yaml => serde_yaml_ng::to_string(value)
            .unwrap_or_default()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let n = negotiate(
            Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
            true,
        )
        .unwrap();
        assert_eq!(n.shape, Shape::Table);
        let n = negotiate(
            Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            false,
        )
        .unwrap();
        assert_eq!(n.shape, Shape::Object);
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), true)
                .unwrap_err()
                .code,
            406
        );
        let n = negotiate(Some("application/vnd.kubernetes.protobuf, */*"), true).unwrap();
        assert_eq!(n.format, Format::Json);
    }
}
