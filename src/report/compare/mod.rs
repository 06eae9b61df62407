//! `kabench compare BASE NEW`: matches two run folders' cells (by swept parameters, or
//! id when a run swept nothing) and streams (by name) and reports the changes in
//! TTFT (median, p99), e2e median, cold-start ratio and VRAM (idle GB·s, peak), each
//! with a bootstrap interval of the change read against a significance level and a
//! noise threshold (`change`), so that run-to-run noise reads as "no change detected"
//! and only a significant regression past its threshold fails. Reads the folders' files
//! alone; knows nothing of the targets. `render` writes the text, `compare.md` and the
//! page. Runs of different
//! scenarios or runs that did not complete are refused (bad input) unless forced; a
//! rise in the error rate and a stream with no successful request count as regressions,
//! so a broken run never reads as an improvement.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::analysis::read::RunData;
use crate::analysis::stats::DEFAULT_RESAMPLES;
use crate::analysis::{self, CellSummary, RowsByCell, StreamSummary, Summary};
use crate::folder::RunStatus;
use crate::recommend::GB;

/// Two folders that cannot be compared as asked (not run folders, different scenarios,
/// an incomplete run without `--force`): bad input, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotComparable(pub String);

mod change;
mod render;

pub use change::{Change, Detection, Scale, Verdict};
use change::{IDLE_FLOOR_GB_S, P99_FLOOR_MS, PEAK_FLOOR_GB, Samples};

/// When a change counts as a regression: criterion's significance level and noise
/// threshold, and each figure's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompareThresholds {
    /// p99 TTFT (and the other latencies) may grow by this many percent (default 10).
    pub p99_pct: f64,
    /// The cold-start ratio may grow by this much, absolute (default 0.05 = 5 points).
    pub cold_ratio_abs: f64,
    /// Idle VRAM GB·s and peak VRAM may grow by this many percent (default 10).
    pub vram_pct: f64,
    /// The share of failed requests may grow by this much, absolute (default 0.01 = 1 point).
    pub error_rate_abs: f64,
    /// Significance level α (default 0.05): a change is significant when the
    /// `1 − α` bootstrap interval of the difference excludes zero.
    pub significance: f64,
    /// Noise threshold, a fraction (default 0.02): a significant change whose interval
    /// is not wholly past ±2 % of the base (±2 points for ratios) is noise.
    pub noise: f64,
    /// Bootstrap resamples per figure (default [`DEFAULT_RESAMPLES`]).
    pub resamples: usize,
}

impl Default for CompareThresholds {
    fn default() -> Self {
        CompareThresholds {
            p99_pct: 10.0,
            cold_ratio_abs: 0.05,
            vram_pct: 10.0,
            error_rate_abs: 0.01,
            significance: DEFAULT_SIGNIFICANCE,
            noise: DEFAULT_NOISE,
            resamples: DEFAULT_RESAMPLES,
        }
    }
}

/// The default significance level (criterion's).
pub const DEFAULT_SIGNIFICANCE: f64 = 0.05;
/// The default noise threshold (criterion's): 2 %.
pub const DEFAULT_NOISE: f64 = 0.02;

impl CompareThresholds {
    fn detection(&self) -> Detection {
        Detection {
            significance: self.significance,
            noise: self.noise,
            resamples: self.resamples,
        }
    }
}

/// One stream of one matched cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamChange {
    /// Cell id in the new run.
    pub cell: String,
    /// Swept parameters, `axis=value` joined.
    pub params: String,
    /// Stream name.
    pub stream: String,
    /// Share of failed requests (0–1): a gate, not tested for noise.
    pub error_rate: Change,
    /// True when the new run has no successful request in this stream (nothing to
    /// compare: a regression, never an improvement).
    pub no_answers: bool,
    /// Median TTFT, ms.
    pub ttft_p50_ms: Change,
    /// p99 TTFT, ms.
    pub p99_ttft_ms: Change,
    /// Median end-to-end latency, ms.
    pub e2e_p50_ms: Change,
    /// Cold-start ratio (0–1).
    pub cold_ratio: Change,
    /// Idle VRAM, GB·s (cell-wide).
    pub idle_gb_s: Change,
    /// Peak VRAM, GB (cell-wide).
    pub peak_gb: Change,
}

impl StreamChange {
    /// True when any figure regressed past its threshold.
    pub fn regressed(&self) -> bool {
        self.no_answers || self.figures().iter().any(|(_, c, _)| c.regression)
    }

