//! A choice that survives noise: how sure the pick is and where it would change.
//!
//! - **Resamples.** Each candidate's cold starts are redrawn [`DEFAULT_RESAMPLES`] times
//!   as its answered requests resampled with replacement (a binomial draw of its own
//!   cold ratio; seeded by the workload, so a report is reproducible), its memory
//!   figure held, or, when every candidate ran two repetitions or more (`[run]
//!   repeat`), redrawn as the mean of its repetitions resampled with replacement;
//!   the cost's cold term is per repetition, as its memory is; the rule's figure (cost, or cold ratio without memory) is recomputed
//!   and the winner counted. `confidence` is the share of resamples the chosen
//!   keep_alive wins.
//! - **Indistinguishable.** A candidate whose difference to the rule's best has a
//!   [`DEFAULT_CONFIDENCE`] interval (over the same resamples) that holds zero cannot be
//!   told from it: of those on the frontier, the one that holds the least memory is
//!   chosen, and the reason says so.
//! - **Prices.** The cost form's choice stays the cheapest while the memory prices
//!   (`vram_gb_hour`, `ram_gb_hour`, scaled together) stay in `holds_for`; past either
//!   end another keep_alive is cheaper (the break-even moves with the price of memory).
//!
//! The SLO form is judged on the p99 TTFT: its notes say where a p99 is a sample's
//! maximum rather than an estimate, or where the SLO lies inside a p99's interval.

use serde::Serialize;

use crate::analysis::stats::{
    DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Interval, normal_quantile, quantile_sorted,
};
use crate::folder::CostSettings;
use crate::recommend::{Candidate, Form, display_keep_alive};
use crate::rng::{SeededRng, splitmix64};

/// How sure a recommendation is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Noise {
    /// Confidence level of the intervals, e.g. 0.95.
    pub level: f64,
    /// Resamples drawn (0 for the SLO form, judged on the p99 intervals).
    pub resamples: usize,
    /// Share of resamples in which the chosen keep_alive wins (`null`: not resampled).
    pub confidence: Option<f64>,
    /// The keep_alive the rule's figures rank first, when the less-memory rule chose
    /// another indistinguishable from it.
    pub best: Option<String>,
    /// Candidates that cannot be told from the rule's best within the intervals.
    pub indistinguishable: Vec<Indistinct>,
    /// The memory prices for which the choice holds (the cost form).
    pub holds_for: Option<PriceRange>,
    /// What the choice rests on, in words (small samples, SLO inside an interval).
    pub notes: Vec<String>,
}

/// A candidate indistinguishable from the rule's best.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indistinct {
    /// Its keep_alive as shown.
    pub keep_alive: String,
    /// Its figure minus the best's (cost, or cold ratio), with its interval.
    pub difference: Interval,
}

/// The memory prices over which the cost form's choice stays the cheapest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PriceRange {
    /// Lowest `vram_gb_hour` (with `ram_gb_hour` scaled alike).
    pub vram_gb_hour_from: f64,
    /// Highest `vram_gb_hour` (`null`: no upper end).
    pub vram_gb_hour_to: Option<f64>,
    /// Lowest `ram_gb_hour`.
    pub ram_gb_hour_from: f64,
    /// Highest `ram_gb_hour` (`null`: no upper end).
    pub ram_gb_hour_to: Option<f64>,
}

/// A binomial draw: `n` trials of probability `p` (exact up to 1 000 trials, a normal
/// approximation past them).
fn binomial(n: u64, p: f64, rng: &mut SeededRng) -> u64 {
    if p <= 0.0 || n == 0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if n <= 1000 {
        return (0..n).filter(|_| rng.unit() < p).count() as u64;
    }
    let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    let z = normal_quantile(rng.unit().clamp(1e-12, 1.0 - 1e-12));
    (mean + sd * z).round().clamp(0.0, n as f64) as u64
}

/// The memory cost of one resample of `c`'s repetitions: the mean of as many
/// repetitions drawn with replacement.
fn memory_resample(c: &Candidate, cost: &CostSettings, rng: &mut SeededRng) -> f64 {
    let reps = &c.per_repetition;
    let n = reps.len();
    let mut total = 0.0;
    for _ in 0..n {
        let r = &reps[((rng.unit() * n as f64) as usize).min(n - 1)];
        total += r.idle_gpu_gb_s / 3600.0 * cost.vram_gb_hour
            + r.idle_ram_gb_s / 3600.0 * cost.ram_gb_hour;
    }
    total / n as f64
}

/// A seed of `workload`'s resamples: the same report gives the same figures.
pub(crate) fn seed_of(workload: &str, model: &str) -> u64 {
    let mut h = 0x006b_6162_656e_6368_u64;
    for b in workload.bytes().chain([0]).chain(model.bytes()) {
        h = splitmix64(h ^ u64::from(b));
    }
    h
}

