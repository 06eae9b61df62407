//! Pools the repetitions of a cell (`[run] repeat`) into one figure set.
//!
//! A repeated run records each repetition as a cell of its own (`c01-ka_5s-r1`,
//! `c01-ka_5s-r2`, … with `repetition` in `params` and in `requests.csv`); the summary
//! shows one cell per point of the sweep (`c01-ka_5s`, `params` without the
//! repetition), so the table, the chart, the recommendation and `compare` read the same
//! cells whether or not the run was repeated:
//!
//! - latency percentiles, their intervals, the cold ratio and its interval, the
//!   error counts and the token rates are over every repetition's rows together (cold
//!   counts summed);
//! - memory is the mean per repetition (idle GB·s, GB·s held, mean bytes; the peak
//!   is the highest), each repetition's own value kept in `repetitions`, with a
//!   bootstrap interval of the mean over the repetitions;
//! - warnings and reloads are each repetition's, together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{self, Interval};
use super::vram::{MemoryPart, VramFigures};
use super::{CellSummary, RowsByCell, summarize_stream};
use crate::folder::{CellMeta, RequestRecord, RunMeta};
use crate::rng::splitmix64;

/// The repetitions behind a pooled cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Repetitions {
    /// Each repetition's own figures, in repetition order.
    pub runs: Vec<Repetition>,
    /// Interval of the mean idle GB·s over the repetitions (percentile bootstrap over
    /// the per-repetition values); `null` with fewer than 2 repetitions measured.
    pub idle_gb_seconds: Option<Interval>,
}

/// One repetition of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Repetition {
    /// The repetition, from 1.
    pub repetition: u32,
    /// Its cell id in `run.json` and `requests.csv`.
    pub id: String,
    /// Each stream's counts in this repetition, in stream order.
    pub streams: Vec<RepetitionStream>,
    /// Idle GB·s (GPU + system memory); `null` when not measured.
    pub idle_gb_seconds: Option<f64>,
    /// Idle GB·s on the GPU.
    pub idle_gpu_gb_seconds: Option<f64>,
    /// Idle GB·s in system memory.
    pub idle_ram_gb_seconds: Option<f64>,
}

/// One stream's counts in one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepetitionStream {
    /// Stream name.
    pub name: String,
    /// Requests counted (warm-up excluded).
    pub requests: u64,
    /// Requests answered.
    pub answered: u64,
    /// Cold requests among the answered ones.
    pub cold: u64,
}

/// The id every repetition of `cell` shares: its id without the `-rK` suffix.
pub fn pooled_id(cell: &str, repetition: Option<u32>) -> &str {
    match repetition {
        Some(k) => cell.strip_suffix(&format!("-r{k}")).unwrap_or(cell),
        None => cell,
    }
}

/// Pools `cells` (one summary per recorded cell, each repetition its own) into one per
/// point of the sweep, in the order each first ran; cells with no repetition pass
/// through unchanged.
pub(super) fn pool(
    meta: &RunMeta,
    by_cell: &RowsByCell,
    cells: Vec<CellSummary>,
    threshold: std::time::Duration,
) -> Vec<CellSummary> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<CellSummary>> = BTreeMap::new();
    for c in cells {
        let key = pooled_id(&c.id, c.params.repetition).to_string();
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(c);
    }
    order
        .into_iter()
        .map(|key| {
            let mut group = groups.remove(&key).unwrap_or_default();
            if group.len() == 1 && group[0].params.repetition.is_none() {
                return group.remove(0);
            }
            group.sort_by_key(|c| c.params.repetition);
            pool_group(meta, by_cell, key, group, threshold)
        })
        .collect()
}

