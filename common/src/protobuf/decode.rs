//! Protobuf bytes to the JSON form Go's `encoding/json` gives the same Go value.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::table::{Field, Shape, Special, Table, Ty};
use super::timefmt;
use super::wire::{Reader, WireValue, FIXED64, LEN, VARINT};
use super::{ProtoError, MAGIC, MAX_DEPTH};

pub(crate) fn message(
    t: &Table,
    msg: usize,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, ProtoError> {
    let mut out = Map::new();
    message_into(t, msg, bytes, depth, &mut out)?;
    Ok(out)
}

fn message_into(
    t: &Table,
    msg: usize,
    bytes: &[u8],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    let m = &t.messages[msg];
    let mut seen: Vec<Vec<WireValue<'_>>> = vec![Vec::new(); m.fields.len()];
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        // Unknown fields are skipped, as Go skips fields newer than its types.
        if let Some(i) = m.field_index(number) {
            seen[i].push(value);
        }
    }
    for (f, values) in m.fields.iter().zip(seen) {
        match f.shape {
            Shape::Single => single(t, f, &values, depth, out)?,
            Shape::Repeated => {
                let items = repeated(t, f, &values, depth)?;
                if !items.is_empty() {
                    out.insert(f.json.clone(), Value::Array(items));
                }
            }
            Shape::Map => {
                let entries = map(t, f, &values, depth)?;
                if !entries.is_empty() {
                    out.insert(f.json.clone(), Value::Object(entries));
                }
            }
        }
    }
    Ok(())
}

fn wrong_type(f: &Field) -> ProtoError {
    ProtoError::Malformed(format!("wrong wire type for field {}", f.json))
}

/// The payload of a length-delimited field; repeated occurrences of a singular message merge,
/// which on the wire is their concatenation.
fn payload<'a>(f: &Field, values: &[WireValue<'a>]) -> Result<Cow<'a, [u8]>, ProtoError> {
    if let [WireValue::Bytes(b)] = values {
        return Ok(Cow::Borrowed(b));
    }
    let mut joined = Vec::new();
    for v in values {
        match v {
            WireValue::Bytes(b) => joined.extend_from_slice(b),
            _ => return Err(wrong_type(f)),
        }
    }
    Ok(Cow::Owned(joined))
}

fn single(
    t: &Table,
    f: &Field,
    values: &[WireValue<'_>],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    let Some(last) = values.last() else {
        if f.required {
            if let Some(zero) = zero_value(f.ty) {
                out.insert(f.json.clone(), zero);
            }
        }
        return Ok(());
    };
    match f.ty {
        Ty::Message(idx) => {
            let bytes = payload(f, values)?;
            if f.inline {
                message_into(t, idx, &bytes, depth + 1, out)?;
            } else {
                let value = message(t, idx, &bytes, depth + 1)?;
                out.insert(f.json.clone(), Value::Object(value));
            }
        }
        Ty::Special(sp) => {
            let bytes = payload(f, values)?;
            out.insert(f.json.clone(), special(t, sp, &bytes, depth + 1)?);
        }
        _ => {
            let value = scalar(f, *last)?;
            // Go writes non-pointer fields even when zero; omitempty then drops them.
            if f.required || f.pointer || !is_zero(&value) {
                out.insert(f.json.clone(), value);
            }
        }
    }
    Ok(())
}

