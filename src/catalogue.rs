//! The simulated model catalogue: realistic models and quantizations with file size,
//! layer geometry (for the KV cache), load and prefill/decode speeds, each calibrated
//! from cited public figures (`OLLAMA.md`, "Footprint and load-time model").
//! Built-in defaults, extendable from a scenario's `[[sim.models]]`. Knows nothing of
//! HTTP or the scheduler's state.

use serde::{Deserialize, Serialize};

/// What a model can do (Ollama's `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Text generation.
    Completion,
    /// `/api/embed`.
    Embedding,
    /// Accepts images.
    Vision,
    /// Streams reasoning first (M10).
    Thinking,
    /// Tool calls.
    Tools,
}

/// One installed model of the simulated host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Full tag, e.g. `qwen2.5:7b-instruct-q4_K_M`.
    pub name: String,
    /// Other names resolving to it (`qwen2.5:7b`, `qwen2.5:latest`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Architecture family (`qwen2`, `llama`, `nomic-bert`, …).
    pub family: String,
    /// e.g. `7.6B`.
    pub parameter_size: String,
    /// `Q4_0`, `Q4_K_M`, `Q8_0`, `F16`.
    pub quantization: String,
    /// GGUF file size in bytes (weights).
    pub file_bytes: u64,
    /// Transformer layers (`<arch>.block_count`).
    pub block_count: u32,
    /// KV heads (`<arch>.attention.head_count_kv`).
    pub kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
    /// Training context (`<arch>.context_length`).
    pub context_length: u32,
    /// Prompt evaluation speed on the simulated GPU, tokens/s.
    pub prefill_tps: f64,
    /// Decode speed on the simulated GPU, tokens/s.
    pub decode_tps: f64,
    /// What it can do.
    pub capabilities: Vec<Capability>,
    /// Vector length of an embedding model.
    #[serde(default)]
    pub embedding_length: Option<u32>,
    /// Where the figures come from.
    #[serde(default)]
    pub source: String,
}

/// The set of installed models of the simulated host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalogue {
    /// Models in a stable order.
    pub models: Vec<ModelSpec>,
}
