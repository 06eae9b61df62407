//! `kabench sim`: an Ollama-compatible HTTP server (axum) over the `sched` model of
//! Ollama's scheduler, on a real clock, with seeded fault injection. A driver task
//! advances the scheduler's timers and hands each waiting request its outcome; the
//! handlers (`generate`, `info`) model prompt and decode time per token. Binds loopback
//! unless told otherwise. Knows nothing of scenarios, records or analysis.

mod generate;
mod info;
mod openai;
mod options;
pub mod wire;

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::{Notify, oneshot};

use crate::engine::catalogue::Catalogue;
use crate::engine::sched::{
    Clock, RealClock, RequestKind, SchedEvent, SchedRequest, SchedStats, Scheduler, SubmitError,
};
use crate::engine::sim_settings::{Faults, SimSettings};
use crate::folder::{SimHost, SimModel};
use crate::units::{KeepAlive, ParseError};

pub use wire::SimError;

/// The longest the driver sleeps without a timer due, so it notices shutdown.
const DRIVER_IDLE: Duration = Duration::from_millis(250);

/// What the scheduler decided for a waiting request.
#[derive(Debug)]
enum Outcome {
    Dispatched { load_duration: Duration },
    Failed(String),
}

struct Inner {
    sched: Mutex<Scheduler>,
    clock: RealClock,
    wall_epoch: OffsetDateTime,
    local_offset: UtcOffset,
    catalogue: Catalogue,
    faults: Faults,
    rng: Mutex<StdRng>,
    next_id: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    wake: Notify,
    driver_started: AtomicBool,
    stopped: AtomicBool,
    requests: AtomicU64,
    /// The run folder the settings were calibrated from.
    calibrated_from: Option<String>,
}

