//! When each model's memory was released after its last request, against the
//! keep_alive in force (KA6: the last dispatched request's), from the best per-model
//! source (`/api/ps`, else the simulator's rows), and whether an early release was an
//! eviction made for another model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{ReleaseDelay, Series, per_poll};
use crate::folder::{CellMeta, RequestRecord, StreamMeta, VramSample};
use crate::ollama::name;

/// Poll times and the models present at each, from the best per-model source.
struct Presence {
    polls: Vec<(f64, BTreeSet<String>)>,
}

impl Presence {
    /// `/api/ps` if sampled, else the simulator's (or an exporter's) per-model rows.
    fn from_samples(samples: &[VramSample], start: f64) -> Option<Presence> {
        for source in ["ollama_ps", "sim"] {
            let mut polls: BTreeMap<u64, (f64, BTreeSet<String>)> = BTreeMap::new();
            for s in samples
                .iter()
                .filter(|s| s.source == source && s.t_ms >= start)
            {
                let e = polls
                    .entry(s.t_ms.max(0.0).to_bits())
                    .or_insert_with(|| (s.t_ms, BTreeSet::new()));
                // `/api/ps` lists what is resident (even CPU-only, size_vram 0); the
                // simulator's metrics may list a model at 0 bytes once it is gone.
                if !s.model.is_empty() && (source == "ollama_ps" || s.used_bytes > 0) {
                    e.1.insert(s.model.clone());
                }
            }
            if !polls.is_empty() {
                return Some(Presence {
                    polls: polls.into_values().collect(),
                });
            }
        }
        None
    }

    /// Whether `set` lists `model`, as Ollama compares names (`m` ≡ `m:latest`).
    fn lists(set: &BTreeSet<String>, model: &str) -> bool {
        set.iter().any(|m| name::same_model(m, model))
    }

    fn released_after(&self, model: &str, after_ms: f64) -> Option<f64> {
        self.polls
            .iter()
            .find(|(t, set)| *t >= after_ms && !Self::lists(set, model))
            .map(|(t, _)| *t)
    }

    /// A model that was absent just before `at_ms` and present within `within_ms` after
    /// it, other than `model`: the load an early release made room for.
    fn arrival_near(&self, model: &str, at_ms: f64, within_ms: f64) -> Option<String> {
        let before = self
            .polls
            .iter()
            .take_while(|(t, _)| *t < at_ms)
            .last()
            .map(|(_, set)| set.clone())
            .unwrap_or_default();
        self.polls
            .iter()
            .filter(|(t, _)| *t >= at_ms && *t <= at_ms + within_ms)
            .flat_map(|(_, set)| set.iter())
            .find(|m| !name::same_model(m, model) && !Self::lists(&before, m))
            .cloned()
    }

    fn times(&self) -> Vec<f64> {
        self.polls.iter().map(|p| p.0).collect()
    }
}

/// Median gap between consecutive times, in seconds (0 with fewer than two).
fn median_gap_s(times: &[f64]) -> f64 {
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return 0.0;
    }
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2] / 1000.0
}

/// First time at or after `after_ms` that a total series fell clearly below its level at
/// `after_ms` (by 10%, at least 64 MiB): the fallback when no per-model source exists.
fn dropped_after(series: &Series, after_ms: f64) -> Option<f64> {
    let level = series
        .iter()
        .take_while(|p| p.0 <= after_ms)
        .last()
        .or(series.first())?
        .1;
    let drop = (level / 10).max(64 << 20);
    series
        .iter()
        .find(|p| p.0 >= after_ms && p.1 + drop <= level)
        .map(|p| p.0)
}

/// First time at or after `after_ms` that `series` came back to its lowest level (within
/// a quarter of its rise above it at `after_ms`, which must be at least 16 MiB): a
/// runner process exiting, whatever else of the same name runs beside it.
///
/// The level is the highest from `after_ms` to a process rescan later (the RSS source
/// finds a new runner at its next rescan, up to [`RSS_DISCOVERY_MS`] after it started).
fn back_to_baseline(series: &Series, after_ms: f64) -> Option<f64> {
    let base = series.iter().map(|p| p.1).min()?;
    let at = series.iter().take_while(|p| p.0 <= after_ms).last()?;
    let (peak_t, level) = series
        .iter()
        .filter(|p| p.0 >= after_ms && p.0 <= after_ms + RSS_DISCOVERY_MS)
        .fold(
            (at.0, at.1),
            |acc, p| if p.1 > acc.1 { (p.0, p.1) } else { acc },
        );
    let rise = level.checked_sub(base).filter(|r| *r >= 16 << 20)?;
    series
        .iter()
        .find(|p| p.0 >= after_ms.max(peak_t) && p.1 <= base + rise / 4)
        .map(|p| p.0)
}

