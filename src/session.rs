//! One whole `kabench run`: picks the target (embedded simulator or a live Ollama),
//! checks it, creates the run folder before the first request, starts telemetry, runs
//! every cell of the plan in order through `runner`, streams rows to `requests.csv`, and
//! leaves a complete folder (also on Ctrl-C or a dead target). Rendering is `report`'s.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ollama::OllamaClient;
use crate::ollama::client::ClientError;
use crate::record::{
    self, CellMeta, RequestRecord, RunMeta, RunStatus, RunWriter, StreamMeta, TargetMeta,
};
use crate::runner::{self, ProgressEvent, RunnerConfig};
use crate::scenario::{Cell, Plan, Scenario, TargetSpec};
use crate::sim::{self, SimHandle};
use crate::telemetry::{self, TelemetryConfig};

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded simulator, in-process on a free loopback port.
    Sim,
    /// A live Ollama (`OLLAMA_HOST` forms).
    Ollama(String),
}

impl Target {
    /// `sim`, or an `OLLAMA_HOST`-style address.
    pub fn parse(text: &str) -> Target {
        if text.trim().eq_ignore_ascii_case("sim") {
            Target::Sim
        } else {
            Target::Ollama(text.trim().to_string())
        }
    }

    /// The CLI choice, else the scenario's `[target]`, else the simulator.
    pub fn resolve(cli: Option<&Target>, scenario: &Scenario) -> Target {
        if let Some(t) = cli {
            return t.clone();
        }
        match &scenario.target {
            Some(TargetSpec::Ollama { url }) => Target::Ollama(
                url.clone()
                    .or_else(|| std::env::var("OLLAMA_HOST").ok())
                    .unwrap_or_else(|| "127.0.0.1:11434".into()),
            ),
            _ => Target::Sim,
        }
    }
}

/// A model of the plan that the target does not have.
#[derive(Debug, thiserror::Error)]
#[error(
    "model{} not installed on {target}: {}; run {} first, or pass --pull",
    if models.len() > 1 { "s" } else { "" },
    models.join(", "),
    models.iter().map(|m| format!("`ollama pull {m}`")).collect::<Vec<_>>().join(" and ")
)]
pub struct MissingModels {
    /// The target's URL.
    pub target: String,
    /// Missing model tags.
    pub models: Vec<String>,
}

/// Options of one run beyond the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Target.
    pub target: Target,
    /// Run folder; default `reports/<scenario>-<UTC time>`.
    pub out: Option<PathBuf>,
    /// Pull missing models instead of stopping.
    pub pull: bool,
    /// Load and unload every model once before the first cell so that every cell meets
    /// the same page-cache state.
    pub prewarm: bool,
}

/// What a finished run left.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run folder.
    pub dir: PathBuf,
    /// How it ended.
    pub status: RunStatus,
    /// Rows written.
    pub requests: u64,
    /// Failed rows.
    pub errors: u64,
}

/// Longest tail a cell waits after its last request for the target to release the
/// model on its own (so release delay and idle VRAM are observed); beyond it, the
/// next cell unloads everything.
pub const RELEASE_WAIT_CAP: Duration = Duration::from_secs(30);

/// Starts the embedded simulator (on a free loopback port) when the target is `sim`.
pub async fn start_target(scenario: &Scenario, target: &Target) -> Result<Option<SimHandle>> {
    match target {
        Target::Sim => Ok(Some(
            sim::spawn(&scenario.sim, scenario.seed, "127.0.0.1:0".parse()?)
                .await
                .context("starting the embedded simulator")?,
        )),
        Target::Ollama(_) => Ok(None),
    }
}

