//! `/api/generate`, `/api/chat` and `/api/embed` of the simulator: request checks in
//! Ollama's order (H2–H4), load/unload replies (M7, E6), and token streams timed by
//! the model's prefill and decode speeds (M1–M5, M10), with mid-stream faults (M9).
//! Over 500 lines: the generate, chat and embed handlers share their streaming and timing code.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::options;
use super::wire::{self, SimError};
use super::{Admission, SimState, Ticket};
use crate::engine::catalogue::{Capability, ModelSpec};
use crate::engine::sched::RequestKind;
use crate::ollama::api;
use crate::units::KeepAlive;

/// Tokens generated when a request sets no `num_predict` (the model then stops itself).
const DEFAULT_TOKENS: u32 = 128;
/// At most this many token lines go into one body chunk when decode outruns the timer.
const MAX_BATCH: usize = 256;

/// Which API a request came through; decides the chunk shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Generate,
    Chat,
}

impl Api {
    fn verb(self) -> &'static str {
        match self {
            Api::Generate => "generate",
            Api::Chat => "chat",
        }
    }
}

/// A request's checked common fields.
pub(super) struct Checked {
    pub(super) model: String,
    pub(super) spec: ModelSpec,
    pub(super) keep_alive: Option<KeepAlive>,
    pub(super) num_ctx: Option<u32>,
    pub(super) num_predict: Option<i64>,
    /// A bad option (H4): Ollama reports it when it schedules the request, after the
    /// capability checks, and never for an unload request (E6).
    pub(super) bad_option: Option<SimError>,
}

impl Checked {
    /// Hands the request to the scheduler and waits for its model. A serving request
    /// may first be answered with the injected 500, and waits `[sim.faults] delay`
    /// (fault injection, before any byte).
    pub(super) async fn admit(
        &self,
        st: &SimState,
        kind: RequestKind,
    ) -> Result<(Ticket, Admission), SimError> {
        if kind != RequestKind::Unload
            && let Some(e) = &self.bad_option
        {
            return Err(e.clone());
        }
        if kind == RequestKind::Serve && st.roll(st.inner.faults.error_500) {
            return Err(SimError::internal("simulated server error"));
        }
        // A slower server: every answer waits this long before its first byte.
        let delay = st.inner.faults.delay;
        if kind == RequestKind::Serve && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        st.admit(&self.model, self.num_ctx, self.keep_alive.clone(), kind)
            .await
    }
}

/// Ollama's checks in its order: `keep_alive` (decoded with the body: a number past a
/// Go duration is taken, as Ollama takes it), model name, installed (H3); option types
/// (H4) are read here and reported when the request is scheduled
/// ([`Checked::admit`]). An empty model name is 400 `model is required` on
/// `/api/chat` only; `/api/generate` and `/api/embed` answer 404 `model '' not found`,
/// as the real server does.
pub(super) fn check(
    st: &SimState,
    chat: bool,
    model: &str,
    keep_alive: Option<&Value>,
    options: Option<&Map<String, Value>>,
) -> Result<Checked, SimError> {
    let keep_alive = match keep_alive {
        Some(v) => KeepAlive::from_json(v).map_err(|e| SimError::bad_request(e.message))?,
        None => None,
    };
    if chat && model.trim().is_empty() {
        return Err(SimError::bad_request("model is required"));
    }
    let spec = st
        .catalogue()
        .resolve(model)
        .ok_or_else(|| SimError::model_not_found(model))?
        .clone();
    let (read, bad_option) = match options::read(options) {
        Ok(o) => (o, None),
        Err(e) => (options::ReqOptions::default(), Some(e)),
    };
    Ok(Checked {
        model: model.to_string(),
        spec,
        keep_alive,
        num_ctx: read.context(),
        num_predict: read.num_predict,
        bad_option,
    })
}

