//! One run of a scenario against a target, leaving a complete run folder (also on
//! Ctrl-C or a dead target). This module owns the per-cell loop once: unload every
//! model, announce the cell, let the driver run it, count the simulator's loads,
//! record when the cell ran, rewrite `run.json`; interruption and failure end it the
//! same way for every driver. The drivers supply only "run this cell":
//! `open_loop` (`kabench run`: intended send times, a concurrency cap) and
//! `closed_loop` (`kabench swarm`: goose users); `target` reaches the target,
//! `recorder` writes the folder, `request` builds each request and its row. The
//! closed-loop driver never imports the open-loop one, and nothing below `run` (nor the
//! report side, which reads only the folder) imports `run`.

pub mod closed_loop;
pub mod llama_cell;
pub mod llama_kinds;
pub mod open_loop;
pub mod pacer;
pub mod recorder;
pub mod release;
pub mod request;
pub mod residency;
pub mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::sim::SimHandle;
use crate::folder::{RunMeta, RunStatus};
use crate::ollama::{ClientError, OllamaClient};
use crate::scenario::{Cell, Plan, Scenario};

pub use recorder::Recorder;
pub use target::{MissingModels, StoppedBeforeStart, Target};

/// What a run reports while it works (read by `progress`).
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A cell begins.
    CellStarted {
        /// Position in the plan.
        index: usize,
        /// Cells in the plan.
        of: usize,
        /// Cell id.
        id: String,
        /// Requests planned in this cell (0: the users decide).
        requests: u64,
    },
    /// One request ended.
    RequestDone {
        /// It failed.
        error: bool,
        /// It was cold.
        cold: bool,
    },
    /// The cell ended.
    CellFinished {
        /// Cell id.
        id: String,
    },
    /// Something worth a line on stderr.
    Note(String),
}

/// When a cell ran, on the run's clock.
#[derive(Debug, Clone, Copy)]
pub struct CellTiming {
    /// First send.
    pub started_ms: f64,
    /// The cell's end (its last request, and for the open loop the release tail).
    pub ended_ms: f64,
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

/// What a driver supplies to the per-cell loop: how to run one cell.
pub(crate) trait CellDriver {
    /// Requests the cell will send, for progress (0 when the users decide).
    fn planned(&self, cell: &Cell) -> u64;

    /// Runs one cell, its rows going to `rec.rows` (and anything else it leaves in the
    /// folder noted in `rec`'s `run.json`); returns when it ran.
    async fn run_cell(
        &mut self,
        cell: &Cell,
        rec: &mut Recorder,
        cancel: &CancellationToken,
    ) -> Result<CellTiming>;
}

/// What the per-cell loop works with besides the driver.
pub(crate) struct CellLoop<'a> {
    /// The target's hosts (one, or each of a fleet).
    pub clients: &'a [OllamaClient],
    /// The embedded simulator, when it is the target.
    pub sim: Option<&'a SimHandle>,
    /// How long to wait for the target to unload everything before a cell.
    pub unload_timeout: Duration,
    /// Pause between cells.
    pub pause: Duration,
    /// Where progress goes.
    pub progress: &'a mpsc::UnboundedSender<ProgressEvent>,
    /// A sharded run's fixed cell starts (the first is the start barrier): before each
    /// cell the loop sleeps until its start, then unloads; `None` runs cells back to back.
    pub starts: Option<&'a [Instant]>,
    /// How late after its fixed start a sharded run may wake at the barrier and still
    /// send (past it the run ends `late`, having sent nothing), and how late a later
    /// cell may start before it is recorded in `shard.late_cells`.
    pub late_tolerance: Duration,
}