/// Connects to the target and records its `/api/version`: (kind, client, version).
pub async fn connect(
    target: &Target,
    sim_handle: Option<&SimHandle>,
) -> Result<(&'static str, OllamaClient, String)> {
    let (kind, url) = match (target, sim_handle) {
        (Target::Sim, Some(h)) => ("sim", h.base_url()),
        (Target::Ollama(u), _) => ("ollama", u.clone()),
        (Target::Sim, None) => anyhow::bail!("the simulator did not start"),
    };
    let client = OllamaClient::new(&url).with_context(|| format!("bad target address {url:?}"))?;
    let version = client.version().await.map_err(|e| match e {
        ClientError::Http { status, .. } if (300..400).contains(&status) => {
            anyhow::anyhow!("{} answered GET /api/version with {e}", client.base_url())
        }
        // It answered, but not as Ollama does: a different server on that address.
        ClientError::BadJson(_) | ClientError::Http { .. } => anyhow::anyhow!(
            "{} answered GET /api/version but is not Ollama ({e}); check the address (--target or OLLAMA_HOST: Ollama listens on port 11434 by default), or use --target sim",
            client.base_url()
        ),
        _ => anyhow::anyhow!(
            "cannot reach Ollama at {}: {e}; start it (`ollama serve`), set OLLAMA_HOST or --target, or use --target sim",
            client.base_url()
        ),
    })?;
    Ok((kind, client, version))
}

/// A run folder being written: `run.json`, the request-row writer and the telemetry
/// samplers, from the first request to `close`.
pub struct Recorder {
    /// The run folder.
    pub dir: PathBuf,
    /// `run.json` and the folder's files.
    pub writer: RunWriter,
    /// Time zero of every row and sample.
    pub epoch: Instant,
    /// Where request rows go (appended and flushed in order of arrival).
    pub rows: mpsc::UnboundedSender<RequestRecord>,
    rows_task: tokio::task::JoinHandle<Result<(u64, u64)>>,
    telemetry: Result<telemetry::TelemetryHandle>,
    telemetry_cancel: CancellationToken,
    sim_loads: serde_json::Map<String, serde_json::Value>,
    fault: WriteFault,
}

/// The first file of the run folder that could not be written (a full disk): it is
/// warned about at once and stops the run, which then ends `failed` with this reason.
#[derive(Clone)]
struct WriteFault {
    first: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    stop_run: CancellationToken,
}

impl WriteFault {
    fn fail(&self, what: &str, why: &str) {
        if let Ok(mut first) = self.first.lock()
            && first.is_none()
        {
            let reason = format!("cannot write {what}: {why}");
            tracing::warn!("{reason}; stopping the run");
            *first = Some(reason);
        }
        self.stop_run.cancel();
    }

    fn reason(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }
}

impl Recorder {
    /// Creates the folder with `meta` (before any request, so a bad `--out` fails at
    /// once), starts telemetry against `client`'s target and the row writer.
    pub fn open(
        dir: PathBuf,
        scenario: &Scenario,
        meta: RunMeta,
        client: &OllamaClient,
        is_sim: bool,
        progress: &mpsc::UnboundedSender<ProgressEvent>,
        cancel: &CancellationToken,
    ) -> Result<Recorder> {
        let writer = RunWriter::create(&dir, &scenario.source, meta)?;
        record::reserve_space(&dir);
        let fault = WriteFault {
            first: Default::default(),
            stop_run: cancel.clone(),
        };
        let epoch = Instant::now();
        let telemetry_cancel = cancel.child_token();
        let telemetry = telemetry::start(
            telemetry_config(scenario, client.base_url(), is_sim),
            epoch,
            writer.vram_path(),
            telemetry_cancel.clone(),
        );
        if let Ok(handle) = &telemetry {
            let (failed, fault, done) = (
                handle.write_failure(),
                fault.clone(),
                telemetry_cancel.clone(),
            );
            tokio::spawn(async move {
                tokio::select! {
                    why = failed => fault.fail(record::VRAM_CSV, &why),
                    _ = done.cancelled() => {}
                }
            });
        }
        let (rows, rows_rx) = mpsc::unbounded_channel::<RequestRecord>();
        let rows_task = tokio::spawn(write_rows(
            record::append_to::<RequestRecord>(&dir.join(record::REQUESTS_CSV))?,
            rows_rx,
            progress.clone(),
            fault.clone(),
        ));
        Ok(Recorder {
            dir,
            writer,
            epoch,
            rows,
            rows_task,
            telemetry,
            telemetry_cancel,
            sim_loads: serde_json::Map::new(),
            fault,
        })
    }

