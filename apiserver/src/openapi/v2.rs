//! The swagger 2.0 document served at `/openapi/v2`.

use serde_json::{json, Map, Value};

use super::parameters::Parameter;
use super::paths::{response_description, Operation, Payload, Route};
use super::schemas::{reference, Definitions};
use super::{security_scheme, INFO_TITLE, INFO_VERSION};

pub fn document(definitions: &Definitions, routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let mut item = Map::new();
        if !route.parameters.is_empty() {
            item.insert(
                "parameters".into(),
                route.parameters.iter().map(parameter).collect(),
            );
        }
        for op in &route.operations {
            item.insert(op.method.into(), operation(op));
        }
        paths.insert(route.path.clone(), Value::Object(item));
    }
    json!({
        "swagger": "2.0",
        "info": { "title": INFO_TITLE, "version": INFO_VERSION },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": { "BearerToken": security_scheme() },
        "security": [{ "BearerToken": [] }],
    })
}

fn parameter(p: &Parameter) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location.as_str(),
        "description": p.description,
        "type": p.type_,
        "uniqueItems": true,
    });
    if p.required() {
        v["required"] = true.into();
    }
    v
}

fn operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if let Some(body) = &op.body {
        let mut b = json!({ "name": "body", "in": "body", "schema": reference(&body.definition) });
        if body.required {
            b["required"] = true.into();
        }
        params.push(b);
    }
    params.extend(op.parameters.iter().map(parameter));
    let mut responses = Map::new();
    for (code, payload) in &op.responses {
        let mut r = json!({ "description": response_description(*code) });
        match payload {
            Payload::Definition(d) => r["schema"] = reference(d),
            Payload::Text => r["schema"] = json!({ "type": "string" }),
            Payload::Nothing => {}
        }
        responses.insert(code.to_string(), r);
    }
    let mut v = json!({
        "description": op.description,
        "operationId": op.id,
        "consumes": op.consumes,
        "produces": op.produces,
        "schemes": ["https"],
        "tags": [op.tag],
        "responses": responses,
    });
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
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
