//! Memory samplers, each on its own task or thread, and the one writer that streams their
//! rows into `vram.csv`. Sources: NVML (`nvml`), Ollama's `/api/ps` (`ollama_ps`, read
//! from the host's one `/api/ps` poller, `ps_feed`, which the run's residency watcher
//! reads too), process RSS (`rss`), a Prometheus server or exporter (`prometheus`) and
//! the simulator's `/metrics` (`sim`). A source that cannot work here reports
//! "unavailable" once and the others go on. Knows nothing of requests, cells or analysis.
//! Over 500 lines: the sampling task, its per-source start-up and its shutdown are one lifecycle.

pub mod host_load;
pub mod nvml;
pub mod ollama_ps;
pub mod prometheus;
pub mod ps_feed;
pub mod ps_schedule;
pub mod rss;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::folder::{self, CsvAppender, VramSample};
use ps_feed::{PsFeed, PsSubscription};

/// Default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest `/api/ps` polling interval when [`TelemetryConfig::ps_interval`] is not
/// set: `/api/ps` changes only when a model loads or unloads, and each poll is an HTTP
/// round trip, so a 10 ms local sampler does not make it poll every 10 ms.
pub const DEFAULT_PS_INTERVAL: Duration = DEFAULT_INTERVAL;

/// Source names accepted in [`TelemetryConfig::sources`].
pub use crate::folder::TELEMETRY_SOURCES as SOURCES;

/// Default process names of Ollama's server and runners (current and older releases).
/// `llama-server` is the runner Ollama starts per loaded model in current releases
/// (system memory of a model on a CPU-only host is its RSS).
pub const DEFAULT_PROCESS_NAMES: [&str; 3] = ["ollama", "ollama_llama_server", "llama-server"];

/// One value read by a sampler; the sampling loop adds the time and the source name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Device (`gpu0`, `host/gpu0`, `sim`, `ollama`, `host`) or empty.
    pub device: String,
    /// Model or process name; empty for a device total.
    pub model: String,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Total bytes, if known.
    pub total_bytes: Option<u64>,
    /// Extra detail (`expires_at`, a GPU model name, pids).
    pub extra: String,
}

/// Why a sample could not be taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The source cannot work on this host or with this setting; it stops for the run.
    #[error("{0}")]
    Unavailable(String),
    /// This sample failed; the next one may work (a target restarting, a timeout).
    #[error("{0}")]
    Failed(String),
}

/// A source read on a blocking thread of its own (NVML, process tables).
pub trait BlockingSampler: Send + 'static {
    /// Source name written in the `source` column.
    fn name(&self) -> &str;
    /// Takes one sample.
    fn sample(&mut self) -> Result<Vec<Reading>, SourceError>;
    /// A description of what is measured (the GPU for NVML), for `run.json`.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// A source read over the network on a task of its own (`/api/ps`, Prometheus).
pub trait Sampler: Send + 'static {
    /// Source name written in the `source` column.
    fn name(&self) -> &str;
    /// Takes one sample.
    fn sample(&mut self) -> impl Future<Output = Result<Vec<Reading>, SourceError>> + Send;
}

/// The scenario's `[telemetry]` settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Sources to run, from [`SOURCES`].
    pub sources: Vec<String>,
    /// Sampling interval of every source except `ollama_ps` (see `ps_interval`).
    pub interval: Duration,
    /// Interval of `ollama_ps`'s rows; `None`: `interval`, but no shorter than
    /// [`DEFAULT_PS_INTERVAL`]. `Some` is used as given (10 ms works). The host's
    /// `/api/ps` poller asks at least this often, faster when another reader of it (the
    /// residency watcher) needs it; `vram.csv` still gets rows at this interval, plus
    /// one for each change in what is listed. A run's poller is adaptive unless its
    /// scenario sets `ps_adaptive = false` ([`ps_feed::PsFeed::adaptive`]): at this
    /// interval only around the loads and unloads it expects, every
    /// [`ps_schedule::SLOW`] otherwise, so rows come at least that often and at each
    /// change.
    pub ps_interval: Option<Duration>,
    /// Process names of the Ollama server and runners (NVML per-process rows and RSS).
    pub process_names: Vec<String>,
    /// Ollama base URL for `ollama_ps`, in any `OLLAMA_HOST` form.
    pub ollama_url: Option<String>,
    /// A fleet's hosts: `ollama_ps` polls each (instead of `ollama_url`), its rows
    /// carrying the host in `vram.csv`'s `host` column; empty for one target.
    pub fleet_urls: Vec<String>,
    /// Prometheus server URL (instant queries) or an exporter's `/metrics` URL (scrapes).
    pub prometheus_url: Option<String>,
    /// Instant query for a Prometheus server (default `DCGM_FI_DEV_FB_USED`).
    pub prometheus_query: Option<String>,
    /// The simulator's `/metrics` URL (default: `ollama_url` + `/metrics`).
    pub sim_metrics_url: Option<String>,
}

