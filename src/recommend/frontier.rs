//! The Pareto frontier of a group's candidates over (latency metric, memory held).

use crate::recommend::{Candidate, excluded};

/// Marks the candidates on the Pareto frontier of (latency metric, idle GB·s): none
/// other is at least as good on both and better on one.
pub(crate) fn mark_frontier(cands: &mut [Candidate], use_p99: bool) {
    // A cell left out for its failed requests is neither on the frontier nor beats one.
    let pts: Vec<(f64, f64)> = cands
        .iter()
        .map(|c| {
            if excluded(c).is_some() {
                return (f64::INFINITY, f64::INFINITY);
            }
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
        c.on_frontier = excluded(c).is_none()
            && !pts
                .iter()
                .enumerate()
                .any(|(j, &(xj, yj))| j != i && xj <= xi && yj <= yi && (xj < xi || yj < yi));
    }
}
