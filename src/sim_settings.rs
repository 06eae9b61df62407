//! Settings of the simulated Ollama host: the `[sim]` section of a scenario and the
//! flags of `kabench sim`. Every field is optional with Ollama's default; values are
//! written as users write them (`"24GiB"`, `"5m"`). Turns into a `sched::SchedConfig`,
//! a `catalogue::Catalogue` and the HTTP `FaultSettings`. Knows nothing of HTTP.

use serde::{Deserialize, Serialize};

use crate::catalogue::ModelSpec;

/// The simulated host (`[sim]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// VRAM per GPU, e.g. `"24GiB"` (default 24 GiB).
    pub vram: Option<String>,
    /// GPUs (default 1).
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
}