impl CellLoop<'_> {
    /// Runs every cell of `plan` in order through `driver`; returns how the run ended
    /// and why it failed, if it did. `run.json` is rewritten after every cell.
    pub async fn run(
        &self,
        plan: &Plan,
        driver: &mut impl CellDriver,
        rec: &mut Recorder,
        cancel: &CancellationToken,
    ) -> Result<(RunStatus, Option<String>)> {
        let mut status = RunStatus::Complete;
        let mut failure = None;
        for cell in &plan.cells {
            if cancel.is_cancelled() {
                break;
            }
            if let Some(starts) = self.starts {
                let start = starts[cell.index];
                let late = Instant::now().saturating_duration_since(start);
                if cell.index == 0 {
                    let at = rec
                        .writer
                        .meta()
                        .shard
                        .as_ref()
                        .map(|s| s.start_at.clone())
                        .unwrap_or_default();
                    if !wait_for_barrier(start, &at, self.progress, cancel).await {
                        break;
                    }
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep_until(start.into()) => {}
                        _ = cancel.cancelled() => break,
                    }
                }
                // How late it really is, after the wait (a slow start-up, a stalled
                // process).
                let late = late.max(Instant::now().saturating_duration_since(start));
                if cell.index == 0 {
                    let woke = std::time::SystemTime::now();
                    if let Some(shard) = rec.writer.meta_mut().shard.as_mut()
                        && let Ok(at) = crate::shard::parse_start_at(&shard.start_at)
                    {
                        shard.clock_offset_ms = Some(crate::shard::ms_between(woke, at));
                    }
                    if late > self.late_tolerance {
                        // Past the tolerance the others are already sending: unloading
                        // or sending now would disturb their cells and record latencies
                        // of a schedule this shard did not keep.
                        let note = crate::shard::late_note(late, self.late_tolerance);
                        if let Some(shard) = rec.writer.meta_mut().shard.as_mut() {
                            shard.late_ms = Some(crate::folder::ms(late));
                        }
                        rec.warn(
                            format!("this shard sent nothing: {note}; merge counts it missing"),
                            self.progress,
                        );
                        status = RunStatus::Late;
                        failure = Some(format!("late: {note}"));
                        break;
                    }
                    if late > Duration::from_millis(100) {
                        rec.warn(
                            format!(
                                "this shard was ready {:.1} s after its start barrier (its start-up took longer than the lead time): the first cell's requests were sent late",
                                late.as_secs_f64()
                            ),
                            self.progress,
                        );
                    }
                } else if late > Duration::from_millis(100) {
                    if late > self.late_tolerance
                        && let Some(shard) = rec.writer.meta_mut().shard.as_mut()
                    {
                        shard
                            .late_cells
                            .insert(cell.id.clone(), crate::folder::ms(late));
                    }
                    rec.warn(
                        format!(
                            "cell {} started {:.1} s after its fixed start: the previous cell ran past its window",
                            cell.id,
                            late.as_secs_f64()
                        ),
                        self.progress,
                    );
                }
            }
            // A cell of a server kabench starts itself meets its server fresh: the
            // Ollama is left as the previous cell left it (its release is that cell's).
            let managed = cell.server.as_ref().is_some_and(|s| s.managed.is_some());
            for client in self.clients.iter().filter(|_| !managed) {
                if let Err(e) = unload_all_until(client, self.unload_timeout, cancel).await {
                    let on = if self.clients.len() > 1 {
                        format!(" on {}", client.base_url())
                    } else {
                        String::new()
                    };
                    rec.warn(format!("before cell {}{on}: {e:#}", cell.id), self.progress);
                }
            }
            let _ = self.progress.send(ProgressEvent::CellStarted {
                index: cell.index,
                of: plan.cells.len(),
                id: cell.id.clone(),
                requests: driver.planned(cell),
            });
            let loads_before = Recorder::sim_loads_now(self.sim);
            // The host at the cell's start and end: two reads of /proc, none per request.
            let host_before = crate::telemetry::host_load::snapshot();
            let ran = driver.run_cell(cell, &mut *rec, cancel).await;
            let host = host_before
                .zip(crate::telemetry::host_load::snapshot())
                .map(|(a, b)| crate::telemetry::host_load::between(&a, &b));
            let _ = self.progress.send(ProgressEvent::CellFinished {
                id: cell.id.clone(),
            });
            match ran {
                Ok(timing) => {
                    rec.count_sim_loads(&cell.id, self.sim, loads_before);
                    let m = &mut rec.writer.meta_mut().cells[cell.index];
                    m.started_ms = Some(timing.started_ms);
                    m.ended_ms = Some(timing.ended_ms);
                    m.host = host;
                }
                Err(e) => {
                    status = RunStatus::Failed;
                    failure = Some(format!("cell {}: {e:#}", cell.id));
                    break;
                }
            }
            rec.save_meta();
            if !self.pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.pause) => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
        if cancel.is_cancelled() && status == RunStatus::Complete {
            status = RunStatus::Interrupted;
        }
        Ok((status, failure))
    }
}

/// Sleeps until the start barrier `start` (`at`, as written in `run.json`), with a
/// note on the progress now and then (every 10 s, every minute when more than 5 minutes
/// are left), so a far barrier never waits silently. False when Ctrl-C came first.
async fn wait_for_barrier(
    start: Instant,
    at: &str,
    progress: &mpsc::UnboundedSender<ProgressEvent>,
    cancel: &CancellationToken,
) -> bool {
    let mut next_note = Instant::now();
    loop {
        let now = Instant::now();
        let Some(left) = start.checked_duration_since(now).filter(|l| !l.is_zero()) else {
            return true;
        };
        if now >= next_note && left >= Duration::from_secs(1) {
            let _ = progress.send(ProgressEvent::Note(format!(
                "waiting for the start barrier {at}: {} left",
                humantime::format_duration(Duration::from_secs(left.as_secs()))
            )));
            let every = if left > Duration::from_secs(300) {
                Duration::from_secs(60)
            } else {
                Duration::from_secs(10)
            };
            next_note = now + every;
        }
        let wake = if next_note > now {
            start.min(next_note)
        } else {
            start
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = cancel.cancelled() => return false,
        }
    }
}

