//! `kabench proxy`: a transparent Ollama proxy for an app's real traffic. Requests
//! and replies pass unchanged (status, headers less the hop-by-hop ones, body bytes;
//! streamed chunks forwarded as they arrive), while each request is logged to
//! `proxy-requests.csv` (flushed per row), its pains warned about the first time
//! (`proxy::inspect`), and `GET /metrics` serves Prometheus counters and histograms
//! Ollama does not export. A client that leaves mid-stream drops the upstream request
//! with it; an upstream that is down gets the client a 502 with Ollama's error shape.
//!
//! An upstream's redirect (Ollama answers `/api/generate/` with 307) passes back to
//! the client as it came, logged with the request's model. The server, its limits and
//! its shutdown are in `server`, the body reads in `body`, the reply on its way back
//! (and a request left unanswered) in `tap`, the reply scan in `scan`, the `/api/ps`
//! poller in `ps`, loop detection in `hops`, `/metrics` in `metrics`.

pub mod body;
pub mod export;
pub mod hops;
pub mod inspect;
pub mod log;
pub mod metrics;
mod ps;
mod scan;
pub mod server;
mod tap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::oneshot;

use body::{BodyError, BodyLimits, Budget};
pub use hops::{HOPS, MAX_HOPS, SelfUpstream};
use log::{ProxyRow, Recorder};
use scan::Scanner;
use server::ConnLimits;
use tap::{Pending, Tap};

/// The most bytes a request body may hold (a vision request carries images).
pub const MAX_BODY: usize = 100 * 1024 * 1024;

/// The proxy's bounds on what clients may hold of it.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// Connections and header reads.
    pub conn: ConnLimits,
    /// Request bodies.
    pub body: BodyLimits,
}

impl Default for ProxyLimits {
    /// 1,024 connections, 30 s to send headers or the next chunk of a body, bodies of
    /// up to 100 MiB, 256 MiB of bodies buffered at once.
    fn default() -> Self {
        ProxyLimits {
            conn: ConnLimits {
                max_connections: 1024,
                header_timeout: Duration::from_secs(30),
            },
            body: BodyLimits {
                max_body: MAX_BODY,
                budget_bytes: 256 << 20,
                read_timeout: Duration::from_secs(30),
            },
        }
    }
}

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
    body_limits: BodyLimits,
    budget: Budget,
    /// Set at shutdown once the grace period is over: what is dropped then was cut.
    cutting: AtomicBool,
    /// This proxy's id in the [`HOPS`] header.
    hop_id: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running proxy.
pub struct ProxyHandle {
    /// The bound address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<Duration>>,
    task: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
}

/// What a proxy run saw, at shutdown.
#[derive(Debug, Clone)]
pub struct ProxyStats {
    /// Rows written to the logs, both files.
    pub rows: u64,
    /// Rows of `proxy-requests.csv` (model requests).
    pub model_rows: u64,
    /// Rows of `proxy-other.csv`.
    pub other_rows: u64,
    /// Requests cut at shutdown (`cut_at_shutdown`), in those rows.
    pub cut: u64,
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

