//! The command line: clap types (the help text is their doc comments) and the dispatch
//! to `commands`, one short function per subcommand wiring the stages in order. No clap
//! type leaves `cli`.

mod commands;
mod plan;
mod predict;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::units;

/// Measure what Ollama's keep_alive costs (idle VRAM) and buys (no cold starts), and
/// say what to set.
///
/// Exit codes: 0 ok (failed requests are recorded data); 1 the run failed; 2 bad input
/// (scenario, arguments, missing model, an --out folder that already holds a run); 130
/// interrupted by Ctrl-C or SIGTERM (the run folder is complete and reportable).
#[derive(Debug, Parser)]
#[command(name = "kabench", version, about, long_about, help_expected = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario (every cell of its sweep) and write a run folder with a report.
    Run(RunArgs),
    /// Check scenario files without sending anything.
    Validate(ValidateArgs),
    /// Rebuild summary.json, charts, index.html and summary.md from a run folder.
    Report(ReportArgs),
    /// Compare two run folders; exit 1 when a change passes a threshold.
    Compare(CompareArgs),
    /// Serve the embedded Ollama simulator (an Ollama-compatible API over a model of
    /// Ollama's scheduler).
    Sim(Box<SimArgs>),
    /// Run closed-loop users (goose) against the target, once per cell of the sweep.
    Swarm(SwarmArgs),
    /// List the simulator's model catalogue: sizes, load times and speeds, with sources.
    Models(ModelsArgs),
    /// Probe a live Ollama (or the simulator) for what it does with keep_alive and the
    /// load options: one row per check, honoured / ignored / rejected / n/a, with the
    /// evidence and the fix. Exit 1 when a check does not hold.
    Doctor(DoctorArgs),
    /// A transparent Ollama proxy for an app's real traffic: passes everything through
    /// unchanged, logs each request to DIR/proxy-requests.csv, warns about keep_alive
    /// pains, and serves GET /metrics (Prometheus). Ctrl-C closes the log.
    Proxy(ProxyArgs),
    /// Replay a request log through the scheduler model on a virtual clock under every
    /// keep_alive policy, priced against the keep_alive optimum.
    Predict(Box<PredictArgs>),
    /// Which models stay loaded together: what each takes resident (weights, KV cache,
    /// overhead), whether the set fits, what a round-robin of requests evicts, the
    /// smallest change that makes it fit, and the settings to paste. --check replays it
    /// on the target and compares. Exit 2 for an unknown model, an empty list or a VRAM
    /// that fits none of them; exit 1 when --check observes other evictions.
    Plan(Box<PlanArgs>),
    /// Print what runs a scenario as N shards on a cluster, with the merge: a
    /// Kubernetes Indexed Job (`k8s`) or a Slurm job array (`slurm`).
    Fleet(FleetArgs),
    /// Merge the shard folders of a sharded run (`kabench run --shard`) into one run
    /// folder and render its report: rows in intended-time order, histograms added.
    Merge(MergeArgs),
}

