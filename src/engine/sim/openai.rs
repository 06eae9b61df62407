//! The OpenAI-compatible `/v1/chat/completions` and `/v1/embeddings` of the simulator
//! (H9): `keep_alive` and `num_ctx` are dropped, so a cold load gets
//! `OLLAMA_KEEP_ALIVE` and the default context, and a resident model keeps its
//! keep-alive; `usage` has tokens and no durations; errors are OpenAI's
//! `{"error":{"message","type","param","code"}}`, with Ollama's texts.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::generate::{self, Checked, Plan};
use super::wire::{self, SimError};
use super::{Admission, SimState, Ticket};
use crate::engine::catalogue::Capability;
use crate::engine::sched::RequestKind;
use crate::ollama::api;

/// An error in OpenAI's shape, with the type Ollama's middleware gives each status.
pub(super) struct OpenAiError(SimError);

impl From<SimError> for OpenAiError {
    fn from(e: SimError) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = match self.0.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "api_error",
        };
        let body = json!({"error": {
            "message": self.0.message,
            "type": kind,
            "param": null,
            "code": null,
        }});
        (self.0.status, axum::Json(body)).into_response()
    }
}

fn bad(message: &str) -> OpenAiError {
    OpenAiError(SimError::bad_request(message))
}

/// The body as JSON (Go's decoder's error texts are approximated by serde's).
fn parse(body: &[u8]) -> Result<Value, OpenAiError> {
    serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))
}

/// The model's checks with nothing of the request's keep_alive or options (H9): the
/// scheduler sees a request that sends neither.
fn check(st: &SimState, model: &str) -> Result<Checked, SimError> {
    generate::check(st, true, model, None, None)
}

fn model_of(v: &Value) -> &str {
    v.get("model").and_then(Value::as_str).unwrap_or("")
}

fn created() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `POST /v1/chat/completions`: a chat whose `keep_alive`, `options` and `num_ctx`
/// are dropped (H9); `max_tokens` (or `max_completion_tokens`) caps the answer.
pub(super) async fn chat_completions(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, OpenAiError> {
    st.count_request();
    let req = parse(&body)?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        return Err(bad("[] is too short - 'messages'"));
    }
    let model = model_of(&req);
    let mut c = check(&st, model).map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            SimError::new(StatusCode::NOT_FOUND, format!("model '{model}' not found"))
        } else {
            e
        }
    })?;
    if !c.spec.has(Capability::Completion) {
        return Err(SimError::bad_request(format!("\"{model}\" does not support chat")).into());
    }
    c.num_predict = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_i64);
    let prompt_tokens = messages
        .iter()
        .map(|m| api::estimate_tokens(m.get("content").and_then(Value::as_str).unwrap_or("")))
        .sum();
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let (ticket, adm) = c.admit(&st, RequestKind::Serve).await?;
    let plan = Plan::new(&st, &c, prompt_tokens, false);
    let id = format!("chatcmpl-{}", st.pick(1000));
    let reply = Reply {
        _ticket: ticket,
        adm,
        plan,
        id,
        model: model.to_string(),
        next: 0,
        done: false,
    };
    if stream {
        tokio::time::sleep_until(reply.at(0).into()).await;
        let body = futures_util::stream::unfold(reply, Reply::step);
        return Ok(Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(body))
            .unwrap_or_else(|e| SimError::internal(e.to_string()).into_response()));
    }
    tokio::time::sleep_until(reply.at(reply.plan.tokens).into()).await;
    let text: String = (0..reply.plan.tokens).map(|k| reply.plan.text(k)).collect();
    let out = json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": created(),
        "model": reply.model,
        "system_fingerprint": "fp_ollama",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reply.plan.done_reason,
        }],
        "usage": {
            "prompt_tokens": reply.plan.prompt_tokens,
            "completion_tokens": reply.plan.tokens,
            "total_tokens": reply.plan.prompt_tokens + reply.plan.tokens,
        },
    });
    drop(reply);
    Ok(axum::Json(out).into_response())
}

/// A dispatched `/v1/chat/completions` being answered; ends the request when dropped.
struct Reply {
    /// Ends the request in the scheduler when the reply is dropped (T1).
    _ticket: Ticket,
    adm: Admission,
    plan: Plan,
    id: String,
    model: String,
    next: u32,
    done: bool,
}

impl Reply {
    fn at(&self, k: u32) -> Instant {
        self.adm.dispatched_at + self.plan.due(k)
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Vec<u8> {
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": created(),
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {v}\n\n").into_bytes()
    }

    /// The next SSE events: every token due by now, then the finish chunk and `[DONE]`.
    async fn step(mut self) -> Option<(Result<Bytes, std::io::Error>, Reply)> {
        if self.done {
            return None;
        }
        tokio::time::sleep_until(self.at(self.next).into()).await;
        let now = Instant::now();
        let mut out = Vec::new();
        while self.next < self.plan.tokens && self.at(self.next) <= now {
            let text = self.plan.text(self.next);
            let delta = if self.next == 0 {
                json!({"role": "assistant", "content": text})
            } else {
                json!({"content": text})
            };
            out.extend(self.chunk(delta, None));
            self.next += 1;
        }
        if self.next >= self.plan.tokens && self.at(self.plan.tokens) <= Instant::now() {
            out.extend(self.chunk(json!({}), Some(self.plan.done_reason)));
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.done = true;
        }
        Some((Ok(out.into()), self))
    }
}

/// `POST /v1/embeddings`: an embedding whose `keep_alive` is dropped (H9). A model
/// without the embedding capability is dispatched, then answered 501, as its runner
/// answers on the real server.
pub(super) async fn embeddings(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, OpenAiError> {
    st.count_request();
    let req = parse(&body)?;
    let inputs = match req.get("input") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("invalid input"))?,
        _ => return Err(bad("invalid input")),
    };
    let model = model_of(&req);
    let c = check(&st, model).map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            SimError::new(
                StatusCode::NOT_FOUND,
                format!("model \"{model}\" not found, try pulling it first"),
            )
        } else {
            e
        }
    })?;
    let (ticket, adm) = c.admit(&st, RequestKind::Serve).await?;
    if !c.spec.has(Capability::Embedding) {
        drop(ticket);
        return Err(SimError::new(StatusCode::NOT_IMPLEMENTED, generate::NO_EMBEDDINGS).into());
    }
    let tokens: u32 = inputs.iter().map(|s| api::estimate_tokens(s)).sum();
    let prefill = c.spec.prefill_time(u64::from(tokens));
    tokio::time::sleep_until((adm.dispatched_at + prefill).into()).await;
    let len = generate::embedding_length(&c.spec) as usize;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "embedding": wire::embedding(s, len), "index": i}))
        .collect();
    drop(ticket);
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}
