//! The command line: clap types (the help text is their doc comments) and one short
//! function per subcommand wiring the stages in order. No clap type leaves this file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::analysis::Summary;
use crate::record::RunStatus;
use crate::scenario;
use crate::session::{self, RunOptions, Target};
use crate::sim;
use crate::sim_settings::{FaultSettings, SimSettings};
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
    /// keep_alive policy, priced against the offline optimum.
    Predict(Box<PredictArgs>),
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
pub struct PredictArgs {
    /// Request log CSV: a `timestamp` column (RFC 3339, or epoch seconds or milliseconds)
    /// and any of model, prompt_tokens, output_tokens, num_ctx, client, keep_alive.
    #[arg(long, value_name = "FILE")]
    pub requests: PathBuf,
    /// keep_alive values to replay, comma-separated (e.g. 0,1m,5m,30m,-1); 5m and 10s
    /// are always replayed, and a log-spaced grid unless --no-grid.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub keep_alive: Vec<String>,
    /// Replay only the given values (plus 5m and 10s), not the grid from 0 to forever.
    #[arg(long)]
    pub no_grid: bool,
    /// The model of rows that name none.
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
    /// `sim` for the embedded simulator, or an Ollama address (`host:port`, `http://…`).
    /// Default: the scenario's [target], else `sim`.
    #[arg(long)]
    pub target: Option<String>,
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
        Command::Run(args) => run(args).await,
        Command::Validate(args) => validate(args),
        Command::Report(args) => report(args),
        Command::Compare(args) => compare(args),
        Command::Sim(args) => serve_sim(*args).await,
        Command::Models(args) => models(args),
        Command::Swarm(args) => swarm(args).await,
        Command::Doctor(args) => doctor(args).await,
        Command::Proxy(args) => proxy(args).await,
        Command::Predict(args) => predict(*args),
    }
}

async fn doctor(args: DoctorArgs) -> Result<()> {
    let invocation = crate::doctor::cli::Invocation {
        target: args.target,
        model: args.model,
        embed_model: args.embed_model,
        json: args.json,
        dry_run: args.dry_run,
    };
    crate::doctor::cli::command(invocation).await.map_err(|e| {
        let bad = e.is::<crate::doctor::ModelMissing>() || e.is::<crate::doctor::cli::BadTarget>();
        if bad {
            BadInput(format!("{e:#}")).into()
        } else {
            e
        }
    })
}

async fn proxy(args: ProxyArgs) -> Result<()> {
    let raw = args
        .upstream
        .or_else(|| std::env::var("OLLAMA_HOST").ok())
        .unwrap_or_default();
    let upstream = crate::ollama::client::parse_ollama_host(&raw)
        .map_err(|e| BadInput(format!("--upstream {raw:?}: {e}")))?;
    let rewrite = match &args.rewrite_keep_alive {
        Some(k) => Some(
            units::KeepAlive::parse(k)
                .map_err(|e| BadInput(format!("--rewrite-keep-alive {k:?}: {e}")))?
                .to_json(),
        ),
        None => None,
    };
    let config = crate::proxy::ProxyConfig {
        listen: args.listen,
        upstream: upstream.as_str().trim_end_matches('/').to_string(),
        out: args.out.clone(),
        rewrite_keep_alive: rewrite,
        quiet: args.quiet,
    };
    let handle = crate::proxy::spawn(config).await?;
    eprintln!(
        "kabench proxy: http://{} -> {}, logging to {}; Ctrl-C stops it",
        handle.addr,
        upstream.as_str().trim_end_matches('/'),
        args.out.join(crate::proxy::log::LOG_CSV).display()
    );
    interrupt().await;
    let stats = handle.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "kabench proxy: stopped; {} request(s) logged to {}",
        stats.rows,
        args.out.join(crate::proxy::log::LOG_CSV).display()
    );
    match stats.exported {
        Ok(n) if n > 0 => {
            let rendered =
                crate::report::render(&args.out, &crate::report::RenderOptions::default())?;
            eprintln!("{}", rendered.headline);
            eprintln!(
                "wrote {} (observed, not swept)",
                rendered.index_html.display()
            );
        }
        Ok(_) => eprintln!("no model request passed: no report"),
        Err(e) => eprintln!("could not write the run folder for the report: {e}"),
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    let plan = scenario::plan(&scenario);
    let target = Target::resolve(
        args.target.as_deref().map(Target::parse).as_ref(),
        &scenario,
    );
    check_target(&target)?;
    let options = RunOptions {
        target,
        out: args.out,
        pull: args.pull,
        prewarm: !args.no_prewarm,
    };
    let (cancel, tx, progress) = observe(args.quiet);
    let outcome = session::run(&scenario, &plan, &options, tx, cancel.clone()).await;
    let _ = progress.await;
    finish(outcome?, args.json, &cancel)
}

