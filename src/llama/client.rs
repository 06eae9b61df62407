//! The HTTP client for a llama.cpp server: `GET /health` until it answers 200 (a
//! bounded wait), `GET` of the kind's residency path (`/props`, `/models`, `/running`,
//! none of which resets the idle timer; `/metrics` and `/slots` would, so they are
//! never asked while measuring), and a streamed completion, timed: sent, first byte,
//! first token, end, with the server's own `timings` (prompt and generation
//! milliseconds) when it sends them. A completion is the OpenAI-compatible
//! `POST /v1/chat/completions` (ends with `data: [DONE]`) or llama.cpp's native
//! `POST /completion` (ends with an event whose `stop` is true); every kind routes
//! both by the body's `model`.
//! Every response is read under a size bound ([`MAX_LINE_BYTES`] a line); no redirect
//! is followed.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::llama::kind::{ModelResidency, ServerKind};
use crate::units::limits::{MAX_LINE_BYTES, excerpt};

/// A client of one llama.cpp server.
#[derive(Debug, Clone)]
pub struct LlamaClient {
    base: String,
    kind: ServerKind,
    http: reqwest::Client,
}

/// What `GET /props` says that kabench reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props {
    /// `is_sleeping`: the model was put to sleep after its idle time.
    pub is_sleeping: bool,
    /// `build_info` (e.g. `b10488-…`), empty when absent.
    pub build_info: String,
    /// `model_path`, empty when absent.
    pub model_path: String,
}

/// The request shape of a streamed completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: `messages`, `max_tokens`; content in
    /// `choices[0].delta.content`; ends with `data: [DONE]`.
    Chat,
    /// `POST /completion` (llama.cpp's native shape): `prompt`, `n_predict`; content in
    /// `content`; ends with an event whose `stop` is true.
    Completion,
}

impl Endpoint {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completion => "/completion",
        }
    }
}

/// One streamed completion, timed.
#[derive(Debug, Clone)]
pub struct ChatExchange {
    /// When the request was handed to the connection.
    pub sent_at: Instant,
    /// When the response headers arrived.
    pub first_byte_at: Option<Instant>,
    /// When the first content token arrived.
    pub first_token_at: Option<Instant>,
    /// When the response ended (or failed).
    pub end_at: Instant,
    /// HTTP status, when one came.
    pub status: Option<u16>,
    /// Chunks that carried content.
    pub chunks: u32,
    /// The server's `timings.prompt_n`.
    pub prompt_n: Option<u64>,
    /// The server's `timings.prompt_ms`.
    pub prompt_ms: Option<f64>,
    /// The server's `timings.predicted_n`.
    pub predicted_n: Option<u64>,
    /// The server's `timings.predicted_ms`.
    pub predicted_ms: Option<f64>,
    /// What went wrong: (kind as `requests.csv` writes it, detail).
    pub error: Option<(String, String)>,
}

impl ChatExchange {
    fn new() -> ChatExchange {
        let now = Instant::now();
        ChatExchange {
            sent_at: now,
            first_byte_at: None,
            first_token_at: None,
            end_at: now,
            status: None,
            chunks: 0,
            prompt_n: None,
            prompt_ms: None,
            predicted_n: None,
            predicted_ms: None,
            error: None,
        }
    }

    fn fail(mut self, kind: &str, detail: String) -> ChatExchange {
        self.end_at = Instant::now();
        self.error = Some((kind.to_string(), detail));
        self
    }

    /// True when it ended with a complete answer.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

impl LlamaClient {
    /// A client of the server of `kind` at `base` (`http://host:port`, no trailing `/`).
    pub fn new(base: &str, kind: ServerKind) -> anyhow::Result<LlamaClient> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(LlamaClient {
            base: base.trim_end_matches('/').to_string(),
            kind,
            http,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The server's kind.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// `GET path` as JSON, bounded by `timeout` and [`MAX_LINE_BYTES`].
    pub async fn get_json(&self, path: &str, timeout: Duration) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = read_bounded(resp).await?;
        if status != 200 {
            anyhow::bail!(
                "GET {path} answered {status}: {}",
                excerpt(&String::from_utf8_lossy(&body))
            );
        }
        serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("GET {path} answered no JSON: {e}"))
    }

    /// True once `GET /health` answers 200 (a loading server answers 503).
    pub async fn healthy(&self, timeout: Duration) -> bool {
        match self
            .http
            .get(format!("{}/health", self.base))
            .timeout(timeout)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16() == 200,
            Err(_) => false,
        }
    }