/// `kabench plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Models, comma-separated, in the order they are requested round-robin (catalogue
    /// names such as qwen2.5:7b, or as installed on --target URL).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// num_ctx values to plan, comma-separated (default: the host's default context,
    /// L7: 32768 on a 24 GiB GPU).
    #[arg(long, value_delimiter = ',')]
    pub num_ctx: Vec<u32>,
    /// Parallel slots per model (OLLAMA_NUM_PARALLEL), comma-separated (default 1).
    #[arg(long, value_delimiter = ',')]
    pub parallel: Vec<u32>,
    /// Quantizations, comma-separated (q4_0, q4_K_M, q8_0, fp16; default: as named).
    #[arg(long, value_delimiter = ',')]
    pub quant: Vec<String>,
    /// VRAM per GPU (default 24GiB).
    #[arg(long)]
    pub vram: Option<String>,
    /// GPUs (default 1; 0: a CPU-only host, only the model cap limits).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// OLLAMA_MAX_LOADED_MODELS (0 or absent: 3 per GPU).
    #[arg(long)]
    pub max_loaded_models: Option<u32>,
    /// Read the models, num_ctx values, quantizations and the host ([sim]) from a
    /// scenario; the flags above override it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Take the sizes from a live Ollama (/api/show, /api/tags, and /api/ps after a load
    /// at each num_ctx), or `sim` for the embedded simulator's catalogue.
    #[arg(long)]
    pub target: Option<String>,
    /// Replay each combination round-robin on the target (default: the simulator) and
    /// compare the evictions observed with the predicted ones; writes a run folder per
    /// combination that `kabench report` renders.
    #[arg(long)]
    pub check: bool,
    /// Time between two requests of the check, longer than a reload (default 3s on the
    /// simulator; live, twice the slowest load timed while measuring the sizes plus 1s,
    /// at least 4s).
    #[arg(long, value_parser = parse_duration)]
    pub gap: Option<Duration>,
    /// Folder for the check's run folders (default reports/plan-check-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the plan (and the checks) as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr during --check.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `kabench fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The engine.
    #[command(subcommand)]
    pub engine: FleetEngine,
}

/// The engines `kabench fleet` writes for.
#[derive(Debug, Subcommand)]
pub enum FleetEngine {
    /// A Kubernetes manifest (kubectl apply -f): a ConfigMap with the scenario, an
    /// Indexed Job of the shards on a shared volume, and a merge Job.
    K8s(K8sArgs),
    /// A bash script that submits a Slurm array of the shards and the merge as a job
    /// depending on them (afterok).
    Slurm(SlurmArgs),
}

/// What every engine needs.
#[derive(Debug, Args)]
pub struct FleetCommon {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Shards (pods or array tasks).
    #[arg(long)]
    pub shards: u32,
    /// Ollama address(es) for every shard (repeat for a fleet); default: the
    /// scenario's [target].
    #[arg(long)]
    pub target: Vec<String>,
    /// The start barrier is this long after now: time to submit and schedule.
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    pub start_delay: Duration,
    /// Name of the jobs and the run folder (default: scenario name and barrier time).
    #[arg(long)]
    pub name: Option<String>,
}

/// `kabench fleet k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    /// Scenario, shards, targets, barrier.
    #[command(flatten)]
    pub common: FleetCommon,
    /// The kabench container image (see the Dockerfile).
    #[arg(long)]
    pub image: String,
    /// A ReadWriteMany PersistentVolumeClaim for the run folders.
    #[arg(long, default_value = "kabench-runs")]
    pub claim: String,
    /// Namespace of the objects.
    #[arg(long)]
    pub namespace: Option<String>,
}

/// `kabench fleet slurm`.
#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// Scenario, shards, targets, barrier.
    #[command(flatten)]
    pub common: FleetCommon,
    /// Run folder on the shared file system (default: ./reports/<name>, made absolute).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// The kabench executable on the nodes.
    #[arg(long, default_value = "kabench")]
    pub kabench: String,
}

