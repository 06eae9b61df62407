//! `kabench proxy`: a transparent Ollama proxy for an app's real traffic. Requests
//! and replies pass unchanged (status, headers less the hop-by-hop ones, body bytes;
//! streamed chunks forwarded as they arrive), while each request is logged to
//! `proxy-requests.csv` (flushed per row), its pains warned about the first time
//! (`proxy::inspect`), and `GET /metrics` serves Prometheus counters and histograms
//! Ollama does not export. A client that leaves mid-stream drops the upstream request
//! with it; an upstream that is down gets the client a 502 with Ollama's error shape.
//!
//! Long (about 610 lines) because one request's life stays in one place: its
//! pass-through, the row it logs, the warnings it raises and the shutdown that waits
//! for it; the log format, the pains and the export are in their own files.

pub mod export;
pub mod inspect;
pub mod log;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::oneshot;

use inspect::Inspected;
use log::{ProxyRow, Recorder};

/// The most bytes a request body may hold (a vision request carries images).
const MAX_BODY: usize = 100 * 1024 * 1024;
/// How often `/api/ps` is polled for the resident-models gauge.
const PS_INTERVAL: Duration = Duration::from_secs(1);

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The Ollama to forward to, `http://host:port`.
    pub upstream: String,
    /// Folder for `proxy-requests.csv`.
    pub out: PathBuf,
    /// A keep_alive to set on every native request that passes (`--rewrite-keep-alive`).
    pub rewrite_keep_alive: Option<Value>,
    /// No warnings on stderr (they are still kept).
    pub quiet: bool,
}

struct Shared {
    http: reqwest::Client,
    upstream: String,
    rewrite: Option<Value>,
    recorder: Mutex<Recorder>,
    start: Instant,
    /// `/api/ps` samples for `vram.csv`.
    vram: Mutex<Option<crate::folder::CsvAppender<crate::folder::VramSample>>>,
    out: PathBuf,
    started_at: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running proxy.
pub struct ProxyHandle {
    /// The bound address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    poller: tokio::task::JoinHandle<()>,
}

/// What a proxy run saw, at shutdown.
#[derive(Debug, Clone)]
pub struct ProxyStats {
    /// Rows written to the log.
    pub rows: u64,
    /// Warnings printed.
    pub warnings: Vec<String>,
    /// Rows written into the run folder's `requests.csv`, or why not.
    pub exported: Result<usize, String>,
}

impl ProxyHandle {
    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The warnings so far.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.shared.recorder).warnings.clone()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        lock(&self.shared.recorder).rows
    }

    /// Stops accepting, lets open requests end for up to `grace`, closes the log and
    /// writes the run folder (`run.json`, `requests.csv`) that `kabench report` renders.
    pub async fn shutdown(mut self, grace: Duration) -> ProxyStats {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.poller.abort();
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
        }
        lock(&self.shared.vram).take();
        let version = self.version().await;
        let (rows, warnings) = {
            let r = lock(&self.shared.recorder);
            (r.rows, r.warnings.clone())
        };
        let exported = export::write_run_folder(
            &self.shared.out,
            &self.shared.upstream,
            version,
            &self.shared.started_at,
            &warnings,
        )
        .map_err(|e| format!("{e:#}"));
        ProxyStats {
            rows,
            warnings,
            exported,
        }
    }

    /// The upstream's `/api/version`, if it answers.
    async fn version(&self) -> Option<String> {
        let url = format!("{}/api/version", self.shared.upstream);
        let r = self
            .shared
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["version"].as_str().map(str::to_string)
    }
}

