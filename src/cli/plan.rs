//! The arguments of `kabench plan`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{HostArgs, parse};

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
    /// VRAM, GPUs, model cap.
    #[command(flatten)]
    pub host: HostArgs,
    /// Read the models, num_ctx values, quantizations and the host ([sim]) from a
    /// scenario; the flags above override it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Take the sizes from a live Ollama (/api/show, /api/tags, and /api/ps after a load
    /// at each num_ctx), or `sim` for the embedded simulator's catalogue.
    #[arg(long)]
    pub target: Option<String>,
    /// The longest one call to --target may take while reading the sizes (its models,
    /// a load at each num_ctx, /api/ps, an unload); past it the plan stops with an
    /// error naming the target.
    #[arg(long, value_parser = parse::positive_duration, default_value = "5m")]
    pub timeout: Duration,
    /// Replay each combination round-robin on the target (default: the simulator) and
    /// compare the evictions observed with the predicted ones; writes a run folder per
    /// combination that `kabench report` renders.
    #[arg(long)]
    pub check: bool,
    /// Time between two requests of the check, longer than a reload (default 3s on the
    /// simulator; live, twice the slowest load timed while measuring the sizes plus 1s,
    /// at least 4s).
    #[arg(long, value_parser = parse::duration)]
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