async fn swarm(args: SwarmArgs) -> Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    let plan = scenario::plan(&scenario);
    if args.users == Some(0) {
        return Err(BadInput(
            "--users 0: a swarm needs at least 1 user; give --users 1 or more (or leave it out for [swarm] users)".into(),
        )
        .into());
    }
    let target = Target::resolve(
        args.target.as_deref().map(Target::parse).as_ref(),
        &scenario,
    );
    check_target(&target)?;
    let options = crate::swarm::SwarmOptions {
        target,
        out: args.out,
        users: args.users,
        run_time: args.run_time,
    };
    let (cancel, tx, progress) = observe(args.quiet);
    let outcome = crate::swarm::run_swarm(&scenario, &plan, &options, tx, cancel.clone()).await;
    let _ = progress.await;
    finish(outcome?, args.json, &cancel)
}

/// An Ollama address the client cannot use is bad input (exit 2), before anything runs.
fn check_target(target: &Target) -> Result<()> {
    if let Target::Ollama(url) = target {
        crate::ollama::OllamaClient::new(url).map_err(|e| {
            BadInput(format!(
                "target {url:?}: {e}; write an Ollama address such as http://127.0.0.1:11434 or host:11434, or use --target sim"
            ))
        })?;
    }
    Ok(())
}

/// Ctrl-C → the cancel token; progress events → stderr.
fn observe(
    quiet: bool,
) -> (
    CancellationToken,
    mpsc::UnboundedSender<crate::runner::ProgressEvent>,
    tokio::task::JoinHandle<()>,
) {
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if interrupt().await {
            eprintln!("\ninterrupted: stopping sends, waiting for requests in flight…");
            on_ctrl_c.cancel();
        }
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let progress = tokio::spawn(crate::progress::show(rx, quiet));
    (cancel, tx, progress)
}

