//! One attempt over HTTP, and what it produced.
//!
//! The classification of transport failures is the subtle part: a request that
//! never left (refused, DNS, TLS, connect timeout) is always safe to resend, one
//! that may have arrived (timeout, reset, empty reply, garbage) is not. The
//! mapping reads hyper's and the OS's error details; when in doubt it says
//! "may have arrived", the cautious answer.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redrive_core::{Outcome, Response, TransportFailure};

/// How the client connects and what it keeps of responses.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Longest wait for a TCP connection; past it the attempt fails as
    /// `connect_timeout` (never sent).
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// How much of a response body is kept (for classification and the attempt
    /// record); the rest is read and dropped so the connection can be reused.
    pub excerpt_limit: usize,
    /// Past this many body bytes the rest is not even read: the connection is
    /// dropped instead.
    pub drain_limit: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 256,
            excerpt_limit: 8 * 1024,
            drain_limit: 1024 * 1024,
        }
    }
}

/// The request of one attempt.
#[derive(Clone, Debug)]
pub struct OutboundRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub uri: Uri,
    /// Every header to send (the engine adds the idempotency key, signatures and
    /// the destination's headers before this point).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The whole attempt (connect, send, read the response) must end within this.
    pub timeout: Duration,
}

/// A response as received: status, headers, and the start of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedResponse {
    /// The status code.
    pub status: u16,
    /// Headers whose values are text, in the order received.
    pub headers: Vec<(String, String)>,
    /// The first `excerpt_limit` bytes of the body.
    pub body: Bytes,
    /// True when the body was longer than what was kept.
    pub truncated: bool,
}

/// A transport failure with the detail behind it (for the attempt record).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct TransportError {
    /// What kind of failure, in the core's terms.
    pub kind: TransportFailure,
    /// The underlying error, for people.
    pub detail: String,
}

/// What one attempt produced, and how long it took.
#[derive(Clone, Debug)]
pub struct Attempted {
    /// A response, or a transport failure.
    pub result: Result<ReceivedResponse, TransportError>,
    /// From the start of the attempt to its end.
    pub latency: Duration,
}

impl Attempted {
    /// Lends the result to `f` as the core's [`Outcome`].
    pub fn with_outcome<R>(&self, f: impl FnOnce(&Outcome<'_>) -> R) -> R {
        match &self.result {
            Ok(r) => {
                let headers: Vec<(&str, &str)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                f(&Outcome::Response(Response {
                    status: r.status,
                    headers: &headers,
                    body: &r.body,
                }))
            }
            Err(e) => f(&Outcome::Transport(e.kind)),
        }
    }
}

/// A pooled HTTP/1.1 client (HTTP and HTTPS) that never follows redirects.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    config: ClientConfig,
}

impl HttpClient {
    /// A client with `config`. TLS uses rustls (ring) with the Mozilla root store.
    pub fn new(config: ClientConfig) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(HttpClient { inner, config })
    }

    /// Makes one attempt. Never panics and never returns an error of its own:
    /// every failure is an [`Attempted`] with a [`TransportError`].
    pub async fn attempt(&self, req: OutboundRequest) -> Attempted {
        let started = Instant::now();
        let timeout = req.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError {
                kind: TransportFailure::Timeout,
                detail: format!(
                    "no complete response within {}",
                    redrive_core::HumanDuration(timeout)
                ),
            }),
        };
        Attempted {
            result,
            latency: started.elapsed(),
        }
    }

    async fn exchange(&self, req: OutboundRequest) -> Result<ReceivedResponse, TransportError> {
        let mut builder = http::Request::builder().method(req.method).uri(req.uri);
        if let Some(h) = builder.headers_mut() {
            *h = req.headers;
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| TransportError {
                kind: TransportFailure::Refused,
                detail: format!("the request could not be built: {e}"),
            })?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| classify_error(&e))?;
        let (parts, mut body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let mut kept = BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| classify_error(&e))?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                let room = self.config.excerpt_limit.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..room.min(data.len())]);
                if seen > self.config.drain_limit {
                    break;
                }
            }
        }
        Ok(ReceivedResponse {
            status: parts.status.as_u16(),
            headers,
            truncated: seen > kept.len(),
            body: kept.freeze(),
        })
    }
}

/// Maps a client error to the core's transport failure kinds.
///
/// hyper-util reports connection failures as `is_connect()` with the OS error
/// (refused, timed out) or a `dns error` inside; TLS failures come from rustls
/// as an `io::Error` carrying a `rustls::Error`. After the connection is up,
/// hyper says whether the message was cut short (`closed`) or unparsable
/// (`malformed`); an OS reset is `reset`. Anything else after connecting is
/// `reset` too: it may have been applied.
fn classify_error(e: &(dyn StdError + 'static)) -> TransportError {
    let detail = error_chain(e);
    let connect = e
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect());
    let mut io_kind = None;
    let mut tls = false;
    let mut hyper_err = None;
    // Walk the sources, and the content of every `io::Error` too: its
    // `source()` skips what it wraps, and hyper-rustls wraps rustls' error in
    // two of them.
    let mut stack: Vec<&(dyn StdError + 'static)> = vec![e];
    let mut visited = 0;
    while let Some(err) = stack.pop() {
        visited += 1;
        if visited > 64 {
            break;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
            if let Some(inner) = io.get_ref() {
                stack.push(inner);
            }
        }
        if err.is::<rustls::Error>() {
            tls = true;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            hyper_err.get_or_insert(h);
        }
        if let Some(source) = err.source() {
            stack.push(source);
        }
    }
    let kind = if connect {
        if tls {
            TransportFailure::Tls
        } else if detail.contains("dns error") {
            TransportFailure::Dns
        } else if io_kind == Some(io::ErrorKind::TimedOut) {
            TransportFailure::ConnectTimeout
        } else {
            // Refused, unreachable, no route: the request never left.
            TransportFailure::Refused
        }
    } else if tls {
        TransportFailure::Tls
    } else if hyper_err.is_some_and(|h| h.is_parse() || h.is_parse_status()) {
        TransportFailure::Malformed
    } else if matches!(
        io_kind,
        Some(
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
        )
    ) {
        TransportFailure::Reset
    } else if hyper_err.is_some_and(|h| h.is_incomplete_message()) {
        TransportFailure::Closed
    } else {
        TransportFailure::Reset
    };
    TransportError { kind, detail }
}

/// `outer: inner: innermost`, each message once.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