/// How a run begins, whatever its driver: the target reached and checked, the run
/// folder created with `run.json` before the first request.
pub(crate) struct Begin<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Its plan.
    pub plan: &'a Plan,
    /// The target.
    pub target: &'a Target,
    /// The embedded simulator, when it is the target.
    pub sim: Option<&'a SimHandle>,
    /// `--out`, else `reports/<default_name>-<UTC time>`.
    pub out: Option<PathBuf>,
    /// Name of the default run folder.
    pub default_name: String,
    /// Pull missing models instead of stopping.
    pub pull: bool,
    /// Time zero of every row and sample (a sharded run's start barrier); `None`: when
    /// the folder is opened.
    pub epoch: Option<Instant>,
}

impl Begin<'_> {
    /// Connects to every host, checks the models on each, and opens the run folder
    /// with `run.json` as `shape` leaves it; the clients come in the target's order.
    pub async fn open(
        self,
        shape: impl FnOnce(&mut RunMeta),
        progress: &mpsc::UnboundedSender<ProgressEvent>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<OllamaClient>, Recorder)> {
        let timeout = self.scenario.run.timeout;
        let (kind, clients, version) = if *self.target == Target::Managed {
            (
                // The started server's kind (`llama-server` unless the scenario's
                // target is its router or llama-swap).
                self.scenario
                    .servers
                    .first()
                    .map_or(crate::folder::TargetKind::LlamaServer, |s| s.kind()),
                Vec::new(),
                String::new(),
            )
        } else {
            target::connect_all(self.target, self.sim, timeout, cancel).await?
        };
        for client in &clients {
            target::check_models(client, self.plan, self.pull, timeout, progress, cancel).await?;
        }
        let dir = self
            .out
            .unwrap_or_else(|| recorder::default_run_dir(&self.default_name));
        let mut meta = recorder::initial_meta(
            self.scenario,
            self.plan,
            kind,
            clients.first().map_or("managed", |c| c.base_url()),
            &version,
            self.sim,
        );
        if clients.len() > 1 {
            meta.target.urls = clients.iter().map(|c| c.base_url().to_string()).collect();
            meta.target.url = meta.target.urls.join(", ");
        }
        shape(&mut meta);
        let rec = Recorder::open(
            dir,
            self.epoch,
            self.scenario,
            meta,
            &clients,
            self.sim.is_some(),
            progress,
            cancel,
        )?;
        Ok((clients, rec))
    }
}

/// Unloads every resident model and waits until `/api/ps` is empty: each distinct model
/// is asked once, every call is bounded by what is left of `timeout`, and `stop`
/// (Ctrl-C) ends it at once.
pub async fn unload_all_until(
    client: &OllamaClient,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut asked: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let ps = match client.ps_until(left(), stop).await {
            Ok(ps) => ps,
            Err(ClientError::Cancelled(_)) => {
                anyhow::bail!("interrupted while unloading")
            }
            Err(e) => return Err(e.into()),
        };
        if ps.models.is_empty() {
            return Ok(());
        }
        for m in &ps.models {
            if stop.is_cancelled() {
                anyhow::bail!("interrupted while unloading");
            }
            if left().is_zero() {
                break;
            }
            if asked.insert(m.name.clone()) {
                let _ = client.unload_until(&m.name, left(), stop).await;
            }
        }
        if left().is_zero() {
            let mut names: Vec<&str> = ps.models.iter().map(|m| m.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let shown = names.len().min(5);
            anyhow::bail!(
                "the target still lists {}{} after {:?}; it did not unload",
                names[..shown].join(", "),
                if names.len() > shown {
                    format!(" and {} more", names.len() - shown)
                } else {
                    String::new()
                },
                timeout
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50).min(left())) => {}
            _ = stop.cancelled() => anyhow::bail!("interrupted while unloading"),
        }
    }
}

/// Unloads every resident model and waits until `/api/ps` is empty (or the timeout).
pub async fn unload_all(client: &OllamaClient, timeout: Duration) -> Result<()> {
    unload_all_until(client, timeout, &CancellationToken::new()).await
}