/// How late the RSS source may find a new process: one rescan period and a sample.
const RSS_DISCOVERY_MS: f64 = 1_500.0;

/// The stream whose keep_alive is in force for `model` at the end (KA6: the last
/// dispatched request's).
fn stream_in_force<'a>(
    model: &str,
    requests: &[&RequestRecord],
    cell: &'a CellMeta,
) -> Option<&'a StreamMeta> {
    let last = requests.iter().max_by(|a, b| {
        let ka = a.sent_ms.unwrap_or(a.intended_ms);
        let kb = b.sent_ms.unwrap_or(b.intended_ms);
        ka.total_cmp(&kb)
    });
    last.and_then(|r| cell.streams.iter().find(|s| s.name == r.stream))
        .or_else(|| cell.streams.iter().find(|s| s.model == model))
}

pub(super) fn release_delays(
    samples: &[VramSample],
    requests: &[RequestRecord],
    cell: &CellMeta,
    series: &Series,
    tolerance: Duration,
) -> Vec<ReleaseDelay> {
    let start = cell.started_ms.unwrap_or(0.0);
    let presence = Presence::from_samples(samples, start);
    let (times, window_end) = match &presence {
        Some(p) => {
            let t = p.times();
            let end = t.last().copied().unwrap_or(start);
            (t, end)
        }
        None => (
            series.iter().map(|p| p.0).collect(),
            series.last().map(|p| p.0).unwrap_or(start),
        ),
    };
    let slack_s = tolerance.as_secs_f64() + median_gap_s(&times);
    let runners = per_poll(
        samples,
        start,
        |r| r.source == "rss" && r.model != "ollama",
        |r| r.used_bytes,
    );
    let mut models: Vec<&str> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in &cell.streams {
        if seen.insert(s.model.as_str()) {
            models.push(&s.model);
        }
    }
    let single_model = models.len() == 1;
    // The cell's sent requests by model, once (a cell of thousands of models is not
    // scanned per model).
    let mut by_model: std::collections::BTreeMap<&str, Vec<&RequestRecord>> =
        std::collections::BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| (r.cell.is_empty() || r.cell == cell.id) && r.sent_ms.is_some())
    {
        by_model.entry(r.model.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for model in models {
        let mine: &[&RequestRecord] = by_model.get(model).map_or(&[], Vec::as_slice);
        let Some(last_end) = mine.iter().map(|r| r.end_ms).max_by(f64::total_cmp) else {
            continue;
        };
        let stream = stream_in_force(model, mine, cell);
        let released = match &presence {
            Some(p) => p.released_after(model, last_end),
            None => dropped_after(series, last_end),
        };
        let delay = released.map(|t| (t - last_end) / 1000.0);
        let ka = stream.and_then(|s| s.keep_alive.as_ref());
        let forever = ka.is_some_and(|k| k.is_forever());
        let ka_s = ka.and_then(|k| k.duration()).map(|d| d.as_secs_f64());
        let mut honoured = if forever {
            delay.is_none()
        } else if let Some(k) = ka_s {
            match delay {
                Some(d) => (d - k).abs() <= slack_s,
                None => window_end < last_end + (k + slack_s) * 1000.0,
            }
        } else {
            true
        };
        // Released early because another model needed the room (E3, E5)?
        let early = match (delay, ka_s) {
            (Some(d), Some(k)) => d < k - slack_s,
            (Some(_), None) => forever,
            _ => false,
        };
        let evicted_for = match (&presence, released) {
            (Some(p), Some(t)) if early => p.arrival_near(model, t, EVICTION_WINDOW_MS),
            _ => None,
        };
        if evicted_for.is_some() {
            honoured = true;
        }
        let process_release_delay_s = single_model
            .then(|| back_to_baseline(&runners, last_end))
            .flatten()
            .map(|t| (t - last_end) / 1000.0);
        out.push(ReleaseDelay {
            process_release_delay_s,
            model: model.to_string(),
            keep_alive: ka.cloned(),
            release_delay_s: delay,
            honoured,
            evicted_for,
        });
    }
    out
}

/// How soon after an early release another model must appear for the release to count
/// as an eviction made for it: the freed-VRAM wait (E8, ≤ 5 s) plus a slow load.
const EVICTION_WINDOW_MS: f64 = 45_000.0;
