//! Reading a response of Ollama as it arrives: the `Exchange` that times one request on
//! the client's clock (first byte, first token, first answer, end), and
//! `read_response`, shared by the client and by senders that bring their own HTTP
//! stack (the closed-loop swarm), over the NDJSON decoder (`ndjson`, re-exported here).
//! Knows nothing of scenarios.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use crate::ollama::api;
use crate::ollama::bounds::{MAX_BODY_BYTES, body_too_long};
use crate::ollama::error::{ClientError, from_reqwest, location, preview, status_error};
pub use crate::ollama::ndjson::{NdjsonDecoder, parse_json_stream, parse_ndjson_body};

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
    pub(crate) fn start() -> Self {
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

    pub(crate) fn failed(err: ClientError) -> Self {
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
        self.observe_facts(Facts::from(chunk), at)
    }

    fn observe_facts(&mut self, chunk: Facts, at: Instant) -> Result<bool, ClientError> {
        self.chunks += 1;
        if let Some(e) = chunk.error {
            return Err(ClientError::StreamError(e));
        }
        if self.first_token_at.is_none() && (chunk.thinking || chunk.answer) {
            self.first_token_at = Some(at);
        }
        if self.first_answer_at.is_none() && chunk.answer {
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

/// What the client keeps of one chunk: whether it carried reasoning or answer text
/// (M10), the final chunk's metrics and `done_reason`, an error line (M9).
struct Facts {
    error: Option<String>,
    thinking: bool,
    answer: bool,
    done: bool,
    done_reason: Option<String>,
    metrics: api::Metrics,
}

impl From<api::StreamChunk> for Facts {
    fn from(c: api::StreamChunk) -> Facts {
        Facts {
            thinking: c.thinking_text().is_some(),
            answer: c.answer_text().is_some(),
            error: c.error,
            done: c.done,
            done_reason: c.done_reason,
            metrics: c.metrics,
        }
    }
}

/// A chunk as it is read off the wire on the request path: the fields and checks of
/// [`api::StreamChunk`] (the same lines are accepted and refused), but text is only
/// looked at, never copied, and the metrics are read in place (no `flatten`, which
/// buffers every field of every chunk).
#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<Text>,
    #[serde(default)]
    response: Option<Text>,
    #[serde(default)]
    thinking: Option<Text>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    total_duration: Option<u64>,
    #[serde(default)]
    load_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
}

/// [`api::Message`] on the wire, read as [`WireChunk`] reads a chunk.
#[derive(Deserialize)]
#[allow(dead_code)]
struct WireMessage {
    #[serde(default)]
    role: Text,
    #[serde(default)]
    content: Text,
    #[serde(default)]
    thinking: Option<Text>,
    #[serde(default)]
    images: Option<Vec<Text>>,
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

/// A JSON string, kept only as whether it is empty (no copy of the text).
#[derive(Default)]
struct Text {
    non_empty: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text {
                    non_empty: !v.is_empty(),
                })
            }
        }
        d.deserialize_str(Visit)
    }
}