impl TelemetryConfig {
    /// The interval `ollama_ps` polls at: `ps_interval`, else `interval` but at least
    /// [`DEFAULT_PS_INTERVAL`].
    pub fn effective_ps_interval(&self) -> Duration {
        self.ps_interval
            .unwrap_or_else(|| self.interval.max(DEFAULT_PS_INTERVAL))
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            sources: crate::folder::DEFAULT_TELEMETRY_SOURCES
                .map(String::from)
                .to_vec(),
            interval: DEFAULT_INTERVAL,
            ps_interval: None,
            process_names: DEFAULT_PROCESS_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ollama_url: None,
            fleet_urls: Vec::new(),
            prometheus_url: None,
            prometheus_query: None,
            sim_metrics_url: None,
        }
    }
}

/// What telemetry did over a run, for `run.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryReport {
    /// Source → `ok`, `unavailable: <reason>` or `failed: <reason>`.
    pub sources: BTreeMap<String, String>,
    /// The GPUs NVML saw (name and memory), when it worked.
    pub gpu: Option<String>,
    /// Rows written to `vram.csv`.
    pub samples: u64,
    /// Why writing `vram.csv` stopped early, if it did.
    pub write_error: Option<String>,
}

/// Running samplers; [`TelemetryHandle::stop`] ends them and drains the writer.
pub struct TelemetryHandle {
    /// Fires when `vram.csv` cannot be written; the reason is in `write_failed`.
    write_failed_token: CancellationToken,
    write_failed: Arc<OnceLock<String>>,
    stop: CancellationToken,
    tasks: Vec<(String, JoinHandle<SourceOutcome>)>,
    writer: JoinHandle<(u64, Option<String>)>,
    early: BTreeMap<String, String>,
    /// Rows sampled outside the sources (a managed server's process tree), written in
    /// the same `vram.csv`; dropped when the handle stops.
    extra: mpsc::Sender<VramSample>,
}

impl TelemetryHandle {
    /// Resolves with the reason as soon as `vram.csv` cannot be written (a full disk);
    /// never otherwise.
    pub fn write_failure(&self) -> impl Future<Output = String> + Send + 'static {
        let (token, reason) = (self.write_failed_token.clone(), self.write_failed.clone());
        async move {
            token.cancelled().await;
            reason.get().cloned().unwrap_or_default()
        }
    }

    /// A sender of rows sampled elsewhere (a server kabench started), written to the
    /// same `vram.csv` in order of arrival. Drop it when done: the writer ends once
    /// every sender is gone.
    pub fn extra_rows(&self) -> mpsc::Sender<VramSample> {
        self.extra.clone()
    }

    /// Stops every sampler, waits for the last rows to be written and reports.
    pub async fn stop(self) -> TelemetryReport {
        drop(self.extra);
        self.stop.cancel();
        let mut report = TelemetryReport {
            sources: self.early,
            ..Default::default()
        };
        for (name, task) in self.tasks {
            let outcome = task.await.unwrap_or_else(|e| SourceOutcome {
                status: format!("failed: sampler stopped abnormally: {e}"),
                gpu: None,
            });
            if outcome.gpu.is_some() {
                report.gpu = outcome.gpu;
            }
            report.sources.insert(name, outcome.status);
        }
        match self.writer.await {
            Ok((n, err)) => {
                report.samples = n;
                report.write_error = err;
            }
            Err(e) => report.write_error = Some(format!("vram.csv writer stopped: {e}")),
        }
        report
    }
}

/// How one source ended.
#[derive(Debug)]
struct SourceOutcome {
    status: String,
    gpu: Option<String>,
}

