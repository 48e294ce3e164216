//! The append-only log file: replay on open (cutting off a torn tail), durable appends, and
//! the rewrite that compaction uses to keep the file bounded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{Index, Version};
use super::record::{self, Record, FRAME_HEADER, MAGIC};
use crate::{Error, Result};

pub(super) const LOG_FILE: &str = "store.log";
const TMP_FILE: &str = "store.log.tmp";
const LOCK_FILE: &str = "LOCK";

/// Encoded records are handed to the file in chunks of about this size during a rewrite.
const WRITE_CHUNK: usize = 1 << 20;

pub(super) struct Log {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Holds an exclusive lock on the data dir for as long as the log is open, so two stores
    /// never append to one file.
    lock: File,
    /// Set once the file may no longer match what was acknowledged (a failed write or sync),
    /// after which every write is refused: appending more could bury a torn record in the
    /// middle of the log, where replay would cut off everything after it.
    broken: Option<String>,
}

impl Log {
    /// Opens (or creates) the log in `dir` and rebuilds the index from it.
    pub fn open(dir: &Path) -> Result<(Log, Index)> {
        fs::create_dir_all(dir).map_err(|e| io_error("create data dir", dir, e))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(LOG_FILE);
        let tmp = dir.join(TMP_FILE);
        // A rewrite that crashed before its rename leaves this behind; the log is still whole.
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(|e| io_error("remove", &tmp, e))?;
        }
        if !path.exists() {
            create_empty(dir, &path)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let (index, end) = replay(&file, &path)?;
        let len = file
            .metadata()
            .map_err(|e| io_error("stat", &path, e))?
            .len();
        if end < len {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = end,
                dropped_bytes = len - end,
                "store log ends in an incomplete record (a write cut short by a crash); truncating it"
            );
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("truncate", &path, e))?;
        }
        file.seek(SeekFrom::Start(end))
            .map_err(|e| io_error("seek", &path, e))?;
        Ok((
            Log {
                dir: dir.to_owned(),
                path,
                file,
                lock,
                broken: None,
            },
            index,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why writes are refused, if they are.
    pub fn broken(&self) -> Option<Error> {
        self.broken
            .as_ref()
            .map(|why| Error::Unavailable(format!("embedded store is read-only: {why}")))
    }

    /// Appends encoded records and makes them durable before returning.
    pub fn append(&mut self, records: &[u8]) -> Result<()> {
        if let Some(e) = self.broken() {
            return Err(e);
        }
        let written = self
            .file
            .write_all(records)
            .and_then(|()| self.file.sync_data());
        written.map_err(|e| {
            let why = format!("writing {}: {e}", self.path.display());
            self.broken = Some(why.clone());
            Error::Unavailable(why)
        })
    }

    /// Replaces the log with one holding only what `index` retains, then continues appending
    /// to the new file. The new file is complete and synced before it takes the old one's
    /// name, so a crash at any point leaves one whole log.
    pub fn rewrite(&mut self, index: &Index) -> Result<()> {
        if let Some(e) = self.broken() {
            return Err(e);
        }
        let tmp = self.dir.join(TMP_FILE);
        let file = match write_snapshot(&tmp, index) {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error("rename", &tmp, e)
        })?;
        // From here on the new file is the log, whatever happens next.
        self.file = file;
        if let Err(e) = sync_dir(&self.dir) {
            // Until the rename is durable a crash could bring back the old file, which lacks
            // anything appended from now on.
            let why = format!("syncing {} after rewrite: {e}", self.dir.display());
            self.broken = Some(why.clone());
            return Err(Error::Unavailable(why));
        }
        Ok(())
    }
}

impl Drop for Log {
    /// Unlocks explicitly rather than by closing: a child process forked at this moment
    /// (before its exec closes inherited descriptors) shares the lock's open file, and closing
    /// only our descriptor would leave the dir locked until the child's exec.
    fn drop(&mut self) {
        let _ = self.lock.unlock();
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "data dir {} is in use by another store",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
    }
}

/// Creates a log with no records under its final name in one rename, so a crash never leaves
/// a log without its header.
fn create_empty(dir: &Path, path: &Path) -> Result<()> {
    let tmp = dir.join(TMP_FILE);
    let result = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(MAGIC)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| sync_dir(dir));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("create", path, e)
    })
}

