//! Reading a response of Ollama as it arrives: the incremental NDJSON decoder, the
//! `Exchange` that times one request on the client's clock (first byte, first token,
//! first answer, end), and `read_response`, shared by the client and by senders that
//! bring their own HTTP stack (the closed-loop swarm). Knows nothing of scenarios.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ollama::api;
use crate::ollama::error::{ClientError, from_reqwest, location, preview, status_error};
use crate::units::limits::MAX_LINE_BYTES;

/// Incremental NDJSON decoder: feed it body chunks as they arrive (a line may be split
/// across chunks), take complete objects out; `finish` reads a last line without `\n`.
/// A line longer than its limit ([`MAX_LINE_BYTES`] unless set) fails with
/// [`ClientError::BadJson`] naming the limit, as soon as that many bytes came without
/// a newline: a server streaming without end cannot make it buffer without end.
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for `\n` (all of the partial line): each byte
    /// is searched once, so a long line arriving in small pieces stays linear.
    scanned: usize,
    /// The longest line accepted, bytes.
    limit: usize,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_LINE_BYTES)
    }
}

/// The error of a line over `limit` bytes.
fn line_too_long(limit: usize) -> ClientError {
    ClientError::BadJson(format!(
        "stream line longer than {limit} bytes (the line limit) without a newline; the server's reply is not NDJSON kabench can read"
    ))
}

impl NdjsonDecoder {
    /// An empty decoder, lines bounded at [`MAX_LINE_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty decoder, lines bounded at `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        NdjsonDecoder {
            buf: Vec::new(),
            scanned: 0,
            limit,
        }
    }

    /// Appends `bytes` and returns every complete line decoded as `T` (blank lines skipped).
    pub fn push<T: DeserializeOwned>(&mut self, bytes: &[u8]) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        self.push_each(bytes, |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// Appends `bytes` and hands every complete line, decoded as `T`, to `each` in order
    /// (blank lines skipped), without collecting them. When nothing is pending from an
    /// earlier piece (the usual case: a server writes whole lines), lines are decoded
    /// in place and only a partial last line is kept.
    pub fn push_each<T: DeserializeOwned>(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(T) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        if self.buf.is_empty() {
            let mut start = 0;
            while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
                let line = &bytes[start..start + pos];
                start += pos + 1;
                if line.len() > self.limit {
                    return Err(line_too_long(self.limit));
                }
                if let Some(v) = decode_line(line)? {
                    each(v)?;
                }
            }
            if bytes.len() - start > self.limit {
                return Err(line_too_long(self.limit));
            }
            self.buf.extend_from_slice(&bytes[start..]);
            self.scanned = self.buf.len();
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            let line = &self.buf[start..end];
            start = end + 1;
            from = start;
            if line.len() > self.limit {
                return Err(self.fail());
            }
            if let Some(v) = decode_line(line)? {
                each(v)?;
            }
        }
        if self.buf.len() - start > self.limit {
            return Err(self.fail());
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        Ok(())
    }

    /// Drops what is buffered (the line over the limit) and gives the error.
    fn fail(&mut self) -> ClientError {
        self.buf = Vec::new();
        self.scanned = 0;
        line_too_long(self.limit)
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

/// The longest whole body read at once (an error body, an `/api/embed` reply): 64 MiB,
/// room for thousands of embeddings, bounded against a server that never stops.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The whole of a body whose pieces arrive one by one, at most [`MAX_BODY_BYTES`].
async fn collect(
    body: &mut (impl Stream<Item = Result<Bytes, ClientError>> + Unpin),
) -> Result<Vec<u8>, ClientError> {
    let mut whole = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece?;
        if whole.len() + piece.len() > MAX_BODY_BYTES {
            return Err(ClientError::BadJson(format!(
                "reply body longer than {MAX_BODY_BYTES} bytes (the body limit)"
            )));
        }
        whole.extend_from_slice(&piece);
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::ErrorKind;
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
    fn decoder_refuses_a_line_over_its_limit_whole_or_in_pieces() {
        // In one piece, without a newline.
        let mut d = NdjsonDecoder::with_limit(16);
        let err = d.push::<api::StreamChunk>(&[b'x'; 17]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadJson);
        assert!(err.to_string().contains("longer than 16 bytes"), "{err}");
        // In small pieces: fails once the limit is passed, buffering no more than it.
        let mut d = NdjsonDecoder::with_limit(16);
        let mut failed = None;
        for n in 0..100 {
            if let Err(e) = d.push::<api::StreamChunk>(b"xxxx") {
                failed = Some(n);
                assert!(e.to_string().contains("line limit"), "{e}");
                break;
            }
        }
        assert_eq!(failed, Some(4));
        // A whole line over the limit, newline included, in one piece or after a partial one.
        let long = format!("{{\"response\":\"{}\"}}\n", "y".repeat(20));
        assert!(
            NdjsonDecoder::with_limit(16)
                .push::<api::StreamChunk>(long.as_bytes())
                .is_err()
        );
        let mut d = NdjsonDecoder::with_limit(16);
        d.push::<api::StreamChunk>(&long.as_bytes()[..4]).unwrap();
        assert!(d.push::<api::StreamChunk>(&long.as_bytes()[4..]).is_err());
        // Lines at the limit pass.
        let ok = b"{\"done\":true}\n";
        let got: Vec<api::StreamChunk> = NdjsonDecoder::with_limit(13).push(ok).unwrap();
        assert_eq!(got.len(), 1);
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
}