    /// Waits up to `within` for the first answered poll of the upstream (its model
    /// list read, then `/api/ps`): until then every model is labelled `other`.
    pub async fn wait_polled(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            if lock(&self.shared.recorder).metrics.upstream_up {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        lock(&self.shared.recorder).rows
    }

    /// Stops accepting, lets open requests end for up to `grace`, cuts the rest (their
    /// rows say `cut`), closes the log and writes the run folder (`run.json`,
    /// `requests.csv`) that `kabench report` renders: every row is in before it.
    pub async fn shutdown(mut self, grace: Duration) -> ProxyStats {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(grace);
        }
        self.poller.abort();
        let _ = (&mut self.task).await;
        lock(&self.shared.vram).take();
        let version = self.version().await;
        let (rows, model_rows, other_rows, cut, warnings) = {
            let r = lock(&self.shared.recorder);
            (
                r.rows,
                r.model_rows,
                r.other_rows,
                r.cut,
                r.warnings.clone(),
            )
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
            model_rows,
            other_rows,
            cut,
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

/// Binds `config.listen` and serves the proxy in a tokio task, with the default
/// [`ProxyLimits`].
pub async fn spawn(config: ProxyConfig) -> anyhow::Result<ProxyHandle> {
    spawn_with(config, ProxyLimits::default()).await
}

/// [`spawn`] with `limits`.
pub async fn spawn_with(config: ProxyConfig, limits: ProxyLimits) -> anyhow::Result<ProxyHandle> {
    // Bound first (the port may be 0) and checked before anything is written.
    let listener = server::bind(config.listen).await?;
    hops::check_not_self(
        listener.local_addr()?,
        config.upstream.trim_end_matches('/'),
    )
    .await?;
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
        budget: Budget::new(&limits.body),
        body_limits: limits.body.clone(),
        cutting: AtomicBool::new(false),
        hop_id: hops::hop_id(),
    });
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<Duration>();
    let task = tokio::spawn(server::serve(listener, shared.clone(), limits.conn, rx));
    let poller = tokio::spawn(ps::poll(Arc::downgrade(&shared)));
    Ok(ProxyHandle {
        addr,
        shared,
        shutdown: Some(tx),
        task,
        poller,
    })
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

/// A JSON error in Ollama's shape, from the proxy itself.
fn proxy_error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": format!("kabench proxy: {message}") })),
    )
        .into_response()
}

