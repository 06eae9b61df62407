//! Derived VRAM figures of one cell from `vram.csv` samples and the cell's requests:
//! GB-seconds held (a step integral), GB-seconds held while idle, peak, mean, the release
//! delay of each model against its keep_alive, and warnings for what users trip over.
//! Pure functions over typed rows; knows nothing of how the samples were taken.
//!
//! Window: from the cell's `started_ms` to the last sample given. Pass the samples of
//! the cell only ([`cell_samples`]: up to the next cell's start), so the tail after the
//! last request, while keep_alive runs out, is counted and the next cell's is not.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ollama::name;
use crate::record::{CellMeta, RequestRecord, StreamMeta, VramSample};

/// Bytes per GB in the figures (decimal, as GPU prices are quoted).
pub const GB: f64 = 1e9;
/// Sources in order of preference for the figures.
pub const SOURCE_PREFERENCE: [&str; 5] = ["nvml", "sim", "prometheus", "ollama_ps", "rss"];
/// How long memory may take to return to its baseline after the last unload.
pub const BASELINE_GRACE: Duration = Duration::from_secs(5);
/// `/api/ps` and NVML disagreeing by more than this share of the larger figure warns.
pub const DISAGREEMENT_SHARE: f64 = 0.2;
/// Least excess over the baseline that counts as memory not given back.
pub const BASELINE_MARGIN_BYTES: u64 = 256 << 20;

/// A cell's memory figures (`summary.json`, each cell's `vram`): the memory held for
/// the models wherever it sits, GPU memory plus system memory. On a GPU host that fits
/// the model it is the GPU's; on a CPU-only host (`/api/ps` `size_vram` 0) all of it is
/// system memory; a partly offloaded model holds both. The top-level figures are the
/// sum; `gpu` and `ram` split them, each `null` when nothing measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct VramFigures {
    /// Source of the GPU figures: `nvml`, else `sim` / `prometheus`, else `ollama_ps`,
    /// else `rss` (then the figures are system memory only).
    pub source: String,
    /// ∫ bytes dt over the window, in GB·s (GPU + system memory).
    pub gb_seconds_held: f64,
    /// The same integral over the times no request of the cell was in flight.
    pub idle_gb_seconds: f64,
    /// Highest total.
    pub peak_bytes: u64,
    /// Time-weighted mean over the window.
    pub mean_bytes: f64,
    /// Per model: release delay against keep_alive.
    pub release: Vec<ReleaseDelay>,
    /// GPU memory alone; `null` when no GPU source sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<MemoryPart>,
    /// System memory held for the models (`/api/ps` `size − size_vram`, else the
    /// runners' RSS above the cell's baseline); `null` when nothing measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<MemoryPart>,
    /// Which memory the figures count: `GPU`, `system RAM` or `GPU + system RAM`.
    #[serde(default)]
    pub counted: String,
}

impl VramFigures {
    /// Idle GB·s on the GPU and in system memory. A summary written before the split
    /// (no `gpu`, no `ram`) counts all of it as GPU memory.
    pub fn idle_split(&self) -> (f64, f64) {
        match (&self.gpu, &self.ram) {
            (None, None) => (self.idle_gb_seconds, 0.0),
            (g, r) => (
                g.as_ref().map_or(0.0, |p| p.idle_gb_seconds),
                r.as_ref().map_or(0.0, |p| p.idle_gb_seconds),
            ),
        }
    }

    /// Peak bytes on the GPU and in system memory (see [`VramFigures::idle_split`]).
    pub fn peak_split(&self) -> (u64, u64) {
        match (&self.gpu, &self.ram) {
            (None, None) => (self.peak_bytes, 0),
            (g, r) => (
                g.as_ref().map_or(0, |p| p.peak_bytes),
                r.as_ref().map_or(0, |p| p.peak_bytes),
            ),
        }
    }
}

/// The figures of one kind of memory (GPU or system).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct MemoryPart {
    /// The source the figures come from.
    pub source: String,
    /// ∫ bytes dt over the window, GB·s.
    pub gb_seconds_held: f64,
    /// The same over the times no request was in flight.
    pub idle_gb_seconds: f64,
    /// Highest sample.
    pub peak_bytes: u64,
    /// Time-weighted mean.
    pub mean_bytes: f64,
}

