//! Warnings that a cell's figures may hold more noise than signal, as hyperfine warns
//! "statistical outliers were detected": the host was busy during the cell (other
//! processes on its CPUs, or CPU steal, from `run.json`'s `cells[].host`), or a stream's
//! warm latencies split into two groups with no cold start to explain the slow one.

use crate::analysis::RowsByCell;
use crate::analysis::stats::median;
use crate::folder::RunMeta;
use crate::units::limits::printable;

/// A warm request this many times slower than the median is an outlier.
pub const OUTLIER_FACTOR: f64 = 3.0;
/// … and slower by at least this much (ms), so that a 2 ms median does not warn at 6 ms.
pub const OUTLIER_MIN_MS: f64 = 50.0;
/// Fewer warm requests than this say nothing of a distribution's shape.
pub const MIN_WARM: usize = 8;

/// The warnings for every cell of a run.
pub fn warnings(meta: &RunMeta, rows: &RowsByCell) -> Vec<String> {
    let mut out = Vec::new();
    for cell in &meta.cells {
        let busy = cell.host.as_ref().and_then(|h| h.busy_reason());
        if let Some(why) = &busy {
            out.push(format!(
                "cell {}: the host was busy during this cell ({why}): its latencies may be inflated; rerun it on a quiet host",
                printable(&cell.id)
            ));
        }
        for s in &cell.streams {
            let warm: Vec<f64> = rows
                .get(&cell.id)
                .into_iter()
                .flatten()
                .filter(|r| r.stream == s.name && !r.warmup && !r.is_error() && !r.cold)
                .filter_map(|r| r.ttft_ms)
                .filter(|v| v.is_finite())
                .collect();
            if let Some((k, lo, hi, med)) = bimodal(&warm) {
                out.push(format!(
                    "cell {}, stream {}: statistical outliers were detected: {k} of {} warm requests took {lo:.0}–{hi:.0} ms to the first token against a median of {med:.0} ms, with no cold start to explain it{}; rerun with more requests on a quiet host",
                    printable(&cell.id),
                    printable(&s.name),
                    warm.len(),
                    if busy.is_some() {
                        " (the host was busy)"
                    } else {
                        " (the host or the server stalled)"
                    }
                ));
            }
        }
    }
    out
}

/// Two groups in warm latencies: a slow minority at least [`OUTLIER_FACTOR`] times the
/// median and [`OUTLIER_MIN_MS`] above it. Returns (how many, slowest group's min and
/// max, median).
pub fn bimodal(values: &[f64]) -> Option<(usize, f64, f64, f64)> {
    if values.len() < MIN_WARM {
        return None;
    }
    let med = median(values);
    let cut = (med * OUTLIER_FACTOR).max(med + OUTLIER_MIN_MS);
    let slow: Vec<f64> = values.iter().copied().filter(|v| *v >= cut).collect();
    // One stall is an outlier, not a mode; half the requests would be the median.
    if slow.len() < 2 || slow.len() * 2 >= values.len() {
        return None;
    }
    let lo = slow.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = slow.iter().copied().fold(0.0, f64::max);
    Some((slow.len(), lo, hi, med))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::{CellMeta, HostLoad, RequestRecord, StreamMeta};

    fn row(cell: &str, ttft: f64, cold: bool) -> RequestRecord {
        RequestRecord {
            cell: cell.into(),
            stream: "chat".into(),
            ttft_ms: Some(ttft),
            cold,
            ..Default::default()
        }
    }

    fn meta(host: Option<HostLoad>) -> RunMeta {
        RunMeta {
            cells: vec![CellMeta {
                id: "c0".into(),
                streams: vec![StreamMeta {
                    name: "chat".into(),
                    ..Default::default()
                }],
                host,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn warm_stalls_warn_and_cold_starts_do_not() {
        let mut rows = RowsByCell::new();
        let mut r: Vec<RequestRecord> = (0..10)
            .map(|i| row("c0", 40.0 + f64::from(i), false))
            .collect();
        // Two slow cold requests: explained by the load.
        r.push(row("c0", 2_000.0, true));
        r.push(row("c0", 2_100.0, true));
        rows.insert("c0".into(), r.clone());
        assert!(warnings(&meta(None), &rows).is_empty());
        // Two slow warm ones: outliers.
        r.push(row("c0", 1_500.0, false));
        r.push(row("c0", 1_700.0, false));
        rows.insert("c0".into(), r);
        let w = warnings(&meta(None), &rows);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("statistical outliers were detected: 2 of 12 warm"),
            "{w:?}"
        );
    }

    #[test]
    fn a_busy_host_warns_and_a_quiet_one_does_not() {
        let quiet = HostLoad {
            cpus: 2,
            busy: 0.5,
            ollama: 0.4,
            kabench: 0.05,
            other: 0.05,
            ..Default::default()
        };
        assert!(warnings(&meta(Some(quiet)), &RowsByCell::new()).is_empty());
        let busy = HostLoad {
            other: 0.6,
            load1_end: 3.5,
            ..quiet
        };
        let w = warnings(&meta(Some(busy)), &RowsByCell::new());
        assert!(
            w.len() == 1 && w[0].contains("host was busy") && w[0].contains("60%"),
            "{w:?}"
        );
        let stolen = HostLoad {
            steal: 0.1,
            ..quiet
        };
        assert!(warnings(&meta(Some(stolen)), &RowsByCell::new())[0].contains("stole 10%"));
    }
}
