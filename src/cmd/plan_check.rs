//! `kabench plan --check`: each combination's round-robin run on the target as a
//! generated scenario (`plan::scenario::check_scenario`), its run folder rendered, and
//! the evictions observed compared with the predicted ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::BadInput;
use crate::cli::PlanArgs;
use crate::engine::catalogue::{Catalogue, ModelSpec};
use crate::ollama::OllamaClient;
use crate::plan::observe::{self, Comparison};
use crate::plan::{Combination, Plan, Planner};
use crate::run::open_loop::RunOptions;
use crate::run::{self, Target};
use crate::scenario;
use crate::units::limits::printable;

/// At most this many combinations are checked in one call.
const MAX_CHECKED: usize = 8;

/// Replays each combination on the target and compares.
pub(super) async fn check(
    args: &PlanArgs,
    planner: &Planner,
    planned: &Plan,
    target: &Target,
) -> Result<()> {
    if planned.combinations.len() > MAX_CHECKED {
        return Err(BadInput(format!(
            "--check replays each combination; {} asked, at most {MAX_CHECKED}: narrow --num-ctx, --parallel or --quant",
            planned.combinations.len()
        ))
        .into());
    }
    let live = matches!(target, Target::Ollama(_));
    let gap = args.gap.unwrap_or_else(|| default_gap(planner, live));
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| run::recorder::default_run_dir("plan-check"));
    let mut results = Vec::new();
    let mut all_match = true;
    let (mut most_resident, mut evicted) = (0, false);
    for (i, combo) in planned.combinations.iter().enumerate() {
        let quant = combo.quant.as_deref();
        let dir = out_root.join(format!(
            "c{:02}-ctx{}-p{}{}",
            i + 1,
            combo.num_ctx,
            combo.parallel,
            quant.map_or(String::new(), |q| format!("-{q}"))
        ));
        let (comparison, listed) = check_one(combo, planner, target, gap, &dir, args.quiet).await?;
        most_resident = most_resident.max(listed);
        evicted |= comparison.observed.iter().any(|s| !s.evicted.is_empty());
        if !args.json {
            println!();
            println!(
                "check #{} num_ctx {}, parallel {}{} on {}, a request every {}: {}",
                i + 1,
                combo.num_ctx,
                combo.parallel,
                quant.map_or(String::new(), |q| format!(", {}", printable(q))),
                if live { "the target" } else { "the simulator" },
                crate::units::format_go_duration(gap),
                printable(&dir.display().to_string())
            );
            // Model names from the flags or the server: no control character reaches
            // the terminal.
            for line in comparison.text().lines() {
                println!("{}", printable(line));
            }
        }
        all_match &= comparison.matches();
        results.push(serde_json::json!({
            "rank": i + 1,
            "run_folder": dir,
            "matches": comparison.matches(),
            "comparison": comparison,
        }));
    }
    let cap = (live && evicted && most_resident > 0 && most_resident < planner.config.max_models())
        .then_some(most_resident);
    let hint = cap.map(|n| cap_hint(n, planner));
    if args.json {
        let doc = serde_json::json!({
            "plan": planned,
            "checks": results,
            "inferred_max_loaded_models": cap.filter(|_| planner.config.gpus == 0),
            "evicted_beside": cap,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if let Some(h) = &hint {
        println!();
        println!("{h}");
    }
    if all_match {
        Ok(())
    } else {
        match hint {
            Some(h) => anyhow::bail!("the target did not evict as predicted: {h}"),
            None => anyhow::bail!("the target did not evict as predicted (see the rounds above)"),
        }
    }
}

/// What the observed evictions say of the server's cap: at most `n` models were ever
/// loaded at once and loads evicted, fewer than the plan allowed. On a CPU-only host
/// only `OLLAMA_MAX_LOADED_MODELS` evicts, so that is the cap; on a GPU host the VRAM
/// may be what ran short.
fn cap_hint(n: usize, planner: &Planner) -> String {
    let planned = planner.config.max_models();
    if planner.config.gpus == 0 {
        format!(
            "the server evicts as if OLLAMA_MAX_LOADED_MODELS={n}; rerun with --max-loaded-models {n} (/api/ps never listed more than {n} model(s) at once and loads evicted, on a CPU-only host, where only the cap evicts; the plan assumed {planned})"
        )
    } else {
        format!(
            "the server evicted with at most {n} model(s) loaded at once (the plan assumed up to {planned}): it runs with OLLAMA_MAX_LOADED_MODELS={n} or has less VRAM than planned; rerun with --max-loaded-models {n}, or give its --vram and --gpus"
        )
    }
}

/// Live: at least 4 s, and twice the slowest load the size measurement timed plus a
/// second, so that one request ends before the next is sent; 3 s on the simulator.
fn default_gap(planner: &Planner, live: bool) -> Duration {
    if !live {
        return Duration::from_secs(3);
    }
    let slowest = planner
        .measured
        .iter()
        .map(|m| m.load_s)
        .fold(0.0, f64::max);
    Duration::from_secs_f64((2.0 * slowest + 1.0).max(4.0).ceil())
}

/// One combination: a scenario of one stream per model taking turns, run, rendered,
/// read back; with the most models `/api/ps` listed at once during it.
async fn check_one(
    combo: &Combination,
    planner: &Planner,
    target: &Target,
    gap: Duration,
    dir: &Path,
    quiet: bool,
) -> Result<(Comparison, usize)> {
    let traces = temp_dir()?;
    let extra = extra_models(combo, planner, target);
    let text = crate::plan::scenario::check_scenario(combo, &planner.config, gap, &traces, &extra)?;
    let path = traces.join("plan-check.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let scenario = scenario::parse(&text, &path)?;
    let run_plan = scenario::plan(&scenario);
    let options = RunOptions {
        target: target.clone(),
        out: Some(dir.to_path_buf()),
        pull: false,
        prewarm: false,
        slice: None,
        start_at: None,
        late_tolerance: crate::shard::LATE_TOLERANCE,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = tokio::spawn(super::progress::show(rx, quiet));
    let outcome = run::open_loop::run(&scenario, &run_plan, &options, tx, cancel).await;
    let _ = progress.await;
    // The send times stay beside the scenario.toml the run folder keeps, so that
    // `kabench run DIR/scenario.toml` replays the same check.
    if let Ok(outcome) = &outcome {
        for i in 1..=combo.estimates.len() {
            let name = format!("turns-{i}.csv");
            let _ = std::fs::copy(traces.join(&name), outcome.dir.join(&name));
        }
    }
    let _ = std::fs::remove_dir_all(&traces);
    // The check's keep_alives are long: unload what it loaded on a live server.
    if let Target::Ollama(url) = target
        && let Ok(client) = OllamaClient::new(url)
        && let Err(e) = run::unload_all(&client, Duration::from_secs(30)).await
    {
        eprintln!("warning: after the check: {e:#}");
    }
    let outcome = outcome?;
    super::output::render(&outcome.dir)?;
    let rows = crate::folder::read_requests(&outcome.dir)?;
    let samples = crate::folder::read_vram(&outcome.dir)?;
    let names: Vec<String> = combo.estimates.iter().map(|e| e.model.clone()).collect();
    warn_overlaps(&observe::overlapping(&rows), gap);
    Ok((
        Comparison::of(
            combo.timeline.clone(),
            observe::observed(&names, &rows, &samples),
        ),
        observe::most_resident(&samples),
    ))
}

/// Models the built-in catalogue lacks or holds otherwise (a scenario's
/// `[[sim.models]]`): they go to the simulator with the check.
fn extra_models(combo: &Combination, planner: &Planner, target: &Target) -> Vec<ModelSpec> {
    match target {
        Target::Sim => {
            let builtin = Catalogue::builtin();
            combo
                .estimates
                .iter()
                .filter_map(|e| planner.catalogue.models.iter().find(|m| m.name == e.model))
                .filter(|m| builtin.models.iter().all(|b| b != *m))
                .cloned()
                .collect()
        }
        Target::Ollama(_) | Target::Fleet(_) | Target::Managed => Vec::new(),
    }
}

fn warn_overlaps(overlapped: &[usize], gap: Duration) {
    if overlapped.is_empty() {
        return;
    }
    eprintln!(
        "warning: request(s) #{} still ran when the next was sent ({} apart): the round-robin assumes one at a time; give a longer --gap",
        overlapped
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", #"),
        crate::units::format_go_duration(gap)
    );
}

/// A fresh folder for the check's scenario and send times.
fn temp_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kabench-plan-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
