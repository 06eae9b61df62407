//! Whether a set of models stays resident together: each loaded in turn, tested with
//! the scheduler's own admission rule (`SchedConfig::admits`: E1's 80% of free VRAM,
//! E2 alone always loads, E5's model cap), with the arithmetic kept for display.

use serde::Serialize;

use super::estimate::Estimate;
use crate::engine::sched::SchedConfig;

/// Why a model loads beside the others, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing resident: it always loads (E2).
    Alone,
    /// Nothing resident and larger than the usable VRAM: it loads, spilling to the CPU
    /// what does not fit (E2, `size_vram < size`).
    Spills,
    /// Its prediction ≤ headroom × free VRAM (E1), under the model cap (E5).
    Loads,
    /// A CPU-only host: no memory test, under the model cap (E2, E5).
    LoadsNoGpu,
    /// The model cap is reached (E5): one is evicted first.
    CountCap,
    /// Its prediction > headroom × free VRAM (E1): one is evicted first.
    TooBig,
}

impl Verdict {
    /// Whether the model joins without an eviction.
    pub fn joins(self) -> bool {
        !matches!(self, Verdict::CountCap | Verdict::TooBig)
    }
}

/// One model's admission test, as the scheduler would run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitStep {
    /// Model (resolved name).
    pub model: String,
    /// Its predicted resident size.
    pub size: u64,
    /// Models resident before it.
    pub resident_before: usize,
    /// VRAM they hold.
    pub held: u64,
    /// Usable VRAM − held (0 on a CPU-only host).
    pub free: u64,
    /// headroom × free: the most it may take (E1).
    pub limit: u64,
    /// The outcome.
    pub verdict: Verdict,
}

/// The set's fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// Every model's test, in load order; a model that does not join is not counted as
    /// held for the ones after it.
    pub steps: Vec<FitStep>,
    /// Whether every model joins, wholly in VRAM: all stay resident together.
    pub fits: bool,
    /// Sum of the resident sizes.
    pub total: u64,
    /// Usable VRAM − total when all fit (bytes left), negative when they do not; on a
    /// CPU-only host, `None` (no VRAM to count against).
    pub headroom: Option<i64>,
}

/// Loads `estimates` in order under `config` and says whether all stay resident.
pub fn fit(config: &SchedConfig, estimates: &[Estimate]) -> Fit {
    let sizes: Vec<(String, u64)> = estimates
        .iter()
        .map(|e| (e.model.clone(), e.total))
        .collect();
    fit_sizes(config, &sizes)
}

/// `fit` on (model, resident size) pairs, in load order.
pub fn fit_sizes(config: &SchedConfig, sizes: &[(String, u64)]) -> Fit {
    let mut steps = Vec::new();
    let mut held = 0u64;
    let mut count = 0usize;
    let usable = config.usable_vram();
    for (model, size) in sizes {
        let free = if config.cpu_only() {
            0
        } else {
            usable.saturating_sub(held)
        };
        let limit = (config.fit_headroom * free as f64) as u64;
        let verdict = if config.admits(*size, count, held) {
            if count == 0 && !config.cpu_only() && *size > usable {
                Verdict::Spills
            } else if count == 0 {
                Verdict::Alone
            } else if config.cpu_only() {
                Verdict::LoadsNoGpu
            } else {
                Verdict::Loads
            }
        } else if count >= config.max_models() {
            Verdict::CountCap
        } else {
            Verdict::TooBig
        };
        steps.push(FitStep {
            model: model.clone(),
            size: *size,
            resident_before: count,
            held,
            free,
            limit,
            verdict,
        });
        if verdict.joins() {
            count += 1;
            if !config.cpu_only() {
                held = held.saturating_add((*size).min(usable));
            }
        }
    }
    // Saturating: the inputs are bounded (`bounds`), and a sum past u64 still reads
    // as "more than any VRAM", never as a small number.
    let total: u64 = sizes
        .iter()
        .fold(0u64, |sum, (_, s)| sum.saturating_add(*s));
    let fits = steps
        .iter()
        .all(|s| s.verdict.joins() && s.verdict != Verdict::Spills);
    let headroom = (!config.cpu_only()).then(|| {
        let h = i128::from(usable) - i128::from(total);
        i64::try_from(h).unwrap_or(if h < 0 { i64::MIN } else { i64::MAX })
    });
    Fit {
        steps,
        fits,
        total,
        headroom,
    }
}
