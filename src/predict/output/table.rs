//! The prediction as the terminal shows it: one row per policy, and the verdict under it.

use std::fmt::Write as _;

use super::*;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.0} ms"))
}

/// The table: one row per policy, all models together; `errors` are requests refused
/// (queue full, 503) or failed, and `cold%` is of the answered ones (requests less
/// errors); `reloads` are the loads cold requests waited on, each once however many
/// requests shared it (what the cost prices); `×optimum` is cost ÷ the keep_alive optimum's (the pre-load bound, its own
/// row, reads below 1).
pub fn table(p: &Prediction) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>9}{}",
        "policy",
        "requests",
        "errors",
        "cold",
        "cold%",
        "reloads",
        "ttft p50",
        "ttft p99",
        "GB·h held",
        "GB·h idle",
        "evictions",
        "cost",
        "×optimum",
        if p.has_split() {
            format!(" {:>10} {:>10}", "cost train", "cost test")
        } else {
            String::new()
        }
    );
    for (i, o) in p.outcomes.iter().enumerate() {
        let requests: u64 = o.models.iter().map(|m| m.requests).sum();
        let errors: u64 = o.models.iter().map(|m| m.errors).sum();
        let answered = requests.saturating_sub(errors);
        let cold: u64 = o.models.iter().map(|m| m.cold).sum();
        let reloads: u64 = o.models.iter().map(|m| m.cold_loads).sum();
        let evictions: u64 = o.models.iter().map(|m| m.evictions).sum();
        let held: f64 = o
            .models
            .iter()
            .map(|m| m.held_gpu_gb_s + m.held_ram_gb_s)
            .sum();
        let idle: f64 = o
            .models
            .iter()
            .map(|m| m.idle_gpu_gb_s + m.idle_ram_gb_s)
            .sum();
        let ttft = o.ttft.percentiles();
        let x = p
            .times_optimum(i)
            .map_or_else(|| "-".into(), |x| format!("{x:.2}×"));
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>10.2} {:>10.2} {:>9} {:>10.1} {:>9}{}",
            o.policy.name(),
            requests,
            errors,
            cold,
            if answered > 0 {
                format!("{:.1}%", cold as f64 * 100.0 / answered as f64)
            } else {
                "-".to_string()
            },
            reloads,
            ms(ttft.map(|q| q.p50)),
            ms(ttft.map(|q| q.p99)),
            held / 3600.0,
            idle / 3600.0,
            evictions,
            p.costs[i].total,
            x,
            if p.has_split() {
                format!(
                    " {:>10.1} {:>10.1}",
                    p.train_costs[i].total, p.test_costs[i].total
                )
            } else {
                String::new()
            }
        );
    }
    out
}

/// A warning first when requests failed: how many, under which policies, and that
/// the cold share is of the answered ones only.
fn errors_warning(p: &Prediction) -> Vec<String> {
    let mut out = Vec::new();
    let failed: Vec<(String, u64, u64, u64)> = p
        .outcomes
        .iter()
        .map(|o| {
            let sum = |f: fn(&crate::predict::replay::ModelOutcome) -> u64| {
                o.models.iter().map(f).sum::<u64>()
            };
            (
                o.policy.name(),
                sum(|m| m.errors),
                sum(|m| m.requests),
                sum(|m| m.backlog_refused),
            )
        })
        .filter(|f| f.1 > 0)
        .collect();
    let Some(worst) = failed.iter().max_by_key(|f| f.1) else {
        return out;
    };
    out.push(format!(
        "warning: requests failed under {} of {} policies (the most: {}, {} of {} requests, {:.1}%): refused with 503 (queue full) or failed to load; the host cannot carry this traffic as replayed, and cold% is of the answered requests only",
        failed.len(),
        p.outcomes.len(),
        worst.0,
        worst.1,
        worst.2,
        worst.1 as f64 * 100.0 / worst.2.max(1) as f64
    ));
    if let Some(b) = failed.iter().find(|f| f.3 > 0) {
        out.push(format!(
            "warning: {}: {} requests refused because {} were already waiting (the replay's bound on requests in flight per policy)",
            b.0,
            b.3,
            crate::predict::replay::MAX_IN_FLIGHT
        ));
    }
    out
}

/// What pre-warm (outcome `i`) gained: the models it pre-warmed (periodic clients),
/// and the share of the gap from the best fixed keep_alive down to the keep_alive
/// optimum it closed (over 100%: below the optimum, which cannot pre-load).
fn prewarm_gain(p: &Prediction, i: usize) -> String {
    let o = &p.outcomes[i];
    let warmed: Vec<String> = o
        .models
        .iter()
        .zip(&p.models)
        .filter(|(m, _)| m.prewarm_loads > 0)
        .map(|(m, f)| format!("{} ({} loads)", f.model, m.prewarm_loads))
        .collect();
    if warmed.is_empty() {
        return "; no model's gaps were periodic enough to pre-warm, so it kept them as adaptive does".into();
    }
    let mut out = format!("; pre-warmed (periodic): {}", warmed.join(", "));
    if let (Some(b), Some(opt)) = (p.best_fixed(), p.optimum) {
        let gap = p.costs[b].total - p.costs[opt].total;
        if gap > 1e-9 {
            let closed = (p.costs[b].total - p.costs[i].total) / gap;
            out.push_str(&format!(
                "; it closes {:.0}% of the gap from the best fixed keep_alive ({}) to the keep_alive optimum",
                closed * 100.0,
                p.outcomes[b].policy.name()
            ));
        }
    }
    out
}

