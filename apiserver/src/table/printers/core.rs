//! Printers of core kinds.

use serde_json::{json, Value};

use super::super::{age, Column, Printer};
use crate::meta;

struct Namespace;
impl Printer for Namespace {
    fn columns(&self) -> &'static [Column] {
        const C: &[Column] = &[
            Column::name(),
            Column::new("Status", "string", "The status of the namespace"),
            Column::age(),
        ];
        C
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(meta::name(obj)),
            json!(meta::path(obj, "status.phase").and_then(Value::as_str).unwrap_or("")),
            json!(age(meta::str_field(obj, "creationTimestamp"))),
        ]
    }
}

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    Some(match (group, kind) {
        ("", "Namespace") => &Namespace,
        _ => return None,
    })
}
