//! The choice of one group (a workload and model over its swept keep_alive values):
//! each candidate's figures and cost, the cold penalty, and the pick by SLO, by cost,
//! or, without memory measured, by cold ratio.

use crate::analysis::stats::{DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap};
use crate::analysis::{CellSummary, StreamSummary};
use crate::folder::{CostSettings, SloSettings};
use crate::recommend::frontier::mark_frontier;
use crate::recommend::noise::{describe, seed_of, settle};
use crate::recommend::prose::{reason, snippets};
use crate::recommend::{
    Candidate, Cost, Form, GB, GroupKey, MAX_ERROR_SHARE, Recommendation, RepetitionFigures,
    display_keep_alive, excluded,
};
use crate::units::cmp_keep_alive;

fn candidate(cell: &CellSummary, s: &StreamSummary) -> Candidate {
    let vram = cell.vram.as_ref();
    let honoured = vram.and_then(|v| {
        let mine: Vec<bool> = v
            .release
            .iter()
            .filter(|r| r.model == s.model)
            .map(|r| r.honoured)
            .collect();
        (!mine.is_empty()).then(|| mine.iter().all(|h| *h))
    });
    Candidate {
        cell: cell.id.clone(),
        keep_alive: s.keep_alive.clone(),
        rate_per_s: s.rate_per_s,
        requests: s.requests,
        cold: s.cold,
        answered: s.answered.max(s.requests.saturating_sub(s.errors)),
        cold_ratio: s.cold_ratio,
        cold_ratio_interval: s.intervals.and_then(|i| i.cold_ratio),
        errors: s.errors,
        p99_ttft_ms: s.ttft_ms.all.map(|p| p.p99),
        p99_ttft_interval: s.intervals.and_then(|i| i.ttft_ms.p99),
        p99_ttft_count: s.intervals.map_or(0, |i| i.ttft_ms.count),
        cold_load_ms: s.load_ms.map(|p| p.p50),
        idle_gb_s: vram.map(|v| v.idle_gb_seconds),
        idle_gpu_gb_s: vram.map(|v| v.idle_split().0),
        idle_ram_gb_s: vram.map(|v| v.idle_split().1),
        memory: vram.map(|v| v.counted.clone()),
        peak_bytes: vram.map(|v| v.peak_bytes),
        peak_ram_bytes: vram.map(|v| v.peak_split().1),
        cost: None,
        repetitions: cell
            .repetitions
            .as_ref()
            .map_or(1, |r| r.runs.len().max(1) as u32),
        idle_gb_s_interval: cell.repetitions.as_ref().and_then(|r| r.idle_gb_seconds),
        cost_interval: None,
        per_repetition: per_repetition(cell, s),
        on_frontier: false,
        meets_slo: None,
        honoured,
        ran_late: cell.ran_late.clone(),
    }
}

