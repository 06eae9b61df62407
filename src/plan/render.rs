//! The plan for people: the ranked table, each combination's arithmetic (every model's
//! parts, every admission test with its rule ID), the predicted round-robin, the
//! smallest change, and the settings to paste. `--json` prints the `Plan` itself.

use std::fmt::Write;

use super::change::Settings;
use super::fit::{FitStep, Verdict};
use super::{Combination, Plan, Step};
use crate::units::format_bytes;

/// Bytes that may be negative, for people.
fn signed(b: i64) -> String {
    if b < 0 {
        format!("−{}", format_bytes(b.unsigned_abs()))
    } else {
        format_bytes(b as u64)
    }
}

/// The whole plan as text.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let h = &plan.host;
    if h.gpus == 0 {
        let _ = writeln!(
            out,
            "host: {}: no VRAM test (E2), at most {} models loaded (E5)",
            h.description, h.max_loaded_models
        );
    } else {
        let _ = writeln!(
            out,
            "host: {}: {} usable ({} kept free); a model loads beside others if it takes ≤ {:.0}% of the free VRAM (E1); at most {} loaded (E5)",
            h.description,
            format_bytes(h.usable_bytes),
            format_bytes(h.reserve_bytes),
            h.fit_headroom * 100.0,
            h.max_loaded_models
        );
    }
    let _ = writeln!(out, "sizes: {}", plan.sizes_from);
    let _ = writeln!(out);
    table(&mut out, plan);
    for (i, c) in plan.combinations.iter().enumerate() {
        let _ = writeln!(out);
        combination(&mut out, i + 1, c);
    }
    out
}

fn table(out: &mut String, plan: &Plan) {
    let names: Vec<&str> = plan
        .combinations
        .first()
        .map(|c| c.estimates.iter().map(|e| e.asked.as_str()).collect())
        .unwrap_or_default();
    let _ = write!(
        out,
        "{:<5} {:>8} {:>8} {:<9}",
        "rank", "num_ctx", "parallel", "quant"
    );
    for n in &names {
        let _ = write!(out, " {:>12}", short(n, 12));
    }
    let _ = writeln!(
        out,
        " {:>11} {:>11}  {:<5} evictions",
        "total", "headroom", "fits"
    );
    for (i, c) in plan.combinations.iter().enumerate() {
        let _ = write!(
            out,
            "{:<5} {:>8} {:>8} {:<9}",
            i + 1,
            c.num_ctx,
            c.parallel,
            c.quant.as_deref().unwrap_or("as named")
        );
        for e in &c.estimates {
            let _ = write!(out, " {:>12}", format_bytes(e.total));
        }
        let _ = writeln!(
            out,
            " {:>11} {:>11}  {:<5} {}",
            format_bytes(c.fit.total),
            c.fit.headroom.map_or("n/a".into(), signed),
            if c.fit.fits { "yes" } else { "no" },
            c.evictions
        );
    }
    let _ = writeln!(
        out,
        "(headroom: usable VRAM − the set's total; evictions: over {} round-robin rounds)",
        super::ROUNDS
    );
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n - 1).collect();
        format!("{head}…")
    }
}

fn combination(out: &mut String, rank: usize, c: &Combination) {
    let quant = c
        .quant
        .as_deref()
        .map_or(String::new(), |q| format!(", {q}"));
    let verdict = if c.fit.fits {
        match c.fit.headroom {
            Some(h) => format!(
                "all {} stay resident, {} left",
                c.estimates.len(),
                signed(h)
            ),
            None => format!("all {} stay resident", c.estimates.len()),
        }
    } else {
        format!(
            "they do not stay resident together: {} eviction(s) in {} rounds",
            c.evictions,
            super::ROUNDS
        )
    };
    let _ = writeln!(
        out,
        "#{rank} num_ctx {}, parallel {}{quant}: {verdict}",
        c.num_ctx, c.parallel
    );
    for e in &c.estimates {
        let _ = writeln!(
            out,
            "  {} ({}, {}): {} weights + {} KV ({} B/token × {} × {}) + {} overhead = {} ({})",
            e.asked,
            e.model,
            e.quantization,
            format_bytes(e.weights),
            format_bytes(e.kv),
            e.kv_per_token,
            e.num_ctx,
            e.parallel,
            format_bytes(e.overhead),
            format_bytes(e.total),
            e.figure.as_str()
        );
    }
    for s in &c.fit.steps {
        let _ = writeln!(out, "  load {}: {}", s.model, test(s));
    }
    if !c.fit.fits {
        let _ = writeln!(out, "  round-robin (predicted):");
        for round in 1..=super::ROUNDS {
            let steps: Vec<&Step> = c.timeline.iter().filter(|s| s.round == round).collect();
            let _ = writeln!(out, "    round {round}: {}", timeline(&steps));
        }
        match c.changes.first() {
            Some(best) => {
                let _ = writeln!(
                    out,
                    "  smallest change that fits: {} ({}){}",
                    best.what,
                    best.headroom
                        .map_or("no VRAM test".into(), |h| format!("{} left", signed(h))),
                    if c.changes.len() > 1 {
                        format!(
                            "; also: {}",
                            c.changes[1..]
                                .iter()
                                .map(|x| x.what.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        String::new()
                    }
                );
                settings(out, &best.settings);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  no single change of the model cap, num_ctx, parallel or quantization makes them fit: plan fewer models"
                );
            }
        }
    } else {
        settings(out, &Settings::of(c));
    }
}

/// One admission test in words, with its rule.
pub fn test(s: &FitStep) -> String {
    let share = if s.free > 0 {
        format!("{:.0}%", s.limit as f64 / s.free as f64 * 100.0)
    } else {
        "80%".into()
    };
    match s.verdict {
        Verdict::Alone => format!("{}, nothing resident: loads (E2)", format_bytes(s.size)),
        Verdict::Spills => format!(
            "{} > {} usable: loads alone, spilling to the CPU (E2)",
            format_bytes(s.size),
            format_bytes(s.free)
        ),
        Verdict::LoadsNoGpu => format!(
            "{}, {} loaded < the cap: loads beside (E5; no VRAM test without a GPU, E2)",
            format_bytes(s.size),
            s.resident_before
        ),
        Verdict::Loads => format!(
            "{} ≤ {share} × {} free = {}: loads beside (E1)",
            format_bytes(s.size),
            format_bytes(s.free),
            format_bytes(s.limit)
        ),
        Verdict::CountCap => format!(
            "{} loaded = the cap: evicts one first (E5, E3)",
            s.resident_before
        ),
        Verdict::TooBig => format!(
            "{} > {share} × {} free = {}: evicts one first (E1, E3)",
            format_bytes(s.size),
            format_bytes(s.free),
            format_bytes(s.limit)
        ),
    }
}

/// A round of the timeline in words.
pub fn timeline(steps: &[&Step]) -> String {
    steps
        .iter()
        .map(|s| {
            let mut t = format!("{} {}", s.model, if s.cold { "cold" } else { "warm" });
            if let Some(load) = s.load_s {
                let _ = write!(t, " {load:.2} s");
            }
            if let Some(at) = s.at_s {
                let _ = write!(t, " at {at:.1} s");
            }
            if !s.evicted.is_empty() {
                let _ = write!(t, " (evicts {})", s.evicted.join(", "));
            }
            t
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn settings(out: &mut String, s: &Settings) {
    let env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "  server: {} ollama serve", env.join(" "));
    let _ = writeln!(
        out,
        "  each request: {{\"model\": \"{}\", \"options\": {{\"num_ctx\": {}}}}}",
        s.models.join("\" | \""),
        s.num_ctx
    );
}
