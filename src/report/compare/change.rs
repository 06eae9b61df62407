//! One figure of one stream in two runs, and whether it changed: criterion's change
//! detection on kabench's figures. Where both runs recorded the stream's requests, the
//! change `new − base` gets a percentile-bootstrap interval (each run resampled on its
//! own, so the noise of both runs is in it) at confidence `1 − significance`; the change
//! is *significant* when that interval excludes zero, and it is a regression or an
//! improvement only when the whole interval lies past the noise threshold. A prediction's
//! computed figures are exact: they change past the larger of the noise threshold and
//! their limit. A measured figure with one value per run (VRAM) has no noise to test a
//! move against: the move is shown, untested, and never fails.

use serde::Serialize;

use crate::analysis::stats::{Interval, bootstrap_difference, quantile_sorted};

/// What a comparison of one figure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not significant (the interval of the change holds zero), or no figure to compare.
    NoChange,
    /// Significant, but not wholly past the noise threshold.
    WithinNoise,
    /// Worse past the noise threshold.
    Regressed,
    /// Better past the noise threshold.
    Improved,
    /// A measured figure with one value per run (idle VRAM of a run): it moved past
    /// its limit, but with no sample there is no noise to test the move against.
    Untested,
}

impl Verdict {
    /// A word for tables (`""` for no change).
    pub fn word(self) -> &'static str {
        match self {
            Verdict::NoChange => "",
            Verdict::WithinNoise => "within noise",
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Untested => "moved (one value per run: untested)",
        }
    }
}

/// How a figure's noise threshold and its limit are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Percent of the base value (latencies, VRAM).
    Relative,
    /// Absolute, for ratios in 0–1 (cold ratio, error rate): the thresholds are points.
    Absolute,
}

/// The statistics settings of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// Significance level α: the interval of a change is at confidence `1 − α`.
    pub significance: f64,
    /// Noise threshold, a fraction (0.02 = ±2 % of the base, or ±2 points for ratios).
    pub noise: f64,
    /// Bootstrap resamples per figure.
    pub resamples: usize,
}

/// One figure in both runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// Value in the base run.
    pub base: Option<f64>,
    /// Value in the new run.
    pub new: Option<f64>,
    /// Bootstrap interval of `new − base`, in the figure's unit; `None` when a run has
    /// no per-request sample of it (the figure is then compared as exact).
    pub interval: Option<Interval>,
    /// How the thresholds are read.
    pub scale: Scale,
    /// What the comparison found.
    pub verdict: Verdict,
    /// True when it regressed and the change is past the figure's limit: it fails
    /// `compare` (exit 1).
    pub regression: bool,
}

/// Changes below these are nothing, whatever the percentage says (e.g. from a zero base).
pub const P99_FLOOR_MS: f64 = 1.0;
/// See [`P99_FLOOR_MS`].
pub const IDLE_FLOOR_GB_S: f64 = 0.1;
/// See [`P99_FLOOR_MS`].
pub const PEAK_FLOOR_GB: f64 = 0.01;

/// A figure's samples in both runs, when it has them, and the statistic over one.
pub struct Samples<'a> {
    /// Base run's values.
    pub base: &'a [f64],
    /// New run's values.
    pub new: &'a [f64],
    /// The statistic (`None`: the mean).
    pub quantile: Option<f64>,
    /// Seed of the bootstrap (fixed per figure: the same folders give the same answer).
    pub seed: u64,
}

/// The statistic of an unsorted sample: its nearest-rank quantile `q`, or its mean.
pub fn statistic(values: &[f64], quantile: Option<f64>) -> f64 {
    match quantile {
        Some(q) => {
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            quantile_sorted(&v, q)
        }
        None if values.is_empty() => f64::NAN,
        None => values.iter().sum::<f64>() / values.len() as f64,
    }
}

/// At most this many values drawn per figure (both runs, all resamples together): a
/// stream of many thousand requests gets fewer resamples, never fewer than
/// [`MIN_RESAMPLES`].
pub const MAX_DRAWS: usize = 50_000_000;
/// See [`MAX_DRAWS`].
pub const MIN_RESAMPLES: usize = 200;