/// Ctrl-C, or SIGTERM on Unix (what CI runners and `kill` send): true when one came.
async fn interrupt() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                _ = term.recv() => true,
            },
            Err(_) => tokio::signal::ctrl_c().await.is_ok(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Renders the finished run, prints its table and decides the outcome; a Ctrl-C that
/// came after the last request (while rendering) still ends it with exit 130.
fn finish(outcome: session::RunOutcome, json: bool, cancel: &CancellationToken) -> Result<()> {
    let rendered = crate::report::render(&outcome.dir, &crate::report::RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", outcome.dir.display()))?;
    print_result(&read_summary(&outcome.dir)?, json)?;
    eprintln!("{}", rendered.headline);
    eprintln!(
        "wrote {} ({} requests, {} errors): open {}",
        outcome.dir.display(),
        outcome.requests,
        outcome.errors,
        rendered.index_html.display()
    );
    decide(&outcome, cancel.is_cancelled())
}

/// The exit of a finished run: interrupted (by its status, or by a Ctrl-C seen after
/// the run, while rendering), failed, every request failed, or ok.
fn decide(outcome: &session::RunOutcome, interrupted: bool) -> Result<()> {
    if interrupted && outcome.status != RunStatus::Failed {
        return Err(Interrupted(outcome.dir.display().to_string()).into());
    }
    match outcome.status {
        RunStatus::Interrupted => Err(Interrupted(outcome.dir.display().to_string()).into()),
        RunStatus::Failed => Err(anyhow::anyhow!(
            "the run failed; see {}/run.json",
            outcome.dir.display()
        )),
        _ if outcome.requests > 0 && outcome.errors == outcome.requests => Err(anyhow::anyhow!(
            "every request failed; see {}/requests.csv",
            outcome.dir.display()
        )),
        _ => Ok(()),
    }
}

/// The `summary.json` that `report::render` just wrote.
fn read_summary(dir: &std::path::Path) -> Result<Summary> {
    let path = dir.join(crate::record::SUMMARY_JSON);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn validate(args: ValidateArgs) -> Result<()> {
    let mut failed = None;
    for file in &args.files {
        match scenario::load(file) {
            Ok(s) => {
                let plan = scenario::plan(&s);
                let requests: u64 = plan
                    .cells
                    .iter()
                    .map(|c| crate::runner::planned_requests(c).unwrap_or(0))
                    .sum();
                println!(
                    "{}: ok: scenario {:?}, {} cell(s), {} stream(s), {} request(s)",
                    file.display(),
                    s.name,
                    plan.cells.len(),
                    s.streams.len(),
                    requests
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(BadInput(format!("{} is not a valid scenario", e.path.display())).into()),
        None => Ok(()),
    }
}

fn report(args: ReportArgs) -> Result<()> {
    let options = crate::report::RenderOptions {
        cold_threshold: args.cold_threshold,
    };
    let rendered = crate::report::render(&args.dir, &options)?;
    print_result(&read_summary(&args.dir)?, args.json)?;
    eprintln!("{}", rendered.headline);
    eprintln!("wrote {}", rendered.index_html.display());
    Ok(())
}

fn compare(args: CompareArgs) -> Result<()> {
    let thresholds = crate::report::compare::CompareThresholds {
        p99_pct: args.max_p99_increase,
        cold_ratio_abs: args.max_cold_ratio_increase,
        vram_pct: args.max_vram_increase,
        error_rate_abs: args.max_error_rate_increase,
    };
    for (flag, v) in [
        ("--max-p99-increase", thresholds.p99_pct),
        ("--max-cold-ratio-increase", thresholds.cold_ratio_abs),
        ("--max-vram-increase", thresholds.vram_pct),
        ("--max-error-rate-increase", thresholds.error_rate_abs),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(BadInput(format!("{flag} {v}: give a finite number of at least 0")).into());
        }
    }
    let comparison =
        crate::report::compare::compare_runs(&args.base, &args.new, &thresholds, args.force)?;
    print!("{}", comparison.to_text());
    let regressions = comparison.regressions();
    if comparison.changes.is_empty() {
        Err(anyhow::anyhow!(
            "nothing to compare: no cell and stream of {} matches {}",
            args.new.display(),
            args.base.display()
        ))
    } else if regressions.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} stream(s) past the thresholds",
            regressions.len()
        ))
    }
}

async fn serve_sim(args: SimArgs) -> Result<()> {
    let mut settings = match &args.scenario {
        Some(path) => scenario::load(path)?.sim,
        None => SimSettings::default(),
    };
    let f = &mut settings.faults;
    let flags = FaultSettings {
        error_500: args.fault_500.or(f.error_500),
        midstream_error: args.fault_midstream_error.or(f.midstream_error),
        drop_connection: args.fault_drop_connection.or(f.drop_connection),
        slow_stream: args.fault_slow_stream.or(f.slow_stream),
        stalled_load: args.fault_stalled_load.or(f.stalled_load),
        stall: args.fault_stall.or(f.stall.take()),
        failed_load: args.fault_failed_load.or(f.failed_load),
        slow_factor: f.slow_factor,
    };
    settings.faults = flags;
    macro_rules! overlay {
        ($($field:ident),*) => { $( if args.$field.is_some() { settings.$field = args.$field; } )* };
    }
    overlay!(
        vram,
        gpus,
        max_loaded_models,
        num_parallel,
        max_queue,
        keep_alive,
        context_length,
        load_timeout
    );
    if args.page_cache_warm {
        settings.page_cache_warm = Some(true);
    }
    if let Some(dir) = &args.calibrate {
        settings.calibrate = Some(dir.display().to_string());
    }
    if let Some(dir) = &settings.calibrate {
        let calibration = crate::calibrate::calibrate(std::path::Path::new(dir))
            .map_err(|e| BadInput(format!("--calibrate: {e:#}")))?;
        for line in calibration.describe() {
            eprintln!("{line}");
        }
    }
    settings
        .sched_config(args.seed)
        .map_err(|e| BadInput(format!("simulator settings: {e}")))?;
    let handle = sim::spawn(&settings, args.seed, args.listen).await?;
    eprintln!(
        "kabench sim: an Ollama-compatible model of Ollama's scheduler (rules of Ollama 0.32.15), listening on http://{}",
        handle.addr
    );
    eprintln!(
        "point any Ollama client at it: OLLAMA_HOST=http://{} ; Ctrl-C stops it",
        handle.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    Ok(())
}

fn predict(args: PredictArgs) -> Result<()> {
    use crate::predict::{self, Policy, PredictOptions, output};
    use crate::traffic::request_log::{ReadOptions, RequestLog, TimeUnit};
    let bad = |what: &str, e: &dyn std::fmt::Display| BadInput(format!("{what}{e}"));
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(BadInput(format!(
            "--time-scale {}: give a number above 0",
            args.time_scale
        ))
        .into());
    }
    if !(args.train > 0.0 && args.train <= 1.0) {
        return Err(BadInput(format!(
            "--train {}: give the share of the time span to train on, above 0 and at most 1 (0.5: the first half)",
            args.train
        ))
        .into());
    }
    let unit = match args.timestamp_unit.as_str() {
        "auto" => TimeUnit::Auto,
        "s" => TimeUnit::Seconds,
        "ms" => TimeUnit::Millis,
        other => {
            return Err(
                BadInput(format!("--timestamp-unit {other:?}: write auto, s or ms")).into(),
            );
        }
    };
    let mut given = Vec::new();
    for text in args.keep_alive.iter().filter(|t| !t.trim().is_empty()) {
        given.push(
            units::KeepAlive::parse(text.trim())
                .map_err(|e| bad(&format!("--keep-alive {text:?}: "), &e))?,
        );
    }
    let (mut settings, mut cost, source) = match &args.scenario {
        Some(path) => {
            let s = scenario::load(path)?;
            (s.sim, s.cost, format!("the [sim] of {}", path.display()))
        }
        None => (
            SimSettings::default(),
            crate::report::default_cost(),
            "the simulator's defaults and catalogue".to_string(),
        ),
    };
    macro_rules! overlay {
        ($($field:ident),*) => { $( if args.$field.is_some() { settings.$field = args.$field.clone(); } )* };
    }
    overlay!(vram, gpus, max_loaded_models, num_parallel);
    if args.server_keep_alive.is_some() {
        settings.keep_alive = args.server_keep_alive.clone();
    }
    if let Some(dir) = &args.calibrate {
        settings.calibrate = Some(dir.display().to_string());
    }
    for (flag, v) in [
        ("--wait-second", args.wait_second),
        ("--vram-gb-hour", args.vram_gb_hour),
        ("--ram-gb-hour", args.ram_gb_hour),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(BadInput(format!("{flag} {v}: give a finite number of at least 0")).into());
        }
    }
    cost.wait_second = args.wait_second.unwrap_or(cost.wait_second);
    cost.vram_gb_hour = args.vram_gb_hour.unwrap_or(cost.vram_gb_hour);
    cost.ram_gb_hour = args.ram_gb_hour.unwrap_or(cost.ram_gb_hour);
    if args.cold_penalty.is_some() {
        cost.cold_penalty = args.cold_penalty;
    }
    let host = predict::Host::new(&settings, args.seed, &source)
        .map_err(|e| bad("host: ", &format!("{e:#}")))?;
    let log = RequestLog::open(
        &args.requests,
        ReadOptions {
            model: args.model.clone(),
            time_scale: args.time_scale,
            unit,
        },
    )
    .map_err(|e| bad("", &e))?;
    let (models, unit_of) =
        predict::resolve_models(log.scan(), &host, &cost).map_err(|e| bad("", &e))?;
    let mut policies = predict::fixed_policies(&given, !args.no_grid);
    if log.scan().has_keep_alive {
        policies.push(Policy::AsSent);
    }
    policies.push(Policy::Optimum);
    if !args.quiet {
        eprintln!(
            "predict: {} ({} requests over {}, {} model(s)) on a simulated {} ({}), {} policies",
            args.requests.display(),
            log.scan().rows,
            crate::recommend::format_seconds(log.scan().span_s),
            models.len(),
            host.describe(),
            host.source,
            policies.len()
        );
    }
    let opts = PredictOptions {
        policies,
        cost: cost.clone(),
        prompt_tokens: args.prompt_tokens,
        output_tokens: args.output_tokens,
        cold_threshold: args.cold_threshold,
        progress: !args.quiet,
        train: args.train,
    };
    let prediction = predict::predict(&log, &host, &models, &unit_of, &opts)?;
    let info = output::FolderInfo {
        time_scale: args.time_scale,
        seed: args.seed,
        cost,
        cold_threshold_ms: crate::record::ms(args.cold_threshold),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&output::summary_json(&prediction, &info)?)?
            )?;
        } else {
            write!(out, "{}", output::table(&prediction))?;
            for line in output::verdict(&prediction) {
                writeln!(out, "{line}")?;
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "replayed {} requests × {} policies in {:.2} s",
            prediction.scan.rows,
            prediction.outcomes.len(),
            prediction.wall_s
        );
    }
    if let Some(dir) = &args.out {
        output::write_folder(dir, &prediction, &host, &info)?;
        let rendered = crate::report::render(dir, &crate::report::RenderOptions::default())
            .with_context(|| format!("rendering the report of {}", dir.display()))?;
        if !args.quiet {
            eprintln!("{}", rendered.headline);
            eprintln!(
                "wrote {}: open {}",
                dir.display(),
                rendered.index_html.display()
            );
        }
    }
    Ok(())
}

