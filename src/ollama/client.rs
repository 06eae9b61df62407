//! The reqwest client for an Ollama endpoint (live Ollama or `kabench sim`): generate,
//! chat and embed with client-clock timings (first byte, first token, first answer,
//! end), plus ps, tags, show, version, pull and load/unload. Reads `OLLAMA_HOST` forms
//! as Ollama does (H7) and parses NDJSON incrementally. Every failure is data: an
//! `Exchange` carries a `ClientError` whose `kind()` is the `error_kind` column.
//! Knows nothing of scenarios, records or files.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ollama::api;
use crate::units::KeepAlive;

/// Limit for the small control calls (ps, tags, show, version) so a hung server cannot
/// block a run forever; generate/chat/embed take the caller's timeout instead.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed; `kind()` gives the stable name recorded per request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, DNS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request did not finish within its timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A non-2xx status with Ollama's error text.
    #[error("HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Ollama's `{"error":…}` text, or the plain body.
        message: String,
    },
    /// An `{"error":…}` line inside a 200 stream (M9).
    #[error("error in stream: {0}")]
    StreamError(String),
    /// The connection closed before the `done:true` line.
    #[error("stream ended early: {0}")]
    BrokenStream(String),
    /// A body or line that is not the JSON expected.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// An `OLLAMA_HOST` value that cannot be turned into a URL.
    #[error("bad host: {0}")]
    BadHost(String),
    /// Stopped by kabench (Ctrl-C, or a run that had to stop) before it ended.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// The closed set of `ClientError` cases, for CSV columns and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See `ClientError::Connect`.
    Connect,
    /// See `ClientError::Timeout`.
    Timeout,
    /// See `ClientError::Http`.
    Http,
    /// See `ClientError::StreamError`.
    StreamError,
    /// See `ClientError::BrokenStream`.
    BrokenStream,
    /// See `ClientError::BadJson`.
    BadJson,
    /// See `ClientError::BadHost`.
    BadHost,
    /// See `ClientError::Cancelled`.
    Cancelled,
}

impl ErrorKind {
    /// Stable snake_case name (`connect`, `timeout`, `http`, `stream_error`,
    /// `broken_stream`, `bad_json`, `bad_host`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Http => "http",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::BrokenStream => "broken_stream",
            ErrorKind::BadJson => "bad_json",
            ErrorKind::BadHost => "bad_host",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ClientError {
    /// Which case this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect(_) => ErrorKind::Connect,
            ClientError::Timeout(_) => ErrorKind::Timeout,
            ClientError::Http { .. } => ErrorKind::Http,
            ClientError::StreamError(_) => ErrorKind::StreamError,
            ClientError::BrokenStream(_) => ErrorKind::BrokenStream,
            ClientError::BadJson(_) => ErrorKind::BadJson,
            ClientError::BadHost(_) => ErrorKind::BadHost,
            ClientError::Cancelled(_) => ErrorKind::Cancelled,
        }
    }

    /// The HTTP status, for `Http` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Maps a transport error of reqwest onto our cases (`during_body`: the headers