    /// The figures with their names and digits, in table order.
    pub fn figures(&self) -> [(&'static str, Change, usize); 7] {
        [
            ("errors %", self.error_rate.scaled(100.0), 1),
            ("TTFT p50 ms", self.ttft_p50_ms, 0),
            ("p99 TTFT ms", self.p99_ttft_ms, 0),
            ("e2e p50 ms", self.e2e_p50_ms, 0),
            ("cold %", self.cold_ratio.scaled(100.0), 1),
            ("idle GB·s", self.idle_gb_s, 1),
            ("peak GB", self.peak_gb, 2),
        ]
    }

    /// True when a figure changed past the noise (either way), or the stream broke.
    pub fn detected(&self) -> bool {
        self.no_answers || self.figures().iter().any(|(_, c, _)| c.detected())
    }

    /// The stream's verdict in words: `no change detected`, or what regressed and
    /// improved.
    pub fn verdict(&self) -> String {
        let names = |v: Verdict| {
            self.figures()
                .iter()
                .filter(|(_, c, _)| c.verdict == v)
                .map(|(n, c, _)| {
                    let n = n.trim_end_matches(" ms").trim_end_matches(" %");
                    if v == Verdict::Regressed && !c.regression {
                        format!("{n} (within the allowed limit)")
                    } else {
                        n.to_string()
                    }
                })
                .collect::<Vec<_>>()
        };
        let mut parts = Vec::new();
        if self.no_answers {
            parts.push("no successful request".to_string());
        }
        let worse = names(Verdict::Regressed);
        if !worse.is_empty() {
            parts.push(format!("regressed: {}", worse.join(", ")));
        }
        let better = names(Verdict::Improved);
        if !better.is_empty() {
            parts.push(format!("improved: {}", better.join(", ")));
        }
        let moved = names(Verdict::Untested);
        let suffix = if moved.is_empty() {
            String::new()
        } else {
            format!(" ({} moved; one value per run: untested)", moved.join(", "))
        };
        if parts.is_empty() {
            format!("no change detected{suffix}")
        } else {
            format!("{}{suffix}", parts.join("; "))
        }
    }
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Base scenario name.
    pub base_scenario: String,
    /// New scenario name.
    pub new_scenario: String,
    /// Thresholds applied.
    pub thresholds: CompareThresholds,
    /// Matched streams.
    pub changes: Vec<StreamChange>,
    /// Cells or streams found in one run only.
    pub unmatched: Vec<String>,
    /// What `--force` let through (different scenarios, incomplete runs).
    #[serde(default)]
    pub forced: Vec<String>,
}

impl Comparison {
    /// The matched streams that regressed past a threshold.
    pub fn regressions(&self) -> Vec<&StreamChange> {
        self.changes.iter().filter(|c| c.regressed()).collect()
    }

    /// True when no stream changed past the noise either way: the answer is "no change
    /// detected".
    pub fn no_change(&self) -> bool {
        !self.changes.is_empty() && !self.changes.iter().any(StreamChange::detected)
    }

    /// The one-line conclusion, as the text, `compare.md` and the page end.
    pub fn conclusion(&self) -> String {
        let n = self.regressions().len();
        let noise = self
            .changes
            .iter()
            .flat_map(|c| c.figures())
            .filter(|(_, c, _)| c.verdict == Verdict::WithinNoise)
            .count();
        let untested = self
            .changes
            .iter()
            .flat_map(|c| c.figures())
            .filter(|(_, c, _)| c.verdict == Verdict::Untested)
            .count();
        let mut within = if noise > 0 {
            format!("; {noise} figure(s) moved within the noise")
        } else {
            String::new()
        };
        if untested > 0 {
            within.push_str(&format!(
                "; {untested} figure(s) with one value per run moved past their limit, untested (no sample to tell their noise)"
            ));
        }
        if self.changes.is_empty() {
            "nothing to compare: no cell and stream of the new run matches the base run".into()
        } else if n > 0 {
            format!("{n} stream(s) regressed past the thresholds")
        } else if self.no_change() {
            format!("no change detected (no regressions past the thresholds{within})")
        } else {
            let d = self.changes.iter().filter(|c| c.detected()).count();
            format!("{d} stream(s) changed; no regressions past the thresholds{within}")
        }
    }
}

fn cell_key(c: &CellSummary) -> String {
    if c.params.is_empty() {
        format!("id={}", c.id)
    } else {
        c.params
            .written()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One stream's per-request samples: TTFT, e2e and cold (1/0) of answered requests,
/// warm-ups left out.
#[derive(Default)]
struct StreamSamples {
    ttft: Vec<f64>,
    e2e: Vec<f64>,
    cold: Vec<f64>,
}

fn samples_of(rows: &RowsByCell, cell: &str, stream: &str) -> StreamSamples {
    let mut s = StreamSamples::default();
    for r in rows.get(cell).into_iter().flatten() {
        if r.stream != stream || r.warmup || r.is_error() {
            continue;
        }
        s.cold.push(if r.cold { 1.0 } else { 0.0 });
        s.ttft.extend(r.ttft_ms.filter(|v| v.is_finite()));
        s.e2e.extend(r.e2e_ms.filter(|v| v.is_finite()));
    }
    s
}

/// A fixed seed per cell, stream and figure: the same two folders give the same
/// intervals.
fn seed_of(key: &str, stream: &str, figure: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0]).chain(stream.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    crate::rng::splitmix64(h ^ figure)
}

fn pair<'a>(
    base: &'a [f64],
    new: &'a [f64],
    quantile: Option<f64>,
    seed: u64,
) -> Option<Samples<'a>> {
    Some(Samples {
        base,
        new,
        quantile,
        seed,
    })
}