/// `POST /api/generate`.
pub(super) async fn generate(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, SimError> {
    st.count_request();
    let req: api::GenerateRequest = wire::parse_body(&body)?;
    let c = check(
        &st,
        false,
        &req.model,
        req.keep_alive.as_ref(),
        req.options.as_ref(),
    )?;
    let prompt = req.prompt.unwrap_or_default();
    let empty = prompt.is_empty() && req.images.as_ref().is_none_or(|i| i.is_empty());
    let tokens = api::estimate_tokens(&prompt);
    let think = req.think.as_ref().is_none_or(|t| t != &Value::Bool(false));
    text_reply(
        st,
        c,
        Api::Generate,
        empty,
        tokens,
        req.stream != Some(false),
        think,
    )
    .await
}

/// `POST /api/chat`.
pub(super) async fn chat(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, SimError> {
    st.count_request();
    let req: api::ChatRequest = wire::parse_body(&body)?;
    let c = check(
        &st,
        true,
        &req.model,
        req.keep_alive.as_ref(),
        req.options.as_ref(),
    )?;
    let messages = req.messages.unwrap_or_default();
    let tokens = messages
        .iter()
        .map(|m| api::estimate_tokens(&m.content))
        .sum();
    let think = req.think.as_ref().is_none_or(|t| t != &Value::Bool(false));
    text_reply(
        st,
        c,
        Api::Chat,
        messages.is_empty(),
        tokens,
        req.stream != Some(false),
        think,
    )
    .await
}

async fn text_reply(
    st: SimState,
    c: Checked,
    api: Api,
    empty: bool,
    prompt_tokens: u32,
    stream: bool,
    think: bool,
) -> Result<Response, SimError> {
    let unsupported =
        || SimError::bad_request(format!("\"{}\" does not support {}", c.model, api.verb()));
    if empty {
        // E6 before the capability check: any installed model can be unloaded. Only an
        // exact zero: a number that overflowed Go's duration loads the model, which
        // then unloads as soon as it is idle.
        let unload = c.keep_alive.as_ref().is_some_and(KeepAlive::is_exact_zero);
        let kind = if unload {
            RequestKind::Unload
        } else {
            if !c.spec.has(Capability::Completion) {
                return Err(unsupported());
            }
            RequestKind::LoadOnly
        };
        let (ticket, _) = c.admit(&st, kind).await?;
        let reply = final_line(
            api,
            &c.model,
            if unload { "unload" } else { "load" },
            api::Metrics::default(),
            "",
            None,
        );
        drop(ticket);
        return Ok(json_response(reply));
    }
    if !c.spec.has(Capability::Completion) {
        return Err(unsupported());
    }
    let (ticket, adm) = c.admit(&st, RequestKind::Serve).await?;
    let plan = Plan::new(
        &st,
        &c,
        prompt_tokens,
        think && c.spec.has(Capability::Thinking),
    );
    let run = Run {
        ticket,
        adm,
        plan,
        api,
        model: c.model,
        next: 0,
        finished: false,
    };
    if stream {
        run.stream(&st).await
    } else {
        run.whole(&st).await
    }
}

/// Where a stream goes wrong on purpose (M9), decided up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// An `{"error":…}` line after this many tokens, no done line.
    ErrorAt(u32),
    /// The connection drops after this many tokens.
    DropAt(u32),
}

/// The modelled timeline of one reply.
pub(super) struct Plan {
    spec: ModelSpec,
    pub(super) prompt_tokens: u32,
    pub(super) tokens: u32,
    thinking: u32,
    pub(super) done_reason: &'static str,
    slow: f64,
    seed: u64,
    fault: Fault,
}

impl Plan {
    pub(super) fn new(st: &SimState, c: &Checked, prompt_tokens: u32, think: bool) -> Plan {
        // Zero or negative is no limit, as in Ollama's runner: the model stops itself.
        let (tokens, done_reason) = match c.num_predict {
            Some(n) if n > 0 => (n.min(i64::from(u32::MAX)) as u32, "length"),
            _ => (DEFAULT_TOKENS, "stop"),
        };
        // Thinking tokens count toward num_predict, as in Ollama.
        let thinking = if think && tokens >= 2 { tokens / 4 } else { 0 };
        let f = st.inner.faults;
        let fault = if st.roll(f.midstream_error) {
            Fault::ErrorAt(st.pick(tokens))
        } else if st.roll(f.drop_connection) {
            Fault::DropAt(st.pick(tokens))
        } else {
            Fault::None
        };
        let slow = if st.roll(f.slow_stream) {
            f.slow_factor
        } else {
            1.0
        };
        Plan {
            spec: c.spec.clone(),
            prompt_tokens,
            tokens,
            thinking,
            done_reason,
            slow,
            seed: st.inner.next_id.load(std::sync::atomic::Ordering::Relaxed),
            fault,
        }
    }

    fn prefill(&self) -> Duration {
        self.spec.prefill_time(u64::from(self.prompt_tokens))
    }

    /// Offset from hand-over at which token `k` (0-based) is ready: the first comes
    /// out of the prefill, each later one costs a decode step. `due(tokens)`, one step
    /// after the last token (the end of sequence), is when the done line goes out, so
    /// total_duration ≥ load + prompt eval + eval, as Ollama reports.
    pub(super) fn due(&self, k: u32) -> Duration {
        self.prefill() + self.spec.decode_time(u64::from(k)).mul_f64(self.slow)
    }

    fn eval_duration(&self) -> Duration {
        self.spec
            .decode_time(u64::from(self.tokens))
            .mul_f64(self.slow)
    }

    fn is_thinking(&self, k: u32) -> bool {
        k < self.thinking
    }

    /// Token text; the answer restarts its word count after the thinking part.
    pub(super) fn text(&self, k: u32) -> String {
        if self.is_thinking(k) {
            wire::token_text(self.seed, k)
        } else {
            wire::token_text(self.seed.rotate_left(17), k - self.thinking)
        }
    }

    fn metrics(&self, adm: &Admission) -> api::Metrics {
        let nz = |d: Duration| Some(d.as_nanos() as u64).filter(|n| *n > 0);
        let count = |n: u32| Some(u64::from(n)).filter(|n| *n > 0);
        api::Metrics {
            total_duration: nz(adm.receipt.elapsed()),
            load_duration: nz(adm.load_duration),
            prompt_eval_count: count(self.prompt_tokens),
            prompt_eval_duration: nz(self.prefill()),
            eval_count: count(self.tokens),
            eval_duration: nz(self.eval_duration()),
        }
    }
}

/// One dispatched text request being answered.
struct Run {
    ticket: Ticket,
    adm: Admission,
    plan: Plan,
    api: Api,
    model: String,
    next: u32,
    finished: bool,
}

impl Run {
    fn at(&self, k: u32) -> Instant {
        self.adm.dispatched_at + self.plan.due(k)
    }

    /// The NDJSON reply: headers go out with the first token (as Ollama flushes them
    /// with its first chunk), so the client's first byte comes after the prefill.
    async fn stream(self, _st: &SimState) -> Result<Response, SimError> {
        tokio::time::sleep_until(self.at(0).into()).await;
        let body = futures_util::stream::unfold(self, |run| run.step());
        Ok(Response::builder()
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(Body::from_stream(body))
            .unwrap_or_else(|e| SimError::internal(e.to_string()).into_response()))
    }

    /// The next body chunk: every token due by now (one line each), then the done line.
    /// Ending the stream drops the run, and its ticket ends the request (T1).
    async fn step(mut self) -> Option<(Result<Bytes, std::io::Error>, Run)> {
        if self.finished {
            return None;
        }
        // Every token, then the done line one decode step after the last (`due`).
        tokio::time::sleep_until(self.at(self.next).into()).await;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut lines = 0;
        while self.next < self.plan.tokens && self.at(self.next) <= now && lines < MAX_BATCH {
            match self.plan.fault {
                Fault::ErrorAt(k) if k == self.next => {
                    push_line(
                        &mut out,
                        &api::ErrorBody {
                            error: "simulated error: model runner stopped mid-stream".into(),
                        },
                    );
                    self.finished = true;
                    return Some((Ok(out.into()), self));
                }
                Fault::DropAt(k) if k == self.next => {
                    if out.is_empty() {
                        self.finished = true;
                        let err = std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "simulated dropped connection",
                        );
                        return Some((Err(err), self));
                    }
                    break;
                }
                _ => {}
            }
            self.push_token(&mut out);
            lines += 1;
        }
        if self.next >= self.plan.tokens && self.at(self.plan.tokens) <= Instant::now() {
            let line = final_line(
                self.api,
                &self.model,
                self.plan.done_reason,
                self.plan.metrics(&self.adm),
                "",
                None,
            );
            out.extend_from_slice(&line);
            out.push(b'\n');
            self.finished = true;
        }
        Some((Ok(out.into()), self))
    }

    fn push_token(&mut self, out: &mut Vec<u8>) {
        let k = self.next;
        let text = self.plan.text(k);
        let (answer, thinking) = if self.plan.is_thinking(k) {
            ("", Some(text.as_str()))
        } else {
            (text.as_str(), None)
        };
        let created_at = wire::created_at_now();
        match self.api {
            Api::Generate => push_line(
                out,
                &api::GenerateChunk {
                    model: self.model.clone(),
                    created_at,
                    response: answer.to_string(),
                    thinking: thinking.map(str::to_string),
                    done: false,
                    ..Default::default()
                },
            ),
            Api::Chat => push_line(
                out,
                &api::ChatChunk {
                    model: self.model.clone(),
                    created_at,
                    message: assistant(answer, thinking),
                    ..Default::default()
                },
            ),
        }
        self.next += 1;
    }

    /// `"stream":false`: one object with the whole text after the same modelled time.
    async fn whole(self, _st: &SimState) -> Result<Response, SimError> {
        match self.plan.fault {
            Fault::ErrorAt(_) => {
                tokio::time::sleep_until(self.at(0).into()).await;
                return Err(SimError::internal("simulated error: model runner stopped"));
            }
            Fault::DropAt(_) => {
                tokio::time::sleep_until(self.at(0).into()).await;
                let body = futures_util::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated dropped connection",
                    ))
                });
                return Ok(Response::builder()
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(Body::from_stream(body))
                    .unwrap_or_else(|e| SimError::internal(e.to_string()).into_response()));
            }
            Fault::None => {}
        }
        let end = self.adm.dispatched_at + self.plan.due(self.plan.tokens);
        tokio::time::sleep_until(end.into()).await;
        let thinking: String = (0..self.plan.thinking).map(|k| self.plan.text(k)).collect();
        let answer: String = (self.plan.thinking..self.plan.tokens)
            .map(|k| self.plan.text(k))
            .collect();
        let thinking = Some(thinking).filter(|t| !t.is_empty());
        let reply = final_line(
            self.api,
            &self.model,
            self.plan.done_reason,
            self.plan.metrics(&self.adm),
            &answer,
            thinking.as_deref(),
        );
        drop(self.ticket);
        Ok(json_response(reply))
    }
}

