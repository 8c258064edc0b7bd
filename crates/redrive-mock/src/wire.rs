//! HTTP/1.1 on the raw socket.
//!
//! The mock speaks HTTP itself (parsing with `httparse`, the parser hyper uses)
//! because its purpose is to misbehave at the byte level: answer half a body, reset
//! after reading, send garbage. A general server library hides exactly those
//! moments.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Larger request heads are refused with 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// Larger request bodies are refused with 413.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 100;

/// A request as read from the wire.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Bytes,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header with this lower-case name.
    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == lower_name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read; each maps to an answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or closed mid-request: nothing to answer.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Not HTTP/1.x: answer 400 and close.
    #[error("bad request: {0}")]
    Bad(String),
    /// The head is too large: answer 431 and close.
    #[error("request head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The body is too large: answer 413 and close.
    #[error("request body over {MAX_BODY} bytes")]
    BodyTooLarge,
}

/// Reads one request, or `None` when the client closed the connection between
/// requests. `buf` keeps bytes read past the request for the next one.
pub async fn read_request<S>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<Request>, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head_len, method, target, headers, version) = loop {
        if !buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("").to_owned(),
                        req.path.unwrap_or("").to_owned(),
                        headers,
                        req.version.unwrap_or(1),
                    );
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
                Err(e) => return Err(ReadError::Bad(e.to_string())),
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            };
        }
    };
    buf.advance(head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let connection = find("connection").map(str::to_ascii_lowercase);
    let keep_alive = match version {
        0 => connection.as_deref() == Some("keep-alive"),
        _ => connection.as_deref() != Some("close"),
    };
    let chunked =
        find("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match find("content-length") {
        Some(v) => Some(
            v.trim()
                .parse::<usize>()
                .map_err(|_| ReadError::Bad(format!("content-length `{v}` is not a number")))?,
        ),
        None => None,
    };
    if length.is_some_and(|n| n > MAX_BODY) {
        return Err(ReadError::BodyTooLarge);
    }
    let wants_body = chunked || length.is_some_and(|n| n > 0);
    if wants_body
        && find("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && buf.is_empty()
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = if chunked {
        read_chunked(stream, buf).await?
    } else if let Some(n) = length {
        while buf.len() < n {
            if stream.read_buf(buf).await? == 0 {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        buf.split_to(n).freeze()
    } else {
        Bytes::new()
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    }))
}

async fn fill_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, ReadError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(i);
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad("chunk header too long".to_owned()));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Bytes, ReadError> {
    let mut body = BytesMut::new();
    loop {
        let line_end = fill_line(stream, buf).await?;
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        buf.advance(line_end + 2);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(format!("chunk size `{size_text}` is not hexadecimal")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let end = fill_line(stream, buf).await?;
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::BodyTooLarge);
        }
        while buf.len() < size + 2 {
            if stream.read_buf(buf).await? == 0 {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
}

/// The status line and headers of a response, with `content-length` for
/// `body_len` and `connection: close` when the connection will not be kept.
pub fn head(
    status: u16,
    headers: &[(String, String)],
    body_len: usize,
    keep_alive: bool,
) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = Vec::with_capacity(128 + headers.len() * 32);
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {body_len}\r\n").as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> Result<Option<Request>, ReadError> {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(raw).await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        read_request(&mut server, &mut buf).await
    }

    #[tokio::test]
    async fn reads_a_request_with_a_content_length_body() {
        let r = parse(b"POST /v1/users?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nIdempotency-Key: k1\r\n\r\nhello")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path(), r.query()),
            ("POST", "/v1/users", Some("x=1"))
        );
        assert_eq!(r.header("idempotency-key"), Some("k1"));
        assert_eq!(&r.body[..], b"hello");
        assert!(r.keep_alive);
    }

    #[tokio::test]
    async fn reads_a_chunked_body() {
        let r = parse(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&r.body[..], b"hello world");
    }

    #[tokio::test]
    async fn http_1_0_closes_unless_asked() {
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").await.unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[tokio::test]
    async fn garbage_and_oversize_are_refused() {
        assert!(matches!(
            parse(b"\x00\x01 nonsense\r\n\r\n").await,
            Err(ReadError::Bad(_))
        ));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse(big.as_bytes()).await,
            Err(ReadError::BodyTooLarge)
        ));
        assert!(matches!(parse(b"").await, Ok(None)));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort").await,
            Err(ReadError::Io(_))
        ));
    }
}