    /// `GET /props` (single-model `llama-server`).
    pub async fn props(&self, timeout: Duration) -> anyhow::Result<Props> {
        let v = self.get_json("/props", timeout).await?;
        Ok(Props {
            is_sleeping: v.get("is_sleeping").and_then(Value::as_bool) == Some(true),
            build_info: v
                .get("build_info")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            model_path: v
                .get("model_path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Where `model` stands, from the kind's residency path; `None` when the server
    /// did not answer in `timeout` or its answer does not say.
    pub async fn residency(&self, model: &str, timeout: Duration) -> Option<ModelResidency> {
        let v = self
            .get_json(self.kind.residency_path(), timeout)
            .await
            .ok()?;
        self.kind.residency_of(&v, model)
    }

    /// Streams a completion of `endpoint`'s shape with `body` (its `stream` set to
    /// true), within `timeout` for the whole exchange.
    pub async fn stream(
        &self,
        endpoint: Endpoint,
        body: &Value,
        timeout: Duration,
    ) -> ChatExchange {
        let mut ex = ChatExchange::new();
        let mut body = body.clone();
        body["stream"] = Value::Bool(true);
        let deadline = Instant::now() + timeout;
        let req = self
            .http
            .post(format!("{}{}", self.base, endpoint.path()))
            .json(&body)
            .timeout(timeout);
        ex.sent_at = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "io"
                };
                return ex.fail(kind, e.to_string());
            }
        };
        ex.first_byte_at = Some(Instant::now());
        let status = resp.status().as_u16();
        ex.status = Some(status);
        if status != 200 {
            let body = read_bounded(resp).await.unwrap_or_default();
            return ex.fail(
                "http",
                format!(
                    "HTTP {status}: {}",
                    excerpt(&String::from_utf8_lossy(&body))
                ),
            );
        }
        let mut stream = resp.bytes_stream();
        let mut line: Vec<u8> = Vec::new();
        let mut done = false;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), stream.next()).await;
            let chunk = match next {
                Err(_) => return ex.fail("timeout", format!("no end within {timeout:?}")),
                Ok(None) => break,
                Ok(Some(Err(e))) => return ex.fail("io", e.to_string()),
                Ok(Some(Ok(c))) => c,
            };
            for &b in chunk.iter() {
                if b != b'\n' {
                    if line.len() >= MAX_LINE_BYTES {
                        return ex.fail(
                            "bad_response",
                            format!("an event line over {MAX_LINE_BYTES} bytes"),
                        );
                    }
                    line.push(b);
                    continue;
                }
                if event(endpoint, &line, &mut ex) {
                    done = true;
                }
                line.clear();
            }
        }
        if !line.is_empty() && event(endpoint, &line, &mut ex) {
            done = true;
        }
        ex.end_at = Instant::now();
        if !done {
            let end = match endpoint {
                Endpoint::Chat => "`data: [DONE]`",
                Endpoint::Completion => "an event with `\"stop\": true`",
            };
            return ex.fail("bad_response", format!("the stream ended without {end}"));
        }
        ex
    }
}

/// Reads one SSE line of `endpoint`'s stream into `ex`; true on its last event.
fn event(endpoint: Endpoint, line: &[u8], ex: &mut ChatExchange) -> bool {
    let text = String::from_utf8_lossy(line);
    let Some(data) = text.trim().strip_prefix("data:") else {
        return false;
    };
    let data = data.trim();
    if endpoint == Endpoint::Chat && data == "[DONE]" {
        return true;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return false;
    };
    let content = match endpoint {
        Endpoint::Chat => v.pointer("/choices/0/delta/content"),
        Endpoint::Completion => v.get("content"),
    };
    if content
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        ex.chunks += 1;
        if ex.first_token_at.is_none() {
            ex.first_token_at = Some(Instant::now());
        }
    }
    if let Some(t) = v.get("timings") {
        ex.prompt_n = t.get("prompt_n").and_then(Value::as_u64);
        ex.prompt_ms = t.get("prompt_ms").and_then(Value::as_f64);
        ex.predicted_n = t.get("predicted_n").and_then(Value::as_u64);
        ex.predicted_ms = t.get("predicted_ms").and_then(Value::as_f64);
    }
    endpoint == Endpoint::Completion && v.get("stop").and_then(Value::as_bool) == Some(true)
}

/// A whole (non-streamed) body, refused past [`MAX_LINE_BYTES`].
async fn read_bounded(resp: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > MAX_LINE_BYTES {
            anyhow::bail!("an answer over {MAX_LINE_BYTES} bytes");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_reads_its_content_timings_and_last_event() {
        // Lines as llama-server b10488 streams them.
        let native = [
            r#"data: {"index":0,"content":" lx","tokens":[1433],"stop":false,"id_slot":-1,"tokens_predicted":1,"tokens_evaluated":2}"#,
            "",
            r#"data: {"index":0,"content":"","tokens":[],"id_slot":3,"stop":true,"tokens_predicted":4,"tokens_evaluated":2,"timings":{"cache_n":1,"prompt_n":1,"prompt_ms":6.939,"predicted_n":4,"predicted_ms":17.356}}"#,
        ];
        let mut ex = ChatExchange::new();
        let ends: Vec<bool> = native
            .iter()
            .map(|l| event(Endpoint::Completion, l.as_bytes(), &mut ex))
            .collect();
        assert_eq!(ends, [false, false, true]);
        assert_eq!(ex.chunks, 1);
        assert!(ex.first_token_at.is_some());
        assert_eq!((ex.prompt_n, ex.predicted_n), (Some(1), Some(4)));
        assert_eq!(ex.predicted_ms, Some(17.356));
        // The chat shape: content in the delta, the end on [DONE]; a native line
        // read as chat carries no content and ends nothing.
        let mut ex = ChatExchange::new();
        let chat = r#"data: {"choices":[{"delta":{"content":"hi"}}]}"#;
        assert!(!event(Endpoint::Chat, chat.as_bytes(), &mut ex));
        assert!(!event(Endpoint::Chat, native[2].as_bytes(), &mut ex));
        assert!(event(Endpoint::Chat, b"data: [DONE]", &mut ex));
        assert_eq!(ex.chunks, 1);
        assert!(!event(Endpoint::Completion, b"data: [DONE]", &mut ex));
    }
}
