//! Derived VRAM figures of one cell from `vram.csv` samples and the cell's requests:
//! GB-seconds held (a step integral), GB-seconds held while idle, peak and mean (here),
//! the release delay of each model against its keep_alive (`release`), and warnings for
//! what users trip over (`warnings`). Pure functions over typed rows; knows nothing of
//! how the samples were taken.
//!
//! Window: the cell's idle horizon ([`crate::folder::IdleHorizon`]: from its first
//! send to its last send plus the run's one common tail) when given, so every cell of a
//! sweep, keep_alive `0` and `-1` alike, is counted over the same span whichever path
//! wrote the folder (one process, merged shards); each series holds its last value up
//! to the horizon's end. Without one, from the cell's `started_ms` to the last sample
//! given. Pass the samples of the cell only ([`cell_samples`]: up to the next cell's
//! start), so the next cell's memory is never counted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::folder::{CellMeta, CellWindow, RequestRecord, VramSample};
use crate::units::KeepAlive;

mod release;
#[cfg(test)]
mod tests;
mod warnings;

use release::release_delays;
pub use warnings::vram_warnings;

/// Bytes per GB in the figures (decimal, as GPU prices are quoted).
pub const GB: f64 = 1e9;
/// Sources in order of preference for the figures.
pub const SOURCE_PREFERENCE: [&str; 5] = ["nvml", "sim", "prometheus", "ollama_ps", "rss"];
/// The source of a managed server's process-tree RSS (llama-server, started per cell).
pub const SERVER_RSS: &str = crate::folder::SERVER_RSS;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub struct ReleaseDelay {
    /// Model tag.
    pub model: String,
    /// keep_alive in force (the last dispatched request's, KA6), as `keep_alive`
    /// (written) and `keep_alive_s` (`null` for forever or not sent).
    #[serde(flatten, with = "crate::units::keep_alive_keys::seconds_only")]
    #[schemars(with = "crate::units::KeepAliveKeys")]
    pub keep_alive: Option<KeepAlive>,
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
pub(super) type Series = Vec<(f64, u64)>;

/// The rows `keep` selects (at or after `from_ms`), `bytes` of each summed per poll
/// time: one step series, sorted by time.
pub(super) fn per_poll(
    samples: &[VramSample],
    from_ms: f64,
    keep: impl Fn(&VramSample) -> bool,
    bytes: impl Fn(&VramSample) -> u64,
) -> Series {
    let mut by_t: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.t_ms >= from_ms && s.t_ms.is_finite() && keep(s))
    {
        // t_ms ≥ 0 here, so the bit pattern orders like the value.
        let e = by_t.entry(s.t_ms.max(0.0).to_bits()).or_insert((s.t_ms, 0));
        e.1 += bytes(s);
    }
    by_t.into_values().collect()
}

/// Totals of one source per poll: device-total rows (model empty) summed across
/// devices; for `rss`, the process rows summed.
pub(super) fn totals(samples: &[VramSample], source: &str, from_ms: f64) -> Series {
    per_poll(
        samples,
        from_ms,
        |s| s.source == source && (source == "rss" || source == SERVER_RSS || s.model.is_empty()),
        |s| s.used_bytes,
    )
}