/// Compares two summaries (pure), with no per-request rows: every figure is exact.
pub fn compare_summaries(
    base: &Summary,
    new: &Summary,
    thresholds: &CompareThresholds,
) -> Comparison {
    compare_rows(
        base,
        &RowsByCell::new(),
        new,
        &RowsByCell::new(),
        thresholds,
    )
}

/// Compares two summaries with their per-request rows (pure): latency and cold-ratio
/// changes get bootstrap intervals where both runs have rows.
pub fn compare_rows(
    base: &Summary,
    base_rows: &RowsByCell,
    new: &Summary,
    new_rows: &RowsByCell,
    thresholds: &CompareThresholds,
) -> Comparison {
    let d = thresholds.detection();
    let base_cells: BTreeMap<String, &CellSummary> =
        base.cells.iter().map(|c| (cell_key(c), c)).collect();
    let mut changes = Vec::new();
    let mut unmatched = Vec::new();
    let mut seen = Vec::new();
    for n in &new.cells {
        let key = cell_key(n);
        let Some(b) = base_cells.get(&key) else {
            unmatched.push(format!("cell {} ({key}) only in the new run", n.id));
            continue;
        };
        seen.push(key.clone());
        let idle = |c: &CellSummary| c.vram.as_ref().map(|v| v.idle_gb_seconds);
        let peak = |c: &CellSummary| c.vram.as_ref().map(|v| v.peak_bytes as f64 / GB);
        for ns in &n.streams {
            let Some(bs) = b.streams.iter().find(|s| s.name == ns.name) else {
                unmatched.push(format!(
                    "stream {} of cell {} only in the new run",
                    ns.name, n.id
                ));
                continue;
            };
            // Figures of requests that got no answer say nothing: a stream whose requests
            // all failed has no cold ratio (its 0% is not an improvement).
            let answered = |s: &StreamSummary| s.requests > s.errors;
            let (sb, sn) = (
                samples_of(base_rows, &b.id, &bs.name),
                samples_of(new_rows, &n.id, &ns.name),
            );
            let pair = |fb, fnew, q, figure| pair(fb, fnew, q, seed_of(&key, &ns.name, figure));
            let latency = |b: Option<f64>, n: Option<f64>, s| {
                Change::detect(
                    b,
                    n,
                    s,
                    Scale::Relative,
                    thresholds.p99_pct,
                    P99_FLOOR_MS,
                    &d,
                )
            };
            // A measured run's VRAM figures are one value per cell: no noise to test
            // them against. A prediction's are computed: exact.
            let measured = base_rows.get(&b.id).is_some_and(|r| !r.is_empty())
                || new_rows.get(&n.id).is_some_and(|r| !r.is_empty());
            let exact = |b, n, floor| {
                if measured {
                    Change::untested(b, n, thresholds.vram_pct, floor, &d)
                } else {
                    Change::detect(b, n, None, Scale::Relative, thresholds.vram_pct, floor, &d)
                }
            };
            changes.push(StreamChange {
                cell: n.id.clone(),
                params: key.clone(),
                stream: ns.name.clone(),
                error_rate: Change::gate(error_rate(bs), error_rate(ns), thresholds.error_rate_abs),
                no_answers: !answered(ns),
                ttft_p50_ms: latency(
                    bs.ttft_ms.all.map(|p| p.p50),
                    ns.ttft_ms.all.map(|p| p.p50),
                    pair(&sb.ttft, &sn.ttft, Some(0.5), 1),
                ),
                p99_ttft_ms: latency(
                    bs.ttft_ms.all.map(|p| p.p99),
                    ns.ttft_ms.all.map(|p| p.p99),
                    pair(&sb.ttft, &sn.ttft, Some(0.99), 2),
                ),
                e2e_p50_ms: latency(
                    bs.e2e_ms.all.map(|p| p.p50),
                    ns.e2e_ms.all.map(|p| p.p50),
                    pair(&sb.e2e, &sn.e2e, Some(0.5), 3),
                ),
                cold_ratio: Change::detect(
                    answered(bs).then_some(bs.cold_ratio),
                    answered(ns).then_some(ns.cold_ratio),
                    pair(&sb.cold, &sn.cold, None, 4),
                    Scale::Absolute,
                    thresholds.cold_ratio_abs,
                    0.0,
                    &d,
                ),
                idle_gb_s: exact(idle(b), idle(n), IDLE_FLOOR_GB_S),
                peak_gb: exact(peak(b), peak(n), PEAK_FLOOR_GB),
            });
        }
        for bs in &b.streams {
            if !n.streams.iter().any(|s| s.name == bs.name) {
                unmatched.push(format!(
                    "stream {} of cell {} only in the base run",
                    bs.name, b.id
                ));
            }
        }
    }
    for (key, b) in &base_cells {
        if !seen.contains(key) {
            unmatched.push(format!("cell {} ({key}) only in the base run", b.id));
        }
    }
    Comparison {
        base_scenario: base.scenario.clone(),
        new_scenario: new.scenario.clone(),
        thresholds: *thresholds,
        changes,
        unmatched,
        forced: Vec::new(),
    }
}