fn repeated(
    t: &Table,
    f: &Field,
    values: &[WireValue<'_>],
    depth: usize,
) -> Result<Vec<Value>, ProtoError> {
    let mut items = Vec::with_capacity(values.len());
    for v in values {
        match (f.ty, v) {
            (Ty::Message(idx), WireValue::Bytes(b)) => {
                items.push(Value::Object(message(t, idx, b, depth + 1)?));
            }
            (Ty::Special(sp), WireValue::Bytes(b)) => items.push(special(t, sp, b, depth + 1)?),
            (Ty::Message(_) | Ty::Special(_), _) => return Err(wrong_type(f)),
            (Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double, WireValue::Bytes(b)) => {
                // Packed encoding: the elements back to back in one length-delimited field.
                let mut reader = Reader::new(b);
                while !reader.is_empty() {
                    let element = if f.ty == Ty::Double {
                        WireValue::Fixed64(reader.fixed64()?)
                    } else {
                        WireValue::Varint(reader.varint()?)
                    };
                    items.push(scalar(f, element)?);
                }
            }
            _ => items.push(scalar(f, *v)?),
        }
    }
    Ok(items)
}

fn map(
    t: &Table,
    f: &Field,
    values: &[WireValue<'_>],
    depth: usize,
) -> Result<Map<String, Value>, ProtoError> {
    // Go's encoding/json writes map keys sorted.
    let mut entries: BTreeMap<String, Value> = BTreeMap::new();
    for v in values {
        let WireValue::Bytes(entry) = v else {
            return Err(wrong_type(f));
        };
        let mut key = String::new();
        let mut value_parts: Vec<WireValue<'_>> = Vec::new();
        let mut reader = Reader::new(entry);
        while let Some((number, part)) = reader.field()? {
            match (number, part) {
                (1, WireValue::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
                (1, _) => return Err(wrong_type(f)),
                (2, part) => value_parts.push(part),
                _ => {}
            }
        }
        let value = match f.ty {
            Ty::Message(idx) => {
                Value::Object(message(t, idx, &payload(f, &value_parts)?, depth + 1)?)
            }
            Ty::Special(sp) => special(t, sp, &payload(f, &value_parts)?, depth + 1)?,
            _ => match value_parts.last() {
                Some(part) => scalar(f, *part)?,
                None => zero_value(f.ty).unwrap_or(Value::Null),
            },
        };
        entries.insert(key, value);
    }
    Ok(entries.into_iter().collect())
}

fn scalar(f: &Field, v: WireValue<'_>) -> Result<Value, ProtoError> {
    Ok(match (f.ty, v) {
        (Ty::String, WireValue::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Ty::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Bool, WireValue::Varint(x)) => Value::Bool(x != 0),
        // int32 travels sign-extended to 64 bits; the low half is the value.
        (Ty::Int32, WireValue::Varint(x)) => Value::from(x as i32),
        (Ty::Int64, WireValue::Varint(x)) => Value::from(x as i64),
        (Ty::Double, WireValue::Fixed64(x)) => double(f64::from_bits(x))
            .ok_or_else(|| ProtoError::invalid(&f.json, "not a finite number"))?,
        _ => {
            let expected = match f.ty {
                Ty::Double => FIXED64,
                Ty::Bool | Ty::Int32 | Ty::Int64 => VARINT,
                _ => LEN,
            };
            return Err(ProtoError::Malformed(format!(
                "field {}: wire type {} where {} was expected",
                f.json,
                v.wire_type(),
                expected
            )));
        }
    })
}

/// Go prints integral floats without a fraction ("1", not "1.0").
pub(crate) fn double(x: f64) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return Some(Value::from(x as i64));
    }
    Number::from_f64(x).map(Value::Number)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

fn zero_value(ty: Ty) -> Option<Value> {
    match ty {
        Ty::String => Some(Value::String(String::new())),
        Ty::Bool => Some(Value::Bool(false)),
        Ty::Int32 | Ty::Int64 | Ty::Double => Some(Value::from(0)),
        _ => None,
    }
}

/// The fields of a small fixed-layout message, by number (last occurrence wins, except that
/// every occurrence of a repeated field is kept in `all`).
struct Parts<'a> {
    all: Vec<(u32, WireValue<'a>)>,
}

impl<'a> Parts<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ProtoError> {
        let mut all = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some(field) = reader.field()? {
            all.push(field);
        }
        Ok(Parts { all })
    }

    fn last(&self, number: u32) -> Option<WireValue<'a>> {
        self.all
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| *v)
    }

    fn varint(&self, number: u32) -> Result<u64, ProtoError> {
        match self.last(number) {
            None => Ok(0),
            Some(WireValue::Varint(x)) => Ok(x),
            Some(_) => Err(ProtoError::Malformed(format!(
                "field {number}: expected a varint"
            ))),
        }
    }

    fn bytes(&self, number: u32) -> Result<Option<&'a [u8]>, ProtoError> {
        match self.last(number) {
            None => Ok(None),
            Some(WireValue::Bytes(b)) => Ok(Some(b)),
            Some(_) => Err(ProtoError::Malformed(format!(
                "field {number}: expected length-delimited bytes"
            ))),
        }
    }

    fn each_bytes(&self, number: u32) -> Result<Vec<&'a [u8]>, ProtoError> {
        self.all
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, v)| match v {
                WireValue::Bytes(b) => Ok(*b),
                _ => Err(ProtoError::Malformed(format!(
                    "field {number}: expected length-delimited bytes"
                ))),
            })
            .collect()
    }

    /// All occurrences of a message field, merged.
    fn merged(&self, number: u32) -> Result<Option<Vec<u8>>, ProtoError> {
        let parts = self.each_bytes(number)?;
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(parts.concat()))
    }
}