/// One model's release: from the end of its last request to its memory being freed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ReleaseDelay {
    /// Model tag.
    pub model: String,
    /// keep_alive in force (the last dispatched request's, KA6), as written.
    pub keep_alive: String,
    /// keep_alive in seconds; `null` for forever or not sent.
    pub keep_alive_s: Option<f64>,
    /// Seconds from the last request's end to the model leaving `/api/ps` (or its bytes
    /// dropping); `null` when it was not released within the window.
    pub release_delay_s: Option<f64>,
    /// Whether the server kept the model as long as asked, within the tolerance plus
    /// one sampling interval. True when nothing can be judged (keep_alive not sent, or
    /// the window ended before the deadline). An eviction to make room for another
    /// model (E3, E5) is the server following its rules: honoured, with `evicted_for`.
    pub honoured: bool,
    /// The model whose load pushed this one out before its keep_alive ran out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_for: Option<String>,
    /// The same delay read from the runner processes' RSS (`rss` rows other than the
    /// server's own `ollama`): seconds from the last request's end until their memory
    /// dropped. Only for a cell with one model (RSS does not say which model a runner
    /// serves); `null` when not sampled or not released within the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_release_delay_s: Option<f64>,
}

/// The samples of one cell: from its `started_ms` up to the next cell's `started_ms`
/// (the end of the run for the last cell). Empty when the cell never started.
pub fn cell_samples(samples: &[VramSample], cells: &[CellMeta], cell_id: &str) -> Vec<VramSample> {
    let Some(start) = cells
        .iter()
        .find(|c| c.id == cell_id)
        .and_then(|c| c.started_ms)
    else {
        return Vec::new();
    };
    let next = cells
        .iter()
        .filter_map(|c| c.started_ms)
        .filter(|&t| t > start)
        .fold(f64::INFINITY, f64::min);
    samples
        .iter()
        .filter(|s| s.t_ms >= start && s.t_ms < next)
        .cloned()
        .collect()
}

/// A step function of bytes over time: (t_ms, bytes), sorted, one point per poll.
type Series = Vec<(f64, u64)>;

/// Totals of one source per poll: device-total rows (model empty) summed across
/// devices; for `rss`, the process rows summed.
fn totals(samples: &[VramSample], source: &str, from_ms: f64) -> Series {
    let mut by_t: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for s in samples {
        if s.source != source || s.t_ms < from_ms || !s.t_ms.is_finite() {
            continue;
        }
        if source != "rss" && !s.model.is_empty() {
            continue;
        }
        // t_ms ≥ 0 here, so the bit pattern orders like the value.
        let e = by_t.entry(s.t_ms.max(0.0).to_bits()).or_insert((s.t_ms, 0));
        e.1 += s.used_bytes;
    }
    by_t.into_values().collect()
}

fn has_source(samples: &[VramSample], source: &str) -> bool {
    samples.iter().any(|s| s.source == source)
}

