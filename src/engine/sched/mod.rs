//! A model of Ollama's scheduler (v0.32.15 rules in `OLLAMA.md`): keep_alive timers,
//! one load at a time, VRAM fit and eviction, max loaded models, parallel slots and the
//! queue limit. A pure state machine over time values from a `Clock`: no I/O, no async,
//! deterministic for a seed. `sim` drives it on a real clock, `predict` on a virtual one.
//!
//! Driving protocol: call `submit`/`finish`/`cancel` as requests come and go, call
//! `advance(now)` whenever `next_wakeup()` is due (and after each call), and collect
//! what happened with `drain_events()`. This file holds the API types and settings;
//! `state` the machine itself.

use std::time::Duration;

use crate::units::KeepAlive;

mod state;
#[cfg(test)]
mod tests;

pub use state::Scheduler;

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
    /// GPUs on the host; 0 is a CPU-only host: every model is held in system memory
    /// (`size_vram` 0), E1's VRAM test and E8's wait are skipped (E2, E8), E5's cap is
    /// 3 and L7's default context 4096.
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

const GIB: u64 = 1024 * 1024 * 1024;

impl Default for SchedConfig {
    /// Ollama v0.32.15's defaults on one 24 GiB GPU, with `OLLAMA.md`'s simulator
    /// calibration (page cache 10 GB/s, cold NVMe 2 GB/s, E8 1 s).
    fn default() -> Self {
        SchedConfig {
            gpus: 1,
            vram_bytes: 24 * GIB,
            reserve_bytes: GIB,
            fit_headroom: 0.8,
            max_loaded_models: 0,
            num_parallel: 1,
            max_queue: 512,
            default_keep_alive: KeepAlive::from_duration(Duration::from_secs(300)),
            context_length: 0,
            load_timeout: Duration::from_secs(300),
            runtime_start: Duration::from_millis(500),
            cached_bandwidth: 10e9,
            cold_bandwidth: 2e9,
            vram_release_delay: Duration::from_secs(1),
            warm_overhead: (Duration::from_millis(1), Duration::from_millis(10)),
            load_jitter: 0.1,
            seed: 0,
            load_failure_share: 0.0,
            load_stall_share: 0.0,
            load_stall: Duration::from_secs(30),
            e7_revive_bug: false,
        }
    }
}

impl SchedConfig {
    /// Defaults scaled down for tests: loads take tens of milliseconds (runtime start
    /// 20 ms, 100 GB/s cached and 50 GB/s cold, so a 7B Q4_K_M loads in ≈ 70–120 ms),
    /// E8 waits 20 ms, warm overhead 1–2 ms, no jitter, stalls of 200 ms, load timeout 2 s.
    pub fn for_tests() -> Self {
        SchedConfig {
            runtime_start: Duration::from_millis(20),
            cached_bandwidth: 100e9,
            cold_bandwidth: 50e9,
            vram_release_delay: Duration::from_millis(20),
            warm_overhead: (Duration::from_millis(1), Duration::from_millis(2)),
            load_jitter: 0.0,
            load_stall: Duration::from_millis(200),
            load_timeout: Duration::from_secs(2),
            ..SchedConfig::default()
        }
    }

    /// Slots per model (L8: `OLLAMA_NUM_PARALLEL`, 0 counts as 1).
    pub fn slots(&self) -> u32 {
        self.num_parallel.max(1)
    }

    /// E5's cap on resident models (0 → 3 per GPU, 3 with none).
    pub fn max_models(&self) -> usize {
        match self.max_loaded_models {
            0 => 3 * self.gpus.max(1) as usize,
            n => n as usize,
        }
    }

    /// VRAM the scheduler may fill: GPUs × VRAM − reserve (0 on a CPU-only host).
    pub fn usable_vram(&self) -> u64 {
        (u64::from(self.gpus) * self.vram_bytes).saturating_sub(self.reserve_bytes)
    }

    /// Whether the host has no GPU (`gpus` 0): models live in system memory.
    pub fn cpu_only(&self) -> bool {
        self.gpus == 0
    }

    /// E8's wait for freed VRAM after an unload: none on a CPU-only host.
    pub fn release_delay(&self) -> Duration {
        if self.cpu_only() {
            Duration::ZERO
        } else {
            self.vram_release_delay
        }
    }

    /// Seconds to load `spec`: its measured `load_s`, else runtime start + file ÷ read
    /// bandwidth; `cached` is a file in the page cache, otherwise the read is from a
    /// cold disk (a measured time then grows by the slower read). Before jitter.
    pub fn load_secs(&self, spec: &crate::engine::catalogue::ModelSpec, cached: bool) -> f64 {
        let read = |bandwidth: f64| {
            if bandwidth > 0.0 {
                spec.file_bytes as f64 / bandwidth
            } else {
                0.0
            }
        };
        let cached_read = read(self.cached_bandwidth);
        let disk_read = if cached {
            cached_read
        } else {
            read(self.cold_bandwidth)
        };
        match spec.load_s {
            Some(measured) => measured.max(0.0) + (disk_read - cached_read).max(0.0),
            None => self.runtime_start.as_secs_f64() + disk_read,
        }
    }

