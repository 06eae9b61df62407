//! The smallest change that makes a set fit: one setting at a time (the model cap,
//! a smaller num_ctx, fewer parallel slots, a lower quantization), each candidate
//! re-planned with the same estimate and fit rules, ranked by how much of the asked
//! setting it keeps. Each comes with the settings to paste.

use serde::Serialize;

use super::{Combination, Planner};

/// Which setting a change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// `OLLAMA_MAX_LOADED_MODELS` (E5).
    MaxLoadedModels,
    /// `options.num_ctx` / `OLLAMA_CONTEXT_LENGTH`.
    NumCtx,
    /// `OLLAMA_NUM_PARALLEL` (L8).
    Parallel,
    /// The models' quantization.
    Quant,
}

/// A change that makes the set fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The setting.
    pub axis: Axis,
    /// In words: `num_ctx 16384`, `OLLAMA_MAX_LOADED_MODELS=4`.
    pub what: String,
    /// Share of the asked setting kept (1.0 for the cap: nothing given up).
    pub kept: f64,
    /// VRAM left with all resident (None on a CPU-only host).
    pub headroom: Option<i64>,
    /// What to set.
    pub settings: Settings,
}

/// What to paste: the server's environment and each request's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Environment of `ollama serve`, in order.
    pub env: Vec<(String, String)>,
    /// The model tags to request.
    pub models: Vec<String>,
    /// `options.num_ctx` of every request.
    pub num_ctx: u32,
}

impl Settings {
    /// The settings of a combination.
    pub fn of(c: &Combination) -> Settings {
        Settings {
            env: vec![
                (
                    "OLLAMA_MAX_LOADED_MODELS".into(),
                    c.max_loaded_models.to_string(),
                ),
                ("OLLAMA_NUM_PARALLEL".into(), c.parallel.to_string()),
                ("OLLAMA_CONTEXT_LENGTH".into(), c.num_ctx.to_string()),
            ],
            models: c.estimates.iter().map(|e| e.model.clone()).collect(),
            num_ctx: c.num_ctx,
        }
    }
}

/// Quantizations from the most bits to the fewest, with their bits per weight.
const QUANTS: [(&str, f64); 4] = [
    ("fp16", 16.0),
    ("q8_0", 8.5),
    ("q4_K_M", 4.89),
    ("q4_0", 4.5),
];

fn bits(quantization: &str) -> f64 {
    let tag = quantization.to_ascii_lowercase();
    QUANTS
        .iter()
        .find(|(q, _)| q.to_ascii_lowercase() == tag || (tag == "f16" && *q == "fp16"))
        .map_or(16.0, |(_, b)| *b)
}

/// Changes that make `combo` (asked as `models`) fit, the one keeping most first.
pub fn changes(planner: &Planner, models: &[String], combo: &Combination) -> Vec<Change> {
    let quant = combo.quant.as_deref();
    let cap = planner.config.max_loaded_models;
    let try_one = |ctx: u32, par: u32, q: Option<&str>, cap: u32| {
        planner
            .evaluate(models, ctx, par, q, cap)
            .ok()
            .filter(|c| c.fit.fits)
    };
    let mut out = Vec::new();
    let mut push = |axis: Axis, what: String, kept: f64, c: Combination| {
        out.push(Change {
            axis,
            what,
            kept,
            headroom: c.fit.headroom,
            settings: Settings::of(&c),
        })
    };
    let n = models.len() as u32;
    if combo.max_loaded_models < models.len()
        && let Some(c) = try_one(combo.num_ctx, combo.parallel, quant, n)
    {
        push(
            Axis::MaxLoadedModels,
            format!("OLLAMA_MAX_LOADED_MODELS={n}"),
            1.0,
            c,
        );
    }
    let mut ctx = combo.num_ctx / 2;
    while ctx >= 512 {
        if let Some(c) = try_one(ctx, combo.parallel, quant, cap) {
            push(
                Axis::NumCtx,
                format!("num_ctx {ctx}"),
                f64::from(ctx) / f64::from(combo.num_ctx),
                c,
            );
            break;
        }
        ctx /= 2;
    }
    for par in (1..combo.parallel).rev() {
        if let Some(c) = try_one(combo.num_ctx, par, quant, cap) {
            push(
                Axis::Parallel,
                format!("OLLAMA_NUM_PARALLEL={par}"),
                f64::from(par) / f64::from(combo.parallel),
                c,
            );
            break;
        }
    }
    let now_bits: f64 = combo
        .estimates
        .iter()
        .map(|e| bits(&e.quantization))
        .sum::<f64>()
        / combo.estimates.len().max(1) as f64;
    for (q, b) in QUANTS {
        if b >= now_bits {
            continue;
        }
        if let Some(c) = try_one(combo.num_ctx, combo.parallel, Some(q), cap) {
            push(Axis::Quant, format!("quantization {q}"), b / now_bits, c);
            break;
        }
    }
    out.sort_by(|a, b| b.kept.total_cmp(&a.kept));
    out
}