fn write_snapshot(tmp: &Path, index: &Index) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| io_error("create", tmp, e))?;
    let mut out = BufWriter::with_capacity(WRITE_CHUNK, &file);
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    buf.extend_from_slice(MAGIC);
    record::encode_compact(&mut buf, index.compacted(), index.current())?;
    index.for_each_retained(|key, version| {
        match &version.value {
            Some(value) => record::encode_put(
                &mut buf,
                version.mod_revision,
                version.create_revision,
                key,
                value,
            )?,
            None => record::encode_delete(&mut buf, version.mod_revision, key)?,
        }
        if buf.len() >= WRITE_CHUNK {
            out.write_all(&buf).map_err(|e| io_error("write", tmp, e))?;
            buf.clear();
        }
        Ok(())
    })?;
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| io_error("write", tmp, e))?;
    drop(out);
    file.sync_all().map_err(|e| io_error("sync", tmp, e))?;
    Ok(file)
}

/// Rebuilds the index from the log. Returns it with the length of the valid prefix of the
/// file: everything after the first record that is incomplete, fails its checksum or does not
/// decode is what a crash cut short, and is not part of the log.
fn replay(file: &File, path: &Path) -> Result<(Index, u64)> {
    let len = file
        .metadata()
        .map_err(|e| io_error("stat", path, e))?
        .len();
    let mut reader = BufReader::with_capacity(WRITE_CHUNK, file);
    let mut magic = [0; MAGIC.len()];
    let n = read_full(&mut reader, &mut magic).map_err(|e| io_error("read", path, e))?;
    if n < magic.len() || &magic != MAGIC {
        return Err(Error::Internal(format!(
            "{} is not a ferrokube store log (bad header)",
            path.display()
        )));
    }
    let mut index = Index::default();
    let mut offset = MAGIC.len() as u64;
    let mut header = [0; FRAME_HEADER];
    let mut payload = Vec::new();
    loop {
        let n = read_full(&mut reader, &mut header).map_err(|e| io_error("read", path, e))?;
        if n < FRAME_HEADER {
            break;
        }
        let (payload_len, crc) = record::parse_header(&header);
        let frame_end = offset + FRAME_HEADER as u64 + u64::from(payload_len);
        if frame_end > len {
            break;
        }
        payload.resize(payload_len as usize, 0);
        let n = read_full(&mut reader, &mut payload).map_err(|e| io_error("read", path, e))?;
        if n < payload.len() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(record) = record::decode(&payload) else {
            break;
        };
        apply(&mut index, record).map_err(|why| {
            Error::Internal(format!(
                "{}: record at offset {offset}: {why}",
                path.display()
            ))
        })?;
        offset = frame_end;
    }
    Ok((index, offset))
}

/// Applies one replayed record, refusing any that would break the index's ordering: such a
/// record passed its checksum, so it is a bug or a foreign file, not a torn write.
fn apply(index: &mut Index, record: Record) -> Result<(), String> {
    match record {
        Record::Put {
            revision,
            create_revision,
            key,
            value,
        } => {
            let key = check_order(index, &key, revision)?;
            index.apply(
                key,
                Version {
                    mod_revision: revision,
                    create_revision,
                    value: Some(value.into()),
                },
            );
        }
        Record::Delete { revision, key } => {
            let create_revision = index.latest(&key).map_or(0, |v| v.create_revision);
            let key = check_order(index, &key, revision)?;
            index.apply(
                key,
                Version {
                    mod_revision: revision,
                    create_revision,
                    value: None,
                },
            );
        }
        Record::Compact { compacted, head } => {
            if compacted > head {
                return Err(format!("compaction at {compacted} is past head {head}"));
            }
            index.compact(compacted);
            index.advance_to(head);
        }
    }
    Ok(())
}

fn check_order(index: &Index, key: &str, revision: i64) -> Result<Arc<str>, String> {
    if revision <= 0 {
        return Err(format!("invalid revision {revision}"));
    }
    if revision > index.compacted() && revision <= index.last_change() {
        return Err(format!(
            "revision {revision} does not follow {}",
            index.last_change()
        ));
    }
    if index
        .last_revision(key)
        .is_some_and(|last| last >= revision)
    {
        return Err(format!("revision {revision} of {key} is out of order"));
    }
    Ok(index.key_name(key).unwrap_or_else(|| Arc::from(key)))
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::Internal(format!("embedded store: {what} {}: {e}", path.display()))
}
