//! The swagger 2.0 document as gnostic's `openapi.v2.Document` protobuf message, which
//! client-go's `OpenAPISchema()` asks for exclusively (kubectl's v2 fallback, `explain
//! --output plaintext-openapiv2`, and tools such as helm that validate against v2).
//!
//! The message is written straight from the JSON document, field numbers as in gnostic's
//! `OpenAPIv2.proto`. Values of free form (`default`, `example`, `enum`, vendor extensions)
//! go into `Any.yaml`; their JSON text is valid YAML, which is how readers decode them.

use serde_json::{Map, Value};

/// A message being written: fields appended in any order, as protobuf allows.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, s: &str) {
        // proto3 leaves out empty scalars.
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn strings(&mut self, field: u32, value: Option<&Value>) {
        for s in value.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn str_field(&mut self, field: u32, object: &Map<String, Value>, key: &str) {
        if let Some(s) = object.get(key).and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    fn bool_field(&mut self, field: u32, object: &Map<String, Value>, key: &str) {
        if let Some(b) = object.get(key).and_then(Value::as_bool) {
            self.boolean(field, b);
        }
    }
}

/// `Any { yaml = 2 }`.
fn any(value: &Value) -> Message {
    let mut m = Message::default();
    m.bytes(
        2,
        serde_json::to_string(value).unwrap_or_default().as_bytes(),
    );
    m
}

/// The `x-` keys of an object as repeated `NamedAny` in `field`.
fn vendor_extensions(m: &mut Message, field: u32, object: &Map<String, Value>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, any(value));
        m.message(field, named);
    }
}

/// Encodes a swagger 2.0 document.
pub fn document(doc: &Value) -> Vec<u8> {
    let empty = Map::new();
    let doc = doc.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    m.str_field(1, doc, "swagger");
    if let Some(info) = doc.get("info").and_then(Value::as_object) {
        let mut i = Message::default();
        i.str_field(1, info, "title");
        i.str_field(2, info, "version");
        i.str_field(3, info, "description");
        m.message(2, i);
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut p = Message::default();
        for (path, item) in paths {
            let mut named = Message::default();
            named.string(1, path);
            named.message(2, path_item(item.as_object().unwrap_or(&empty)));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(definitions) = doc.get("definitions").and_then(Value::as_object) {
        let mut d = Message::default();
        named_schemas(&mut d, 1, definitions);
        m.message(9, d);
    }
    for requirement in doc
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = Message::default();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut named = Message::default();
            named.string(1, name);
            let mut array = Message::default();
            array.strings(1, Some(scopes));
            named.message(2, array);
            r.message(1, named);
        }
        m.message(12, r);
    }
    if let Some(schemes) = doc.get("securityDefinitions").and_then(Value::as_object) {
        let mut s = Message::default();
        for (name, scheme) in schemes {
            let scheme = scheme.as_object().unwrap_or(&empty);
            let mut api_key = Message::default();
            api_key.str_field(1, scheme, "type");
            api_key.str_field(2, scheme, "name");
            api_key.str_field(3, scheme, "in");
            api_key.str_field(4, scheme, "description");
            vendor_extensions(&mut api_key, 5, scheme);
            let mut item = Message::default();
            item.message(2, api_key);
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, item);
            s.message(1, named);
        }
        m.message(13, s);
    }
    vendor_extensions(&mut m, 16, doc);
    m.0
}

fn path_item(item: &Map<String, Value>) -> Message {
    let mut m = Message::default();
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = item.get(method).and_then(Value::as_object) {
            m.message(field, operation(op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object() {
            m.message(9, parameter(p));
        }
    }
    vendor_extensions(&mut m, 10, item);
    m
}

fn operation(op: &Map<String, Value>) -> Message {
    let mut m = Message::default();
    m.strings(1, op.get("tags"));
    m.str_field(2, op, "summary");
    m.str_field(3, op, "description");
    m.str_field(5, op, "operationId");
    m.strings(6, op.get("produces"));
    m.strings(7, op.get("consumes"));
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object() {
            m.message(8, parameter(p));
        }
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let mut r = Message::default();
        for (code, response) in responses {
            let response = response.as_object().cloned().unwrap_or_default();
            let mut body = Message::default();
            body.str_field(1, &response, "description");
            if let Some(schema) = response.get("schema").and_then(Value::as_object) {
                let mut item = Message::default();
                item.message(1, self::schema(schema));
                body.message(2, item);
            }
            vendor_extensions(&mut body, 5, &response);
            let mut value = Message::default();
            value.message(1, body);
            let mut named = Message::default();
            named.string(1, code);
            named.message(2, value);
            r.message(1, named);
        }
        m.message(9, r);
    }
    m.strings(10, op.get("schemes"));
    m.bool_field(11, op, "deprecated");
    vendor_extensions(&mut m, 13, op);
    m
}

/// `ParametersItem { parameter = 1 }`, a body or a query/path parameter.
fn parameter(p: &Map<String, Value>) -> Message {
    let mut inner = Message::default();
    match p.get("in").and_then(Value::as_str) {
        Some("body") => {
            let mut b = Message::default();
            b.str_field(1, p, "description");
            b.str_field(2, p, "name");
            b.str_field(3, p, "in");
            b.bool_field(4, p, "required");
            if let Some(s) = p.get("schema").and_then(Value::as_object) {
                b.message(5, schema(s));
            }
            vendor_extensions(&mut b, 6, p);
            inner.message(1, b);
        }
        location => {
            // Query and path sub-schemas share their first fields; from `type` on, the query
            // one is one field further (it has allow_empty_value at 5).
            let (variant, shift) = if location == Some("path") {
                (4, 0)
            } else {
                (3, 1)
            };
            let mut s = Message::default();
            s.bool_field(1, p, "required");
            s.str_field(2, p, "in");
            s.str_field(3, p, "description");
            s.str_field(4, p, "name");
            s.str_field(5 + shift, p, "type");
            s.str_field(6 + shift, p, "format");
            s.bool_field(19 + shift, p, "uniqueItems");
            vendor_extensions(&mut s, 22 + shift, p);
            let mut non_body = Message::default();
            non_body.message(variant, s);
            inner.message(2, non_body);
        }
    }
    let mut item = Message::default();
    item.message(1, inner);
    item
}

fn named_schemas(m: &mut Message, field: u32, schemas: &Map<String, Value>) {
    let empty = Map::new();
    for (name, s) in schemas {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, schema(s.as_object().unwrap_or(&empty)));
        m.message(field, named);
    }
}