/// `kabench merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The merged run folder (it may hold the shard folders).
    pub out: PathBuf,
    /// The shard folders (shard-<i>-of-<N>), all of one run.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `kabench proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on; point the app's OLLAMA_HOST here.
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: SocketAddr,
    /// The Ollama to forward to. Default: $OLLAMA_HOST, else 127.0.0.1:11434.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Folder for the request log (proxy-requests.csv).
    #[arg(long)]
    pub out: PathBuf,
    /// Set this keep_alive on every native request that passes (e.g. 10m, -1), to try
    /// a policy on the real app.
    #[arg(long)]
    pub rewrite_keep_alive: Option<String>,
    /// No warnings on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `kabench doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The Ollama to probe (`host:port`, `http://…`), or `sim` for the embedded
    /// simulator. Default: $OLLAMA_HOST, else 127.0.0.1:11434.
    #[arg(long)]
    pub target: Option<String>,
    /// The model to probe (default: the smallest installed model that generates).
    #[arg(long)]
    pub model: Option<String>,
    /// An embedding model for the /api/embed and /v1/embeddings checks.
    #[arg(long)]
    pub embed_model: Option<String>,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the requests it would send, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kabench predict`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["requests", "ollama_log", "trace", "horizon"])))]
pub struct PredictArgs {
    /// Request log CSV: a `timestamp` column (RFC 3339, or epoch seconds or milliseconds)
    /// and any of model, prompt_tokens, output_tokens, num_ctx, client, keep_alive.
    #[arg(long, value_name = "FILE")]
    pub requests: Option<PathBuf>,
    /// Ollama's server log (`journalctl -u ollama --no-pager`, ~/.ollama/logs/server.log):
    /// its [GIN] access lines are the requests; with OLLAMA_DEBUG=1 its scheduler lines
    /// name each request's model and the server's unloads, checked against the prediction.
    #[arg(long, value_name = "FILE")]
    pub ollama_log: Option<PathBuf>,
    /// A public trace: ServeGen client windows (CSV with `client_id,window_start_s,rate_rps`,
    /// needs --client), Mooncake JSON Lines, or a per-request CSV such as Azure's.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Replay the streams of --scenario for this long (e.g. 7d) instead of a log:
    /// each sends by its arrival process with the seed `kabench run` gives it.
    #[arg(long, value_parser = parse_duration, requires = "scenario")]
    pub horizon: Option<Duration>,
    /// Replay only this part of the input's time, from its start: START..END in
    /// seconds or durations (0..86400, 1d..8d, ..6h, 7d..).
    #[arg(long)]
    pub slice: Option<String>,
    /// Replay only these clients (comma-separated): ServeGen client ids, or the
    /// `client` column of a request log.
    #[arg(long, value_delimiter = ',')]
    pub client: Vec<String>,
    /// The server log's UTC offset (`+02:00`, `-0500`, `UTC`); default: the offset of
    /// the log's own `time=` lines.
    #[arg(long, allow_hyphen_values = true)]
    pub tz: Option<String>,
    /// Stop at the first server-log line that starts as an access, load or unload line
    /// and cannot be read, naming its line number (default: skip and count it).
    #[arg(long)]
    pub strict: bool,
    /// keep_alive values to replay, comma-separated (e.g. 0,1m,5m,30m,-1); 5m and 10s
    /// are always replayed, and a log-spaced grid unless --no-grid.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub keep_alive: Vec<String>,
    /// Replay only the given values (plus 5m and 10s), not the grid from 0 to forever.
    #[arg(long)]
    pub no_grid: bool,
    /// The model of rows that name none; for a trace, one for all clients or one per
    /// --client, comma-separated.
    #[arg(long)]
    pub model: Option<String>,
    /// Multiplies every gap of the input (2 = half the rate).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Unit of numeric timestamps: auto (milliseconds from 1e11), s or ms.
    #[arg(long, default_value = "auto")]
    pub timestamp_unit: String,
    /// Take the host from this scenario's [sim] and the weights from its [cost] (flags override).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Stand on the host of this kabench run folder (measured load times, speeds, sizes).
    #[arg(long, value_name = "RUN_DIR")]
    pub calibrate: Option<PathBuf>,
    /// VRAM per GPU, e.g. 24GiB.
    #[arg(long)]
    pub vram: Option<String>,
    /// GPUs; 0 = a CPU-only host.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// OLLAMA_MAX_LOADED_MODELS (0 = 3 per GPU).
    #[arg(long)]
    pub max_loaded_models: Option<u32>,
    /// OLLAMA_NUM_PARALLEL.
    #[arg(long)]
    pub num_parallel: Option<u32>,
    /// OLLAMA_KEEP_ALIVE: what applies to requests that send none (as-sent policy).
    #[arg(long)]
    pub server_keep_alive: Option<String>,
    /// Seed of the scheduler's random choices (load jitter).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Prompt tokens of requests whose log says none.
    #[arg(long, default_value_t = 300)]
    pub prompt_tokens: u32,
    /// Output tokens of requests whose log says none.
    #[arg(long, default_value_t = 128)]
    pub output_tokens: u32,
    /// [cost] wait_second: the cost of one second a user waits.
    #[arg(long)]
    pub wait_second: Option<f64>,
    /// [cost] vram_gb_hour: the cost of holding 1 GB of GPU memory for an hour.
    #[arg(long)]
    pub vram_gb_hour: Option<f64>,
    /// [cost] ram_gb_hour: the same for system memory.
    #[arg(long)]
    pub ram_gb_hour: Option<f64>,
    /// The wait one cold start costs (default: each model's load time on the host).
    #[arg(long, value_parser = parse_duration)]
    pub cold_penalty: Option<Duration>,
    /// The cold rule's load_duration threshold.
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub cold_threshold: Duration,
    /// Share of the input's time span to choose the recommendation on; every policy is
    /// also scored on the rest (out of sample). 1 = the whole input only.
    #[arg(long, default_value_t = 0.5)]
    pub train: f64,
    /// Write a run folder here (summary.json, run.json, report).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `kabench swarm`.
#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// Scenario file (TOML); its [swarm] section sets users, hatch rate, think time and run time.
    pub scenario: PathBuf,
    /// `sim` for the embedded simulator, or an Ollama address. Default: the scenario's
    /// [target], else `sim`.
    #[arg(long)]
    pub target: Option<String>,
    /// Run folder (default: reports/<scenario>-swarm-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Users (overrides [swarm] users).
    #[arg(long)]
    pub users: Option<u32>,
    /// Run time per cell, e.g. 30s (overrides [swarm] run_time).
    #[arg(long, value_parser = parse_duration)]
    pub run_time: Option<Duration>,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `kabench models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Context per slot used for the resident size.
    #[arg(long, default_value_t = 4096)]
    pub num_ctx: u32,
    /// Also print where each figure comes from.
    #[arg(long)]
    pub sources: bool,
}

