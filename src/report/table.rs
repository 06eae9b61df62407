//! The per-cell result table that `kabench run`, `swarm` and `report` print on stdout:
//! one line per cell and stream (requests, errors, cold, loads, TTFT and E2E
//! percentiles, idle GB·s, which memory was counted).

use std::fmt::Write;

use crate::analysis::Summary;

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
    for cell in &summary.cells {
        let idle = cell
            .vram
            .as_ref()
            .map(|v| format!("{:.1}", v.idle_gb_seconds))
            .unwrap_or_else(|| "-".into());
        let memory = cell
            .vram
            .as_ref()
            .map_or("not measured", |v| v.counted.as_str());
        for s in &cell.streams {
            let p = |x: Option<f64>| {
                x.map(|v| format!("{v:.0} ms"))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                out,
                "{:<28} {:<12} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5.0}% {:>10} {:>10} {:>10} {:>10}  {}",
                cell.id,
                s.name,
                s.keep_alive,
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
        }
    }
    out
}
