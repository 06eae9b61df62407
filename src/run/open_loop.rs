//! The open-loop driver (`kabench run`): every stream's intended send times come from
//! `workload`, a pacing task sleeps until each (`pacer`: a `timerfd` on Linux, precise
//! to tens of microseconds), and each due request runs as its own task gated by a
//! concurrency cap. A slow response never delays the next send; latency is
//! measured from the intended time (no coordinated omission). Every request, success,
//! failure, saturation or cancellation, yields exactly one row. After a cell's last
//! request the driver watches the target release its models (the release tail,
//! `release`), so idle memory and the release delay are observed. It never prints:
//! progress goes out as events. The pacing (`pacer`), request building (`request`),
//! residency rules (`residency`) and the release wait (`release`) live in their own
//! files; this one stays a little over 600 lines because the send loop and the
//! per-request task share the cell's state.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::folder::{self, RequestRecord, ShardMeta};
use crate::ollama::{self, ClientError, Exchange, OllamaClient};
use crate::run::pacer::Pacer;
use crate::run::recorder;
use crate::run::release;
use crate::run::request::{
    self, Planned, RowGuard, Slice, chat_request, embed_request, fill_row, generate_request,
};
use crate::run::residency::{self, Residency};
use crate::shard;
use crate::telemetry::ps_feed::PsFeed;

use crate::run::{
    Begin, CellDriver, CellLoop, CellTiming, ProgressEvent, Recorder, RunOutcome, Target, target,
    unload_all_until,
};

use crate::engine::sim::SimHandle;
use crate::scenario::{Api, Cell, CellStream, Plan, Scenario};
use crate::units::KeepAlive;

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
    /// the same page-cache state (never in a shard: the launcher prewarms).
    pub prewarm: bool,
    /// This process's shard of a sharded run; its folder is `out/shard-<i>-of-<N>`.
    pub slice: Option<Slice>,
    /// The common start barrier (`--start-at`): every cell starts at a fixed offset
    /// from it. A shard without one starts its barrier when it is ready.
    pub start_at: Option<SystemTime>,
    /// How late after the barrier a shard may wake and still send
    /// ([`shard::LATE_TOLERANCE`] by default); later, it sends nothing and ends `late`.
    pub late_tolerance: Duration,
}

/// How long a sharded run of `plan` lasts from its start barrier: every cell's fixed
/// window (unload allowance, last global send, the idle horizon's tail, slack, `pause`).
pub fn run_span(plan: &Plan, pause: Duration) -> Result<Duration> {
    let mut last = Vec::with_capacity(plan.cells.len() + 1);
    for cell in &plan.cells {
        last.push(
            request::plan_sends(cell)?
                .last()
                .map_or(Duration::ZERO, |p| p.offset),
        );
    }
    last.push(Duration::ZERO);
    Ok(
        shard::cell_offsets(&last, recorder::idle_horizon(plan).tail(), pause)
            .last()
            .copied()
            .unwrap_or_default(),
    )
}

/// A run's fixed timeline: the barrier, and each cell's fixed start after it.
struct Timeline {
    start_at: SystemTime,
    barrier: Instant,
    offsets: Vec<Duration>,
    starts: Vec<Instant>,
}

impl Timeline {
    /// The timeline of `plan` from `start_at`: each cell's window covers the unload
    /// allowance, its last global send, the idle horizon's tail, slack and `pause`.
    ///
    /// A barrier too far ahead is refused ([`shard::check_barrier`]), and one behind
    /// too unless `sharded`: a shard that starts after its barrier ends `late` at it.
    fn of(plan: &Plan, start_at: SystemTime, pause: Duration, sharded: bool) -> Result<Timeline> {
        let now_wall = SystemTime::now();
        let now = Instant::now();
        if sharded {
            shard::check_shard_barrier(start_at, now_wall, "--start-at")
        } else {
            shard::check_barrier(start_at, now_wall, "--start-at")
        }
        .map_err(|e| crate::units::ParseError::new(e.0))?;
        let barrier = match start_at.duration_since(now_wall) {
            Ok(ahead) => now + ahead,
            Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
        };
        let mut last = Vec::with_capacity(plan.cells.len());
        for cell in &plan.cells {
            last.push(
                request::plan_sends(cell)?
                    .last()
                    .map_or(Duration::ZERO, |p| p.offset),
            );
        }
        let offsets = shard::cell_offsets(&last, recorder::idle_horizon(plan).tail(), pause);
        let starts = offsets.iter().map(|o| barrier + *o).collect();
        Ok(Timeline {
            start_at,
            barrier,
            offsets,
            starts,
        })
    }
}

