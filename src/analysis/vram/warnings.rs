//! Warnings of one cell (`summary.json`, each cell's `warnings`): keep_alive not
//! honoured or an eviction, memory not back to its baseline or growing across cycles,
//! partial offload to the CPU, and NVML disagreeing with `/api/ps`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    BASELINE_GRACE, BASELINE_MARGIN_BYTES, DISAGREEMENT_SHARE, ReleaseDelay, Series, VramFigures,
    has_source, totals,
};
use crate::folder::{CellMeta, RequestRecord, VramSample};

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
        let written = r.keep_alive.as_ref().map_or("", |k| k.written());
        let asked = match r.keep_alive.as_ref().and_then(|k| k.duration()) {
            Some(k) => format!("keep_alive {written:?} ({} s)", k.as_secs_f64()),
            None => format!("keep_alive {written:?} (forever)"),
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
                r.model,
                r.keep_alive.as_ref().map_or("", |k| k.written())
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
