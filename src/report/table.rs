//! The per-cell result table that `kabench run`, `swarm` and `report` print on stdout:
//! one line per cell and stream (requests, errors, cold, loads, TTFT and E2E
//! percentiles with their confidence intervals, idle GB·s, which memory was counted),
//! and under it one line per host of a fleet.

use std::fmt::Write;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::figures::{self, Pct};
use crate::analysis::{CellSummary, StreamSummary, Summary};
use crate::units::cmp_keep_alive;
use crate::units::limits::printable;

/// Most streams (models) of one cell that a table or chart shows one by one: past it,
/// the streams with the most requests are shown and the rest summed into one row,
/// "other N models" (`summary.json` keeps every stream).
pub const MAX_SHOWN_STREAMS: usize = 20;

/// `summary` as the tables and charts show it: each cell with at most
/// [`MAX_SHOWN_STREAMS`] streams, those with the most requests, the rest summed into
/// one "other N models" stream (counts only: percentiles of the group are not kept).
pub fn shown(summary: &Summary) -> Cow<'_, Summary> {
    if summary
        .cells
        .iter()
        .all(|c| c.streams.len() <= MAX_SHOWN_STREAMS)
    {
        return Cow::Borrowed(summary);
    }
    let mut out = summary.clone();
    for cell in &mut out.cells {
        if cell.streams.len() <= MAX_SHOWN_STREAMS {
            continue;
        }
        let mut order: Vec<usize> = (0..cell.streams.len()).collect();
        order.sort_by(|a, b| {
            cell.streams[*b]
                .requests
                .cmp(&cell.streams[*a].requests)
                .then(a.cmp(b))
        });
        let keep: BTreeSet<usize> = order[..MAX_SHOWN_STREAMS - 1].iter().copied().collect();
        let mut kept = Vec::with_capacity(MAX_SHOWN_STREAMS);
        let mut rest = Vec::new();
        for (i, s) in std::mem::take(&mut cell.streams).into_iter().enumerate() {
            if keep.contains(&i) {
                kept.push(s);
            } else {
                rest.push(s);
            }
        }
        kept.push(other(&rest));
        cell.streams = kept;
    }
    Cow::Owned(out)
}

/// One stream standing for `rest`: their counts summed, no percentiles.
fn other(rest: &[StreamSummary]) -> StreamSummary {
    let name = format!("other {} models", rest.len());
    let sum = |f: fn(&StreamSummary) -> u64| rest.iter().map(f).sum::<u64>();
    let mut errors_by_kind = BTreeMap::new();
    for s in rest {
        for (k, n) in &s.errors_by_kind {
            *errors_by_kind.entry(k.clone()).or_insert(0) += n;
        }
    }
    let answered = sum(|s| s.answered);
    let cold = sum(|s| s.cold);
    StreamSummary {
        name: name.clone(),
        model: name,
        keep_alive: None,
        rate_per_s: None,
        requests: sum(|s| s.requests),
        warmup: sum(|s| s.warmup),
        errors: sum(|s| s.errors),
        errors_by_kind,
        answered,
        cold,
        loads: sum(|s| s.loads),
        cold_ratio: if answered > 0 {
            cold as f64 / answered as f64
        } else {
            0.0
        },
        ttft_ms: Default::default(),
        e2e_ms: Default::default(),
        tpot_ms: None,
        load_ms: None,
        cold_penalty_ms: None,
        tokens_per_s: None,
        intervals: None,
        hosts: Vec::new(),
    }
}

/// The rows of every table of a run (this one, `summary.md`'s, `index.html`'s), one per
/// cell and stream: cells of the same other swept values (rate, quant, model) together in
/// run order, and within them keep_alive in the one ordering (`units::cmp_keep_alive`).
/// Pass it [`shown`]`(summary)` to bound the streams of each cell.
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
    let summary = shown(summary);
    let summary = summary.as_ref();
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>6} {:>18} {:>18} {:>18} {:>10}  memory",
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
        let idle = match cell.vram {
            Some(_) => super::figures::idle_memory(cell),
            None => "-".into(),
        };
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
            "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>18} {:>18} {:>18} {:>10}  {}",
            printable(&cell.id),
            printable(&s.name),
            s.keep_alive.as_ref().map_or("", |k| k.written()),
            s.requests,
            s.errors,
            s.cold,
            s.loads,
            s.cold_ratio * 100.0,
            figures::ttft(s, Pct::P50),
            figures::ttft(s, Pct::P99),
            figures::e2e(s, Pct::P99),
            idle,
            memory
        );
        for h in &s.hosts {
            let host = format!("  @ {}", printable(&h.target));
            let _ = writeln!(
                out,
                "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>18} {:>18} {:>18}",
                host,
                printable(&s.name),
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