fn assistant(content: &str, thinking: Option<&str>) -> api::Message {
    api::Message {
        role: "assistant".into(),
        content: content.to_string(),
        thinking: thinking.map(str::to_string),
        ..Default::default()
    }
}

fn push_line<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing our own plain structs cannot fail.
    if serde_json::to_writer(&mut *out, value).is_ok() {
        out.push(b'\n');
    }
}

/// The `done:true` object of either API (also the whole non-streamed reply).
fn final_line(
    api: Api,
    model: &str,
    reason: &str,
    metrics: api::Metrics,
    text: &str,
    thinking: Option<&str>,
) -> Vec<u8> {
    let created_at = wire::created_at_now();
    let value = match api {
        Api::Generate => serde_json::to_vec(&api::GenerateChunk {
            model: model.to_string(),
            created_at,
            response: text.to_string(),
            thinking: thinking.map(str::to_string),
            done: true,
            done_reason: Some(reason.to_string()),
            // The real server returns the token ids of prompt and answer after a
            // generation (filler ids here: nothing runs a model).
            context: matches!(reason, "stop" | "length").then(|| {
                let n = metrics.prompt_eval_count.unwrap_or(0) + metrics.eval_count.unwrap_or(0);
                (0..n.min(1 << 16) as i64).map(|i| 1 + i % 1800).collect()
            }),
            metrics,
        }),
        Api::Chat => serde_json::to_vec(&api::ChatChunk {
            model: model.to_string(),
            created_at,
            message: assistant(text, thinking),
            done_reason: Some(reason.to_string()),
            done: true,
            metrics,
        }),
    };
    value.unwrap_or_default()
}

