//! The Pareto frontier of a group's candidates over (latency metric, memory held).

use crate::recommend::Candidate;

/// Marks the candidates on the Pareto frontier of (latency metric, idle GB·s): none
/// other is at least as good on both and better on one.
pub(crate) fn mark_frontier(cands: &mut [Candidate], use_p99: bool) {
    let pts: Vec<(f64, f64)> = cands
        .iter()
        .map(|c| {
            let y = if use_p99 {
                c.p99_ttft_ms.unwrap_or(f64::INFINITY)
            } else {
                c.cold_ratio
            };
            (c.appetite(), y)
        })
        .collect();
    for (i, c) in cands.iter_mut().enumerate() {
        let (xi, yi) = pts[i];
        c.on_frontier = !pts
            .iter()
            .enumerate()
            .any(|(j, &(xj, yj))| j != i && xj <= xi && yj <= yi && (xj < xi || yj < yi));
    }
}
