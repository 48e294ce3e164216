//! Table output (`as=Table`), which `kubectl get` prints: upstream's columns per kind, and
//! Name plus Created At for kinds without a printer of their own.

mod printers;

use serde_json::{json, Value};

use crate::meta;
use crate::resources::Resource;

/// One column of a kind's table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type of the cells: string, integer, number, boolean, date.
    pub kind: &'static str,
    /// `name` for the column holding object names, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for columns always shown, 1 for those only in `-o wide`.
    pub priority: u8,
}

impl Column {
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Column {
            name,
            kind,
            format: "",
            description,
            priority: 0,
        }
    }
    /// The Name column every table starts with.
    pub const fn name() -> Self {
        Column {
            name: "Name",
            kind: "string",
            format: "name",
            description: "Name must be unique within a namespace.",
            priority: 0,
        }
    }
    /// The Age column most tables end with.
    pub const fn age() -> Self {
        Column::new("Age", "string", "Time since the object was created.")
    }
    /// Shown only with `-o wide`.
    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
}

/// A kind's printer: its columns and the cells of one object.
pub trait Printer: Sync {
    fn columns(&self) -> &'static [Column];
    fn cells(&self, obj: &Value) -> Vec<Value>;
    /// The row's `conditions` (upstream marks finished pods `Completed`), if any.
    fn row_conditions(&self, _obj: &Value) -> Option<Value> {
        None
    }
    /// Reorders the rows of a list, for the few kinds whose upstream printer sorts them.
    fn order(&self, _objs: &mut [&Value]) {}
}

struct DefaultPrinter;

impl Printer for DefaultPrinter {
    fn columns(&self) -> &'static [Column] {
        const COLS: &[Column] = &[
            Column::name(),
            Column {
                name: "Created At",
                kind: "date",
                format: "",
                description: "The time at which the object was created.",
                priority: 0,
            },
        ];
        COLS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(meta::name(obj)),
            json!(meta::str_field(obj, "creationTimestamp").unwrap_or("")),
        ]
    }
}

fn printer_for(res: &Resource) -> &'static dyn Printer {
    printers::lookup(&res.group, &res.kind).unwrap_or(&DefaultPrinter)
}

/// The metadata-only form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Renders objects as a Table. `include_object` is the request's includeObject (None,
/// Metadata or Object).
pub fn to_table(
    res: &Resource,
    objs: &[&Value],
    list_meta: &Value,
    include_object: &str,
    _watch: bool,
) -> Value {
    let printer = printer_for(res);
    let columns: Vec<Value> = printer
        .columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let mut objs: Vec<&Value> = objs.to_vec();
    printer.order(&mut objs);
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": printer.cells(obj) });
            if let Some(conditions) = printer.row_conditions(obj) {
                row["conditions"] = conditions;
            }
            match include_object {
                "None" => {}
                "Object" => row["object"] = (*obj).clone(),
                _ => row["object"] = partial_metadata(obj),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The time since an RFC 3339 timestamp, as upstream's printers show ages ("5m", "3d4h").
pub fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let elapsed = chrono::Utc::now().signed_duration_since(ts);
    human_duration(elapsed.num_seconds())
}

/// Upstream's short human form of a duration in seconds.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let m = s / 60;
    let h = m / 60;
    let d = h / 24;
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{y}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }
}
