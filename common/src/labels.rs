//! Label selectors (the `labelSelector` query parameter and `metav1.LabelSelector`) and the
//! name/label validators that metadata validation shares with them.
//!
//! Parsing, canonical string output and error messages follow upstream apimachinery v1.33
//! (`labels.Parse`, `metav1.LabelSelectorAsSelector`, `util/validation`), because clients
//! compare and display these strings verbatim.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Validators
// ---------------------------------------------------------------------------------------------

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
/// Maximum length of the name part of a qualified name (label key).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
/// Maximum length of an RFC 1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
/// Maximum length of an RFC 1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
/// Maximum length of an RFC 1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;

/// The "string too long" message used throughout upstream validation.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// The "must not be empty" message used throughout upstream validation.
pub fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Builds upstream's regex-failure message. The odd double space between examples
/// (`'a',  or 'b'`) is part of the upstream wording and is reproduced on purpose.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if examples.is_empty() {
        out.push_str(" (regex used for validation is '");
    } else {
        out.push_str(" (e.g. ");
        for (i, example) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push('\'');
            out.push_str(example);
            out.push_str("', ");
        }
        out.push_str("regex used for validation is '");
    }
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored at both ends.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, anchored.
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, anchored.
fn matches_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            first.is_ascii_lowercase()
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// Upstream `validation.IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters. Returns the list of problems (empty when valid).
pub fn validate_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, QUALIFIED_NAME_EXAMPLES)
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                QUALIFIED_NAME_EXAMPLES
            )
        ));
    }
    errs
}

/// Upstream `validation.IsValidLabelValue`.
pub fn validate_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || is_qualified_name_part(value)) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Upstream `validation.IsDNS1123Label`.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        // Length was already reported, so a value that is a fine subdomain can only be failing
        // because of its dots; upstream says so rather than printing the regex.
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Upstream `validation.IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream `validation.IsDNS1035Label`.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Go-compatible formatting of field errors
// ---------------------------------------------------------------------------------------------

use crate::gofmt::quote as go_quote;

/// Go's `%#v` of a `[]string`, as used when a whole value list is reported as invalid. The
/// lists that reach these errors upstream are built by appending to a nil slice, so an empty
/// list prints as nil.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// `field.Invalid(path, value, detail).Error()`.
fn field_invalid(path: &str, shown_value: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("{path}: Invalid value: {shown_value}")
    } else {
        format!("{path}: Invalid value: {shown_value}: {detail}")
    }
}