/// `kabench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML), e.g. scenarios/quickstart.toml.
    pub scenario: PathBuf,
    /// `sim` for the embedded simulator, or an Ollama address (`host:port`, `http://…`);
    /// repeat it for a fleet of Ollama hosts (requests go round-robin over them).
    /// Default: the scenario's [target], else `sim`.
    #[arg(long)]
    pub target: Vec<String>,
    /// Run folder (default: reports/<scenario>-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pull models the target lacks instead of stopping.
    #[arg(long)]
    pub pull: bool,
    /// Skip loading each model once before the first cell (page-cache warm-up).
    #[arg(long)]
    pub no_prewarm: bool,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run one shard of the global schedule: `i/N` (0-based), or `auto` (from
    /// JOB_COMPLETION_INDEX with --shards or KABENCH_SHARDS, or SLURM_ARRAY_TASK_ID with
    /// SLURM_ARRAY_TASK_COUNT). The shard's folder is OUT/shard-<i>-of-<N>.
    #[arg(long, value_name = "i/N|auto")]
    pub shard: Option<String>,
    /// Without --shard: start N shard processes here against one shared target, then
    /// merge them into OUT. With --shard auto: the shard count.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Common start barrier of the shards (RFC 3339, e.g. 2026-12-01T18:30:00Z): each
    /// sleeps until then, and every cell starts at a fixed offset from it.
    #[arg(long, value_name = "RFC3339")]
    pub start_at: Option<String>,
}