fn raw_json(raw: &[u8], what: &str) -> Result<Value, ProtoError> {
    serde_json::from_slice(raw)
        .map_err(|e| ProtoError::invalid(what, &format!("embedded JSON is invalid: {e}")))
}

pub(crate) fn special(
    t: &Table,
    sp: Special,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    let parts = Parts::parse(bytes)?;
    Ok(match sp {
        Special::Time | Special::MicroTime => {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            let seconds = parts.varint(1)? as i64;
            // Go keeps only whole seconds of a Time read from protobuf.
            let nanos = if sp == Special::MicroTime {
                parts.varint(2)? as i32
            } else {
                0
            };
            let seconds = seconds.saturating_add(i64::from(nanos.div_euclid(1_000_000_000)));
            let nanos = nanos.rem_euclid(1_000_000_000);
            if seconds == timefmt::GO_ZERO_UNIX && nanos == 0 {
                return Ok(Value::Null);
            }
            let text = timefmt::format_time(seconds, nanos, sp == Special::MicroTime)
                .ok_or_else(|| ProtoError::invalid("time", "year outside 0..=9999"))?;
            Value::String(text)
        }
        Special::Duration => Value::String(timefmt::format_duration(parts.varint(1)? as i64)),
        Special::FieldsV1 | Special::Json => match parts.bytes(1)? {
            Some(raw) if !raw.is_empty() => raw_json(raw, "raw")?,
            _ => Value::Null,
        },
        Special::RawExtension => match parts.bytes(1)? {
            Some(raw) if raw.starts_with(&MAGIC) => super::decode_at(raw, depth + 1)?,
            Some(raw) if !raw.is_empty() => raw_json(raw, "raw")?,
            _ => Value::Null,
        },
        Special::IntOrString => {
            if parts.varint(1)? == 1 {
                let s = parts.bytes(3)?.unwrap_or_default();
                Value::String(String::from_utf8_lossy(s).into_owned())
            } else {
                Value::from(parts.varint(2)? as i32)
            }
        }
        Special::Quantity => match parts.bytes(1)? {
            None => Value::String("0".to_string()),
            Some(s) => {
                let text = String::from_utf8_lossy(s);
                let q = crate::quantity::Quantity::parse(&text)
                    .map_err(|e| ProtoError::invalid("quantity", &e.to_string()))?;
                Value::String(q.canonical_string())
            }
        },
        Special::StringList => Value::Array(
            parts
                .each_bytes(1)?
                .into_iter()
                .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                .collect(),
        ),
        Special::SchemaOrArray(schema) => {
            let list = parts.each_bytes(2)?;
            if !list.is_empty() {
                let items = list
                    .into_iter()
                    .map(|b| message(t, schema, b, depth + 1).map(Value::Object))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Array(items)
            } else if let Some(b) = parts.merged(1)? {
                Value::Object(message(t, schema, &b, depth + 1)?)
            } else {
                Value::Null
            }
        }
        Special::SchemaOrBool(schema) => match parts.merged(2)? {
            Some(b) => Value::Object(message(t, schema, &b, depth + 1)?),
            None => Value::Bool(parts.varint(1)? != 0),
        },
        Special::SchemaOrStringArray(schema) => {
            let list = parts.each_bytes(2)?;
            if !list.is_empty() {
                Value::Array(
                    list.into_iter()
                        .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                )
            } else if let Some(b) = parts.merged(1)? {
                Value::Object(message(t, schema, &b, depth + 1)?)
            } else {
                Value::Null
            }
        }
    })
}
