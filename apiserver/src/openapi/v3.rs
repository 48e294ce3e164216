//! The OpenAPI 3.0 documents served under `/openapi/v3`: one per group-version (and per
//! discovery path), each with only the schemas its paths need, and the index that lists them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::parameters::Parameter;
use super::paths::{response_description, Operation, Payload, Route};
use super::schemas::{self, Definitions, INT_OR_STRING, QUANTITY};
use super::{security_scheme, INFO_TITLE, INFO_VERSION};

/// The definitions rewritten for v3, computed once and shared by every document.
pub fn convert_definitions(definitions: &Definitions) -> Definitions {
    definitions
        .iter()
        .map(|(name, definition)| {
            (
                name.clone(),
                convert_definition(name, definition, definitions),
            )
        })
        .collect()
}

/// The documents by key (`api/v1`, `apis/apps/v1`, `apis/apps`, `api`, `apis`, `version`).
pub fn documents(schemas: &Definitions, routes: &[Route]) -> BTreeMap<String, Value> {
    let mut by_document: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
    for route in routes {
        by_document
            .entry(route.document.as_str())
            .or_default()
            .push(route);
    }
    by_document
        .into_iter()
        .map(|(key, routes)| (key.to_string(), document(schemas, &routes)))
        .collect()
}

fn document(schemas: &Definitions, routes: &[&Route]) -> Value {
    let mut paths = Map::new();
    let mut roots: Vec<String> = Vec::new();
    for route in routes {
        let mut item = Map::new();
        if !route.parameters.is_empty() {
            item.insert(
                "parameters".into(),
                route.parameters.iter().map(parameter).collect(),
            );
        }
        for op in &route.operations {
            if let Some(body) = &op.body {
                roots.push(body.definition.clone());
            }
            roots.extend(
                op.responses
                    .iter()
                    .filter_map(|(_, p)| p.definition().map(str::to_string)),
            );
            item.insert(op.method.into(), operation(op));
        }
        paths.insert(route.path.clone(), Value::Object(item));
    }
    let needed = schemas::closure(schemas, roots.iter().map(String::as_str));
    let components: Map<String, Value> = needed
        .into_iter()
        .filter_map(|name| schemas.get(&name).map(|s| (name, s.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": { "title": INFO_TITLE, "version": INFO_VERSION },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "BearerToken": security_scheme() },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// The index at `/openapi/v3`.
pub fn index<'a>(hashes: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    let paths: Map<String, Value> = hashes
        .into_iter()
        .map(|(key, hash)| {
            (
                key.clone(),
                json!({ "serverRelativeURL": server_relative_url(key, hash) }),
            )
        })
        .collect();
    json!({ "paths": paths })
}

pub fn server_relative_url(key: &str, hash: &str) -> String {
    format!("/openapi/v3/{key}?hash={hash}")
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn parameter(p: &Parameter) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location.as_str(),
        "description": p.description,
        "schema": { "type": p.type_, "uniqueItems": true },
    });
    if p.required() {
        v["required"] = true.into();
    }
    v
}

fn content(media: &[&str], schema: &Value) -> Value {
    let map: Map<String, Value> = media
        .iter()
        .map(|m| (m.to_string(), json!({ "schema": schema })))
        .collect();
    Value::Object(map)
}

fn operation(op: &Operation) -> Value {
    let mut responses = Map::new();
    for (code, payload) in &op.responses {
        let mut r = json!({ "description": response_description(*code) });
        let schema = match payload {
            Payload::Definition(d) => Some(reference(d)),
            Payload::Text => Some(json!({ "type": "string" })),
            Payload::Nothing => None,
        };
        if let Some(schema) = schema {
            r["content"] = content(op.produces, &schema);
        }
        responses.insert(code.to_string(), r);
    }
    let mut v = json!({
        "description": op.description,
        "operationId": op.id,
        "tags": [op.tag],
        "responses": responses,
    });
    if !op.parameters.is_empty() {
        v["parameters"] = op.parameters.iter().map(parameter).collect();
    }
    if let Some(body) = &op.body {
        let mut b = json!({ "content": content(op.consumes, &reference(&body.definition)) });
        if body.required {
            b["required"] = true.into();
        }
        v["requestBody"] = b;
    }
    if let Some(action) = op.action {
        v["x-kubernetes-action"] = action.into();
    }
    if let Some((group, version, kind)) = &op.gvk {
        v["x-kubernetes-group-version-kind"] =
            json!({ "group": group, "kind": kind, "version": version });
    }
    v
}

/// One definition in v3 form: references into `components`, `allOf` around references that
/// carry siblings (3.0 ignores siblings of `$ref`), and the zero-value defaults upstream's
/// generator writes for fields that are always serialised.
fn convert_definition(name: &str, definition: &Value, all: &Definitions) -> Value {
    match name {
        // 3.0 can say what these are, which 2.0 could only hint at with a format.
        INT_OR_STRING => {
            let mut v = json!({ "format": "int-or-string", "oneOf": [{ "type": "integer" }, { "type": "string" }] });
            copy_description(definition, &mut v);
            return v;
        }
        QUANTITY => {
            let mut v = json!({ "oneOf": [{ "type": "string" }, { "type": "number" }] });
            copy_description(definition, &mut v);
            return v;
        }
        _ => {}
    }
    let mut out = definition.clone();
    let top_level = definition.get("x-kubernetes-group-version-kind").is_some();
    let required: Vec<String> = definition
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = out.get_mut("properties") {
        for (field, property) in properties.iter_mut() {
            let always_serialised = required.contains(field)
                || (top_level && matches!(field.as_str(), "metadata" | "spec" | "status"));
            add_default(property, always_serialised, all);
        }
    }
    convert_schema(out)
}

fn copy_description(from: &Value, to: &mut Value) {
    if let Some(d) = from.get("description") {
        to["description"] = d.clone();
    }
}

/// The zero value of a field that is always serialised, as upstream publishes it: `""`, `0`,
/// `false`, or `{}` for a nested object; and `{}` for the objects inside arrays.
fn add_default(property: &mut Value, always_serialised: bool, all: &Definitions) {
    let Some(object) = property.as_object_mut() else {
        return;
    };
    if always_serialised && !object.contains_key("default") {
        let zero = match object.get("type").and_then(Value::as_str) {
            Some("string") if !object.contains_key("format") => Some(json!("")),
            Some("integer") | Some("number") => Some(json!(0)),
            Some("boolean") => Some(json!(false)),
            None => object
                .get("$ref")
                .and_then(Value::as_str)
                .filter(|r| refers_to_object(r, all))
                .map(|_| json!({})),
            _ => None,
        };
        if let Some(zero) = zero {
            object.insert("default".into(), zero);
        }
    }
    if let Some(Value::Object(items)) = object.get_mut("items") {
        let is_object = items
            .get("$ref")
            .and_then(Value::as_str)
            .is_some_and(|r| refers_to_object(r, all));
        if is_object && !items.contains_key("default") {
            items.insert("default".into(), json!({}));
        }
    }
}

fn refers_to_object(reference: &str, all: &Definitions) -> bool {
    schemas::referenced_name(reference)
        .and_then(|name| all.get(name))
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("object")
}

/// Rewrites references and wraps those with siblings, at every depth.
fn convert_schema(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    for key in ["items", "additionalProperties", "not"] {
        if let Some(v) = map.remove(key) {
            map.insert(key.into(), convert_schema(v));
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for property in properties.values_mut() {
            *property = convert_schema(std::mem::take(property));
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(list)) = map.get_mut(key) {
            for s in list.iter_mut() {
                *s = convert_schema(std::mem::take(s));
            }
        }
    }
    if let Some(Value::String(r)) = map.remove("$ref") {
        let target = schemas::referenced_name(&r).unwrap_or(&r).to_string();
        if map.is_empty() {
            return reference(&target);
        }
        map.insert("allOf".into(), json!([reference(&target)]));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_with_siblings_are_wrapped() {
        let mut all = Definitions::new();
        all.insert("a.Spec".into(), json!({ "type": "object" }));
        let definition = json!({
            "type": "object",
            "properties": {
                "spec": { "$ref": "#/definitions/a.Spec", "description": "the spec" },
                "list": { "type": "array", "items": { "$ref": "#/definitions/a.Spec" } },
                "name": { "type": "string" },
            },
            "required": ["name"],
        });
        let v3 = convert_definition("a.Kind", &definition, &all);
        assert_eq!(
            v3["properties"]["spec"],
            json!({ "allOf": [{ "$ref": "#/components/schemas/a.Spec" }], "description": "the spec" })
        );
        assert_eq!(
            v3["properties"]["list"]["items"],
            json!({ "allOf": [{ "$ref": "#/components/schemas/a.Spec" }], "default": {} })
        );
        assert_eq!(v3["properties"]["name"]["default"], "");
    }
}