fn json_response(body: Vec<u8>) -> Response {
    Response::builder()
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_else(|e| SimError::internal(e.to_string()).into_response())
}

/// What the runner of a model without the embedding capability answers to an
/// embedding request (501 on the real server).
pub(super) const NO_EMBEDDINGS: &str =
    "This server does not support embeddings. Start it with `--embeddings`";

/// `POST /api/embed` (M8): one vector per input after the prompt-evaluation time; an
/// empty input only loads (and unloads after, with `keep_alive` 0).
pub(super) async fn embed(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, SimError> {
    st.count_request();
    let req: api::EmbedRequest = wire::parse_body(&body)?;
    let c = check(
        &st,
        false,
        &req.model,
        req.keep_alive.as_ref(),
        req.options.as_ref(),
    )?;
    let inputs = wire::embed_inputs(req.input.as_ref())?;
    if inputs.is_empty() {
        let (ticket, _) = c.admit(&st, RequestKind::LoadOnly).await?;
        drop(ticket);
        return Ok(axum::Json(api::EmbedResponse {
            model: c.model,
            ..Default::default()
        })
        .into_response());
    }
    let (ticket, adm) = c.admit(&st, RequestKind::Serve).await?;
    if !c.spec.has(Capability::Embedding) {
        // Ollama dispatches it (its keep_alive applies), then the runner, started
        // without embeddings for a model that lacks them, answers 501.
        drop(ticket);
        return Err(SimError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            NO_EMBEDDINGS,
        ));
    }
    let tokens: u32 = inputs.iter().map(|s| api::estimate_tokens(s)).sum();
    let prefill = c.spec.prefill_time(u64::from(tokens));
    tokio::time::sleep_until((adm.dispatched_at + prefill).into()).await;
    let len = embedding_length(&c.spec) as usize;
    let reply = api::EmbedResponse {
        model: c.model,
        embeddings: inputs.iter().map(|s| wire::embedding(s, len)).collect(),
        total_duration: Some(adm.receipt.elapsed().as_nanos() as u64),
        load_duration: Some(adm.load_duration.as_nanos() as u64).filter(|n| *n > 0),
        prompt_eval_count: Some(u64::from(tokens)).filter(|n| *n > 0),
    };
    drop(ticket);
    Ok(axum::Json(reply).into_response())
}

/// Vector length: the catalogue's for embedding models; for others an approximation of
/// the hidden size from the attention geometry (4 query heads per KV head).
pub(super) fn embedding_length(spec: &ModelSpec) -> u32 {
    spec.embedding_length
        .unwrap_or(spec.head_dim * spec.kv_heads * 4)
        .max(1)
}
