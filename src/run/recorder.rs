//! A run folder being written: `run.json` (before the first request, rewritten after
//! every cell and at the end), the request rows appended and flushed as they arrive,
//! and the telemetry samplers writing `vram.csv`; it holds each host's one `/api/ps`
//! feed, read by the telemetry and by the cells' residency watchers. Knows nothing of
//! how rows are made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::folder::histograms;
use crate::folder::{
    self, CellMeta, RequestRecord, RunFolder, RunHeader, RunMeta, RunStatus, StreamMeta,
    TargetKind, TargetMeta,
};
use crate::ollama::OllamaClient;
use crate::plan;

use crate::engine::sim::SimHandle;
use crate::run::request::planned_requests;
use crate::run::{ProgressEvent, RunOutcome};
use crate::scenario::{Cell, Plan, Scenario};
use crate::telemetry::ps_feed::PsFeed;
use crate::telemetry::{self, TelemetryConfig};

/// A run folder being written: `run.json`, the request-row writer and the telemetry
/// samplers, from the first request to `close`.
pub struct Recorder {
    /// The run folder.
    pub dir: PathBuf,
    /// `run.json` and the folder's files.
    pub writer: RunFolder,
    /// Time zero of every row and sample.
    pub epoch: Instant,
    /// Where request rows go (appended and flushed in order of arrival).
    pub rows: mpsc::UnboundedSender<RequestRecord>,
    /// Each host's `/api/ps` feed, in the order of the clients: the telemetry's
    /// `ollama_ps` rows and every cell's residency watcher read the same poller;
    /// adaptive ([`PsFeed::adaptive`]) unless the scenario sets `ps_adaptive = false`.
    pub feeds: Vec<PsFeed>,
    rows_task: tokio::task::JoinHandle<Result<(u64, u64)>>,
    telemetry: Result<telemetry::TelemetryHandle>,
    telemetry_cancel: CancellationToken,
    sim_loads: BTreeMap<String, u64>,
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
    /// once), with time zero at `epoch` (default: now), starts telemetry against `client`'s target and the row writer.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: PathBuf,
        epoch: Option<Instant>,
        scenario: &Scenario,
        meta: RunMeta,
        clients: &[OllamaClient],
        is_sim: bool,
        progress: &mpsc::UnboundedSender<ProgressEvent>,
        cancel: &CancellationToken,
    ) -> Result<Recorder> {
        let sharded = meta.shard.is_some();
        let writer = RunFolder::create(&dir, &scenario.source, meta)?;
        // From here on run.json says "running": a failure before the first request
        // ends it (marked failed, or removed) before the error goes up.
        let started = (|| -> Result<_> {
            // A disk without room for the reserve could not record how the run ends;
            // another failure (a file-size limit) leaves the small rewrites possible.
            match folder::reserve_space(&dir) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                    ) =>
                {
                    return Err(folder::RunFolderUnwritable {
                        dir: dir.display().to_string(),
                        why: format!(
                            "cannot set aside {} KiB to record how the run ends ({e}); free some space on that disk",
                            folder::RESERVE_BYTES / 1024
                        ),
                    }
                    .into());
                }
                Err(e) => tracing::warn!(
                    "cannot set aside {} KiB in {} ({e}); going on without it",
                    folder::RESERVE_BYTES / 1024,
                    dir.display()
                ),
            }
            // `ps_adaptive` (the default): `/api/ps` is polled fast only around the loads and
            // unloads the run expects (each send is told to the feed). A shard cannot
            // expect the loads the other shards' sends cause: it polls at the fixed
            // intervals.
            let adaptive = scenario.telemetry.ps_adaptive && !sharded;
            let feeds = clients
                .iter()
                .map(|c| {
                    if adaptive {
                        PsFeed::adaptive(c.base_url())
                    } else {
                        PsFeed::new(c.base_url())
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .context("polling /api/ps of the target")?;
            let rows_csv = folder::append_to::<RequestRecord>(&dir.join(folder::REQUESTS_CSV))?;
            Ok((feeds, rows_csv))
        })();
        let (feeds, rows_csv) = match started {
            Ok(started) => started,
            Err(e) => {
                folder::release_space(&dir);
                let what = writer.abandon(&format!("{e:#}"));
                return Err(e.context(format!("the run could not start ({what})")));
            }
        };
        let fault = WriteFault {
            first: Default::default(),
            stop_run: cancel.clone(),
        };
        let epoch = epoch.unwrap_or_else(Instant::now);
        let telemetry_cancel = cancel.child_token();
        let telemetry = telemetry::start_with_feeds(
            telemetry_config(scenario, clients, is_sim),
            &feeds,
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
                    why = failed => fault.fail(folder::VRAM_CSV, &why),
                    _ = done.cancelled() => {}
                }
            });
        }
        let (rows, rows_rx) = mpsc::unbounded_channel::<RequestRecord>();
        let rows_task = tokio::spawn(write_rows(
            rows_csv,
            rows_rx,
            progress.clone(),
            fault.clone(),
        ));
        Ok(Recorder {
            dir,
            writer,
            epoch,
            rows,
            feeds,
            rows_task,
            telemetry,
            telemetry_cancel,
            sim_loads: BTreeMap::new(),
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
            self.sim_loads
                .insert(cell.to_string(), now.saturating_sub(before));
        }
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> f64 {
        folder::ms(self.epoch.elapsed())
    }

    /// A sender into `vram.csv` for rows sampled outside the telemetry sources (a
    /// managed server's process tree); `None` when the telemetry did not start.
    pub fn extra_rows(&self) -> Option<std::sync::mpsc::Sender<folder::VramSample>> {
        self.telemetry.as_ref().ok().map(|t| t.extra_rows())
    }

    /// Rewrites `run.json`; when it cannot be written the run stops (see `close`).
    pub fn save_meta(&mut self) {
        if let Err(e) = self.writer.write_meta() {
            self.fault.fail(folder::RUN_JSON, &format!("{e:#}"));
        }
    }

    /// Notes a problem that did not stop the run (shown in the report).
    pub fn warn(&mut self, text: String, progress: &mpsc::UnboundedSender<ProgressEvent>) {
        let _ = progress.send(ProgressEvent::Note(text.clone()));
        self.writer.meta_mut().warnings.push(text);
    }

    /// Ends a run whose start failed after the folder was opened, before its first
    /// request (`error`): it closes as failed; when even that cannot be recorded its
    /// `run.json` is removed, so the folder never stays "running". Returns the error.
    pub async fn fail_start(
        self,
        error: anyhow::Error,
        sim_handle: Option<&SimHandle>,
    ) -> anyhow::Error {
        let dir = self.dir.clone();
        let why = format!("the run could not start: {error:#}");
        match self.close(RunStatus::Failed, Some(why), sim_handle).await {
            Ok(_) => error.context(format!(
                "the run could not start ({} is marked failed)",
                dir.display()
            )),
            Err(_) => {
                let _ = std::fs::remove_file(dir.join(folder::RUN_JSON));
                error.context(format!(
                    "the run could not start ({} could not be marked failed; its run.json was removed)",
                    dir.display()
                ))
            }
        }
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
                    fault.fail(folder::VRAM_CSV, &e);
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
            sim.loads = Some(stats.loads);
            sim.evictions = Some(stats.evictions);
            sim.expirations = Some(stats.expirations);
            sim.loads_per_cell = sim_loads;
        }
        // "Fits together?" on the sets of models the cells ran, from the memory the
        // run sampled: the report reads it from run.json.
        match folder::read_vram(&dir) {
            Ok(samples) => meta.fits = plan::fits::sections(meta, &samples),
            Err(e) => meta.warnings.push(format!("vram.csv: {e:#}")),
        }
        // A shard leaves its latency histograms, to be added (never averaged) by merge.
        if meta.shard.is_some() {
            // Streamed row by row: a shard of millions of rows holds only its histograms.
            let mut hists = histograms::RowHistograms::default();
            match folder::for_each_row(&dir.join(folder::REQUESTS_CSV), &mut Vec::new(), |r| {
                hists.add(&r);
                Ok(())
            })
            .and_then(|()| histograms::write(&dir, &hists.finish()))
            {
                Ok(()) => {
                    if let Some(shard) = meta.shard.as_mut() {
                        shard.histograms = Some(histograms::SETTINGS);
                    }
                }
                Err(e) => fault.fail(histograms::HISTOGRAMS_DIR, &format!("{e:#}")),
            }
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
        meta.ended_at = Some(folder::utc_now_rfc3339());
        // The space set aside at the start lets this last write succeed on a full disk.
        folder::release_space(&dir);
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

/// Appends every row as it arrives and reports progress; returns (rows, errors).
async fn write_rows(
    mut csv: folder::CsvAppender<RequestRecord>,
    mut rows: mpsc::UnboundedReceiver<RequestRecord>,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    fault: WriteFault,
) -> Result<(u64, u64)> {
    let (mut n, mut errors) = (0u64, 0u64);
    // Rows are flushed at most ROW_FLUSH_EVERY after they arrive: one write to the
    // file per period, not one per request.
    let flush_at = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(flush_at);
    let mut dirty = false;
    let mut failed = None;
    loop {
        let row = tokio::select! {
            row = rows.recv() => row,
            _ = &mut flush_at, if dirty => {
                dirty = false;
                if let Err(e) = csv.flush() {
                    failed = Some(e);
                    break;
                }
                continue;
            }
        };
        let Some(row) = row else { break };
        if let Err(e) = csv.write(&row) {
            failed = Some(e);
            break;
        }
        if !dirty {
            dirty = true;
            flush_at
                .as_mut()
                .reset(tokio::time::Instant::now() + ROW_FLUSH_EVERY);
        }
        n += 1;
        errors += row.is_error() as u64;
        let _ = progress.send(ProgressEvent::RequestDone {
            error: row.is_error(),
            cold: row.cold,
        });
    }
    if let Some(e) = failed.or_else(|| csv.flush().err()) {
        // Warned at once; the run stops and the rows still in flight are dropped.
        fault.fail(folder::REQUESTS_CSV, &format!("{e:#}"));
        while rows.recv().await.is_some() {}
    }
    Ok((n, errors))
}

/// How long a request's row may wait in memory before it is written to
/// `requests.csv` (Ctrl-C and the end of a run flush at once).
const ROW_FLUSH_EVERY: Duration = Duration::from_millis(100);

fn telemetry_config(
    scenario: &Scenario,
    clients: &[OllamaClient],
    is_sim: bool,
) -> TelemetryConfig {
    let base_url = clients.first().map_or("", |c| c.base_url());
    let t = &scenario.telemetry;
    let mut sources = t.sources.clone();
    if clients.is_empty() && !is_sim {
        // Only servers kabench starts (no Ollama): nothing answers /api/ps.
        sources.retain(|s| s != "ollama_ps");
    }
    if is_sim && !sources.iter().any(|s| s == "sim") {
        sources.push("sim".into());
    }
    TelemetryConfig {
        sources,
        interval: t.interval,
        ps_interval: t.ps_interval,
        process_names: t.process_names.clone(),
        ollama_url: Some(base_url.to_string()),
        fleet_urls: if clients.len() > 1 {
            clients.iter().map(|c| c.base_url().to_string()).collect()
        } else {
            Vec::new()
        },
        prometheus_url: t.prometheus_url.clone(),
        prometheus_query: t.prometheus_query.clone(),
        sim_metrics_url: is_sim.then(|| format!("{}/metrics", base_url.trim_end_matches('/'))),
    }
}

/// `run.json` as it stands before the first request.
pub fn initial_meta(
    scenario: &Scenario,
    plan: &Plan,
    kind: TargetKind,
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
                    keep_alive: s.keep_alive.clone(),
                    api: s.api,
                    arrival: s.arrival.kind().to_string(),
                    rate_per_s: s.arrival.rate().map(|r| r.value()),
                    num_ctx: Some(s.num_ctx),
                    planned: planned_requests(&Cell {
                        index: 0,
                        id: String::new(),
                        params: Default::default(),
                        streams: vec![s.clone()],
                        server: None,
                    })
                    .unwrap_or(0) as u32,
                })
                .collect(),
            started_ms: None,
            ended_ms: None,
            host: None,
        })
        .collect();
    let mut telemetry = std::collections::BTreeMap::new();
    telemetry.insert(
        "release_tolerance_ms".to_string(),
        format!("{}", folder::ms(scenario.telemetry.release_tolerance)),
    );
    let mut meta = RunMeta::new(RunHeader {
        scenario: scenario.name.clone(),
        scenario_file: scenario.path.display().to_string(),
        scenario_sha256: format!("{:x}", Sha256::digest(scenario.source.as_bytes())),
        seed: scenario.seed,
        target: TargetMeta {
            kind,
            url: url.into(),
            urls: Vec::new(),
        },
        ollama_version: Some(version.to_string()),
        cold_threshold_ms: folder::ms(scenario.run.cold_threshold),
        cost: scenario.cost.clone(),
        slo: scenario.slo.clone(),
    });
    meta.sim = sim_handle.map(|h| h.state.describe(&plan_models(plan)));
    meta.cells = cells;
    meta.telemetry = telemetry;
    meta.idle_horizon = Some(idle_horizon(plan));
    meta
}

/// The idle-memory horizon of a plan: one tail after every cell's last send, from the
/// longest finite keep_alive its streams send (`folder::horizon`).
pub fn idle_horizon(plan: &Plan) -> folder::IdleHorizon {
    // A server's idle-unload value (a start flag for llama-server) counts as the
    // keep_alive its streams do not send.
    let knobs = plan
        .cells
        .iter()
        .filter_map(|c| match &c.params.keep_alive {
            Some(folder::SweptKeepAlive::Value(k)) => Some(k),
            _ => None,
        });
    folder::IdleHorizon::of_keep_alives(
        plan.cells
            .iter()
            .flat_map(|c| c.streams.iter())
            .map(|s| s.keep_alive.as_ref())
            .chain(knobs.map(Some)),
    )
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