/// The rule's figure of a candidate with `cold` cold starts over all its repetitions
/// (lower is better); `memory`, when given, replaces its memory cost (a resample of
/// its repetitions').
fn figure(c: &Candidate, cold: u64, memory: Option<f64>, form: Form, cold_cost: f64) -> f64 {
    match form {
        Form::Cost => {
            let k = c.cost.unwrap_or(crate::recommend::Cost {
                cold: 0.0,
                vram: 0.0,
                ram: 0.0,
                total: f64::INFINITY,
            });
            cold as f64 / f64::from(c.repetitions.max(1)) * cold_cost
                + memory.unwrap_or(k.vram + k.ram)
        }
        _ => (cold as f64 / c.answered.max(1) as f64 * 100.0).round(),
    }
}

/// The index of the lowest figure, ties to the less memory-hungry candidate.
fn winner(valid: &[Candidate], scores: &[f64]) -> usize {
    (0..valid.len())
        .min_by(|&a, &b| {
            scores[a]
                .total_cmp(&scores[b])
                .then(valid[a].cmp_appetite(&valid[b]))
        })
        .unwrap_or(0)
}

/// Settles the choice among `valid` (every candidate that may be picked, frontier
/// marked), `best` being the rule's own pick: returns the index chosen and how sure
/// it is. `cold_cost` is what one cold start costs (`cold_penalty_s × wait_second`).
/// With `resample` false (a prediction's figures, a model's rather than a sample) the
/// best stands as it is.
pub(crate) fn settle(
    valid: &[Candidate],
    best: usize,
    form: Form,
    resample: bool,
    cold_cost: f64,
    cost: &CostSettings,
    seed: u64,
) -> (usize, Noise) {
    let level = DEFAULT_CONFIDENCE;
    if !resample && form == Form::Cost {
        return (
            best,
            Noise {
                level,
                resamples: 0,
                confidence: None,
                best: None,
                indistinguishable: Vec::new(),
                holds_for: price_range(valid, best, cost),
                notes: Vec::new(),
            },
        );
    }
    if form == Form::Slo || form == Form::NoCandidate || valid.len() < 2 || !resample {
        let notes = if form == Form::Slo {
            slo_notes(valid)
        } else {
            Vec::new()
        };
        return (
            best,
            Noise {
                level,
                resamples: 0,
                confidence: (form != Form::Slo && valid.len() == 1).then_some(1.0),
                best: None,
                indistinguishable: Vec::new(),
                holds_for: (form == Form::Slo).then_some(PriceRange {
                    vram_gb_hour_from: 0.0,
                    vram_gb_hour_to: None,
                    ram_gb_hour_from: 0.0,
                    ram_gb_hour_to: None,
                }),
                notes,
            },
        );
    }
    // With two repetitions or more of every candidate, memory is resampled too.
    let resample_memory = valid.iter().all(|c| c.per_repetition.len() >= 2);
    let mut rng = SeededRng::new(seed);
    let n = DEFAULT_RESAMPLES;
    let mut wins = vec![0usize; valid.len()];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::with_capacity(n); valid.len()];
    let mut scores = vec![0.0; valid.len()];
    for _ in 0..n {
        for (slot, c) in scores.iter_mut().zip(valid) {
            let p = c.cold as f64 / c.answered.max(1) as f64;
            let cold = binomial(c.answered, p, &mut rng);
            let memory =
                (form == Form::Cost && resample_memory).then(|| memory_resample(c, cost, &mut rng));
            *slot = figure(c, cold, memory, form, cold_cost);
        }
        wins[winner(valid, &scores)] += 1;
        for (d, s) in diffs.iter_mut().zip(&scores) {
            d.push(s - scores[best]);
        }
    }
    let mut indistinguishable = Vec::new();
    let mut tied = vec![best];
    for (j, d) in diffs.iter_mut().enumerate() {
        if j == best {
            continue;
        }
        d.sort_by(f64::total_cmp);
        let iv = Interval {
            lo: quantile_sorted(d, (1.0 - level) / 2.0),
            hi: quantile_sorted(d, (1.0 + level) / 2.0),
            level,
        };
        if iv.contains(0.0) {
            indistinguishable.push(Indistinct {
                keep_alive: display_keep_alive(valid[j].keep_alive.as_ref()),
                difference: iv,
            });
            tied.push(j);
        }
    }
    let chosen = tied
        .iter()
        .copied()
        .filter(|&j| valid[j].on_frontier)
        .min_by(|&a, &b| valid[a].cmp_appetite(&valid[b]))
        .unwrap_or(best);
    let holds_for = (form == Form::Cost)
        .then(|| price_range(valid, chosen, cost))
        .flatten();
    // Memory is measured once per cell and repetition: with one repetition it has no
    // interval of its own, and none is invented; only the cold starts are resampled.
    let notes = if form == Form::Cost && resample_memory {
        let reps = valid
            .iter()
            .map(|c| c.per_repetition.len())
            .min()
            .unwrap_or(0);
        vec![format!(
            "idle memory is resampled over each cell's repetitions (at least {reps}) along with its cold starts"
        )]
    } else if form == Form::Cost {
        vec!["idle memory is one measurement per cell, held fixed in the resamples (no interval from one repetition)".to_string()]
    } else {
        Vec::new()
    };
    (
        chosen,
        Noise {
            level,
            resamples: n,
            confidence: Some(wins[chosen] as f64 / n as f64),
            best: (chosen != best).then(|| display_keep_alive(valid[best].keep_alive.as_ref())),
            indistinguishable,
            holds_for,
            notes,
        },
    )
}

