//! A plan and scenarios, both ways: what a scenario asks to plan (its models, contexts
//! and quantizations), and a combination's round-robin written as a scenario that
//! `kabench plan --check` runs (and `kabench run` replays from its run folder).

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Asked, Combination, ROUNDS, order};
use crate::engine::catalogue::ModelSpec;
use crate::engine::sched::SchedConfig;
use crate::scenario::Scenario;

/// The models, contexts and quantizations of a scenario's streams and sweep.
pub fn asked(s: &Scenario) -> Asked {
    let mut asked = Asked {
        quant: s.sweep.quant.clone(),
        ..Asked::default()
    };
    for stream in &s.streams {
        let model = match s.sweep.quant.first() {
            Some(q) => stream.model.replace("{quant}", q),
            None => stream.model.clone(),
        };
        if !asked.models.contains(&model) {
            asked.models.push(model);
        }
        if !asked.num_ctx.contains(&stream.num_ctx) {
            asked.num_ctx.push(stream.num_ctx);
        }
    }
    for model in &s.sweep.model {
        if !asked.models.contains(model) {
            asked.models.push(model.clone());
        }
    }
    asked
}

/// The round-robin as a scenario: one stream per model, each sending at its turns
/// (trace files `turns-N.csv` written to `dir`, beside the scenario), the keep_alives
/// of `order::keep_alive_for`, the host of `config` as `[sim]` (reloads from the page
/// cache), and `extra` models the simulator's catalogue lacks as `[[sim.models]]`.
pub fn check_scenario(
    combo: &Combination,
    config: &SchedConfig,
    gap: Duration,
    dir: &Path,
    extra: &[ModelSpec],
) -> Result<String> {
    let n = combo.estimates.len();
    let mut t = String::new();
    let _ = writeln!(t, "name = \"plan-check\"\nseed = 1\n");
    let _ = writeln!(t, "[sim]");
    let _ = writeln!(t, "gpus = {}", config.gpus);
    let _ = writeln!(t, "vram = \"{}B\"", config.vram_bytes);
    let _ = writeln!(t, "reserve = \"{}B\"", config.reserve_bytes);
    let _ = writeln!(t, "fit_headroom = {}", config.fit_headroom);
    let _ = writeln!(t, "max_loaded_models = {}", combo.max_loaded_models);
    let _ = writeln!(t, "num_parallel = {}", combo.parallel);
    // The simulator's own load times from the page cache (a model just unloaded is
    // read back from it), so the reload times it reports are its usual ones.
    let _ = writeln!(t, "page_cache_warm = true\n");
    for (i, e) in combo.estimates.iter().enumerate() {
        let file = dir.join(format!("turns-{}.csv", i + 1));
        let mut csv = String::from("time\n");
        for r in 0..ROUNDS as usize {
            let _ = writeln!(csv, "{:.3}", ((r * n + i) as f64) * gap.as_secs_f64());
        }
        std::fs::write(&file, csv).with_context(|| format!("writing {}", file.display()))?;
        let _ = writeln!(t, "[[stream]]");
        let _ = writeln!(t, "name = \"m{}\"", i + 1);
        let _ = writeln!(t, "model = {:?}", e.model);
        let _ = writeln!(t, "num_ctx = {}", combo.num_ctx);
        let _ = writeln!(t, "prompt_tokens = 8\nmax_tokens = 4");
        let _ = writeln!(t, "keep_alive = {:?}", order::keep_alive_for(i).written());
        let _ = writeln!(
            t,
            "arrival = {{ kind = \"trace\", file = \"turns-{}.csv\" }}\n",
            i + 1
        );
    }
    let _ = writeln!(t, "[run]\nrequests = {ROUNDS}\ntimeout = \"120s\"\n");
    if !extra.is_empty() {
        #[derive(serde::Serialize)]
        struct Models<'a> {
            models: &'a [ModelSpec],
        }
        #[derive(serde::Serialize)]
        struct Sim<'a> {
            sim: Models<'a>,
        }
        let models = toml::to_string(&Sim {
            sim: Models { models: extra },
        })
        .context("writing the check's [[sim.models]]")?;
        let _ = writeln!(t, "{models}");
    }
    let _ = writeln!(
        t,
        "[telemetry]\nsources = [\"ollama_ps\"]\ninterval = \"100ms\""
    );
    Ok(t)
}
