//! A figure as every table shows it: the value with its confidence interval
//! (`1049 [980–1120]`), or, where the sample is too small for one, what the value
//! really is (`max 4048 (n=12)` for the p99 of 12 requests, `310 (n=200, no interval)`).
//! Formatting only; the intervals are `analysis::intervals`'.

use crate::analysis::intervals::{QuantileIntervals, quantile_is_max};
use crate::analysis::stats::Interval;
use crate::analysis::{Percentiles, StreamSummary};

/// Which percentile of a [`Percentiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pct {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
}

impl Pct {
    fn q(self) -> f64 {
        match self {
            Pct::P50 => 0.5,
            Pct::P90 => 0.9,
            Pct::P99 => 0.99,
        }
    }

    fn of(self, p: &Percentiles) -> f64 {
        match self {
            Pct::P50 => p.p50,
            Pct::P90 => p.p90,
            Pct::P99 => p.p99,
        }
    }

    fn interval(self, i: &QuantileIntervals) -> Option<Interval> {
        match self {
            Pct::P50 => i.p50,
            Pct::P90 => i.p90,
            Pct::P99 => i.p99,
        }
    }
}

/// `value [lo–hi]` with `digits` decimals.
pub fn with_interval(value: f64, interval: Option<&Interval>, digits: usize) -> String {
    match interval {
        Some(i) => format!("{value:.digits$} [{:.digits$}–{:.digits$}]", i.lo, i.hi),
        None => format!("{value:.digits$}"),
    }
}

/// A percentile of `p` in ms, with its interval from `intervals` when the stream has
/// them; too small a sample says so (the p99 of at most 99 values is their maximum).
/// `–` when the group is empty.
pub fn percentile(
    p: Option<&Percentiles>,
    intervals: Option<&QuantileIntervals>,
    which: Pct,
) -> String {
    let Some(p) = p else {
        return "–".into();
    };
    let value = which.of(p);
    let Some(iv) = intervals else {
        return format!("{value:.0}");
    };
    match which.interval(iv) {
        Some(i) => with_interval(value, Some(&i), 0),
        None if quantile_is_max(iv.count, which.q()) && iv.count > 1 => {
            format!("max {:.0} (n={})", p.max, iv.count)
        }
        None => format!("{value:.0} (n={}, no interval)", iv.count),
    }
}

/// A recommendation candidate's p99 TTFT, with its interval or, over too few
/// requests, as their maximum.
pub fn candidate_p99(c: &crate::recommend::Candidate) -> String {
    match (c.p99_ttft_ms, c.p99_ttft_interval) {
        (None, _) => "–".into(),
        (Some(v), Some(i)) => with_interval(v, Some(&i), 0),
        (Some(v), None) if quantile_is_max(c.p99_ttft_count, 0.99) && c.p99_ttft_count > 1 => {
            format!("max {v:.0} (n={})", c.p99_ttft_count)
        }
        (Some(v), None) if c.p99_ttft_count > 0 => {
            format!("{v:.0} (n={}, no interval)", c.p99_ttft_count)
        }
        (Some(v), None) => format!("{v:.0}"),
    }
}

/// TTFT of every answered request of `s` at `which`.
pub fn ttft(s: &StreamSummary, which: Pct) -> String {
    percentile(
        s.ttft_ms.all.as_ref(),
        s.intervals.as_ref().map(|i| &i.ttft_ms),
        which,
    )
}

/// End to end of every answered request of `s` at `which`.
pub fn e2e(s: &StreamSummary, which: Pct) -> String {
    percentile(
        s.e2e_ms.all.as_ref(),
        s.intervals.as_ref().map(|i| &i.e2e_ms),
        which,
    )
}

/// The cold ratio of `s` in %, with its Wilson interval.
pub fn cold_pct(s: &StreamSummary) -> String {
    let i = s
        .intervals
        .as_ref()
        .and_then(|i| i.cold_ratio)
        .map(|i| Interval {
            lo: i.lo * 100.0,
            hi: i.hi * 100.0,
            level: i.level,
        });
    with_interval(s.cold_ratio * 100.0, i.as_ref(), 1)
}

/// Only the interval of the cold ratio of `s`, in % (`–` without one).
pub fn cold_pct_interval(s: &StreamSummary) -> String {
    s.intervals
        .as_ref()
        .and_then(|i| i.cold_ratio)
        .map_or("–".into(), |i| {
            format!("{:.1}–{:.1}", i.lo * 100.0, i.hi * 100.0)
        })
}

/// The median per-request decode rate of `s`, with its interval.
pub fn tokens_per_s(s: &StreamSummary) -> String {
    match s.tokens_per_s {
        Some(v) => with_interval(
            v,
            s.intervals.as_ref().and_then(|i| i.tokens_per_s).as_ref(),
            1,
        ),
        None => "–".into(),
    }
}

/// A cell's idle GB·s, with the interval of its mean over the repetitions when it ran
/// more than once; `–` when memory was not measured.
pub fn idle_memory(cell: &crate::analysis::CellSummary) -> String {
    match &cell.vram {
        Some(v) => with_interval(
            v.idle_gb_seconds,
            cell.repetitions
                .as_ref()
                .and_then(|r| r.idle_gb_seconds.as_ref()),
            1,
        ),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(p50: f64, p99: f64, max: f64, count: u64) -> Percentiles {
        Percentiles {
            p50,
            p90: p99,
            p99,
            p999: max,
            max,
            mean: p50,
            count,
        }
    }

    #[test]
    fn a_small_sample_says_its_p99_is_the_maximum() {
        let iv = QuantileIntervals {
            count: 12,
            p50: Some(Interval {
                lo: 980.0,
                hi: 1120.0,
                level: 0.95,
            }),
            p90: None,
            p99: None,
        };
        let pc = p(1049.0, 4048.0, 4048.0, 12);
        assert_eq!(
            percentile(Some(&pc), Some(&iv), Pct::P50),
            "1049 [980–1120]"
        );
        assert_eq!(
            percentile(Some(&pc), Some(&iv), Pct::P99),
            "max 4048 (n=12)"
        );
        let big = QuantileIntervals { count: 200, ..iv };
        assert_eq!(
            percentile(Some(&p(1.0, 310.0, 400.0, 200)), Some(&big), Pct::P99),
            "310 (n=200, no interval)"
        );
        assert_eq!(percentile(None, Some(&iv), Pct::P99), "–");
        assert_eq!(percentile(Some(&pc), None, Pct::P99), "4048");
    }
}
