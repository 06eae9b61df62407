//! `kabench compare BASE NEW`: matches two run folders' cells (by swept parameters, or
//! id when a run swept nothing) and streams (by name) and reports the changes in p99
//! TTFT, cold-start ratio and VRAM (idle GB·s, peak), flagging those past thresholds.
//! Reads the folders' files alone; knows nothing of the targets. Runs of different
//! scenarios or runs that did not complete are refused (bad input) unless forced; a
//! rise in the error rate and a stream with no successful request count as regressions,
//! so a broken run never reads as an improvement.

use crate::units::limits::printable;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::markdown::escape;
use crate::analysis::{self, CellSummary, StreamSummary, Summary};
use crate::folder::{RunMeta, RunStatus};
use crate::recommend::GB;

/// Two folders that cannot be compared as asked (not run folders, different scenarios,
/// an incomplete run without `--force`): bad input, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotComparable(pub String);

/// When a change counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompareThresholds {
    /// p99 TTFT may grow by this many percent (default 10).
    pub p99_pct: f64,
    /// The cold-start ratio may grow by this much, absolute (default 0.05 = 5 points).
    pub cold_ratio_abs: f64,
    /// Idle VRAM GB·s and peak VRAM may grow by this many percent (default 10).
    pub vram_pct: f64,
    /// The share of failed requests may grow by this much, absolute (default 0.01 = 1 point).
    pub error_rate_abs: f64,
}

impl Default for CompareThresholds {
    fn default() -> Self {
        CompareThresholds {
            p99_pct: 10.0,
            cold_ratio_abs: 0.05,
            vram_pct: 10.0,
            error_rate_abs: 0.01,
        }
    }
}

/// Changes below these are noise, whatever the percentage says (e.g. from a zero base).
const P99_FLOOR_MS: f64 = 1.0;
const IDLE_FLOOR_GB_S: f64 = 0.1;
const PEAK_FLOOR_GB: f64 = 0.01;

/// One figure in both runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// Value in the base run.
    pub base: Option<f64>,
    /// Value in the new run.
    pub new: Option<f64>,
    /// True when it worsened past its threshold.
    pub regression: bool,
}

impl Change {
    fn relative(base: Option<f64>, new: Option<f64>, pct: f64, floor: f64) -> Change {
        let regression = match (base, new) {
            (Some(b), Some(n)) => n - b > floor && (b <= 0.0 || (n - b) / b * 100.0 > pct),
            _ => false,
        };
        Change {
            base,
            new,
            regression,
        }
    }

    fn absolute(base: Option<f64>, new: Option<f64>, limit: f64) -> Change {
        let regression = matches!((base, new), (Some(b), Some(n)) if n - b > limit + 1e-12);
        Change {
            base,
            new,
            regression,
        }
    }

