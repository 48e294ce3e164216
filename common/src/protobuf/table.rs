//! The descriptor table: per message, its fields' numbers, JSON names, types and Go
//! serialisation facts, loaded once from the generated `descriptors.json`.
//!
//! The file is written by `hack/gen-proto-descriptors.py`; its layout:
//! `{"special": {name: kind}, "kinds": [[group, version, kind, message]], "messages": {name:
//! [[number, jsonName, type, flags?]]}}` where `type` is a scalar code (`s` string, `b` bool,
//! `i` int32, `l` int64, `d` double, `y` bytes) or a message name, and `flags` holds `r`
//! (repeated), `m` (map keyed by string), `q` (Go always prints it, zero included), `p` (a Go
//! pointer: an explicit zero is meaningful) and `i` (a Go struct embedded inline in the JSON).
//! Rows are in Go's struct order, which is its JSON order; protobuf output goes by number.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    Time,
    MicroTime,
    Duration,
    FieldsV1,
    IntOrString,
    Quantity,
    RawExtension,
    /// apiextensions `JSON`: raw JSON bytes.
    Json,
    /// The JSONSchemaProps message index of the same package.
    SchemaOrArray(usize),
    SchemaOrBool(usize),
    SchemaOrStringArray(usize),
    /// A message holding only `repeated string items`, a plain array in JSON.
    StringList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    Bytes,
    Message(usize),
    Special(Special),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Single,
    Repeated,
    Map,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub number: u32,
    pub json: String,
    pub ty: Ty,
    pub shape: Shape,
    pub required: bool,
    pub pointer: bool,
    pub inline: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub name: String,
    /// In Go's struct order, which is the order of its JSON output.
    pub fields: Vec<Field>,
    /// Indices into `fields` sorted by field number, the order Go writes them in protobuf.
    pub by_number: Vec<usize>,
}

impl Message {
    pub fn field_index(&self, number: u32) -> Option<usize> {
        self.by_number
            .binary_search_by_key(&number, |&i| self.fields[i].number)
            .ok()
            .map(|i| self.by_number[i])
    }
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    pub messages: Vec<Message>,
    pub by_name: HashMap<String, usize>,
    /// (group, version, kind) -> message index.
    pub kinds: HashMap<(String, String, String), usize>,
}

impl Table {
    pub fn message(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<usize> {
        self.kinds
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .copied()
    }
}

pub(crate) static TABLE: LazyLock<Table> =
    LazyLock::new(|| load(include_str!("descriptors.json")).unwrap_or_default());

#[derive(Deserialize)]
struct RawTable {
    special: BTreeMap<String, String>,
    kinds: Vec<(String, String, String, String)>,
    messages: BTreeMap<String, Vec<serde_json::Value>>,
}

pub(crate) fn load(text: &str) -> Result<Table, String> {
    let raw: RawTable = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut table = Table::default();
    for (i, name) in raw.messages.keys().enumerate() {
        table.by_name.insert(name.clone(), i);
    }
    let resolve = |type_name: &str, table: &Table| -> Result<Ty, String> {
        Ok(match type_name {
            "s" => Ty::String,
            "b" => Ty::Bool,
            "i" => Ty::Int32,
            "l" => Ty::Int64,
            "d" => Ty::Double,
            "y" => Ty::Bytes,
            other => {
                if let Some(kind) = raw.special.get(other) {
                    Ty::Special(special(other, kind, table)?)
                } else {
                    Ty::Message(
                        table
                            .message(other)
                            .ok_or_else(|| format!("unknown message {other}"))?,
                    )
                }
            }
        })
    };
    let mut messages = Vec::with_capacity(raw.messages.len());
    for (name, rows) in &raw.messages {
        let mut fields = Vec::with_capacity(rows.len());
        for row in rows {
            let row = row.as_array().ok_or_else(|| format!("{name}: bad row"))?;
            let number = row
                .first()
                .and_then(|v| v.as_u64())
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{name}: bad field number"))?;
            let json = row
                .get(1)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{name}: bad field name"))?;
            let type_name = row
                .get(2)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{name}: bad field type"))?;
            let flags = row.get(3).and_then(|v| v.as_str()).unwrap_or("");
            fields.push(Field {
                number,
                json: json.to_string(),
                ty: resolve(type_name, &table)?,
                shape: if flags.contains('m') {
                    Shape::Map
                } else if flags.contains('r') {
                    Shape::Repeated
                } else {
                    Shape::Single
                },
                required: flags.contains('q'),
                pointer: flags.contains('p'),
                inline: flags.contains('i'),
            });
        }
        let mut by_number: Vec<usize> = (0..fields.len()).collect();
        by_number.sort_by_key(|&i| fields[i].number);
        messages.push(Message {
            name: name.clone(),
            fields,
            by_number,
        });
    }
    table.messages = messages;
    for (group, version, kind, message) in raw.kinds {
        let index = table
            .message(&message)
            .ok_or_else(|| format!("kind {kind}: unknown message {message}"))?;
        table.kinds.insert((group, version, kind), index);
    }
    Ok(table)
}

fn special(name: &str, kind: &str, table: &Table) -> Result<Special, String> {
    let schema = |suffix: &str| -> Result<usize, String> {
        let base = name
            .strip_suffix(suffix)
            .ok_or_else(|| format!("{name} does not end in {suffix}"))?;
        table
            .message(base)
            .ok_or_else(|| format!("{name}: no message {base}"))
    };
    Ok(match kind {
        "time" => Special::Time,
        "microtime" => Special::MicroTime,
        "duration" => Special::Duration,
        "fieldsv1" => Special::FieldsV1,
        "intorstring" => Special::IntOrString,
        "quantity" => Special::Quantity,
        "rawextension" => Special::RawExtension,
        "json" => Special::Json,
        "stringlist" => Special::StringList,
        "schemaorarray" => Special::SchemaOrArray(schema("OrArray")?),
        "schemaorbool" => Special::SchemaOrBool(schema("OrBool")?),
        "schemaorstringarray" => Special::SchemaOrStringArray(schema("OrStringArray")?),
        other => return Err(format!("{name}: unknown special kind {other}")),
    })
}
