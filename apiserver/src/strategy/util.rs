//! What the kind strategies share: reading JSON with type checks while tracking the field path
//! upstream reports, the small validators of apimachinery, and in-place defaulting helpers.
//!
//! Objects arrive as arbitrary JSON, so every read is checked: a value of the wrong type gives
//! a `FieldError` (never a panic) and is then treated as absent.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrokube_common::labels::{self as lv, Selector};
use ferrokube_common::quantity::Quantity;
use serde_json::{Map, Value};

use crate::status::{FieldError, FieldErrorKind};

pub(super) type Errs = Vec<FieldError>;

pub(super) const IMMUTABLE: &str = "field is immutable";
pub(super) const NEGATIVE: &str = "must be greater than or equal to 0";

/// A value at a field path. Absent and `null` read alike, as Go's zero values do.
#[derive(Clone, Debug)]
pub(super) struct At<'a> {
    pub v: Option<&'a Value>,
    pub path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, v: &Value, want: &str) -> FieldError {
    FieldError::type_invalid(
        path,
        v.clone(),
        format!("must be {want}, not {}", type_name(v)),
    )
}

impl<'a> At<'a> {
    pub fn new(v: &'a Value, path: &str) -> Self {
        At {
            v: Some(v).filter(|v| !v.is_null()),
            path: path.to_string(),
        }
    }

    pub fn child(&self, key: &str) -> At<'a> {
        At {
            v: self
                .v
                .and_then(|v| v.as_object())
                .and_then(|m| m.get(key))
                .filter(|v| !v.is_null()),
            path: join(&self.path, key),
        }
    }

    /// A nested child, `a.b.c` given as one dotted string.
    pub fn at(&self, dotted: &str) -> At<'a> {
        dotted.split('.').fold(self.clone(), |a, k| a.child(k))
    }

    /// The path of an element of this list, as upstream's `Index`.
    pub fn index_path(&self, i: usize) -> String {
        format!("{}[{i}]", self.path)
    }

    /// The path of an entry of this map, as upstream's `Key`.
    pub fn key_path(&self, k: &str) -> String {
        format!("{}[{k}]", self.path)
    }

    pub fn is_set(&self) -> bool {
        self.v.is_some()
    }

    /// The value, `null` when absent: what error messages show.
    pub fn value(&self) -> Value {
        self.v.cloned().unwrap_or(Value::Null)
    }

    pub fn s(&self) -> Option<&'a str> {
        self.v.and_then(Value::as_str)
    }

    pub fn i(&self) -> Option<i64> {
        self.v.and_then(as_integer)
    }

    pub fn b(&self) -> Option<bool> {
        self.v.and_then(Value::as_bool)
    }

    /// Number of entries of a list or map (0 for anything else).
    pub fn len(&self) -> usize {
        match self.v {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(m)) => m.len(),
            _ => 0,
        }
    }

    pub fn str(&self, errs: &mut Errs) -> Option<&'a str> {
        match self.v {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                errs.push(type_error(&self.path, other, "a string"));
                None
            }
        }
    }

    /// A string field, `""` when absent or mistyped.
    pub fn string(&self, errs: &mut Errs) -> &'a str {
        self.str(errs).unwrap_or("")
    }

    pub fn int(&self, errs: &mut Errs) -> Option<i64> {
        match self.v {
            None => None,
            Some(v) => match as_integer(v) {
                Some(n) => Some(n),
                None => {
                    errs.push(type_error(&self.path, v, "an integer"));
                    None
                }
            },
        }
    }

    pub fn bool(&self, errs: &mut Errs) -> Option<bool> {
        match self.v {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                errs.push(type_error(&self.path, other, "a boolean"));
                None
            }
        }
    }

    pub fn obj(&self, errs: &mut Errs) -> Option<&'a Map<String, Value>> {
        match self.v {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                errs.push(type_error(&self.path, other, "an object"));
                None
            }
        }
    }

    /// The elements of a list, each with its indexed path.
    pub fn items(&self, errs: &mut Errs) -> Vec<At<'a>> {
        match self.v {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| At {
                    v: Some(v).filter(|v| !v.is_null()),
                    path: self.index_path(i),
                })
                .collect(),
            Some(other) => {
                errs.push(type_error(&self.path, other, "an array"));
                Vec::new()
            }
        }
    }

    /// The entries of a map, each with its keyed path.
    pub fn entries(&self, errs: &mut Errs) -> Vec<(&'a str, At<'a>)> {
        match self.obj(errs) {
            None => Vec::new(),
            Some(m) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        At {
                            v: Some(v).filter(|v| !v.is_null()),
                            path: self.key_path(k),
                        },
                    )
                })
                .collect(),
        }
    }

    /// A map of strings (labels, selectors, data); mistyped values are reported and skipped.
    pub fn str_map(&self, errs: &mut Errs) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in self.entries(errs) {
            if let Some(s) = v.str(errs) {
                out.insert(k.to_string(), s.to_string());
            }
        }
        out
    }

    /// A list of strings; mistyped elements are reported and skipped.
    pub fn strings(&self, errs: &mut Errs) -> Vec<&'a str> {
        self.items(errs)
            .into_iter()
            .filter_map(|item| item.str(errs))
            .collect()
    }

    /// A map of strings read without reporting types (for a second look at a checked field).
    pub fn str_map_quiet(&self) -> BTreeMap<String, String> {
        self.str_map(&mut Vec::new())
    }
}

