//! Drives one cell open-loop: every stream's intended send times come from `workload`,
//! a producer sleeps until each, and each due request runs as its own task gated by a
//! concurrency cap. A slow response never delays the next send; latency is measured
//! from the intended time (no coordinated omission). Every request, success, failure,
//! saturation or cancellation, yields exactly one `RequestRecord`. The runner never
//! prints: progress goes out as events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ollama::api::{self, ChatRequest, EmbedRequest, GenerateRequest, Message};
use crate::ollama::client::{ClientError, Exchange, OllamaClient};
use crate::ollama::name::same_model;
use crate::record::{self, RequestRecord, classify_cold};
use crate::scenario::{Api, Cell, CellStream, Prompt};
use crate::workload::{self, Limit};

/// How the runner treats every cell.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Requests in flight at most; beyond it a due request is recorded as `saturated`.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// M6 threshold on `load_duration`.
    pub cold_threshold: Duration,
    /// How long to wait for the target to report everything unloaded before a cell.
    pub unload_timeout: Duration,
    /// After Ctrl-C, how long in-flight requests may finish.
    pub grace: Duration,
    /// Ask `/api/ps` whether the model is resident just before each send.
    pub check_resident: bool,
}

/// What the runner reports while it works (read by `progress`).
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A cell begins.
    CellStarted {
        /// Position in the plan.
        index: usize,
        /// Cells in the plan.
        of: usize,
        /// Cell id.
        id: String,
        /// Requests planned in this cell.
        requests: u64,
    },
    /// One request ended.
    RequestDone {
        /// It failed.
        error: bool,
        /// It was cold.
        cold: bool,
    },
    /// The cell ended.
    CellFinished {
        /// Cell id.
        id: String,
    },
    /// Something worth a line on stderr.
    Note(String),
}

/// When a cell ran, on the run's clock.
#[derive(Debug, Clone, Copy)]
pub struct CellTiming {
    /// First intended send.
    pub started_ms: f64,
    /// Last request ended.
    pub ended_ms: f64,
}

/// One planned send of a cell.
struct Planned {
    offset: Duration,
    stream: usize,
    seq: u32,
}

/// Unloads every resident model and waits until `/api/ps` is empty: each distinct model
/// is asked once, every call is bounded by what is left of `timeout`, and `stop`
/// (Ctrl-C) ends it at once.
pub async fn unload_all_until(
    client: &OllamaClient,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut asked: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let ps = match client.ps_until(left(), stop).await {
            Ok(ps) => ps,
            Err(ClientError::Cancelled(_)) => {
                anyhow::bail!("interrupted while unloading")
            }
            Err(e) => return Err(e.into()),
        };
        if ps.models.is_empty() {
            return Ok(());
        }
        for m in &ps.models {
            if stop.is_cancelled() {
                anyhow::bail!("interrupted while unloading");
            }
            if left().is_zero() {
                break;
            }
            if asked.insert(m.name.clone()) {
                let _ = client.unload_until(&m.name, left(), stop).await;
            }
        }
        if left().is_zero() {
            let mut names: Vec<&str> = ps.models.iter().map(|m| m.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let shown = names.len().min(5);
            anyhow::bail!(
                "the target still lists {}{} after {:?}; it did not unload",
                names[..shown].join(", "),
                if names.len() > shown {
                    format!(" and {} more", names.len() - shown)
                } else {
                    String::new()
                },
                timeout
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50).min(left())) => {}
            _ = stop.cancelled() => anyhow::bail!("interrupted while unloading"),
        }
    }
}

/// Unloads every resident model and waits until `/api/ps` is empty (or the timeout).
pub async fn unload_all(client: &OllamaClient, timeout: Duration) -> Result<()> {
    unload_all_until(client, timeout, &CancellationToken::new()).await
}

