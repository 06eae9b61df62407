//! The closed-loop driver (`kabench swarm`): users, the Locust-style test, driven by
//! goose embedded as a library (no controllers listening, kabench keeps the command
//! line, stdout and logging). For each cell every user sends its stream's request, reads
//! the streamed NDJSON itself (`ollama::stream`), times TTFT and E2E in µs on kabench's
//! clock, applies the cold rule, and writes one `RequestRecord` per request, so analysis
//! and report run unchanged. Goose's own reports land in `goose/<cell id>/`. Knows
//! nothing of charts, nor of the open-loop driver.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use goose::GooseAttack;
use goose::config::GooseConfiguration;
use goose::goose::{
    GooseMethod, GooseRequest, GooseUser, Scenario as GooseScenario, Transaction, TransactionResult,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::folder::{self, RequestRecord};
use crate::ollama::api;
use crate::ollama::error::from_reqwest;
use crate::ollama::stream::{self, Exchange};
use crate::ollama::{ClientError, OllamaClient};
use crate::run::request::{self, RowGuard};
use crate::run::residency::{self, Residency};
use crate::run::{
    Begin, CellDriver, CellLoop, CellTiming, ProgressEvent, Recorder, RunOutcome, Target, target,
};

use crate::engine::sim::SimHandle;
use crate::scenario::{Api, Cell, CellStream, Plan, Scenario};

/// Folder of the run folder that holds goose's own reports, one subfolder per cell.
pub const GOOSE_DIR: &str = "goose";

/// Options of one swarm beyond the scenario's `[swarm]` section.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// Target.
    pub target: Target,
    /// Run folder; default `reports/<scenario>-swarm-<UTC time>`.
    pub out: Option<PathBuf>,
    /// Replaces `[swarm] users`.
    pub users: Option<u32>,
    /// Replaces `[swarm] run_time` (goose counts whole seconds: rounded up, at least 1 s).
    pub run_time: Option<Duration>,
}

/// Runs closed-loop users against the target for every cell of `plan`, unloading every
/// model before each cell. Progress goes to `progress`; Ctrl-C arrives through `cancel`
/// (goose's own Ctrl-C handler, installed by its first attack, also ends the run).
pub async fn run(
    scenario: &Scenario,
    plan: &Plan,
    options: &SwarmOptions,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    cancel: CancellationToken,
) -> Result<RunOutcome> {
    if !scenario.servers.is_empty() {
        anyhow::bail!(
            "`kabench swarm` drives one Ollama (or the simulator); a scenario with [[server]] tables or kind = \"llama-server\" runs with `kabench run`"
        );
    }
    target::with_target(scenario, &options.target, async |sim| {
        swarm_against(scenario, plan, options, sim, progress, cancel).await
    })
    .await
}

/// What every goose transaction of one stream in one cell shares.
struct StreamContext {
    cell: String,
    stream: CellStream,
    /// `api/generate` etc., joined to the base URL.
    url: String,
    /// The request body, serialized once.
    body: bytes::Bytes,
    /// Name in goose's metrics: `<stream> <model>`.
    name: String,
    api: Api,
    seq: AtomicU32,
    epoch: Instant,
    /// The cell's `/api/ps` watcher, shared by every user.
    residency: Residency,
    /// The target's `/api/ps` feed, told of every send.
    feed: crate::telemetry::ps_feed::PsFeed,
    timeout: Duration,
    threshold: Duration,
    rows: mpsc::UnboundedSender<RequestRecord>,
}

