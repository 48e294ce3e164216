//! Reading container logs in the CRI log format, with upstream's `PodLogOptions` semantics
//! (pkg/kubelet/kuberuntime/logs).
//!
//! The runtime writes each line of a container's output as
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, `P` marking a piece of a longer
//! line that continues in the next entry. [`read_logs`] turns such a file back into the
//! container's output: both streams interleaved as written, optionally only the last
//! `tail_lines` entries, only entries at or after `since`, each line prefixed with its
//! timestamp, cut at `limit_bytes`; and, when following, it keeps reading as the file grows
//! (following a rotation: the file renamed and a new one created in its place, or truncated)
//! until the container stops running.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// Output is sent in pieces of about this size.
const CHUNK: usize = 32 * 1024;

/// Which of the container's streams to return, as `PodLogOptions.stream`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogStream {
    #[default]
    All,
    Stdout,
    Stderr,
}

impl LogStream {
    /// Reads upstream's names: `All`, `Stdout`, `Stderr`.
    pub fn parse(s: &str) -> Option<LogStream> {
        match s {
            "All" => Some(LogStream::All),
            "Stdout" => Some(LogStream::Stdout),
            "Stderr" => Some(LogStream::Stderr),
            _ => None,
        }
    }

    fn wants(self, stream: Source) -> bool {
        matches!(
            (self, stream),
            (LogStream::All, _)
                | (LogStream::Stdout, Source::Stdout)
                | (LogStream::Stderr, Source::Stderr)
        )
    }
}

/// What to read, as upstream's kubelet derives it from `PodLogOptions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the entries of the last this many lines of the file (negative or absent: all).
    pub tail_lines: Option<i64>,
    /// Stop after this many bytes of output (absent: no limit).
    pub limit_bytes: Option<i64>,
    /// Skip entries written before this instant.
    pub since: Option<DateTime<Utc>>,
    /// Keep reading as the file grows, until the container stops.
    pub follow: bool,
    /// Prefix each line with its RFC3339Nano timestamp and a space.
    pub timestamps: bool,
    pub stream: LogStream,
}

impl LogOptions {
    /// Combines `sinceSeconds` and `sinceTime` as upstream does: the later of `now -
    /// sinceSeconds` and `sinceTime`.
    pub fn with_since(
        mut self,
        since_seconds: Option<i64>,
        since_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> LogOptions {
        let mut since = since_seconds
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|d| now.checked_sub_signed(d));
        if let Some(t) = since_time {
            if since.is_none_or(|s| t > s) {
                since = Some(t);
            }
        }
        self.since = since;
        self
    }
}