/// `kabench validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `kabench report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder written by `kabench run`.
    pub dir: PathBuf,
    /// Re-apply the cold rule with this load_duration threshold (e.g. 250ms).
    #[arg(long, value_parser = parse_duration)]
    pub cold_threshold: Option<Duration>,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `kabench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline run folder.
    pub base: PathBuf,
    /// New run folder.
    pub new: PathBuf,
    /// Fail when a p99 TTFT grows by more than this many percent.
    #[arg(long, default_value_t = 10.0)]
    pub max_p99_increase: f64,
    /// Fail when a cold ratio grows by more than this (absolute, 0–1).
    #[arg(long, default_value_t = 0.05)]
    pub max_cold_ratio_increase: f64,
    /// Fail when idle or peak VRAM grows by more than this many percent.
    #[arg(long, default_value_t = 10.0)]
    pub max_vram_increase: f64,
    /// Fail when the share of failed requests grows by more than this (absolute, 0–1).
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate_increase: f64,
    /// Compare runs of different scenarios, or runs that did not complete, anyway
    /// (refused otherwise, exit 2).
    #[arg(long)]
    pub force: bool,
}

/// `kabench sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:11434")]
    pub listen: SocketAddr,
    /// Take the simulated host from this scenario's [sim] section (flags override it).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// VRAM per GPU, e.g. 24GiB.
    #[arg(long)]
    pub vram: Option<String>,
    /// GPUs; 0 = a CPU-only host (models held in system memory, /api/ps size_vram 0).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// OLLAMA_MAX_LOADED_MODELS (0 = 3 per GPU).
    #[arg(long, env = "OLLAMA_MAX_LOADED_MODELS")]
    pub max_loaded_models: Option<u32>,
    /// OLLAMA_NUM_PARALLEL.
    #[arg(long, env = "OLLAMA_NUM_PARALLEL")]
    pub num_parallel: Option<u32>,
    /// OLLAMA_MAX_QUEUE.
    #[arg(long, env = "OLLAMA_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// OLLAMA_KEEP_ALIVE: keep_alive for requests that send none (5m).
    #[arg(long, env = "OLLAMA_KEEP_ALIVE")]
    pub keep_alive: Option<String>,
    /// OLLAMA_CONTEXT_LENGTH (0 = by VRAM).
    #[arg(long, env = "OLLAMA_CONTEXT_LENGTH")]
    pub context_length: Option<u32>,
    /// OLLAMA_LOAD_TIMEOUT.
    #[arg(long, env = "OLLAMA_LOAD_TIMEOUT")]
    pub load_timeout: Option<String>,
    /// Every load reads at page-cache speed (models already in the OS cache).
    #[arg(long)]
    pub page_cache_warm: bool,
    /// Stand in for the host of this kabench run folder: its models' measured load
    /// times, speeds and resident sizes, and CPU-only when /api/ps showed no VRAM.
    #[arg(long, value_name = "RUN_DIR")]
    pub calibrate: Option<PathBuf>,
    /// Seed for jitter and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of requests answered 500 before the first byte (0–1).
    #[arg(long)]
    pub fault_500: Option<f64>,
    /// Share of streams ending with an {"error":…} line mid-stream.
    #[arg(long)]
    pub fault_midstream_error: Option<f64>,
    /// Share of connections dropped mid-stream.
    #[arg(long)]
    pub fault_drop_connection: Option<f64>,
    /// Share of streams decoding slower.
    #[arg(long)]
    pub fault_slow_stream: Option<f64>,
    /// Share of loads that stall (see --fault-stall).
    #[arg(long)]
    pub fault_stalled_load: Option<f64>,
    /// How long a stalled load stalls, e.g. 30s.
    #[arg(long)]
    pub fault_stall: Option<String>,
    /// Share of loads that fail with 500.
    #[arg(long)]
    pub fault_failed_load: Option<f64>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    units::parse_option_duration(text).map_err(|e| e.to_string())
}

/// Marks a run that Ctrl-C stopped (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; the run folder {0} is complete up to the interruption")]
pub struct Interrupted(pub String);

/// Marks bad input found before anything ran (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => commands::run(args).await,
        Command::Validate(args) => commands::validate(args),
        Command::Report(args) => commands::report(args),
        Command::Compare(args) => commands::compare(args),
        Command::Sim(args) => commands::serve_sim(*args).await,
        Command::Models(args) => commands::models(args),
        Command::Swarm(args) => commands::swarm(args).await,
        Command::Doctor(args) => commands::doctor(args).await,
        Command::Proxy(args) => commands::proxy(args).await,
        Command::Predict(args) => predict::predict(*args),
        Command::Plan(args) => plan::plan(*args).await,
        Command::Merge(args) => commands::merge(args),
        Command::Fleet(args) => commands::fleet(args),
    }
}
