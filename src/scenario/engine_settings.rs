//! The engine's settings as a scenario writes them: the simulated host (`[sim]`), its
//! fault injection (`[sim.faults]`) and extra catalogue entries (`[[sim.models]]`).
//! Plain typed data read from TOML; what they mean to the scheduler, the catalogue and
//! the HTTP layer lives in `engine` (`engine::sim_settings`, `engine::catalogue`),
//! which imports these types, never the other way round.

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
    /// Prompt evaluation speed on the simulated host, tokens/s.
    pub prefill_tps: f64,
    /// Decode speed on the simulated host, tokens/s.
    pub decode_tps: f64,
    /// What it can do.
    pub capabilities: Vec<Capability>,
    /// Vector length of an embedding model.
    #[serde(default)]
    pub embedding_length: Option<u32>,
    /// Where the figures come from.
    #[serde(default)]
    pub source: String,
    /// Measured load time in seconds with the file in the page cache (runner start,
    /// read, health check), in place of runtime start + file ÷ cached bandwidth; a first
    /// load from a cold disk adds the slower read. Absent: the bandwidth model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_s: Option<f64>,
    /// Measured resident bytes beyond the file and the KV cache (compute buffers,
    /// runtime), in place of E1's `num_batch` term and 300 MiB. Absent: E1's prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_bytes: Option<u64>,
    /// With `overhead_bytes`: more bytes per token of context (Ollama's CPU build: the
    /// attention mask, 512 × 2 = 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_per_token: Option<u64>,
}

/// The simulated host (`[sim]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// VRAM per GPU, e.g. `"24GiB"` (default 24 GiB); ignored with `gpus = 0`.
    pub vram: Option<String>,
    /// GPUs (default 1); 0 is a CPU-only host: every model is held in system memory
    /// (`/api/ps` `size_vram` 0), no VRAM fit test (only `max_loaded_models`, 0 → 3,
    /// limits co-residency), no wait for freed VRAM, default context 4096.
    pub gpus: Option<u32>,
    /// `OLLAMA_MAX_LOADED_MODELS` (0 → 3 per GPU).
    pub max_loaded_models: Option<u32>,
    /// `OLLAMA_NUM_PARALLEL` (1).
    pub num_parallel: Option<u32>,
    /// `OLLAMA_MAX_QUEUE` (512).
    pub max_queue: Option<usize>,
    /// `OLLAMA_KEEP_ALIVE` for requests that carry none (`"5m"`).
    pub keep_alive: Option<String>,
    /// `OLLAMA_CONTEXT_LENGTH` (0 → by VRAM, L7).
    pub context_length: Option<u32>,
    /// `OLLAMA_LOAD_TIMEOUT` (`"5m"`).
    pub load_timeout: Option<String>,
    /// VRAM kept free (`"1GiB"`).
    pub reserve: Option<String>,
    /// E1 fit share of free VRAM (0.8).
    pub fit_headroom: Option<f64>,
    /// Runner start before reading weights (`"500ms"`).
    pub runtime_start: Option<String>,
    /// Page-cache read bandwidth per second (`"10GB"`).
    pub cached_bandwidth: Option<String>,
    /// Cold-NVMe read bandwidth per second for a model's first load (`"2GB"`).
    pub cold_bandwidth: Option<String>,
    /// When true, every load reads at page-cache speed (models pre-warmed in the OS cache).
    pub page_cache_warm: Option<bool>,
    /// E8 wait for freed VRAM (`"1s"`, at most `"5s"`).
    pub vram_release_delay: Option<String>,
    /// ± share of seeded load-time jitter (0.1).
    pub load_jitter: Option<f64>,
    /// Seed (defaults to the scenario's seed).
    pub seed: Option<u64>,
    /// E7 bug switch (false).
    pub e7_revive_bug: Option<bool>,
    /// Warm `load_duration` range (M4), `["1ms", "10ms"]` by default; drawn uniformly.
    pub warm_overhead: Option<Vec<String>>,
    /// A kabench run folder measured on a real Ollama: the simulator takes its models'
    /// load times, speeds and resident sizes, and its host kind (CPU-only when every
    /// `/api/ps` `size_vram` was 0), from it (`kabench sim --calibrate DIR`). Relative
    /// to the scenario file.
    pub calibrate: Option<String>,
    /// Extra catalogue entries (or overrides by name).
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// Fault injection, all off by default.
    #[serde(default)]
    pub faults: FaultSettings,
}

/// Fault injection (`[sim.faults]`), seeded, all off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Share of requests answered 500 before the first byte.
    pub error_500: Option<f64>,
    /// Share of streams that end with an `{"error":…}` line mid-stream.
    pub midstream_error: Option<f64>,
    /// Share of requests whose connection is dropped mid-stream.
    pub drop_connection: Option<f64>,
    /// Share of streams slowed down by `slow_factor`.
    pub slow_stream: Option<f64>,
    /// Decode slowdown of a slow stream (default 5×).
    pub slow_factor: Option<f64>,
    /// Share of loads that stall for `stall` before completing.
    pub stalled_load: Option<f64>,
    /// How long a stalled load stalls (`"30s"`).
    pub stall: Option<String>,
    /// Share of loads that fail (500, nothing stays resident).
    pub failed_load: Option<f64>,
    /// Added to every answer before its first byte (`"300ms"`): a slower server, to
    /// check that `compare` sees a regression.
    pub delay: Option<String>,
    /// How long after a reply the scheduler learns that the request ended (`"2s"`), as
    /// on a busy host: the model's new expiry is set that much later.
    pub finish_lag: Option<String>,
}
