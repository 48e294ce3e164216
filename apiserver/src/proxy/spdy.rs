//! SPDY/3.1, the client side, as Kubernetes streaming uses it (moby/spdystream): streams
//! opened with SYN_STREAM and confirmed with SYN_REPLY, DATA with FIN for half-closes,
//! RST_STREAM, PING answered, header blocks compressed with zlib and the SPDY/3 dictionary.
//! Flow control is not enforced by spdystream and is not here either: WINDOW_UPDATE and
//! SETTINGS are read and ignored.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// The `Upgrade` token.
pub(crate) const SPDY_31: &str = "SPDY/3.1";

/// How long a stream waits for the peer's SYN_REPLY, as client-go.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest DATA frame written; spdystream reads any size.
const MAX_DATA: usize = 32 * 1024;

/// The largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status for a stream the client does not accept.
const REFUSED_STREAM: u32 = 3;

/// Header names (lower case) and values, in order; a name may repeat.
pub(crate) type Headers = Vec<(String, String)>;

/// The words of the SPDY/3 header dictionary, each written with a 32-bit length before it.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The text that ends the SPDY/3 header dictionary, as it is.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
    "502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,public",
    "private",
    "max-age=",
    "gzip,deflate,sdch",
    "charset=utf-8",
    "charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1).
fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The compressing side of a connection's header blocks: one zlib stream for the whole
/// connection, flushed after each block.
struct Deflater(Compress);

impl Deflater {
    fn new() -> io::Result<Deflater> {
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(dictionary())
            .map_err(|e| io::Error::other(format!("header compression: {e}")))?;
        Ok(Deflater(c))
    }

    fn compress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let start = self.0.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let consumed = (self.0.total_in() - start) as usize;
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("header compression: {e}")))?;
            let consumed = (self.0.total_in() - start) as usize;
            // A sync flush is complete once it returns with room to spare.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The reading side: the peer's zlib stream, which asks for the dictionary first.
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Inflater {
        Inflater(Decompress::new(true))
    }

    fn decompress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let start = self.0.total_in();
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(protocol_error("header block too large"));
                }
                out.reserve(out.capacity());
            }
            let (in_before, out_before) = (self.0.total_in(), out.len());
            let consumed = (in_before - start) as usize;
            match self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(dictionary())
                        .map_err(|e| protocol_error(format!("header block: {e}")))?;
                    continue;
                }
                Err(e) => return Err(protocol_error(format!("header block: {e}"))),
            }
            let consumed = (self.0.total_in() - start) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.0.total_in() == in_before && out.len() == out_before {
                return Err(protocol_error("header block: truncated"));
            }
        }
    }
}

