//! `kabench plan`: flags (or a scenario) into the planner's inputs, live sizes from
//! `--target URL`, the plan printed, and `--check`: each combination replayed
//! round-robin on the target as a run (a generated scenario whose streams take turns),
//! its run folder rendered, and the observed evictions compared with the predicted ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::catalogue::Catalogue;
use crate::cli::{BadInput, PlanArgs};
use crate::ollama::OllamaClient;
use crate::plan::observe::{self, Comparison};
use crate::plan::{self, Asked, Combination, MeasuredSize, Plan, Planner, order};
use crate::run::open_loop::RunOptions;
use crate::run::{self, MissingModels, Target};
use crate::scenario;
use crate::sched::SchedConfig;
use crate::sim_settings::SimSettings;

/// At most this many combinations are checked in one call.
const MAX_CHECKED: usize = 8;

pub(super) async fn plan(args: PlanArgs) -> Result<()> {
    let (asked, settings) = asked(&args)?;
    let mut config = host(&args, settings.clone())?;
    if asked.models.is_empty() {
        return Err(plan::PlanError::NoModels.into());
    }
    let target = args.target.as_deref().map(Target::parse);
    let planner = match &target {
        Some(Target::Ollama(url)) => {
            live_planner(url, &asked, &mut config, args.gpus.is_some(), args.vram.is_some()).await?
        }
        _ => Planner {
            config,
            catalogue: settings.catalogue(),
            measured: Vec::new(),
            sizes_from: "the catalogue (`kabench models --sources`), estimated by E1: weights + f16 KV × num_ctx × parallel + compute buffer (768 MiB past 4096 total context, 2 GiB past 32768) + 300 MiB, or a catalogue model's measured overhead".into(),
        },
    };
    let planned = planner.plan(&asked)?;
    if args.json && !args.check {
        println!("{}", serde_json::to_string_pretty(&planned)?);
        return Ok(());
    }
    if !args.json {
        print!("{}", plan::render::text(&planned));
    }
    if !args.check {
        return Ok(());
    }
    let target = target.unwrap_or(Target::Sim);
    check(&args, &planner, &planned, &target).await
}

