//! The confidence intervals of one stream's headline figures (`summary.json`
//! `streams[].intervals`): distribution-free order-statistic intervals for the TTFT and
//! end-to-end percentiles and for the median per-request decode rate, and a Wilson
//! interval for the cold ratio, all at [`stats::DEFAULT_CONFIDENCE`]. A percentile whose
//! sample is too small for an interval has none (`null`): the page then shows it as what
//! it is (the p99 of 12 requests is their maximum). Only the values of one stream of one
//! cell are held while these are computed.

use serde::{Deserialize, Serialize};

use super::stats::{self, Interval};

/// Intervals of a group's percentiles, from its order statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuantileIntervals {
    /// Values the intervals are over.
    pub count: u64,
    /// Of the median (`null`: too few values).
    pub p50: Option<Interval>,
    /// Of the 90th percentile (`null`: too few values, under 36 at 95 %).
    pub p90: Option<Interval>,
    /// Of the 99th percentile (`null`: too few values, under 368 at 95 %).
    pub p99: Option<Interval>,
}

impl QuantileIntervals {
    /// The intervals of an ascending sample at `level`.
    pub fn of_sorted(sorted: &[f64], level: f64) -> QuantileIntervals {
        QuantileIntervals {
            count: sorted.len() as u64,
            p50: stats::quantile_interval(sorted, 0.5, level),
            p90: stats::quantile_interval(sorted, 0.9, level),
            p99: stats::quantile_interval(sorted, 0.99, level),
        }
    }
}

/// The intervals of one stream's headline figures in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamIntervals {
    /// Confidence level of every interval here, e.g. 0.95.
    pub level: f64,
    /// Time to first token of every answered request, ms.
    pub ttft_ms: QuantileIntervals,
    /// End to end of every answered request, ms.
    pub e2e_ms: QuantileIntervals,
    /// The cold ratio (Wilson score interval; `null` when nothing was answered).
    pub cold_ratio: Option<Interval>,
    /// The median per-request decode rate, tokens/s (`null`: too few rates).
    pub tokens_per_s: Option<Interval>,
}

/// The values of one stream in one cell that its intervals are computed from.
#[derive(Debug, Clone, Default)]
pub struct StreamValues {
    /// TTFT of each answered request, ms.
    pub ttft_ms: Vec<f64>,
    /// End to end of each answered request, ms.
    pub e2e_ms: Vec<f64>,
    /// Decode rate of each answered request that reports one, tokens/s.
    pub tokens_per_s: Vec<f64>,
}

impl StreamValues {
    /// Sorts the values, then computes every interval at `level`, with `cold` cold
    /// requests among `answered`; also returns the median per-request decode rate.
    pub fn intervals(
        &mut self,
        cold: u64,
        answered: u64,
        level: f64,
    ) -> (StreamIntervals, Option<f64>) {
        for v in [&mut self.ttft_ms, &mut self.e2e_ms, &mut self.tokens_per_s] {
            v.sort_by(f64::total_cmp);
        }
        let rate = (!self.tokens_per_s.is_empty())
            .then(|| stats::quantile_sorted(&self.tokens_per_s, 0.5));
        (
            StreamIntervals {
                level,
                ttft_ms: QuantileIntervals::of_sorted(&self.ttft_ms, level),
                e2e_ms: QuantileIntervals::of_sorted(&self.e2e_ms, level),
                cold_ratio: stats::wilson(cold, answered, level),
                tokens_per_s: stats::quantile_interval(&self.tokens_per_s, 0.5, level),
            },
            rate,
        )
    }
}

/// True when the nearest-rank `q`-quantile of `n` values is their maximum (the p99 of
/// 99 values or fewer).
pub fn quantile_is_max(n: u64, q: f64) -> bool {
    n > 0 && (q * n as f64).ceil() as u64 >= n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_requests_have_a_median_interval_and_no_p99_one() {
        let mut v = StreamValues {
            ttft_ms: (1..=12).map(|i| f64::from(i) * 10.0).rev().collect(),
            e2e_ms: vec![5.0; 12],
            tokens_per_s: vec![200.0, 180.0, 36.0, 211.0],
        };
        let (i, rate) = v.intervals(1, 12, 0.95);
        assert_eq!(i.ttft_ms.count, 12);
        let p50 = i.ttft_ms.p50.unwrap();
        assert_eq!((p50.lo, p50.hi), (30.0, 100.0));
        assert_eq!(i.ttft_ms.p99, None);
        assert!(quantile_is_max(12, 0.99) && quantile_is_max(99, 0.99));
        assert!(!quantile_is_max(100, 0.99));
        // The median of per-request rates: one stalled request does not drag it down.
        assert_eq!(rate, Some(180.0));
        assert!(i.cold_ratio.unwrap().contains(1.0 / 12.0));
    }

    #[test]
    fn the_documented_smallest_samples() {
        // docs/report.md: the median needs 6 values, the p90 36, the p99 368.
        assert_eq!(stats::min_sample_for_quantile(0.5, 0.95), 6);
        assert_eq!(stats::min_sample_for_quantile(0.9, 0.95), 36);
        assert_eq!(stats::min_sample_for_quantile(0.99, 0.95), 368);
    }

    #[test]
    fn intervals_shrink_as_the_sample_grows() {
        let draw = |n: usize| {
            let mut rng = crate::rng::SeededRng::new(3);
            let mut v = StreamValues {
                ttft_ms: (0..n).map(|_| 100.0 + 50.0 * rng.unit()).collect(),
                ..Default::default()
            };
            v.intervals(0, n as u64, 0.95).0
        };
        let (small, large) = (draw(50), draw(2000));
        assert!(large.ttft_ms.p50.unwrap().width() < small.ttft_ms.p50.unwrap().width() / 3.0);
        assert!(small.ttft_ms.p99.is_none() && large.ttft_ms.p99.is_some());
        assert!(large.cold_ratio.unwrap().width() < small.cold_ratio.unwrap().width());
    }
}