/// Binds `config.listen` and serves the proxy in a tokio task.
pub async fn spawn(config: ProxyConfig) -> anyhow::Result<ProxyHandle> {
    let recorder = Recorder::create(&config.out, config.quiet)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let vram = crate::folder::CsvAppender::create(&config.out.join(crate::folder::VRAM_CSV))?;
    let shared = Arc::new(Shared {
        http,
        upstream: config.upstream.trim_end_matches('/').to_string(),
        rewrite: config.rewrite_keep_alive.clone(),
        recorder: Mutex::new(recorder),
        start: Instant::now(),
        vram: Mutex::new(Some(vram)),
        out: config.out.clone(),
        started_at: crate::folder::utc_now_rfc3339(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the proxy to {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = rx.await;
    });
    let task = tokio::spawn(std::future::IntoFuture::into_future(server));
    let poller = tokio::spawn(poll_ps(Arc::downgrade(&shared)));
    Ok(ProxyHandle {
        addr,
        shared,
        shutdown: Some(tx),
        task,
        poller,
    })
}

/// Polls the upstream's `/api/ps` for the resident-models gauges.
async fn poll_ps(weak: std::sync::Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let url = format!("{}/api/ps", shared.upstream);
        let reply = shared
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(r) = reply
            && let Ok(v) = r.json::<Value>().await
        {
            let t_ms = shared.start.elapsed().as_secs_f64() * 1000.0;
            if let Ok(ps) = serde_json::from_value::<crate::ollama::api::PsResponse>(v.clone())
                && let Some(w) = lock(&shared.vram).as_mut()
            {
                for r in crate::telemetry::ollama_ps::readings(&ps) {
                    let _ = w.append(&crate::folder::VramSample {
                        t_ms,
                        source: "ollama_ps".into(),
                        device: r.device,
                        model: r.model,
                        used_bytes: r.used_bytes,
                        total_bytes: r.total_bytes,
                        extra: r.extra,
                        host: String::new(),
                    });
                }
            }
            let resident = v["models"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| {
                            Some((m["name"].as_str()?.to_string(), m["size"].as_u64()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            lock(&shared.recorder).metrics.resident = resident;
        }
        drop(shared);
        tokio::time::sleep(PS_INTERVAL).await;
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/metrics" && parts.method == axum::http::Method::GET {
        let text = lock(&shared.recorder).metrics.render();
        return (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({"error": format!("kabench proxy: {e}")})),
            )
                .into_response();
        }
    };
    let inspected = inspect::inspect(&path, &body);
    let mut notes: Vec<String> = inspected
        .pains
        .iter()
        .map(|p| p.key().to_string())
        .collect();
    if inspected.malformed {
        notes.insert(0, "malformed_body".into());
    }
    let mut body = body;
    if let Some(ka) = &shared.rewrite
        && inspected.native
        && let Some(new) = inspect::rewrite_keep_alive(&body, ka)
    {
        body = Bytes::from(new);
        notes.push(format!("rewritten:{ka}"));
    }
    let row = ProxyRow {
        timestamp: now_rfc3339(),
        t_ms: shared.start.elapsed().as_secs_f64() * 1000.0,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or(path.clone(), |p| p.to_string()),
        endpoint: inspected.endpoint.to_string(),
        model: inspected.model.clone().unwrap_or_default(),
        client: client.to_string(),
        keep_alive: inspected.applied.clone().unwrap_or_default(),
        keep_alive_sent: inspected.keep_alive.clone(),
        keep_alive_placement: inspected.placement.as_str().to_string(),
        kind: if inspected.endpoint == "other" {
            String::new()
        } else {
            inspected.kind.as_str().to_string()
        },
        num_ctx: inspected.num_ctx,
        load_options: if inspected.load_options.is_empty() {
            String::new()
        } else {
            Value::Object(inspected.load_options.clone()).to_string()
        },
        note: notes.join(";"),
        ..Default::default()
    };
    let url = format!(
        "{}{}",
        shared.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &parts.headers {
        // The body may be rewritten: the client sets its own Content-Length.
        if !hop_by_hop(name)
            && name != header::CONTENT_LENGTH
            && let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
            )
        {
            headers.append(n, v);
        }
    }
    let upstream = shared
        .http
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            let message = format!(
                "kabench proxy: Ollama at {} is unreachable: {e}",
                shared.upstream
            );
            let mut row = row;
            row.status = Some(502);
            row.outcome = "upstream_unreachable".into();
            row.e2e_ms = Some(arrived.elapsed().as_secs_f64() * 1000.0);
            let mut r = lock(&shared.recorder);
            r.metrics.upstream_errors += 1;
            r.pain(inspect::Pain::UpstreamDown);
            r.finish(row, &inspected, Instant::now());
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(serde_json::json!({"error": message})),
            )
                .into_response();
        }
    };
    let status = resp.status().as_u16();
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) && !hop_by_hop(&n)
        {
            out_headers.append(n, v);
        }
    }
    let mut row = row;
    row.status = Some(status);
    let length = resp.content_length();
    let tap = Tap {
        length,
        inner: Box::pin(resp.bytes_stream()),
        shared: shared.clone(),
        row: Some(row),
        inspected,
        arrived,
        scanner: Scanner::default(),
        ok_status: (200..300).contains(&status),
        failed: None,
        done_ms: None,
    };
    let mut response = Response::new(Body::from_stream(tap));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    copy_headers(&out_headers, response.headers_mut());
    response
}

/// Reads the lines of a reply as they pass (NDJSON, or SSE `data:` lines): the first
/// token and the final metrics.
#[derive(Default)]
struct Scanner {
    buf: Vec<u8>,
    first_token: bool,
    load_duration_ms: Option<f64>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
    error_line: bool,
    /// The reply's last line passed (`"done": true`, or `data: [DONE]` on `/v1`).
    done: bool,
}