async fn swarm_against(
    scenario: &Scenario,
    plan: &Plan,
    options: &SwarmOptions,
    sim_handle: Option<&SimHandle>,
    progress: mpsc::UnboundedSender<ProgressEvent>,
    cancel: CancellationToken,
) -> Result<RunOutcome> {
    let settings = SwarmPlan::new(scenario, options);
    let begin = Begin {
        scenario,
        plan,
        target: &options.target,
        sim: sim_handle,
        out: options.out.clone(),
        default_name: format!("{}-swarm", scenario.name),
        pull: false,
        epoch: None,
    };
    let (clients, mut rec) = begin
        .open(
            |meta| {
                closed_loop_meta(meta);
                meta.telemetry.insert("mode".into(), settings.describe());
            },
            &progress,
            &cancel,
        )
        .await?;
    let goose_root = rec.dir.join(GOOSE_DIR);
    if let Err(e) = std::fs::create_dir_all(&goose_root)
        .with_context(|| format!("creating {}", goose_root.display()))
    {
        return Err(rec.fail_start(e, sim_handle).await);
    }

    // goose's Ctrl-C handler replaces any earlier one: mirror its killswitch into our
    // token, and our token into its killswitch.
    let client = clients[0].clone();
    let watcher = tokio::spawn(mirror_cancel(cancel.clone()));
    let mut driver = Users {
        client: &client,
        settings,
        timeout: scenario.run.timeout,
        threshold: scenario.run.cold_threshold,
        progress: &progress,
    };
    let cells = CellLoop {
        clients: &clients,
        sim: sim_handle,
        unload_timeout: scenario.run.unload_timeout,
        pause: Duration::ZERO,
        progress: &progress,
        starts: None,
        late_tolerance: crate::shard::LATE_TOLERANCE,
    };
    let ended = cells.run(plan, &mut driver, &mut rec, &cancel).await;
    watcher.abort();
    // A later attack in this process must not inherit this run's cancel.
    goose::reset_killswitch();
    let (status, failure) = ended?;
    rec.close(status, failure, sim_handle).await
}

/// Runs each cell as one goose attack.
struct Users<'a> {
    client: &'a OllamaClient,
    settings: SwarmPlan,
    timeout: Duration,
    threshold: Duration,
    progress: &'a mpsc::UnboundedSender<ProgressEvent>,
}

impl CellDriver for Users<'_> {
    fn planned(&self, _cell: &Cell) -> u64 {
        0
    }

    async fn run_cell(
        &mut self,
        cell: &Cell,
        rec: &mut Recorder,
        cancel: &CancellationToken,
    ) -> Result<CellTiming> {
        let started_ms = rec.now_ms();
        let every = residency::poll_interval(cell.streams.iter().map(|s| s.keep_alive.as_ref()));
        let residency = Residency::watch(&rec.feeds[0], every);
        residency.ready(residency::STALE_AFTER).await;
        let contexts: Vec<Arc<StreamContext>> = cell
            .streams
            .iter()
            .map(|s| {
                let (path, body) = request::request_body(s);
                Arc::new(StreamContext {
                    cell: cell.id.clone(),
                    stream: s.clone(),
                    url: format!("{}{path}", self.client.base_url()),
                    body: body.into(),
                    name: format!("{} {}", s.name, s.model),
                    api: s.api,
                    seq: AtomicU32::new(0),
                    epoch: rec.epoch,
                    residency: residency.clone(),
                    feed: rec.feeds[0].clone(),
                    timeout: self.timeout,
                    threshold: self.threshold,
                    rows: rec.rows.clone(),
                })
            })
            .collect();
        let goose_dir = rec.dir.join(GOOSE_DIR).join(&cell.id);
        let attack = run_attack(
            &self.settings,
            self.client.base_url(),
            &contexts,
            &goose_dir,
        )
        .await;
        if goose::is_killswitch_triggered() {
            cancel.cancel();
        }
        let summary = attack?;
        let report = format!("{GOOSE_DIR}/{}/report.html", cell.id);
        rec.writer.meta_mut().goose_reports.push(report);
        let _ = self.progress.send(ProgressEvent::Note(format!(
            "cell {}: goose: {summary}; report in {}",
            cell.id,
            goose_dir.display()
        )));
        Ok(CellTiming {
            started_ms,
            ended_ms: rec.now_ms(),
        })
    }
}

/// `run.json` of a swarm: the open-loop runner's, with closed-loop streams (no arrival
/// rate, no planned count: users decide how many requests go out).
fn closed_loop_meta(meta: &mut crate::folder::RunMeta) {
    for stream in meta.cells.iter_mut().flat_map(|c| c.streams.iter_mut()) {
        stream.arrival = "closed_loop".into();
        stream.rate_per_s = None;
        stream.planned = 0;
    }
}

