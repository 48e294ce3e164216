//! Field selectors (the `fieldSelector` query parameter), following upstream apimachinery v1.33
//! `fields.ParseSelector`: comma-separated `field=value`, `field==value` and `field!=value`
//! terms, with `\`, `,` and `=` in values escaped by a backslash.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

/// A field selector error; `Display` gives upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term with no recognised operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Invalid { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=`, or a trailing backslash.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A bare `,` or `=` inside a value. Upstream prints the character's code point as a
    /// number, and so does this.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedRune(char),
    /// The selector names a field the resource kind does not support.
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
}

/// Field selector operators. `==` parses to [`FieldOperator::Equals`], as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

impl FieldOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

impl fmt::Display for FieldOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One term of a field selector, with its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether the term holds for `fields`; an absent field counts as the empty string.
    pub fn matches<F: FieldSet + ?Sized>(&self, fields: &F) -> bool {
        let actual = fields.field_value(&self.field).unwrap_or_default();
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.operator,
            escape_value(&self.value)
        )
    }
}

/// Read access to an object's selectable fields.
///
/// Implemented for string maps and for any `Fn(&str) -> Option<String>`, so callers can pass
/// a precomputed map or a closure that extracts fields from an object on demand.
pub trait FieldSet {
    fn field_value(&self, field: &str) -> Option<String>;
}

impl FieldSet for BTreeMap<String, String> {
    fn field_value(&self, field: &str) -> Option<String> {
        self.get(field).cloned()
    }
}