/// Each repetition's cold starts (of stream `s`) and idle memory; empty unless every
/// repetition of a repeated cell measured its memory.
fn per_repetition(cell: &CellSummary, s: &StreamSummary) -> Vec<RepetitionFigures> {
    let Some(reps) = &cell.repetitions else {
        return Vec::new();
    };
    reps.runs
        .iter()
        .map(|r| {
            Some(RepetitionFigures {
                cold: r.streams.iter().find(|x| x.name == s.name)?.cold,
                idle_gpu_gb_s: r.idle_gpu_gb_seconds?,
                idle_ram_gb_s: r.idle_ram_gb_seconds?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// The cost of one repetition's figures.
pub(crate) fn repetition_cost(r: &RepetitionFigures, cold_cost: f64, cost: &CostSettings) -> f64 {
    r.cold as f64 * cold_cost
        + r.idle_gpu_gb_s / 3600.0 * cost.vram_gb_hour
        + r.idle_ram_gb_s / 3600.0 * cost.ram_gb_hour
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The wait one cold start costs, seconds: the scenario's, else measured.
fn cold_penalty(
    members: &[(&CellSummary, &StreamSummary)],
    cost: &CostSettings,
) -> (Option<f64>, String) {
    if let Some(d) = cost.cold_penalty {
        return (Some(d.as_secs_f64()), "scenario".into());
    }
    let measured = median(
        members
            .iter()
            .filter_map(|(_, s)| s.cold_penalty_ms)
            .collect(),
    );
    if let Some(ms) = measured {
        return (
            Some(ms / 1000.0),
            "measured (median cold TTFT − median warm TTFT)".into(),
        );
    }
    let load = median(
        members
            .iter()
            .filter_map(|(_, s)| s.load_ms.map(|p| p.p50))
            .collect(),
    );
    match load {
        Some(ms) => (
            Some(ms / 1000.0),
            "measured (median cold load_duration)".into(),
        ),
        None => (None, "no cold start measured".into()),
    }
}

fn min_by<F: Fn(&Candidate) -> f64>(cands: &[Candidate], f: F) -> Option<&Candidate> {
    // Ties go to the less memory-hungry candidate.
    cands
        .iter()
        .min_by(|a, b| f(a).total_cmp(&f(b)).then(a.cmp_appetite(b)))
}

pub(crate) fn recommend_group(
    (workload, model, fixed): GroupKey,
    members: &[(&CellSummary, &StreamSummary)],
    cost: &CostSettings,
    slo: &SloSettings,
) -> Recommendation {
    let mut cands: Vec<Candidate> = members.iter().map(|(c, s)| candidate(c, s)).collect();
    // The one keep_alive ordering of the table, the headline and the charts.
    cands.sort_by(|a, b| cmp_keep_alive(a.keep_alive.as_ref(), b.keep_alive.as_ref()));
    let has_vram = !cands.is_empty() && cands.iter().all(|c| c.idle_gb_s.is_some());
    let (penalty_s, penalty_source) = cold_penalty(members, cost);
    let peak = cands
        .iter()
        .filter_map(|c| c.peak_bytes.map(|b| (b, c.peak_ram_bytes.unwrap_or(0))))
        .max();
    let model_gb = peak.map(|(b, _)| b as f64 / GB);
    let model_ram_gb = peak.map(|(_, r)| r as f64 / GB);
    if has_vram {
        for c in &mut cands {
            // Per repetition: memory is the mean of the repetitions', so are cold starts.
            let cold_cost = penalty_s.unwrap_or(0.0) * cost.wait_second;
            let cold = c.cold as f64 / f64::from(c.repetitions.max(1)) * cold_cost;
            let vram = c.idle_gpu_gb_s.unwrap_or(0.0) / 3600.0 * cost.vram_gb_hour;
            let ram = c.idle_ram_gb_s.unwrap_or(0.0) / 3600.0 * cost.ram_gb_hour;
            c.cost = Some(Cost {
                cold,
                vram,
                ram,
                total: cold + vram + ram,
            });
            if c.per_repetition.len() >= 2 {
                let costs: Vec<f64> = c
                    .per_repetition
                    .iter()
                    .map(|r| repetition_cost(r, cold_cost, cost))
                    .collect();
                c.cost_interval = bootstrap(
                    &costs,
                    |x| x.iter().sum::<f64>() / x.len() as f64,
                    DEFAULT_RESAMPLES,
                    seed_of(&c.cell, "cost"),
                    DEFAULT_CONFIDENCE,
                );
            }
        }
    }
    let slo_ms = slo.ttft_p99.map(|d| d.as_secs_f64() * 1000.0);
    if let Some(limit) = slo_ms {
        for c in &mut cands {
            c.meets_slo = c.p99_ttft_ms.map(|p| p <= limit);
        }
    }
    // The frontier is drawn on the axis of the rule that decides: p99 TTFT when a
    // swept keep_alive meets the SLO, the cold ratio otherwise.
    let slo_met = cands
        .iter()
        .any(|c| excluded(c).is_none() && c.meets_slo == Some(true));
    let use_p99 = slo_ms.is_some() && slo_met;
    mark_frontier(&mut cands, use_p99);

    // No pick over cells whose memory is missing: ranked without it, a cell that held a
    // model for hours would look as cheap as one that unloaded at once.
    let lost: Vec<String> = members
        .iter()
        .filter_map(|(c, _)| {
            c.memory_missing
                .as_ref()
                .map(|why| format!("{}: {why}", c.id))
        })
        .collect();
    if !lost.is_empty() {
        let reason = format!(
            "the memory of {} of the {} swept cells was not measured ({}); no keep_alive is recommended over cells whose memory is missing: rerun them, or merge shards that sampled them",
            lost.len(),
            cands.len(),
            lost.join("; ")
        );
        return no_candidate(
            (workload, model, fixed),
            cands,
            reason,
            has_vram,
            (penalty_s, penalty_source),
            (model_gb, model_ram_gb),
            slo_ms.is_some(),
        );
    }

    // Only cells whose requests mostly succeeded can be picked.
    let left_out: Vec<String> = cands.iter().filter_map(excluded).collect();
    let valid: Vec<Candidate> = cands
        .iter()
        .filter(|c| excluded(c).is_none())
        .cloned()
        .collect();
    if valid.is_empty() {
        let reason = format!(
            "no swept keep_alive had at most {:.0}% of its requests failed, one answered and every shard in time ({})",
            MAX_ERROR_SHARE * 100.0,
            left_out.join("; ")
        );
        return no_candidate(
            (workload, model, fixed),
            cands,
            reason,
            has_vram,
            (penalty_s, penalty_source),
            (model_gb, model_ram_gb),
            slo_ms.is_some(),
        );
    }
    let cost_pick = has_vram
        .then(|| min_by(&valid, |c| c.cost.map_or(f64::INFINITY, |k| k.total)))
        .flatten()
        .cloned();
    let slo_pick = slo_ms.and_then(|_| {
        valid
            .iter()
            .filter(|c| c.meets_slo == Some(true))
            .min_by(|a, b| a.cmp_appetite(b))
            .cloned()
    });
    let form = match (&slo_pick, &cost_pick) {
        (Some(_), _) => Form::Slo,
        (None, Some(_)) => Form::Cost,
        (None, None) => Form::ColdOnly,
    };
    // The pick is always a point of the frontier drawn: the rule's best among the
    // frontier's candidates (a weighted sum's minimum is on it; ties are not).
    let on: Vec<Candidate> = valid.iter().filter(|c| c.on_frontier).cloned().collect();
    let pool = if on.is_empty() { &valid } else { &on };
    let best = match form {
        Form::Slo => pool
            .iter()
            .filter(|c| c.meets_slo == Some(true))
            .min_by(|a, b| a.cmp_appetite(b)),
        Form::Cost => min_by(pool, |c| c.cost.map_or(f64::INFINITY, |k| k.total)),
        _ => min_by(pool, |c| (c.cold_ratio * 100.0).round()),
    }
    .or_else(|| pool.first())
    .cloned()
    .unwrap_or_else(|| valid[0].clone());
    let best_at = valid.iter().position(|c| c.cell == best.cell).unwrap_or(0);
    let cold_cost = penalty_s.unwrap_or(0.0) * cost.wait_second;
    // A prediction's figures are a model's, not a sample: nothing to resample.
    let predicted = members.iter().any(|(c, _)| c.predicted);
    let (chosen_at, noise) = settle(
        &valid,
        best_at,
        form,
        !predicted,
        cold_cost,
        cost,
        seed_of(&workload, &model),
    );
    let pick = valid[chosen_at].clone();
    let hold_rate = match (model_gb, model_ram_gb) {
        (Some(gb), Some(ram)) => {
            Some(((gb - ram).max(0.0) * cost.vram_gb_hour + ram * cost.ram_gb_hour) / 3600.0)
        }
        _ => None,
    };
    let break_even_s = match (penalty_s, hold_rate) {
        (Some(p), Some(rate)) if rate > 0.0 => Some(p * cost.wait_second / rate),
        _ => None,
    };
    let mut reason = reason(form, &best, &cands, slo_ms, has_vram, penalty_s, cost);
    let settled = describe(&noise, &display_keep_alive(pick.keep_alive.as_ref()), cost);
    if !settled.is_empty() {
        reason.push_str("; ");
        reason.push_str(&settled);
    }
    if pick.cell != best.cell && pick.honoured == Some(false) {
        reason.push_str(&format!(
            "; warning: the server did not release memory as {} says",
            display_keep_alive(pick.keep_alive.as_ref())
        ));
    }
    if !left_out.is_empty() {
        reason.push_str(&format!(
            "; not candidates (more than {:.0}% of requests failed, none answered, or a shard started the cell late): {}",
            MAX_ERROR_SHARE * 100.0,
            left_out.join(", ")
        ));
    }
    let snippets = snippets(&model, pick.keep_alive.as_ref());
    Recommendation {
        workload,
        model,
        fixed,
        frontier_metric: if use_p99 { "p99_ttft_ms" } else { "cold_ratio" }.into(),
        has_vram,
        cold_penalty_s: penalty_s,
        cold_penalty_source: penalty_source,
        model_gb,
        model_ram_gb,
        cost_choice: cost_pick.map(|c| c.keep_alive),
        slo_choice: slo_pick.map(|c| c.keep_alive),
        chosen: pick.keep_alive.clone(),
        form,
        reason,
        break_even_s,
        snippets,
        advice: Vec::new(),
        noise: Some(noise),
        candidates: cands,
    }
}

/// The recommendation of a group none of whose cells can be picked, and why.
fn no_candidate(
    (workload, model, fixed): GroupKey,
    candidates: Vec<Candidate>,
    reason: String,
    has_vram: bool,
    (cold_penalty_s, cold_penalty_source): (Option<f64>, String),
    (model_gb, model_ram_gb): (Option<f64>, Option<f64>),
    use_p99: bool,
) -> Recommendation {
    let snippets = snippets(&model, None);
    Recommendation {
        workload,
        model,
        fixed,
        candidates,
        frontier_metric: if use_p99 { "p99_ttft_ms" } else { "cold_ratio" }.into(),
        has_vram,
        cold_penalty_s,
        cold_penalty_source,
        model_gb,
        model_ram_gb,
        cost_choice: None,
        slo_choice: None,
        chosen: None,
        form: Form::NoCandidate,
        reason,
        break_even_s: None,
        snippets,
        advice: Vec::new(),
        noise: None,
    }
}