/// A header block before compression; values of one name are joined with NULs.
fn encode_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn decode_headers(block: &[u8]) -> io::Result<Headers> {
    let mut rest = block;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        if rest.len() < n {
            return Err(protocol_error("header block: truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = be32(take(4)?);
    let mut out = Vec::new();
    for _ in 0..count {
        let n = be32(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        for v in value.split('\0') {
            out.push((name.clone(), v.to_string()));
        }
    }
    Ok(out)
}

/// A frame as the client sees it.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    SynStream {
        id: u32,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    /// HEADERS, SETTINGS, WINDOW_UPDATE and unknown types: nothing to do.
    Ignored,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads one frame; None at a clean end of the connection between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    inflate: &mut Inflater,
) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match io.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    io.read_exact(&mut head[1..]).await?;
    let flags = head[4];
    let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            id: be32(&head[..4]) & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: Bytes::from(payload),
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != 3 {
        return Err(protocol_error(format!(
            "unsupported SPDY version {version}"
        )));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let need = |n: usize| {
        if len < n {
            Err(protocol_error(format!("control frame {kind} too short")))
        } else {
            Ok(())
        }
    };
    let fin = flags & FLAG_FIN != 0;
    Ok(Some(match kind {
        SYN_STREAM => {
            need(10)?;
            let headers = decode_headers(&inflate.decompress(&payload[10..])?)?;
            Frame::SynStream {
                id: be32(&payload) & 0x7fff_ffff,
                headers,
            }
        }
        SYN_REPLY => {
            need(4)?;
            let headers = decode_headers(&inflate.decompress(&payload[4..])?)?;
            Frame::SynReply {
                id: be32(&payload) & 0x7fff_ffff,
                fin,
                headers,
            }
        }
        HEADERS => {
            need(4)?;
            // Decompressed to keep the zlib stream in step, then dropped.
            decode_headers(&inflate.decompress(&payload[4..])?)?;
            Frame::Ignored
        }
        RST_STREAM => {
            need(8)?;
            Frame::RstStream {
                id: be32(&payload) & 0x7fff_ffff,
                status: be32(&payload[4..]),
            }
        }
        PING => {
            need(4)?;
            Frame::Ping { id: be32(&payload) }
        }
        GOAWAY => {
            need(8)?;
            Frame::GoAway {
                last_good: be32(&payload) & 0x7fff_ffff,
                status: be32(&payload[4..]),
            }
        }
        SETTINGS | WINDOW_UPDATE => Frame::Ignored,
        _ => Frame::Ignored,
    }))
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&[0x80, 0x03]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

fn data_frame(id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

/// What the writer task puts on the wire.
enum Out {
    Syn { id: u32, headers: Headers },
    Data { id: u32, fin: bool, data: Bytes },
    Rst { id: u32, status: u32 },
    Ping(u32),
}

fn encode(out: Out, deflate: &mut Deflater) -> io::Result<Vec<u8>> {
    Ok(match out {
        Out::Syn { id, headers } => {
            let block = deflate.compress(&encode_headers(&headers))?;
            let mut p = Vec::with_capacity(block.len() + 10);
            p.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&0u32.to_be_bytes());
            // Priority 0, slot 0.
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&block);
            control_frame(SYN_STREAM, 0, &p)
        }
        Out::Data { id, fin, data } => data_frame(id, fin, &data),
        Out::Rst { id, status } => {
            let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control_frame(RST_STREAM, 0, &p)
        }
        Out::Ping(id) => control_frame(PING, 0, &id.to_be_bytes()),
    })
}

struct Slot {
    reply: Option<oneshot::Sender<Result<(), String>>>,
    data: Option<mpsc::Sender<Bytes>>,
}

#[derive(Default)]
struct State {
    next_id: u32,
    streams: HashMap<u32, Slot>,
    ended: bool,
}

struct Shared {
    out: mpsc::Sender<Out>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client end of a SPDY connection over an upgraded HTTP connection. Dropping it stops
/// reading; the connection closes once the streams' writers are gone too.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    reader: AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    pub fn client<S>(io: S) -> io::Result<Connection>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let deflate = Deflater::new()?;
        let (tx, rx) = mpsc::channel(32);
        let shared = Arc::new(Shared {
            out: tx,
            state: Mutex::new(State {
                next_id: 1,
                ..Default::default()
            }),
        });
        tokio::spawn(write_loop(write, rx, deflate));
        let reader = tokio::spawn(read_loop(
            BufReader::with_capacity(64 * 1024, read),
            shared.clone(),
        ))
        .abort_handle();
        Ok(Connection { shared, reader })
    }

    /// Opens a stream with these headers and waits for the peer to accept it.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, String> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(16);
        let id = {
            let mut st = self.shared.state();
            if st.ended {
                return Err("connection closed".into());
            }
            let id = st.next_id;
            st.next_id += 2;
            st.streams.insert(
                id,
                Slot {
                    reply: Some(reply_tx),
                    data: Some(data_tx),
                },
            );
            id
        };
        self.shared
            .out
            .send(Out::Syn { id, headers })
            .await
            .map_err(|_| "connection closed".to_string())?;
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(Ok(()))) => Ok(Stream {
                writer: StreamWriter {
                    id,
                    out: self.shared.out.clone(),
                },
                reader: StreamReader { rx: data_rx },
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err("connection closed".into()),
            Err(_) => Err("timed out waiting for the stream to be accepted".into()),
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Out>,
    mut deflate: Deflater,
) {
    while let Some(out) = rx.recv().await {
        let result = async {
            let bytes = encode(out, &mut deflate)?;
            io.write_all(&bytes).await?;
            io.flush().await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!("spdy write: {e}");
            break;
        }
    }
    let _ = io.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(mut io: R, shared: Arc<Shared>) {
    let mut inflate = Inflater::new();
    loop {
        let frame = match read_frame(&mut io, &mut inflate).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("spdy read: {e}");
                break;
            }
        };
        match frame {
            Frame::SynReply { id, fin, .. } => {
                let mut st = shared.state();
                if let Some(slot) = st.streams.get_mut(&id) {
                    if let Some(reply) = slot.reply.take() {
                        let _ = reply.send(Ok(()));
                    }
                    if fin {
                        slot.data = None;
                    }
                }
            }
            Frame::Data { id, fin, data } => {
                let sender = {
                    let mut st = shared.state();
                    let slot = st.streams.get_mut(&id);
                    match slot {
                        Some(slot) if fin => slot.data.take(),
                        Some(slot) => slot.data.clone(),
                        None => None,
                    }
                };
                if let Some(sender) = sender {
                    if !data.is_empty() {
                        // Waits for the stream's reader: the connection's backpressure.
                        let _ = sender.send(data).await;
                    }
                }
            }
            Frame::RstStream { id, status } => {
                let mut st = shared.state();
                if let Some(mut slot) = st.streams.remove(&id) {
                    if let Some(reply) = slot.reply.take() {
                        let _ = reply.send(Err(format!("stream reset (status {status})")));
                    }
                }
            }
            Frame::Ping { id } => {
                // Pings the server starts carry even ids; ours (none yet) odd ones.
                if id % 2 == 0 {
                    let _ = shared.out.send(Out::Ping(id)).await;
                }
            }
            Frame::SynStream { id, .. } => {
                let _ = shared
                    .out
                    .send(Out::Rst {
                        id,
                        status: REFUSED_STREAM,
                    })
                    .await;
            }
            Frame::GoAway { last_good, status } => {
                tracing::debug!("spdy goaway: last stream {last_good}, status {status}");
            }
            Frame::Ignored => {}
        }
    }
    let mut st = shared.state();
    st.ended = true;
    for (_, mut slot) in st.streams.drain() {
        if let Some(reply) = slot.reply.take() {
            let _ = reply.send(Err("connection closed".into()));
        }
    }
}

/// One stream: its writing and reading halves.
pub(crate) struct Stream {
    pub writer: StreamWriter,
    pub reader: StreamReader,
}

pub(crate) struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    pub async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(MAX_DATA);
            self.out
                .send(Out::Data {
                    id: self.id,
                    fin: false,
                    data: Bytes::copy_from_slice(&data[..n]),
                })
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes the stream: the peer reads its end.
    pub async fn close(&self) {
        let _ = self
            .out
            .send(Out::Data {
                id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }
}

pub(crate) struct StreamReader {
    rx: mpsc::Receiver<Bytes>,
}

impl StreamReader {
    /// The next piece of data; None once the peer finished or reset the stream, or the
    /// connection ended.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Everything up to the end of the stream, at most `limit` bytes of it.
    pub async fn read_to_end(&mut self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = self.read().await {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&b[..b.len().min(room)]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_zlib_with_the_dictionary() {
        let mut deflate = Deflater::new().unwrap();
        let mut inflate = Inflater::new();
        for round in 0..3 {
            let headers: Headers = vec![
                ("streamType".into(), "stdout".into()),
                ("port".into(), format!("80{round}")),
                ("port".into(), "81".into()),
            ];
            let block = deflate.compress(&encode_headers(&headers)).unwrap();
            let decoded = decode_headers(&inflate.decompress(&block).unwrap()).unwrap();
            assert_eq!(
                decoded,
                vec![
                    ("streamtype".to_string(), "stdout".to_string()),
                    ("port".into(), format!("80{round}")),
                    ("port".into(), "81".into()),
                ]
            );
        }
    }

    #[test]
    fn header_blocks_refuse_bad_lengths() {
        assert!(decode_headers(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(decode_headers(&[0, 0]).is_err());
        assert_eq!(decode_headers(&[0, 0, 0, 0]).unwrap(), vec![]);
    }

    #[tokio::test]
    async fn frames_read_back() {
        let mut deflate = Deflater::new().unwrap();
        let mut inflate = Inflater::new();
        let mut wire = Vec::new();
        wire.extend(
            encode(
                Out::Data {
                    id: 3,
                    fin: true,
                    data: Bytes::from_static(b"hi"),
                },
                &mut deflate,
            )
            .unwrap(),
        );
        wire.extend(encode(Out::Ping(2), &mut deflate).unwrap());
        wire.extend(encode(Out::Rst { id: 5, status: 3 }, &mut deflate).unwrap());
        // A SYN_REPLY as a server writes it: the block compressed on its own zlib stream.
        let block = Deflater::new()
            .unwrap()
            .compress(&encode_headers(&[]))
            .unwrap();
        let mut p = 7u32.to_be_bytes().to_vec();
        p.extend(block);
        wire.extend(control_frame(SYN_REPLY, 0, &p));
        let mut r = &wire[..];
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut r, &mut inflate).await.unwrap() {
            frames.push(f);
        }
        assert_eq!(
            frames,
            vec![
                Frame::Data {
                    id: 3,
                    fin: true,
                    data: Bytes::from_static(b"hi")
                },
                Frame::Ping { id: 2 },
                Frame::RstStream { id: 5, status: 3 },
                Frame::SynReply {
                    id: 7,
                    fin: false,
                    headers: vec![]
                },
            ]
        );
    }

    /// A peer that accepts every stream and echoes its data back, then finishes it.
    async fn echo_server<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
        let (read, mut write) = tokio::io::split(io);
        let mut read = BufReader::new(read);
        let mut inflate = Inflater::new();
        let mut deflate = Deflater::new().unwrap();
        while let Ok(Some(f)) = read_frame(&mut read, &mut inflate).await {
            match f {
                Frame::SynStream { id, headers } => {
                    assert!(headers.contains(&("streamtype".into(), "stdin".into())));
                    let block = deflate.compress(&encode_headers(&[])).unwrap();
                    let mut p = id.to_be_bytes().to_vec();
                    p.extend(block);
                    write
                        .write_all(&control_frame(SYN_REPLY, 0, &p))
                        .await
                        .unwrap();
                    write
                        .write_all(&control_frame(PING, 0, &2u32.to_be_bytes()))
                        .await
                        .unwrap();
                }
                Frame::Data { id, fin, data } => {
                    write.write_all(&data_frame(id, fin, &data)).await.unwrap();
                }
                Frame::Ping { id } => assert_eq!(id, 2),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn streams_open_carry_data_and_finish() {
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(echo_server(server));
        let conn = Connection::client(client).unwrap();
        let Stream { writer, mut reader } = conn
            .open_stream(vec![("streamType".into(), "stdin".into())])
            .await
            .unwrap();
        let big = vec![5u8; 100_000];
        let write = async {
            writer.write(&big).await.unwrap();
            writer.close().await;
        };
        let (_, got) = tokio::join!(write, reader.read_to_end(usize::MAX));
        assert_eq!(got, big);
    }
}