/// The `[swarm]` values of a run, overrides applied.
#[derive(Debug, Clone)]
struct SwarmPlan {
    users: u32,
    hatch_rate: f64,
    think_min: Duration,
    think_max: Duration,
    run_time_s: u64,
}

impl SwarmPlan {
    fn new(scenario: &Scenario, options: &SwarmOptions) -> SwarmPlan {
        let s = &scenario.swarm;
        let run_time = options.run_time.unwrap_or(s.run_time);
        SwarmPlan {
            users: options.users.unwrap_or(s.users).max(1),
            hatch_rate: s.hatch_rate,
            think_min: s.think_time.min,
            think_max: s.think_time.max.max(s.think_time.min),
            run_time_s: (run_time.as_secs_f64().ceil() as u64).max(1),
        }
    }

    fn describe(&self) -> String {
        format!(
            "swarm: {} users, hatch {}/s, think {:?}..{:?}, {} s per cell",
            self.users, self.hatch_rate, self.think_min, self.think_max, self.run_time_s
        )
    }

    /// goose's options, as a command line it parses (never the process's own).
    fn goose_args(&self, host: &str, goose_dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--host".into(),
            host.into(),
            "--users".into(),
            self.users.to_string(),
            "--run-time".into(),
            format!("{}s", self.run_time_s),
            // No controller listens (its default port would collide between runs); the
            // WebSocket one is off unless asked for in 0.19.
            "--no-telnet".into(),
            "--quiet".into(),
            "--no-print-metrics".into(),
            "--no-gzip".into(),
            "--report-file".into(),
            goose_dir.join("report.html").display().to_string(),
            "--report-file".into(),
            goose_dir.join("report.json").display().to_string(),
        ];
        if self.hatch_rate.is_finite() && self.hatch_rate > 0.0 {
            args.push("--increase-rate".into());
            args.push(format!("{}", self.hatch_rate));
        }
        args
    }
}

/// One goose attack: a goose scenario per stream, users shared round robin.
async fn run_attack(
    settings: &SwarmPlan,
    host: &str,
    contexts: &[Arc<StreamContext>],
    goose_dir: &Path,
) -> Result<String> {
    std::fs::create_dir_all(goose_dir)
        .with_context(|| format!("creating {}", goose_dir.display()))?;
    let config = GooseConfiguration::parse_args_default(&settings.goose_args(host, goose_dir))
        .map_err(|e| anyhow::anyhow!("goose options: {e}"))?;
    let mut attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| anyhow::anyhow!("starting goose: {e}"))?;
    for ctx in contexts {
        let scenario = GooseScenario::new(&ctx.stream.name)
            .set_wait_time(settings.think_min, settings.think_max)
            .map_err(|e| anyhow::anyhow!("think time: {e}"))?
            .register_transaction(
                Transaction::new(Arc::new(hr(|user| Box::pin(set_client(user)))))
                    .set_name("client")
                    .set_on_start(),
            )
            .register_transaction(request_transaction(ctx.clone()).set_name(&ctx.name));
        attack = attack.register_scenario(scenario);
    }
    let metrics = attack
        .execute()
        .await
        .map_err(|e| anyhow::anyhow!("goose: {e}"))?;
    Ok(format!(
        "{} users, {} s",
        metrics.maximum_users, metrics.duration
    ))
}

type TransactionFuture<'r> =
    Pin<Box<dyn std::future::Future<Output = TransactionResult> + Send + 'r>>;

/// Pins a closure to goose's higher-ranked transaction signature.
fn hr<F>(f: F) -> F
where
    F: for<'r> Fn(&'r mut GooseUser) -> TransactionFuture<'r> + Send + Sync + 'static,
{
    f
}

/// Each user's client: no proxy (reqwest honours `HTTP(S)_PROXY` otherwise), no Nagle
/// and no redirects followed (a redirected POST arrives as a GET), as kabench's own client.
async fn set_client(user: &mut GooseUser) -> TransactionResult {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    user.set_client_builder(builder).await?;
    Ok(())
}

fn request_transaction(ctx: Arc<StreamContext>) -> Transaction {
    Transaction::new(Arc::new(hr(move |user| {
        let ctx = ctx.clone();
        Box::pin(async move { one_request(user, &ctx).await })
    })))
}