/// What every sampling loop shares.
#[derive(Clone)]
struct LoopCtx {
    name: String,
    host: String,
    epoch: Instant,
    interval: Duration,
    stop: CancellationToken,
    rows: mpsc::Sender<VramSample>,
}

/// Counts successes and failures and logs the first failure once.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
}

enum Next {
    Go,
    Halt(SourceOutcome),
}

impl LoopCtx {
    /// Stamps a sample taken between `t0` and `t1` (ms since the epoch) at its midpoint
    /// and sends its rows; halts when the writer is gone or the source became unavailable.
    /// A sample taken before the epoch (a sharded run's start barrier, still ahead) is
    /// left out: the run's clock has not started.
    fn deliver(
        &self,
        tally: &mut Tally,
        t0: f64,
        t1: f64,
        result: Result<Vec<Reading>, SourceError>,
    ) -> Next {
        if Instant::now() < self.epoch && result.is_ok() {
            return Next::Go;
        }
        match result {
            Ok(readings) => {
                tally.ok += 1;
                let t_ms = (t0 + t1) / 2.0;
                for r in readings {
                    let row = VramSample {
                        t_ms,
                        source: self.name.clone(),
                        device: r.device,
                        model: r.model,
                        used_bytes: r.used_bytes,
                        total_bytes: r.total_bytes,
                        extra: r.extra,
                        host: self.host.clone(),
                    };
                    if self.rows.send(row).is_err() {
                        return Next::Halt(self.finish(tally));
                    }
                }
                Next::Go
            }
            Err(SourceError::Unavailable(reason)) => Next::Halt(self.unavailable(&reason)),
            Err(SourceError::Failed(reason)) => {
                tally.failed += 1;
                if tally.first_error.is_none() {
                    tracing::warn!(
                        "telemetry source {}: {reason} (further errors of this source are counted, not logged)",
                        self.name
                    );
                    tally.first_error = Some(reason);
                }
                Next::Go
            }
        }
    }

    fn unavailable(&self, reason: &str) -> SourceOutcome {
        tracing::warn!(
            "telemetry source {} unavailable: {reason}; the run goes on without it",
            self.name
        );
        SourceOutcome {
            status: format!("unavailable: {reason}"),
            gpu: None,
        }
    }

    fn finish(&self, tally: &Tally) -> SourceOutcome {
        let status = match (&tally.first_error, tally.ok) {
            (Some(e), 0) => format!("failed: {e}"),
            (None, 0) => "failed: stopped before the first sample".to_string(),
            (Some(_), ok) => {
                tracing::info!(
                    "telemetry source {}: {} of {} samples failed",
                    self.name,
                    tally.failed,
                    ok + tally.failed
                );
                "ok".to_string()
            }
            (None, _) => "ok".to_string(),
        };
        SourceOutcome { status, gpu: None }
    }

    fn now_ms(&self) -> f64 {
        folder::ms(self.epoch.elapsed())
    }
}

/// Runs a blocking sampler built on its own thread until stopped.
fn run_blocking<S, F>(make: F, ctx: LoopCtx) -> SourceOutcome
where
    S: BlockingSampler,
    F: FnOnce() -> Result<S, SourceError>,
{
    let mut sampler = match make() {
        Ok(s) => s,
        Err(e) => return ctx.unavailable(&e.to_string()),
    };
    let gpu = sampler.describe();
    let mut tally = Tally::default();
    let _waker = unpark_on_stop(&ctx.stop);
    let mut next = Instant::now();
    while !ctx.stop.is_cancelled() {
        let t0 = ctx.now_ms();
        let result = sampler.sample();
        let t1 = ctx.now_ms();
        if let Next::Halt(outcome) = ctx.deliver(&mut tally, t0, t1, result) {
            return SourceOutcome { gpu, ..outcome };
        }
        next += ctx.interval;
        let now = Instant::now();
        if next < now {
            // Missed ticks are skipped, not made up in a burst.
            next = now;
        }
        sleep_until(next, &ctx.stop);
    }
    SourceOutcome {
        gpu,
        ..ctx.finish(&tally)
    }
}