/// `path` as Ollama routes it: repeated slashes collapsed and a trailing one dropped
/// (Ollama redirects `/api/generate/` and `//api//chat` there with a 307).
fn canonical(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// One request, from its arrival to its reply's last byte.
async fn forward<B>(shared: Arc<Shared>, client: SocketAddr, req: hyper::Request<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
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
    let target = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let base_row = || ProxyRow {
        timestamp: now_rfc3339(),
        t_ms: shared.start.elapsed().as_secs_f64() * 1000.0,
        method: parts.method.to_string(),
        path: target.clone(),
        endpoint: "other".into(),
        client: client.to_string(),
        keep_alive_placement: "absent".into(),
        ..Default::default()
    };
    let hops: Vec<String> = parts
        .headers
        .get_all(HOPS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    if hops.iter().any(|h| *h == shared.hop_id) || hops.len() >= MAX_HOPS {
        let mut row = base_row();
        row.outcome = "loop".into();
        row.status = Some(StatusCode::LOOP_DETECTED.as_u16());
        row.note = format!("hops:{}", hops.len());
        row.e2e_ms = Some(arrived.elapsed().as_secs_f64() * 1000.0);
        let mut r = lock(&shared.recorder);
        r.metrics.loops += 1;
        r.pain(inspect::Pain::Loop);
        r.finish(row, &inspect::inspect("", b""), Instant::now());
        return proxy_error(
            StatusCode::LOOP_DETECTED,
            format!(
                "this request already passed this proxy ({HOPS}): the upstream {} forwards back to it; point --upstream at the Ollama server itself",
                shared.upstream
            ),
        );
    }
    if !path.starts_with('/') {
        // `OPTIONS *` asks about the proxy itself, and a CONNECT's target is a host:
        // neither names a resource of the upstream, so neither is forwarded.
        let mut row = base_row();
        row.path = parts.uri.to_string();
        row.outcome = "not_forwarded".into();
        let response = if parts.method == axum::http::Method::OPTIONS && path == "*" {
            (
                StatusCode::OK,
                [(header::ALLOW, "GET, HEAD, POST, PUT, DELETE, OPTIONS")],
            )
                .into_response()
        } else {
            proxy_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "a request target must be a path starting with '/' (not {})",
                    crate::units::limits::excerpt(&parts.uri.to_string())
                ),
            )
        };
        row.status = Some(response.status().as_u16());
        row.e2e_ms = Some(arrived.elapsed().as_secs_f64() * 1000.0);
        lock(&shared.recorder).finish(row, &inspect::inspect("", b""), Instant::now());
        return response;
    }
    let (body, permits) = match body::read(body, &shared.budget, &shared.body_limits).await {
        Ok(b) => b,
        Err(e) => {
            let status = match e {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                BodyError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                BodyError::Read(_) => StatusCode::BAD_REQUEST,
            };
            let mut row = base_row();
            row.status = Some(status.as_u16());
            row.outcome = match e {
                BodyError::Busy(_) => "proxy_busy",
                _ => "bad_request",
            }
            .into();
            row.note = e.to_string();
            row.e2e_ms = Some(arrived.elapsed().as_secs_f64() * 1000.0);
            lock(&shared.recorder).finish(row, &inspect::inspect("", b""), Instant::now());
            return proxy_error(status, e.to_string());
        }
    };
    let inspected = inspect::inspect(&canonical(&path), &body);
    let mut notes: Vec<String> = inspected
        .pains
        .iter()
        .map(|p| p.key().to_string())
        .collect();
    if inspected.malformed {
        notes.insert(0, "malformed_body".into());
    }
    let mut body = body;
    // The keep_alive the server receives: the client's, or the rewritten one.
    let mut received = inspected.applied.clone();
    if let Some(ka) = &shared.rewrite
        && inspected.native
        && let Some(new) = inspect::rewrite_keep_alive(&body, ka)
    {
        body = Bytes::from(new);
        notes.push(format!("rewritten:{ka}"));
        received = crate::units::KeepAlive::from_json(ka)
            .ok()
            .flatten()
            .map(|k| k.written().to_string());
    }
    let row = ProxyRow {
        endpoint: inspected.endpoint.to_string(),
        model: inspected.model.clone().unwrap_or_default(),
        keep_alive: received.unwrap_or_default(),
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
        ..base_row()
    };
    let url = format!("{}{}", shared.upstream, target);
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
    let mut chain = hops;
    chain.push(shared.hop_id.clone());
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(reqwest::header::HeaderName::from_static(HOPS), v);
    }
    // Written when dropped unanswered: the client left, or the proxy was cut.
    let mut pending = Pending {
        shared: shared.clone(),
        row: Some((row, inspected)),
        arrived,
    };
    let upstream = shared
        .http
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    // The body has been sent (or failed): its bytes leave the budget.
    drop(permits);
    let Some((mut row, inspected)) = pending.row.take() else {
        return proxy_error(StatusCode::INTERNAL_SERVER_ERROR, "request lost".into());
    };
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            row.e2e_ms = Some(arrived.elapsed().as_secs_f64() * 1000.0);
            let mut r = lock(&shared.recorder);
            let (status, message) = if e.is_builder() {
                row.outcome = "not_forwarded".into();
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot forward this request: {e}"),
                )
            } else if e.is_connect() {
                row.outcome = "upstream_unreachable".into();
                r.metrics.upstream_errors += 1;
                r.pain(inspect::Pain::UpstreamDown);
                (
                    StatusCode::BAD_GATEWAY,
                    format!("Ollama at {} is unreachable: {e}", shared.upstream),
                )
            } else {
                // Connected, but no answer came: the request is logged with why.
                row.outcome = "upstream_error".into();
                r.metrics.upstream_errors += 1;
                (
                    StatusCode::BAD_GATEWAY,
                    format!("Ollama at {} did not answer: {e}", shared.upstream),
                )
            };
            row.status = Some(status.as_u16());
            if !row.note.is_empty() {
                row.note.push(';');
            }
            row.note.push_str(&crate::units::limits::excerpt(&message));
            r.finish(row, &inspected, Instant::now());
            return proxy_error(status, message);
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
        redirect: (300..400).contains(&status),
        failed: None,
        done_ms: None,
    };
    let bodiless = length == Some(0)
        || parts.method == axum::http::Method::HEAD
        || status == 204
        || status == 304;
    let body = if bodiless {
        // Nothing to pass (a redirect, a 204, a 304, the reply to a HEAD): the row is
        // written now, as the server never polls a body it will not send.
        let mut tap = tap;
        tap.close("ok");
        Body::empty()
    } else {
        Body::from_stream(tap)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    copy_headers(&out_headers, response.headers_mut());
    response
}
