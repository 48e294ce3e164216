//! Tests of the served documents as a whole.

use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::resources::builtin_resources;

fn table() -> ResourceTable {
    ResourceTable::new(builtin_resources())
}

fn get(
    docs: &Documents,
    table: &ResourceTable,
    uri: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    let path = req.uri().path().to_string();
    let Some(resp) = serve_from(docs, table, &req, &path) else {
        return (404, http::HeaderMap::new(), Vec::new());
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = futures::executor::block_on(resp.into_body().collect())
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    (status, headers, body)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn v2_document() {
    let (table, docs) = (table(), Documents::new(&table()));
    let (status, headers, body) = get(
        &docs,
        &table,
        "/openapi/v2",
        &[("accept", "application/json")],
    );
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let doc = json(&body);
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(doc["info"]["title"], "Kubernetes");
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
    let containers = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert!(containers["description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let list = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(list["x-kubernetes-action"], "list");
    assert_eq!(
        list["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodList"
    );

    let mut refs = Vec::new();
    schemas::collect_references(&doc, &mut refs);
    for r in refs {
        assert!(doc["definitions"].get(&r).is_some(), "dangling {r}");
    }

    let proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (status, headers, pb) = get(&docs, &table, "/openapi/v2", &[("accept", proto)]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], V2_PROTOBUF);
    assert!(pb.len() > 100_000 && pb.len() < body.len());
    assert_eq!(
        get(&docs, &table, "/openapi/v2", &[("accept", "text/plain")]).0,
        406
    );
    assert_eq!(
        get(&docs, &table, "/openapi/v2", &[("accept", "*/*")]).0,
        200
    );
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(
        get(&docs, &table, "/openapi/v2", &[("if-none-match", &etag)]).0,
        304
    );
}

#[test]
fn v3_index_and_group_version_documents() {
    let (table, docs) = (table(), Documents::new(&table()));
    let (status, _, body) = get(&docs, &table, "/openapi/v3", &[]);
    assert_eq!(status, 200);
    let index = json(&body);
    let paths = index["paths"].as_object().unwrap();
    for key in [
        "api",
        "api/v1",
        "apis",
        "apis/apps",
        "apis/apps/v1",
        "version",
    ] {
        assert!(paths.contains_key(key), "index lacks {key}");
    }
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = url.strip_prefix("/openapi/v3/apis/apps/v1?hash=").unwrap();
    assert_eq!(hash.len(), 128);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));

    let (status, headers, body) = get(&docs, &table, url, &[("accept", "application/json")]);
    assert_eq!(status, 200);
    assert_eq!(
        headers["cache-control"],
        "public, immutable, max-age=31536000"
    );
    assert_eq!(headers["etag"].to_str().unwrap(), format!("\"{hash}\""));
    let doc = json(&body);
    assert_eq!(doc["openapi"], "3.0.0");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    let params = patch["parameters"].as_array().unwrap();
    assert!(params
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    let body_types = patch["requestBody"]["content"].as_object().unwrap();
    assert!(body_types.contains_key("application/strategic-merge-patch+json"));
    assert!(body_types.contains_key("application/apply-patch+yaml"));

    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
    assert!(
        !schemas.contains_key("io.k8s.api.batch.v1.Job"),
        "only what apps/v1 needs"
    );
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(
        strategy["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
    );
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    let int_or_string = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["format"], "int-or-string");
    assert!(int_or_string["oneOf"].is_array());
    let mut refs = Vec::new();
    schemas::collect_references(&doc, &mut refs);
    for r in refs {
        assert!(schemas.contains_key(&r), "dangling {r}");
    }

    // Without a hash the document may change, so it is not cacheable; a stale hash redirects.
    let (_, headers, _) = get(&docs, &table, "/openapi/v3/apis/apps/v1", &[]);
    assert_eq!(headers["cache-control"], "no-cache, private");
    let (status, headers, _) = get(&docs, &table, "/openapi/v3/apis/apps/v1?hash=0123", &[]);
    assert_eq!(status, 301);
    assert_eq!(headers["location"], url);
    let etag = format!("\"{hash}\"");
    assert_eq!(get(&docs, &table, url, &[("if-none-match", &etag)]).0, 304);
    assert_eq!(get(&docs, &table, "/openapi/v3/apis/nope/v1", &[]).0, 404);
    assert_eq!(get(&docs, &table, url, &[("accept", "text/html")]).0, 406);
}

#[test]
fn every_patch_takes_field_validation() {
    // kubectl checks the first PATCH operation it meets for a kind; any of them must do.
    let (table, docs) = (table(), Documents::new(&table()));
    let built = docs.current(&table);
    for (key, served) in &built.v3().documents {
        let doc = json(&served.bytes);
        for (path, item) in doc["paths"].as_object().unwrap() {
            if let Some(patch) = item.get("patch") {
                let params = patch["parameters"].as_array().cloned().unwrap_or_default();
                let is_connect = patch["x-kubernetes-action"] == "connect";
                assert!(
                    is_connect || params.iter().any(|p| p["name"] == "fieldValidation"),
                    "{key} {path}"
                );
            }
        }
    }
}

#[test]
fn rebuilt_when_the_table_changes() {
    let table = table();
    let docs = Documents::new(&table);
    let first = docs.current(&table);
    assert!(Arc::ptr_eq(&first, &docs.current(&table)));
    docs.invalidate();
    let second = docs.current(&table);
    assert!(!Arc::ptr_eq(&first, &second));
    table.remove("batch", "v1", "jobs");
    let third = docs.current(&table);
    assert!(!Arc::ptr_eq(&second, &third));
    assert!(!third.routes.iter().any(|r| r.path.contains("/jobs")));
}