/// The factor range `[lo, hi]` on both memory prices over which `chosen` stays the
/// cheapest of `valid` (`None` when it is the cheapest at no price).
fn price_range(valid: &[Candidate], chosen: usize, cost: &CostSettings) -> Option<PriceRange> {
    let terms = |c: &Candidate| c.cost.map(|k| (k.cold, k.vram + k.ram));
    let (a, m) = terms(&valid[chosen])?;
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    for (j, c) in valid.iter().enumerate() {
        let Some((ac, mc)) = terms(c) else { continue };
        if j == chosen {
            continue;
        }
        // a + k·m <= ac + k·mc  ⇔  k·(m − mc) <= ac − a
        let dm = m - mc;
        if dm > 1e-12 {
            hi = hi.min((ac - a) / dm);
        } else if dm < -1e-12 {
            lo = lo.max((ac - a) / dm);
        } else if a > ac + 1e-12 {
            return None;
        }
    }
    (lo <= hi).then(|| {
        let to = |price: f64| hi.is_finite().then_some(hi * price);
        PriceRange {
            vram_gb_hour_from: lo.max(0.0) * cost.vram_gb_hour,
            vram_gb_hour_to: to(cost.vram_gb_hour),
            ram_gb_hour_from: lo.max(0.0) * cost.ram_gb_hour,
            ram_gb_hour_to: to(cost.ram_gb_hour),
        }
    })
}

/// What an SLO verdict rests on: p99s that are a sample's maximum, and SLOs inside a
/// p99's interval.
fn slo_notes(valid: &[Candidate]) -> Vec<String> {
    let mut notes = Vec::new();
    let small: Vec<String> = valid
        .iter()
        .filter(|c| c.p99_ttft_interval.is_none() && c.p99_ttft_count > 0)
        .map(|c| {
            format!(
                "{} (n={})",
                display_keep_alive(c.keep_alive.as_ref()),
                c.p99_ttft_count
            )
        })
        .collect();
    if !small.is_empty() {
        notes.push(format!(
            "the p99 TTFT of {} has too few requests for an interval (a p99 needs {} at {:.0} %): the SLO is judged on the slowest requests, not an estimate",
            small.join(", "),
            crate::analysis::stats::min_sample_for_quantile(0.99, DEFAULT_CONFIDENCE),
            DEFAULT_CONFIDENCE * 100.0
        ));
    }
    notes
}

/// The noise in words, for the reason.
pub fn describe(noise: &Noise, chosen: &str, cost: &CostSettings) -> String {
    let mut parts = Vec::new();
    if let Some(best) = &noise.best {
        let others: Vec<&str> = noise
            .indistinguishable
            .iter()
            .map(|i| i.keep_alive.as_str())
            .collect();
        parts.push(format!(
            "{best} ranks first, but {} cannot be told from it within the {:.0} % intervals: {chosen}, which holds less memory, is recommended",
            others.join(", "),
            noise.level * 100.0
        ));
    } else if !noise.indistinguishable.is_empty() {
        let others: Vec<String> = noise
            .indistinguishable
            .iter()
            .map(|i| {
                format!(
                    "{} (difference {:.3} to {:.3})",
                    i.keep_alive, i.difference.lo, i.difference.hi
                )
            })
            .collect();
        parts.push(format!(
            "indistinguishable from {chosen} within the {:.0} % intervals: {}",
            noise.level * 100.0,
            others.join(", ")
        ));
    }
    if let Some(c) = noise.confidence
        && noise.resamples > 0
    {
        parts.push(format!(
            "{chosen} wins {:.0} % of {} resamples",
            c * 100.0,
            noise.resamples
        ));
    }
    if let Some(r) = &noise.holds_for
        && noise.resamples > 0
    {
        let to = r
            .vram_gb_hour_to
            .map_or("any higher price".into(), |v| format!("{v:.3}"));
        parts.push(format!(
            "{chosen} is the cheapest for vram_gb_hour from {:.3} to {to} (now {}; ram_gb_hour in proportion)",
            r.vram_gb_hour_from, cost.vram_gb_hour
        ));
    }
    parts.extend(noise.notes.iter().cloned());
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_draws_centre_on_the_mean() {
        let mut rng = SeededRng::new(1);
        let mean = |n: u64, p: f64, rng: &mut SeededRng| {
            (0..400).map(|_| binomial(n, p, rng) as f64).sum::<f64>() / 400.0
        };
        assert!((mean(100, 0.3, &mut rng) - 30.0).abs() < 1.5);
        assert!((mean(100_000, 0.3, &mut rng) - 30_000.0).abs() < 100.0);
        assert_eq!(binomial(12, 0.0, &mut rng), 0);
        assert_eq!(binomial(12, 1.0, &mut rng), 12);
    }
}