/// How the runner treats every cell.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Requests in flight at most; beyond it a due request is recorded as `saturated`.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// M6 threshold on `load_duration`.
    pub cold_threshold: Duration,
    /// How long to wait for the target to report everything unloaded before a cell.
    pub unload_timeout: Duration,
    /// After Ctrl-C, how long in-flight requests may finish.
    pub grace: Duration,
    /// Read from the cell's `/api/ps` watcher whether the model is resident just
    /// before each send.
    pub check_resident: bool,
}

impl RunnerConfig {
    /// The runner's settings from a scenario's `[run]`, with the residency check on.
    pub fn from_run(run: &crate::scenario::RunSettings) -> RunnerConfig {
        RunnerConfig {
            concurrency: run.concurrency,
            timeout: run.timeout,
            cold_threshold: run.cold_threshold,
            unload_timeout: run.unload_timeout,
            grace: run.grace,
            check_resident: true,
        }
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
    target::with_target(scenario, &options.target, async |sim| {
        run_against(scenario, plan, options, sim, progress, cancel).await
    })
    .await
}

async fn run_against(
    scenario: &Scenario,
    plan: &Plan,
    options: &RunOptions,
    sim_handle: Option<&SimHandle>,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    cancel: CancellationToken,
) -> Result<RunOutcome> {
    let timeline = match (options.start_at, options.slice) {
        (Some(at), slice) => Some(Timeline::of(plan, at, scenario.run.pause, slice.is_some())?),
        (None, Some(_)) => Some(Timeline::of(
            plan,
            SystemTime::now(),
            scenario.run.pause,
            true,
        )?),
        (None, None) => None,
    };
    let out = match options.slice {
        Some(s) => Some(
            options
                .out
                .clone()
                .unwrap_or_else(|| recorder::default_run_dir(&scenario.name))
                .join(s.shard.dir_name()),
        ),
        None => options.out.clone(),
    };
    let begin = Begin {
        scenario,
        plan,
        target: &options.target,
        sim: sim_handle,
        out,
        default_name: scenario.name.clone(),
        pull: options.pull,
        epoch: timeline.as_ref().map(|t| t.barrier),
    };
    let shard_meta = timeline.as_ref().map(|t| ShardMeta {
        index: options.slice.map_or(0, |s| s.shard.index),
        count: options.slice.map_or(1, |s| s.shard.count),
        by: options
            .slice
            .map_or(scenario.run.shard_by, |s| s.by)
            .as_str()
            .to_string(),
        start_at: shard::format_time(t.start_at),
        clock_offset_ms: None,
        cell_starts_ms: t.offsets.iter().map(|o| folder::ms(*o)).collect(),
        histograms: None,
        late_tolerance_ms: Some(folder::ms(options.late_tolerance)),
        late_ms: None,
        late_cells: Default::default(),
    });
    let (clients, mut rec) = begin
        .open(|meta| meta.shard = shard_meta, &progress, &cancel)
        .await?;
    let config = RunnerConfig::from_run(&scenario.run);
    if options.prewarm && options.slice.is_none() && !cancel.is_cancelled() {
        for client in &clients {
            prewarm(client, plan, &config, &progress, &cancel).await;
        }
    }
    if options.slice.is_some()
        && plan
            .cells
            .iter()
            .any(|c| c.server.as_ref().is_some_and(|s| s.managed.is_some()))
    {
        anyhow::bail!(
            "a scenario with servers kabench starts itself cannot be sharded: run it in one process"
        );
    }
    let mut driver = OpenLoop {
        interval: scenario.telemetry.interval,
        clients: &clients,
        config,
        tail: release::release_tail(plan),
        horizon_tail: recorder::idle_horizon(plan).tail(),
        // Three sampling intervals (at least 100 ms) so the release shows in vram.csv.
        settle: (scenario.telemetry.interval * 3).max(Duration::from_millis(100)),
        slice: options.slice,
        send_starts: timeline.as_ref().map(|t| {
            t.starts
                .iter()
                .map(|s| *s + shard::UNLOAD_ALLOWANCE)
                .collect()
        }),
    };
    let cells = CellLoop {
        clients: &clients,
        sim: sim_handle,
        unload_timeout: scenario.run.unload_timeout,
        pause: if timeline.is_some() {
            Duration::ZERO
        } else {
            scenario.run.pause
        },
        progress: &progress,
        starts: timeline.as_ref().map(|t| t.starts.as_slice()),
        late_tolerance: options.late_tolerance,
    };
    let (status, failure) = cells.run(plan, &mut driver, &mut rec, &cancel).await?;
    rec.close(status, failure, sim_handle).await
}

/// Runs each cell open-loop, then watches its release tail.
struct OpenLoop<'a> {
    clients: &'a [OllamaClient],
    /// Memory sampling interval (a managed server's process tree).
    interval: Duration,
    config: RunnerConfig,
    tail: Duration,
    /// The idle horizon's tail after the cell's last global send (`folder::horizon`):
    /// the cell is watched at least that long unless every model is released.
    horizon_tail: Duration,
    settle: Duration,
    slice: Option<Slice>,
    /// A sharded run's fixed send start of each cell (its cell start and the unload
    /// allowance).
    send_starts: Option<Vec<Instant>>,
}

