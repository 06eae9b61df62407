//! Value parsers: each flag's text becomes its typed value here, at the edge, and a
//! value that does not parse is a usage error (exit 2) naming the flag.

use std::time::{Duration, SystemTime};

use crate::units::{self, KeepAlive};

/// A duration as kabench's own options take it (`100ms`, `30s`, `5m`, `7d`).
pub fn duration(text: &str) -> Result<Duration, String> {
    units::parse_option_duration(text).map_err(|e| e.to_string())
}

/// A duration that must be longer than zero (a timeout, an interval).
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err(format!(
            "{text} is zero: give a duration longer than 0 (e.g. 30s)"
        )),
        d => Ok(d),
    }
}

/// A byte size (`24GiB`, `512MiB`, `8GB`, a number of bytes).
pub fn bytes(text: &str) -> Result<u64, String> {
    units::parse_bytes(text).map_err(|e| e.to_string())
}

/// A keep_alive as Ollama takes it (`30s`, `5m`, `0`, `300`, `-1`).
pub fn keep_alive(text: &str) -> Result<KeepAlive, String> {
    KeepAlive::parse(text).map_err(|e| e.to_string())
}

/// A number above 0 (a scale).
pub fn positive(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{v}: give a number above 0"))
    }
}

/// A finite number of at least 0 (a threshold, a price).
pub fn non_negative(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v}: give a finite number of at least 0"))
    }
}

/// A share of a time span: above 0, at most 1.
pub fn train_share(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "{v}: give the share of the time span to train on, above 0 and at most 1 (0.5: the first half)"
        ))
    }
}

/// A significance level: above 0, below 1 (0.05: a 95 % interval).
pub fn significance(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "{v}: give a significance level above 0 and below 1 (0.05: changes tested at 95 % confidence)"
        ))
    }
}

/// A noise threshold: a fraction from 0 to 1 (0.02 = 2 %).
pub fn noise(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v}: give the noise threshold as a fraction from 0 to 1 (0.02 = ±2 %)"
        ))
    }
}

/// The most bootstrap resamples `compare` takes.
pub const MAX_RESAMPLES: usize = 1_000_000;

/// A bootstrap resample count: 100 to [`MAX_RESAMPLES`].
pub fn resamples(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (100..=MAX_RESAMPLES).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n}: give from 100 to {MAX_RESAMPLES} resamples")),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// A shard count: at least 1.
pub fn shards(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("0: give at least 1 shard".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// A repetition count for `run --repeat`: a whole number, at least 1 (its upper limit
/// is checked with the scenario's `[run] repeat`).
pub fn repeat(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("0: give how many times each cell runs, at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// A user count for a swarm: at least 1.
pub fn users(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err(
            "0: a swarm needs at least 1 user; give --users 1 or more (or leave it out for [swarm] users)"
                .into(),
        ),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// An RFC 3339 time (`2026-12-01T18:30:00Z`).
pub fn start_at(text: &str) -> Result<SystemTime, String> {
    crate::shard::parse_start_at(text).map_err(|e| e.0)
}

/// `START..END` of an input's own time, in seconds or durations.
pub fn slice(text: &str) -> Result<(f64, f64), String> {
    crate::traffic::trace::parse_slice(text)
}

/// A UTC offset (`+02:00`, `-0500`, `UTC`).
pub fn utc_offset(text: &str) -> Result<time::UtcOffset, String> {
    crate::traffic::ollama_log::parse_tz(text)
}

/// An Ollama address as OLLAMA_HOST takes it (`host:port`, `http://…`).
pub fn ollama_host(text: &str) -> Result<reqwest::Url, String> {
    crate::ollama::host::parse_ollama_host(text).map_err(|e| e.to_string())
}

fn number(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .map_err(|e| format!("{text:?}: {e}"))
}
