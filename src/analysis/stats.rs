//! The statistics behind every interval kabench prints: distribution-free confidence
//! intervals for percentiles (exact binomial order statistics), Wilson intervals for
//! ratios, and a seeded percentile bootstrap for any other figure and for the
//! difference of a figure between two samples (what `compare` tests). Pure functions of
//! numbers; the seed comes from the caller so that a figure is reproducible.

use serde::{Deserialize, Serialize};

use crate::rng::SeededRng;

/// The confidence level of every interval kabench reports unless told otherwise.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// Bootstrap resamples unless told otherwise (criterion's default is 100,000; a few
/// thousand give the 2.5 % / 97.5 % bounds to well under a percent of the spread).
pub const DEFAULT_RESAMPLES: usize = 2_000;

/// A two-sided confidence interval `[lo, hi]` at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Interval {
    /// True when `x` lies inside the interval (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// True when the two intervals share a point.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }

    /// Width `hi - lo`.
    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }
}

/// The standard normal quantile (inverse CDF) at `p` in (0, 1), by Acklam's rational
/// approximation (relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Ranks (0-based, inclusive) of the order statistics that bound the `q`-quantile of a
/// sample of `n` at confidence `level`, distribution-free: the exact binomial interval
/// (each side holds at most `(1 - level) / 2`). `None` when `n` is too small for any
/// such interval, i.e. when even the sample's minimum and maximum do not cover the
/// quantile at that level (the p99 of 12 requests).
pub fn quantile_rank_interval(n: usize, q: f64, level: f64) -> Option<(usize, usize)> {
    if n == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let alpha = (1.0 - level) / 2.0;
    let cdf = binomial_cdf_table(n, q);
    // P(X <= k) with X ~ Bin(n, q): the lower rank l is the largest with
    // P(X <= l - 1) <= alpha, i.e. the l-th order statistic (1-based) lies below the
    // quantile with probability >= 1 - alpha.
    let mut lo = None;
    for (k, &c) in cdf.iter().enumerate() {
        if c <= alpha {
            lo = Some(k); // order statistic k+1 (1-based) == rank k (0-based)
        } else {
            break;
        }
    }
    let mut hi = None;
    for (k, &c) in cdf.iter().enumerate() {
        if c >= 1.0 - alpha {
            hi = Some(k); // rank k (0-based) is the (k+1)-th order statistic
            break;
        }
    }
    match (lo, hi) {
        (Some(l), Some(h)) if h < n => Some((l, h)),
        _ => None,
    }
}

/// `P(X <= k)` for `k = 0..=n`, `X ~ Binomial(n, p)`, computed in log space.
fn binomial_cdf_table(n: usize, p: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    if p <= 0.0 {
        out.resize(n + 1, 1.0);
        return out;
    }
    if p >= 1.0 {
        out.resize(n, 0.0);
        out.push(1.0);
        return out;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_pmf = n as f64 * lq; // k = 0
    let mut acc = 0.0;
    for k in 0..=n {
        if k > 0 {
            log_pmf += ((n - k + 1) as f64).ln() - (k as f64).ln() + lp - lq;
        }
        acc += log_pmf.exp();
        out.push(acc.min(1.0));
    }
    out
}

/// The confidence interval of the `q`-quantile of `sorted` (ascending), from its order
/// statistics ([`quantile_rank_interval`]); `None` when the sample is too small.
pub fn quantile_interval(sorted: &[f64], q: f64, level: f64) -> Option<Interval> {
    let (l, h) = quantile_rank_interval(sorted.len(), q, level)?;
    Some(Interval {
        lo: sorted[l],
        hi: sorted[h],
        level,
    })
}

/// The smallest sample whose minimum and maximum cover the `q`-quantile at `level`:
/// below it a percentile is the sample's extreme, not an estimate (367 for the p99
/// at 95 %).
pub fn min_sample_for_quantile(q: f64, level: f64) -> usize {
    let mut n = 1;
    while quantile_rank_interval(n, q, level).is_none() && n < 10_000_000 {
        n = (n * 5).div_ceil(4).max(n + 1);
    }
    // refine downwards to the first n that works
    let mut lo = n * 4 / 5;
    while lo < n && quantile_rank_interval(lo, q, level).is_none() {
        lo += 1;
    }
    lo
}

/// The Wilson score interval of a ratio of `k` successes in `n` trials; `None` when
/// `n` is zero.
pub fn wilson(k: u64, n: u64, level: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
        level,
    })
}

