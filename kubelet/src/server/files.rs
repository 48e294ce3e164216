//! `/logs/`: the files under the log directory, as Go's `http.FileServer` serves them
//! (directory listings, `index.html`, redirects to canonical paths, content types).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use tokio::io::AsyncReadExt;

use super::{full, streaming, text, Body, Req};

/// What Go's `url.URL{Path: p}.String()` escapes in a path.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn redirect(to: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, to)
        .body(full(""))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn error_for(e: &std::io::Error) -> Response<Body> {
    match e.kind() {
        std::io::ErrorKind::NotFound => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        std::io::ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, "403 Forbidden\n"),
        _ => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n",
        ),
    }
}

/// The content type Go picks: by extension, else by sniffing the first bytes.
fn content_type(path: &Path, head: &[u8]) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => return "text/html; charset=utf-8",
        Some("css") => return "text/css; charset=utf-8",
        Some("js" | "mjs") => return "text/javascript; charset=utf-8",
        Some("json") => return "application/json",
        Some("xml") => return "text/xml; charset=utf-8",
        Some("txt") => return "text/plain; charset=utf-8",
        Some("gz") => return "application/gzip",
        Some("zip") => return "application/zip",
        Some("png") => return "image/png",
        Some("svg") => return "image/svg+xml",
        _ => {}
    }
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        return "application/x-gzip";
    }
    let binary = head
        .iter()
        .any(|b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Resolves a URL path below `root`, refusing to leave it.
fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

pub(super) async fn serve(root: &Path, req: &Req) -> Response<Body> {
    let raw = req.uri().path();
    let Some(rest) = raw.strip_prefix("/logs") else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if rest.is_empty() {
        return redirect("/logs/");
    }
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    if decoded.split('/').any(|s| s == "..") {
        return text(StatusCode::BAD_REQUEST, "invalid URL path\n");
    }
    if decoded.ends_with("/index.html") {
        return redirect("./");
    }
    let Some(path) = resolve(root, &decoded) else {
        return text(StatusCode::BAD_REQUEST, "invalid URL path\n");
    };
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) => return error_for(&e),
    };
    let last = decoded.rsplit('/').next().unwrap_or("");
    if meta.is_dir() {
        if !decoded.ends_with('/') {
            return redirect(&format!("{}/", if last.is_empty() { "." } else { last }));
        }
        let index = path.join("index.html");
        if let Ok(m) = tokio::fs::metadata(&index).await {
            if m.is_file() {
                return file(&index, &m).await;
            }
        }
        return listing(&path).await;
    }
    if decoded.ends_with('/') {
        let name = decoded
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        return redirect(&format!("../{name}"));
    }
    file(&path, &meta).await
}

async fn listing(dir: &Path) -> Response<Body> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) => return error_for(&e),
    };
    let mut names = Vec::new();
    loop {
        match entries.next_entry().await {
            Ok(Some(e)) => {
                let mut name = e.file_name().to_string_lossy().into_owned();
                let is_dir = match e.file_type().await {
                    Ok(t) if t.is_symlink() => tokio::fs::metadata(e.path())
                        .await
                        .map(|m| m.is_dir())
                        .unwrap_or(false),
                    Ok(t) => t.is_dir(),
                    Err(_) => false,
                };
                if is_dir {
                    name.push('/');
                }
                names.push(name);
            }
            Ok(None) => break,
            Err(_) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error reading directory\n",
                )
            }
        }
    }
    names.sort();
    let mut body = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for name in names {
        let mut href = utf8_percent_encode(&name, PATH).to_string();
        // A colon in the first segment would read as a URL scheme.
        if let Some(i) = href.find(':') {
            if !href[..i].contains('/') {
                href = format!("./{href}");
            }
        }
        body.push_str(&format!(
            "<a href=\"{}\">{}</a>\n",
            html_escape(&href),
            html_escape(&name)
        ));
    }
    body.push_str("</pre>\n");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

async fn file(path: &Path, meta: &std::fs::Metadata) -> Response<Body> {
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return error_for(&e),
    };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return error_for(&e),
        }
    }
    head.truncate(got);
    // Send what the length announced, even if the file grows meanwhile.
    let len = meta.len();
    head.truncate(head.len().min(len as usize));
    let ctype = content_type(path, &head);
    let f = f.take(len - head.len() as u64);
    let rest = futures::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = futures::stream::iter([Ok(Bytes::from(head))]).chain(rest);
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Ok(modified) = meta.modified() {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(modified));
    }
    use futures::StreamExt;
    builder
        .body(streaming(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_and_escapes() {
        assert_eq!(
            content_type(Path::new("a.log"), b"hello\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("a.bin"), &[0, 1, 2]),
            "application/octet-stream"
        );
        assert_eq!(html_escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert!(resolve(Path::new("/var/log"), "/../etc").is_none());
        assert_eq!(
            resolve(Path::new("/var/log"), "/pods/x.log").unwrap(),
            PathBuf::from("/var/log/pods/x.log")
        );
    }
}