fn pool_group(
    meta: &RunMeta,
    by_cell: &RowsByCell,
    id: String,
    group: Vec<CellSummary>,
    threshold: std::time::Duration,
) -> CellSummary {
    let first_meta: Option<&CellMeta> = meta.cells.iter().find(|m| m.id == group[0].id);
    // Every repetition's rows, stream by stream, in repetition order.
    let mut rows: BTreeMap<&str, Vec<&RequestRecord>> = BTreeMap::new();
    for c in &group {
        for r in by_cell.get(&c.id).map(Vec::as_slice).unwrap_or(&[]) {
            rows.entry(r.stream.as_str()).or_default().push(r);
        }
    }
    let streams = match first_meta {
        Some(m) => m
            .streams
            .iter()
            .map(|s| {
                let mine = rows.get(s.name.as_str()).map_or(&[][..], Vec::as_slice);
                summarize_stream(s, mine, threshold)
            })
            .collect(),
        None => group[0].streams.clone(),
    };
    let runs: Vec<Repetition> = group
        .iter()
        .map(|c| {
            let (gpu, ram) = c.vram.as_ref().map(VramFigures::idle_split).unzip();
            Repetition {
                repetition: c.params.repetition.unwrap_or(0),
                id: c.id.clone(),
                streams: c
                    .streams
                    .iter()
                    .map(|s| RepetitionStream {
                        name: s.name.clone(),
                        requests: s.requests,
                        answered: s.answered,
                        cold: s.cold,
                    })
                    .collect(),
                idle_gb_seconds: c.vram.as_ref().map(|v| v.idle_gb_seconds),
                idle_gpu_gb_seconds: gpu,
                idle_ram_gb_seconds: ram,
            }
        })
        .collect();
    let missing: Vec<String> = group
        .iter()
        .filter_map(|c| {
            c.memory_missing
                .as_ref()
                .map(|why| format!("{}: {why}", c.id))
        })
        .collect();
    let vram = if missing.is_empty() {
        mean_figures(group.iter().filter_map(|c| c.vram.as_ref()).collect())
            .filter(|_| group.iter().all(|c| c.vram.is_some()))
    } else {
        None
    };
    let idle: Vec<f64> = runs.iter().filter_map(|r| r.idle_gb_seconds).collect();
    let idle_interval = (idle.len() >= 2 && vram.is_some())
        .then(|| {
            stats::bootstrap(
                &idle,
                |s| s.iter().sum::<f64>() / s.len() as f64,
                stats::DEFAULT_RESAMPLES,
                splitmix64(idle.len() as u64),
                stats::DEFAULT_CONFIDENCE,
            )
        })
        .flatten();
    let mut warnings: Vec<String> = Vec::new();
    for c in &group {
        for w in &c.warnings {
            if !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
    }
    let mut reloads = super::reload::Reloads::default();
    for c in &group {
        reloads.total += c.reloads.total;
        for (cause, n) in &c.reloads.by_cause {
            *reloads.by_cause.entry(cause.clone()).or_insert(0) += n;
        }
        for f in &c.reloads.findings {
            match reloads
                .findings
                .iter_mut()
                .find(|g| g.model == f.model && g.cause == f.cause)
            {
                Some(g) => g.count += f.count,
                None => reloads.findings.push(f.clone()),
            }
        }
    }
    let first = &group[0];
    CellSummary {
        id,
        params: first.params.pooled(),
        streams,
        vram,
        memory_missing: (!missing.is_empty()).then(|| missing.join("; ")),
        ran_late: {
            let late: Vec<String> = group
                .iter()
                .filter_map(|c| c.ran_late.as_ref().map(|why| format!("{}: {why}", c.id)))
                .collect();
            (!late.is_empty()).then(|| late.join("; "))
        },
        warnings,
        reloads,
        predicted: false,
        policy: None,
        repetitions: Some(Repetitions {
            runs,
            idle_gb_seconds: idle_interval,
        }),
    }
}

/// The mean of the repetitions' memory figures (the peak: the highest); `None` when
/// there are none.
fn mean_figures(all: Vec<&VramFigures>) -> Option<VramFigures> {
    let first = *all.first()?;
    let n = all.len() as f64;
    let mean = |f: &dyn Fn(&VramFigures) -> f64| all.iter().map(|v| f(v)).sum::<f64>() / n;
    let part = |pick: &dyn Fn(&VramFigures) -> Option<&MemoryPart>| -> Option<MemoryPart> {
        let parts: Vec<&MemoryPart> = all.iter().filter_map(|v| pick(v)).collect();
        let p0 = *parts.first()?;
        let m = parts.len() as f64;
        Some(MemoryPart {
            gb_seconds_held: parts.iter().map(|p| p.gb_seconds_held).sum::<f64>() / m,
            idle_gb_seconds: parts.iter().map(|p| p.idle_gb_seconds).sum::<f64>() / m,
            peak_bytes: parts.iter().map(|p| p.peak_bytes).max().unwrap_or(0),
            mean_bytes: parts.iter().map(|p| p.mean_bytes).sum::<f64>() / m,
            ..p0.clone()
        })
    };
    Some(VramFigures {
        gb_seconds_held: mean(&|v| v.gb_seconds_held),
        idle_gb_seconds: mean(&|v| v.idle_gb_seconds),
        peak_bytes: all.iter().map(|v| v.peak_bytes).max().unwrap_or(0),
        mean_bytes: mean(&|v| v.mean_bytes),
        gpu: part(&|v| v.gpu.as_ref()),
        ram: part(&|v| v.ram.as_ref()),
        ..first.clone()
    })
}