/// The simulator's shared state: the scheduler behind a mutex, the clock, the catalogue,
/// fault settings and counters. Cheap to clone.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimState {
    /// State for `settings`, every random choice seeded by `seed` (unless the settings
    /// carry their own seed).
    pub fn new(settings: &SimSettings, seed: u64) -> Result<Self, ParseError> {
        // `calibrate`: a measured run's models and host kind replace the settings' own.
        let mut calibrated = None;
        let mut calibrated_from = None;
        if let Some(dir) = &settings.calibrate {
            let calibration = crate::engine::calibrate::calibrate(std::path::Path::new(dir))
                .map_err(|e| ParseError {
                    message: format!("sim.calibrate: {e:#}"),
                })?;
            let mut s = settings.clone();
            calibration.apply(&mut s);
            calibrated = Some(s);
            calibrated_from = Some(dir.clone());
        }
        let settings = calibrated.as_ref().unwrap_or(settings);
        let config = settings.sched_config(seed)?;
        let catalogue = settings.catalogue();
        let rng_seed = config.seed ^ 0x005e_ed0f_fa17;
        let clock = RealClock::new();
        let wall_epoch = OffsetDateTime::now_utc();
        Ok(SimState {
            inner: Arc::new(Inner {
                sched: Mutex::new(Scheduler::new(config, catalogue.clone())),
                clock,
                wall_epoch,
                local_offset: wire::local_offset(),
                catalogue,
                faults: settings.faults()?,
                rng: Mutex::new(StdRng::seed_from_u64(rng_seed)),
                next_id: AtomicU64::new(1),
                waiters: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                driver_started: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                requests: AtomicU64::new(0),
                calibrated_from,
            }),
        })
    }

    /// The scheduler's counters (loads, expirations, evictions, 503s).
    pub fn stats(&self) -> SchedStats {
        lock(&self.inner.sched).stats()
    }

    /// Generate, chat and embed requests received so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// GPU memory held by resident models now, bytes.
    pub fn vram_used(&self) -> u64 {
        let now = self.inner.clock.now();
        lock(&self.inner.sched)
            .ps(now)
            .iter()
            .map(|m| m.size_vram)
            .sum()
    }

    /// Total simulated GPU memory (GPUs × VRAM), bytes; 0 on a CPU-only host.
    pub fn vram_total(&self) -> u64 {
        let s = lock(&self.inner.sched);
        u64::from(s.config().gpus) * s.config().vram_bytes
    }

    /// The installed models.
    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    /// What the simulated host stands for, for `run.json`: GPU, Ollama settings and the
    /// catalogue figures (size, load time, speeds, sources) of `models` at `num_ctx`.
    pub fn describe(&self, models: &[(String, u32)]) -> SimHost {
        let config = lock(&self.inner.sched).config().clone();
        let models = models
            .iter()
            .filter_map(|(name, num_ctx)| {
                let spec = self.inner.catalogue.resolve(name)?;
                Some(SimModel {
                    model: name.clone(),
                    quantization: spec.quantization.clone(),
                    file_bytes: spec.file_bytes,
                    resident_bytes: crate::engine::sched::predicted_size(
                        spec,
                        *num_ctx,
                        config.slots(),
                    ),
                    num_ctx: *num_ctx,
                    load_cached_s: config.load_secs(spec, true),
                    load_cold_s: config.load_secs(spec, false),
                    decode_tps: spec.decode_tps,
                    prefill_tps: spec.prefill_tps,
                    source: spec.source.clone(),
                    figures: Default::default(),
                })
            })
            .collect();
        let (gpu, vram_bytes) = if config.cpu_only() {
            (
                "CPU-only host (no GPU: models in system memory)".to_string(),
                0,
            )
        } else {
            (
                format!(
                    "{} × {} GPU",
                    config.gpus,
                    crate::units::format_size_short(config.vram_bytes)
                ),
                config.vram_bytes,
            )
        };
        SimHost {
            gpu,
            gpus: config.gpus,
            vram_bytes,
            rules: "Ollama 0.32.15 scheduler rules (OLLAMA.md)".into(),
            max_loaded_models: config.max_models() as u32,
            num_parallel: config.slots(),
            default_keep_alive: config.default_keep_alive.written().to_string(),
            cached_bandwidth_bytes_per_s: config.cached_bandwidth,
            cold_bandwidth_bytes_per_s: config.cold_bandwidth,
            vram_release_delay_ms: config.vram_release_delay.as_secs_f64() * 1000.0,
            seed: config.seed,
            models,
            calibrated_from: self.inner.calibrated_from.clone(),
            ..Default::default()
        }
    }

    /// Stops the timer driver (in-flight requests still end).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// True with probability `share`, from the seeded generator.
    fn roll(&self, share: f64) -> bool {
        share > 0.0 && lock(&self.inner.rng).random::<f64>() < share
    }

    /// A seeded integer in `0..n` (0 when `n` is 0).
    fn pick(&self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            lock(&self.inner.rng).random_range(0..n)
        }
    }

    /// Wall time of scheduler time `t`, in server local time (P3).
    fn wall(&self, t: Duration) -> OffsetDateTime {
        (self.inner.wall_epoch + t).to_offset(self.inner.local_offset)
    }

    /// Runs due timers and delivers the scheduler's decisions to waiting handlers.
    fn pump(&self) {
        pump(&self.inner);
    }

    fn ensure_driver(&self) {
        if !self.inner.driver_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(drive(Arc::downgrade(&self.inner)));
        }
    }

    /// Submits a request and waits until the scheduler dispatches or fails it. The
    /// returned ticket ends the request in the scheduler when dropped (T1, L4): a
    /// handler dropped while waiting (client gone) cancels it.
    async fn admit(
        &self,
        model: &str,
        num_ctx: Option<u32>,
        keep_alive: Option<KeepAlive>,
        kind: RequestKind,
    ) -> Result<(Ticket, Admission), SimError> {
        self.ensure_driver();
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&inner.waiters).insert(id, tx);
        let receipt = Instant::now();
        let req = SchedRequest {
            id,
            model: model.to_string(),
            num_ctx,
            keep_alive,
            kind,
        };
        let submitted = {
            let mut sched = lock(&inner.sched);
            sched.submit(inner.clock.now(), req)
        };
        if let Err(e) = submitted {
            lock(&inner.waiters).remove(&id);
            return Err(submit_error(e));
        }
        let mut ticket = Ticket {
            state: self.clone(),
            id,
            dispatched: false,
            closed: false,
        };
        self.pump();
        inner.wake.notify_one();
        match rx.await {
            Ok(Outcome::Dispatched { load_duration }) => {
                ticket.dispatched = true;
                // The hand-over overhead in load_duration (M4) is real time, as in
                // Ollama: the model is handed over receipt + load_duration.
                let admission = Admission {
                    receipt,
                    dispatched_at: Instant::now().max(receipt + load_duration),
                    load_duration,
                };
                Ok((ticket, admission))
            }
            Ok(Outcome::Failed(error)) => {
                // The scheduler already forgot the request.
                ticket.closed = true;
                Err(SimError::internal(error))
            }
            Err(_) => Err(SimError::internal("scheduler stopped")),
        }
    }
}

