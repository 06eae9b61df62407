//! What a run folder written by `kabench predict` adds to the files every path writes,
//! typed: the input it replayed and the command (`run.json` `input`, `predict`), each
//! model's break-even figures beside the simulated host, and its policy table
//! (`summary.json` `cells[].policy`, `best_fixed`, `gaps`, `out_of_sample`). A
//! prediction has no request rows or memory samples; it has these instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CostSettings;

/// `run.json` `input`: the requests a prediction replayed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PredictInput {
    /// The file, as given.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The format it was read as.
    pub format: String,
    /// Requests read.
    pub rows: u64,
    /// The first request's time, as written.
    pub first: String,
    /// The last request's time, as written.
    pub last: String,
    /// Seconds from the first request to the last.
    pub span_s: f64,
    /// Whether the rows came in time order.
    pub sorted: bool,
    /// The columns found.
    pub columns: Vec<String>,
    /// The models asked for, in order of first use.
    pub models: Vec<String>,
    /// Which rows were replayed.
    pub slice: String,
    /// The multiplier applied to every gap.
    pub time_scale: f64,
}

/// `run.json` `predict`: how the prediction was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PredictRun {
    /// The command as run.
    pub command: String,
    /// The policies replayed, by name, in table order.
    pub policies: Vec<String>,
    /// The `[cost]` it priced with.
    pub cost: CostSettings,
    /// How long the replay took, seconds of wall time.
    pub wall_s: f64,
    /// The check of the predicted unloads against a server log's, when one was given.
    pub unload_check: Option<UnloadCheckMeta>,
}

/// Predicted unloads against a real server log's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnloadCheckMeta {
    /// The policy checked (its cell name).
    pub policy: String,
    /// Unloads the replay made (expired + evicted).
    pub predicted: usize,
    /// Of them, evictions.
    pub predicted_evicted: usize,
    /// Unloads in the log.
    pub logged: usize,
    /// Of them, evictions.
    pub logged_evicted: usize,
    /// Pairs matched (same model, same kind, within the tolerance).
    pub matched: usize,
    /// The tolerance, seconds.
    pub tolerance_s: f64,
}

/// How a policy is applied (`summary.json` `cells[].policy.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// One keep_alive value.
    Fixed,
    /// What each client sent.
    AsSent,
    /// The keep_alive optimum: for each gap, hold iff it is shorter than the break-even
    /// time T* (with the scheduler's contention where models compete); needs the future.
    KeepAliveOptimum,
    /// The pre-load bound: a clairvoyant client pre-warming just in time (older
    /// folders called it `offline_optimum`).
    #[serde(alias = "offline_optimum")]
    PreLoadBound,
    /// A rule that picks each request's keep_alive.
    PerRequestRule,
}

impl PolicyKind {
    /// The name `summary.json` writes.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Fixed => "fixed",
            PolicyKind::AsSent => "as_sent",
            PolicyKind::KeepAliveOptimum => "keep_alive_optimum",
            PolicyKind::PreLoadBound => "pre_load_bound",
            PolicyKind::PerRequestRule => "per_request_rule",
        }
    }
}

/// How to apply a policy: the setting for a fixed value, words otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PolicyApply {
    /// A fixed value: the server's variable or the request's field.
    Setting {
        /// `OLLAMA_KEEP_ALIVE=…`.
        server_env: String,
        /// `"keep_alive": …`.
        keep_alive_field: String,
    },
    /// What it means, in words.
    Words(String),
}

/// A policy's cost, split as the recommendation splits it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyCostMeta {
    /// Reloads (loads cold requests waited on, each once) × each model's penalty ×
    /// `wait_second`.
    pub cold: f64,
    /// Idle GPU GB·h × `vram_gb_hour`.
    pub vram: f64,
    /// Idle system-memory GB·h × `ram_gb_hour`.
    pub ram: f64,
    /// The sum.
    pub total: f64,
}

/// One row of a prediction's policy table (`summary.json` `cells[].policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyMeta {
    /// Its name (`5m`, `adaptive`, `offline-optimum`).
    pub name: String,
    /// How it is applied.
    pub kind: PolicyKind,
    /// What to set, or what it means.
    pub apply: PolicyApply,
    /// Its cost over the whole input.
    pub cost: PolicyCostMeta,
    /// Its cost over the fitting part (with `--train`).
    #[serde(default)]
    pub cost_train: Option<PolicyCostMeta>,
    /// Its cost over the rest.
    #[serde(default)]
    pub cost_test: Option<PolicyCostMeta>,
    /// Its cost ÷ the optimum's.
    #[serde(default)]
    pub times_optimum: Option<f64>,
    /// The span replayed, seconds.
    pub horizon_s: f64,
    /// Evictions.
    pub evictions: u64,
    /// keep_alive expirations.
    pub expirations: u64,
    /// Unloads the policy asked for.
    pub unloads: u64,
    /// Loads.
    pub loads: u64,
    /// Reloads: the loads cold requests waited on, each once however many requests
    /// shared it (the cost's cold part prices these).
    #[serde(default)]
    pub cold_loads: u64,
    /// Loads made ahead of a request.
    pub prewarm_loads: u64,
    /// Of them, those no request used.
    pub wasted_loads: u64,
}

/// One model's gap distribution with its break-even time (`summary.json` `gaps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GapDistribution {
    /// The model.
    pub model: String,
    /// Its break-even keep_alive T*, seconds (`null`: holding costs nothing).
    pub break_even_s: Option<f64>,
    /// `[lower, upper, count]` per log-spaced bin with any gap, seconds.
    pub bins: Vec<(f64, f64, u64)>,
}

/// The out-of-sample check (`summary.json` `out_of_sample`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutOfSample {
    /// The share of the time span fitted on.
    pub train_share: f64,
    /// Where the split is, seconds after the first request.
    pub split_s: f64,
    /// The best fixed value on the fitting part.
    pub recommended: Option<String>,
    /// The best fixed value on the rest, in hindsight (`null` when too little traffic
    /// came after the split).
    pub best_fixed_after_split: Option<String>,
    /// Requests that arrived after the split.
    #[serde(default)]
    pub test_requests: Option<u64>,
    /// Fewer than the minimum came after the split: no out-of-sample result.
    #[serde(default)]
    pub too_little_traffic: bool,
}

/// What `×optimum` is read against (`summary.json` `optimum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OptimumMeta {
    /// The optimum's cell name.
    pub policy: String,
    /// Each model's hold threshold.
    pub hold_s: Vec<OptimumHold>,
    /// Models whose figures are the best fixed value's (the optimum's replay left them
    /// worse off under the scheduler's contention).
    #[serde(default)]
    pub fallback_models: Vec<String>,
    /// The best fixed keep_alive's cost ÷ the optimum's.
    #[serde(default)]
    pub best_fixed_times_optimum: Option<f64>,
}

/// One model's hold threshold under the keep_alive optimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OptimumHold {
    /// The model.
    pub model: String,
    /// Its break-even keep_alive T*, seconds (`null`: holding costs nothing).
    pub break_even_s: Option<f64>,
    /// Gaps shorter than this are held, seconds (`null`: every gap).
    pub hold_s: Option<f64>,
}

/// The pre-load bound beside the optimum (`summary.json` `pre_load_bound`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PreLoadBoundMeta {
    /// Its cell name.
    pub policy: String,
    /// Its total cost.
    pub cost: f64,
    /// Its cost ÷ the keep_alive optimum's.
    pub times_optimum: Option<f64>,
}
