//! Settings of the simulated Ollama host: the `[sim]` section of a scenario and the
//! flags of `kabench sim`. Every field is optional with Ollama's default; values are
//! written as users write them (`"24GiB"`, `"5m"`). Turns into a `sched::SchedConfig`,
//! a `catalogue::Catalogue` and the HTTP `FaultSettings`; `overlay` lays `kabench sim`'s
//! flags over a scenario's `[sim]`, `listing` prints the catalogue as the simulator
//! sees it (`kabench models`). Knows nothing of HTTP.

use std::time::Duration;

use crate::engine::catalogue::Catalogue;
use crate::engine::sched::SchedConfig;
use crate::units::{KeepAlive, ParseError, parse_bytes, parse_option_duration};

mod listing;
mod overlay;
#[cfg(test)]
mod tests;

pub use listing::catalogue_listing;

pub use crate::scenario::engine_settings::{FaultSettings, SimSettings};

/// Per-request HTTP faults of `[sim.faults]`, validated; load faults go to `SchedConfig`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of requests answered 500 before the first byte.
    pub error_500: f64,
    /// Share of streams ending with an `{"error":…}` line.
    pub midstream_error: f64,
    /// Share of connections dropped mid-stream.
    pub drop_connection: f64,
    /// Share of slowed streams.
    pub slow_stream: f64,
    /// Decode slowdown of a slow stream (≥ 1).
    pub slow_factor: f64,
    /// Added to every answer before its first byte.
    pub delay: Duration,
    /// How long after a reply the scheduler learns that the request ended.
    pub finish_lag: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_500: 0.0,
            midstream_error: 0.0,
            drop_connection: 0.0,
            slow_stream: 0.0,
            slow_factor: 5.0,
            delay: Duration::ZERO,
            finish_lag: Duration::ZERO,
        }
    }
}

impl Faults {
    /// Whether any fault can happen.
    pub fn any(&self) -> bool {
        self.error_500 > 0.0
            || self.midstream_error > 0.0
            || self.drop_connection > 0.0
            || self.slow_stream > 0.0
            || !self.delay.is_zero()
            || !self.finish_lag.is_zero()
    }
}

fn bad(key: &str, message: impl std::fmt::Display) -> ParseError {
    ParseError {
        message: format!("{key}: {message}"),
    }
}

fn bytes(key: &str, value: &Option<String>, default: u64) -> Result<u64, ParseError> {
    match value {
        Some(text) => parse_bytes(text).map_err(|e| bad(key, e)),
        None => Ok(default),
    }
}

fn duration(key: &str, value: &Option<String>, default: Duration) -> Result<Duration, ParseError> {
    match value {
        Some(text) => parse_option_duration(text).map_err(|e| bad(key, e)),
        None => Ok(default),
    }
}

fn share(key: &str, value: Option<f64>, default: f64) -> Result<f64, ParseError> {
    let v = value.unwrap_or(default);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            key,
            format!("{v} is not a share; write a number from 0 to 1"),
        ))
    }
}

fn bandwidth(key: &str, value: &Option<String>, default: f64) -> Result<f64, ParseError> {
    match value {
        Some(text) => {
            let b = parse_bytes(text).map_err(|e| bad(key, e))?;
            if b == 0 {
                return Err(bad(
                    key,
                    "bandwidth must be above 0 (bytes per second, e.g. \"10GB\")",
                ));
            }
            Ok(b as f64)
        }
        None => Ok(default),
    }
}

/// `sim.warm_overhead`: two durations, low then high, the high one above 0.
fn warm_range(pair: &[String]) -> Result<(Duration, Duration), ParseError> {
    const KEY: &str = "sim.warm_overhead";
    let [lo, hi] = pair else {
        return Err(bad(
            KEY,
            format!(
                "{} value(s); write two durations, low and high, e.g. [\"1ms\", \"2ms\"]",
                pair.len()
            ),
        ));
    };
    let lo = duration(KEY, &Some(lo.clone()), Duration::ZERO)?;
    let hi = duration(KEY, &Some(hi.clone()), Duration::ZERO)?;
    if hi < lo || hi.is_zero() {
        return Err(bad(
            KEY,
            "write the low duration first and a high one above 0 (Ollama's warm load_duration is never 0)",
        ));
    }
    Ok((lo, hi))
}