    /// The simulator's load counter now (None against a live Ollama).
    pub fn sim_loads_now(sim: Option<&SimHandle>) -> Option<u64> {
        sim.map(|h| h.state.stats().loads)
    }

    /// Records how many loads the simulator made during a cell (`sim.loads_per_cell` in
    /// `run.json`), the server's own count to check the cold verdicts against.
    pub fn count_sim_loads(&mut self, cell: &str, sim: Option<&SimHandle>, before: Option<u64>) {
        if let (Some(now), Some(before)) = (Self::sim_loads_now(sim), before) {
            self.sim_loads.insert(
                cell.to_string(),
                serde_json::json!(now.saturating_sub(before)),
            );
        }
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> f64 {
        record::ms(self.epoch.elapsed())
    }

    /// Rewrites `run.json`; when it cannot be written the run stops (see `close`).
    pub fn save_meta(&mut self) {
        if let Err(e) = self.writer.write_meta() {
            self.fault.fail(record::RUN_JSON, &format!("{e:#}"));
        }
    }

    /// Notes a problem that did not stop the run (shown in the report).
    pub fn warn(&mut self, text: String, progress: &mpsc::UnboundedSender<ProgressEvent>) {
        let _ = progress.send(ProgressEvent::Note(text.clone()));
        self.writer.meta_mut().warnings.push(text);
    }

    /// Drains the rows, stops telemetry, records the simulator's counters and how the
    /// run ended, and rewrites `run.json`.
    pub async fn close(
        self,
        mut status: RunStatus,
        mut failure: Option<String>,
        sim_handle: Option<&SimHandle>,
    ) -> Result<RunOutcome> {
        let Recorder {
            dir,
            mut writer,
            rows,
            rows_task,
            telemetry,
            telemetry_cancel,
            sim_loads,
            fault,
            ..
        } = self;
        drop(rows);
        let (requests, errors) = rows_task.await.context("request writer stopped")??;
        telemetry_cancel.cancel();
        let meta = writer.meta_mut();
        match telemetry {
            Ok(handle) => {
                let report = handle.stop().await;
                meta.telemetry.extend(report.sources);
                if let Some(e) = report.write_error {
                    fault.fail(record::VRAM_CSV, &e);
                    meta.warnings.push(format!("vram.csv: {e}"));
                }
                if meta.gpu.is_none() {
                    meta.gpu = report.gpu;
                }
            }
            Err(e) => {
                meta.telemetry
                    .insert("telemetry".into(), format!("failed: {e:#}"));
            }
        }
        if let (Some(h), Some(sim)) = (sim_handle, meta.sim.as_mut()) {
            let stats = h.state.stats();
            sim["loads"] = serde_json::json!(stats.loads);
            sim["evictions"] = serde_json::json!(stats.evictions);
            sim["expirations"] = serde_json::json!(stats.expirations);
            sim["loads_per_cell"] = serde_json::Value::Object(sim_loads);
        }
        // A file that could not be written fails the run, whatever else happened.
        if let Some(reason) = fault.reason() {
            status = RunStatus::Failed;
            failure = Some(match failure {
                Some(f) => format!("{reason}; {f}"),
                None => reason,
            });
        }
        meta.status = status;
        meta.failure = failure;
        meta.ended_at = Some(record::utc_now_rfc3339());
        // The space set aside at the start lets this last write succeed on a full disk.
        record::release_space(&dir);
        writer
            .write_meta()
            .with_context(|| format!("recording that the run ended {status:?} in run.json"))?;
        Ok(RunOutcome {
            dir,
            status,
            requests,
            errors,
        })
    }
}

/// Runs a whole scenario. Progress goes to `progress`; Ctrl-C arrives through `cancel`.
pub async fn run(
    scenario: &Scenario,
    plan: &Plan,
    options: &RunOptions,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    cancel: CancellationToken,
) -> Result<RunOutcome> {
    with_target(scenario, &options.target, async |sim| {
        run_against(scenario, plan, options, sim, progress, cancel).await
    })
    .await
}

/// Runs `body` against the target, with the embedded simulator started before and
/// stopped after when the target is `sim`.
pub async fn with_target<T>(
    scenario: &Scenario,
    target: &Target,
    body: impl AsyncFnOnce(Option<&SimHandle>) -> Result<T>,
) -> Result<T> {
    let sim_handle = start_target(scenario, target).await?;
    let result = body(sim_handle.as_ref()).await;
    if let Some(h) = sim_handle {
        h.shutdown().await;
    }
    result
}

async fn run_against(
    scenario: &Scenario,
    plan: &Plan,
    options: &RunOptions,
    sim_handle: Option<&SimHandle>,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    cancel: CancellationToken,
) -> Result<RunOutcome> {
    let (kind, client, version) = connect(&options.target, sim_handle).await?;
    check_models(&client, plan, options.pull, &progress).await?;
    let dir = options
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&scenario.name));
    let meta = initial_meta(
        scenario,
        plan,
        kind,
        client.base_url(),
        &version,
        sim_handle,
    );
    let mut rec = Recorder::open(
        dir,
        scenario,
        meta,
        &client,
        sim_handle.is_some(),
        &progress,
        &cancel,
    )?;
    let runner_cfg = RunnerConfig {
        concurrency: scenario.run.concurrency,
        timeout: scenario.run.timeout,
        cold_threshold: scenario.run.cold_threshold,
        unload_timeout: scenario.run.unload_timeout,
        grace: scenario.run.grace,
        check_resident: true,
    };
    if options.prewarm && !cancel.is_cancelled() {
        prewarm(&client, plan, &runner_cfg, &progress, &cancel).await;
    }
    let tail = release_tail(plan);
    // Three sampling intervals (at least 100 ms) so the release shows in vram.csv.
    let settle = (scenario.telemetry.interval * 3).max(Duration::from_millis(100));
    let mut status = RunStatus::Complete;
    let mut failure = None;
    for cell in &plan.cells {
        if cancel.is_cancelled() {
            break;
        }
        if let Err(e) = runner::unload_all_until(&client, runner_cfg.unload_timeout, &cancel).await
        {
            rec.warn(format!("before cell {}: {e:#}", cell.id), &progress);
        }
        let _ = progress.send(ProgressEvent::CellStarted {
            index: cell.index,
            of: plan.cells.len(),
            id: cell.id.clone(),
            requests: runner::planned_requests(cell)?,
        });
        let loads_before = Recorder::sim_loads_now(sim_handle);
        let run = runner::run_cell(
            &client,
            cell,
            &runner_cfg,
            rec.epoch,
            rec.rows.clone(),
            cancel.clone(),
        )
        .await;
        match run {
            Ok(timing) => {
                if !cancel.is_cancelled() {
                    await_release(&client, tail, settle, &cancel).await;
                }
                rec.count_sim_loads(&cell.id, sim_handle, loads_before);
                let ended = rec.now_ms();
                let m = &mut rec.writer.meta_mut().cells[cell.index];
                m.started_ms = Some(timing.started_ms);
                m.ended_ms = Some(ended);
            }
            Err(e) => {
                status = RunStatus::Failed;
                failure = Some(format!("cell {}: {e:#}", cell.id));
                break;
            }
        }
        let _ = progress.send(ProgressEvent::CellFinished {
            id: cell.id.clone(),
        });
        rec.save_meta();
        if !scenario.run.pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(scenario.run.pause) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
    if cancel.is_cancelled() && status == RunStatus::Complete {
        status = RunStatus::Interrupted;
    }
    rec.close(status, failure, sim_handle).await
}