impl Change {
    /// Compares one figure. `limit` is the figure's `--max-*` allowance (percent for
    /// [`Scale::Relative`], absolute for [`Scale::Absolute`]); `floor` an absolute change
    /// below which nothing counts.
    #[allow(clippy::too_many_arguments)]
    pub fn detect(
        base: Option<f64>,
        new: Option<f64>,
        samples: Option<Samples<'_>>,
        scale: Scale,
        limit: f64,
        floor: f64,
        d: &Detection,
    ) -> Change {
        let (Some(b), Some(n)) = (base, new) else {
            return Change {
                base,
                new,
                interval: None,
                scale,
                verdict: Verdict::NoChange,
                regression: false,
            };
        };
        // The noise band in the figure's unit.
        let noise = match scale {
            Scale::Relative => d.noise * b.abs(),
            Scale::Absolute => d.noise,
        }
        .max(floor);
        let exact_band = match scale {
            Scale::Relative => noise.max(limit / 100.0 * b.abs()),
            Scale::Absolute => noise.max(limit),
        };
        let interval = samples.and_then(|s| {
            if s.base.len() < 2 || s.new.len() < 2 {
                return None;
            }
            let per = (s.base.len() + s.new.len()).max(1);
            let resamples = d.resamples.min((MAX_DRAWS / per).max(MIN_RESAMPLES));
            let q = s.quantile;
            bootstrap_difference(
                s.base,
                s.new,
                |v| statistic(v, q),
                resamples,
                s.seed,
                1.0 - d.significance,
            )
        });
        let verdict = match interval {
            Some(i) if i.contains(0.0) => Verdict::NoChange,
            Some(i) if i.lo > noise => Verdict::Regressed,
            Some(i) if i.hi < -noise => Verdict::Improved,
            Some(_) => Verdict::WithinNoise,
            // Exact figures (one value per run, no sample to tell its noise): a change
            // counts past the larger of the noise threshold and the figure's limit.
            None if n - b > exact_band + 1e-12 => Verdict::Regressed,
            None if b - n > exact_band + 1e-12 => Verdict::Improved,
            None if (n - b).abs() > 1e-12 => Verdict::WithinNoise,
            None => Verdict::NoChange,
        };
        let past_limit = match scale {
            Scale::Relative => n - b > floor && (b <= 0.0 || (n - b) / b * 100.0 > limit),
            Scale::Absolute => n - b > limit + 1e-12,
        };
        Change {
            base,
            new,
            interval,
            scale,
            verdict,
            regression: verdict == Verdict::Regressed && past_limit,
        }
    }

    /// A measured figure with one value per run (no sample, so no noise estimate): a
    /// move past the larger of the noise threshold and its limit is shown as
    /// [`Verdict::Untested`], never as a regression.
    pub fn untested(
        base: Option<f64>,
        new: Option<f64>,
        limit_pct: f64,
        floor: f64,
        d: &Detection,
    ) -> Change {
        let mut c = Change::detect(base, new, None, Scale::Relative, limit_pct, floor, d);
        if matches!(c.verdict, Verdict::Regressed | Verdict::Improved) {
            c.verdict = Verdict::Untested;
        }
        c.regression = false;
        c
    }

    /// A gate with no noise: worse by more than `limit` (absolute) fails, whatever the
    /// sample size (the error rate: a failed request is a fact, not noise).
    pub fn gate(base: Option<f64>, new: Option<f64>, limit: f64) -> Change {
        let regression = matches!((base, new), (Some(b), Some(n)) if n - b > limit + 1e-12);
        let verdict = match (base, new) {
            _ if regression => Verdict::Regressed,
            (Some(b), Some(n)) if b - n > limit + 1e-12 => Verdict::Improved,
            (Some(b), Some(n)) if (n - b).abs() > 1e-12 => Verdict::WithinNoise,
            _ => Verdict::NoChange,
        };
        Change {
            base,
            new,
            interval: None,
            scale: Scale::Absolute,
            verdict,
            regression,
        }
    }

    /// True when the change is past the noise (regressed or improved).
    pub fn detected(&self) -> bool {
        matches!(self.verdict, Verdict::Regressed | Verdict::Improved)
    }

    /// The same change with values and interval multiplied by `k` (ratios as percent).
    pub fn scaled(&self, k: f64) -> Change {
        Change {
            base: self.base.map(|v| v * k),
            new: self.new.map(|v| v * k),
            interval: self.interval.map(|i| Interval {
                lo: i.lo * k,
                hi: i.hi * k,
                level: i.level,
            }),
            ..*self
        }
    }