impl<S: BuildHasher> FieldSet for HashMap<String, String, S> {
    fn field_value(&self, field: &str) -> Option<String> {
        self.get(field).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> FieldSet for F {
    fn field_value(&self, field: &str) -> Option<String> {
        self(field)
    }
}

/// A parsed field selector: the AND of its terms. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A single `field=value` term.
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.into(),
                operator: FieldOperator::Equals,
                value: value.into(),
            }],
        }
    }

    /// `field=value` for every entry, in the map's order (`fields.SelectorFromSet`).
    pub fn from_set<'a, I>(fields: I) -> Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        FieldSelector {
            requirements: fields
                .into_iter()
                .map(|(k, v)| FieldRequirement {
                    field: k.clone(),
                    operator: FieldOperator::Equals,
                    value: v.clone(),
                })
                .collect(),
        }
    }

    /// A selector from terms built elsewhere, kept in the given order.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        FieldSelector { requirements }
    }

    /// Parses the string syntax of upstream `fields.ParseSelector`.
    ///
    /// Terms are sorted (as raw strings) before parsing, empty terms are skipped, the field
    /// name is everything before the first operator (no escaping there, no whitespace
    /// trimming anywhere), and a term whose field and value are both empty is dropped.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        Self::parse_and_transform(selector, |f, v| {
            Ok::<_, FieldSelectorError>((f.to_string(), v.to_string()))
        })
    }

    /// Parses and then rewrites every term with `transform` (`fields.ParseAndTransformSelector`),
    /// as the apiserver does to map field labels between API versions.
    pub fn parse_and_transform<E, T>(selector: &str, transform: T) -> Result<Self, E>
    where
        E: From<FieldSelectorError>,
        T: FnMut(&str, &str) -> Result<(String, String), E>,
    {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::Invalid {
                    selector: selector.to_string(),
                    term: term.to_string(),
                }
                .into());
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_value(raw_value)?,
            });
        }
        FieldSelector { requirements }.transform(transform)
    }

    /// Rewrites every term's field and value; a term mapped to an empty field and an empty
    /// value is removed.
    pub fn transform<E, T>(&self, mut transform: T) -> Result<Self, E>
    where
        T: FnMut(&str, &str) -> Result<(String, String), E>,
    {
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for r in &self.requirements {
            let (field, value) = transform(&r.field, &r.value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field,
                operator: r.operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The terms, in parse order (sorted by their raw text).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every term holds for `fields`.
    pub fn matches<F: FieldSet + ?Sized>(&self, fields: &F) -> bool {
        self.requirements.iter().all(|r| r.matches(fields))
    }

    /// The value of the first `field=value` term on `field`, if any; lets callers turn a list
    /// into a direct lookup (e.g. `metadata.name`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Checks every field name against what a resource kind supports, failing with upstream's
    /// "field label not supported: X" for the first unsupported one.
    pub fn check_supported<P: Fn(&str) -> bool>(
        &self,
        is_supported: P,
    ) -> Result<(), FieldSelectorError> {
        match self.requirements.iter().find(|r| !is_supported(&r.field)) {
            Some(r) => Err(FieldSelectorError::FieldLabelNotSupported(r.field.clone())),
            None => Ok(()),
        }
    }
}

impl fmt::Display for FieldSelector {
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

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` so an arbitrary string can be used as a selector value.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`], rejecting unknown escapes and bare `,` or `=`.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{c}")));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    if escaped {
        return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

/// Splits on commas that are not escaped; the escapes stay in the terms for `unescape_value`.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits at the first operator. `!=` and `==` are tried before `=` at each position so `==`
/// does not leave a stray `=` at the start of the value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (token, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(token) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_ok(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn valid_selectors_and_canonical_strings() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("b=c,a=d", "a=d,b=c"),
            ("a=b,a!=c", "a!=c,a=b"),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("x=", "x="),
            ("x!=", "x!="),
            ("=x", "=x"),
            ("=", ""),
            ("!=", ""),
            ("==", ""),
            ("a=b,", "a=b"),
            (",a=b,,", "a=b"),
            ("a = b", "a = b"),
            ("metadata.name=foo", "metadata.name=foo"),
            ("spec.nodeName!=", "spec.nodeName!="),
            ("a!b=c", "a!b=c"),
            ("a=!b", "a=!b"),
            (r"a=\,", r"a=\,"),
            (r"a=\=", r"a=\="),
            (r"a=\\", r"a=\\"),
            (r"a=b\,c,d=e", r"a=b\,c,d=e"),
            (r"x=a\=b\\c\,d", r"x=a\=b\\c\,d"),
        ];
        for (input, want) in cases {
            let sel = parse_ok(input);
            assert_eq!(sel.to_string(), want, "input {input:?}");
            assert_eq!(parse_ok(want), sel, "round trip of {input:?}");
        }
    }

    #[test]
    fn parsed_requirements_are_unescaped() {
        let sel = parse_ok(r"x=a\=b\\c\,d,y!=é");
        assert_eq!(
            sel.requirements(),
            &[
                FieldRequirement {
                    field: "x".into(),
                    operator: FieldOperator::Equals,
                    value: r"a=b\c,d".into()
                },
                FieldRequirement {
                    field: "y".into(),
                    operator: FieldOperator::NotEquals,
                    value: "é".into()
                },
            ]
        );
        // `a=b!=c`: the first operator wins, so the field is "a" and the value "b!=c"... except
        // that the value then contains a bare "=".
        assert_eq!(
            FieldSelector::parse("a=b!=c").map(|s| s.requirements()[0].value.clone()),
            Err(FieldSelectorError::UnescapedRune('='))
        );
    }

    #[test]
    fn errors() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("a!b", "invalid selector: 'a!b'; can't understand 'a!b'"),
            (
                "x=a||y=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "x==a==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                r"a=\b",
                r"invalid field selector: invalid escape sequence: \b",
            ),
            (
                r"a=\!",
                r"invalid field selector: invalid escape sequence: \!",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"a=\é",
                r"invalid field selector: invalid escape sequence: \é",
            ),
        ];
        for (input, want) in cases {
            match FieldSelector::parse(input) {
                Ok(s) => panic!("{input:?} should fail, parsed as {s}"),
                Err(e) => assert_eq!(e.to_string(), want, "input {input:?}"),
            }
        }
    }

    #[test]
    fn matching() {
        let set = fields(&[
            ("metadata.name", "foo"),
            ("spec.nodeName", ""),
            ("x", "a,b"),
        ]);
        let cases = [
            ("", true),
            ("metadata.name=foo", true),
            ("metadata.name==foo", true),
            ("metadata.name=bar", false),
            ("metadata.name!=bar", true),
            ("metadata.name!=foo", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("missing=", true),
            ("missing!=", false),
            ("missing=a", false),
            (r"x=a\,b", true),
            ("metadata.name=foo,spec.nodeName=", true),
            ("metadata.name=foo,spec.nodeName=n1", false),
        ];
        for (s, want) in cases {
            let sel = parse_ok(s);
            assert_eq!(sel.matches(&set), want, "{s:?} on map");
            let hash: HashMap<String, String> = set.clone().into_iter().collect();
            assert_eq!(sel.matches(&hash), want, "{s:?} on HashMap");
            let lookup = |f: &str| set.get(f).cloned();
            assert_eq!(sel.matches(&lookup), want, "{s:?} with closure");
        }
    }

    #[test]
    fn exact_match_and_supported_fields() {
        let sel = parse_ok("metadata.name!=a,metadata.namespace=ns,metadata.name=b");
        assert_eq!(sel.requires_exact_match("metadata.name"), Some("b"));
        assert_eq!(sel.requires_exact_match("metadata.namespace"), Some("ns"));
        assert_eq!(sel.requires_exact_match("spec.nodeName"), None);

        let supported = |f: &str| matches!(f, "metadata.name" | "metadata.namespace");
        assert!(sel.check_supported(supported).is_ok());
        let err = parse_ok("metadata.name=a,spec.foo=b")
            .check_supported(supported)
            .unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.foo");
    }

    #[test]
    fn transform() {
        let sel = FieldSelector::parse_and_transform("a=1,b=2,c=3", |f, v| {
            Ok::<_, FieldSelectorError>(match f {
                "a" => ("alpha".to_string(), v.to_string()),
                "b" => (String::new(), String::new()),
                _ => (f.to_string(), format!("{v}{v}")),
            })
        })
        .unwrap();
        assert_eq!(sel.to_string(), "alpha=1,c=33");

        let err = FieldSelector::parse_and_transform("a=1,zz=2", |f, v| {
            if f == "zz" {
                Err(FieldSelectorError::FieldLabelNotSupported(f.to_string()))
            } else {
                Ok((f.to_string(), v.to_string()))
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: zz");
    }

    #[test]
    fn constructors() {
        assert!(FieldSelector::everything().is_empty());
        assert!(FieldSelector::everything().matches(&BTreeMap::new()));
        let one = FieldSelector::one_term_equal("metadata.name", "a,b");
        assert_eq!(one.to_string(), r"metadata.name=a\,b");
        assert_eq!(parse_ok(&one.to_string()), one);
        let set = fields(&[("b", "2"), ("a", "1")]);
        assert_eq!(FieldSelector::from_set(&set).to_string(), "a=1,b=2");
    }

    #[test]
    fn escaping() {
        let cases = [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            ("\\", r"\\"),
            (r"\=,", r"\\\=\,"),
            ("!", "!"),
            ("é=", r"é\="),
        ];
        for (raw, escaped) in cases {
            assert_eq!(escape_value(raw), escaped, "escape {raw:?}");
            assert_eq!(
                unescape_value(escaped).as_deref(),
                Ok(raw),
                "unescape {escaped:?}"
            );
        }
        assert_eq!(
            unescape_value("a,b"),
            Err(FieldSelectorError::UnescapedRune(','))
        );
        assert_eq!(
            unescape_value("a,b").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 44"
        );
    }

    #[test]
    fn odd_inputs_never_panic() {
        let alphabet: Vec<char> = "ab=!,\\é日 \0".chars().collect();
        let mut seed: u64 = 0x1234_5678_9ABC_DEF1;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let mut s = String::new();
            let mut x = seed;
            for _ in 0..len {
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
                x = x.rotate_left(9).wrapping_mul(0x2545_F491_4F6C_DD1D);
            }
            if let Ok(sel) = FieldSelector::parse(&s) {
                let printed = sel.to_string();
                let reparsed = FieldSelector::parse(&printed)
                    .unwrap_or_else(|e| panic!("{s:?} -> {printed:?} does not reparse: {e}"));
                // Re-parsing sorts by the escaped text, so compare as sets of terms.
                let mut a = sel.requirements().to_vec();
                let mut b = reparsed.requirements().to_vec();
                let key =
                    |r: &FieldRequirement| (r.field.clone(), r.operator.as_str(), r.value.clone());
                a.sort_by_key(key);
                b.sort_by_key(key);
                assert_eq!(a, b, "{s:?} -> {printed:?}");
            }
        }
    }
}