/// The output of [`read_logs`]: the container's output in pieces, or the error that ended it.
/// Dropping it stops the reader.
pub struct LogOutput {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl Stream for LogOutput {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Reads the CRI-format log at `path` with `opts`. When following, `stopped` resolves once the
/// container no longer runs: the reader then returns what remains in the file and ends.
/// Must be called within a tokio runtime; the reading happens on a task of its own.
pub fn read_logs<F>(path: impl Into<PathBuf>, opts: LogOptions, stopped: F) -> LogOutput
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    let path = path.into();
    let stopped = stopped.boxed();
    tokio::spawn(async move {
        let mut reader = Reader::new(opts, tx.clone());
        if let Err(e) = reader.run(&path, stopped).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    LogOutput { rx }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Stdout,
    Stderr,
}

/// One parsed entry of the log file.
#[derive(Debug, PartialEq)]
struct Entry<'a> {
    timestamp: DateTime<FixedOffset>,
    stream: Source,
    /// The content; a full line keeps its newline, a partial one has none.
    content: &'a [u8],
}

/// Parses one line of the file (with its newline, if it has one).
fn parse_cri(line: &[u8]) -> Result<Entry<'_>, String> {
    let space = |s: &[u8]| s.iter().position(|b| *b == b' ');
    let i = space(line).ok_or("timestamp is not found")?;
    let ts = std::str::from_utf8(&line[..i]).map_err(|_| "timestamp is not UTF-8".to_string())?;
    let timestamp = DateTime::parse_from_rfc3339(ts)
        .map_err(|e| format!("unexpected timestamp format {ts:?}: {e}"))?;
    let rest = &line[i + 1..];
    let i = space(rest).ok_or("stream type is not found")?;
    let stream = match &rest[..i] {
        b"stdout" => Source::Stdout,
        b"stderr" => Source::Stderr,
        other => {
            return Err(format!(
                "unexpected stream type {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let rest = &rest[i + 1..];
    let i = space(rest).ok_or("log tag is not found")?;
    // Tags are `:`-separated for forward compatibility; the first says full or partial.
    let partial = rest[..i].split(|b| *b == b':').next() == Some(b"P");
    let mut content = &rest[i + 1..];
    if partial && content.last() == Some(&b'\n') {
        content = &content[..content.len() - 1];
    }
    Ok(Entry {
        timestamp,
        stream,
        content,
    })
}

/// Upstream's RFC3339NanoFixed: always nine fractional digits, `Z` for UTC.
pub fn format_timestamp(t: &DateTime<FixedOffset>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    if t.offset().local_minus_utc() == 0 {
        s.push('Z');
    } else {
        s.push_str(&t.format("%:z").to_string());
    }
    s
}

/// Where to start reading so that exactly `n` newlines remain after it (all of the file for a
/// negative `n`), as upstream's tail.FindTailLineStartIndex.
async fn tail_start(file: &mut tokio::fs::File, n: i64) -> io::Result<u64> {
    if n < 0 {
        return Ok(0);
    }
    const BLOCK: u64 = 4096;
    let size = file.seek(io::SeekFrom::End(0)).await?;
    let mut right = size;
    let mut count: i64 = 0;
    let mut block = Vec::new();
    let mut left = size;
    while right > 0 && count <= n {
        left = right.saturating_sub(BLOCK);
        block.resize((right - left) as usize, 0);
        file.seek(io::SeekFrom::Start(left)).await?;
        file.read_exact(&mut block).await?;
        count += block.iter().filter(|b| **b == b'\n').count() as i64;
        right = left;
    }
    // The last block read may hold more newlines than wanted: skip past the extra ones.
    let mut start = left;
    let mut offset = 0usize;
    while count > n {
        match block[offset..].iter().position(|b| *b == b'\n') {
            Some(i) => {
                offset += i + 1;
                count -= 1;
            }
            None => break,
        }
    }
    start += offset as u64;
    Ok(start)
}

/// Identity of a file, to notice that a path now names a new one.
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Wake-ups for a follower: one is pending whenever the log file may have changed since the
/// follower last took one.
struct Changes {
    /// Kept for its lifetime: dropping it stops the notifications.
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl Changes {
    /// Starts watching for changes to the file at `path` (a canonical path, as the watcher
    /// reports them). Blocks until the watcher's thread has registered the watch.
    fn watch(path: &Path) -> io::Result<Changes> {
        use notify::{EventKind, RecursiveMode, Watcher};

        let error = |e: notify::Error| {
            let kind = match &e.kind {
                notify::ErrorKind::Io(e) => e.kind(),
                _ => io::ErrorKind::Other,
            };
            io::Error::new(
                kind,
                format!(
                    "cannot follow log file {:?}: failed to watch it for changes: {e}",
                    path.display()
                ),
            )
        };
        // The directory rather than the file: a watch on the file would stay with the old
        // file when rotation renames it, and never see the new one created in its place.
        let dir = path.parent().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log file path {:?} has no directory", path.display()),
            )
        })?;
        // One slot is enough: a wake-up already waiting covers every change after it, and a
        // change while the follower reads still leaves one for its next wait.
        let (tx, rx) = mpsc::channel(1);
        let file = path.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let wake = match event {
                    // Notifications were dropped (the kernel's queue overflowed): any of them may
                    // have been for this file.
                    Ok(event) if event.need_rescan() => true,
                    // Opening and closing, the follower's own included, change nothing to read.
                    Ok(event) => {
                        matches!(
                            event.kind,
                            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                        ) && event.paths.contains(&file)
                    }
                    Err(e) => {
                        // Events may have been lost with it; looking again costs little.
                        tracing::warn!("watching log file {}: {e}", file.display());
                        true
                    }
                };
                if wake {
                    let _ = tx.try_send(());
                }
            })
            .map_err(error)?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(error)?;
        Ok(Changes {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits until the file may have changed since the last call returned.
    async fn changed(&mut self, path: &Path) -> io::Result<()> {
        match self.rx.recv().await {
            Some(()) => Ok(()),
            None => Err(io::Error::other(format!(
                "stopped watching log file {:?} for changes",
                path.display()
            ))),
        }
    }
}

enum Flow {
    Continue,
    Done,
}

struct Reader {
    opts: LogOptions,
    tx: mpsc::Sender<io::Result<Bytes>>,
    out: Vec<u8>,
    /// Bytes still allowed by `limit_bytes`.
    remain: i64,
    /// Entries still to write in the non-following tail mode.
    lines_left: Option<i64>,
    /// Whether the next entry starts a new line (and so gets a timestamp).
    new_line: bool,
}

impl Reader {
    fn new(opts: LogOptions, tx: mpsc::Sender<io::Result<Bytes>>) -> Reader {
        let remain = match opts.limit_bytes {
            Some(n) if n >= 0 => n,
            _ => i64::MAX,
        };
        let lines_left = match opts.tail_lines {
            Some(n) if n >= 0 && !opts.follow => Some(n),
            _ => None,
        };
        Reader {
            opts,
            tx,
            out: Vec::with_capacity(CHUNK),
            remain,
            lines_left,
            new_line: true,
        }
    }

    /// Sends what is buffered. False once the receiver is gone.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return !self.tx.is_closed();
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK)));
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    /// Writes one line of the file to the output.
    async fn entry(&mut self, line: &[u8], path: &Path) -> Flow {
        let entry = match parse_cri(line) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(
                    "skipping an unparsable line in {}: {e}: {:?}",
                    path.display(),
                    String::from_utf8_lossy(line)
                );
                return Flow::Continue;
            }
        };
        let starts_line = self.new_line;
        self.new_line = entry.content.last().is_none_or(|b| *b == b'\n');
        if let Some(n) = &mut self.lines_left {
            *n -= 1;
        }
        let wanted = self.opts.stream.wants(entry.stream)
            && self.opts.since.is_none_or(|s| entry.timestamp >= s);
        if wanted {
            let mut piece = Vec::new();
            if self.opts.timestamps && starts_line {
                piece.extend_from_slice(format_timestamp(&entry.timestamp).as_bytes());
                piece.push(b' ');
            }
            piece.extend_from_slice(entry.content);
            let take = piece.len().min(self.remain.max(0) as usize);
            self.out.extend_from_slice(&piece[..take]);
            self.remain -= take as i64;
            if self.remain <= 0 {
                return Flow::Done;
            }
            if self.out.len() >= CHUNK && !self.flush().await {
                return Flow::Done;
            }
        }
        if self.lines_left == Some(0) {
            return Flow::Done;
        }
        Flow::Continue
    }

    /// Writes every complete line `buf` holds, leaving an incomplete last one in it.
    async fn complete_lines(&mut self, buf: &mut Vec<u8>, path: &Path) -> Flow {
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + i + 1;
            let line = buf[start..end].to_vec();
            start = end;
            if let Flow::Done = self.entry(&line, path).await {
                return Flow::Done;
            }
        }
        buf.drain(..start);
        Flow::Continue
    }

    async fn run(&mut self, path: &Path, stopped: BoxFuture<'static, ()>) -> io::Result<()> {
        // The runtime owns the log path, so following a symlink to its target is safe; it
        // also means a follower keeps watching the file the container writes.
        let path = tokio::fs::canonicalize(path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "failed to try resolving symlinks in path {:?}: {e}",
                    path.display()
                ),
            )
        })?;
        // Watching starts before the file is opened, so that anything written after a read has
        // reached the end of the file wakes the follower, however soon it comes.
        let mut changes = if self.opts.follow {
            let p = path.clone();
            Some(
                tokio::task::spawn_blocking(move || Changes::watch(&p))
                    .await
                    .map_err(io::Error::other)??,
            )
        } else {
            None
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("failed to open log file {:?}: {e}", path.display()),
            )
        })?;
        let start = tail_start(&mut file, self.opts.tail_lines.unwrap_or(-1))
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "failed to tail {} lines of log file {:?}: {e}",
                        self.opts.tail_lines.unwrap_or(-1),
                        path.display()
                    ),
                )
            })?;
        file.seek(io::SeekFrom::Start(start)).await?;
        let mut id = file_id(&file.metadata().await?);
        let mut position = start;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut stopped = stopped.fuse();
        let mut stopping = false;
        if self.lines_left == Some(0) {
            return Ok(());
        }
        loop {
            let n = reader.read_until(b'\n', &mut line).await?;
            position += n as u64;
            if line.last() == Some(&b'\n') {
                let l = std::mem::take(&mut line);
                if let Flow::Done = self.entry(&l, &path).await {
                    break;
                }
                continue;
            }
            // End of the file, perhaps in the middle of a line. Only a follower has `changes`.
            let changes = match changes.as_mut() {
                Some(changes) if !stopping => changes,
                _ => {
                    if !line.is_empty() {
                        let l = std::mem::take(&mut line);
                        let _ = self.entry(&l, &path).await;
                    }
                    break;
                }
            };
            if !self.flush().await {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = &mut stopped => stopping = true,
                _ = self.tx.closed() => return Ok(()),
                changed = changes.changed(&path) => changed?,
            }
            // A rotation renames the file and creates a new one in its place; a copy-truncate
            // rotation empties it. Finish the old file first, then go on with the new one.
            match tokio::fs::metadata(&path).await {
                Ok(m) if file_id(&m) != id => {
                    let mut rest = Vec::new();
                    reader.read_to_end(&mut rest).await?;
                    line.extend_from_slice(&rest);
                    if let Flow::Done = self.complete_lines(&mut line, &path).await {
                        break;
                    }
                    if !line.is_empty() {
                        let l = std::mem::take(&mut line);
                        if let Flow::Done = self.entry(&l, &path).await {
                            break;
                        }
                    }
                    let file = match tokio::fs::File::open(&path).await {
                        Ok(f) => f,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    id = file_id(&file.metadata().await?);
                    reader = BufReader::new(file);
                    position = 0;
                    self.new_line = true;
                }
                Ok(m) if m.len() < position => {
                    // Truncated in place: start over from its beginning.
                    reader.seek(io::SeekFrom::Start(0)).await?;
                    position = 0;
                    line.clear();
                    self.new_line = true;
                }
                // Between the rename and the new file: wait for it.
                _ => {}
            }
        }
        self.flush().await;
        Ok(())
    }
}