fn submit_error(e: SubmitError) -> SimError {
    use axum::http::StatusCode;
    match e {
        SubmitError::NotFound(name) => SimError::model_not_found(&name),
        SubmitError::QueueFull => SimError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        SubmitError::Unsupported(..) => SimError::bad_request(e.to_string()),
    }
}

/// When and how a request got its model.
#[derive(Debug, Clone, Copy)]
struct Admission {
    /// Request received (start of `total_duration` and `load_duration`).
    receipt: Instant,
    /// Model handed over.
    dispatched_at: Instant,
    /// The scheduler's `load_duration` (M4).
    load_duration: Duration,
}

/// A request known to the scheduler; ends it (`finish` or `cancel`) when dropped.
struct Ticket {
    state: SimState,
    id: u64,
    dispatched: bool,
    closed: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let lag = self.state.inner.faults.finish_lag;
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(rt) if self.dispatched && !lag.is_zero() => {
                // `[sim.faults] finish_lag`: the scheduler hears of the end late.
                let (state, id) = (self.state.clone(), self.id);
                rt.spawn(async move {
                    tokio::time::sleep(lag).await;
                    end_request(&state, id, true);
                });
            }
            _ => end_request(&self.state, self.id, self.dispatched),
        }
    }
}

/// Tells the scheduler that request `id` ended (`finish` once dispatched, else
/// `cancel`) and moves on whatever that frees.
fn end_request(state: &SimState, id: u64, dispatched: bool) {
    let inner = &state.inner;
    {
        let mut sched = lock(&inner.sched);
        let now = inner.clock.now();
        if dispatched {
            sched.finish(now, id);
        } else {
            sched.cancel(now, id);
        }
    }
    lock(&inner.waiters).remove(&id);
    pump(inner);
    inner.wake.notify_one();
}

fn pump(inner: &Inner) {
    let events = {
        let mut sched = lock(&inner.sched);
        sched.advance(inner.clock.now());
        sched.drain_events()
    };
    for event in events {
        let (id, outcome) = match event {
            SchedEvent::Dispatched {
                id, load_duration, ..
            } => (id, Outcome::Dispatched { load_duration }),
            SchedEvent::Failed { id, error } => (id, Outcome::Failed(error)),
            _ => continue,
        };
        if let Some(tx) = lock(&inner.waiters).remove(&id) {
            // A receiver gone means the handler was dropped; its ticket cancels it.
            let _ = tx.send(outcome);
        }
    }
}

/// The timer driver: sleeps until the scheduler's next wakeup (or a nudge), advances
/// it and delivers outcomes. Ends when the state is stopped or dropped.
async fn drive(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        pump(&inner);
        let next = lock(&inner.sched).next_wakeup();
        let now = inner.clock.now();
        let sleep = next.map_or(DRIVER_IDLE, |t| t.saturating_sub(now).min(DRIVER_IDLE));
        let notified = inner.wake.notified();
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// The simulator's routes over `state`; testable without a socket (`oneshot`).
pub fn app(state: SimState) -> Router {
    Router::new()
        .route("/", get(info::root))
        .route("/api/version", get(info::version))
        .route("/api/ps", get(info::ps))
        .route("/api/tags", get(info::tags))
        .route("/api/show", post(info::show))
        .route("/api/pull", post(info::pull))
        .route("/metrics", get(info::metrics))
        .route("/api/generate", post(generate::generate))
        .route("/api/chat", post(generate::chat))
        .route("/api/embed", post(generate::embed))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
        .with_state(state)
}

/// A simulator serving on a socket in a background task.
pub struct SimHandle {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    /// Its state, for counters.
    pub state: SimState,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// `http://ADDR`, for `OllamaClient::new`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets open requests end for up to 2 s, then stops the task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.state.stop();
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the simulator to {listen}: {e}"))
}

/// Binds `listen` (port 0 picks a free port) and serves the simulator in a tokio task.
pub async fn spawn(
    settings: &SimSettings,
    seed: u64,
    listen: SocketAddr,
) -> anyhow::Result<SimHandle> {
    let state = SimState::new(settings, seed)?;
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let listener = listener.tap_io(|tcp| {
        // Nagle plus delayed ACK adds ~10 ms per streamed chunk.
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        let _ = rx.await;
    });
    let task = tokio::spawn(server.into_future());
    Ok(SimHandle {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Serves the simulator on `listen` until `shutdown` completes (`kabench sim`).
/// Prints nothing itself.
pub async fn serve(
    settings: &SimSettings,
    seed: u64,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = SimState::new(settings, seed)?;
    let listener = bind(listen).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    state.stop();
    Ok(())
}
