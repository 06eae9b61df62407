//! The arguments of the subcommands around one run folder: `run`, `swarm`, `validate`,
//! `report`, `compare`, `merge` and `fleet`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::{SummaryArgs, parse};

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
    /// Table or JSON, progress or quiet.
    #[command(flatten)]
    pub summary: SummaryArgs,
    /// Run one shard of the global schedule: `i/N` (0-based), or `auto` (from
    /// JOB_COMPLETION_INDEX with --shards or KABENCH_SHARDS, or SLURM_ARRAY_TASK_ID with
    /// SLURM_ARRAY_TASK_COUNT). The shard's folder is OUT/shard-<i>-of-<N>.
    #[arg(long, value_name = "i/N|auto")]
    pub shard: Option<String>,
    /// Without --shard: start N shard processes here against one shared target, then
    /// merge them into OUT (at most 4 per CPU, at least 64). With --shard auto: the
    /// shard count (at most 1024).
    #[arg(long, value_name = "N", value_parser = parse::shards)]
    pub shards: Option<u32>,
    /// Common start barrier of the shards (RFC 3339, e.g. 2026-12-01T18:30:00Z): each
    /// sleeps until then, and every cell starts at a fixed offset from it. At most 24 h
    /// ahead; behind it, see --late-tolerance.
    #[arg(long, value_name = "RFC3339", value_parser = parse::start_at)]
    pub start_at: Option<SystemTime>,
    /// Run every cell N times (1 to 100), cell order rotated per repetition; overrides
    /// the scenario's `[run] repeat`.
    #[arg(long, value_name = "N", value_parser = parse::repeat)]
    pub repeat: Option<u32>,
    /// How late after --start-at a shard may wake and still send (at most 1 h): past
    /// it the shard sends nothing, its folder is marked late and merge counts it
    /// missing; a cell started later than this after its fixed start is left out of a
    /// merged run's recommendation.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "2s")]
    pub late_tolerance: Duration,
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
    #[arg(long, value_parser = parse::users)]
    pub users: Option<u32>,
    /// Run time per cell, e.g. 30s (overrides [swarm] run_time).
    #[arg(long, value_parser = parse::duration)]
    pub run_time: Option<Duration>,
    /// Table or JSON, progress or quiet.
    #[command(flatten)]
    pub summary: SummaryArgs,
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
    #[arg(long, value_parser = parse::duration)]
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
    /// Fail when a latency (TTFT p50, p99, e2e p50) grows significantly by more than this
    /// many percent.
    #[arg(long, default_value_t = 10.0, value_parser = parse::non_negative)]
    pub max_p99_increase: f64,
    /// Fail when a cold ratio grows by more than this (absolute, 0–1).
    #[arg(long, default_value_t = 0.05, value_parser = parse::non_negative)]
    pub max_cold_ratio_increase: f64,
    /// Fail when idle or peak VRAM grows by more than this many percent.
    #[arg(long, default_value_t = 10.0, value_parser = parse::non_negative)]
    pub max_vram_increase: f64,
    /// Fail when the share of failed requests grows by more than this (absolute, 0–1).
    #[arg(long, default_value_t = 0.01, value_parser = parse::non_negative)]
    pub max_error_rate_increase: f64,
    /// Significance level: a change counts when the bootstrap interval of the
    /// difference at confidence 1 − level excludes zero.
    #[arg(long, default_value_t = 0.05, value_parser = parse::significance)]
    pub significance_level: f64,
    /// Noise threshold, a fraction: a significant change whose interval is not wholly
    /// past ±this share of the base (points for ratios) is noise.
    #[arg(long, default_value_t = 0.02, value_parser = parse::noise)]
    pub noise_threshold: f64,
    /// Bootstrap resamples per figure (the default is the statistics' own, checked in
    /// `cmd::compare`).
    #[arg(long, default_value_t = 2_000, value_parser = parse::resamples)]
    pub resamples: usize,
    /// Also write compare.md and compare.html into this folder (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare runs of different scenarios, or runs that did not complete, anyway
    /// (refused otherwise, exit 2).
    #[arg(long)]
    pub force: bool,
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
    /// A bash script that writes the scenario into the shared run folder and submits a
    /// Slurm array of the shards and the merge as a job depending on them (afterany).
    Slurm(SlurmArgs),
}

/// What every engine needs.
#[derive(Debug, Args)]
pub struct FleetCommon {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Shards (pods or array tasks), at most 1024.
    #[arg(long, value_parser = parse::shards)]
    pub shards: u32,
    /// Ollama address(es) for every shard (repeat for a fleet); default: the
    /// scenario's [target].
    #[arg(long)]
    pub target: Vec<String>,
    /// The start barrier is this long after now: time to submit and schedule (at most
    /// 24 h).
    #[arg(long, value_parser = parse::duration, default_value = "2m")]
    pub start_delay: Duration,
    /// Name of the jobs and the run folder (default: scenario name and barrier time).
    #[arg(long)]
    pub name: Option<String>,
    /// How late after the barrier a shard may start and still send (each shard's
    /// --late-tolerance): a later one sends nothing and is merged as missing.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, default_value = "2s")]
    pub late_tolerance: Duration,
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
    /// Print the ReadWriteMany claim too, of this size (e.g. 5Gi); without it the
    /// claim --claim must exist.
    #[arg(long, value_name = "SIZE")]
    pub new_claim: Option<String>,
    /// Storage class of the new claim (default: the cluster's default class; it must
    /// offer ReadWriteMany, e.g. NFS or CephFS).
    #[arg(long, requires = "new_claim")]
    pub storage_class: Option<String>,
    /// CPU each shard requests.
    #[arg(long, default_value = "500m")]
    pub cpu_request: String,
    /// CPU each shard may use at most.
    #[arg(long, default_value = "1")]
    pub cpu_limit: String,
    /// Memory each shard requests.
    #[arg(long, default_value = "256Mi")]
    pub memory_request: String,
    /// Memory each shard may use at most (over it the pod is killed and merged as
    /// missing).
    #[arg(long, default_value = "1Gi")]
    pub memory_limit: String,
    /// How long the finished Jobs and their pods stay before Kubernetes deletes them
    /// (the run folders stay on the claim).
    #[arg(long, value_parser = parse::duration, default_value = "1d")]
    pub ttl: Duration,
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
    /// Slurm account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit of each shard, in Slurm's form (e.g. 30, 1:30:00); default: the wait
    /// for the barrier, the run's span and 10 minutes.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs of each shard (a load generator needs one; at most 256).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: u32,
    /// The kabench executable on the nodes.
    #[arg(long, default_value = "kabench")]
    pub kabench: String,
}
