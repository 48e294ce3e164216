//! The Event printer, shared by core/v1 and events.k8s.io/v1 events.
//!
//! Upstream serves both groups from one store and prints the internal form, so the two
//! print alike; objects reach us in the requested version, hence one field map per group.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{int_at, name, since, str_at};

/// Where each printed field lives in one group's JSON.
pub(super) struct Event {
    first: &'static str,
    last: &'static str,
    count: &'static str,
    regarding: &'static str,
    source: &'static str,
    controller: &'static str,
    message: &'static str,
}

pub(super) const CORE: Event = Event {
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    regarding: "involvedObject",
    source: "source",
    controller: "reportingComponent",
    message: "message",
};

pub(super) const EVENTS_V1: Event = Event {
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    regarding: "regarding",
    source: "deprecatedSource",
    controller: "reportingController",
    message: "note",
};

const COLUMNS: &[Column] = &[
    Column::new("Last Seen", "string", "Time since the event last occurred."),
    Column::new("Type", "string", "Normal or Warning."),
    Column::new(
        "Reason",
        "string",
        "Why the event happened, in a short machine-readable form.",
    ),
    Column::new("Object", "string", "The object the event is about."),
    Column::new(
        "Subobject",
        "string",
        "The part of the object the event is about.",
    )
    .wide(),
    Column::new("Source", "string", "The component that reported the event.").wide(),
    Column::new(
        "Message",
        "string",
        "A human-readable description of the event.",
    ),
    Column::new(
        "First Seen",
        "string",
        "Time since the event first occurred.",
    )
    .wide(),
    Column::new("Count", "string", "How many times the event occurred.").wide(),
    Column::name().wide(),
];

fn set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
}

impl Printer for Event {
    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, ev: &Value) -> Vec<Value> {
        // New-style events carry only eventTime; the deprecated timestamps fall back to it.
        let first = if set(ev.get(self.first)) {
            since(ev, self.first)
        } else {
            since(ev, "eventTime")
        };
        let mut last = if set(ev.get(self.last)) {
            since(ev, self.last)
        } else {
            first.clone()
        };
        let mut count = int_at(ev, self.count);
        if ev.get("series").is_some_and(Value::is_object) {
            last = since(ev, "series.lastObservedTime");
            count = int_at(ev, "series.count");
        } else if count == 0 {
            count = 1;
        }

        let regarding = ev.get(self.regarding).unwrap_or(&Value::Null);
        let kind = str_at(regarding, "kind").to_lowercase();
        let target_name = str_at(regarding, "name");
        let target = if target_name.is_empty() {
            kind
        } else {
            format!("{kind}/{target_name}")
        };

        let source = ev.get(self.source).unwrap_or(&Value::Null);
        let component = first_non_empty(str_at(source, "component"), str_at(ev, self.controller));
        let host = first_non_empty(str_at(source, "host"), str_at(ev, "reportingInstance"));
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };

        vec![
            json!(last),
            json!(str_at(ev, "type")),
            json!(str_at(ev, "reason")),
            json!(target),
            json!(str_at(regarding, "fieldPath")),
            json!(source),
            json!(str_at(ev, self.message).trim()),
            json!(first),
            json!(count),
            name(ev),
        ]
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: i64) -> String {
        (chrono::Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
    }

    #[test]
    fn core_event() {
        let ev = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "type": "Normal", "message": "  Pulled image \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(30 * 3600), "lastTimestamp": ago(3 * 3600), "count": 4
        });
        assert_eq!(
            CORE.cells(&ev),
            vec![
                json!("3h"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("Pulled image"),
                json!("30h"),
                json!(4),
                json!("web.17a"),
            ]
        );
    }

    #[test]
    fn new_style_event_through_core() {
        let ev = json!({
            "involvedObject": {"kind": "Node"},
            "eventTime": ago(3 * 3600),
            "firstTimestamp": null,
            "reportingComponent": "scheduler",
            "source": {}
        });
        let c = CORE.cells(&ev);
        assert_eq!(c[0], json!("3h"));
        assert_eq!(c[3], json!("node"));
        assert_eq!(c[5], json!("scheduler"));
        assert_eq!(c[7], json!("3h"));
        assert_eq!(c[8], json!(1));
    }

    #[test]
    fn series_and_events_v1() {
        let ev = json!({
            "regarding": {"kind": "Deployment", "name": "d"},
            "note": "scaled",
            "eventTime": ago(30 * 3600),
            "reportingController": "deployment-controller",
            "reportingInstance": "cm-1",
            "series": {"count": 7, "lastObservedTime": ago(3 * 3600)}
        });
        let c = EVENTS_V1.cells(&ev);
        assert_eq!(c[0], json!("3h"));
        assert_eq!(c[3], json!("deployment/d"));
        assert_eq!(c[5], json!("deployment-controller, cm-1"));
        assert_eq!(c[6], json!("scaled"));
        assert_eq!(c[7], json!("30h"));
        assert_eq!(c[8], json!(7));
    }

    #[test]
    fn empty_event() {
        let c = CORE.cells(&json!({}));
        assert_eq!(c[0], json!("<unknown>"));
        assert_eq!(c[7], json!("<unknown>"));
        assert_eq!(c[8], json!(1));
        assert_eq!(c[3], json!(""));
    }
}
