//! A model of Ollama's scheduler (v0.32.15 rules in `OLLAMA.md`): keep_alive timers,
//! one load at a time, VRAM fit and eviction, max loaded models, parallel slots and the
//! queue limit. A pure state machine over time values from a `Clock`: no I/O, no async,
//! deterministic for a seed. `sim` drives it on a real clock, `predict` on a virtual one.
//!
//! Driving protocol: call `submit`/`finish`/`cancel` as requests come and go, call
//! `advance(now)` whenever `next_wakeup()` is due (and after each call), and collect
//! what happened with `drain_events()`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalogue::Catalogue;
use crate::units::KeepAlive;

/// Time since the scheduler's epoch.
pub type SchedTime = Duration;

/// Where time comes from: the real monotonic clock (server) or a virtual one (replay).
pub trait Clock: Send + Sync {
    /// Time since this clock's epoch.
    fn now(&self) -> SchedTime;
}

/// Real monotonic time since creation.
#[derive(Debug, Clone)]
pub struct RealClock {
    start: std::time::Instant,
}

impl RealClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        RealClock {
            start: std::time::Instant::now(),
        }
    }
    /// The `Instant` of this clock's epoch.
    pub fn epoch(&self) -> std::time::Instant {
        self.start
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> SchedTime {
        self.start.elapsed()
    }
}

/// A virtual clock moved by hand.
#[derive(Debug, Default)]
pub struct VirtualClock {
    nanos: std::sync::atomic::AtomicU64,
}

impl VirtualClock {
    /// Moves the clock to `t` (never backwards).
    pub fn set(&self, t: SchedTime) {
        self.nanos
            .fetch_max(t.as_nanos() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SchedTime {
        Duration::from_nanos(self.nanos.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Scheduler settings: Ollama's environment variables and the simulator's own
/// calibration knobs (`OLLAMA.md`, "Rules the simulator must expose as tunables").
#[derive(Debug, Clone, PartialEq)]
pub struct SchedConfig {
    /// GPUs on the host.
    pub gpus: u32,
    /// VRAM per GPU in bytes (default 24 GiB).
    pub vram_bytes: u64,
    /// VRAM kept free for the driver and runtime (default 1 GiB).
    pub reserve_bytes: u64,
    /// E1: a model loads beside others only if its prediction ≤ this share of free VRAM (0.8).
    pub fit_headroom: f64,
    /// `OLLAMA_MAX_LOADED_MODELS` (0 → 3 × GPUs).
    pub max_loaded_models: u32,
    /// `OLLAMA_NUM_PARALLEL` (0 counts as 1).
    pub num_parallel: u32,
    /// `OLLAMA_MAX_QUEUE` (512).
    pub max_queue: usize,
    /// `OLLAMA_KEEP_ALIVE` (5m).
    pub default_keep_alive: KeepAlive,
    /// `OLLAMA_CONTEXT_LENGTH` (0 → L7 by VRAM).
    pub context_length: u32,
    /// `OLLAMA_LOAD_TIMEOUT` (5m): a load stalled longer fails.
    pub load_timeout: Duration,
    /// Runner start before the weights are read (0.5 s).
    pub runtime_start: Duration,
    /// Read bandwidth for a file in the OS page cache, bytes/s.
    pub cached_bandwidth: f64,
    /// Read bandwidth for a model's first load (cold NVMe), bytes/s.
    pub cold_bandwidth: f64,
    /// E8: wait after an unload before a load that needs that memory (1 s, ≤ 5 s).
    pub vram_release_delay: Duration,
    /// Warm `load_duration` range (M4: 1–10 ms, never 0).
    pub warm_overhead: (Duration, Duration),
    /// ± share of seeded jitter on load times (0.1).
    pub load_jitter: f64,
    /// Seed for every random choice.
    pub seed: u64,
    /// Share of loads that fail (L9; fault injection, default 0).
    pub load_failure_share: f64,
    /// Share of loads that stall (fault injection, default 0).
    pub load_stall_share: f64,
    /// How long a stalled load stalls before it completes (or hits `load_timeout`).
    pub load_stall: Duration,
    /// E7: reproduce ollama/ollama#17408 (off by default).
    pub e7_revive_bug: bool,
}

/// What kind of request reaches the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A prompt, chat or embedding: served, then `finish` is called.
    Serve,
    /// Empty prompt/messages with keep_alive absent or non-zero (M7): load, then done.
    LoadOnly,
    /// Empty prompt/messages with keep_alive 0 (E6): 200 at once, unload when idle.
    Unload,
}

/// A request as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct SchedRequest {
    /// Caller's unique id.
    pub id: u64,
    /// Model name as requested (an alias resolves to its catalogue entry).
    pub model: String,
    /// `options.num_ctx` if sent (L5, L6).
    pub num_ctx: Option<u32>,
    /// keep_alive if sent (KA5: absent keeps the resident value).
    pub keep_alive: Option<KeepAlive>,
    /// What it asks for.
    pub kind: RequestKind,
}

/// Why a request was refused at `submit`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// H3: 404 `model 'NAME' not found`.
    #[error("model '{0}' not found")]
    NotFound(String),
    /// Q2: 503.
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    QueueFull,
    /// H2: the model lacks the capability (e.g. generate on an embedding model).
    #[error("\"{0}\" does not support {1}")]
    Unsupported(String, String),
}

/// Something the scheduler did; collected with `drain_events`.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedEvent {
    /// The request has its model and a slot: it may run now.
    Dispatched {
        /// Request id.
        id: u64,
        /// Receipt to hand-over (M4): queue wait, evictions, load; a few ms when warm.
        load_duration: Duration,
        /// True when this request waited for a load.
        loaded: bool,
    },
    /// The request failed in the scheduler (L9 failed load, L4 abandoned, load timeout).
    Failed {
        /// Request id.
        id: u64,
        /// Ollama's error text.
        error: String,
    },
    /// A load began.
    LoadStarted {
        /// Model name.
        model: String,
        /// Time at which it will complete.
        until: SchedTime,
    },
    /// A model became resident.
    Loaded {
        /// Model name.
        model: String,
        /// Resident size in bytes.
        size: u64,
    },
    /// A model left memory.
    Unloaded {
        /// Model name.
        model: String,
        /// Why: `expired`, `evicted`, `unload`, `reload`.
        reason: &'static str,
    },
}

/// A resident model as `/api/ps` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidentModel {
    /// Name as first requested.
    pub name: String,
    /// Resident footprint (weights + KV + buffers), bytes.
    pub size: u64,
    /// Its GPU part.
    pub size_vram: u64,
    /// P4: the deadline; `None` for forever.
    pub expires_at: Option<SchedTime>,
    /// Per-slot context.
    pub context_length: u32,
    /// Requests running or waiting on it.
    pub busy: u32,
}