    /// `base → new (±x%)`.
    fn describe(&self, digits: usize) -> String {
        match (self.base, self.new) {
            (Some(b), Some(n)) => {
                let pct = if b.abs() > 0.0 {
                    format!(" ({:+.1}%)", (n - b) / b * 100.0)
                } else {
                    String::new()
                };
                let flag = if self.regression { " !" } else { "" };
                format!("{b:.digits$} → {n:.digits$}{pct}{flag}")
            }
            (Some(b), None) => format!("{b:.digits$} → –"),
            (None, Some(n)) => format!("– → {n:.digits$}"),
            (None, None) => "–".into(),
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
    /// Share of failed requests (0–1).
    pub error_rate: Change,
    /// True when the new run has no successful request in this stream (nothing to
    /// compare: a regression, never an improvement).
    pub no_answers: bool,
    /// p99 TTFT, ms.
    pub p99_ttft_ms: Change,
    /// Cold-start ratio (0–1).
    pub cold_ratio: Change,
    /// Idle VRAM, GB·s (cell-wide).
    pub idle_gb_s: Change,
    /// Peak VRAM, GB (cell-wide).
    pub peak_gb: Change,
}

impl StreamChange {
    /// True when any figure regressed.
    pub fn regressed(&self) -> bool {
        self.no_answers
            || self.error_rate.regression
            || self.p99_ttft_ms.regression
            || self.cold_ratio.regression
            || self.idle_gb_s.regression
            || self.peak_gb.regression
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

    /// A plain-text table for stdout; regressions are marked `!`.
    pub fn to_text(&self) -> String {
        let header = [
            "cell",
            "params",
            "stream",
            "errors %",
            "p99 TTFT ms",
            "cold %",
            "idle GB·s",
            "peak GB",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(String::from)];
        for c in &self.changes {
            rows.push(self.row(c).map(|s| printable(&s).into_owned()));
        }
        let widths: Vec<usize> = (0..8)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "compare {} → {} (thresholds: error rate +{:.3}, p99 +{}%, cold ratio +{:.3}, VRAM +{}%)\n",
            printable(&self.base_scenario),
            printable(&self.new_scenario),
            self.thresholds.error_rate_abs,
            self.thresholds.p99_pct,
            self.thresholds.cold_ratio_abs,
            self.thresholds.vram_pct
        );
        for f in &self.forced {
            out.push_str(&format!("forced: {}\n", printable(f)));
        }
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(s, w)| format!("{s}{}", " ".repeat(w - s.chars().count())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for u in &self.unmatched {
            out.push_str(&format!("unmatched: {}\n", printable(u)));
        }
        for c in self.changes.iter().filter(|c| c.no_answers) {
            out.push_str(&format!(
                "no answers: stream {} of cell {} has no successful request in the new run\n",
                printable(&c.stream),
                printable(&c.cell)
            ));
        }
        let n = self.regressions().len();
        out.push_str(&if self.changes.is_empty() {
            "nothing to compare: no cell and stream of the new run matches the base run\n"
                .to_string()
        } else if n == 0 {
            "no regressions past the thresholds\n".to_string()
        } else {
            format!("{n} stream(s) regressed past the thresholds\n")
        });
        out
    }

    /// The same table in Markdown (for a CI job summary).
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "## kabench compare: {} → {}\n\n| cell | params | stream | errors % | p99 TTFT ms | cold % | idle GB·s | peak GB |\n|---|---|---|---|---|---|---|---|\n",
            escape(&self.base_scenario),
            escape(&self.new_scenario)
        );
        for c in &self.changes {
            let r = self.row(c).map(|s| escape(&s));
            md.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        for f in &self.forced {
            md.push_str(&format!("\n- forced: {}", escape(f)));
        }
        for u in &self.unmatched {
            md.push_str(&format!("\n- unmatched: {}", escape(u)));
        }
        for c in self.changes.iter().filter(|c| c.no_answers) {
            md.push_str(&format!(
                "\n- no answers: stream {} of cell {} has no successful request in the new run",
                escape(&c.stream),
                escape(&c.cell)
            ));
        }
        md.push_str(&format!(
            "\n\n{} regression(s) past error rate +{:.3}, p99 +{}%, cold ratio +{:.3}, VRAM +{}% (marked `!`).\n",
            self.regressions().len(),
            self.thresholds.error_rate_abs,
            self.thresholds.p99_pct,
            self.thresholds.cold_ratio_abs,
            self.thresholds.vram_pct
        ));
        md
    }

    fn row(&self, c: &StreamChange) -> [String; 8] {
        let pct = |ch: &Change| Change {
            base: ch.base.map(|v| v * 100.0),
            new: ch.new.map(|v| v * 100.0),
            regression: ch.regression,
        };
        [
            c.cell.clone(),
            c.params.clone(),
            c.stream.clone(),
            pct(&c.error_rate).describe(1),
            c.p99_ttft_ms.describe(0),
            pct(&c.cold_ratio).describe(1),
            c.idle_gb_s.describe(1),
            c.peak_gb.describe(2),
        ]
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

/// Compares two summaries (pure).
pub fn compare_summaries(
    base: &Summary,
    new: &Summary,
    thresholds: &CompareThresholds,
) -> Comparison {
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
            changes.push(StreamChange {
                cell: n.id.clone(),
                params: key.clone(),
                stream: ns.name.clone(),
                error_rate: Change::absolute(
                    error_rate(bs),
                    error_rate(ns),
                    thresholds.error_rate_abs,
                ),
                no_answers: !answered(ns),
                p99_ttft_ms: Change::relative(
                    bs.ttft_ms.all.map(|p| p.p99),
                    ns.ttft_ms.all.map(|p| p.p99),
                    thresholds.p99_pct,
                    P99_FLOOR_MS,
                ),
                cold_ratio: Change::absolute(
                    answered(bs).then_some(bs.cold_ratio),
                    answered(ns).then_some(ns.cold_ratio),
                    thresholds.cold_ratio_abs,
                ),
                idle_gb_s: Change::relative(idle(b), idle(n), thresholds.vram_pct, IDLE_FLOOR_GB_S),
                peak_gb: Change::relative(peak(b), peak(n), thresholds.vram_pct, PEAK_FLOOR_GB),
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

/// Reads one run folder for `compare`: anything unreadable is bad input.
fn read_run(dir: &Path, which: &str) -> Result<(RunMeta, Summary)> {
    if !dir.join(crate::folder::RUN_JSON).is_file() {
        return Err(NotComparable(format!(
            "the {which} folder {} is not a kabench run (it has no run.json): give two folders written by `kabench run` or `kabench swarm`",
            dir.display()
        ))
        .into());
    }
    analysis::summarize_dir(dir, None).map_err(|e| {
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
    let (bm, b) = read_run(base, "base")?;
    let (nm, n) = read_run(new, "new")?;
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
    for (which, dir, meta) in [("base", base, &bm), ("new", new, &nm)] {
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
    let mut comparison = compare_summaries(&b, &n, thresholds);
    comparison.forced = forced;
    Ok(comparison)
}

fn short_hash(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flag_only_real_worsening() {
        let c = Change::relative(Some(100.0), Some(109.0), 10.0, P99_FLOOR_MS);
        assert!(!c.regression);
        let c = Change::relative(Some(100.0), Some(111.0), 10.0, P99_FLOOR_MS);
        assert!(c.regression);
        assert!(c.describe(0).contains("+11.0%"));
        let c = Change::relative(Some(0.0), Some(0.05), 10.0, IDLE_FLOOR_GB_S);
        assert!(!c.regression);
        let c = Change::absolute(Some(0.10), Some(0.16), 0.05);
        assert!(c.regression);
        let c = Change::absolute(Some(0.10), Some(0.15), 0.05);
        assert!(!c.regression);
        assert!(!Change::relative(None, Some(5.0), 10.0, 0.0).regression);
    }
}