/// The intended send offsets of a cell, merged over its streams in time order.
fn plan_sends(cell: &Cell) -> Result<Vec<Planned>> {
    let mut sends = Vec::new();
    for (i, s) in cell.streams.iter().enumerate() {
        let limit = match (s.requests, s.duration) {
            (Some(n), _) => Limit::Requests(n),
            (None, Some(d)) => Limit::Duration(d),
            (None, None) => Limit::Requests(1),
        };
        let offsets = workload::send_offsets(&s.arrival, limit, s.seed)?;
        sends.extend(
            offsets
                .into_iter()
                .enumerate()
                .map(|(seq, offset)| Planned {
                    offset,
                    stream: i,
                    seq: seq as u32,
                }),
        );
    }
    sends.sort_by_key(|p| (p.offset, p.stream, p.seq));
    Ok(sends)
}

/// Number of requests a cell will send.
pub fn planned_requests(cell: &Cell) -> Result<u64> {
    Ok(plan_sends(cell)?.len() as u64)
}

/// Runs one cell; every request's row goes to `rows`. Returns when every request has
/// ended, or after `grace` once `cancel` fires (the rest recorded as `cancelled`).
pub async fn run_cell(
    client: &OllamaClient,
    cell: &Cell,
    config: &RunnerConfig,
    epoch: Instant,
    rows: mpsc::UnboundedSender<RequestRecord>,
    cancel: CancellationToken,
) -> Result<CellTiming> {
    let sends = plan_sends(cell)?;
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let start = Instant::now();
    let started_ms = record::ms(start - epoch);
    let mut tasks = tokio::task::JoinSet::new();
    // Fired once the grace after a cancel is over: requests still in flight end with
    // what they measured so far.
    let stop = CancellationToken::new();
    let streams: Arc<Vec<CellStream>> = Arc::new(cell.streams.clone());
    for send in sends {
        let due = start + send.offset;
        tokio::select! {
            _ = wait_until(due) => {}
            _ = cancel.cancelled() => break,
        }
        let stream = &streams[send.stream];
        let mut row = RequestRecord {
            cell: cell.id.clone(),
            request: send.seq,
            stream: stream.name.clone(),
            model: stream.model.clone(),
            keep_alive: stream
                .keep_alive
                .as_ref()
                .map(|k| k.written().to_string())
                .unwrap_or_default(),
            warmup: send.seq < stream.warmup,
            intended_ms: record::ms(due - epoch),
            ..Default::default()
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            row.end_ms = record::ms(Instant::now() - epoch);
            row.error = "saturated".into();
            row.error_detail = format!(
                "{} requests already in flight (run.concurrency)",
                config.concurrency
            );
            let _ = rows.send(row);
            continue;
        };
        let guard = RowGuard {
            row: Some(row),
            rows: rows.clone(),
            epoch,
        };
        let client = client.clone();
        let streams = streams.clone();
        let idx = send.stream;
        let config = config.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut guard = guard;
            let stream = &streams[idx];
            let (resident, exchange) = send_one(&client, stream, &config, &stop).await;
            if let Some(row) = guard.row.take() {
                let row = fill_row(row, resident, &exchange, due, epoch, config.cold_threshold);
                let _ = guard.rows.send(row);
            }
            drop(permit);
        });
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = drain => {}
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(config.grace).await;
        } => {
            // Each request still in flight ends as `cancelled`, keeping what it
            // measured; a task that does not end at once is dropped, and its RowGuard
            // records `cancelled` from the plan alone.
            stop.cancel();
            let _ = tokio::time::timeout(STOP_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    Ok(CellTiming {
        started_ms,
        ended_ms: record::ms(Instant::now() - epoch),
    })
}

/// Sleeps until `due` with sub-millisecond precision: tokio's timer wheel ticks in whole
/// milliseconds, which alone would send each request up to 1 ms late, so the last
/// stretch is a thread sleep (high-resolution on Linux) with the worker handed off.
async fn wait_until(due: Instant) {
    const COARSE_MARGIN: Duration = Duration::from_millis(2);
    if let Some(early) = due.checked_sub(COARSE_MARGIN)
        && Instant::now() < early
    {
        tokio::time::sleep_until(early.into()).await;
    }
    let rest = due.saturating_duration_since(Instant::now());
    if rest.is_zero() {
        return;
    }
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    if multi_thread {
        tokio::task::block_in_place(|| std::thread::sleep(rest));
    } else {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Records a `cancelled` row if its request task is dropped before it finished.
struct RowGuard {
    row: Option<RequestRecord>,
    rows: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
}

impl Drop for RowGuard {
    fn drop(&mut self) {
        if let Some(mut row) = self.row.take() {
            row.end_ms = record::ms(Instant::now() - self.epoch);
            row.error = "cancelled".into();
            row.error_detail = "interrupted before the response ended".into();
            let _ = self.rows.send(row);
        }
    }
}

/// How long requests stopped after the grace get to record what they measured.
const STOP_WAIT: Duration = Duration::from_millis(500);

/// Sends one request (and, concurrently, the `/api/ps` residency check: a loading
/// model is absent from `/api/ps` until ready (L3), so the answer reflects the state
/// the request met). `stop` ends both: the request then fails as `cancelled` with what
/// it measured, and the residency check gives up.
async fn send_one(
    client: &OllamaClient,
    stream: &CellStream,
    config: &RunnerConfig,
    stop: &CancellationToken,
) -> (Option<bool>, Exchange) {
    let resident = async {
        if !config.check_resident {
            return None;
        }
        tokio::select! {
            ps = client.ps() => ps.ok().map(|ps| {
                ps.models.iter().any(|m| {
                    same_model(&m.name, &stream.model) || same_model(&m.model, &stream.model)
                })
            }),
            _ = stop.cancelled() => None,
        }
    };
    let timeout = Some(config.timeout);
    let exchange = async {
        match stream.api {
            Api::Generate => {
                client
                    .exchange_until(
                        "/api/generate",
                        &generate_request(stream),
                        timeout,
                        false,
                        Some(stop),
                    )
                    .await
            }
            Api::Chat => {
                client
                    .exchange_until(
                        "/api/chat",
                        &chat_request(stream),
                        timeout,
                        false,
                        Some(stop),
                    )
                    .await
            }
            Api::Embed => {
                client
                    .exchange_until(
                        "/api/embed",
                        &embed_request(stream),
                        timeout,
                        true,
                        Some(stop),
                    )
                    .await
            }
        }
    };
    tokio::join!(resident, exchange)
}

fn options(stream: &CellStream) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("num_ctx".into(), Value::from(stream.num_ctx));
    if stream.api != Api::Embed {
        o.insert("num_predict".into(), Value::from(stream.max_tokens));
    }
    o
}

fn prompt_text(stream: &CellStream) -> String {
    match &stream.prompt {
        Prompt::Tokens(n) => api::synthetic_prompt(*n),
        Prompt::Text(t) => t.clone(),
    }
}

/// A tiny valid PNG (1×1), base64: enough for a vision model's image slot.
const PIXEL_PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn images(stream: &CellStream) -> Option<Vec<String>> {
    (stream.images > 0).then(|| vec![PIXEL_PNG_B64.to_string(); stream.images as usize])
}

/// The `/api/generate` body of a stream's requests (streamed).
pub fn generate_request(stream: &CellStream) -> GenerateRequest {
    GenerateRequest {
        model: stream.model.clone(),
        prompt: Some(prompt_text(stream)),
        images: images(stream),
        stream: Some(true),
        keep_alive: stream.keep_alive.as_ref().map(|k| k.to_json()),
        options: Some(options(stream)),
        think: stream.think.map(Value::Bool),
    }
}

/// The `/api/chat` body of a stream's requests (streamed).
pub fn chat_request(stream: &CellStream) -> ChatRequest {
    ChatRequest {
        model: stream.model.clone(),
        messages: Some(vec![Message {
            role: "user".into(),
            content: prompt_text(stream),
            images: images(stream),
            ..Default::default()
        }]),
        stream: Some(true),
        keep_alive: stream.keep_alive.as_ref().map(|k| k.to_json()),
        options: Some(options(stream)),
        think: stream.think.map(Value::Bool),
    }
}

/// The `/api/embed` body of a stream's requests.
pub fn embed_request(stream: &CellStream) -> EmbedRequest {
    EmbedRequest {
        model: stream.model.clone(),
        input: Some(Value::String(prompt_text(stream))),
        keep_alive: stream.keep_alive.as_ref().map(|k| k.to_json()),
        truncate: None,
        options: Some(options(stream)),
    }
}

fn ns_ms(ns: Option<u64>) -> Option<f64> {
    ns.map(|n| n as f64 / 1e6)
}

/// The path and JSON body of a stream's requests, for senders other than the client.
pub fn request_body(stream: &CellStream) -> (&'static str, Vec<u8>) {
    // Serializing these plain structs cannot fail.
    match stream.api {
        Api::Generate => (
            "/api/generate",
            serde_json::to_vec(&generate_request(stream)).unwrap_or_default(),
        ),
        Api::Chat => (
            "/api/chat",
            serde_json::to_vec(&chat_request(stream)).unwrap_or_default(),
        ),
        Api::Embed => (
            "/api/embed",
            serde_json::to_vec(&embed_request(stream)).unwrap_or_default(),
        ),
    }
}

/// Turns a client exchange into the request's row, applying the cold rule (M6);
/// latency counts from `intended` (the send time itself in a closed loop).
pub fn fill_row(
    mut row: RequestRecord,
    resident: Option<bool>,
    ex: &Exchange,
    intended: Instant,
    epoch: Instant,
    threshold: Duration,
) -> RequestRecord {
    let at = |t: Instant| record::ms(t.saturating_duration_since(epoch));
    let since_intended = |t: Instant| record::ms(t.saturating_duration_since(intended));
    row.sent_ms = Some(at(ex.sent_at));
    row.first_byte_ms = ex.first_byte_at.map(at);
    row.first_token_ms = ex.first_token_at.map(at);
    row.first_answer_ms = ex.first_answer_at.map(at);
    row.end_ms = at(ex.end_at);
    row.status = ex.status;
    row.resident_before = resident;
    let m = &ex.metrics;
    row.load_duration_ms = ns_ms(m.load_duration);
    row.prompt_eval_count = m.prompt_eval_count;
    row.prompt_eval_ms = ns_ms(m.prompt_eval_duration);
    row.eval_count = m.eval_count;
    row.eval_ms = ns_ms(m.eval_duration);
    row.total_duration_ms = ns_ms(m.total_duration);
    let load = m.load_duration.map(Duration::from_nanos);
    let reason = classify_cold(resident, load, threshold);
    row.cold = reason.is_some();
    row.cold_reason = reason.map(|r| r.as_str().to_string()).unwrap_or_default();
    match &ex.error {
        Some(e) => {
            row.error = e.kind().as_str().to_string();
            row.error_detail = e.to_string();
        }
        None => {
            // An embedding reply has no tokens: its first byte is its first token.
            let first = ex.first_token_at.or(ex.first_byte_at);
            row.ttft_ms = first.map(since_intended);
            row.e2e_ms = Some(since_intended(ex.end_at));
            let tokens = m.eval_count.unwrap_or(u64::from(ex.chunks));
            if let Some(ft) = ex.first_token_at
                && tokens > 1
            {
                row.itl_ms =
                    Some(record::ms(ex.end_at.saturating_duration_since(ft)) / (tokens - 1) as f64);
            }
        }
    }
    row
}