    /// `base → new (+x% [lo%, hi%])` (relative figures) or `base → new ([lo, hi])`
    /// (ratios, in points): the change and its interval, where it has one.
    pub fn describe(&self, digits: usize) -> String {
        match (self.base, self.new) {
            (Some(b), Some(n)) => {
                let mut s = format!("{b:.digits$} → {n:.digits$}");
                let rel = |x: f64| (b.abs() > 0.0).then(|| x / b * 100.0);
                match self.scale {
                    Scale::Relative => {
                        if let Some(p) = rel(n - b) {
                            s.push_str(&format!(" ({p:+.1}%"));
                            if let Some(i) = self.interval
                                && let (Some(lo), Some(hi)) = (rel(i.lo), rel(i.hi))
                            {
                                s.push_str(&format!(" [{lo:+.1}%, {hi:+.1}%]"));
                            }
                            s.push(')');
                        }
                    }
                    Scale::Absolute => {
                        if let Some(i) = self.interval {
                            s.push_str(&format!(" ([{:+.digits$}, {:+.digits$}])", i.lo, i.hi));
                        }
                    }
                }
                s
            }
            (Some(b), None) => format!("{b:.digits$} → –"),
            (None, Some(n)) => format!("– → {n:.digits$}"),
            (None, None) => "–".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Detection = Detection {
        significance: 0.05,
        noise: 0.02,
        resamples: 1_000,
    };

    fn sample(centre: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| centre + (i % 13) as f64 * 3.0).collect()
    }

    fn latency(a: &[f64], b: &[f64]) -> Change {
        Change::detect(
            Some(statistic(a, Some(0.5))),
            Some(statistic(b, Some(0.5))),
            Some(Samples {
                base: a,
                new: b,
                quantile: Some(0.5),
                seed: 1,
            }),
            Scale::Relative,
            10.0,
            P99_FLOOR_MS,
            &D,
        )
    }

    #[test]
    fn the_same_sample_is_no_change_and_a_shift_is_a_regression() {
        let a = sample(100.0, 60);
        let same = latency(&a, &a);
        assert_eq!(same.verdict, Verdict::NoChange, "{same:?}");
        assert!(!same.regression);
        let b: Vec<f64> = a.iter().map(|x| x + 300.0).collect();
        let worse = latency(&a, &b);
        assert_eq!(worse.verdict, Verdict::Regressed, "{worse:?}");
        assert!(worse.regression && worse.describe(0).contains("%]"));
        let better = latency(&b, &a);
        assert_eq!(better.verdict, Verdict::Improved);
        assert!(!better.regression);
    }

    #[test]
    fn a_significant_change_inside_the_noise_threshold_is_within_noise() {
        // +1 ms on ~102 ms: significant (every value moved) but under 2 %.
        let a: Vec<f64> = (0..2_000)
            .map(|i| 100.0 + (f64::from(i) * 0.618_034).fract() * 4.0)
            .collect();
        let b: Vec<f64> = a.iter().map(|x| x + 1.0).collect();
        let c = latency(&a, &b);
        assert_eq!(c.verdict, Verdict::WithinNoise, "{c:?}");
        assert!(!c.regression);
    }

    #[test]
    fn four_requests_cannot_show_a_cold_ratio_doubling() {
        let (a, b) = ([1.0, 1.0, 0.0, 0.0], [1.0; 4]);
        let c = Change::detect(
            Some(0.5),
            Some(1.0),
            Some(Samples {
                base: &a,
                new: &b,
                quantile: None,
                seed: 3,
            }),
            Scale::Absolute,
            0.05,
            0.0,
            &D,
        );
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        assert!(c.interval.unwrap().contains(0.0));
    }

    #[test]
    fn exact_figures_use_the_noise_threshold_and_the_limit() {
        let exact = |b, n| Change::detect(Some(b), Some(n), None, Scale::Relative, 10.0, 0.1, &D);
        assert_eq!(exact(100.0, 101.0).verdict, Verdict::WithinNoise);
        // Without a sample, a change counts past the figure's limit (10 %) only.
        assert_eq!(exact(100.0, 105.0).verdict, Verdict::WithinNoise);
        let c = exact(100.0, 111.0);
        assert!(c.verdict == Verdict::Regressed && c.regression);
        assert_eq!(exact(120.0, 100.0).verdict, Verdict::Improved);
        assert_eq!(exact(0.0, 0.05).verdict, Verdict::WithinNoise);
        assert!(Change::gate(Some(0.0), Some(0.25), 0.01).regression);
        assert!(!Change::gate(Some(0.0), Some(0.25), 0.3).regression);
        // Measured with one value per run: shown, never a regression.
        let u = Change::untested(Some(0.6), Some(0.8), 10.0, 0.1, &D);
        assert!(u.verdict == Verdict::Untested && !u.regression && !u.detected());
    }
}