/// The out-of-sample line when too little traffic came after the split: no result.
pub fn thin_split(p: &Prediction) -> Option<String> {
    if !p.too_little_after_split() || p.overload.is_some() {
        return None;
    }
    let pct = p.train * 100.0;
    let fitted = p.recommended().map_or_else(String::new, |r| {
        format!(
            ", the best fixed value is {} (cost there {:.1})",
            p.outcomes[r].policy.name(),
            p.train_costs[r].total
        )
    });
    Some(format!(
        "out of sample: fitted on the first {pct:.0}% of the time span{fitted}; too little traffic after the split: {} request(s) in the remaining {:.0}% (at least {} are needed to score it), so there is no out-of-sample result: give a longer input, or --train with a smaller share",
        p.test_requests(),
        100.0 - pct,
        crate::predict::MIN_TEST_REQUESTS
    ))
}

/// Lines to print under the table: T* per model, the best fixed value against the
/// keep_alive optimum, the optimum's rule, the pre-load bound, the other policies' rules,
/// notes.
pub fn verdict(p: &Prediction) -> Vec<String> {
    let mut out: Vec<String> = p.overload.iter().map(|o| o.line()).collect();
    out.extend(errors_warning(p));
    for f in &p.models {
        out.push(format!(
            "{}: {} resident ({}), reload {:.2} s, break-even keep_alive T* = {}",
            f.model,
            crate::units::format_bytes(f.resident_bytes),
            if f.gpu_bytes > 0 && f.ram_bytes > 0 {
                "GPU + system RAM"
            } else if f.gpu_bytes > 0 {
                "GPU"
            } else {
                "system RAM"
            },
            f.penalty_s,
            f.break_even_s
                .map_or("forever (holding costs nothing)".into(), |s| {
                    crate::recommend::format_seconds(s)
                })
        ));
    }
    if let Some(b) = p.best_fixed().filter(|_| p.overload.is_none()) {
        let name = p.outcomes[b].policy.name();
        let x = p
            .times_optimum(b)
            .map_or_else(String::new, |x| format!(", {x:.2}× the keep_alive optimum"));
        out.push(format!(
            "best fixed keep_alive: {name} (cost {:.1}{x}): OLLAMA_KEEP_ALIVE={name} on the server, or \"keep_alive\": {} in each native request",
            p.costs[b].total,
            match &p.outcomes[b].policy {
                Policy::Fixed(k) => k.to_json().to_string(),
                _ => String::new(),
            }
        ));
    }
    if let Some(o) = p.optimum {
        let best = p
            .best_fixed()
            .map(|b| p.outcomes[b].policy.name())
            .filter(|_| p.optimum_hold.len() == p.models.len());
        out.push(format!(
            "{} (cost {:.1}): {}",
            p.outcomes[o].policy.name(),
            p.costs[o].total,
            crate::predict::optimum::rule(&p.models, &p.optimum_hold, best.as_deref())
        ));
        if !p.optimum_fallback.is_empty() {
            out.push(format!(
                "{}: under the scheduler's contention the optimum's replay left {} worse off than the best fixed keep_alive; their figures are the best fixed value's",
                p.outcomes[o].policy.name(),
                p.optimum_fallback
                    .iter()
                    .map(|&m| p.models[m].model.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(i) = p.preload_bound {
        out.push(format!(
            "{} (cost {:.1}{}): {PRELOAD_BOUND}",
            p.outcomes[i].policy.name(),
            p.costs[i].total,
            p.times_optimum(i)
                .map_or_else(String::new, |x| format!(", {x:.2}× the keep_alive optimum")),
        ));
    }
    if p.has_split()
        && let Some(line) = thin_split(p)
    {
        out.push(line);
    } else if p.has_split()
        && let (Some(r), Some(b)) = (p.recommended(), p.best_fixed_test())
    {
        let pct = p.train * 100.0;
        let (rc, bc) = (p.test_costs[r].total, p.test_costs[b].total);
        out.push(format!(
            "out of sample: fitted on the first {pct:.0}% of the time span, the best fixed value is {} (cost there {:.1}); on the remaining {:.0}% it costs {rc:.1}, against {bc:.1} for the best fixed value there in hindsight ({}){}",
            p.outcomes[r].policy.name(),
            p.train_costs[r].total,
            100.0 - pct,
            p.outcomes[b].policy.name(),
            if bc > 0.0 {
                format!(": {:.2}×", rc / bc)
            } else {
                String::new()
            }
        ));
    }
    for (i, o) in p.outcomes.iter().enumerate() {
        if let Some(rule) = crate::predict::policies::rule(&o.policy.name()) {
            let wasted: u64 = o.models.iter().map(|m| m.wasted_loads).sum();
            let loads: u64 = o.models.iter().map(|m| m.prewarm_loads).sum();
            out.push(format!(
                "{} (cost {:.1}{}{}): {rule}",
                o.policy.name(),
                p.costs[i].total,
                p.times_optimum(i)
                    .map_or_else(String::new, |x| format!(", {x:.2}× the keep_alive optimum")),
                if o.policy == Policy::PreWarm {
                    format!(
                        ", {loads} pre-warm loads of which {wasted} wasted, their idle memory priced{}",
                        prewarm_gain(p, i)
                    )
                } else {
                    String::new()
                }
            ));
        }
    }
    if let Some(c) = &p.unload_check {
        out.push(c.line());
    }
    out.extend(p.scan.notes.iter().cloned());
    out
}
