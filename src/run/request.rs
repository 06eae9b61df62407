//! One request of a cell, from plan to row: when each is due (`plan_sends`), the body
//! it carries (`generate_request`, `chat_request`, `embed_request`), the row it starts
//! as (`new_row`), the `/api/ps` residency check, the guard that records a `cancelled`
//! row when its task is dropped, and the row it ends as (`fill_row`, applying the cold
//! rule). Shared by both drivers; knows nothing of loops, users or files.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::folder::{self, RequestRecord, classify_cold};
use crate::ollama::Exchange;
use crate::ollama::api::{self, ChatRequest, EmbedRequest, GenerateRequest, Message};
use crate::scenario::{Api, Cell, CellStream, Prompt, ShardBy};
use crate::shard::{self, Shard};
use crate::workload::{self, Limit};

/// One planned send of a cell.
pub struct Planned {
    /// When it is due, from the start of the cell.
    pub offset: Duration,
    /// Index of its stream in the cell.
    pub stream: usize,
    /// Sequence number within its stream.
    pub seq: u32,
    /// Position in the cell's global schedule (every shard's sends, in time order).
    pub global: usize,
    /// Index of the target host it goes to (0 with one target).
    pub target: usize,
}

/// This process's part of a sharded run: which shard, split how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// The shard.
    pub shard: Shard,
    /// How the global schedule is split.
    pub by: ShardBy,
}

/// The sends of a cell for `targets` hosts, of one shard's `slice` when given: the
/// cell's one global schedule (every stream's offsets from its seeded arrival, merged
/// in time order), each send bound to a host round-robin, then only the sends the
/// shard owns. Every shard derives the same global schedule from the same seed.
pub fn plan_slice(cell: &Cell, targets: usize, slice: Option<Slice>) -> Result<Vec<Planned>> {
    let sends = plan_sends(cell)?;
    Ok(sends
        .into_iter()
        .enumerate()
        .map(|(global, mut p)| {
            p.global = global;
            p.target = shard::target_of(global, targets);
            p
        })
        .filter(|p| slice.is_none_or(|s| s.shard.sends(s.by, p.global, p.stream, p.target)))
        .collect())
}

/// The intended send offsets of a cell, merged over its streams in time order.
pub fn plan_sends(cell: &Cell) -> Result<Vec<Planned>> {
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
                    global: 0,
                    target: 0,
                }),
        );
    }
    sends.sort_by_key(|p| (p.offset, p.stream, p.seq));
    for (global, p) in sends.iter_mut().enumerate() {
        p.global = global;
    }
    Ok(sends)
}

/// Number of requests a cell will send.
pub fn planned_requests(cell: &Cell) -> Result<u64> {
    Ok(plan_sends(cell)?.len() as u64)
}

/// The row a request of `stream` starts as: who it is, before anything is timed.
pub fn new_row(cell: &str, seq: u32, stream: &CellStream) -> RequestRecord {
    RequestRecord {
        cell: cell.to_string(),
        request: seq,
        stream: stream.name.clone(),
        model: stream.model.clone(),
        keep_alive: stream.keep_alive.clone(),
        warmup: seq < stream.warmup,
        repetition: stream.repetition,
        ..Default::default()
    }
}

/// Records a `cancelled` row if its request is dropped before it finished (Ctrl-C
/// past the grace period, a goose user stopped mid-request).
pub struct RowGuard {
    row: Option<RequestRecord>,
    rows: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
}

impl RowGuard {
    /// Guards `row` until `take`.
    pub fn new(
        row: RequestRecord,
        rows: mpsc::UnboundedSender<RequestRecord>,
        epoch: Instant,
    ) -> RowGuard {
        RowGuard {
            row: Some(row),
            rows,
            epoch,
        }
    }

    /// The row, to fill and send: the request ended on its own.
    pub fn take(&mut self) -> Option<RequestRecord> {
        self.row.take()
    }
}

impl Drop for RowGuard {
    fn drop(&mut self) {
        if let Some(mut row) = self.row.take() {
            row.end_ms = folder::ms(Instant::now() - self.epoch);
            row.error = "cancelled".into();
            row.error_detail = "interrupted before the response ended".into();
            let _ = self.rows.send(row);
        }
    }
}

fn options(stream: &CellStream) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("num_ctx".into(), Value::from(stream.num_ctx));
    if stream.api != Api::Embed {
        o.insert("num_predict".into(), Value::from(stream.max_tokens));
    }
    o
}

pub(crate) fn prompt_text(stream: &CellStream) -> String {
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
    let at = |t: Instant| folder::ms(t.saturating_duration_since(epoch));
    let since_intended = |t: Instant| folder::ms(t.saturating_duration_since(intended));
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
                    Some(folder::ms(ex.end_at.saturating_duration_since(ft)) / (tokens - 1) as f64);
            }
        }
    }
    row
}