/// Unparks the calling (blocking) thread when `stop` fires, from a task on the current
/// Tokio runtime, so that [`sleep_until`] can sleep a whole interval and still stop at
/// once; the task ends with the returned guard. Without a runtime (unit tests calling a
/// sampler loop directly) nothing is spawned and the sleep wakes in slices instead.
fn unpark_on_stop(stop: &CancellationToken) -> Option<tokio_util::sync::DropGuard> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let thread = std::thread::current();
    let stop = stop.clone();
    let done = CancellationToken::new();
    let ended = done.clone();
    handle.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => thread.unpark(),
            _ = ended.cancelled() => {}
        }
    });
    Some(done.drop_guard())
}

/// Sleeps on a blocking thread until `deadline` or until `stop` fires. The thread is
/// parked, woken by [`unpark_on_stop`] when stopped; a sampler at a 100 ms interval then
/// wakes 10 times a second, not 50. Where no unparker runs, it wakes at least every
/// second to look at `stop`.
fn sleep_until(deadline: Instant, stop: &CancellationToken) {
    const SLICE: Duration = Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if now >= deadline || stop.is_cancelled() {
            return;
        }
        std::thread::park_timeout((deadline - now).min(SLICE));
    }
}

/// Runs a network sampler on a blocking thread of its own with a single-threaded
/// runtime: the poll, its HTTP connection's task and the timer then wake one thread, not
/// the shared runtime's workers in turn, which keeps a fast poll cheap.
fn spawn_network<S: Sampler>(sampler: S, ctx: LoopCtx) -> JoinHandle<SourceOutcome> {
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run_async(sampler, ctx)),
            Err(e) => ctx.unavailable(&format!("no runtime for the sampler: {e}")),
        }
    })
}

/// Runs a network sampler until stopped.
async fn run_async<S: Sampler>(mut sampler: S, ctx: LoopCtx) -> SourceOutcome {
    let mut tick = tokio::time::interval(ctx.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let t0 = ctx.now_ms();
        let result = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            r = sampler.sample() => r,
        };
        let t1 = ctx.now_ms();
        if let Next::Halt(outcome) = ctx.deliver(&mut tally, t0, t1, result) {
            return outcome;
        }
    }
    ctx.finish(&tally)
}

/// How long `ollama_ps` waits for an `/api/ps` answer: a slow one (a listing of many
/// models, a busy server) still gives rows, while an answer later than this says little
/// about when the memory was what it lists.
const PS_PATIENCE: Duration = Duration::from_secs(5);

/// Writes the rows of the `/api/ps` answers `sub` receives until stopped, at the
/// source's interval: an answer is written when it was asked at least an interval
/// (less a quarter, for the poller's jitter) after the last one written, or when it
/// lists other models or sizes than the last listing written (a load or an unload seen
/// by a faster poll shows at once); each answer at most once. When the poller runs at
/// this interval (no other consumer asks faster), every answer is written; when the
/// residency watcher has it ask every 20 ms, `vram.csv` still gets the rows of one
/// answer per interval, plus one per change. Rows are stamped at the midpoint of the
/// poll, as every source's.
async fn run_ps(mut sub: PsSubscription, ctx: LoopCtx) -> SourceOutcome {
    let mut tally = Tally::default();
    let min_gap = ctx.interval - ctx.interval / 4;
    let mut last_at: Option<Instant> = None;
    let mut last_listing: Option<Arc<ps_feed::PsListing>> = None;
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            more = sub.changed() => if !more { break },
        }
        let Some(answer) = sub.latest().answer else {
            continue;
        };
        let due = last_at.is_none_or(|t| answer.asked >= t + min_gap);
        let result = match &answer.result {
            Ok(listing) => {
                let same = last_listing.as_ref().is_some_and(|l| l.same_sizes(listing));
                if (!due && same) || answer.asked < ctx.epoch {
                    // Nothing new yet, or asked before the run's clock started (a
                    // sharded run's start barrier).
                    continue;
                }
                last_listing = Some(listing.clone());
                Ok(ollama_ps::readings(&listing.response))
            }
            Err(e) if due => Err(ollama_ps::classify(e.clone())),
            Err(_) => continue,
        };
        last_at = Some(answer.asked);
        let at = |t: Instant| folder::ms(t.saturating_duration_since(ctx.epoch));
        if let Next::Halt(outcome) =
            ctx.deliver(&mut tally, at(answer.asked), at(answer.answered), result)
        {
            return outcome;
        }
    }
    ctx.finish(&tally)
}