/// Integers may arrive as `3` or `3.0`; anything fractional is not one.
pub(super) fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors upstream builds by hand
// ---------------------------------------------------------------------------------------------

/// An `Invalid` error that shows no value, as upstream's `field.OmitValueType`.
pub(super) fn invalid_omit(path: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Invalid,
        field: path.into(),
        value: None,
        detail: detail.into(),
    }
}

/// A reference to something that does not exist. The error kinds here have no `NotFound`, so
/// this is reported as an invalid value saying so.
pub(super) fn not_found(path: impl Into<String>, value: impl Into<Value>) -> FieldError {
    FieldError::not_found(path, value)
}

pub(super) fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// `ValidateImmutableField`: any difference is an error on the new value.
pub(super) fn immutable(errs: &mut Errs, new: &At, old: &At) {
    if new.v != old.v {
        errs.push(FieldError::invalid(
            new.path.clone(),
            new.value(),
            IMMUTABLE,
        ));
    }
}

pub(super) fn nonnegative(errs: &mut Errs, at: &At) {
    if let Some(n) = at.int(errs) {
        if n < 0 {
            errs.push(FieldError::invalid(at.path.clone(), n, NEGATIVE));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

fn each(errs: &mut Errs, path: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(path, value, m));
    }
}

pub(super) fn dns_label(errs: &mut Errs, path: &str, v: &str) {
    each(errs, path, v, lv::is_dns1123_label(v));
}

pub(super) fn dns_subdomain(errs: &mut Errs, path: &str, v: &str) {
    each(errs, path, v, lv::is_dns1123_subdomain(v));
}

pub(super) fn dns1035_label(errs: &mut Errs, path: &str, v: &str) {
    each(errs, path, v, lv::is_dns1035_label(v));
}

pub(super) fn qualified_name(errs: &mut Errs, path: &str, v: &str) {
    each(errs, path, v, lv::validate_qualified_name(v));
}

pub(super) fn label_value(errs: &mut Errs, path: &str, v: &str) {
    each(errs, path, v, lv::validate_label_value(v));
}

/// `ValidateLabels`: errors name the map, not the key.
pub(super) fn labels(errs: &mut Errs, at: &At) {
    for (k, v) in at.entries(errs) {
        qualified_name(errs, &at.path, k);
        if let Some(v) = v.str(errs) {
            label_value(errs, &at.path, v);
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// `ValidateAnnotations`: keys are qualified names (checked lower-cased), 256KiB in total.
pub(super) fn annotations(errs: &mut Errs, at: &At) {
    let mut total = 0;
    for (k, v) in at.entries(errs) {
        for m in lv::validate_qualified_name(&k.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(at.path.clone(), k, m));
        }
        total += k.len() + v.str(errs).map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(at.path.clone(), TOTAL_ANNOTATION_SIZE));
    }
}

/// `ValidateLabelSelector`.
pub(super) fn label_selector(errs: &mut Errs, at: &At, allow_invalid_values: bool) {
    if at.obj(errs).is_none() {
        return;
    }
    labels(errs, &at.child("matchLabels"));
    for expr in at.child("matchExpressions").items(errs) {
        let values = expr.child("values");
        let n = values.len();
        match expr.child("operator").string(errs) {
            "In" | "NotIn" => {
                if n == 0 {
                    errs.push(FieldError::required(
                        values.path.clone(),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if n > 0 {
                    errs.push(FieldError::forbidden(
                        values.path.clone(),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                expr.child("operator").path,
                other,
                "not a valid selector operator",
            )),
        }
        let key = expr.child("key");
        let k = key.string(errs);
        qualified_name(errs, &key.path, k);
        for item in values.items(errs) {
            if let Some(v) = item.str(errs) {
                if !allow_invalid_values {
                    label_value(errs, &item.path, v);
                }
            }
        }
    }
}

/// The selector a `metav1.LabelSelector` means, or `None` when it cannot be converted.
pub(super) fn selector_of(at: &At) -> Option<Selector> {
    Selector::from_label_selector(&at.value()).ok()
}

/// Whether a selector has neither `matchLabels` nor `matchExpressions` entries.
pub(super) fn selector_is_empty(at: &At) -> bool {
    at.child("matchLabels").len() + at.child("matchExpressions").len() == 0
}

// ---------------------------------------------------------------------------------------------
// Ports, IPs, keys
// ---------------------------------------------------------------------------------------------

pub(super) fn port_num_errors(n: i64) -> Vec<String> {
    if (1..=65535).contains(&n) {
        Vec::new()
    } else {
        vec![inclusive_range(1, 65535)]
    }
}

pub(super) fn port_name_errors(p: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if p.len() > 15 {
        errs.push(lv::max_len_error(15));
    }
    if p.is_empty()
        || !p
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !p.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if p.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if p.starts_with('-') || p.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `ValidatePortNumOrName` for an int-or-string port.
pub(super) fn port_num_or_name(errs: &mut Errs, at: &At) {
    match at.v {
        Some(Value::String(s)) => each(errs, &at.path, s, port_name_errors(s)),
        Some(v) => match as_integer(v) {
            Some(n) => {
                for m in port_num_errors(n) {
                    errs.push(FieldError::invalid(at.path.clone(), n, m));
                }
            }
            None => errs.push(type_error(&at.path, v, "an integer or a string")),
        },
        None => {
            for m in port_num_errors(0) {
                errs.push(FieldError::invalid(at.path.clone(), 0, m));
            }
        }
    }
}

/// Go's `ParseIPSloppy`: like the standard parsers, but IPv4 octets may have leading zeros.
pub(super) fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse::<u16>().ok().filter(|n| *n <= 255)? as u8;
    }
    Some(IpAddr::from(octets))
}

pub(super) fn ip(errs: &mut Errs, path: &str, s: &str) {
    if parse_ip_sloppy(s).is_none() {
        errs.push(FieldError::invalid(
            path,
            s,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
}

pub(super) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    let addr = parse_ip_sloppy(addr)?;
    if bits.is_empty() || !bits.bytes().all(|c| c.is_ascii_digit()) || bits.len() > 3 {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

pub(super) fn cidr(errs: &mut Errs, path: &str, s: &str) {
    if parse_cidr(s).is_none() {
        errs.push(FieldError::invalid(
            path,
            s,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

/// `IsConfigMapKey`: the keys of ConfigMaps, Secrets and key selectors.
pub(super) fn config_key_errors(k: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if k.len() > lv::DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(lv::max_len_error(lv::DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if k.is_empty()
        || !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(lv::regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix_errors(k));
    errs
}

fn chdir_prefix_errors(v: &str) -> Vec<String> {
    match v {
        "." => vec!["must not be '.'".into()],
        ".." => vec!["must not be '..'".into()],
        _ if v.starts_with("..") => vec!["must not start with '..'".into()],
        _ => Vec::new(),
    }
}

/// `IsValidPercent`.
pub(super) fn percent_errors(s: &str) -> Vec<String> {
    let digits = s.strip_suffix('%').unwrap_or("");
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        Vec::new()
    } else {
        vec![lv::regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%",
            &["1%", "93%"],
        )]
    }
}

/// Validates a quantity field (a string, or a bare number as upstream also accepts).
pub(super) fn quantity(errs: &mut Errs, at: &At) -> Option<Quantity> {
    let text = match at.v? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            errs.push(type_error(&at.path, other, "a quantity"));
            return None;
        }
    };
    match Quantity::parse(text.trim()) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(FieldError::invalid(at.path.clone(), text, e.to_string()));
            None
        }
    }
}

/// The value of a quantity field when it parses, without reporting anything.
pub(super) fn quantity_quiet(v: Option<&Value>) -> Option<Quantity> {
    match v? {
        Value::String(s) => Quantity::parse(s.trim()).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting in place
// ---------------------------------------------------------------------------------------------

pub(super) fn is_unset(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).is_none_or(Value::is_null)
}

/// Sets a field that is absent or `null` (a pointer field left nil).
pub(super) fn default_val(m: &mut Map<String, Value>, key: &str, v: Value) {
    if is_unset(m, key) {
        m.insert(key.to_string(), v);
    }
}

/// Sets a string field that is absent, `null` or empty (Go's `== ""`).
pub(super) fn default_str(m: &mut Map<String, Value>, key: &str, v: &str) {
    if is_unset(m, key) || m.get(key).and_then(Value::as_str) == Some("") {
        m.insert(key.to_string(), Value::String(v.to_string()));
    }
}

/// Sets an integer field that is absent, `null` or 0 (Go's `== 0` on a plain int).
pub(super) fn default_nonzero(m: &mut Map<String, Value>, key: &str, v: i64) {
    if is_unset(m, key) || m.get(key).and_then(as_integer) == Some(0) {
        m.insert(key.to_string(), Value::from(v));
    }
}

/// The object under `key`, created when absent or `null`; `None` when it is something else.
pub(super) fn ensure_obj<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    if is_unset(m, key) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object under `key` when there is one.
pub(super) fn obj_mut<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Runs `f` on every object in the list under `key`.
pub(super) fn each_obj_mut(
    m: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(list) = m.get_mut(key).and_then(Value::as_array_mut) {
        for item in list.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

/// Writes a quantity back the way upstream serialises it (unparseable values are left for
/// validation to report).
pub(super) fn canonical_quantity(v: &mut Value) {
    if let Some(q) = quantity_quiet(Some(v)) {
        *v = Value::String(q.to_string());
    }
}

/// `SetDefaults_ResourceList`: every quantity rounded up to milli precision, then serialised.
pub(super) fn canonical_resource_list(m: &mut Map<String, Value>, key: &str) {
    if let Some(list) = obj_mut(m, key) {
        for v in list.values_mut() {
            if let Some(mut q) = quantity_quiet(Some(v)) {
                q.round_up(-3);
                *v = Value::String(q.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_follow_upstream_notation() {
        let v = json!({"spec": {"containers": [{"name": "a"}], "m": {"k": 1}}});
        let root = At::new(&v, "");
        let spec = root.child("spec");
        let mut errs = Vec::new();
        let c = &spec.child("containers").items(&mut errs)[0];
        assert_eq!(c.child("name").path, "spec.containers[0].name");
        let (_, e) = &spec.child("m").entries(&mut errs)[0];
        assert_eq!(e.path, "spec.m[k]");
        assert!(errs.is_empty());
    }

    #[test]
    fn wrong_types_are_reported_not_fatal() {
        let v = json!({"a": 5, "b": "x", "c": [1, "y"]});
        let root = At::new(&v, "");
        let mut errs = Vec::new();
        assert_eq!(root.child("a").str(&mut errs), None);
        assert_eq!(root.child("b").int(&mut errs), None);
        assert_eq!(root.child("c").strings(&mut errs), vec!["y"]);
        assert_eq!(root.child("b").items(&mut errs).len(), 0);
        assert_eq!(errs.len(), 4);
        assert_eq!(errs[0].field, "a");
        assert_eq!(errs[2].field, "c[0]");
    }

    #[test]
    fn sloppy_ips_and_cidrs() {
        assert!(parse_ip_sloppy("010.1.2.3").is_some());
        assert!(parse_ip_sloppy("256.1.2.3").is_none());
        assert!(parse_ip_sloppy("::ffff:1.2.3.4").is_some());
        assert!(parse_ip_sloppy("").is_none());
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("10.0.0.0").is_none());
    }

    #[test]
    fn port_names() {
        assert!(port_name_errors("http").is_empty());
        assert_eq!(port_name_errors("8080").len(), 1);
        assert_eq!(
            port_name_errors("-a--"),
            vec![
                "must not contain consecutive hyphens".to_string(),
                "must not begin or end with a hyphen".to_string()
            ]
        );
    }

    #[test]
    fn resource_lists_round_to_milli() {
        let mut m = json!({"r": {"cpu": "0.0001", "memory": 1073741824, "x": "bad"}});
        canonical_resource_list(m.as_object_mut().unwrap(), "r");
        assert_eq!(
            m["r"],
            json!({"cpu": "1m", "memory": "1073741824", "x": "bad"})
        );
    }

    #[test]
    fn config_keys() {
        assert!(config_key_errors("a.b_c-d").is_empty());
        assert_eq!(
            config_key_errors("..x"),
            vec!["must not start with '..'".to_string()]
        );
        assert_eq!(config_key_errors("a b").len(), 1);
    }
}