/// The models, contexts, parallels and quantizations asked: the scenario's, the flags
/// over them; a model named twice counts once (`tiny-50m` ≡ `tiny-50m:latest`).
fn asked(args: &PlanArgs) -> Result<(Asked, SimSettings)> {
    let (mut asked, settings) = match &args.scenario {
        Some(path) => from_scenario(path)?,
        None => (Asked::default(), SimSettings::default()),
    };
    if !args.models.is_empty() {
        asked.models = args.models.clone();
    }
    asked.models.retain(|m| !m.trim().is_empty());
    let mut seen: Vec<String> = Vec::new();
    asked.models.retain(|m| {
        let key = crate::ollama::name::key(m);
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    if !args.num_ctx.is_empty() {
        asked.num_ctx = args.num_ctx.clone();
    }
    if !args.parallel.is_empty() {
        asked.parallel = args.parallel.clone();
    }
    if !args.quant.is_empty() {
        asked.quant = args.quant.clone();
    }
    if asked.num_ctx.contains(&0) || asked.parallel.contains(&0) {
        return Err(BadInput(
            "--num-ctx and --parallel take numbers above 0 (e.g. --num-ctx 4096,32768 --parallel 1,4)".into(),
        )
        .into());
    }
    Ok((asked, settings))
}

/// The host: the scenario's `[sim]` (or the defaults) with the flags laid over it.
fn host(args: &PlanArgs, mut settings: SimSettings) -> Result<SchedConfig> {
    if let Some(v) = &args.vram {
        crate::units::parse_bytes(v).map_err(|e| BadInput(format!("--vram {v:?}: {e}")))?;
    }
    settings.overlay(SimSettings {
        vram: args.vram.clone(),
        gpus: args.gpus,
        max_loaded_models: args.max_loaded_models,
        ..SimSettings::default()
    });
    let config = settings.sched_config(0).map_err(|e| {
        // Without a scenario the keys came from the flags: name those.
        let text = e.to_string();
        BadInput(if args.scenario.is_none() {
            text.replace("sim.max_loaded_models", "--max-loaded-models")
                .replace("sim.vram", "--vram")
                .replace("sim.gpus", "--gpus")
        } else {
            text
        })
    })?;
    Ok(config)
}

/// Models, contexts and quantizations from a scenario's streams and sweep; the host
/// from its `[sim]`.
fn from_scenario(path: &Path) -> Result<(Asked, SimSettings)> {
    let s = scenario::load(path)?;
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
    Ok((asked, s.sim))
}

/// Sizes from a live server: its models, and `/api/ps` after a load at each num_ctx.
async fn live_planner(
    url: &str,
    asked: &Asked,
    config: &mut SchedConfig,
    gpus_given: bool,
    vram_given: bool,
) -> Result<Planner> {
    let client = OllamaClient::new(url).map_err(|e| {
        BadInput(format!(
            "--target {url:?}: {e}; write an Ollama address such as http://127.0.0.1:11434, or sim"
        ))
    })?;
    let mut found = plan::live::read_models(&client, &asked.models)
        .await
        .with_context(|| format!("reading the models of {url}"))?;
    if !found.missing.is_empty() {
        return Err(MissingModels {
            target: client.base_url().to_string(),
            models: found.missing,
        }
        .into());
    }
    // --quant: the same tags with the quantization swapped, where the server has them
    // (the plan then names the ones it lacks).
    let variants: Vec<String> = found
        .specs
        .iter()
        .flat_map(|spec| {
            let own = spec.quant_tag();
            asked.quant.iter().filter_map(move |q| {
                let stem = spec.name.strip_suffix(own.as_str())?;
                (!own.is_empty() && !own.eq_ignore_ascii_case(q)).then(|| format!("{stem}{q}"))
            })
        })
        .collect();
    if !variants.is_empty() {
        let more = plan::live::read_models(&client, &variants)
            .await
            .with_context(|| format!("reading the models of {url}"))?;
        found.specs.extend(more.specs);
    }
    let ctxs = if asked.num_ctx.is_empty() {
        vec![config.default_context()]
    } else {
        asked.num_ctx.clone()
    };
    let mut measured: Vec<MeasuredSize> = Vec::new();
    for spec in &found.specs {
        for &ctx in &ctxs {
            eprintln!(
                "measuring {} at num_ctx {ctx} (a load, /api/ps, an unload)",
                spec.name
            );
            if let Some(m) = plan::live::measure(&client, &spec.name, ctx)
                .await
                .with_context(|| format!("loading {} at num_ctx {ctx} on {url}", spec.name))?
            {
                measured.push(m);
            }
        }
    }
    let cpu = !measured.is_empty() && measured.iter().all(|m| m.size_vram == 0);
    let mut note = String::new();
    if cpu && !gpus_given {
        config.gpus = 0;
        note = "; every /api/ps size_vram was 0: a CPU-only host (give --gpus to override)".into();
    } else if !cpu && !vram_given {
        note = format!(
            "; the server's GPU memory is not known over HTTP: planned for {} × {} (give --vram and --gpus)",
            config.gpus,
            crate::units::format_size_short(config.vram_bytes)
        );
    }
    let names: Vec<String> = measured
        .iter()
        .map(|m| format!("{} at {}", m.model, m.num_ctx))
        .collect();
    Ok(Planner {
        config: config.clone(),
        catalogue: Catalogue {
            models: found.specs,
        },
        sizes_from: format!(
            "measured on {}: /api/ps size after a load ({}); file sizes from /api/tags, KV from /api/show geometry; the other figures estimated by E1{note}",
            client.base_url(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ),
        measured,
    })
}

/// Replays each combination on the target and compares.
async fn check(args: &PlanArgs, planner: &Planner, planned: &Plan, target: &Target) -> Result<()> {
    if planned.combinations.len() > MAX_CHECKED {
        return Err(BadInput(format!(
            "--check replays each combination; {} asked, at most {MAX_CHECKED}: narrow --num-ctx, --parallel or --quant",
            planned.combinations.len()
        ))
        .into());
    }
    let live = matches!(target, Target::Ollama(_));
    // Live: at least 4 s, and twice the slowest load the size measurement timed plus a
    // second, so that one request ends before the next is sent.
    let slowest = planner
        .measured
        .iter()
        .map(|m| m.load_s)
        .fold(0.0, f64::max);
    let gap = args.gap.unwrap_or(if live {
        Duration::from_secs_f64((2.0 * slowest + 1.0).max(4.0).ceil())
    } else {
        Duration::from_secs(3)
    });
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| run::recorder::default_run_dir("plan-check"));
    let mut results = Vec::new();
    let mut all_match = true;
    for (i, combo) in planned.combinations.iter().enumerate() {
        let dir = out_root.join(format!(
            "c{:02}-ctx{}-p{}{}",
            i + 1,
            combo.num_ctx,
            combo.parallel,
            combo
                .quant
                .as_deref()
                .map_or(String::new(), |q| format!("-{q}"))
        ));
        let comparison = check_one(combo, planner, target, gap, &dir, args.quiet).await?;
        if !args.json {
            println!();
            println!(
                "check #{} num_ctx {}, parallel {}{} on {}, a request every {}: {}",
                i + 1,
                combo.num_ctx,
                combo.parallel,
                combo
                    .quant
                    .as_deref()
                    .map_or(String::new(), |q| format!(", {q}")),
                if live { "the target" } else { "the simulator" },
                crate::units::format_go_duration(gap),
                dir.display()
            );
            print!("{}", comparison.text());
        }
        all_match &= comparison.matches();
        results.push(serde_json::json!({
            "rank": i + 1,
            "run_folder": dir,
            "matches": comparison.matches(),
            "comparison": comparison,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan": planned,
                "checks": results,
            }))?
        );
    }
    if all_match {
        Ok(())
    } else {
        anyhow::bail!("the target did not evict as predicted (see the rounds above)")
    }
}

/// One combination: a scenario of one stream per model taking turns, run, rendered,
/// read back.
async fn check_one(
    combo: &Combination,
    planner: &Planner,
    target: &Target,
    gap: Duration,
    dir: &Path,
    quiet: bool,
) -> Result<Comparison> {
    let traces = tempfile_dir()?;
    // Models the built-in catalogue lacks or holds otherwise (a scenario's
    // [[sim.models]]) go to the simulator with the check.
    let builtin = Catalogue::builtin();
    let extra: Vec<crate::catalogue::ModelSpec> = match target {
        Target::Sim => combo
            .estimates
            .iter()
            .filter_map(|e| planner.catalogue.models.iter().find(|m| m.name == e.model))
            .filter(|m| builtin.models.iter().all(|b| b != *m))
            .cloned()
            .collect(),
        Target::Ollama(_) | Target::Fleet(_) => Vec::new(),
    };
    let text = check_scenario(combo, &planner.config, gap, &traces, &extra)?;
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
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = tokio::spawn(crate::progress::show(rx, quiet));
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
    crate::report::render(&outcome.dir, &crate::report::RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", outcome.dir.display()))?;
    let rows = crate::folder::read_requests(&outcome.dir)?;
    let samples = crate::folder::read_vram(&outcome.dir)?;
    let names: Vec<String> = combo.estimates.iter().map(|e| e.model.clone()).collect();
    let overlapped = observe::overlapping(&rows);
    if !overlapped.is_empty() {
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
    Ok(Comparison::of(
        combo.timeline.clone(),
        observe::observed(&names, &rows, &samples),
    ))
}

fn tempfile_dir() -> Result<PathBuf> {
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

/// The round-robin as a scenario: one stream per model, each sending at its turns
/// (trace files `turns-N.csv` in `dir`, beside the scenario), the keep_alives of `order::keep_alive_for`, the host of
/// `config` as `[sim]` (reloads from the page cache).
fn check_scenario(
    combo: &Combination,
    config: &SchedConfig,
    gap: Duration,
    dir: &Path,
    extra: &[crate::catalogue::ModelSpec],
) -> Result<String> {
    let rounds = plan::ROUNDS;
    use std::fmt::Write;
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
        for r in 0..rounds as usize {
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
    let _ = writeln!(t, "[run]\nrequests = {rounds}\ntimeout = \"120s\"\n");
    if !extra.is_empty() {
        #[derive(serde::Serialize)]
        struct Models<'a> {
            models: &'a [crate::catalogue::ModelSpec],
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
