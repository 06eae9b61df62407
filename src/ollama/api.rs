//! Ollama's JSON wire types (requests, NDJSON chunks, `/api/ps`, `/api/tags`, `/api/show`,
//! `/api/pull`, `/api/embed`), shared by `ollama::client` and `sim`. Every field a
//! client may miss is optional (M3); `keep_alive` stays a raw JSON value so the
//! simulator can reject bad forms exactly as Ollama does (KA4). Knows nothing of who
//! sends or serves them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Body of `POST /api/generate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Model name with tag, e.g. `qwen2.5:7b-instruct-q4_K_M`.
    #[serde(default)]
    pub model: String,
    /// Prompt; empty or absent means load (or unload with `keep_alive` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Images (base64) for vision models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// `false` for one JSON object instead of NDJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Raw `keep_alive`: a number of seconds or a Go duration string (see `units::KeepAlive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Model options (`num_ctx`, `num_predict`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Ask a reasoning model to think (M10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
}

/// One chat message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    #[serde(default)]
    pub role: String,
    /// Text content.
    #[serde(default)]
    pub content: String,
    /// Reasoning text of thinking models (M10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Images (base64) for vision models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Tool calls, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
}

/// Body of `POST /api/chat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name with tag.
    #[serde(default)]
    pub model: String,
    /// Conversation; empty or absent means load (or unload with `keep_alive` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// `false` for one JSON object instead of NDJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Raw `keep_alive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Model options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Ask a reasoning model to think.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
}

/// The timing metrics of a final chunk, in nanoseconds and tokens (M3: each omitted when zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Receipt to final line, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// Receipt to model handed over (queue, evictions, load), ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    /// Prompt tokens evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
    /// Prompt evaluation time, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    /// Tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u64>,
    /// Generation time, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// One NDJSON line of `/api/generate` (or the whole non-streamed reply).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerateChunk {
    /// Model name as requested.
    pub model: String,
    /// UTC time, RFC 3339.
    pub created_at: String,
    /// Answer text of this chunk (may be empty).
    pub response: String,
    /// Reasoning text (M10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// True on the final chunk.
    pub done: bool,
    /// `stop`, `length`, `load` or `unload` on the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// Token context of the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<i64>>,
    /// Timings on the final chunk.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One NDJSON line of `/api/chat` (or the whole non-streamed reply).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Model name as requested.
    pub model: String,
    /// UTC time, RFC 3339.
    pub created_at: String,
    /// The assistant message delta.
    pub message: Message,
    /// `stop`, `length`, `load` or `unload` on the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// True on the final chunk.
    pub done: bool,
    /// Timings on the final chunk.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// A chunk of either API as a client reads it: every field optional, plus `error` (M9).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamChunk {
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Generate: answer text.
    #[serde(default)]
    pub response: Option<String>,
    /// Generate: reasoning text.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Chat: message delta.
    #[serde(default)]
    pub message: Option<Message>,
    /// True on the final chunk.
    #[serde(default)]
    pub done: bool,
    /// Why it ended.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// An error line inside a 200 stream: the request failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Timings on the final chunk.
    #[serde(flatten)]
    pub metrics: Metrics,
}

impl StreamChunk {
    /// Non-empty reasoning text of this chunk, from either API.
    pub fn thinking_text(&self) -> Option<&str> {
        self.thinking
            .as_deref()
            .or_else(|| self.message.as_ref().and_then(|m| m.thinking.as_deref()))
            .filter(|t| !t.is_empty())
    }

    /// Non-empty answer text of this chunk, from either API.
    pub fn answer_text(&self) -> Option<&str> {
        self.response
            .as_deref()
            .or_else(|| self.message.as_ref().map(|m| m.content.as_str()))
            .filter(|t| !t.is_empty())
    }
}

/// `GET /api/ps` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PsResponse {
    /// Resident models, latest `expires_at` first.
    #[serde(default)]
    pub models: Vec<PsModel>,
}

/// One resident model in `/api/ps` (P1–P4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PsModel {
    /// Name with tag.
    pub name: String,
    /// Same as `name`.
    pub model: String,
    /// Resident footprint in bytes (weights + KV + buffers).
    pub size: u64,
    /// Content digest.
    pub digest: String,
    /// Family, parameter size, quantization.
    pub details: ModelDetails,
    /// Unload deadline, server local time, RFC 3339.
    pub expires_at: String,
    /// GPU part of `size`.
    pub size_vram: u64,
    /// Per-slot `num_ctx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}

