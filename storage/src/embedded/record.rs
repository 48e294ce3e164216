//! The on-disk form of one log record.
//!
//! A frame is `len: u32 LE | crc32(payload): u32 LE | payload`. The checksum lets replay tell a
//! complete record from one torn by a crash (or from zeroes a filesystem left past the end of
//! the last synced write), so the log can be cut back to its last whole record.
//!
//! Payloads start with an op byte:
//! - `PUT`: revision i64, create revision i64, key (u32 len + bytes), value (u32 len + bytes)
//! - `DELETE`: revision i64, key
//! - `COMPACT`: compacted revision i64, head revision i64. It opens every rewritten log and
//!   carries the head revision so revisions never go backwards after the records of the
//!   newest writes were compacted away.

use crate::{Error, Result, Revision};

/// The first bytes of every log file; the trailing digits are the format version.
pub(super) const MAGIC: &[u8; 8] = b"FKMVCC01";

/// Bytes before a frame's payload.
pub(super) const FRAME_HEADER: usize = 8;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_COMPACT: u8 = 3;

/// A decoded record, as replay needs it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    Put {
        revision: Revision,
        create_revision: Revision,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        revision: Revision,
        key: String,
    },
    Compact {
        compacted: Revision,
        head: Revision,
    },
}

pub(super) fn encode_put(
    buf: &mut Vec<u8>,
    revision: Revision,
    create_revision: Revision,
    key: &str,
    value: &[u8],
) -> Result<()> {
    frame(buf, |p| {
        p.push(OP_PUT);
        p.extend_from_slice(&revision.to_le_bytes());
        p.extend_from_slice(&create_revision.to_le_bytes());
        put_bytes(p, key.as_bytes())?;
        put_bytes(p, value)
    })
}

pub(super) fn encode_delete(buf: &mut Vec<u8>, revision: Revision, key: &str) -> Result<()> {
    frame(buf, |p| {
        p.push(OP_DELETE);
        p.extend_from_slice(&revision.to_le_bytes());
        put_bytes(p, key.as_bytes())
    })
}

pub(super) fn encode_compact(buf: &mut Vec<u8>, compacted: Revision, head: Revision) -> Result<()> {
    frame(buf, |p| {
        p.push(OP_COMPACT);
        p.extend_from_slice(&compacted.to_le_bytes());
        p.extend_from_slice(&head.to_le_bytes());
        Ok(())
    })
}

/// Appends one frame to `buf`, the payload written in place by `write` so values are copied
/// once. On error `buf` is left as it was.
fn frame(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let payload = &buf[start + FRAME_HEADER..];
    let Ok(len) = u32::try_from(payload.len()) else {
        buf.truncate(start);
        return Err(Error::Internal("record larger than 4 GiB".into()));
    };
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn put_bytes(p: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::Internal("key or value larger than 4 GiB".into()))?;
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(bytes);
    Ok(())
}

/// Splits a frame header into payload length and checksum.
pub(super) fn parse_header(header: &[u8; FRAME_HEADER]) -> (u32, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

/// Decodes a payload whose checksum already matched. `None` means it is not a record this
/// version writes.
pub(super) fn decode(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let record = match r.u8()? {
        OP_PUT => Record::Put {
            revision: r.i64()?,
            create_revision: r.i64()?,
            key: r.string()?,
            value: r.bytes()?.to_vec(),
        },
        OP_DELETE => Record::Delete {
            revision: r.i64()?,
            key: r.string()?,
        },
        OP_COMPACT => Record::Compact {
            compacted: r.i64()?,
            head: r.i64()?,
        },
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        Some(i64::from_le_bytes(b.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes(b.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &[u8]) -> &[u8] {
        let header: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().unwrap();
        let (len, crc) = parse_header(&header);
        let payload = &frame[FRAME_HEADER..];
        assert_eq!(payload.len(), len as usize);
        assert_eq!(crc32fast::hash(payload), crc);
        payload
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode_put(&mut buf, 7, 3, "/registry/pods/a", b"{}").unwrap();
        assert_eq!(
            decode(payload(&buf)),
            Some(Record::Put {
                revision: 7,
                create_revision: 3,
                key: "/registry/pods/a".into(),
                value: b"{}".to_vec(),
            })
        );
        buf.clear();
        encode_delete(&mut buf, 9, "k").unwrap();
        assert_eq!(
            decode(payload(&buf)),
            Some(Record::Delete {
                revision: 9,
                key: "k".into()
            })
        );
        buf.clear();
        encode_compact(&mut buf, 4, 12).unwrap();
        assert_eq!(
            decode(payload(&buf)),
            Some(Record::Compact {
                compacted: 4,
                head: 12
            })
        );
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0; 8]), None);
        assert_eq!(decode(&[OP_DELETE, 1, 0, 0]), None);
        let mut buf = Vec::new();
        encode_delete(&mut buf, 1, "k").unwrap();
        let mut long = payload(&buf).to_vec();
        long.push(0);
        assert_eq!(decode(&long), None);
    }
}
