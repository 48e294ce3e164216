//! Discovery: the legacy documents (`/api`, `/apis`, `/apis/<group>`, group-version resource
//! lists) and aggregated discovery (apidiscovery.k8s.io/v2), all read off the resource table.

use http::{header, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::encoding::Format;
use crate::http::{bytes_response, respond, Body};
use crate::resources::{Resource, ResourceTable};
use crate::server::App;
use crate::status::{ApiError, ApiResult};

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any, in its order of preference.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
        if !params
            .first()
            .is_some_and(|e| e.eq_ignore_ascii_case("application/json"))
        {
            continue;
        }
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

pub fn serve(
    app: &App,
    req: &Request<hyper::body::Incoming>,
    legacy: bool,
    group: Option<&str>,
    version: Option<&str>,
) -> ApiResult<Response<Body>> {
    let table = &app.table;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match (group, version) {
        (None, _) => {
            if let Some(v) = aggregated_version(accept) {
                let doc = aggregated(table, legacy, v);
                let ct = if v == "v2" {
                    AGGREGATED_V2
                } else {
                    AGGREGATED_V2BETA1
                };
                return Ok(bytes_response(
                    StatusCode::OK,
                    serde_json::to_vec(&doc).unwrap_or_default().into(),
                    ct,
                ));
            }
            if legacy {
                Ok(respond(
                    StatusCode::OK,
                    &json!({
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": app.config.advertise_address,
                        }],
                    }),
                    Format::Json,
                ))
            } else {
                let groups: Vec<Value> = table
                    .groups()
                    .into_iter()
                    .filter(|(g, _)| !g.is_empty())
                    .map(|(g, versions)| api_group(&g, &versions))
                    .collect();
                Ok(respond(
                    StatusCode::OK,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                    Format::Json,
                ))
            }
        }
        (Some(g), None) => {
            let versions = table
                .groups()
                .into_iter()
                .find(|(name, _)| name == g)
                .map(|(_, v)| v)
                .ok_or_else(ApiError::path_not_found)?;
            let mut doc = api_group(g, &versions);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            Ok(respond(StatusCode::OK, &doc, Format::Json))
        }
        (Some(g), Some(v)) => {
            let rows = table.in_group_version(g, v);
            if rows.is_empty() {
                return Err(ApiError::path_not_found());
            }
            let group_version = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            let mut resources = Vec::new();
            for r in &rows {
                resources.push(legacy_resource(r));
                for s in &r.subresources {
                    let mut entry = json!({
                        "name": format!("{}/{}", r.plural, s.name),
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": s.kind.map_or(r.kind.as_str(), |k| k.2),
                        "verbs": s.verbs,
                    });
                    if let Some((sg, sv, _)) = s.kind {
                        if sg != r.group || sv != r.version {
                            entry["group"] = json!(sg);
                            entry["version"] = json!(sv);
                        }
                    }
                    resources.push(entry);
                }
            }
            Ok(respond(
                StatusCode::OK,
                &json!({
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": resources,
                }),
                Format::Json,
            ))
        }
    }
}

fn api_group(name: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": gv(&versions[0]),
    })
}

fn legacy_resource(r: &Resource) -> Value {
    let mut entry = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    entry
}

/// The aggregated document for `/api` (legacy) or `/apis`.
fn aggregated(table: &ResourceTable, legacy: bool, version: &str) -> Value {
    let items: Vec<Value> = table
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = table
                        .in_group_version(&g, v)
                        .iter()
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) =
                    s.kind
                        .unwrap_or((r.group.as_str(), r.version.as_str(), r.kind.as_str()));
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": g, "version": v, "kind": k},
                    "verbs": s.verbs,
                })
            })
            .collect();
        entry["subresources"] = json!(subs);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kubectl_accept_header() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        assert_eq!(aggregated_version("application/json"), None);
    }
}