impl Scanner {
    /// Feeds bytes; true when a line with text was seen for the first time.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let before = self.first_token;
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.line(&line);
        }
        // A long line without a newline (a non-streamed reply) is read at the end.
        !before && self.first_token
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        self.line(&rest);
    }

    fn line(&mut self, line: &[u8]) {
        let text = line.strip_prefix(b"data: ").unwrap_or(line);
        if text.trim_ascii() == b"[DONE]" {
            self.done = true;
        }
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            return;
        };
        let nonempty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
        if nonempty(&v["response"])
            || nonempty(&v["thinking"])
            || nonempty(&v["message"]["content"])
            || nonempty(&v["message"]["thinking"])
            || nonempty(&v["choices"][0]["delta"]["content"])
            || nonempty(&v["choices"][0]["message"]["content"])
            || v["embeddings"].is_array()
            || v["data"].is_array()
        {
            self.first_token = true;
        }
        if let Some(ns) = v["load_duration"].as_f64() {
            self.load_duration_ms = Some(ns / 1e6);
        }
        if let Some(n) = v["prompt_eval_count"]
            .as_u64()
            .or_else(|| v["usage"]["prompt_tokens"].as_u64())
        {
            self.prompt_tokens = Some(n);
        }
        if let Some(n) = v["eval_count"]
            .as_u64()
            .or_else(|| v["usage"]["completion_tokens"].as_u64())
        {
            self.output_tokens = Some(n);
        }
        if v.get("error").is_some() && v.get("done").is_none() {
            self.error_line = true;
        }
        if v["done"] == Value::Bool(true) {
            self.done = true;
        }
    }
}

/// The reply body on its way to the client: every chunk passes unchanged, and the
/// row is written once when the body ends, fails, or is dropped (client gone).
struct Tap {
    /// The Content-Length, when the reply has one: the server stops polling once it
    /// has that many bytes, so the row is written when they have passed.
    length: Option<u64>,
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    shared: Arc<Shared>,
    row: Option<ProxyRow>,
    inspected: Inspected,
    arrived: Instant,
    scanner: Scanner,
    ok_status: bool,
    failed: Option<&'static str>,
    /// When the reply's last line passed, ms after arrival.
    done_ms: Option<f64>,
}

impl Tap {
    fn close(&mut self, outcome: &'static str) {
        let Some(mut row) = self.row.take() else {
            return;
        };
        self.scanner.finish();
        let elapsed = self.arrived.elapsed().as_secs_f64() * 1000.0;
        row.outcome = match (outcome, self.ok_status, self.scanner.error_line) {
            ("ok" | "done", true, true) => "stream_error".into(),
            ("ok" | "done", false, _) => "http_error".into(),
            ("done", true, false) => "ok".into(),
            (o, _, _) => o.into(),
        };
        if row.outcome == "ok" {
            row.e2e_ms = Some(
                self.done_ms
                    .filter(|_| outcome == "done")
                    .unwrap_or(elapsed),
            );
            if row.ttft_ms.is_none() && self.scanner.first_token {
                row.ttft_ms = Some(elapsed);
            }
        }
        row.load_duration_ms = self.scanner.load_duration_ms;
        row.prompt_tokens = self.scanner.prompt_tokens;
        row.output_tokens = self.scanner.output_tokens;
        lock(&self.shared.recorder).finish(row, &self.inspected, Instant::now());
    }
}

impl Stream for Tap {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let first = self.scanner.push(&bytes);
                let elapsed = self.arrived.elapsed().as_secs_f64() * 1000.0;
                if self.scanner.done && self.done_ms.is_none() {
                    self.done_ms = Some(elapsed);
                }
                let mut complete = false;
                let length = self.length;
                if let Some(row) = self.row.as_mut() {
                    row.bytes += bytes.len() as u64;
                    if first {
                        row.ttft_ms = Some(elapsed);
                    }
                    complete = length.is_some_and(|n| row.bytes >= n);
                }
                if complete {
                    self.close("ok");
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.failed = Some("upstream_error");
                self.close("upstream_error");
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => {
                let outcome = self.failed.unwrap_or("ok");
                self.close(outcome);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before the end: the client left (dropping `inner` cancels upstream),
        // unless the reply's last line had passed: a client may stop reading there,
        // before the end of the body, with the whole answer in hand.
        let outcome = if self.scanner.done {
            "done"
        } else {
            "client_gone"
        };
        self.close(outcome);
    }
}