/// Percentile-bootstrap interval of `stat` over `sample`: `resamples` resamples with
/// replacement drawn from a [`SeededRng`] at `seed`. `None` for an empty sample.
pub fn bootstrap(
    sample: &[f64],
    stat: impl Fn(&[f64]) -> f64,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Option<Interval> {
    if sample.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SeededRng::new(seed);
    let mut buf = vec![0.0; sample.len()];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            resample_into(sample, &mut buf, &mut rng);
            stat(&buf)
        })
        .filter(|x| x.is_finite())
        .collect();
    interval_of(&mut stats, level)
}

/// Percentile-bootstrap interval of `stat(b) - stat(a)`, each side resampled on its
/// own (the change from `a` to `b`, as `compare` reads it). `None` when either side
/// is empty.
pub fn bootstrap_difference(
    a: &[f64],
    b: &[f64],
    stat: impl Fn(&[f64]) -> f64,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Option<Interval> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SeededRng::new(seed);
    let (mut ba, mut bb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            resample_into(a, &mut ba, &mut rng);
            resample_into(b, &mut bb, &mut rng);
            stat(&bb) - stat(&ba)
        })
        .filter(|x| x.is_finite())
        .collect();
    interval_of(&mut stats, level)
}

/// Fills `out` with draws from `sample` with replacement.
fn resample_into(sample: &[f64], out: &mut [f64], rng: &mut SeededRng) {
    let n = sample.len() as u64;
    for slot in out.iter_mut() {
        *slot = sample[(rng.next_u64() % n) as usize];
    }
}

/// The `(1 - level) / 2` and `(1 + level) / 2` quantiles of `stats` (sorted here).
fn interval_of(stats: &mut [f64], level: f64) -> Option<Interval> {
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (stats.len() - 1) as f64).round() as usize).min(stats.len() - 1)];
    Some(Interval {
        lo: at((1.0 - level) / 2.0),
        hi: at((1.0 + level) / 2.0),
        level,
    })
}

/// The nearest-rank `q`-quantile of an ascending slice (the definition the
/// HdrHistogram percentiles follow); `NaN` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of an unsorted slice (copied and sorted); `NaN` when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile_sorted(&v, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_the_table() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-5);
    }

    #[test]
    fn p99_of_twelve_has_no_interval_but_the_median_does() {
        assert_eq!(quantile_rank_interval(12, 0.99, 0.95), None);
        let (l, h) = quantile_rank_interval(12, 0.5, 0.95).unwrap();
        // The textbook exact 95 % interval of the median of 12 is [x(3), x(10)].
        assert_eq!((l + 1, h + 1), (3, 10));
    }

    #[test]
    fn the_p99_needs_a_few_hundred_requests() {
        let n = min_sample_for_quantile(0.99, 0.95);
        assert!((360..=370).contains(&n), "{n}");
        assert!(quantile_rank_interval(n, 0.99, 0.95).is_some());
        assert!(quantile_rank_interval(n - 1, 0.99, 0.95).is_none());
    }

    #[test]
    fn quantile_intervals_cover_and_shrink() {
        let small: Vec<f64> = (0..100).map(f64::from).collect();
        let large: Vec<f64> = (0..10_000).map(|i| f64::from(i) / 100.0).collect();
        let a = quantile_interval(&small, 0.5, 0.95).unwrap();
        let b = quantile_interval(&large, 0.5, 0.95).unwrap();
        assert!(a.contains(49.5) && b.contains(49.995));
        assert!(b.width() < a.width() / 5.0);
    }

    #[test]
    fn wilson_is_inside_zero_one_and_covers_the_ratio() {
        let w = wilson(0, 12, 0.95).unwrap();
        assert_eq!(w.lo, 0.0);
        assert!(w.hi > 0.2 && w.hi < 0.3);
        let w = wilson(6, 12, 0.95).unwrap();
        assert!(w.contains(0.5));
        assert_eq!(wilson(0, 0, 0.95), None);
    }

    #[test]
    fn bootstrap_is_seeded_and_a_shift_is_seen() {
        let a: Vec<f64> = (0..200).map(|i| 100.0 + f64::from(i % 17)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 300.0).collect();
        let one = bootstrap(&a, median, 500, 7, 0.95).unwrap();
        assert_eq!(Some(one), bootstrap(&a, median, 500, 7, 0.95));
        let d = bootstrap_difference(&a, &b, median, 500, 7, 0.95).unwrap();
        assert!(d.lo > 250.0 && d.hi < 350.0, "{d:?}");
        let same = bootstrap_difference(&a, &a, median, 500, 7, 0.95).unwrap();
        assert!(same.contains(0.0), "{same:?}");
    }
}
