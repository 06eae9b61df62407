//! The arguments of `kabench predict`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{HostArgs, ServerArgs, SummaryArgs, parse};
use crate::units::KeepAlive;

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
    #[arg(long, value_parser = parse::duration, requires = "scenario")]
    pub horizon: Option<Duration>,
    /// Replay only this part of the input's time, from its start: START..END in
    /// seconds or durations (0..86400, 1d..8d, ..6h, 7d..).
    #[arg(long, value_parser = parse::slice)]
    pub slice: Option<(f64, f64)>,
    /// Replay only these clients (comma-separated): ServeGen client ids, or the
    /// `client` column of a request log.
    #[arg(long, value_delimiter = ',')]
    pub client: Vec<String>,
    /// The server log's UTC offset (`+02:00`, `-0500`, `UTC`); default: the offset of
    /// the log's own `time=` lines.
    #[arg(long, allow_hyphen_values = true, value_parser = parse::utc_offset)]
    pub tz: Option<time::UtcOffset>,
    /// Stop at the first server-log line that starts as an access, load or unload line
    /// and cannot be read, naming its line number (default: skip and count it).
    #[arg(long)]
    pub strict: bool,
    /// keep_alive values to replay, comma-separated (e.g. 0,1m,5m,30m,-1); 5m and 10s
    /// are always replayed, and a log-spaced grid unless --no-grid.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = parse::keep_alive)]
    pub keep_alive: Vec<KeepAlive>,
    /// Replay only the given values (plus 5m and 10s), not the grid from 0 to forever.
    #[arg(long)]
    pub no_grid: bool,
    /// The model of rows that name none; for a trace, one for all clients or one per
    /// --client, comma-separated.
    #[arg(long)]
    pub model: Option<String>,
    /// Multiplies every gap of the input (2 = half the rate).
    #[arg(long, default_value_t = 1.0, value_parser = parse::positive)]
    pub time_scale: f64,
    /// Unit of numeric timestamps: auto (milliseconds from 1e11), s or ms.
    #[arg(long, value_enum, default_value_t = TimestampUnit::Auto, hide_possible_values = true)]
    pub timestamp_unit: TimestampUnit,
    /// Take the host from this scenario's [sim] and the weights from its [cost] (flags override).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Stand on the host of this kabench run folder (measured load times, speeds, sizes).
    #[arg(long, value_name = "RUN_DIR")]
    pub calibrate: Option<PathBuf>,
    /// VRAM, GPUs, model cap.
    #[command(flatten)]
    pub host: HostArgs,
    /// Parallel slots, the server's keep_alive.
    #[command(flatten)]
    pub server: ServerArgs,
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
    #[arg(long, value_parser = parse::non_negative)]
    pub wait_second: Option<f64>,
    /// [cost] vram_gb_hour: the cost of holding 1 GB of GPU memory for an hour.
    #[arg(long, value_parser = parse::non_negative)]
    pub vram_gb_hour: Option<f64>,
    /// [cost] ram_gb_hour: the same for system memory.
    #[arg(long, value_parser = parse::non_negative)]
    pub ram_gb_hour: Option<f64>,
    /// The wait one cold start costs (default: each model's load time on the host).
    #[arg(long, value_parser = parse::duration)]
    pub cold_penalty: Option<Duration>,
    /// The cold rule's load_duration threshold.
    #[arg(long, value_parser = parse::duration, default_value = "100ms")]
    pub cold_threshold: Duration,
    /// Share of the input's time span to choose the recommendation on; every policy is
    /// also scored on the rest (out of sample). 1 = the whole input only.
    #[arg(long, default_value_t = 0.5, value_parser = parse::train_share)]
    pub train: f64,
    /// Write a run folder here (summary.json, run.json, report).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Table or JSON, progress or quiet.
    #[command(flatten)]
    pub summary: SummaryArgs,
}

/// The unit of a request log's numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimestampUnit {
    /// Seconds below 1e11, milliseconds from there.
    Auto,
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
}