impl OpenLoop<'_> {
    fn sends(&self, cell: &Cell) -> Result<Vec<Planned>> {
        request::plan_slice(cell, self.clients.len(), self.slice)
    }
}

impl CellDriver for OpenLoop<'_> {
    fn planned(&self, cell: &Cell) -> u64 {
        self.sends(cell).map_or(0, |s| s.len() as u64)
    }

    async fn run_cell(
        &mut self,
        cell: &Cell,
        rec: &mut Recorder,
        cancel: &CancellationToken,
    ) -> Result<CellTiming> {
        if let Some(server) = &cell.server
            && let Some(managed) = &server.managed
        {
            let run = crate::run::llama_cell::ManagedRun {
                name: &server.name,
                managed,
                concurrency: self.config.concurrency,
                timeout: self.config.timeout,
                cold_threshold: self.config.cold_threshold,
                interval: self.interval,
                horizon_tail: self.horizon_tail,
            };
            return run.run_cell(cell, rec, cancel).await;
        }
        let start = self.send_starts.as_ref().map(|s| s[cell.index]);
        // The cell's last send of the whole (unsliced) schedule.
        let last_send = request::plan_sends(cell)?
            .last()
            .map_or(Duration::ZERO, |p| p.offset);
        let timing = run_sends(
            self.clients,
            &rec.feeds,
            cell,
            self.sends(cell)?,
            start,
            &self.config,
            rec.epoch,
            rec.rows.clone(),
            cancel.clone(),
        )
        .await?;
        // The end of the cell's idle horizon: its first send's clock plus the last send
        // and the common tail.
        let horizon_end = rec.epoch
            + Duration::from_secs_f64(timing.started_ms.max(0.0) / 1000.0)
            + last_send
            + self.horizon_tail;
        if self.slice.is_some() && !cancel.is_cancelled() {
            // A shard watches the whole horizon: the other shards send until the last
            // global send, and the merged run's memory samples are its own.
            tokio::select! {
                _ = tokio::time::sleep_until(horizon_end.into()) => {}
                _ = cancel.cancelled() => {}
            }
        } else if !cancel.is_cancelled() {
            let ended = Instant::now();
            let deadline = (ended + self.tail).max(horizon_end);
            let expected = release::expected_release(cell, ended);
            let waits = rec
                .feeds
                .iter()
                .map(|f| release::await_release(f, deadline, expected, self.settle, cancel));
            futures_util::future::join_all(waits).await;
        }
        Ok(CellTiming {
            started_ms: timing.started_ms,
            ended_ms: rec.now_ms(),
        })
    }
}

/// Loads and unloads each model once, so every cell starts from the same page cache.
/// Each load is bounded by the requests' timeout, each unload by `unload_timeout`, and
/// Ctrl-C (`cancel`) ends it.
pub async fn prewarm(
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
        let _ = unload_all_until(client, cfg.unload_timeout, cancel).await;
        if let Err(e) = client
            .load_until(&s.model, Some(s.num_ctx), cfg.timeout, cancel)
            .await
        {
            let _ = progress.send(ProgressEvent::Note(format!("prewarm {}: {e}", s.model)));
        }
    }
}