/// One request of one user: sent through goose (which times it to the headers), the
/// body read here, the row written, and TTFT and E2E given to goose as custom entries.
async fn one_request(user: &mut GooseUser, ctx: &StreamContext) -> TransactionResult {
    let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
    let stream = &ctx.stream;
    let mut guard = RowGuard::new(
        request::new_row(&ctx.cell, seq, stream),
        ctx.rows.clone(),
        ctx.epoch,
    );
    let builder = user
        .get_request_builder(&GooseMethod::Post, &ctx.url)?
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(ctx.timeout)
        .body(ctx.body.clone());
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(ctx.url.as_str())
        .name(ctx.name.as_str())
        .set_request_builder(builder)
        .build();
    let resident = ctx.residency.resident(&stream.model);
    let sending = ctx.feed.sending(&stream.model, stream.keep_alive.as_ref());
    let sent_at = Instant::now();
    let goose = user.request(request).await;
    let mut ex = Exchange {
        sent_at,
        first_byte_at: None,
        first_token_at: None,
        first_answer_at: None,
        end_at: sent_at,
        status: None,
        metrics: api::Metrics::default(),
        done_reason: None,
        chunks: 0,
        error: None,
    };
    let result = match goose {
        Ok(g) => read_body(g.response, ctx.api, &mut ex).await,
        Err(e) => Err(ClientError::Connect(e.to_string())),
    };
    ex.end_at = Instant::now();
    drop(sending);
    ex.error = result.err();
    if let Some(at) = residency::answered_at(&ex) {
        ctx.residency
            .answered(&stream.model, at, ex.end_at, stream.keep_alive.as_ref());
    }
    let Some(row) = guard.take() else {
        return Ok(());
    };
    let mut row = row;
    row.intended_ms = folder::ms(ex.sent_at.saturating_duration_since(ctx.epoch));
    let row = request::fill_row(row, resident, &ex, ex.sent_at, ctx.epoch, ctx.threshold);
    let ok = ex.error.is_none();
    let detail = ex.error.as_ref().map(|e| e.to_string());
    if let Some(ttft) = ex.ttft() {
        let _ = user
            .record_custom_request_duration("TTFT", &ctx.name, ttft, ok, ex.status, None)
            .await;
    }
    let _ = user
        .record_custom_request_duration(
            "E2E",
            &ctx.name,
            ex.e2e(),
            ok,
            ex.status,
            detail.as_deref(),
        )
        .await;
    let _ = ctx.rows.send(row);
    Ok(())
}

/// Reads a response's body as kabench's client does (NDJSON chunks timed as they
/// arrive, or one embed object).
async fn read_body(
    response: Result<reqwest::Response, reqwest::Error>,
    api: Api,
    ex: &mut Exchange,
) -> Result<(), ClientError> {
    let resp = response.map_err(|e| from_reqwest(e, false))?;
    stream::read_response(resp, ex, api == Api::Embed).await
}

/// Keeps our token and goose's killswitch in step while attacks run.
async fn mirror_cancel(cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                goose::trigger_killswitch("kabench: cancelled");
                // Keep it triggered: goose resets it when the next attack starts.
                loop {
                    tick.tick().await;
                    goose::trigger_killswitch("kabench: cancelled");
                }
            }
            _ = tick.tick() => {
                if goose::is_killswitch_triggered() {
                    cancel.cancel();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goose_args_never_take_the_process_arguments_and_parse() {
        let plan = SwarmPlan {
            users: 3,
            hatch_rate: 1.5,
            think_min: Duration::from_millis(100),
            think_max: Duration::from_millis(200),
            run_time_s: 2,
        };
        let args = plan.goose_args("http://127.0.0.1:9", Path::new("/tmp/x"));
        assert!(args.contains(&"--no-telnet".to_string()));
        let cfg = GooseConfiguration::parse_args_default(&args).unwrap();
        assert_eq!(cfg.users, Some(3));
        assert_eq!(cfg.run_time.as_deref(), Some("2s"));
        assert_eq!(cfg.report_file.len(), 2);
    }
}