/// `ErrorList.ToAggregate().Error()`: duplicates dropped, a single error printed bare and
/// several wrapped in brackets.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = errs
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    match unique.len() {
        0 => None,
        1 => unique.into_iter().next(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Selector model
// ---------------------------------------------------------------------------------------------

/// An error from parsing or building a label selector. The message is upstream's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LabelSelectorError {
    message: String,
}

impl LabelSelectorError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The upstream-compatible error text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Selector operators (`selection.Operator` upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The operator's upstream string value (`"in"`, `"!="`, `"exists"`, `"gt"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Read access to a set of labels, so selectors can match typed maps and raw JSON alike.
pub trait LabelSet {
    /// The value of `key`, or `None` when the label is absent.
    fn get_label(&self, key: &str) -> Option<&str>;

    fn has_label(&self, key: &str) -> bool {
        self.get_label(key).is_some()
    }
}

impl LabelSet for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> LabelSet for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Non-string entries are treated as absent: they cannot be valid labels.
impl LabelSet for serde_json::Map<String, Value> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A JSON object of labels; anything else (including `null`, as for an object with no
/// `metadata.labels`) is an empty label set.
impl LabelSet for Value {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_object().and_then(|m| m.get_label(key))
    }
}

impl<T: LabelSet + ?Sized> LabelSet for &T {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// One `key op values` term of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Validates and builds a requirement, as upstream `labels.NewRequirement` (with no field
    /// path): the key must be a qualified name, values valid label values, and the number of
    /// values must fit the operator (`Gt`/`Lt` need one integer).
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, LabelSelectorError> {
        let key = key.into();
        let mut errs = Vec::new();
        let key_errs = validate_qualified_name(&key);
        if !key_errs.is_empty() {
            errs.push(field_invalid("key", &go_quote(&key), &key_errs.join("; ")));
        }
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(field_invalid(
                        "values",
                        &go_string_slice(&values),
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(field_invalid(
                        "values",
                        &go_string_slice(&values),
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(field_invalid(
                        "values",
                        &go_string_slice(&values),
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(field_invalid(
                        "values",
                        &go_string_slice(&values),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(field_invalid(
                            &format!("values[{i}]"),
                            &go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = validate_label_value(v);
            if !value_errs.is_empty() {
                errs.push(field_invalid(
                    &format!("values[{i}][{key}]"),
                    &go_quote(v),
                    &value_errs.join("; "),
                ));
            }
        }
        match aggregate(errs) {
            Some(message) => Err(LabelSelectorError::new(message)),
            None => Ok(Requirement {
                key,
                operator,
                values,
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given (parsed selectors hold them sorted and de-duplicated).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether `labels` satisfies this requirement. `NotIn`/`!=` match when the key is absent;
    /// `Gt`/`Lt` need the label to be present and parse as an integer.
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => labels
                .get_label(&self.key)
                .is_some_and(|v| self.has_value(v)),
            Operator::NotIn | Operator::NotEquals => labels
                .get_label(&self.key)
                .is_none_or(|v| !self.has_value(v)),
            Operator::Exists => labels.has_label(&self.key),
            Operator::DoesNotExist => !labels.has_label(&self.key),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = labels.get_label(&self.key) else {
                    return false;
                };
                let Ok(actual) = actual.parse::<i64>() else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        // Sorting only the output keeps the string canonical without reordering the values a
        // caller supplied.
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements, kept sorted by key.
///
/// Besides ordinary selectors there is a distinguished "nothing" selector (what a `null`
/// `metav1.LabelSelector` converts to) which matches no label set at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no label set.
    pub fn nothing() -> Self {
        Selector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Parses the string syntax of upstream `labels.Parse`.
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        let mut parser = Parser::new(selector);
        let mut requirements = parser.parse().map_err(LabelSelectorError::new)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` given as JSON, as upstream
    /// `metav1.LabelSelectorAsSelector`: `null` selects nothing, an empty selector selects
    /// everything, `matchLabels` become `=` requirements and `matchExpressions` use the
    /// `In`/`NotIn`/`Exists`/`DoesNotExist` operators.
    pub fn from_label_selector(selector: &Value) -> Result<Self, LabelSelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Selector::nothing()),
            Value::Object(obj) => obj,
            other => {
                return Err(LabelSelectorError::new(format!(
                    "invalid label selector: expected an object, got {}",
                    json_kind(other)
                )))
            }
        };

        let mut match_labels: Vec<(&str, &str)> = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(LabelSelectorError::new(format!(
                            "invalid label selector: matchLabels[{k}] must be a string, got {}",
                            json_kind(v)
                        )));
                    };
                    match_labels.push((k, v));
                }
            }
            Some(other) => {
                return Err(LabelSelectorError::new(format!(
                    "invalid label selector: matchLabels must be an object, got {}",
                    json_kind(other)
                )))
            }
        }
        let expressions: &[Value] = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(LabelSelectorError::new(format!(
                    "invalid label selector: matchExpressions must be an array, got {}",
                    json_kind(other)
                )))
            }
        };

        if match_labels.is_empty() && expressions.is_empty() {
            return Ok(Selector::everything());
        }

        // Upstream walks a Go map here, so its order is unspecified; sorting makes the first
        // reported error deterministic.
        match_labels.sort_unstable();
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (k, v) in match_labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
        }
        for (i, expr) in expressions.iter().enumerate() {
            let expr = parse_expression(i, expr)?;
            let op = match expr.operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(LabelSelectorError::new(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            requirements.push(Requirement::new(expr.key, op, expr.values)?);
        }
        Ok(Selector::everything().add_requirements(requirements))
    }

    /// A selector requiring exactly the given labels (`labels.SelectorFromSet`). No validation
    /// is done, as upstream.
    pub fn from_set<'a, I>(labels: I) -> Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let requirements: Vec<Requirement> = labels
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Selector::everything().add_requirements(requirements)
    }

    /// Like [`Selector::from_set`] but validating keys and values
    /// (`labels.ValidatedSelectorFromSet`).
    pub fn from_set_validated<'a, I>(labels: I) -> Result<Self, LabelSelectorError>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut entries: Vec<(&String, &String)> = labels.into_iter().collect();
        entries.sort_unstable();
        let requirements = entries
            .into_iter()
            .map(|(k, v)| Requirement::new(k.clone(), Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector::everything().add_requirements(requirements))
    }

    /// Returns a selector with the extra requirements, re-sorted by key.
    pub fn add_requirements(mut self, requirements: impl IntoIterator<Item = Requirement>) -> Self {
        if self.matches_nothing {
            return self;
        }
        self.requirements.extend(requirements);
        // Stable, so requirements on the same key keep their relative order.
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// True when the selector does not restrict anything (it has no requirements and is not
    /// the "nothing" selector).
    pub fn is_empty(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// True only for [`Selector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether every requirement matches `labels`.
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// If the first requirement on `label` pins it to one value (`=`, `==`, or `in` with a
    /// single value), returns that value; lets callers narrow a list to an index lookup.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let req = self.requirements.iter().find(|r| r.key == label)?;
        match (req.operator, req.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Expression<'a> {
    key: &'a str,
    operator: &'a str,
    values: Vec<String>,
}

/// Reads one `LabelSelectorRequirement`; absent fields take Go's zero values, as they would
/// after decoding upstream.
fn parse_expression(index: usize, expr: &Value) -> Result<Expression<'_>, LabelSelectorError> {
    let type_error = |what: &str, got: &Value| {
        LabelSelectorError::new(format!(
            "invalid label selector: matchExpressions[{index}]{what}, got {}",
            json_kind(got)
        ))
    };
    let Value::Object(obj) = expr else {
        return Err(type_error(" must be an object", expr));
    };
    let string_field = |name: &str| -> Result<&str, LabelSelectorError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(type_error(&format!(".{name} must be a string"), other)),
        }
    };
    let key = string_field("key")?;
    let operator = string_field("operator")?;
    let values = match obj.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(".values must contain only strings", v))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(type_error(".values must be an array", other)),
    };
    Ok(Expression {
        key,
        operator,
        values,
    })
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser
//
// The structure mirrors upstream's byte-oriented lexer closely because its quirks are part of
// the observable behaviour: the exact tokens quoted in errors, `in`/`notin` being usable as
// keys and values, and a NUL byte acting as end of input.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword_token(literal: &[u8]) -> Option<Token> {
    Some(match literal {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// Next byte, or 0 at the end (so an embedded NUL also reads as the end, as upstream).
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buffer = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buffer.push(ch);
        }
        let token = keyword_token(&buffer).unwrap_or(Token::Identifier);
        (token, String::from_utf8_lossy(&buffer).into_owned())
    }

    /// Longest-match scan over operator characters: `!=` and `==` win over `!` and `=`.
    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut last: Option<(Token, usize)> = None;
        let mut buffer = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            buffer.push(ch);
            if let Some(token) = keyword_token(&buffer) {
                last = Some((token, buffer.len()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((token, len)) => (token, String::from_utf8_lossy(&buffer[..len]).into_owned()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buffer)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

/// In the values context `in` and `notin` are plain identifiers, so `x in (in)` works.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    fn new(input: &str) -> Self {
        let mut lexer = Lexer {
            s: input.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let done = item.0 == Token::EndOfString;
            items.push(item);
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn peek_at(&self, index: usize, context: Context) -> (Token, &str) {
        match self.items.get(index) {
            Some((token, literal)) => {
                let token = match (context, *token) {
                    (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
                    (_, t) => t,
                };
                (token, literal.as_str())
            }
            None => (Token::EndOfString, ""),
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        let (t, l) = self.peek_at(self.position, context);
        (t, l.to_string())
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(key, op, Vec::new()).map_err(|e| e.message);
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values.into_iter().collect()).map_err(|e| e.message)
    }

    /// Reads `[!]key`; a bare key followed by `,` or the end means "exists".
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let errs = validate_qualified_name(&literal);
        if !errs.is_empty() {
            // The parser validates with no field path, which Go prints as "<nil>".
            return Err(field_invalid(
                "<nil>",
                &go_quote(&literal),
                &errs.join("; "),
            ));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma)
            && operator != Some(Operator::DoesNotExist)
        {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    /// A comma-separated list in which empty entries (`(,a)`, `(a,,b)`, `(a,)`) stand for the
    /// empty value.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        values.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(BTreeSet::from([literal]))
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAME_PART_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const SUBDOMAIN_REGEX_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_ok(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s:?} should fail, parsed as {sel}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn valid_selectors_parse() {
        let good = [
            "",
            "x=a,y=b,z=c",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
            "x in (a)",
            "x in (a,b,c)",
            "x notin (a)",
            "x in (,a)",
            "x in (a,)",
            "x in (a,,b)",
            "x in ()",
            "x",
            "!x,y",
            "x==a",
            "x!=a",
            "in in (in)",
            "notin notin (notin)",
            "x in (notin)",
            "example.com/app=web",
            " x = a , y in ( b , c ) ",
            "x\t=\na",
        ];
        for s in good {
            parse_ok(s);
        }
    }

    #[test]
    fn canonical_strings() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=c,x=a,y=b", "x=a,y=b,z=c"),
            ("x in (c,a,b)", "x in (a,b,c)"),
            ("x in (b,a,b)", "x in (a,b)"),
            ("x notin (b, a)", "x notin (a,b)"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in (a,)", "x in (,a)"),
            ("!x", "!x"),
            ("x", "x"),
            ("x=", "x="),
            ("x>1", "x>1"),
            ("x<5", "x<5"),
            ("y,!x", "!x,y"),
            (" x  =  a ", "x=a"),
            ("b=1,a in (x),c", "a in (x),b=1,c"),
            ("in in (in)", "in in (in)"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ok(input).to_string(), want, "input {input:?}");
            // The canonical form must itself parse back to the same selector.
            assert_eq!(parse_ok(want), parse_ok(input), "round trip of {input:?}");
        }
    }

    #[test]
    fn parsed_requirements() {
        let sel = parse_ok("x in (b,a),!y,z,w>3,v!=q");
        let got: Vec<(&str, Operator, Vec<&str>)> = sel
            .requirements()
            .iter()
            .map(|r| {
                (
                    r.key(),
                    r.operator(),
                    r.values().iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("v", Operator::NotEquals, vec!["q"]),
                ("w", Operator::GreaterThan, vec!["3"]),
                ("x", Operator::In, vec!["a", "b"]),
                ("y", Operator::DoesNotExist, vec![]),
                ("z", Operator::Exists, vec![]),
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x>1.1", "unable to parse requirement: values[0]: Invalid value: \"1.1\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x>", "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in", "unable to parse requirement: found '' expected: '('"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
            ("x in (a,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
            ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("x=(a)", "unable to parse requirement: found '(', expected: identifier"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
            (",", "found ',', expected: !, identifier, or 'end of string'"),
            ("x,", "found '', expected: identifier after ','"),
            ("x,,y", "found ',', expected: identifier after ','"),
            ("(", "found '(', expected: !, identifier, or 'end of string'"),
            ("x>=1", "unable to parse requirement: found '=', expected: identifier"),
            ("x<=1", "unable to parse requirement: found '=', expected: identifier"),
        ];
        for (input, want) in cases {
            let err = parse_err(input);
            assert!(
                err.starts_with(want) || err.contains(want),
                "input {input:?}: got {err:?}, want {want:?}"
            );
        }
        assert_eq!(
            parse_err("x=a||y=b"),
            "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": ".to_string()
                + LABEL_VALUE_REGEX_MSG
        );
    }

    #[test]
    fn key_and_value_validation_errors() {
        assert_eq!(
            parse_err("app:monolith"),
            format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": {NAME_PART_REGEX_MSG}")
        );
        assert_eq!(
            parse_err("a/b/c ?=? def"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            parse_err("app.kubernetes_io/name=x"),
            format!("unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part {SUBDOMAIN_REGEX_MSG}")
        );
        assert_eq!(
            parse_err("x=a*"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"a*\": {LABEL_VALUE_REGEX_MSG}")
        );
        let long = "a".repeat(64);
        assert_eq!(
            parse_err(&format!("x={long}")),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"{long}\": must be no more than 63 characters")
        );
        assert_eq!(
            parse_err(&format!("{long}=x")),
            format!("unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 characters")
        );
        // Several problems with one requirement are aggregated in brackets.
        assert_eq!(
            parse_err("x>a*"),
            format!("unable to parse requirement: [values[0]: Invalid value: \"a*\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"a*\": {LABEL_VALUE_REGEX_MSG}]")
        );
        // Sorted values: the error names the first invalid value in sorted order.
        assert!(parse_err("x in (b*, a)").contains("values[1][x]: Invalid value: \"b*\""));
    }

    #[test]
    fn matching() {
        let set = labels(&[("x", "a"), ("y", "b"), ("n", "5"), ("empty", "")]);
        let cases = [
            ("", true),
            ("x=a", true),
            ("x==a", true),
            ("x=b", false),
            ("x!=b", true),
            ("x!=a", false),
            ("missing!=a", true),
            ("missing=a", false),
            ("x in (a,b)", true),
            ("x in (b,c)", false),
            ("missing in (a)", false),
            ("x notin (a)", false),
            ("x notin (b)", true),
            ("missing notin (a)", true),
            ("x", true),
            ("missing", false),
            ("!x", false),
            ("!missing", true),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("n<5", false),
            ("x>1", false),
            ("missing<100", false),
            ("empty=", true),
            ("empty", true),
            ("empty in ()", true),
            ("missing=", false),
            ("x=a,y=b", true),
            ("x=a,y=c", false),
            ("x=a,!y", false),
        ];
        for (s, want) in cases {
            let sel = parse_ok(s);
            assert_eq!(sel.matches(&set), want, "{s:?} on BTreeMap");
            let as_json = serde_json::to_value(&set).unwrap();
            assert_eq!(sel.matches(&as_json), want, "{s:?} on JSON");
            let hash: HashMap<String, String> = set.clone().into_iter().collect();
            assert_eq!(sel.matches(&hash), want, "{s:?} on HashMap");
        }
        // No labels at all (metadata.labels absent).
        assert!(parse_ok("x notin (a)").matches(&Value::Null));
        assert!(!parse_ok("x").matches(&Value::Null));
        assert!(parse_ok("").matches(&Value::Null));
    }

    #[test]
    fn gt_lt_on_non_integer_labels() {
        let set = labels(&[("n", "abc"), ("m", "-3"), ("p", "+7")]);
        assert!(!parse_ok("n>1").matches(&set));
        assert!(!parse_ok("n<1").matches(&set));
        assert!(parse_ok("m<0").matches(&set));
        assert!(parse_ok("p>6").matches(&set));
    }

    #[test]
    fn everything_and_nothing() {
        let set = labels(&[("a", "b")]);
        assert!(Selector::everything().matches(&set));
        assert!(Selector::everything().is_empty());
        assert_eq!(Selector::everything().to_string(), "");
        assert!(!Selector::nothing().matches(&set));
        assert!(!Selector::nothing().matches(&BTreeMap::new()));
        assert!(!Selector::nothing().is_empty());
        assert!(Selector::nothing().matches_nothing());
        assert_eq!(Selector::nothing().to_string(), "");
        assert!(!parse_ok("a").is_empty());
    }

    #[test]
    fn requires_exact_match() {
        let sel = parse_ok("a=1,b in (2),c in (3,4),d!=5,e==6");
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), Some("2"));
        assert_eq!(sel.requires_exact_match("c"), None);
        assert_eq!(sel.requires_exact_match("d"), None);
        assert_eq!(sel.requires_exact_match("e"), Some("6"));
        assert_eq!(sel.requires_exact_match("z"), None);
    }

    #[test]
    fn from_label_selector() {
        let sel = Selector::from_label_selector(&json!({
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "c", "operator": "In", "values": ["y", "x"]},
                {"key": "d", "operator": "NotIn", "values": ["z"]},
                {"key": "e", "operator": "Exists"},
                {"key": "f", "operator": "DoesNotExist", "values": null},
            ]
        }))
        .unwrap();
        assert_eq!(sel.to_string(), "a=1,b=2,c in (x,y),d notin (z),e,!f");
        let set = labels(&[("a", "1"), ("b", "2"), ("c", "x"), ("e", "")]);
        assert!(sel.matches(&set));

        assert!(Selector::from_label_selector(&Value::Null)
            .unwrap()
            .matches_nothing());
        let empty = Selector::from_label_selector(&json!({})).unwrap();
        assert!(empty.is_empty());
        assert!(empty.matches(&set));
        let empty =
            Selector::from_label_selector(&json!({"matchLabels": {}, "matchExpressions": []}))
                .unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn from_label_selector_errors() {
        let err = |v: Value| Selector::from_label_selector(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "Seriously"}]})),
            "\"Seriously\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "in", "values": ["a"]}]})),
            "\"in\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "In", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "Exists", "values": ["a", "b"]}]})),
            "values: Invalid value: []string{\"a\", \"b\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchLabels": {"a": "b c"}})),
            format!("values[0][a]: Invalid value: \"b c\": {LABEL_VALUE_REGEX_MSG}")
        );
        assert_eq!(
            err(json!({"matchLabels": {"-a": "b"}})),
            format!("key: Invalid value: \"-a\": {NAME_PART_REGEX_MSG}")
        );
        assert!(err(json!("x")).contains("expected an object"));
        assert!(err(json!({"matchLabels": []})).contains("matchLabels must be an object"));
        assert!(err(json!({"matchLabels": {"a": 1}})).contains("must be a string"));
        assert!(err(json!({"matchExpressions": {}})).contains("must be an array"));
        assert!(err(json!({"matchExpressions": [1]})).contains("must be an object"));
        assert!(err(json!({"matchExpressions": [{"key": 1}]})).contains("key must be a string"));
        assert!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}))
                .contains("only strings")
        );
    }

    #[test]
    fn requirement_new_errors() {
        let err = |k: &str, op, vals: &[&str]| {
            Requirement::new(k, op, vals.iter().map(|s| s.to_string()).collect())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("x", Operator::Equals, &["a", "b"]),
            "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value"
        );
        assert_eq!(
            err("x", Operator::GreaterThan, &[]),
            "values: Invalid value: []string(nil): for 'Gt', 'Lt' operators, exactly one value is required"
        );
        assert_eq!(
            err("", Operator::Exists, &[]),
            format!("key: Invalid value: \"\": name part must be non-empty; {NAME_PART_REGEX_MSG}")
        );
        assert!(Requirement::new("x", Operator::In, vec!["".into()]).is_ok());
    }

    #[test]
    fn from_set() {
        let set = labels(&[("b", "2"), ("a", "1")]);
        let sel = Selector::from_set(&set);
        assert_eq!(sel.to_string(), "a=1,b=2");
        assert!(sel.matches(&set));
        assert!(Selector::from_set(&BTreeMap::new()).is_empty());
        let bad = labels(&[("a", "b c")]);
        assert!(Selector::from_set_validated(&bad).is_err());
        assert_eq!(Selector::from_set_validated(&set).unwrap(), sel);
    }

    #[test]
    fn qualified_name_validation() {
        for good in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/simple",
            "now-with.dashes-and.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            &"a".repeat(63),
            &format!("{}/{}", "a".repeat(253), "b".repeat(63)),
        ] {
            assert!(
                validate_qualified_name(good).is_empty(),
                "{good:?}: {:?}",
                validate_qualified_name(good)
            );
        }
        for bad in [
            "",
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            &"a".repeat(64),
            &format!("{}/a", "a".repeat(254)),
            "é",
            "a\n",
        ] {
            assert!(
                !validate_qualified_name(bad).is_empty(),
                "{bad:?} should be invalid"
            );
        }
        assert_eq!(
            validate_qualified_name(""),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_REGEX_MSG.to_string()
            ]
        );
        assert_eq!(
            validate_qualified_name("/a"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert_eq!(
            validate_qualified_name("a/"),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_REGEX_MSG.to_string()
            ]
        );
        assert_eq!(
            validate_qualified_name(&format!("{}/a", "a".repeat(254))),
            vec!["prefix part must be no more than 253 characters".to_string(),]
        );
        assert_eq!(
            validate_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters".to_string()]
        );
    }

    #[test]
    fn label_value_validation() {
        for good in [
            "",
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            &"a".repeat(63),
            "a_b.C",
        ] {
            assert!(validate_label_value(good).is_empty(), "{good:?}");
        }
        for bad in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "a b",
        ] {
            assert_eq!(
                validate_label_value(bad),
                vec![LABEL_VALUE_REGEX_MSG.to_string()],
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert_eq!(validate_label_value(&"-".repeat(64)).len(), 2);
    }

    #[test]
    fn dns_validation() {
        let label_msg = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
        for good in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "012",
            "1a",
            "1-a",
            &"a".repeat(63),
        ] {
            assert!(is_dns1123_label(good).is_empty(), "{good:?}");
        }
        for bad in [
            "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_",
            "_a", "a_b", "1_", "_1", "1_2", "@", "a@b", "a,b", "a b", "é",
        ] {
            assert_eq!(
                is_dns1123_label(bad),
                vec![label_msg.to_string()],
                "{bad:?}"
            );
        }
        assert_eq!(
            is_dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );

        for good in [
            "a",
            "a.b",
            "a-b.c-d",
            "1.2.3",
            &"a".repeat(253),
            "example.com",
        ] {
            assert!(is_dns1123_subdomain(good).is_empty(), "{good:?}");
        }
        for bad in ["", "A", "a..b", ".a", "a.", "a_b", "a.-b", "a-.b"] {
            assert_eq!(
                is_dns1123_subdomain(bad),
                vec![SUBDOMAIN_REGEX_MSG.to_string()],
                "{bad:?}"
            );
        }
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters".to_string()]
        );

        let msg1035 = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
        for good in ["a", "ab", "a1", "a-1", "a--1--2--b", &"a".repeat(63)] {
            assert!(is_dns1035_label(good).is_empty(), "{good:?}");
        }
        for bad in ["", "0", "01", "1a", "A", "a-", "-a", "a.b", "a_b"] {
            assert_eq!(is_dns1035_label(bad), vec![msg1035.to_string()], "{bad:?}");
        }
        assert_eq!(is_dns1035_label(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("abc"), "\"abc\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            go_quote("\n\t\r\u{7}\u{0}\u{7f}"),
            "\"\\n\\t\\r\\a\\x00\\x7f\""
        );
        assert_eq!(go_quote("rā"), "\"rā\"");
        assert_eq!(go_quote("\u{200b}"), "\"\\u200b\"");
        assert_eq!(go_quote("\u{10ffff}"), "\"\\U0010ffff\"");
    }

    #[test]
    fn odd_inputs_never_panic() {
        let inputs = [
            "\0",
            "a\0b",
            "x=\0",
            "\u{0}in (",
            "))))",
            "((((",
            "!!!!",
            "====",
            "<<>>",
            "!=!=",
            "x in (((",
            "x in ,,,",
            "x in (,,,)",
            "é=ü",
            "日本=語",
            "x=日本",
            "\u{feff}x",
            "x\u{0}=a",
            ",,",
            "!,",
            "x notin",
            "x notin ()",
            "in",
            "notin",
            "in in",
            "!in",
            "x=a,",
            "=",
            "x!",
            "x!!=a",
        ];
        for s in inputs {
            if let Ok(sel) = Selector::parse(s) {
                let printed = sel.to_string();
                // Whatever parses must re-parse to the same thing from its canonical form.
                assert_eq!(
                    Selector::parse(&printed).as_ref(),
                    Ok(&sel),
                    "{s:?} -> {printed:?}"
                );
            }
        }
        // A NUL byte reads as end of input to upstream's lexer: it ends the input when a token
        // starts there, but only ends the current token otherwise.
        assert!(parse_ok("\0x=a").is_empty());
        assert_eq!(parse_ok("a\0").to_string(), "a");
        assert_eq!(
            parse_err("a\0b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        // Pseudo-random strings over the selector alphabet.
        let alphabet: Vec<char> = "ab=!(),<> in notin\t\0é1-_./".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 16) as usize;
            let mut s = String::new();
            let mut x = seed;
            for _ in 0..len {
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
                x = x.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D);
            }
            if let Ok(sel) = Selector::parse(&s) {
                let printed = sel.to_string();
                assert_eq!(
                    Selector::parse(&printed).as_ref(),
                    Ok(&sel),
                    "{s:?} -> {printed:?}"
                );
            }
        }
    }
}
