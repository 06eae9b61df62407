//! What one policy's replay counts, per model and in all.

use super::Policy;
use crate::analysis::MsHistogram;

/// What one model cost in the training window (arrivals and time before the split).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Requests that arrived in the window.
    pub requests: u64,
    /// Of them, cold.
    pub cold: u64,
    /// Loads that requests arriving in the window waited on (each once, however many
    /// requests shared it).
    pub cold_loads: u64,
    /// GPU memory held idle in the window, GB·s.
    pub idle_gpu_gb_s: f64,
    /// System memory held idle in the window, GB·s.
    pub idle_ram_gb_s: f64,
}

/// Counters and distributions of one model under one policy.
#[derive(Debug, Clone, Default)]
pub struct ModelOutcome {
    /// The part before `ReplaySettings::split_s` (the training half of `--train`);
    /// the rest is the whole minus this.
    pub train: Window,
    /// Requests replayed.
    pub requests: u64,
    /// Refused (queue full) or failed in the scheduler.
    pub errors: u64,
    /// Of them, refused because [`super::MAX_IN_FLIGHT`] requests were already in flight.
    pub backlog_refused: u64,
    /// Cold requests.
    pub cold: u64,
    /// Reloads: the loads cold requests waited on, each counted once however many
    /// requests shared it (requests that arrive together and wait on one load each pay
    /// its wait, in their TTFT, but are one reload). The cost prices these.
    pub cold_loads: u64,
    /// Loads completed.
    pub loads: u64,
    /// Unloads by memory pressure (E3–E5).
    pub evictions: u64,
    /// Unloads by keep_alive expiry.
    pub expirations: u64,
    /// Unloads the policy asked for (E6).
    pub unloads: u64,
    /// Empty-prompt loads of the pre-warm policy.
    pub prewarm_loads: u64,
    /// Of them, unloaded again before a request of the model came.
    pub wasted_loads: u64,
    /// TTFT of all, warm and cold requests, ms.
    pub ttft: [MsHistogram; 3],
    /// End to end of all, warm and cold requests, ms.
    pub e2e: [MsHistogram; 3],
    /// `load_duration` of cold requests, ms.
    pub load: MsHistogram,
    /// Seconds its requests were served (dispatch to end), all slots together.
    pub busy_s: f64,
    /// GPU memory held, GB·s.
    pub held_gpu_gb_s: f64,
    /// System memory held, GB·s.
    pub held_ram_gb_s: f64,
    /// GPU memory held while no request of this model was in flight, GB·s.
    pub idle_gpu_gb_s: f64,
    /// The same for system memory, GB·s.
    pub idle_ram_gb_s: f64,
}

/// One policy's replay, finished.
#[derive(Debug, Clone)]
pub struct PolicyOutcome {
    /// The policy.
    pub policy: Policy,
    /// Per model, in the order of `ReplayModel`s.
    pub models: Vec<ModelOutcome>,
    /// Seconds from the first arrival to the end of the last request.
    pub horizon_s: f64,
    /// Most memory held at once, bytes (GPU + system).
    pub peak_bytes: u64,
    /// Its system-memory part at that moment, bytes.
    pub peak_ram_bytes: u64,
    /// TTFT of every request, all models together, ms.
    pub ttft: MsHistogram,
    /// Every unload by expiry or memory pressure, when asked for
    /// ([`Replay::record_unloads`]): to check against a server log's.
    pub unload_events: Vec<UnloadEvent>,
}

/// An unload the replay made, by expiry or memory pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnloadEvent {
    /// Seconds since the first arrival.
    pub t: f64,
    /// Index of the model.
    pub model: usize,
    /// Evicted to make room; otherwise expired.
    pub evicted: bool,
}
