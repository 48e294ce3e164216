//! The Kubernetes JSON form to protobuf bytes, field by field in number order as Go writes them.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::table::{Field, Shape, Special, Table, Ty};
use super::timefmt;
use super::wire::{put_bytes, put_fixed64_field, put_varint_field};
use super::{ProtoError, MAX_DEPTH};

pub(crate) struct Encoder<'t> {
    pub table: &'t Table,
}

impl Encoder<'_> {
    pub fn message(
        &self,
        msg: usize,
        obj: &Map<String, Value>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), ProtoError> {
        if depth > MAX_DEPTH {
            return Err(ProtoError::TooDeep(MAX_DEPTH));
        }
        let m = &self.table.messages[msg];
        for f in m.by_number.iter().map(|&i| &m.fields[i]) {
            if f.inline {
                if let Ty::Message(idx) = f.ty {
                    let mut inner = Vec::new();
                    self.message(idx, obj, &mut inner, depth + 1)?;
                    put_bytes(out, f.number, &inner);
                }
                continue;
            }
            let Some(value) = obj.get(&f.json) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            match f.shape {
                Shape::Single => self.value(f, value, out, depth)?,
                Shape::Repeated => {
                    let items = value
                        .as_array()
                        .ok_or_else(|| ProtoError::invalid(&f.json, "expected an array"))?;
                    for item in items {
                        self.value(f, item, out, depth)?;
                    }
                }
                Shape::Map => {
                    let entries = value
                        .as_object()
                        .ok_or_else(|| ProtoError::invalid(&f.json, "expected an object"))?;
                    // Go sorts map keys, which makes its output deterministic; so do we.
                    let mut keys: Vec<&String> = entries.keys().collect();
                    keys.sort();
                    for key in keys {
                        let mut entry = Vec::new();
                        put_bytes(&mut entry, 1, key.as_bytes());
                        let v = &entries[key];
                        let value_field = Field {
                            number: 2,
                            json: format!("{}[{key}]", f.json),
                            ty: f.ty,
                            shape: Shape::Single,
                            required: false,
                            pointer: false,
                            inline: false,
                        };
                        if v.is_null() {
                            if let Ty::Message(_) = f.ty {
                                put_bytes(&mut entry, 2, &[]);
                            }
                        } else {
                            self.value(&value_field, v, &mut entry, depth)?;
                        }
                        put_bytes(out, f.number, &entry);
                    }
                }
            }
        }
        Ok(())
    }

    /// One value of field `f` (an element, for repeated fields), tag included.
    fn value(
        &self,
        f: &Field,
        value: &Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), ProtoError> {
        let n = f.number;
        match f.ty {
            Ty::String => put_bytes(out, n, expect_str(f, value)?.as_bytes()),
            Ty::Bytes => {
                let text = expect_str(f, value)?;
                let bytes = decode_base64(text)
                    .ok_or_else(|| ProtoError::invalid(&f.json, "invalid base64 data"))?;
                put_bytes(out, n, &bytes);
            }
            Ty::Bool => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| ProtoError::invalid(&f.json, "expected a boolean"))?;
                put_varint_field(out, n, u64::from(b));
            }
            Ty::Int32 => {
                let x = integer(f, value)?;
                let x = i32::try_from(x)
                    .map_err(|_| ProtoError::invalid(&f.json, "out of range for int32"))?;
                // Negative int32 values are sign-extended to ten bytes, as protobuf requires.
                put_varint_field(out, n, i64::from(x) as u64);
            }
            Ty::Int64 => put_varint_field(out, n, integer(f, value)? as u64),
            Ty::Double => {
                let x = value
                    .as_f64()
                    .ok_or_else(|| ProtoError::invalid(&f.json, "expected a number"))?;
                put_fixed64_field(out, n, x.to_bits());
            }
            Ty::Message(idx) => {
                if value.is_null() {
                    put_bytes(out, n, &[]);
                    return Ok(());
                }
                let obj = value
                    .as_object()
                    .ok_or_else(|| ProtoError::invalid(&f.json, "expected an object"))?;
                let mut inner = Vec::new();
                self.message(idx, obj, &mut inner, depth + 1)?;
                put_bytes(out, n, &inner);
            }
            Ty::Special(sp) => {
                if let Some(inner) = self.special(f, sp, value, depth + 1)? {
                    put_bytes(out, n, &inner);
                }
            }
        }
        Ok(())
    }

    /// The message bytes of a special type, or `None` when Go would leave the field out.
    fn special(
        &self,
        f: &Field,
        sp: Special,
        value: &Value,
        depth: usize,
    ) -> Result<Option<Vec<u8>>, ProtoError> {
        if depth > MAX_DEPTH {
            return Err(ProtoError::TooDeep(MAX_DEPTH));
        }
        let mut out = Vec::new();
        match sp {
            Special::Time | Special::MicroTime => {
                if value.is_null() {
                    return Ok(None);
                }
                let text = expect_str(f, value)?;
                let (seconds, nanos) = timefmt::parse_time(text)
                    .ok_or_else(|| ProtoError::invalid(&f.json, "not an RFC 3339 time"))?;
                let nanos = if sp == Special::MicroTime {
                    nanos / 1000 * 1000
                } else {
                    0
                };
                // Go writes the zero time as an empty message.
                if seconds != timefmt::GO_ZERO_UNIX || nanos != 0 {
                    put_varint_field(&mut out, 1, seconds as u64);
                    put_varint_field(&mut out, 2, i64::from(nanos) as u64);
                }
            }
            Special::Duration => {
                let text = expect_str(f, value)?;
                let nanos = timefmt::parse_duration(text)
                    .ok_or_else(|| ProtoError::invalid(&f.json, "not a duration"))?;
                put_varint_field(&mut out, 1, nanos as u64);
            }
            Special::FieldsV1 | Special::Json => {
                put_bytes(&mut out, 1, &to_json(value));
            }
            Special::RawExtension => {
                if value.is_null() {
                    return Ok(None);
                }
                // Objects embedded in built-in types are kept as JSON upstream.
                put_bytes(&mut out, 1, &to_json(value));
            }
            Special::IntOrString => match value {
                Value::String(s) => {
                    put_varint_field(&mut out, 1, 1);
                    put_varint_field(&mut out, 2, 0);
                    put_bytes(&mut out, 3, s.as_bytes());
                }
                _ => {
                    let x = integer(f, value)?;
                    let x = i32::try_from(x)
                        .map_err(|_| ProtoError::invalid(&f.json, "out of range for int32"))?;
                    put_varint_field(&mut out, 1, 0);
                    put_varint_field(&mut out, 2, i64::from(x) as u64);
                    put_bytes(&mut out, 3, &[]);
                }
            },
            Special::Quantity => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    // Quantities written as bare JSON numbers are accepted upstream too.
                    Value::Number(n) => n.to_string(),
                    _ => return Err(ProtoError::invalid(&f.json, "expected a quantity string")),
                };
                put_bytes(&mut out, 1, text.as_bytes());
            }
            Special::StringList => {
                let items = value
                    .as_array()
                    .ok_or_else(|| ProtoError::invalid(&f.json, "expected an array"))?;
                for item in items {
                    put_bytes(&mut out, 1, expect_str(f, item)?.as_bytes());
                }
            }
            Special::SchemaOrArray(schema) => match value {
                Value::Array(items) => {
                    for item in items {
                        put_bytes(&mut out, 2, &self.schema(f, schema, item, depth)?);
                    }
                }
                _ => put_bytes(&mut out, 1, &self.schema(f, schema, value, depth)?),
            },
            Special::SchemaOrBool(schema) => match value {
                Value::Bool(b) => put_varint_field(&mut out, 1, u64::from(*b)),
                _ => {
                    put_varint_field(&mut out, 1, 1);
                    put_bytes(&mut out, 2, &self.schema(f, schema, value, depth)?);
                }
            },
            Special::SchemaOrStringArray(schema) => match value {
                Value::Array(items) => {
                    for item in items {
                        put_bytes(&mut out, 2, expect_str(f, item)?.as_bytes());
                    }
                }
                _ => put_bytes(&mut out, 1, &self.schema(f, schema, value, depth)?),
            },
        }
        Ok(Some(out))
    }

    fn schema(
        &self,
        f: &Field,
        schema: usize,
        value: &Value,
        depth: usize,
    ) -> Result<Vec<u8>, ProtoError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ProtoError::invalid(&f.json, "expected a schema object"))?;
        let mut out = Vec::new();
        self.message(schema, obj, &mut out, depth + 1)?;
        Ok(out)
    }
}

fn expect_str<'v>(f: &Field, value: &'v Value) -> Result<&'v str, ProtoError> {
    value
        .as_str()
        .ok_or_else(|| ProtoError::invalid(&f.json, "expected a string"))
}

fn integer(f: &Field, value: &Value) -> Result<i64, ProtoError> {
    if let Some(x) = value.as_i64() {
        return Ok(x);
    }
    match value.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Ok(x as i64),
        _ => Err(ProtoError::invalid(&f.json, "expected an integer")),
    }
}

fn to_json(value: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail: its keys are strings and its numbers finite.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}
