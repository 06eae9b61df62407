//! The scenario file: its TOML format, defaults and validation (every error names the
//! file, line, column and dotted key, and says what is allowed), and the expansion of
//! its `[sweep]` into a `Plan` of cells. Knows nothing of HTTP or of result files; the
//! arrival processes themselves live in `workload`.

pub mod engine_settings;
mod managed;
mod plan;
mod raw;
mod sections;
mod servers;
mod spans;
mod tokens;
pub mod trace;
mod validate;

#[cfg(test)]
mod llama_kinds_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod validation_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scenario::engine_settings::SimSettings;
use crate::units::{KeepAlive, Rate};

pub use crate::folder::{KNOB_LABEL, sleep_idle_seconds};
pub use plan::{Cell, CellServer, CellStream, ManagedCell, Plan, plan};
pub use servers::{
    DEFAULT_HEALTH_TIMEOUT, MODEL_PLACEHOLDERS, PLACEHOLDERS, ROUTER_PLACEHOLDERS,
    SWAP_PLACEHOLDERS,
};

/// A scenario that could not be read or is not valid. Nothing is sent when this occurs.
///
/// Displays as `scenarios/x.toml:12:9: key `stream[0].arrival.rate`: bad rate "fast": …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ScenarioError {
    /// The scenario file.
    pub path: PathBuf,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// Dotted key, e.g. `stream[0].arrival.rate`, when the error belongs to one.
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parsed and validated scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// `name` (default: the file name without extension).
    pub name: String,
    /// `seed`: every random choice derives from it (default 0).
    pub seed: u64,
    /// `[target]`; `None` lets the command line (or its default) decide. With
    /// `[[server]]`, the Ollama server among them (else the first).
    pub target: Option<TargetSpec>,
    /// The servers swept on the same arrivals: each `[[server]]`, or the one
    /// `[target] kind = "llama-server"`; empty for an Ollama or simulator target alone.
    pub servers: Vec<ServerSpec>,
    /// `[sim]`: the simulated host, ignored for live targets.
    pub sim: SimSettings,
    /// `[[stream]]`: run together in every cell.
    pub streams: Vec<StreamSpec>,
    /// `[run]`.
    pub run: RunSettings,
    /// `[sweep]`.
    pub sweep: Sweep,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[cost]`.
    pub cost: CostSettings,
    /// `[slo]`.
    pub slo: SloSettings,
    /// `[swarm]`.
    pub swarm: SwarmSettings,
    /// The file's text, as read (copied into the run folder and hashed).
    pub source: String,
    /// Where it was read from.
    pub path: PathBuf,
}

/// `[target]`: where requests go.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// `kind = "sim"`: the embedded simulator.
    Sim,
    /// `kind = "ollama"`: a live Ollama at `url` (default `$OLLAMA_HOST`).
    Ollama {
        /// Base URL or `host:port` as written.
        url: Option<String>,
    },
    /// `kind = "ollama"` with `urls = [...]`: a fleet of Ollama hosts; the requests of
    /// each cell go round-robin over them, in the order written.
    Fleet {
        /// Base URLs or `host:port`, as written.
        urls: Vec<String>,
    },
    /// `kind = "llama-server"`, `"llama-router"` or `"llama-swap"`: a llama.cpp server
    /// kabench starts for each swept value from `command` (which one: `ManagedSpec::kind`).
    LlamaServer(ManagedSpec),
}

/// A server kabench starts itself per swept value.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSpec {
    /// `command`: the program and its arguments, `{model_path}`,
    /// `{sleep_idle_seconds}` and `{port}` filled per cell, each inside its own argument.
    pub command: Vec<String>,
    /// `model_path`, resolved relative to the scenario file (fills `{model_path}`).
    pub model_path: Option<PathBuf>,
    /// `health_timeout`: how long to wait for `GET /health` after the start (default 60 s).
    pub health_timeout: Duration,
    /// Which llama.cpp server it is: `llama-server` (one model), its router mode or
    /// llama-swap.
    pub kind: crate::llama::ServerKind,
    /// `models_dir` (router and llama-swap), resolved relative to the scenario file:
    /// the folder of `<model>.gguf` files (fills the router's `{models_dir}`; llama-swap
    /// serves each stream's model from `<models_dir>/<model>.gguf`).
    pub models_dir: Option<PathBuf>,
    /// `model_command` (llama-swap only): the command llama-swap runs per model, with
    /// `{model_path}`, `{model_id}` and `{port}` (llama-swap's `${PORT}`).
    pub model_command: Vec<String>,
}

/// One server of a scenario, with the idle-unload values swept on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// `name` (default: its kind); unique; the `server` label of its cells.
    pub name: String,
    /// What it is and how it is reached or started.
    pub spec: TargetSpec,
    /// Its own `idle_unload` values, else `[sweep] idle_unload` (empty: not swept).
    pub idle_unload: Vec<KeepAlive>,
}

impl ServerSpec {
    /// The `run.json` kind of its cells.
    pub fn kind(&self) -> crate::folder::TargetKind {
        match self.spec {
            TargetSpec::Sim => crate::folder::TargetKind::Sim,
            TargetSpec::LlamaServer(ref m) => match m.kind {
                crate::llama::ServerKind::LlamaServer => crate::folder::TargetKind::LlamaServer,
                crate::llama::ServerKind::LlamaRouter => crate::folder::TargetKind::LlamaRouter,
                crate::llama::ServerKind::LlamaSwap => crate::folder::TargetKind::LlamaSwap,
            },
            TargetSpec::Ollama { .. } | TargetSpec::Fleet { .. } => {
                crate::folder::TargetKind::Ollama
            }
        }
    }
}

/// One `[[stream]]`: a kind of request sent at its own arrival process.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// `name` (default `stream<N>`, 1-based); unique within the scenario.
    pub name: String,
    /// `model`, which may contain `{quant}` (filled from the sweep).
    pub model: String,
    /// `api` (default `generate`).
    pub api: Api,
    /// `num_ctx`, always sent (default 4096).
    pub num_ctx: u32,
    /// `prompt_tokens` or `prompt`.
    pub prompt: Prompt,
    /// `max_tokens`, sent as `options.num_predict` (default 32).
    pub max_tokens: u32,
    /// `keep_alive` as written; `None` sends none (the server's default applies).
    pub keep_alive: Option<KeepAlive>,
    /// `arrival`.
    pub arrival: Arrival,
    /// `images`: images per request for vision models (default 0).
    pub images: u32,
    /// `think`: sent as the request's `think` when set.
    pub think: Option<bool>,
}

/// Which endpoint a stream calls: the run folder's type, so `run.json` records it as
/// the scenario wrote it.
pub use crate::folder::Api;

/// What a request asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// `prompt_tokens = N`: a synthetic prompt of about N tokens.
    Tokens(u32),
    /// `prompt = "…"`: this exact text.
    Text(String),
}

/// When a stream's requests are sent (see `workload::send_offsets`).
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// `kind = "constant"`: evenly spaced at `1/rate`.
    Constant {
        /// Requests per second.
        rate: Rate,
    },
    /// `kind = "poisson"`: exponential gaps of mean `1/rate`.
    Poisson {
        /// Requests per second.
        rate: Rate,
    },
    /// `kind = "gamma"`: gamma gaps of mean `1/rate` and coefficient of variation `cv`
    /// (1 is Poisson; above 1 is bursty).
    Gamma {
        /// Requests per second.
        rate: Rate,
        /// Coefficient of variation of the gaps (> 0).
        cv: f64,
    },
    /// `kind = "onoff"`: Poisson at `rate` for `on`, then silence for `off`, repeated.
    OnOff {
        /// Requests per second while on.
        rate: Rate,
        /// Length of a burst.
        on: Duration,
        /// Length of the silence after it.
        off: Duration,
    },
    /// `kind = "trace"`: send times replayed from a CSV file.
    Trace {
        /// The CSV file, resolved relative to the scenario file.
        file: PathBuf,
        /// Column holding the times (seconds or timestamps); default: the first column
        /// whose header contains `time`, else the first column.
        column: Option<String>,
        /// Multiplies every gap (2.0 = half the rate; default 1.0).
        time_scale: f64,
        /// Data rows skipped before the replay starts (default 0).
        skip: usize,
        /// The trace time (seconds as written, timestamps as seconds since the Unix
        /// epoch) that is offset 0 of a cell: `epoch` as written, else the earliest kept
        /// row across every trace stream of the scenario, so streams replayed together
        /// keep their interleaving. `None`: this stream's own first row.
        epoch: Option<f64>,
    },
}

impl Arrival {
    /// The kind as written in scenarios.
    pub fn kind(&self) -> &'static str {
        match self {
            Arrival::Constant { .. } => "constant",
            Arrival::Poisson { .. } => "poisson",
            Arrival::Gamma { .. } => "gamma",
            Arrival::OnOff { .. } => "onoff",
            Arrival::Trace { .. } => "trace",
        }
    }

    /// The rate, for the kinds that have one.
    pub fn rate(&self) -> Option<&Rate> {
        match self {
            Arrival::Constant { rate }
            | Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. }
            | Arrival::OnOff { rate, .. } => Some(rate),
            Arrival::Trace { .. } => None,
        }
    }

    /// The same process at another rate (the sweep's `rate` axis); a trace is unchanged.
    pub fn with_rate(&self, new: Rate) -> Arrival {
        let mut out = self.clone();
        match &mut out {
            Arrival::Constant { rate }
            | Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. }
            | Arrival::OnOff { rate, .. } => *rate = new,
            Arrival::Trace { .. } => {}
        }
        out
    }
}

/// `[run]`: how each cell is driven.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// `requests` per stream and cell (exactly one of this and `duration`).
    pub requests: Option<u32>,
    /// `duration` of sending per cell.
    pub duration: Option<Duration>,
    /// `concurrency`: cap on requests in flight (default 64).
    pub concurrency: usize,
    /// `timeout` per request (default 120 s).
    pub timeout: Duration,
    /// `warmup` requests per stream, excluded from statistics (default 0).
    pub warmup: u32,
    /// `cold_threshold` on `load_duration` (default 100 ms, OLLAMA.md M6).
    pub cold_threshold: Duration,
    /// `unload_timeout`: wait for the target to report everything unloaded (default 30 s).
    pub unload_timeout: Duration,
    /// `grace`: on Ctrl-C, wait this long for in-flight requests (default 5 s).
    pub grace: Duration,
    /// `pause`: idle gap between cells (default 0).
    pub pause: Duration,
    /// `shard_by`: how a sharded run splits the global schedule (default `request`).
    pub shard_by: ShardBy,
    /// `repeat`: how many times each cell runs (default 1, at most [`MAX_REPEAT`]);
    /// `kabench run --repeat N` overrides it.
    pub repeat: u32,
}

/// The most repetitions `[run] repeat` and `--repeat` accept.
pub const MAX_REPEAT: u32 = 100;

/// `[run] shard_by`: which requests of the one global schedule each shard sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardBy {
    /// `request`: round-robin over the requests of each cell, in intended-time order.
    #[default]
    Request,
    /// `stream`: whole streams, stream `s` to shard `s mod N`.
    Stream,
    /// `target`: whole target hosts, host `t` (its requests) to shard `t mod N`.
    Target,
}

impl ShardBy {
    /// The value as written in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardBy::Request => "request",
            ShardBy::Stream => "stream",
            ShardBy::Target => "target",
        }
    }
}

/// `[sweep]`: the axes; an empty axis is not swept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sweep {
    /// `keep_alive` values, each kept as written.
    pub keep_alive: Vec<KeepAlive>,
    /// `rate` values; each replaces every stream's arrival rate.
    pub rate: Vec<Rate>,
    /// `quant` values, filling `{quant}` in model tags.
    pub quant: Vec<String>,
    /// `model` values, replacing every stream's model.
    pub model: Vec<String>,
    /// `idle_unload` values: how long an idle model stays, mapped to each server's
    /// knob (Ollama's keep_alive, llama-server's `--sleep-idle-seconds`); `"off"` and
    /// negative values never unload. Swept per server (see [`ServerSpec`]).
    pub idle_unload: Vec<KeepAlive>,
}

/// Telemetry sources that `[telemetry] sources` accepts (`record` keeps the list).
pub use crate::folder::TELEMETRY_SOURCES;

/// `[telemetry]`: memory sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `sources` (default `["nvml", "ollama_ps", "rss"]`), each one of `TELEMETRY_SOURCES`.
    pub sources: Vec<String>,
    /// `interval` between samples (default 100 ms).
    pub interval: Duration,
    /// `ps_interval` between `/api/ps` polls (default: `interval`, but no faster than
    /// 100 ms, since `/api/ps` changes only on loads and unloads).
    pub ps_interval: Option<Duration>,
    /// `ps_adaptive` (default true): poll `/api/ps` at `ps_interval` only around the
    /// loads and unloads the run's own sends and the listed `expires_at` make expected,
    /// every 500 ms otherwise (far fewer polls; a load another client causes is seen up
    /// to 500 ms late). `false`: at `ps_interval` throughout. A sharded run always polls
    /// at fixed intervals (a shard cannot expect the other shards' loads).
    pub ps_adaptive: bool,
    /// `process_names` of the Ollama processes (default `ollama`, `ollama_llama_server`,
    /// `llama-server`).
    pub process_names: Vec<String>,
    /// `prometheus_url`: a Prometheus server or a DCGM exporter's `/metrics`.
    pub prometheus_url: Option<String>,
    /// `prometheus_query` (default `DCGM_FI_DEV_FB_USED` when a URL is set).
    pub prometheus_query: Option<String>,
    /// `release_tolerance` for judging whether keep_alive was honoured
    /// (default one interval + 250 ms).
    pub release_tolerance: Duration,
}

pub use crate::folder::{CostSettings, DEFAULT_RAM_GB_HOUR, DEFAULT_VRAM_GB_HOUR, SloSettings};

/// `[swarm]`: closed-loop users (`kabench swarm`).
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmSettings {
    /// `users` (default 10).
    pub users: u32,
    /// `hatch_rate`: users started per second (default: all at once, = `users`).
    pub hatch_rate: f64,
    /// `think_time = { min = "…", max = "…" }`: a user's pause between requests,
    /// uniform between the two (default 1 s to 5 s).
    pub think_time: ThinkTime,
    /// `run_time` per cell (default 30 s).
    pub run_time: Duration,
}

/// A uniform range of think times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThinkTime {
    /// Shortest pause.
    pub min: Duration,
    /// Longest pause (≥ `min`).
    pub max: Duration,
}

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates scenario `text`; `path` names it in errors and anchors
/// relative paths (trace files).
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let locator = spans::Locator::new(text, path);
    let raw: raw::RawScenario = toml::from_str(text).map_err(|e| locator.toml_error(&e))?;
    validate::validate(raw, &locator, text, path)
}