/// Counters for tests and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStats {
    /// Loads completed.
    pub loads: u64,
    /// Unloads by expiry.
    pub expirations: u64,
    /// Unloads by eviction (E3–E5).
    pub evictions: u64,
    /// Requests refused with 503.
    pub rejected: u64,
}

/// Ollama's scheduler as a state machine.
pub struct Scheduler {
    config: SchedConfig,
    catalogue: Catalogue,
}

impl Scheduler {
    /// A scheduler with nothing resident.
    pub fn new(config: SchedConfig, catalogue: Catalogue) -> Self {
        Scheduler { config, catalogue }
    }

    /// The settings in force.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// The installed models.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// A request arrives at `now` (receipt time: `load_duration` counts from here).
    pub fn submit(&mut self, now: SchedTime, req: SchedRequest) -> Result<(), SubmitError> {
        let _ = (now, req);
        todo!()
    }

    /// A dispatched request ended (response written) at `now` (T1).
    pub fn finish(&mut self, now: SchedTime, id: u64) {
        let _ = (now, id);
        todo!()
    }

    /// The client of a request went away at `now` (L4); same as `finish` once dispatched.
    pub fn cancel(&mut self, now: SchedTime, id: u64) {
        let _ = (now, id);
        todo!()
    }

    /// The next time `advance` has work (load done, expiry, E8 wait), if any.
    pub fn next_wakeup(&self) -> Option<SchedTime> {
        todo!()
    }

    /// Processes every timer due at or before `now`.
    pub fn advance(&mut self, now: SchedTime) {
        let _ = now;
        todo!()
    }

    /// Events since the last call, in order.
    pub fn drain_events(&mut self) -> Vec<SchedEvent> {
        todo!()
    }

    /// Resident models, latest `expires_at` first (P1).
    pub fn ps(&self, now: SchedTime) -> Vec<ResidentModel> {
        let _ = now;
        todo!()
    }

    /// Counters so far.
    pub fn stats(&self) -> SchedStats {
        todo!()
    }
}