    /// E1, E2, E5: whether a model predicted at `size` loads beside `resident` models
    /// holding `resident_vram` bytes of VRAM without evicting one. Alone it always loads
    /// (E2); past `max_models()` it never does (E5); on a GPU host its prediction must be
    /// ≤ `fit_headroom` × (usable VRAM − what the others hold) (E1); a CPU-only host has
    /// no memory test.
    pub fn admits(&self, size: u64, resident: usize, resident_vram: u64) -> bool {
        if resident == 0 {
            return true;
        }
        if resident >= self.max_models() {
            return false;
        }
        if self.cpu_only() {
            return true;
        }
        let free = self.usable_vram().saturating_sub(resident_vram);
        size as f64 <= self.fit_headroom * free as f64
    }

    /// The context a model gets (L5, L7): `asked` (when > 0) or the default context,
    /// clamped to its training context.
    pub fn effective_ctx(
        &self,
        spec: &crate::engine::catalogue::ModelSpec,
        asked: Option<u32>,
    ) -> u32 {
        let training = spec.context_length.max(1);
        match asked {
            Some(n) if n > 0 => n.min(training),
            _ => self.default_context().min(training),
        }
    }

    /// Slots a model gets (L8): `OLLAMA_NUM_PARALLEL`, but always 1 for an embedding
    /// model.
    pub fn slots_for(&self, spec: &crate::engine::catalogue::ModelSpec) -> u32 {
        use crate::engine::catalogue::Capability;
        if spec.has(Capability::Embedding) && !spec.has(Capability::Completion) {
            1
        } else {
            self.slots()
        }
    }

    /// L7: the default context, `OLLAMA_CONTEXT_LENGTH` or by total VRAM (≥ 47 GiB →
    /// 262144, ≥ 23 GiB → 32768, else 4096; no GPU → 4096), before clamping to a
    /// model's training context.
    pub fn default_context(&self) -> u32 {
        if self.context_length > 0 {
            return self.context_length;
        }
        let total = u64::from(self.gpus) * self.vram_bytes;
        if total >= 47 * GIB {
            262_144
        } else if total >= 23 * GIB {
            32_768
        } else {
            4096
        }
    }
}

/// E1's prediction of a model's resident size, in its three parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeParts {
    /// The GGUF file (weights).
    pub weights: u64,
    /// f16 KV cache for `num_ctx × parallel` (E1, L8).
    pub kv: u64,
    /// The `num_batch` compute buffer and the runtime's own memory (or a measured
    /// overhead in their place).
    pub overhead: u64,
}

impl SizeParts {
    /// The whole prediction: weights + KV + overhead.
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.overhead
    }
}

/// E1's prediction of a model's resident size, in parts: file + f16 KV for
/// `num_ctx × parallel` + the `num_batch` compute buffer (0 up to 4096 total context,
/// 768 MiB above, 2 GiB above 32768) + ≈ 300 MiB of runtime overhead. A model with a
/// measured `overhead_bytes` gets that (plus `overhead_per_token` × context) in place of
/// the last two terms.
pub fn size_parts(
    spec: &crate::engine::catalogue::ModelSpec,
    num_ctx: u32,
    parallel: u32,
) -> SizeParts {
    const MIB: u64 = 1024 * 1024;
    let total_ctx = u64::from(num_ctx) * u64::from(parallel.max(1));
    let kv = spec.kv_bytes_per_token() * total_ctx;
    let overhead = match spec.overhead_bytes {
        Some(measured) => measured + spec.overhead_per_token.unwrap_or(0) * total_ctx,
        None => {
            let compute = if total_ctx > 32_768 {
                2 * GIB
            } else if total_ctx > 4096 {
                768 * MIB
            } else {
                0
            };
            compute + 300 * MIB
        }
    };
    SizeParts {
        weights: spec.file_bytes,
        kv,
        overhead,
    }
}

/// E1's prediction of a model's resident size in bytes (`size_parts`, summed).
pub fn predicted_size(
    spec: &crate::engine::catalogue::ModelSpec,
    num_ctx: u32,
    parallel: u32,
) -> u64 {
    size_parts(spec, num_ctx, parallel).total()
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
    /// P4: for a forever model (`expires_at` `None`), when its expiry was set: `/api/ps`
    /// shows that instant plus Go's maximum duration, fixed while it idles and while it
    /// is busy again, as v0.32.15 does.
    pub forever_from: SchedTime,
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