/// Runs one cell; every request's row goes to `rows`. Returns when every request has
/// ended, or after `grace` once `cancel` fires (the rest recorded as `cancelled`).
pub async fn run_cell(
    client: &OllamaClient,
    cell: &Cell,
    config: &RunnerConfig,
    epoch: Instant,
    rows: mpsc::UnboundedSender<RequestRecord>,
    cancel: CancellationToken,
) -> Result<CellTiming> {
    let sends = request::plan_sends(cell)?;
    let feed = PsFeed::new(client.base_url())?;
    run_sends(
        std::slice::from_ref(client),
        std::slice::from_ref(&feed),
        cell,
        sends,
        None,
        config,
        epoch,
        rows,
        cancel,
    )
    .await
}

/// Runs `sends` of one cell from `start` (`None`: now), as `run_cell` does, each to
/// its target host among `clients` (one `/api/ps` watcher per host, reading that
/// host's feed among `feeds`, in the same order).
#[allow(clippy::too_many_arguments)]
async fn run_sends(
    clients: &[OllamaClient],
    feeds: &[PsFeed],
    cell: &Cell,
    sends: Vec<Planned>,
    start: Option<Instant>,
    config: &RunnerConfig,
    epoch: Instant,
    rows: mpsc::UnboundedSender<RequestRecord>,
    cancel: CancellationToken,
) -> Result<CellTiming> {
    let start = start.unwrap_or_else(Instant::now);
    let started_ms = folder::ms(start - epoch);
    // Fired once the grace after a cancel is over: requests still in flight end with
    // what they measured so far.
    let stop = CancellationToken::new();
    // One /api/ps watcher for every request of the cell (not one /api/ps per request).
    let every = residency::poll_interval(cell.streams.iter().map(|s| s.keep_alive.as_ref()));
    let watchers: Vec<Option<Residency>> = feeds
        .iter()
        .map(|f| config.check_resident.then(|| Residency::watch(f, every)))
        .collect();
    for r in watchers.iter().flatten() {
        r.ready(residency::STALE_AFTER).await;
    }
    // Each stream's request encoded once per host (the URL is the host's).
    let prepared: Arc<Vec<Vec<Prepared>>> = Arc::new(
        clients
            .iter()
            .map(|client| {
                cell.streams
                    .iter()
                    .map(|s| Prepared::new(client, s))
                    .collect()
            })
            .collect(),
    );
    // The pacing task starts each request when it is due, on a runtime worker; it
    // stops early once `cancel` fires and hands back the requests it started.
    let launcher = Launcher {
        cell_id: cell.id.clone(),
        streams: cell.streams.clone(),
        clients: clients.into(),
        prepared,
        watchers,
        feeds: feeds.to_vec(),
        permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
        saturated: format!(
            "{} requests already in flight (run.concurrency)",
            config.concurrency
        ),
        timeout: config.timeout,
        threshold: config.cold_threshold,
        start,
        epoch,
        rows,
        stop: stop.clone(),
        tasks: tokio::task::JoinSet::new(),
    };
    let mut tasks = tokio::spawn(pace(launcher, sends, cancel.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("pacing the sends of cell {}: {e}", cell.id))?;
    let drain = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = drain => {}
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(config.grace).await;
        } => {
            // Each request still in flight ends as `cancelled`, keeping what it
            // measured; a task that does not end at once is dropped, and its RowGuard
            // records `cancelled` from the plan alone.
            stop.cancel();
            let _ = tokio::time::timeout(STOP_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    Ok(CellTiming {
        started_ms,
        ended_ms: folder::ms(Instant::now() - epoch),
    })
}

/// Starts each send's request when it is due ([`Pacer`]: precise to tens of
/// microseconds, one wake-up per send). Ends after the last send, or once `cancel`
/// fires; returns the requests it started.
async fn pace(
    mut launcher: Launcher,
    sends: Vec<Planned>,
    cancel: CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut pacer = Pacer::new();
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    for send in &sends {
        tokio::select! {
            biased;
            _ = &mut cancelled => break,
            _ = pacer.until(launcher.start + send.offset) => {}
        }
        launcher.launch(send);
    }
    launcher.tasks
}

/// Everything a cell's request needs to start, owned by the pacing task.
struct Launcher {
    cell_id: String,
    streams: Vec<CellStream>,
    clients: Arc<[OllamaClient]>,
    prepared: Arc<Vec<Vec<Prepared>>>,
    watchers: Vec<Option<Residency>>,
    /// Each host's `/api/ps` feed, told of every send (an adaptive one polls fast
    /// around the loads and unloads it may cause).
    feeds: Vec<PsFeed>,
    permits: Arc<Semaphore>,
    saturated: String,
    timeout: Duration,
    threshold: Duration,
    start: Instant,
    epoch: Instant,
    rows: mpsc::UnboundedSender<RequestRecord>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl Launcher {
    /// Starts `send`'s request on the runtime, or records it `saturated` when
    /// `run.concurrency` requests are already in flight.
    fn launch(&mut self, send: &Planned) {
        let due = self.start + send.offset;
        let epoch = self.epoch;
        let stream = &self.streams[send.stream];
        let mut row = request::new_row(&self.cell_id, send.seq, stream);
        row.intended_ms = folder::ms(due - epoch);
        let host = send.target.min(self.clients.len() - 1);
        if self.clients.len() > 1 {
            row.target = self.clients[host].base_url().to_string();
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            row.end_ms = folder::ms(Instant::now() - epoch);
            row.error = "saturated".into();
            row.error_detail = self.saturated.clone();
            let _ = self.rows.send(row);
            return;
        };
        // Finished requests are reaped as new ones start, so a long cell holds only
        // the requests in flight, not every request it ever sent.
        while self.tasks.try_join_next().is_some() {}
        let guard = RowGuard::new(row, self.rows.clone(), epoch);
        let clients = self.clients.clone();
        let prepared = self.prepared.clone();
        let idx = send.stream;
        let (timeout, threshold) = (self.timeout, self.threshold);
        let rows_out = self.rows.clone();
        let stop = self.stop.clone();
        let residency = self.watchers[host].clone();
        let feed = self.feeds.get(host).cloned();
        self.tasks.spawn(async move {
            let mut guard = guard;
            let stream = &prepared[host][idx];
            let (resident, exchange) = send_one(
                &clients[host],
                residency.as_ref(),
                feed.as_ref(),
                stream,
                timeout,
                &stop,
            )
            .await;
            if let (Some(r), Some(at)) = (&residency, residency::answered_at(&exchange)) {
                r.answered(
                    &stream.model,
                    at,
                    exchange.end_at,
                    stream.keep_alive.as_ref(),
                );
            }
            if let Some(row) = guard.take() {
                let row = fill_row(row, resident, &exchange, due, epoch, threshold);
                let _ = rows_out.send(row);
            }
            drop(permit);
        });
    }
}

/// How long requests stopped after the grace get to record what they measured.
const STOP_WAIT: Duration = Duration::from_millis(500);

/// Sends one request, reading just before it whether the cell's `/api/ps` watcher
/// lists its model (a loading model is absent until ready, L3), and telling the
/// host's `/api/ps` feed of it while it runs. `stop` ends the request: it then fails as
/// `cancelled` with what it measured.
async fn send_one(
    client: &OllamaClient,
    residency: Option<&Residency>,
    feed: Option<&PsFeed>,
    stream: &Prepared,
    timeout: Duration,
    stop: &CancellationToken,
) -> (Option<bool>, Exchange) {
    let resident = residency.and_then(|r| r.resident(&stream.model));
    let _sending = feed.map(|f| f.sending(&stream.model, stream.keep_alive.as_ref()));
    let exchange = match &stream.request {
        Ok(req) => {
            client
                .exchange_prepared(req, Some(timeout), stream.embed, Some(stop))
                .await
        }
        Err(e) => Exchange::failed(e.clone()),
    };
    (resident, exchange)
}

/// A stream's request, encoded once for every send of the cell.
struct Prepared {
    model: String,
    keep_alive: Option<KeepAlive>,
    embed: bool,
    request: Result<ollama::client::Prepared, ClientError>,
}

impl Prepared {
    fn new(client: &OllamaClient, stream: &CellStream) -> Prepared {
        let request = match stream.api {
            Api::Generate => client.prepare("/api/generate", &generate_request(stream)),
            Api::Chat => client.prepare("/api/chat", &chat_request(stream)),
            Api::Embed => client.prepare("/api/embed", &embed_request(stream)),
        };
        Prepared {
            model: stream.model.clone(),
            keep_alive: stream.keep_alive.clone(),
            embed: stream.api == Api::Embed,
            request,
        }
    }
}