pub(super) fn has_source(samples: &[VramSample], source: &str) -> bool {
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
/// requests, from its start to the last sample; `None` when the cell never started or
/// no source sampled inside it. [`vram_figures_over`] with no horizon.
pub fn vram_figures(
    samples: &[VramSample],
    requests: &[RequestRecord],
    cell: &CellMeta,
    tolerance: Duration,
) -> Option<VramFigures> {
    vram_figures_over(samples, requests, cell, tolerance, None)
}

/// Figures for one cell over `horizon` (held, idle, peak and mean; see the module
/// doc), or from its start to the last sample without one. The release delays read
/// every sample given, inside the horizon or after it.
pub fn vram_figures_over(
    samples: &[VramSample],
    requests: &[RequestRecord],
    cell: &CellMeta,
    tolerance: Duration,
    horizon: Option<CellWindow>,
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
    // A server kabench started: its process tree's RSS is all it holds (the server
    // exists for its model alone), and nothing else measured it.
    let managed = totals(samples, SERVER_RSS, start);
    let is_managed = !managed.is_empty();
    let (gpu, ram) = if managed.is_empty() {
        (gpu, ram_series(samples, start))
    } else {
        (None, Some((SERVER_RSS.to_string(), managed)))
    };
    let series = match (&gpu, &ram) {
        (Some((_, g)), Some((_, r))) => sum_series(g, r),
        (Some((_, g)), None) => g.clone(),
        (None, Some((_, r))) => r.clone(),
        (None, None) => return None,
    };
    let release_by = release_bound(requests, cell);
    let over = |s: &Series| match horizon {
        Some(w) => clip(s, w, release_by),
        None => s.clone(),
    };
    let part = |(source, series): &(String, Series)| integrate(source, &over(series), &busy);
    let (gpu, ram) = (gpu.as_ref().map(part), ram.as_ref().map(part));
    let total = integrate("", &over(&series), &busy);
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
        // A started server's release is not keep_alive's (llama-server sleeps and
        // keeps its process): no release delay is judged.
        release: if is_managed {
            Vec::new()
        } else {
            release_delays(samples, requests, cell, &series, tolerance)
        },
        gpu,
        ram,
        counted: counted.into(),
    })
}

/// When every model of the cell will have been released at the latest: its last
/// request's end plus the longest keep_alive its streams send; `None` when one holds
/// forever or sends none (the server's default, unknown here).
fn release_bound(requests: &[RequestRecord], cell: &CellMeta) -> Option<f64> {
    let mut longest = 0.0f64;
    for s in &cell.streams {
        longest = longest.max(s.keep_alive.as_ref()?.duration()?.as_secs_f64() * 1000.0);
    }
    let last_end = requests
        .iter()
        .filter(|r| r.cell.is_empty() || r.cell == cell.id)
        .map(|r| r.end_ms)
        .filter(|t| t.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    last_end.is_finite().then_some(last_end + longest)
}

/// A step series cut to `w`: its value at `w.from_ms` (when it has one by then), its
/// points inside, and, when the samples end before the horizon does, its last level
/// held on: to the horizon's end, or to `release_by` (the cell's keep_alives run out)
/// when that comes first. A released model holds 0.
fn clip(series: &Series, w: CellWindow, release_by: Option<f64>) -> Series {
    let mut out: Series = Vec::with_capacity(series.len() + 2);
    if let Some(&(_, v)) = series.iter().take_while(|p| p.0 <= w.from_ms).last() {
        out.push((w.from_ms, v));
    }
    out.extend(
        series
            .iter()
            .filter(|p| p.0 > w.from_ms && p.0 < w.to_ms)
            .copied(),
    );
    if let Some(&(t_last, v)) = series.iter().take_while(|p| p.0 <= w.to_ms).last()
        && w.to_ms > w.from_ms
    {
        let ends_early = series.last().is_some_and(|p| p.0 < w.to_ms);
        match release_by.map(|r| r.max(t_last).max(w.from_ms)) {
            Some(r) if ends_early && v > 0 && r < w.to_ms => {
                out.push((r, 0));
                out.push((w.to_ms, 0));
            }
            _ => out.push((w.to_ms, v)),
        }
    }
    out
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
    let ps = per_poll(
        samples,
        start,
        |s| s.source == "ollama_ps" && s.model.is_empty() && s.total_bytes.is_some(),
        |s| s.total_bytes.unwrap_or(0).saturating_sub(s.used_bytes),
    );
    if !ps.is_empty() {
        return Some(("ollama_ps".into(), ps));
    }
    let rss = totals(samples, "rss", start);
    let base = rss.iter().map(|p| p.1).min()?;
    Some((
        "rss".into(),
        rss.into_iter().map(|(t, v)| (t, v - base)).collect(),
    ))
}