/// `details` of `/api/ps`, `/api/tags` and `/api/show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDetails {
    /// Base model, usually empty.
    #[serde(default)]
    pub parent_model: String,
    /// `gguf`.
    #[serde(default)]
    pub format: String,
    /// Architecture family, e.g. `llama`.
    #[serde(default)]
    pub family: String,
    /// Families (may be `null`).
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// e.g. `8.0B`.
    #[serde(default)]
    pub parameter_size: String,
    /// e.g. `Q4_K_M`, `Q8_0`, `F16`.
    #[serde(default)]
    pub quantization_level: String,
}

/// `GET /api/tags` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TagsResponse {
    /// Installed models.
    #[serde(default)]
    pub models: Vec<TagModel>,
}

/// One installed model in `/api/tags`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TagModel {
    /// Name with tag.
    pub name: String,
    /// Same as `name`.
    pub model: String,
    /// When it was pulled, RFC 3339.
    pub modified_at: String,
    /// On-disk size in bytes.
    pub size: u64,
    /// Content digest.
    pub digest: String,
    /// Family, parameter size, quantization.
    pub details: ModelDetails,
}

/// Body of `POST /api/show` (`model`, or the older `name`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowRequest {
    /// Model name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Older spelling of `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Include tensors and full metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose: Option<bool>,
}

/// `POST /api/show` reply (the fields kabench and common clients read).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowResponse {
    /// Licence text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Modelfile text.
    #[serde(default)]
    pub modelfile: String,
    /// Parameters text.
    #[serde(default)]
    pub parameters: String,
    /// Prompt template.
    #[serde(default)]
    pub template: String,
    /// Family, parameter size, quantization.
    #[serde(default)]
    pub details: ModelDetails,
    /// GGUF metadata (`<arch>.context_length`, `.block_count`, …).
    #[serde(default)]
    pub model_info: Map<String, Value>,
    /// `completion`, `embedding`, `vision`, `thinking`, `tools`, …
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// When it was pulled.
    #[serde(default)]
    pub modified_at: String,
}

/// `GET /api/version` reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// e.g. `0.32.15`.
    pub version: String,
}

/// Body of `POST /api/pull`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PullRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// `false` for one reply at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Allow insecure registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// One progress line of `/api/pull` (H6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullProgress {
    /// `pulling manifest`, `pulling <12 hex>`, `verifying sha256 digest`, `writing manifest`, `success`.
    #[serde(default)]
    pub status: String,
    /// Blob digest while pulling one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Blob size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    /// An error line (unknown model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST /api/embed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// A string or an array of strings; empty only loads (M8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Raw `keep_alive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Truncate inputs to the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Model options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
}

/// `POST /api/embed` reply (M8).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// Model name.
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Receipt to reply, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// Queue + load, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    /// Input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
}

/// Ollama's error body `{"error": "..."}` (H1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// A synthetic prompt of about `tokens` tokens (one short word per token), deterministic.
pub fn synthetic_prompt(tokens: u32) -> String {
    const WORDS: [&str; 16] = [
        "tag", "this", "page", "about", "rust", "memory", "model", "cache", "gpu", "load", "keep",
        "alive", "idle", "cold", "warm", "note",
    ];
    let mut out = String::with_capacity(tokens as usize * 6);
    for i in 0..tokens as usize {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[i % WORDS.len()]);
    }
    out
}

/// Estimates the token count of a text the way the simulator counts prompts: words,
/// plus one token per 4 characters of words longer than 8 characters. Matches
/// `synthetic_prompt` exactly.
pub fn estimate_tokens(text: &str) -> u32 {
    text.split_whitespace()
        .map(|w| 1 + (w.chars().count().saturating_sub(8) as u32).div_ceil(4))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_prompt_has_the_asked_token_count() {
        for n in [0, 1, 17, 300, 4096] {
            assert_eq!(estimate_tokens(&synthetic_prompt(n)), n);
        }
    }

    #[test]
    fn m3_zero_metrics_are_omitted() {
        let chunk = GenerateChunk {
            model: "m".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            response: String::new(),
            done: true,
            done_reason: Some("load".into()),
            ..Default::default()
        };
        let text = serde_json::to_string(&chunk).unwrap();
        assert!(!text.contains("duration"), "{text}");
        assert!(text.contains("\"response\":\"\""));
    }
}
