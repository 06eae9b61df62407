//! The per-cell result table that `kabench run`, `swarm` and `report` print on stdout:
//! one line per cell and stream (requests, errors, cold, loads, TTFT and E2E
//! percentiles, idle GB·s, which memory was counted), and under it one line per host
//! of a fleet.

use std::fmt::Write;

use crate::analysis::{CellSummary, StreamSummary, Summary};
use crate::units::cmp_keep_alive;
use std::collections::BTreeMap;

/// The rows of every table of a run (this one, `summary.md`'s, `index.html`'s), one per
/// cell and stream: cells of the same other swept values (rate, quant, model) together in
/// run order, and within them keep_alive in the one ordering (`units::cmp_keep_alive`).
pub fn rows_in_order(summary: &Summary) -> Vec<(&CellSummary, &StreamSummary)> {
    let mut groups: Vec<BTreeMap<String, String>> = Vec::new();
    let mut rows: Vec<(usize, &CellSummary, &StreamSummary)> = Vec::new();
    for cell in &summary.cells {
        let others = cell.params.fixed();
        let group = match groups.iter().position(|g| *g == others) {
            Some(i) => i,
            None => {
                groups.push(others);
                groups.len() - 1
            }
        };
        rows.extend(cell.streams.iter().map(|s| (group, cell, s)));
    }
    // Stable: streams of one cell, and cells of equal keep_alive, stay in run order.
    rows.sort_by(|a, b| {
        a.0.cmp(&b.0).then(cmp_keep_alive(
            a.2.keep_alive.as_ref(),
            b.2.keep_alive.as_ref(),
        ))
    });
    rows.into_iter().map(|(_, c, s)| (c, s)).collect()
}

/// The table of `summary`, header first, one line per cell and stream.
pub fn result_table(summary: &Summary) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>6} {:>10} {:>10} {:>10} {:>10}  memory",
        "cell",
        "stream",
        "keep_alive",
        "reqs",
        "errs",
        "cold",
        "loads",
        "cold%",
        "ttft p50",
        "ttft p99",
        "e2e p99",
        "idle GB·s"
    );
    for (cell, s) in rows_in_order(summary) {
        let idle = cell
            .vram
            .as_ref()
            .map(|v| format!("{:.1}", v.idle_gb_seconds))
            .unwrap_or_else(|| "-".into());
        let memory = cell
            .vram
            .as_ref()
            .map_or("not measured", |v| v.counted.as_str());
        let p = |x: Option<f64>| {
            x.map(|v| format!("{v:.0} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>10} {:>10} {:>10} {:>10}  {}",
            cell.id,
            s.name,
            s.keep_alive.as_ref().map_or("", |k| k.written()),
            s.requests,
            s.errors,
            s.cold,
            s.loads,
            s.cold_ratio * 100.0,
            p(s.ttft_ms.all.map(|q| q.p50)),
            p(s.ttft_ms.all.map(|q| q.p99)),
            p(s.e2e_ms.all.map(|q| q.p99)),
            idle,
            memory
        );
        for h in &s.hosts {
            let host = format!("  @ {}", h.target);
            let _ = writeln!(
                out,
                "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>10} {:>10} {:>10}",
                host,
                s.name,
                "",
                h.requests,
                h.errors,
                h.cold,
                "",
                h.cold_ratio * 100.0,
                p(h.ttft_ms.map(|q| q.p50)),
                p(h.ttft_ms.map(|q| q.p99)),
                p(h.e2e_ms.map(|q| q.p99)),
            );
        }
    }
    out
}