impl SimSettings {
    /// The scheduler's settings: Ollama's defaults where a field is absent, the seed
    /// from `seed` or else `scenario_seed`. Errors name the key (`sim.vram: bad size …`).
    pub fn sched_config(&self, scenario_seed: u64) -> Result<SchedConfig, ParseError> {
        let d = SchedConfig::default();
        let default_keep_alive = match &self.keep_alive {
            Some(text) => KeepAlive::parse(text).map_err(|e| bad("sim.keep_alive", e))?,
            None => d.default_keep_alive.clone(),
        };
        // 0 GPUs is a CPU-only host (E2, E5, E8, L7); `vram` is then ignored.
        let gpus = self.gpus.unwrap_or(d.gpus);
        let vram_bytes = bytes("sim.vram", &self.vram, d.vram_bytes)?;
        if vram_bytes == 0 {
            return Err(bad("sim.vram", "must be above 0"));
        }
        let fit_headroom = self.fit_headroom.unwrap_or(d.fit_headroom);
        if !(fit_headroom > 0.0 && fit_headroom <= 1.0) {
            return Err(bad(
                "sim.fit_headroom",
                format!(
                    "{fit_headroom} is out of range; write a share above 0, at most 1 (Ollama: 0.8)"
                ),
            ));
        }
        let vram_release_delay = duration(
            "sim.vram_release_delay",
            &self.vram_release_delay,
            d.vram_release_delay,
        )?;
        if vram_release_delay > Duration::from_secs(5) {
            return Err(bad(
                "sim.vram_release_delay",
                "at most \"5s\" (Ollama stops polling for freed VRAM after 5 s)",
            ));
        }
        let load_jitter = self.load_jitter.unwrap_or(d.load_jitter);
        if !(0.0..1.0).contains(&load_jitter) {
            return Err(bad(
                "sim.load_jitter",
                format!("{load_jitter} is out of range; write a share from 0 to below 1"),
            ));
        }
        let max_queue = self.max_queue.unwrap_or(d.max_queue);
        let cached_bandwidth = bandwidth(
            "sim.cached_bandwidth",
            &self.cached_bandwidth,
            d.cached_bandwidth,
        )?;
        let mut cold_bandwidth =
            bandwidth("sim.cold_bandwidth", &self.cold_bandwidth, d.cold_bandwidth)?;
        if self.page_cache_warm == Some(true) {
            cold_bandwidth = cached_bandwidth;
        }
        let load_timeout = duration("sim.load_timeout", &self.load_timeout, d.load_timeout)?;
        if load_timeout.is_zero() {
            return Err(bad("sim.load_timeout", "must be above 0"));
        }
        let warm_overhead = match &self.warm_overhead {
            None => d.warm_overhead,
            Some(pair) => warm_range(pair)?,
        };
        Ok(SchedConfig {
            gpus,
            vram_bytes,
            reserve_bytes: bytes("sim.reserve", &self.reserve, d.reserve_bytes)?,
            fit_headroom,
            max_loaded_models: self.max_loaded_models.unwrap_or(d.max_loaded_models),
            num_parallel: self.num_parallel.unwrap_or(d.num_parallel),
            max_queue,
            default_keep_alive,
            context_length: self.context_length.unwrap_or(d.context_length),
            load_timeout,
            runtime_start: duration("sim.runtime_start", &self.runtime_start, d.runtime_start)?,
            cached_bandwidth,
            cold_bandwidth,
            vram_release_delay,
            warm_overhead,
            load_jitter,
            seed: self.seed.unwrap_or(scenario_seed),
            load_failure_share: share("sim.faults.failed_load", self.faults.failed_load, 0.0)?,
            load_stall_share: share("sim.faults.stalled_load", self.faults.stalled_load, 0.0)?,
            load_stall: duration("sim.faults.stall", &self.faults.stall, d.load_stall)?,
            e7_revive_bug: self.e7_revive_bug.unwrap_or(false),
        })
    }

    /// The built-in catalogue with `[[sim.models]]` replacing or adding entries by name.
    pub fn catalogue(&self) -> Catalogue {
        Catalogue::builtin().with_overrides(&self.models)
    }

    /// The HTTP faults of `[sim.faults]`, shares checked to lie in [0, 1].
    pub fn faults(&self) -> Result<Faults, ParseError> {
        let f = &self.faults;
        let slow_factor = f.slow_factor.unwrap_or(5.0);
        if !(slow_factor >= 1.0 && slow_factor.is_finite()) {
            return Err(bad(
                "sim.faults.slow_factor",
                format!("{slow_factor} is out of range; write a factor of at least 1"),
            ));
        }
        let delay = duration("sim.faults.delay", &f.delay, Duration::ZERO)?;
        if delay > Duration::from_secs(60) {
            return Err(bad(
                "sim.faults.delay",
                format!("{delay:?} is over the limit of 60s; write a delay of at most 60s"),
            ));
        }
        let finish_lag = duration("sim.faults.finish_lag", &f.finish_lag, Duration::ZERO)?;
        if finish_lag > Duration::from_secs(10) {
            return Err(bad(
                "sim.faults.finish_lag",
                format!("{finish_lag:?} is over the limit of 10s; write a lag of at most 10s"),
            ));
        }
        Ok(Faults {
            delay,
            finish_lag,
            error_500: share("sim.faults.error_500", f.error_500, 0.0)?,
            midstream_error: share("sim.faults.midstream_error", f.midstream_error, 0.0)?,
            drop_connection: share("sim.faults.drop_connection", f.drop_connection, 0.0)?,
            slow_stream: share("sim.faults.slow_stream", f.slow_stream, 0.0)?,
            slow_factor,
        })
    }

    /// Settings for tests: loads of tens of milliseconds (runtime start 20 ms, 100 GB/s
    /// cached, 50 GB/s cold: a 7B Q4_K_M loads in ≈ 70–120 ms), E8 20 ms, no jitter,
    /// load timeout 2 s, stalls 200 ms. Matches `SchedConfig::for_tests` except for the
    /// warm overhead, which stays at Ollama's 1–10 ms.
    pub fn for_tests() -> SimSettings {
        SimSettings {
            runtime_start: Some("20ms".into()),
            cached_bandwidth: Some("100GB".into()),
            cold_bandwidth: Some("50GB".into()),
            vram_release_delay: Some("20ms".into()),
            load_jitter: Some(0.0),
            load_timeout: Some("2s".into()),
            faults: FaultSettings {
                stall: Some("200ms".into()),
                ..FaultSettings::default()
            },
            ..SimSettings::default()
        }
    }
}