fn schema(s: &Map<String, Value>) -> Message {
    let mut m = Message::default();
    m.str_field(1, s, "$ref");
    m.str_field(2, s, "format");
    m.str_field(3, s, "title");
    m.str_field(4, s, "description");
    if let Some(v) = s.get("default") {
        m.message(5, any(v));
    }
    for (key, field) in [("multipleOf", 6), ("maximum", 7), ("minimum", 9)] {
        if let Some(v) = s.get(key).and_then(Value::as_f64) {
            m.double(field, v);
        }
    }
    m.bool_field(8, s, "exclusiveMaximum");
    m.bool_field(10, s, "exclusiveMinimum");
    for (key, field) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(v) = s.get(key).and_then(Value::as_i64) {
            m.int64(field, v);
        }
    }
    m.str_field(13, s, "pattern");
    m.bool_field(16, s, "uniqueItems");
    m.strings(19, s.get("required"));
    for v in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(v));
    }
    match s.get("additionalProperties") {
        Some(Value::Object(inner)) => {
            let mut a = Message::default();
            a.message(1, schema(inner));
            m.message(21, a);
        }
        Some(Value::Bool(b)) => {
            // A oneof member is present even when false, so it is written unconditionally.
            let mut a = Message::default();
            a.key(2, 0);
            a.varint(u64::from(*b));
            m.message(21, a);
        }
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => {
            let mut t_item = Message::default();
            t_item.string(1, t);
            m.message(22, t_item);
        }
        Some(types @ Value::Array(_)) => {
            let mut t_item = Message::default();
            t_item.strings(1, Some(types));
            m.message(22, t_item);
        }
        _ => {}
    }
    match s.get("items") {
        Some(Value::Object(inner)) => {
            let mut i = Message::default();
            i.message(1, schema(inner));
            m.message(23, i);
        }
        Some(Value::Array(list)) => {
            let mut i = Message::default();
            for inner in list.iter().filter_map(Value::as_object) {
                i.message(1, schema(inner));
            }
            m.message(23, i);
        }
        _ => {}
    }
    for inner in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(inner) = inner.as_object() {
            m.message(24, schema(inner));
        }
    }
    if let Some(properties) = s.get("properties").and_then(Value::as_object) {
        let mut p = Message::default();
        named_schemas(&mut p, 1, properties);
        m.message(25, p);
    }
    m.str_field(26, s, "discriminator");
    m.bool_field(27, s, "readOnly");
    if let Some(v) = s.get("example") {
        m.message(30, any(v));
    }
    vendor_extensions(&mut m, 31, s);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_format_of_a_small_document() {
        let doc = json!({
            "swagger": "2.0",
            "info": { "title": "T", "version": "v" },
        });
        // field 1 "2.0", field 2 { field 1 "T", field 2 "v" }
        assert_eq!(
            document(&doc),
            vec![0x0a, 3, b'2', b'.', b'0', 0x12, 6, 0x0a, 1, b'T', 0x12, 1, b'v']
        );
    }

    #[test]
    fn schema_fields() {
        let s = json!({ "type": "string", "x-kubernetes-list-type": "atomic" });
        let bytes = schema(s.as_object().unwrap()).0;
        // type = 22 (TypeItem { value: ["string"] }): key (22<<3|2) = 0xb2 0x01
        assert_eq!(&bytes[..4], &[0xb2, 0x01, 8, 0x0a]);
        // vendor_extension = 31: key (31<<3|2) = 0xfa 0x01
        assert!(bytes.windows(2).any(|w| w == [0xfa, 0x01]));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("x-kubernetes-list-type") && text.contains("\"atomic\""));
    }
}
