//! The Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) of the built-in
//! types, to and from the JSON form the apiserver keeps objects in.
//!
//! A protobuf object on the wire is the four bytes `k8s\0` followed by a `runtime.Unknown`
//! message whose `typeMeta` names the apiVersion and kind and whose `raw` holds the object's
//! own message. Message layouts come from the generated descriptor table (see
//! `hack/gen-proto-descriptors.py`); the handful of types whose JSON form is not a plain object
//! of their fields (times, durations, int-or-string, quantities, raw extensions, managed
//! fields, the apiextensions schema unions, string-list wrappers) are converted by hand so
//! that the JSON is what Go's `encoding/json` would print for the same value.
//!
//! Watch streams differ: each frame is a 4-byte big-endian length followed by a bare
//! `WatchEvent` message (no `k8s\0` envelope), whose object is a full enveloped protobuf
//! object; see [`encode_watch_event`].

mod decode;
mod encode;
mod table;
mod timefmt;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use encode::Encoder;
use table::TABLE;
use wire::{put_bytes, Reader, WireValue};

/// The media type of the Kubernetes protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The prefix of every enveloped protobuf object.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// How deeply messages and embedded objects may nest before input is refused.
pub const MAX_DEPTH: usize = 100;

const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

/// Kinds upstream registers in every group version, so any apiVersion may name them.
const META_KINDS: &[(&str, &str)] = &[
    ("WatchEvent", WATCH_EVENT),
    ("Status", "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
    (
        "DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ),
    (
        "ListOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListOptions",
    ),
    (
        "GetOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.GetOptions",
    ),
    (
        "CreateOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.CreateOptions",
    ),
    (
        "UpdateOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.UpdateOptions",
    ),
    (
        "PatchOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.PatchOptions",
    ),
];

/// Why bytes could not be decoded or a JSON object could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("not a Kubernetes protobuf object: the k8s\\0 prefix is missing")]
    MissingMagic,
    #[error("protobuf data is truncated")]
    Truncated,
    #[error("malformed protobuf data: {0}")]
    Malformed(String),
    #[error("no protobuf message is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("no protobuf message is known as {0:?}")]
    UnknownMessage(String),
    #[error("{field}: {message}")]
    InvalidValue { field: String, message: String },
    #[error("objects nest more than {0} levels deep")]
    TooDeep(usize),
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedEncoding(String),
}

impl ProtoError {
    pub(crate) fn invalid(field: &str, message: &str) -> Self {
        ProtoError::InvalidValue {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

fn message_for_kind(api_version: &str, kind: &str) -> Option<usize> {
    let (group, version) = split_api_version(api_version);
    TABLE.kind(group, version, kind).or_else(|| {
        META_KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, name)| TABLE.message(name))
    })
}

/// The OpenAPI definition name of the message that carries `apiVersion`/`kind` in protobuf.
pub fn definition_for(api_version: &str, kind: &str) -> Option<&'static str> {
    message_for_kind(api_version, kind).map(|i| TABLE.messages[i].name.as_str())
}

/// Whether objects of this apiVersion and kind have a protobuf form.
pub fn is_supported(api_version: &str, kind: &str) -> bool {
    message_for_kind(api_version, kind).is_some()
}

/// Decodes an enveloped protobuf object into its JSON form, `kind` and `apiVersion` first.
pub fn decode(bytes: &[u8]) -> Result<Value, ProtoError> {
    decode_at(bytes, 0)
}

pub(crate) fn decode_at(bytes: &[u8], depth: usize) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    let body = bytes.strip_prefix(&MAGIC).ok_or(ProtoError::MissingMagic)?;
    let unknown = parse_unknown(body)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtoError::UnsupportedEncoding(unknown.content_encoding));
    }
    let msg = message_for_kind(&unknown.api_version, &unknown.kind).ok_or_else(|| {
        ProtoError::UnknownKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        }
    })?;
    let fields = decode::message(&TABLE, msg, unknown.raw, depth + 1)?;
    // Go's TypeMeta puts kind before apiVersion.
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("kind".into(), Value::String(unknown.kind));
    out.insert("apiVersion".into(), Value::String(unknown.api_version));
    out.extend(fields);
    Ok(Value::Object(out))
}

struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