/// How often the `vram.csv` writer writes the rows that came in. No row wakes it: the
/// sources at a 100 ms interval then cost it two wake-ups a second, not one per sample,
/// and each batch reaches the file in one write.
const WRITE_EVERY: Duration = Duration::from_millis(500);

/// Appends rows to `vram.csv` until every sampler has dropped its sender: every
/// [`WRITE_EVERY`] (at once when `stop` fires) it writes what came in and flushes it;
/// once stopped, it writes each row as it comes until the last sender is gone.
fn write_rows(
    mut out: CsvAppender<VramSample>,
    rows: mpsc::Receiver<VramSample>,
    failed: (CancellationToken, Arc<OnceLock<String>>),
    stop: CancellationToken,
) -> (u64, Option<String>) {
    let _waker = unpark_on_stop(&stop);
    let mut written = 0u64;
    let fail = |e: anyhow::Error, written: u64| {
        let msg = format!("{e:#}");
        tracing::warn!("telemetry: writing vram.csv failed: {msg}; sampling stops");
        let _ = failed.1.set(msg.clone());
        failed.0.cancel();
        (written, Some(msg))
    };
    loop {
        let (mut batch, mut gone) = (0u64, false);
        loop {
            let row = match rows.try_recv() {
                Ok(row) => row,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            };
            if let Err(e) = out.write(&row) {
                return fail(e, written);
            }
            batch += 1;
        }
        if batch > 0 {
            if let Err(e) = out.flush() {
                return fail(e, written);
            }
            written += batch;
        }
        if gone {
            return (written, None);
        }
        if stop.is_cancelled() {
            // The sources are ending: wait for their last rows, or for the last sender
            // (a managed server's sampler) to go.
            match rows.recv() {
                Ok(row) => {
                    if let Err(e) = out.write(&row).and_then(|()| out.flush()) {
                        return fail(e, written);
                    }
                    written += 1;
                }
                Err(_) => return (written, None),
            }
        } else {
            sleep_until(Instant::now() + WRITE_EVERY, &stop);
        }
    }
}

/// True when a process called `name` (as the OS reports it) matches `pattern`. Linux
/// cuts process names to 15 bytes, so a 15-byte name matching the start of the pattern
/// counts (`ollama_llama_se` is `ollama_llama_server`).
pub fn process_name_matches(name: &str, pattern: &str) -> bool {
    name == pattern || (name.len() == 15 && pattern.starts_with(name))
}

/// Starts the configured sources. Rows go to `vram_csv` (its header must exist; see
/// `folder::RunFolder`), stamped in ms since `epoch`. Sampling stops at
/// [`TelemetryHandle::stop`] or when `cancel` fires. Fails only on a bad setting (an
/// unknown source, a zero interval) or when `vram_csv` cannot be opened; a source that
/// cannot work here is reported as unavailable instead. Needs a Tokio runtime.
/// `/api/ps` is read from a poller of its own per host; see [`start_with_feeds`] to share
/// one.
pub fn start(
    config: TelemetryConfig,
    epoch: Instant,
    vram_csv: &Path,
    cancel: CancellationToken,
) -> Result<TelemetryHandle> {
    start_with_feeds(config, &[], epoch, vram_csv, cancel)
}