/// Appends every row as it arrives and reports progress; returns (rows, errors).
async fn write_rows(
    mut csv: record::CsvAppender<RequestRecord>,
    mut rows: mpsc::UnboundedReceiver<RequestRecord>,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    fault: WriteFault,
) -> Result<(u64, u64)> {
    let (mut n, mut errors) = (0u64, 0u64);
    while let Some(row) = rows.recv().await {
        if let Err(e) = csv.append(&row) {
            // Warned at once; the run stops and the rows still in flight are dropped.
            fault.fail(record::REQUESTS_CSV, &format!("{e:#}"));
            while rows.recv().await.is_some() {}
            break;
        }
        n += 1;
        errors += row.is_error() as u64;
        let _ = progress.send(ProgressEvent::RequestDone {
            error: row.is_error(),
            cold: row.cold,
        });
    }
    Ok((n, errors))
}

/// Every distinct model of the plan must be installed (`/api/show`), or pulled with `--pull`.
pub async fn check_models(
    client: &OllamaClient,
    plan: &Plan,
    pull: bool,
    progress: &mpsc::UnboundedSender<ProgressEvent>,
) -> Result<()> {
    let models: BTreeSet<&str> = plan
        .cells
        .iter()
        .flat_map(|c| c.streams.iter().map(|s| s.model.as_str()))
        .collect();
    let mut missing = Vec::new();
    for m in models {
        match client.show(m).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => missing.push(m.to_string()),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "asking {} about model {m}: {e}",
                    client.base_url()
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !pull {
        return Err(MissingModels {
            target: client.base_url().to_string(),
            models: missing,
        }
        .into());
    }
    for m in &missing {
        let _ = progress.send(ProgressEvent::Note(format!("pulling {m}")));
        let mut last = String::new();
        client
            .pull(m, |p| {
                if p.status != last {
                    last = p.status.clone();
                    let _ = progress.send(ProgressEvent::Note(format!("{m}: {}", p.status)));
                }
            })
            .await
            .with_context(|| format!("pulling {m}"))?;
    }
    Ok(())
}

/// Loads and unloads each model once, so every cell starts from the same page cache.
/// Each load is bounded by the requests' timeout, each unload by `unload_timeout`, and
/// Ctrl-C (`cancel`) ends it.
async fn prewarm(
    client: &OllamaClient,
    plan: &Plan,
    cfg: &RunnerConfig,
    progress: &mpsc::UnboundedSender<ProgressEvent>,
    cancel: &CancellationToken,
) {
    let mut seen = BTreeSet::new();
    for s in plan.cells.iter().flat_map(|c| c.streams.iter()) {
        if cancel.is_cancelled() {
            return;
        }
        if !seen.insert((s.model.clone(), s.num_ctx)) {
            continue;
        }
        let _ = progress.send(ProgressEvent::Note(format!("prewarming {}", s.model)));
        let _ = runner::unload_all_until(client, cfg.unload_timeout, cancel).await;
        if let Err(e) = client
            .load_until(&s.model, Some(s.num_ctx), cfg.timeout, cancel)
            .await
        {
            let _ = progress.send(ProgressEvent::Note(format!("prewarm {}: {e}", s.model)));
        }
    }
}

/// How long each cell is watched after its last request: the longest finite
/// keep_alive of the plan (capped at `RELEASE_WAIT_CAP`) plus a second. Every cell gets
/// the same tail, so idle VRAM is compared over the same horizon: a forever model keeps
/// accruing through it, a released one stops early.
pub fn release_tail(plan: &Plan) -> Duration {
    let longest = plan
        .cells
        .iter()
        .flat_map(|c| c.streams.iter())
        .filter_map(|s| s.keep_alive.as_ref().and_then(|k| k.duration()))
        .filter(|d| *d <= RELEASE_WAIT_CAP)
        .max()
        .unwrap_or(Duration::ZERO);
    longest + Duration::from_secs(1)
}

/// After a cell's last request, watches until the target has released every model
/// (then nothing more accrues) or `tail` has passed. After a release it waits `settle`
/// more, so every telemetry source samples the freed memory inside the cell.
async fn await_release(
    client: &OllamaClient,
    tail: Duration,
    settle: Duration,
    cancel: &CancellationToken,
) {
    let deadline = Instant::now() + tail;
    while Instant::now() < deadline && !cancel.is_cancelled() {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.ps_until(left, cancel).await {
            Ok(ps) if ps.models.is_empty() => {
                tokio::select! {
                    _ = tokio::time::sleep(settle) => {}
                    _ = cancel.cancelled() => {}
                }
                return;
            }
            Err(_) => return,
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

fn telemetry_config(scenario: &Scenario, base_url: &str, is_sim: bool) -> TelemetryConfig {
    let t = &scenario.telemetry;
    let mut sources = t.sources.clone();
    if is_sim && !sources.iter().any(|s| s == "sim") {
        sources.push("sim".into());
    }
    TelemetryConfig {
        sources,
        interval: t.interval,
        ps_interval: t.ps_interval,
        process_names: t.process_names.clone(),
        ollama_url: Some(base_url.to_string()),
        prometheus_url: t.prometheus_url.clone(),
        prometheus_query: t.prometheus_query.clone(),
        sim_metrics_url: is_sim.then(|| format!("{}/metrics", base_url.trim_end_matches('/'))),
    }
}

/// `run.json` as it stands before the first request.
pub fn initial_meta(
    scenario: &Scenario,
    plan: &Plan,
    kind: &str,
    url: &str,
    version: &str,
    sim_handle: Option<&SimHandle>,
) -> RunMeta {
    let cells = plan
        .cells
        .iter()
        .map(|c| CellMeta {
            id: c.id.clone(),
            params: c.params.clone(),
            streams: c
                .streams
                .iter()
                .map(|s| StreamMeta {
                    name: s.name.clone(),
                    model: s.model.clone(),
                    keep_alive: s
                        .keep_alive
                        .as_ref()
                        .map(|k| k.written().to_string())
                        .unwrap_or_default(),
                    keep_alive_s: s
                        .keep_alive
                        .as_ref()
                        .and_then(|k| k.duration())
                        .map(|d| d.as_secs_f64()),
                    keep_alive_forever: s.keep_alive.as_ref().is_some_and(|k| k.is_forever()),
                    api: s.api.as_str().to_string(),
                    arrival: s.arrival.kind().to_string(),
                    rate_per_s: s.arrival.rate().map(|r| r.value()),
                    num_ctx: Some(s.num_ctx),
                    planned: runner::planned_requests(&Cell {
                        index: 0,
                        id: String::new(),
                        params: Default::default(),
                        streams: vec![s.clone()],
                    })
                    .unwrap_or(0) as u32,
                })
                .collect(),
            started_ms: None,
            ended_ms: None,
        })
        .collect();
    let mut telemetry = std::collections::BTreeMap::new();
    telemetry.insert(
        "release_tolerance_ms".to_string(),
        format!("{}", record::ms(scenario.telemetry.release_tolerance)),
    );
    RunMeta {
        tool: "kabench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        scenario: scenario.name.clone(),
        scenario_file: scenario.path.display().to_string(),
        scenario_sha256: format!("{:x}", Sha256::digest(scenario.source.as_bytes())),
        seed: scenario.seed,
        target: TargetMeta {
            kind: kind.into(),
            url: url.into(),
        },
        ollama_version: Some(version.to_string()),
        sim: sim_handle.map(|h| h.state.describe(&plan_models(plan))),
        gpu: None,
        started_at: record::utc_now_rfc3339(),
        ended_at: None,
        status: RunStatus::Running,
        failure: None,
        cold_threshold_ms: record::ms(scenario.run.cold_threshold),
        cells,
        telemetry,
        warnings: Vec::new(),
    }
}

/// Distinct (model, num_ctx) pairs of a plan, in first-use order.
pub fn plan_models(plan: &Plan) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for s in plan.cells.iter().flat_map(|c| c.streams.iter()) {
        if !out.iter().any(|(m, c)| *m == s.model && *c == s.num_ctx) {
            out.push((s.model.clone(), s.num_ctx));
        }
    }
    out
}

/// `reports/<scenario>-<UTC yyyymmddThhmmssZ>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new("reports").join(format!(
        "{safe}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    ))
}