/// The in-flight intervals of the cell's requests, merged (ms).
fn busy_intervals(requests: &[RequestRecord], cell: &CellMeta) -> Vec<(f64, f64)> {
    let mut iv: Vec<(f64, f64)> = requests
        .iter()
        .filter(|r| r.cell.is_empty() || r.cell == cell.id)
        .filter(|r| r.status.is_some() || r.sent_ms.is_some())
        .map(|r| (r.sent_ms.unwrap_or(r.intended_ms), r.end_ms))
        .filter(|(a, b)| b > a)
        .collect();
    iv.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (a, b) in iv {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

fn overlap(seg: (f64, f64), busy: &[(f64, f64)]) -> f64 {
    busy.iter()
        .map(|&(a, b)| (b.min(seg.1) - a.max(seg.0)).max(0.0))
        .sum()
}

/// Figures for one cell from `samples` (the cell's, see [`cell_samples`]) and its
/// requests; `None` when the cell never started or no source sampled inside it.
pub fn vram_figures(
    samples: &[VramSample],
    requests: &[RequestRecord],
    cell: &CellMeta,
    tolerance: Duration,
) -> Option<VramFigures> {
    let start = cell.started_ms?;
    let busy = busy_intervals(requests, cell);
    let gpu = SOURCE_PREFERENCE
        .iter()
        .filter(|src| **src != "rss")
        .find_map(|src| {
            let s = totals(samples, src, start);
            (!s.is_empty()).then(|| (src.to_string(), s))
        });
    let ram = ram_series(samples, start);
    let series = match (&gpu, &ram) {
        (Some((_, g)), Some((_, r))) => sum_series(g, r),
        (Some((_, g)), None) => g.clone(),
        (None, Some((_, r))) => r.clone(),
        (None, None) => return None,
    };
    let part = |(source, series): &(String, Series)| integrate(source, series, &busy);
    let (gpu, ram) = (gpu.as_ref().map(part), ram.as_ref().map(part));
    let total = integrate("", &series, &busy);
    let counted = match (&gpu, &ram) {
        (Some(g), Some(r)) if g.peak_bytes > 0 && r.peak_bytes > 0 => "GPU + system RAM",
        (_, Some(r)) if r.peak_bytes > 0 => "system RAM",
        (Some(_), _) => "GPU",
        (None, _) => "system RAM",
    };
    Some(VramFigures {
        source: gpu
            .as_ref()
            .or(ram.as_ref())
            .map(|p| p.source.clone())
            .unwrap_or_default(),
        gb_seconds_held: total.gb_seconds_held,
        idle_gb_seconds: total.idle_gb_seconds,
        peak_bytes: total.peak_bytes,
        mean_bytes: total.mean_bytes,
        release: release_delays(samples, requests, cell, &series, tolerance),
        gpu,
        ram,
        counted: counted.into(),
    })
}

/// Held, idle, peak and mean of one step series.
fn integrate(source: &str, series: &Series, busy: &[(f64, f64)]) -> MemoryPart {
    let (mut held, mut idle) = (0.0f64, 0.0f64);
    for w in series.windows(2) {
        let (t0, v) = w[0];
        let t1 = w[1].0;
        let seg_ms = t1 - t0;
        let idle_ms = seg_ms - overlap((t0, t1), busy);
        held += v as f64 * seg_ms;
        idle += v as f64 * idle_ms.max(0.0);
    }
    let span_ms = series.last().map_or(0.0, |l| l.0) - series.first().map_or(0.0, |f| f.0);
    let mean_bytes = if span_ms > 0.0 {
        held / span_ms
    } else {
        series.first().map_or(0.0, |f| f.1 as f64)
    };
    MemoryPart {
        source: source.to_string(),
        gb_seconds_held: held / 1000.0 / GB,
        idle_gb_seconds: idle / 1000.0 / GB,
        peak_bytes: series.iter().map(|p| p.1).max().unwrap_or(0),
        mean_bytes,
    }
}

/// The sum of two step series, evaluated at the union of their times (each holds its
/// last value; before its first sample a series counts 0).
fn sum_series(a: &Series, b: &Series) -> Series {
    let mut times: Vec<f64> = a.iter().chain(b.iter()).map(|p| p.0).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let (mut i, mut j) = (0usize, 0usize);
    let (mut va, mut vb) = (0u64, 0u64);
    let mut out = Vec::with_capacity(times.len());
    for t in times {
        while i < a.len() && a[i].0 <= t {
            va = a[i].1;
            i += 1;
        }
        while j < b.len() && b[j].0 <= t {
            vb = b[j].1;
            j += 1;
        }
        out.push((t, va + vb));
    }
    out
}

/// System memory held for the models: `/api/ps`'s `size − size_vram` per poll (what
/// the runners hold outside the GPU: all of `size` on a CPU-only host), else the RSS of
/// the Ollama processes above their lowest level in the cell (the cell starts with its
/// models unloaded, so that level is the server alone).
fn ram_series(samples: &[VramSample], start: f64) -> Option<(String, Series)> {
    let mut by_t: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| {
        s.source == "ollama_ps" && s.model.is_empty() && s.t_ms >= start && s.t_ms.is_finite()
    }) {
        let Some(size) = s.total_bytes else { continue };
        let e = by_t.entry(s.t_ms.max(0.0).to_bits()).or_insert((s.t_ms, 0));
        e.1 += size.saturating_sub(s.used_bytes);
    }
    if !by_t.is_empty() {
        return Some(("ollama_ps".into(), by_t.into_values().collect()));
    }
    let rss = totals(samples, "rss", start);
    let base = rss.iter().map(|p| p.1).min()?;
    Some((
        "rss".into(),
        rss.into_iter().map(|(t, v)| (t, v - base)).collect(),
    ))
}

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

fn release_delays(
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
    let runners: Series = {
        let mut by_t: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
        for r in samples
            .iter()
            .filter(|r| r.source == "rss" && r.model != "ollama" && r.t_ms >= start)
        {
            let e = by_t.entry(r.t_ms.max(0.0).to_bits()).or_insert((r.t_ms, 0));
            e.1 += r.used_bytes;
        }
        by_t.into_values().collect()
    };
    let mut models: Vec<&str> = Vec::new();
    for s in &cell.streams {
        if !models.contains(&s.model.as_str()) {
            models.push(&s.model);
        }
    }
    let single_model = models.len() == 1;
    let mut out = Vec::new();
    for model in models {
        let mine: Vec<&RequestRecord> = requests
            .iter()
            .filter(|r| r.model == model && (r.cell.is_empty() || r.cell == cell.id))
            .filter(|r| r.sent_ms.is_some())
            .collect();
        let Some(last_end) = mine.iter().map(|r| r.end_ms).max_by(f64::total_cmp) else {
            continue;
        };
        let stream = stream_in_force(model, &mine, cell);
        let released = match &presence {
            Some(p) => p.released_after(model, last_end),
            None => dropped_after(series, last_end),
        };
        let delay = released.map(|t| (t - last_end) / 1000.0);
        let forever = stream.is_some_and(|s| s.keep_alive_forever);
        let ka_s = stream.and_then(|s| s.keep_alive_s);
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
            keep_alive: stream.map(|s| s.keep_alive.clone()).unwrap_or_default(),
            keep_alive_s: ka_s,
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

fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
}

/// Warnings for one cell (`summary.json`, each cell's `warnings`): keep_alive not
/// honoured; memory (NVML, RSS) not back to its baseline within [`BASELINE_GRACE`] of the
/// last unload, or growing across load/unload cycles; a model partly offloaded to the CPU
/// (`size_vram < size`); `/api/ps` and NVML disagreeing by more than
/// [`DISAGREEMENT_SHARE`].
pub fn vram_warnings(
    samples: &[VramSample],
    requests: &[RequestRecord],
    cell: &CellMeta,
    figures: &VramFigures,
    tolerance: Duration,
) -> Vec<String> {
    let start = cell.started_ms.unwrap_or(0.0);
    let mut out = Vec::new();
    for r in figures.release.iter().filter(|r| !r.honoured) {
        let asked = match r.keep_alive_s {
            Some(k) => format!("keep_alive {:?} ({k} s)", r.keep_alive),
            None => format!("keep_alive {:?} (forever)", r.keep_alive),
        };
        out.push(match r.release_delay_s {
            Some(d) => format!(
                "keep_alive not honoured for {}: released {d:.2} s after its last request, {asked}, tolerance {:.2} s",
                r.model,
                tolerance.as_secs_f64()
            ),
            None => format!(
                "keep_alive not honoured for {}: never released within the cell, {asked}",
                r.model
            ),
        });
    }
    for r in &figures.release {
        if let (Some(other), Some(d)) = (&r.evicted_for, r.release_delay_s) {
            out.push(format!(
                "{} was evicted {d:.2} s after its last request, before its keep_alive {:?} ran out, to make room for {other}: memory or OLLAMA_MAX_LOADED_MODELS is the limit, not keep_alive",
                r.model, r.keep_alive
            ));
        }
    }
    let ps_totals = totals(samples, "ollama_ps", start);
    for source in ["nvml", "rss"] {
        let series = totals(samples, source, start);
        if series.len() < 2 {
            continue;
        }
        out.extend(baseline_warning(
            source,
            &series,
            &figures.release,
            requests,
        ));
        out.extend(growth_warning(source, &series, &ps_totals));
    }
    out.extend(offload_warnings(samples, start));
    if has_source(samples, "nvml") {
        out.extend(disagreement_warning(
            &totals(samples, "nvml", start),
            &ps_totals,
        ));
    }
    out
}

fn margin(baseline: u64) -> u64 {
    (baseline / 20).max(BASELINE_MARGIN_BYTES)
}

/// Memory still above the cell's lowest level (its baseline: the cell starts with its
/// models unloaded) [`BASELINE_GRACE`] after every model of the cell was released.
fn baseline_warning(
    source: &str,
    series: &Series,
    release: &[ReleaseDelay],
    requests: &[RequestRecord],
) -> Option<String> {
    if release.is_empty() {
        return None;
    }
    let mut last_release = f64::MIN;
    for r in release {
        let end = requests
            .iter()
            .filter(|q| q.model == r.model && q.sent_ms.is_some())
            .map(|q| q.end_ms)
            .max_by(f64::total_cmp)?;
        last_release = last_release.max(end + r.release_delay_s? * 1000.0);
    }
    let baseline = series.iter().map(|p| p.1).min()?;
    let deadline = last_release + BASELINE_GRACE.as_secs_f64() * 1000.0;
    if series.last()?.0 < deadline {
        return None;
    }
    let lowest = series
        .iter()
        .filter(|p| p.0 >= last_release && p.0 <= deadline)
        .map(|p| p.1)
        .min()?;
    (lowest > baseline + margin(baseline)).then(|| {
        format!(
            "memory not given back after unload: {source} reads {} {} s after the last model left, baseline {}",
            gib(lowest as f64),
            BASELINE_GRACE.as_secs(),
            gib(baseline as f64)
        )
    })
}

/// The lowest level of `series` during each stretch when `/api/ps` listed nothing
/// rising from stretch to stretch (three or more), by more than the margin overall.
fn growth_warning(source: &str, series: &Series, ps_totals: &Series) -> Option<String> {
    let mut troughs: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < ps_totals.len() {
        if ps_totals[i].1 != 0 {
            i += 1;
            continue;
        }
        let from = ps_totals[i].0;
        let mut j = i;
        while j + 1 < ps_totals.len() && ps_totals[j + 1].1 == 0 {
            j += 1;
        }
        let to = ps_totals[j].0;
        if let Some(low) = series
            .iter()
            .filter(|p| p.0 >= from && p.0 <= to)
            .map(|p| p.1)
            .min()
        {
            troughs.push(low);
        }
        i = j + 1;
    }
    if troughs.len() < 3 || !troughs.windows(2).all(|w| w[1] > w[0]) {
        return None;
    }
    let (first, last) = (troughs[0], troughs[troughs.len() - 1]);
    (last > first + margin(first)).then(|| {
        format!(
            "memory growing across load/unload cycles: {source} idle level rose from {} to {} over {} cycles",
            gib(first as f64),
            gib(last as f64),
            troughs.len()
        )
    })
}

/// One warning per model that `/api/ps` showed partly on the GPU (`0 < size_vram < size`).
fn offload_warnings(samples: &[VramSample], start: f64) -> Vec<String> {
    let mut worst: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.source == "ollama_ps" && s.t_ms >= start && !s.model.is_empty())
    {
        let Some(size) = s.total_bytes else { continue };
        if size == 0 || s.used_bytes >= size {
            continue;
        }
        let share = s.used_bytes as f64 / size as f64;
        let e = worst.entry(&s.model).or_insert((s.used_bytes, size));
        if share < e.0 as f64 / e.1 as f64 {
            *e = (s.used_bytes, size);
        }
    }
    worst
        .into_iter()
        // All of a model in system memory (a CPU-only host) is no fault: the figures
        // count it as system RAM and say so (`counted`).
        .filter(|(_, (vram, _))| *vram > 0)
        .map(|(model, (vram, size))| {
            format!(
                "{model} partly offloaded to the CPU: size_vram {} of size {} ({:.0}% on the GPU); the rest is counted as system RAM",
                gib(vram as f64),
                gib(size as f64),
                100.0 * vram as f64 / size as f64
            )
        })
        .collect()
}

/// NVML's rise over its lowest level in the cell against `/api/ps`'s total, compared at each NVML
/// sample while something was resident; warns when the median gap passes the share.
fn disagreement_warning(nvml: &Series, ps: &Series) -> Option<String> {
    let base = nvml.iter().map(|p| p.1).min()?;
    let mut rel = Vec::new();
    let mut pairs = Vec::new();
    for &(t, v) in nvml {
        let Some(&(_, p)) = ps.iter().take_while(|q| q.0 <= t).last() else {
            continue;
        };
        if p == 0 {
            continue;
        }
        let delta = v.saturating_sub(base);
        let larger = delta.max(p) as f64;
        rel.push((delta as f64 - p as f64).abs() / larger);
        pairs.push((delta, p));
    }
    if rel.len() < 3 {
        return None;
    }
    let mut sorted = rel.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    if median <= DISAGREEMENT_SHARE {
        return None;
    }
    let (d, p) = pairs[rel.iter().position(|&r| r == median).unwrap_or(0)];
    Some(format!(
        "/api/ps and NVML disagree: NVML shows {} above its idle level while /api/ps lists {} (median gap {:.0}%, allowed {:.0}%)",
        gib(d as f64),
        gib(p as f64),
        median * 100.0,
        DISAGREEMENT_SHARE * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "m:1b";
    const SIZE: u64 = 2_000_000_000; // 2 GB
    const STEP_MS: f64 = 100.0;

    fn cell(ka: &str, ka_s: Option<f64>, forever: bool) -> CellMeta {
        CellMeta {
            id: "c0".into(),
            streams: vec![StreamMeta {
                name: "s".into(),
                model: MODEL.into(),
                keep_alive: ka.into(),
                keep_alive_s: ka_s,
                keep_alive_forever: forever,
                ..Default::default()
            }],
            started_ms: Some(0.0),
            ended_ms: Some(11_500.0),
            ..Default::default()
        }
    }

    /// Requests [0.5,1.5] s, [3.5,4.5] s, [10.5,11.5] s: gaps of 2 s and 6 s.
    fn requests() -> Vec<RequestRecord> {
        [(500.0, 1500.0), (3500.0, 4500.0), (10_500.0, 11_500.0)]
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| RequestRecord {
                cell: "c0".into(),
                request: i as u32,
                stream: "s".into(),
                model: MODEL.into(),
                intended_ms: a,
                sent_ms: Some(a),
                end_ms: b,
                status: Some(200),
                ..Default::default()
            })
            .collect()
    }

    /// Whether a server honouring keep_alive `k_ms` holds the model at `t` (loads are
    /// instant; the model unloads `k_ms` after a request ends unless another starts).
    fn resident(t: f64, reqs: &[RequestRecord], k_ms: f64) -> bool {
        reqs.iter()
            .any(|r| t >= r.sent_ms.unwrap() && t < r.end_ms + k_ms)
    }

    /// `/api/ps` and simulator rows every 100 ms for `until_ms`, plus NVML device rows
    /// with a 500 MB baseline when `nvml` is set.
    fn trace(reqs: &[RequestRecord], k_ms: f64, until_ms: f64, nvml: bool) -> Vec<VramSample> {
        let mut out = Vec::new();
        let mut t = 0.0;
        while t <= until_ms {
            let on = resident(t, reqs, k_ms);
            let used = if on { SIZE } else { 0 };
            if on {
                out.push(VramSample {
                    t_ms: t,
                    source: "ollama_ps".into(),
                    device: "ollama".into(),
                    model: MODEL.into(),
                    used_bytes: SIZE,
                    total_bytes: Some(SIZE),
                    extra: "2026-01-01T00:00:00Z".into(),
                });
            }
            out.push(VramSample {
                t_ms: t,
                source: "ollama_ps".into(),
                device: "ollama".into(),
                used_bytes: used,
                total_bytes: Some(used),
                ..Default::default()
            });
            out.push(VramSample {
                t_ms: t,
                source: "sim".into(),
                device: "sim".into(),
                used_bytes: used,
                total_bytes: Some(24_000_000_000),
                ..Default::default()
            });
            if nvml {
                out.push(VramSample {
                    t_ms: t,
                    source: "nvml".into(),
                    device: "gpu0".into(),
                    used_bytes: 500_000_000 + used,
                    total_bytes: Some(24_000_000_000),
                    ..Default::default()
                });
            }
            t += STEP_MS;
        }
        out
    }

    const TOL: Duration = Duration::from_millis(350);

    #[test]
    fn release_delay_of_a_3s_keep_alive_is_3s_within_one_interval() {
        let reqs = requests();
        let samples = trace(&reqs, 3000.0, 20_000.0, false);
        let f = vram_figures(&samples, &reqs, &cell("3s", Some(3.0), false), TOL).unwrap();
        assert_eq!(f.source, "sim");
        assert_eq!(f.release.len(), 1);
        let r = &f.release[0];
        let d = r.release_delay_s.unwrap();
        assert!((d - 3.0).abs() <= STEP_MS / 1000.0, "delay {d}");
        assert!(r.honoured);
        assert_eq!(r.keep_alive, "3s");
        assert_eq!(f.peak_bytes, SIZE);
    }

    #[test]
    fn idle_gb_seconds_grow_with_keep_alive_as_the_gaps_predict() {
        // Held while idle: min(gap, k) for each gap (2 s, 6 s) plus k after the last
        // request, times 2 GB. k = 0 → 0; 1 → 6; 3 → 16; 10 → 36 GB·s.
        let reqs = requests();
        let mut last = -1.0;
        for (k, expected) in [(0.0, 0.0), (1.0, 6.0), (3.0, 16.0), (10.0, 36.0)] {
            let samples = trace(&reqs, k * 1000.0, 11_500.0 + k * 1000.0 + 2000.0, false);
            let f = vram_figures(&samples, &reqs, &cell("x", Some(k), false), TOL).unwrap();
            assert!(
                (f.idle_gb_seconds - expected).abs() < 1e-6,
                "k={k}: idle {} vs {expected}",
                f.idle_gb_seconds
            );
            // Busy time (3 s of requests) is held too.
            assert!((f.gb_seconds_held - (expected + 6.0)).abs() < 1e-6);
            assert!(f.idle_gb_seconds > last || (k == 0.0 && f.idle_gb_seconds == 0.0));
            last = f.idle_gb_seconds;
            let r = &f.release[0];
            assert!(r.honoured, "k={k}: {r:?}");
            assert!((r.release_delay_s.unwrap() - k).abs() < 1e-9);
        }
    }

    #[test]
    fn early_unload_and_a_forever_model_released_are_not_honoured() {
        let reqs = requests();
        // The server unloads after 1 s though 5 s was asked.
        let samples = trace(&reqs, 1000.0, 20_000.0, false);
        let c = cell("5s", Some(5.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        assert!(!f.release[0].honoured);
        let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
        assert!(
            w.iter()
                .any(|w| w.starts_with("keep_alive not honoured for m:1b: released 1.00 s")),
            "{w:?}"
        );
        let forever = cell("-1", None, true);
        let f = vram_figures(&samples, &reqs, &forever, TOL).unwrap();
        assert!(!f.release[0].honoured);
        // Never released, as asked.
        let held = trace(&reqs, 1e9, 20_000.0, false);
        let f = vram_figures(&held, &reqs, &forever, TOL).unwrap();
        assert!(f.release[0].honoured && f.release[0].release_delay_s.is_none());
        assert!(vram_warnings(&held, &reqs, &forever, &f, TOL).is_empty());
    }

    #[test]
    fn never_released_past_the_deadline_warns() {
        let reqs = requests();
        let samples = trace(&reqs, 1e9, 20_000.0, false);
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        assert!(f.release[0].release_delay_s.is_none() && !f.release[0].honoured);
        let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
        assert!(w.iter().any(|w| w.contains("never released")), "{w:?}");
    }

    #[test]
    fn partial_offload_warns_once_per_model() {
        let reqs = requests();
        let mut samples = trace(&reqs, 3000.0, 16_000.0, false);
        for s in samples.iter_mut().filter(|s| s.model == MODEL) {
            s.total_bytes = Some(SIZE * 2);
        }
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("partly offloaded") && w[0].contains("(50% on the GPU)"));
    }

    #[test]
    fn a_cpu_only_host_counts_system_memory_not_zero() {
        // The real server on a CPU host: /api/ps size_vram 0, size the resident bytes.
        let reqs = requests();
        let samples: Vec<VramSample> = trace(&reqs, 3000.0, 16_000.0, false)
            .into_iter()
            .filter(|s| s.source == "ollama_ps")
            .map(|mut s| {
                s.total_bytes = Some(s.used_bytes);
                s.used_bytes = 0;
                s
            })
            .collect();
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        assert_eq!(f.counted, "system RAM");
        let (gpu, ram) = (f.gpu.as_ref().unwrap(), f.ram.as_ref().unwrap());
        assert_eq!((gpu.peak_bytes, ram.peak_bytes), (0, SIZE));
        assert!(ram.idle_gb_seconds > 0.0 && f.idle_gb_seconds == ram.idle_gb_seconds);
        assert_eq!(f.idle_split(), (0.0, ram.idle_gb_seconds));
        assert_eq!(f.release[0].release_delay_s.map(|d| d.round()), Some(3.0));
        assert!(
            vram_warnings(&samples, &reqs, &c, &f, TOL).is_empty(),
            "a model in system memory is a fact, not a fault"
        );
    }

    #[test]
    fn partly_offloaded_memory_is_split_between_gpu_and_system() {
        let reqs = requests();
        let samples: Vec<VramSample> = trace(&reqs, 3000.0, 16_000.0, false)
            .into_iter()
            .filter(|s| s.source == "ollama_ps")
            .map(|mut s| {
                s.total_bytes = Some(s.used_bytes * 2);
                s
            })
            .collect();
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        assert_eq!(f.counted, "GPU + system RAM");
        assert_eq!(f.peak_split(), (SIZE, SIZE));
        assert_eq!(f.peak_bytes, 2 * SIZE);
    }

    #[test]
    fn nvml_is_preferred_and_agrees_with_ps_without_warnings() {
        let reqs = requests();
        let samples = trace(&reqs, 3000.0, 20_000.0, true);
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        assert_eq!(f.source, "nvml");
        assert_eq!(f.peak_bytes, SIZE + 500_000_000);
        assert!(vram_warnings(&samples, &reqs, &c, &f, TOL).is_empty());
    }

    #[test]
    fn nvml_left_high_after_unload_and_disagreeing_with_ps_warns() {
        let reqs = requests();
        let mut samples = trace(&reqs, 3000.0, 20_000.0, true);
        // Half of what /api/ps lists shows on the GPU, and 1 GB stays after the unload.
        for s in samples.iter_mut().filter(|s| s.source == "nvml") {
            s.used_bytes = if s.t_ms >= 4000.0 {
                1_500_000_000
            } else {
                500_000_000
            };
            if s.t_ms < 100.0 {
                s.used_bytes = 500_000_000;
            }
        }
        let c = cell("3s", Some(3.0), false);
        let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
        let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
        assert!(
            w.iter().any(|w| w.starts_with("memory not given back")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.starts_with("/api/ps and NVML disagree")),
            "{w:?}"
        );
    }

    #[test]
    fn cell_samples_stop_at_the_next_cell() {
        let mut a = cell("3s", Some(3.0), false);
        a.started_ms = Some(1000.0);
        let mut b = a.clone();
        b.id = "c1".into();
        b.started_ms = Some(5000.0);
        let samples: Vec<VramSample> = (0..100)
            .map(|i| VramSample {
                t_ms: i as f64 * 100.0,
                source: "sim".into(),
                ..Default::default()
            })
            .collect();
        let mine = cell_samples(&samples, &[a, b], "c0");
        assert_eq!(mine.first().unwrap().t_ms, 1000.0);
        assert_eq!(mine.last().unwrap().t_ms, 4900.0);
    }

    #[test]
    fn figures_serialize_snake_case() {
        let f = VramFigures {
            source: "sim".into(),
            gb_seconds_held: 1.0,
            idle_gb_seconds: 0.5,
            peak_bytes: 2,
            mean_bytes: 1.5,
            release: vec![],
            gpu: None,
            ram: None,
            counted: "GPU".into(),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert!(v.get("idle_gb_seconds").is_some() && v.get("peak_bytes").is_some());
    }
}

#[cfg(test)]
mod eviction_tests {
    use super::*;

    fn ps_row(t: f64, model: &str) -> VramSample {
        VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            device: "ollama".into(),
            model: model.into(),
            used_bytes: 5_000_000_000,
            total_bytes: Some(5_000_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn an_early_release_that_makes_room_for_another_model_is_an_eviction() {
        // Model a (keep_alive 30s) ends at 1 s; b starts loading at 4 s and is resident
        // from 6 s; a leaves at 5 s, long before its 30 s.
        let cell = CellMeta {
            id: "c0".into(),
            streams: vec![
                StreamMeta {
                    name: "sa".into(),
                    model: "a".into(),
                    keep_alive: "30s".into(),
                    keep_alive_s: Some(30.0),
                    ..Default::default()
                },
                StreamMeta {
                    name: "sb".into(),
                    model: "b".into(),
                    keep_alive: "30s".into(),
                    keep_alive_s: Some(30.0),
                    ..Default::default()
                },
            ],
            started_ms: Some(0.0),
            ended_ms: Some(10_000.0),
            ..Default::default()
        };
        let req = |stream: &str, model: &str, start: f64, end: f64| RequestRecord {
            cell: "c0".into(),
            stream: stream.into(),
            model: model.into(),
            intended_ms: start,
            sent_ms: Some(start),
            end_ms: end,
            status: Some(200),
            ..Default::default()
        };
        let requests = vec![req("sa", "a", 0.0, 1000.0), req("sb", "b", 4000.0, 7000.0)];
        let mut samples = Vec::new();
        let mut t = 0.0;
        while t <= 10_000.0 {
            samples.push(VramSample {
                t_ms: t,
                source: "ollama_ps".into(),
                device: "ollama".into(),
                ..Default::default()
            });
            if t < 5000.0 {
                samples.push(ps_row(t, "a"));
            }
            if t >= 6000.0 {
                samples.push(ps_row(t, "b"));
            }
            t += 100.0;
        }
        let tol = Duration::from_millis(350);
        let f = vram_figures(&samples, &requests, &cell, tol).unwrap();
        let a = f.release.iter().find(|r| r.model == "a").unwrap();
        assert_eq!(a.evicted_for.as_deref(), Some("b"));
        assert!(a.honoured, "an eviction follows the server's rules");
        let w = vram_warnings(&samples, &requests, &cell, &f, tol);
        assert!(
            w.iter()
                .any(|w| w.contains("a was evicted") && w.contains("room for b")),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("not honoured for a")), "{w:?}");
    }
}