/// had arrived, so a failure now means the stream broke).
/// Classifies a reqwest failure: timeout, broken stream (once the body started), bad
/// JSON, or connect.
pub fn from_reqwest(err: reqwest::Error, during_body: bool) -> ClientError {
    let text = error_chain(&err);
    if err.is_timeout() {
        ClientError::Timeout(text)
    } else if err.is_connect() {
        ClientError::Connect(text)
    } else if err.is_decode() && !during_body {
        ClientError::BadJson(text)
    } else if during_body || err.is_body() || err.is_request() {
        // Connected and sent, then the connection went away before a complete reply.
        ClientError::BrokenStream(text)
    } else {
        ClientError::Connect(text)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads an `OLLAMA_HOST` value exactly as Ollama does (H7): spaces and quotes trimmed;
/// no scheme → `http` with port 11434; `http://h` → 80, `https://h` → 443; a path is
/// kept; an unparsable port falls back to the scheme's default; `0.0.0.0` and `::`
/// (listen-on-all addresses) are dialled on loopback. Empty means `127.0.0.1:11434`.
pub fn parse_ollama_host(raw: &str) -> Result<reqwest::Url, ClientError> {
    let s = raw.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let (scheme, hostport, default_port) = match s.split_once("://") {
        None => ("http", s, "11434"),
        Some(("http", rest)) => ("http", rest, "80"),
        Some(("https", rest)) => ("https", rest, "443"),
        Some((other, _)) => {
            return Err(ClientError::BadHost(format!(
                "{raw:?}: scheme {other:?} is not http or https"
            )));
        }
    };
    let (hostport, path) = match hostport.split_once('/') {
        Some((hp, p)) => (hp, p),
        None => (hostport, ""),
    };
    let (mut host, mut port) = match split_host_port(hostport) {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => {
            let bare = hostport.trim_start_matches('[').trim_end_matches(']');
            let host = if bare.parse::<std::net::IpAddr>().is_ok() {
                bare.to_string()
            } else if hostport.is_empty() {
                "127.0.0.1".to_string()
            } else {
                hostport.to_string()
            };
            (host, default_port.to_string())
        }
    };
    if host.is_empty() {
        // Go's SplitHostPort accepts ":11434"; Ollama then dials the local host.
        host = "127.0.0.1".to_string();
    }
    if port.parse::<u16>().is_err() {
        port = default_port.to_string();
    }
    host = match host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "::0" => "::1".to_string(),
        _ => host,
    };
    let host_part = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let text = if path.is_empty() {
        format!("{scheme}://{host_part}:{port}")
    } else {
        format!("{scheme}://{host_part}:{port}/{path}")
    };
    reqwest::Url::parse(&text).map_err(|e| ClientError::BadHost(format!("{raw:?}: {e}")))
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` without a port.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    if host.contains(':') {
        // A bare IPv6 address without brackets has no port.
        return None;
    }
    Some((host, port))
}

/// Incremental NDJSON decoder: feed it body chunks as they arrive (a line may be split
/// across chunks), take complete objects out; `finish` reads a last line without `\n`.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for `\n` (all of the partial line): each byte
    /// is searched once, so a long line arriving in small pieces stays linear.
    scanned: usize,
}

impl NdjsonDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns every complete line decoded as `T` (blank lines skipped).
    pub fn push<T: DeserializeOwned>(&mut self, bytes: &[u8]) -> Result<Vec<T>, ClientError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            let line = &self.buf[start..end];
            start = end + 1;
            from = start;
            if let Some(v) = decode_line(line)? {
                out.push(v);
            }
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        Ok(out)
    }

    /// Decodes what is left after the last `\n`, if anything.
    pub fn finish<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        decode_line(&rest)
    }
}

fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Result<Option<T>, ClientError> {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(line))))
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        s.push('…');
    }
    s
}

/// Decodes a whole body of JSON objects: NDJSON, one object, or concatenated
/// (pretty-printed) objects. For tests, benches and non-streamed replies.
pub fn parse_json_stream<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ClientError> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<T>()
        .map(|r| r.map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(bytes)))))
        .collect()
}

/// Decodes a whole generate/chat body into chunks (see `parse_json_stream`).
pub fn parse_ndjson_body(bytes: &[u8]) -> Result<Vec<api::StreamChunk>, ClientError> {
    parse_json_stream(bytes)
}

/// The `Location` header of a response, when it has one.
fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The error of a non-2xx reply: Ollama's text, or for a redirect (never followed)
/// where it points and what to do.
pub fn status_error(status: u16, location: Option<String>, body: &[u8]) -> ClientError {
    let message = if (300..400).contains(&status) {
        match location {
            Some(to) => format!(
                "redirect to {to}: kabench does not follow redirects (a redirected POST arrives as a GET); point the target at the address Ollama answers on"
            ),
            None => "a redirect without a Location header: kabench does not follow redirects; point the target at the address Ollama answers on".to_string(),
        }
    } else {
        error_message(body)
    };
    ClientError::Http { status, message }
}

/// The text of an error body: Ollama's `{"error":…}` or the plain body.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<api::ErrorBody>(body) {
        return e.error;
    }
    String::from_utf8_lossy(body).trim().to_string()
}

/// One request's outcome, success or not, with client-clock timings.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When the request was handed to the connection.
    pub sent_at: Instant,
    /// When the response headers arrived.
    pub first_byte_at: Option<Instant>,
    /// First chunk with non-empty `thinking`, `response` or `content` (M10).
    pub first_token_at: Option<Instant>,
    /// First chunk with non-empty `response` / `content`.
    pub first_answer_at: Option<Instant>,
    /// When the body ended (or the failure was seen).
    pub end_at: Instant,
    /// HTTP status, if headers arrived.
    pub status: Option<u16>,
    /// Metrics of the final chunk (all optional, M3).
    pub metrics: api::Metrics,
    /// `done_reason` of the final chunk.
    pub done_reason: Option<String>,
    /// JSON objects read from the body.
    pub chunks: u32,
    /// Why it failed, if it did.
    pub error: Option<ClientError>,
}

impl Exchange {
    fn start() -> Self {
        let now = Instant::now();
        Exchange {
            sent_at: now,
            first_byte_at: None,
            first_token_at: None,
            first_answer_at: None,
            end_at: now,
            status: None,
            metrics: api::Metrics::default(),
            done_reason: None,
            chunks: 0,
            error: None,
        }
    }

    fn failed(err: ClientError) -> Self {
        let mut ex = Exchange::start();
        ex.error = Some(err);
        ex
    }

    /// True when the request completed with its final chunk.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Client end-to-end time.
    pub fn e2e(&self) -> Duration {
        self.end_at.saturating_duration_since(self.sent_at)
    }

    /// Client time to first token, if one came.
    pub fn ttft(&self) -> Option<Duration> {
        self.first_token_at
            .map(|t| t.saturating_duration_since(self.sent_at))
    }

    /// Takes in one chunk of a stream; `Ok(true)` once the final chunk was seen.
    pub fn observe(&mut self, chunk: api::StreamChunk, at: Instant) -> Result<bool, ClientError> {
        self.chunks += 1;
        if let Some(e) = chunk.error {
            return Err(ClientError::StreamError(e));
        }
        if self.first_token_at.is_none()
            && (chunk.thinking_text().is_some() || chunk.answer_text().is_some())
        {
            self.first_token_at = Some(at);
        }
        if self.first_answer_at.is_none() && chunk.answer_text().is_some() {
            self.first_answer_at = Some(at);
        }
        if chunk.done {
            self.metrics = chunk.metrics;
            self.done_reason = chunk.done_reason;
            return Ok(true);
        }
        Ok(false)
    }
}

/// A client for one Ollama endpoint. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base: String,
}

impl OllamaClient {
    /// A client for `base`, written in any `OLLAMA_HOST` form (H7). Proxies are never
    /// used (benchmarks talk to the target directly) and Nagle is off.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let url = parse_ollama_host(base)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            // A followed 301/302/303 turns a POST into a GET (and drops its body): the
            // target would answer a different request. A redirect is an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::BadHost(error_chain(&e)))?;
        Ok(OllamaClient {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let req = self.http.get(self.url(path));
        self.control_call(req).await
    }

    async fn control_call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let fut = async {
            let resp = req.send().await.map_err(|e| from_reqwest(e, false))?;
            let status = resp.status();
            let location = location(&resp);
            let body = resp.bytes().await.map_err(|e| from_reqwest(e, true))?;
            if !status.is_success() {
                return Err(status_error(status.as_u16(), location, &body));
            }
            serde_json::from_slice(&body)
                .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(&body))))
        };
        match tokio::time::timeout(CONTROL_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(format!(
                "no reply within {CONTROL_TIMEOUT:?}"
            ))),
        }
    }

    /// `GET /api/version`: the server's version string.
    pub async fn version(&self) -> Result<String, ClientError> {
        let v: api::VersionResponse = self.get_json("/api/version").await?;
        Ok(v.version)
    }

    /// `GET /api/ps`: resident models.
    pub async fn ps(&self) -> Result<api::PsResponse, ClientError> {
        self.get_json("/api/ps").await
    }

    /// `GET /api/tags`: installed models.
    pub async fn tags(&self) -> Result<api::TagsResponse, ClientError> {
        self.get_json("/api/tags").await
    }

    /// `POST /api/show`: a model's details and capabilities (404 when not installed).
    pub async fn show(&self, model: &str) -> Result<api::ShowResponse, ClientError> {
        let body = api::ShowRequest {
            model: model.to_string(),
            ..Default::default()
        };
        let req = self.http.post(self.url("/api/show")).json(&body);
        self.control_call(req).await
    }

    /// `POST /api/pull`, streaming; `on_progress` sees every progress line. An error
    /// line in the stream (unknown model) is a `StreamError`.
    pub async fn pull(
        &self,
        model: &str,
        mut on_progress: impl FnMut(&api::PullProgress),
    ) -> Result<(), ClientError> {
        let body = api::PullRequest {
            model: model.to_string(),
            stream: Some(true),
            insecure: None,
        };
        let resp = self
            .http
            .post(self.url("/api/pull"))
            .json(&body)
            .send()
            .await
            .map_err(|e| from_reqwest(e, false))?;
        let status = resp.status();
        if !status.is_success() {
            let location = location(&resp);
            let body = resp.bytes().await.map_err(|e| from_reqwest(e, true))?;
            return Err(status_error(status.as_u16(), location, &body));
        }
        let mut decoder = NdjsonDecoder::new();
        let mut stream = resp.bytes_stream();
        let mut success = false;
        let mut handle = |p: api::PullProgress| -> Result<(), ClientError> {
            if let Some(e) = &p.error {
                return Err(ClientError::StreamError(e.clone()));
            }
            success |= p.status == "success";
            on_progress(&p);
            Ok(())
        };
        while let Some(item) = stream.next().await {
            let bytes = item.map_err(|e| from_reqwest(e, true))?;
            for p in decoder.push::<api::PullProgress>(&bytes)? {
                handle(p)?;
            }
        }
        if let Some(p) = decoder.finish::<api::PullProgress>()? {
            handle(p)?;
        }
        if success {
            Ok(())
        } else {
            Err(ClientError::BrokenStream(
                "pull ended without \"success\"".into(),
            ))
        }
    }

    /// Loads `model` with an empty prompt (M7), timed on the client's clock (the reply
    /// has no metrics). `num_ctx` goes in `options` (L5, L7).
    pub async fn load(
        &self,
        model: &str,
        keep_alive: Option<&KeepAlive>,
        num_ctx: Option<u32>,
    ) -> Result<Duration, ClientError> {
        let options = num_ctx.map(|n| {
            let mut m = Map::new();
            m.insert("num_ctx".into(), Value::from(n));
            m
        });
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: keep_alive.map(KeepAlive::to_json),
            options,
            ..Default::default()
        };
        self.empty_generate(&req, "load").await
    }

    /// Unloads `model` (empty prompt, `keep_alive` 0: E6), timed on the client's clock.
    pub async fn unload(&self, model: &str) -> Result<Duration, ClientError> {
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: Some(Value::from(0)),
            ..Default::default()
        };
        self.empty_generate(&req, "unload").await
    }

    /// [`Self::load`] bounded by `timeout` and ended by `stop`.
    pub async fn load_until(
        &self,
        model: &str,
        num_ctx: Option<u32>,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Duration, ClientError> {
        let options = num_ctx.map(|n| {
            let mut m = Map::new();
            m.insert("num_ctx".into(), Value::from(n));
            m
        });
        let req = api::GenerateRequest {
            model: model.to_string(),
            options,
            ..Default::default()
        };
        self.empty_generate_until(&req, "load", Some(timeout), Some(stop))
            .await
    }

    /// [`Self::unload`] bounded by `timeout` and ended by `stop`.
    pub async fn unload_until(
        &self,
        model: &str,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Duration, ClientError> {
        let req = api::GenerateRequest {
            model: model.to_string(),
            keep_alive: Some(Value::from(0)),
            ..Default::default()
        };
        self.empty_generate_until(&req, "unload", Some(timeout), Some(stop))
            .await
    }

    /// `GET /api/ps` bounded by `timeout` (and the control-call limit) and ended by `stop`.
    pub async fn ps_until(
        &self,
        timeout: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<api::PsResponse, ClientError> {
        tokio::select! {
            r = tokio::time::timeout(timeout, self.ps()) => r.unwrap_or_else(|_| {
                Err(ClientError::Timeout(format!("/api/ps: no reply within {timeout:?}")))
            }),
            _ = stop.cancelled() => Err(ClientError::Cancelled("/api/ps".into())),
        }
    }

    async fn empty_generate(
        &self,
        req: &api::GenerateRequest,
        expect: &str,
    ) -> Result<Duration, ClientError> {
        self.empty_generate_until(req, expect, None, None).await
    }

    async fn empty_generate_until(
        &self,
        req: &api::GenerateRequest,
        expect: &str,
        timeout: Option<Duration>,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<Duration, ClientError> {
        let ex = self
            .exchange_until("/api/generate", req, timeout, false, stop)
            .await;
        if let Some(e) = ex.error {
            return Err(e);
        }
        if ex.done_reason.as_deref() != Some(expect) {
            return Err(ClientError::BadJson(format!(
                "expected done_reason {expect:?}, got {:?}",
                ex.done_reason
            )));
        }
        Ok(ex.e2e())
    }

    /// `POST /api/generate`, streamed or not (as `req.stream` says), with timings.
    /// `timeout` bounds the whole request, body included.
    pub async fn generate(
        &self,
        req: &api::GenerateRequest,
        timeout: Option<Duration>,
    ) -> Exchange {
        self.exchange("/api/generate", req, timeout, false).await
    }

    /// `POST /api/chat`, streamed or not, with timings.
    pub async fn chat(&self, req: &api::ChatRequest, timeout: Option<Duration>) -> Exchange {
        self.exchange("/api/chat", req, timeout, false).await
    }

    /// `POST /api/embed` with timings; metrics from the reply (M8), no tokens.
    pub async fn embed(&self, req: &api::EmbedRequest, timeout: Option<Duration>) -> Exchange {
        self.exchange("/api/embed", req, timeout, true).await
    }

    async fn exchange<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
        embed: bool,
    ) -> Exchange {
        self.exchange_until(path, body, timeout, embed, None).await
    }

    /// `POST path` (`/api/generate`, `/api/chat` or `/api/embed`: `embed` says which
    /// reply to read) bounded by `timeout` and ended by `stop`: a stopped request keeps
    /// what was measured before (sent, status, first byte and token) and fails as
    /// `cancelled`.
    pub async fn exchange_until<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
        embed: bool,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Exchange {
        let body = match serde_json::to_vec(body) {
            Ok(b) => b,
            Err(e) => return Exchange::failed(ClientError::BadJson(e.to_string())),
        };
        let mut ex = Exchange::start();
        let result = {
            let bounded = async {
                match timeout {
                    Some(limit) => {
                        match tokio::time::timeout(limit, self.drive(path, body, &mut ex, embed))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(ClientError::Timeout(format!(
                                "no complete reply within {limit:?}"
                            ))),
                        }
                    }
                    None => self.drive(path, body, &mut ex, embed).await,
                }
            };
            match stop {
                Some(stop) => tokio::select! {
                    r = bounded => r,
                    _ = stop.cancelled() => Err(ClientError::Cancelled(
                        "interrupted before the response ended".into(),
                    )),
                },
                None => bounded.await,
            }
        };
        ex.end_at = Instant::now();
        ex.error = result.err();
        ex
    }

    async fn drive(
        &self,
        path: &str,
        body: Vec<u8>,
        ex: &mut Exchange,
        embed: bool,
    ) -> Result<(), ClientError> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        ex.sent_at = Instant::now();
        let resp = req.send().await.map_err(|e| from_reqwest(e, false))?;
        read_response(resp, ex, embed).await
    }
}

/// Reads a response into `ex` as it arrives: status and first byte, then the NDJSON
/// chunks timed one by one (generate, chat) or one JSON object (`embed`). Shared by the
/// client and by senders that bring their own HTTP stack (the goose swarm).
pub async fn read_response(
    resp: reqwest::Response,
    ex: &mut Exchange,
    embed: bool,
) -> Result<(), ClientError> {
    ex.first_byte_at = Some(Instant::now());
    let status = resp.status();
    ex.status = Some(status.as_u16());
    if !status.is_success() {
        let location = location(&resp);
        let body = resp.bytes().await.map_err(|e| from_reqwest(e, true))?;
        return Err(status_error(status.as_u16(), location, &body));
    }
    if embed {
        let body = resp.bytes().await.map_err(|e| from_reqwest(e, true))?;
        let reply: api::EmbedResponse = serde_json::from_slice(&body)
            .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(&body))))?;
        ex.chunks = 1;
        ex.metrics = api::Metrics {
            total_duration: reply.total_duration,
            load_duration: reply.load_duration,
            prompt_eval_count: reply.prompt_eval_count,
            ..Default::default()
        };
        return Ok(());
    }
    let mut decoder = NdjsonDecoder::new();
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        let bytes = item.map_err(|e| from_reqwest(e, true))?;
        let at = Instant::now();
        for chunk in decoder.push::<api::StreamChunk>(&bytes)? {
            if ex.observe(chunk, at)? {
                return Ok(());
            }
        }
    }
    if let Some(chunk) = decoder.finish::<api::StreamChunk>()?
        && ex.observe(chunk, Instant::now())?
    {
        return Ok(());
    }
    Err(ClientError::BrokenStream(format!(
        "body ended after {} chunks without done:true",
        ex.chunks
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> String {
        parse_ollama_host(raw).unwrap().to_string()
    }

    #[test]
    fn h7_host_forms() {
        assert_eq!(host(""), "http://127.0.0.1:11434/");
        assert_eq!(host("  \"1.2.3.4\" "), "http://1.2.3.4:11434/");
        assert_eq!(host("example.com"), "http://example.com:11434/");
        assert_eq!(host("example.com:8080"), "http://example.com:8080/");
        assert_eq!(host("http://example.com"), "http://example.com/");
        assert_eq!(host("https://example.com"), "https://example.com/");
        assert_eq!(host("http://example.com:1234"), "http://example.com:1234/");
        assert_eq!(host("example.com:abc"), "http://example.com:11434/");
        assert_eq!(host("example.com:99999"), "http://example.com:11434/");
        assert_eq!(host("http://h:abc"), "http://h/");
        assert_eq!(
            host("example.com/ollama"),
            "http://example.com:11434/ollama"
        );
        assert_eq!(host("0.0.0.0"), "http://127.0.0.1:11434/");
        assert_eq!(host("0.0.0.0:5000"), "http://127.0.0.1:5000/");
        assert_eq!(host("::"), "http://[::1]:11434/");
        assert_eq!(host("[::]:5000"), "http://[::1]:5000/");
        assert_eq!(host("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(host(":5000"), "http://127.0.0.1:5000/");
        assert_eq!(host("'localhost:1'"), "http://localhost:1/");
        assert_eq!(
            parse_ollama_host("ftp://x").unwrap_err().kind(),
            ErrorKind::BadHost
        );
    }

    #[test]
    fn base_url_keeps_the_path_without_trailing_slash() {
        let c = OllamaClient::new("http://127.0.0.1:9/x").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9/x");
        assert_eq!(c.url("/api/ps"), "http://127.0.0.1:9/x/api/ps");
        let c = OllamaClient::new("127.0.0.1:9").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn decoder_handles_split_lines_and_a_last_line_without_newline() {
        let body = b"{\"response\":\"a\",\"done\":false}\n{\"response\":\"b\",\"done\":false}\n\n{\"response\":\"\",\"done\":true,\"eval_count\":2}";
        for split in 0..body.len() {
            let mut d = NdjsonDecoder::new();
            let mut got: Vec<api::StreamChunk> = d.push(&body[..split]).unwrap();
            got.extend(d.push::<api::StreamChunk>(&body[split..]).unwrap());
            got.extend(d.finish::<api::StreamChunk>().unwrap());
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[1].response.as_deref(), Some("b"));
            assert!(got[2].done);
            assert_eq!(got[2].metrics.eval_count, Some(2));
        }
    }

    #[test]
    fn decoder_is_linear_on_a_long_line_arriving_byte_by_byte() {
        // 200 000 one-byte pieces of one line: searching the whole buffer on each push
        // is 2·10¹⁰ byte checks (minutes); searching only new bytes is instant.
        let text = "x".repeat(200_000);
        let line = format!("{{\"response\":\"{text}\",\"done\":false}}\n");
        let mut d = NdjsonDecoder::new();
        let started = Instant::now();
        let mut got: Vec<api::StreamChunk> = Vec::new();
        for b in line.as_bytes().chunks(1) {
            got.extend(d.push::<api::StreamChunk>(b).unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].response.as_deref().map(str::len), Some(200_000));
        // And the lines after it still split where they should.
        let more: Vec<api::StreamChunk> = d
            .push(b"{\"response\":\"a\",\"done\":false}\n{\"done\":true}\n")
            .unwrap();
        assert_eq!(more.len(), 2);
    }

    #[test]
    fn decoder_reports_bad_lines() {
        let mut d = NdjsonDecoder::new();
        let err = d.push::<api::StreamChunk>(b"{\"done\":tru\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadJson);
    }

    #[test]
    fn m9_error_line_is_a_stream_error_and_m10_thinking_is_the_first_token() {
        let mut ex = Exchange::start();
        let t0 = Instant::now();
        let think: api::StreamChunk =
            serde_json::from_str(r#"{"response":"","thinking":"hm","done":false}"#).unwrap();
        assert!(!ex.observe(think, t0).unwrap());
        assert_eq!(ex.first_token_at, Some(t0));
        assert_eq!(ex.first_answer_at, None);
        let t1 = Instant::now();
        let answer: api::StreamChunk =
            serde_json::from_str(r#"{"response":"ok","done":false}"#).unwrap();
        assert!(!ex.observe(answer, t1).unwrap());
        assert_eq!(ex.first_answer_at, Some(t1));
        let err: api::StreamChunk = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(
            ex.observe(err, t1).unwrap_err(),
            ClientError::StreamError("boom".into())
        );
    }

    #[test]
    fn error_kinds_have_stable_names() {
        let all = [
            (ClientError::Connect(String::new()), "connect"),
            (ClientError::Timeout(String::new()), "timeout"),
            (
                ClientError::Http {
                    status: 503,
                    message: String::new(),
                },
                "http",
            ),
            (ClientError::StreamError(String::new()), "stream_error"),
            (ClientError::BrokenStream(String::new()), "broken_stream"),
            (ClientError::BadJson(String::new()), "bad_json"),
            (ClientError::BadHost(String::new()), "bad_host"),
        ];
        for (e, name) in all {
            assert_eq!(e.kind().as_str(), name);
        }
    }

    #[test]
    fn error_message_reads_json_or_plain_text() {
        assert_eq!(
            error_message(br#"{"error":"model is required"}"#),
            "model is required"
        );
        assert_eq!(error_message(b"404 page not found"), "404 page not found");
    }

    #[tokio::test]
    async fn connect_refused_is_a_connect_error() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = OllamaClient::new(&format!("127.0.0.1:{port}")).unwrap();
        let ex = c
            .generate(
                &api::GenerateRequest {
                    model: "m".into(),
                    prompt: Some("hi".into()),
                    ..Default::default()
                },
                Some(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(ex.error.map(|e| e.kind()), Some(ErrorKind::Connect));
        assert_eq!(c.version().await.unwrap_err().kind(), ErrorKind::Connect);
    }
}