/// A future that never resolves: for following the log of a container that keeps running
/// until the reader is dropped.
pub fn never() -> impl std::future::Future<Output = ()> + Send + 'static {
    futures::future::pending()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::Write;
    use std::time::Duration;

    fn write(path: &Path, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    }

    async fn read_all(path: &Path, opts: LogOptions) -> String {
        let mut out = read_logs(path, opts, futures::future::ready(()));
        let mut s = Vec::new();
        while let Some(chunk) = out.next().await {
            s.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(s).unwrap()
    }

    const SAMPLE: &[&str] = &[
        "2024-01-01T00:00:01.000000001Z stdout F one",
        "2024-01-01T00:00:02.5Z stderr F two",
        "2024-01-01T00:00:03.000000003Z stdout P thr",
        "2024-01-01T00:00:03.100000000Z stdout F ee",
        "2024-01-01T00:00:04+02:00 stdout F four",
        "2024-01-01T00:00:05.000000005Z stdout F five",
    ];

    #[test]
    fn parses_full_and_partial_entries() {
        let e = parse_cri(b"2016-10-06T00:17:09.669794202Z stdout P log content 1\n").unwrap();
        assert_eq!(e.stream, Source::Stdout);
        assert_eq!(e.content, b"log content 1");
        let e = parse_cri(b"2016-10-06T00:17:09.669794203Z stderr F log content 2\n").unwrap();
        assert_eq!(e.stream, Source::Stderr);
        assert_eq!(e.content, b"log content 2\n");
        assert!(parse_cri(b"garbage\n").is_err());
        assert!(parse_cri(b"2016-10-06T00:17:09Z stdin F x\n").is_err());
        assert_eq!(
            format_timestamp(&e.timestamp),
            "2016-10-06T00:17:09.669794203Z"
        );
        let t = DateTime::parse_from_rfc3339("2024-01-01T00:00:04+02:00").unwrap();
        assert_eq!(format_timestamp(&t), "2024-01-01T00:00:04.000000000+02:00");
    }

    #[tokio::test]
    async fn joins_partial_lines_and_interleaves_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let out = read_all(&p, LogOptions::default()).await;
        assert_eq!(out, "one\ntwo\nthree\nfour\nfive\n");
        let out = read_all(
            &p,
            LogOptions {
                stream: LogStream::Stderr,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(out, "two\n");
    }

    #[tokio::test]
    async fn timestamps_prefix_whole_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let out = read_all(
            &p,
            LogOptions {
                timestamps: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            out,
            "2024-01-01T00:00:01.000000001Z one\n\
             2024-01-01T00:00:02.500000000Z two\n\
             2024-01-01T00:00:03.000000003Z three\n\
             2024-01-01T00:00:04.000000000+02:00 four\n\
             2024-01-01T00:00:05.000000005Z five\n"
        );
    }

    #[tokio::test]
    async fn tail_counts_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let tail = |n| LogOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(read_all(&p, tail(2)).await, "four\nfive\n");
        assert_eq!(read_all(&p, tail(0)).await, "");
        assert_eq!(read_all(&p, tail(4)).await, "three\nfour\nfive\n");
        assert_eq!(
            read_all(&p, tail(100)).await,
            "one\ntwo\nthree\nfour\nfive\n"
        );
        // A file bigger than one backwards block.
        let big = dir.path().join("big.log");
        let lines: Vec<String> = (0..3000)
            .map(|i| format!("2024-01-01T00:00:00Z stdout F line {i}"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        write(&big, &refs);
        assert_eq!(
            read_all(&big, tail(3)).await,
            "line 2997\nline 2998\nline 2999\n"
        );
    }

    #[tokio::test]
    async fn since_skips_older_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let since = DateTime::parse_from_rfc3339("2024-01-01T00:00:03Z")
            .unwrap()
            .with_timezone(&Utc);
        let opts = LogOptions::default().with_since(None, Some(since), Utc::now());
        // 00:00:04+02:00 is 22:00:04 the day before: older.
        assert_eq!(read_all(&p, opts).await, "three\nfive\n");
        // The later of sinceSeconds and sinceTime wins.
        let opts = LogOptions::default().with_since(Some(10), Some(since), Utc::now());
        assert_eq!(read_all(&p, opts).await, "");
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let limit = |n, ts| LogOptions {
            limit_bytes: Some(n),
            timestamps: ts,
            ..Default::default()
        };
        assert_eq!(read_all(&p, limit(6, false)).await, "one\ntw");
        assert_eq!(read_all(&p, limit(12, true)).await, "2024-01-01T0");
    }

    #[tokio::test]
    async fn incomplete_last_line_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2024-01-01T00:00:01Z stdout F a\nnot a log line\n2024-01-01T00:00:02Z stdout F b",
        )
        .unwrap();
        assert_eq!(read_all(&p, LogOptions::default()).await, "a\nb");
    }

    #[tokio::test]
    async fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = read_logs(dir.path().join("nope.log"), LogOptions::default(), never());
        let err = out.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("nope.log"), "{err}");
        assert!(out.next().await.is_none());
    }

    async fn next_text(out: &mut LogOutput) -> String {
        let chunk = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .expect("output within 5s")
            .expect("stream still open")
            .unwrap();
        String::from_utf8(chunk.to_vec()).unwrap()
    }

    /// Appends `text` in a single write, so that a reader sees all of it or none.
    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// Reads output until it holds `want`, which it must then be.
    async fn expect_text(out: &mut LogOutput, want: &str) {
        let mut seen = String::new();
        while !seen.contains(want) {
            seen.push_str(&next_text(out).await);
        }
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn follow_sees_appends_rotation_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, &SAMPLE[..2]);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut out = read_logs(
            &p,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
            async move {
                let _ = stop_rx.await;
            },
        );
        expect_text(&mut out, "two\n").await;
        // A line the runtime split (P) and the start of one not yet written out in full: output
        // is sent at the end of the file, so seeing "par" means the follower has read the
        // unfinished "ti" too and holds it.
        append(
            &p,
            "2024-01-01T00:00:03Z stdout P par\n2024-01-01T00:00:03Z stdout F ti",
        );
        expect_text(&mut out, "par").await;
        append(&p, "al\n");
        expect_text(&mut out, "tial\n").await;
        // Rotation: the file renamed away, written to once more under its new name (the
        // runtime has not reopened it yet), then a new one created. The old file is finished
        // before the new one is read.
        write(&p, &["2024-01-01T00:00:04Z stdout F last of old"]);
        let rotated = dir.path().join("0.log.20240101");
        std::fs::rename(&p, &rotated).unwrap();
        write(&rotated, &["2024-01-01T00:00:04Z stdout F late to old"]);
        write(&p, &["2024-01-01T00:00:05Z stdout F first of new"]);
        expect_text(&mut out, "last of old\nlate to old\nfirst of new\n").await;
        // Reading goes on in the new file from where it stopped.
        write(&p, &["2024-01-01T00:00:05Z stdout F second of new"]);
        expect_text(&mut out, "second of new\n").await;
        // Once the container stops, the rest of the file is read and the stream ends.
        write(&p, &["2024-01-01T00:00:06Z stderr F bye"]);
        stop_tx.send(()).unwrap();
        let mut rest = String::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .expect("end within 5s")
        {
            rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(rest, "bye\n");
    }

    #[tokio::test]
    async fn follow_of_a_stopped_container_reads_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let out = read_all(
            &p,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(out, "five\n");
    }

    #[tokio::test]
    async fn follow_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        let mut out = read_logs(
            &p,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
            never(),
        );
        // Seen only once the follower is at the end of the file.
        expect_text(&mut out, "five\n").await;
        // Copy-truncate: emptied in place, then written from its start again.
        std::fs::write(&p, "").unwrap();
        write(&p, &["2024-01-01T00:00:07Z stdout F again"]);
        expect_text(&mut out, "again\n").await;
        // Reading went on from the new end, not the old one.
        write(&p, &["2024-01-01T00:00:08Z stdout F and again"]);
        expect_text(&mut out, "and again\n").await;
    }

    #[tokio::test]
    async fn follow_ends_when_the_client_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        write(&p, SAMPLE);
        // The reader drops its `stopped` future when it ends, and this sender with it.
        let (alive_tx, alive_rx) = tokio::sync::oneshot::channel::<()>();
        let mut out = read_logs(
            &p,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
            async move {
                let _alive = alive_tx;
                never().await
            },
        );
        expect_text(&mut out, "five\n").await;
        drop(out);
        tokio::time::timeout(Duration::from_secs(5), alive_rx)
            .await
            .expect("reader ends within 5s")
            .unwrap_err();
    }
}