impl From<WireChunk> for Facts {
    fn from(c: WireChunk) -> Facts {
        let text = |t: Option<Text>| t.is_some_and(|t| t.non_empty);
        // As `StreamChunk::thinking_text`/`answer_text`: the top-level field when
        // present (even empty), else the message's.
        let (thinking, answer) = match &c.message {
            Some(m) => (
                match &c.thinking {
                    Some(t) => t.non_empty,
                    None => m.thinking.as_ref().is_some_and(|t| t.non_empty),
                },
                match &c.response {
                    Some(t) => t.non_empty,
                    None => m.content.non_empty,
                },
            ),
            None => (text(c.thinking), text(c.response)),
        };
        Facts {
            error: c.error,
            thinking,
            answer,
            done: c.done,
            done_reason: c.done_reason,
            metrics: api::Metrics {
                total_duration: c.total_duration,
                load_duration: c.load_duration,
                prompt_eval_count: c.prompt_eval_count,
                prompt_eval_duration: c.prompt_eval_duration,
                eval_count: c.eval_count,
                eval_duration: c.eval_duration,
            },
        }
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
    let status = resp.status().as_u16();
    let location = location(resp.headers());
    let body = resp
        .bytes_stream()
        .map(|piece| piece.map_err(|e| from_reqwest(e, true)));
    read_reply(status, location, body, ex, embed).await
}

/// [`read_response`] once the headers are in (`ex.first_byte_at` set): `status`, the
/// `Location` header, and the body as it arrives, whatever HTTP stack brought it.
pub(crate) async fn read_reply(
    status: u16,
    location: Option<String>,
    body: impl Stream<Item = Result<Bytes, ClientError>>,
    ex: &mut Exchange,
    embed: bool,
) -> Result<(), ClientError> {
    let mut body = std::pin::pin!(body);
    ex.status = Some(status);
    if !(200..300).contains(&status) {
        let whole = collect(&mut body).await?;
        return Err(status_error(status, location, &whole));
    }
    if embed {
        let whole = collect(&mut body).await?;
        let reply: api::EmbedResponse = serde_json::from_slice(&whole)
            .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(&whole))))?;
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
    while let Some(item) = body.next().await {
        let bytes = item?;
        let at = Instant::now();
        // Every line of the piece is decoded (a bad one fails the request) before the
        // first chunk's own error counts; lines after the final chunk are not taken in.
        let (mut done, mut failed) = (false, None);
        decoder.push_each::<WireChunk>(&bytes, |chunk| {
            if !done && failed.is_none() {
                match ex.observe_facts(chunk.into(), at) {
                    Ok(d) => done = d,
                    Err(e) => failed = Some(e),
                }
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if done {
            return Ok(());
        }
    }
    if let Some(chunk) = decoder.finish::<WireChunk>()?
        && ex.observe_facts(chunk.into(), Instant::now())?
    {
        return Ok(());
    }
    Err(ClientError::BrokenStream(format!(
        "body ended after {} chunks without done:true",
        ex.chunks
    )))
}

/// The whole of a body whose pieces arrive one by one, at most [`MAX_BODY_BYTES`].
async fn collect(
    body: &mut (impl Stream<Item = Result<Bytes, ClientError>> + Unpin),
) -> Result<Vec<u8>, ClientError> {
    let mut whole = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece?;
        if whole.len() + piece.len() > MAX_BODY_BYTES {
            return Err(body_too_long());
        }
        whole.extend_from_slice(&piece);
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_chunk_reads_what_stream_chunk_reads_and_refuses_what_it_refuses() {
        let lines = [
            r#"{"model":"m","created_at":"t","response":"a","done":false}"#,
            r#"{"model":"m","response":"","thinking":"hm","done":false}"#,
            r#"{"model":"m","response":"","done":false}"#,
            r#"{"response":null,"message":{"role":"assistant","content":"x"},"done":false}"#,
            r#"{"response":"","message":{"role":"assistant","content":"x"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","thinking":"t"},"done":false}"#,
            r#"{"thinking":"","message":{"role":"assistant","content":"","thinking":"t"}}"#,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{}}]},"done":false}"#,
            r#"{"response":"","done":true,"done_reason":"stop","total_duration":5,"load_duration":4,"prompt_eval_count":3,"prompt_eval_duration":2,"eval_count":1,"eval_duration":1}"#,
            r#"{"done":true,"load_duration":null}"#,
            r#"{"error":"boom"}"#,
            r#"{"response":"caf\u00e9 \"q\"","done":false}"#,
            // Refused by both.
            r#"{"response":1,"done":false}"#,
            r#"{"message":{"role":null,"content":"x"}}"#,
            r#"{"message":{"content":null}}"#,
            r#"{"done":null}"#,
            r#"{"done":true,"eval_count":-1}"#,
            r#"{"done":true,"eval_count":1.5}"#,
            r#"{"message":{"content":"","images":[1]}}"#,
        ];
        for line in lines {
            let full: Result<api::StreamChunk, _> = serde_json::from_str(line);
            let wire: Result<WireChunk, _> = serde_json::from_str(line);
            assert_eq!(full.is_ok(), wire.is_ok(), "{line}");
            if let (Ok(full), Ok(wire)) = (full, wire) {
                let (a, b) = (Facts::from(full), Facts::from(wire));
                assert_eq!(
                    (a.error, a.thinking, a.answer, a.done, a.done_reason),
                    (b.error, b.thinking, b.answer, b.done, b.done_reason),
                    "{line}"
                );
                assert_eq!(a.metrics, b.metrics, "{line}");
            }
        }
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
}