/// Failed requests ÷ requests, `None` without requests.
fn error_rate(s: &StreamSummary) -> Option<f64> {
    (s.requests > 0).then(|| s.errors as f64 / s.requests as f64)
}

/// Reads two run folders and compares them, refusing runs of different scenarios and
/// runs that did not complete.
pub fn compare(base: &Path, new: &Path, thresholds: &CompareThresholds) -> Result<Comparison> {
    compare_runs(base, new, thresholds, false)
}

/// Reads one run folder for `compare`, rows and all: anything unreadable is bad input.
fn read_run(dir: &Path, which: &str) -> Result<RunData> {
    if !dir.join(crate::folder::RUN_JSON).is_file() {
        return Err(NotComparable(format!(
            "the {which} folder {} is not a kabench run (it has no run.json): give two folders written by `kabench run` or `kabench swarm`",
            dir.display()
        ))
        .into());
    }
    analysis::read::read_run(dir, None).map_err(|e| {
        NotComparable(format!(
            "cannot read the {which} run {}: {e:#}; give two folders written by `kabench run` or `kabench swarm`",
            dir.display()
        ))
        .into()
    })
}

/// As [`compare`]; with `force`, runs of different scenarios and incomplete runs are
/// compared anyway, and the comparison lists what was forced.
pub fn compare_runs(
    base: &Path,
    new: &Path,
    thresholds: &CompareThresholds,
    force: bool,
) -> Result<Comparison> {
    let b = read_run(base, "base")?;
    let n = read_run(new, "new")?;
    let (bm, nm) = (&b.meta, &n.meta);
    let mut forced = Vec::new();
    if bm.scenario_sha256 != nm.scenario_sha256 {
        let what = format!(
            "the runs are of different scenarios: {} ran {} (sha256 {}), {} ran {} (sha256 {})",
            base.display(),
            bm.scenario_file,
            short_hash(&bm.scenario_sha256),
            new.display(),
            nm.scenario_file,
            short_hash(&nm.scenario_sha256)
        );
        if !force {
            return Err(NotComparable(format!(
                "{what}; compare two runs of the same scenario file, or pass --force to compare them anyway"
            ))
            .into());
        }
        forced.push(what);
    }
    for (which, dir, meta) in [("base", base, bm), ("new", new, nm)] {
        if meta.status != RunStatus::Complete {
            let status = serde_json::to_value(meta.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let why = meta
                .failure
                .as_deref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default();
            let what = format!(
                "the {which} run {} did not complete (run.json status \"{status}\"{why})",
                dir.display()
            );
            if !force {
                return Err(NotComparable(format!(
                    "{what}; its figures cover only part of the plan: rerun it to the end, or pass --force to compare what it recorded"
                ))
                .into());
            }
            forced.push(what);
        }
    }
    let mut comparison = compare_rows(&b.summary, &b.requests, &n.summary, &n.requests, thresholds);
    comparison.forced = forced;
    Ok(comparison)
}

fn short_hash(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}