fn models(args: ModelsArgs) -> Result<()> {
    use std::io::Write;
    let settings = SimSettings::default();
    let config = settings.sched_config(0)?;
    let catalogue = settings.catalogue();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<30} {:<7} {:>10} {:>18} {:>11} {:>9} {:>8} {:>8}",
        "model",
        "quant",
        "file",
        format!("resident@{}", args.num_ctx),
        "KV/token",
        "load warm",
        "load cold",
        "decode"
    )?;
    for m in &catalogue.models {
        let size = crate::sched::predicted_size(m, args.num_ctx, config.slots());
        writeln!(
            out,
            "{:<30} {:<7} {:>10} {:>18} {:>8} KiB {:>8.2}s {:>8.2}s {:>5.0} t/s",
            m.name,
            m.quantization,
            units::format_bytes(m.file_bytes),
            units::format_bytes(size),
            m.kv_bytes_per_token() / 1024,
            config.load_secs(m, true),
            config.load_secs(m, false),
            m.decode_tps
        )?;
        if args.sources {
            writeln!(
                out,
                "    aliases: {}; source: {}",
                m.aliases.join(", "),
                m.source
            )?;
        }
    }
    writeln!(
        out,
        "load = runtime start {:?} + file / bandwidth (page cache {:.0} GB/s; first load from a cold disk {:.0} GB/s), or a measured load time plus the slower first read, ±{:.0}% seeded jitter",
        config.runtime_start,
        config.cached_bandwidth / 1e9,
        config.cold_bandwidth / 1e9,
        config.load_jitter * 100.0
    )?;
    Ok(())
}