/// [`start`], with `ollama_ps` reading the `/api/ps` answers of `feeds` (one per host,
/// matched by base URL; a host without one gets a poller of its own), so that whatever
/// else reads them (the run's residency watcher) shares one poller per host.
pub fn start_with_feeds(
    config: TelemetryConfig,
    feeds: &[PsFeed],
    epoch: Instant,
    vram_csv: &Path,
    cancel: CancellationToken,
) -> Result<TelemetryHandle> {
    if config.interval.is_zero() {
        bail!("telemetry interval must be greater than zero");
    }
    if config.effective_ps_interval().is_zero() {
        bail!("telemetry /api/ps interval must be greater than zero");
    }
    let mut names: Vec<String> = Vec::new();
    for s in &config.sources {
        if !SOURCES.contains(&s.as_str()) {
            bail!(
                "unknown telemetry source {s:?}; allowed: {}",
                SOURCES.join(", ")
            );
        }
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    let out = folder::append_to::<VramSample>(vram_csv)
        .with_context(|| format!("opening {} for telemetry", vram_csv.display()))?;
    let (tx, rx) = mpsc::channel::<VramSample>();
    let write_failed_token = CancellationToken::new();
    let write_failed = Arc::new(OnceLock::new());
    let failed = (write_failed_token.clone(), write_failed.clone());
    let stop = cancel.child_token();
    let writer_stop = stop.clone();
    let writer = tokio::task::spawn_blocking(move || write_rows(out, rx, failed, writer_stop));
    let mut handle = TelemetryHandle {
        write_failed_token,
        write_failed,
        stop: stop.clone(),
        tasks: Vec::new(),
        writer,
        early: BTreeMap::new(),
        extra: tx.clone(),
    };
    // (source, host): `ollama_ps` once per host of a fleet.
    let mut runs: Vec<(String, String)> = Vec::new();
    for name in names {
        if name == "ollama_ps" && !config.fleet_urls.is_empty() {
            runs.extend(config.fleet_urls.iter().map(|u| (name.clone(), u.clone())));
        } else {
            runs.push((name, String::new()));
        }
    }
    for (name, host) in runs {
        let ctx = LoopCtx {
            name: name.clone(),
            host: host.clone(),
            epoch,
            interval: if name == "ollama_ps" {
                config.effective_ps_interval()
            } else {
                config.interval
            },
            stop: stop.clone(),
            rows: tx.clone(),
        };
        let label = if host.is_empty() {
            name.clone()
        } else {
            format!("{name}@{host}")
        };
        match spawn_source(&name, &config, feeds, ctx) {
            Ok(task) => handle.tasks.push((label, task)),
            Err(reason) => {
                tracing::warn!("telemetry source {label} unavailable: {reason}");
                handle.early.insert(label, format!("unavailable: {reason}"));
            }
        }
    }
    Ok(handle)
}

/// Builds and spawns one source; `Err` is the reason it is unavailable.
fn spawn_source(
    name: &str,
    config: &TelemetryConfig,
    feeds: &[PsFeed],
    ctx: LoopCtx,
) -> Result<JoinHandle<SourceOutcome>, String> {
    let procs = config.process_names.clone();
    match name {
        "nvml" => Ok(tokio::task::spawn_blocking(move || {
            run_blocking(|| nvml::NvmlSampler::new(procs), ctx)
        })),
        "rss" => {
            let interval = config.interval;
            Ok(tokio::task::spawn_blocking(move || {
                run_blocking(|| rss::RssSampler::new(procs, interval), ctx)
            }))
        }
        "ollama_ps" => {
            let url = if ctx.host.is_empty() {
                config
                    .ollama_url
                    .as_deref()
                    .ok_or("no Ollama URL configured")?
            } else {
                ctx.host.as_str()
            };
            let feed = PsFeed::new(url).map_err(|e| format!("bad Ollama URL {url:?}: {e}"))?;
            let feed = feeds
                .iter()
                .find(|f| f.base_url() == feed.base_url())
                .unwrap_or(&feed);
            let sub = feed.subscribe_patient(ctx.interval, PS_PATIENCE.max(ctx.interval));
            Ok(tokio::spawn(run_ps(sub, ctx)))
        }
        "prometheus" => {
            let url = config
                .prometheus_url
                .as_deref()
                .ok_or("no Prometheus URL configured")?;
            let s = prometheus::PromSampler::new(
                "prometheus",
                url,
                config.prometheus_query.as_deref(),
                config.interval,
            )
            .map_err(|e| e.to_string())?;
            Ok(spawn_network(s, ctx))
        }
        "sim" => {
            let url = match (&config.sim_metrics_url, &config.ollama_url) {
                (Some(u), _) => u.clone(),
                (None, Some(base)) => format!("{}/metrics", base.trim_end_matches('/')),
                (None, None) => return Err("no simulator /metrics URL configured".into()),
            };
            let s = prometheus::PromSampler::scrape("sim", &url, config.interval)
                .map_err(|e| e.to_string())?;
            Ok(spawn_network(s, ctx))
        }
        other => Err(format!("unknown source {other:?}")),
    }
}

#[cfg(test)]
mod tests;