fn parse_unknown(body: &[u8]) -> Result<Unknown<'_>, ProtoError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let bad = |what: &str| ProtoError::Malformed(format!("runtime.Unknown: bad {what}"));
    let mut unknown = Unknown {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
    };
    let mut reader = Reader::new(body);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut inner = Reader::new(type_meta);
                while let Some((n, v)) = inner.field()? {
                    match (n, v) {
                        (1, WireValue::Bytes(b)) => unknown.api_version = text(b),
                        (2, WireValue::Bytes(b)) => unknown.kind = text(b),
                        (1 | 2, _) => return Err(bad("typeMeta")),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(raw)) => unknown.raw = raw,
            (3, WireValue::Bytes(b)) => unknown.content_encoding = text(b),
            (4, WireValue::Bytes(_)) => {}
            (1..=4, _) => return Err(bad("field type")),
            _ => {}
        }
    }
    Ok(unknown)
}

/// Encodes a JSON object of a built-in kind as an enveloped protobuf object.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtoError> {
    encode_at(obj, 0)
}

fn encode_at(obj: &Value, depth: usize) -> Result<Vec<u8>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    let map = obj
        .as_object()
        .ok_or_else(|| ProtoError::invalid("object", "expected a JSON object"))?;
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let msg = message_for_kind(api_version, kind).ok_or_else(|| ProtoError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let mut raw = Vec::new();
    Encoder { table: &TABLE }.message(msg, map, &mut raw, depth + 1)?;
    Ok(envelope(api_version, kind, &raw))
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    out.extend_from_slice(&MAGIC);
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, raw);
    // Go writes the empty contentEncoding and contentType too.
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    out
}

fn message_index(definition: &str) -> Result<usize, ProtoError> {
    TABLE
        .message(definition)
        .ok_or_else(|| ProtoError::UnknownMessage(definition.to_string()))
}

/// Decodes a bare message (no envelope) of the named OpenAPI definition, e.g.
/// `io.k8s.api.core.v1.Pod`. The result carries no `kind`/`apiVersion`.
pub fn decode_message(definition: &str, bytes: &[u8]) -> Result<Value, ProtoError> {
    let msg = message_index(definition)?;
    Ok(Value::Object(decode::message(&TABLE, msg, bytes, 0)?))
}

/// Encodes the JSON form of the named OpenAPI definition as a bare message (no envelope).
pub fn encode_message(definition: &str, value: &Value) -> Result<Vec<u8>, ProtoError> {
    let msg = message_index(definition)?;
    let map = value
        .as_object()
        .ok_or_else(|| ProtoError::invalid(definition, "expected a JSON object"))?;
    let mut out = Vec::new();
    Encoder { table: &TABLE }.message(msg, map, &mut out, 0)?;
    Ok(out)
}

/// One frame of a protobuf watch stream: the 4-byte big-endian length, then a `WatchEvent`
/// message (type, and the object as an enveloped protobuf object). As upstream's stream
/// serializer writes it, the event itself carries no `k8s\0` envelope.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtoError> {
    let embedded = encode_at(object, 1)?;
    let mut raw_extension = Vec::with_capacity(embedded.len() + 8);
    put_bytes(&mut raw_extension, 1, &embedded);
    let mut event = Vec::with_capacity(raw_extension.len() + event_type.len() + 8);
    put_bytes(&mut event, 1, event_type.as_bytes());
    put_bytes(&mut event, 2, &raw_extension);
    let len = u32::try_from(event.len())
        .map_err(|_| ProtoError::invalid("object", "watch event larger than 4 GiB"))?;
    let mut frame = Vec::with_capacity(event.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&event);
    Ok(frame)
}

/// Splits the first frame off a protobuf watch stream buffer: `Ok(None)` while the frame is
/// still incomplete, otherwise the decoded event `{"type", "object"}` and the bytes it used.
pub fn decode_watch_frame(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtoError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let end = len.checked_add(4).ok_or(ProtoError::Truncated)?;
    let Some(payload) = buf.get(4..end) else {
        return Ok(None);
    };
    Ok(Some((decode_watch_event(payload)?, end)))
}

/// Decodes the payload of one watch frame (a bare `WatchEvent` message) into
/// `{"type": ..., "object": ...}`.
pub fn decode_watch_event(payload: &[u8]) -> Result<Value, ProtoError> {
    decode_message(WATCH_EVENT, payload)
}