/// Prints the per-cell table (or the JSON document) on stdout.
fn print_result(summary: &Summary, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(summary)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>6} {:>10} {:>10} {:>10} {:>10}  memory",
        "cell",
        "stream",
        "keep_alive",
        "reqs",
        "errs",
        "cold",
        "loads",
        "cold%",
        "ttft p50",
        "ttft p99",
        "e2e p99",
        "idle GB·s"
    )?;
    for cell in &summary.cells {
        let idle = cell
            .vram
            .as_ref()
            .map(|v| format!("{:.1}", v.idle_gb_seconds))
            .unwrap_or_else(|| "-".into());
        let memory = cell
            .vram
            .as_ref()
            .map_or("not measured", |v| v.counted.as_str());
        for s in &cell.streams {
            let p = |x: Option<f64>| {
                x.map(|v| format!("{v:.0} ms"))
                    .unwrap_or_else(|| "-".into())
            };
            writeln!(
                out,
                "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>10} {:>10} {:>10} {:>10}  {}",
                cell.id,
                s.name,
                s.keep_alive,
                s.requests,
                s.errors,
                s.cold,
                s.loads,
                s.cold_ratio * 100.0,
                p(s.ttft_ms.all.map(|q| q.p50)),
                p(s.ttft_ms.all.map(|q| q.p99)),
                p(s.e2e_ms.all.map(|q| q.p99)),
                idle,
                memory
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_ctrl_c_while_rendering_exits_130_not_0() {
        let outcome = |status| session::RunOutcome {
            dir: PathBuf::from("reports/x"),
            status,
            requests: 4,
            errors: 0,
        };
        let interrupted = |r: Result<()>| r.is_err_and(|e| e.is::<Interrupted>());
        assert!(decide(&outcome(RunStatus::Complete), false).is_ok());
        assert!(interrupted(decide(&outcome(RunStatus::Complete), true)));
        assert!(interrupted(decide(&outcome(RunStatus::Interrupted), false)));
        let failed = decide(&outcome(RunStatus::Failed), true).unwrap_err();
        assert!(!failed.is::<Interrupted>());
    }
}
