//! `kabench plan`: the flags (or a scenario) into the planner's inputs, the sizes from
//! the catalogue or a live server, the plan printed, and `--check` replayed.

use std::io::Write;

use anyhow::{Context, Result};

use super::{BadInput, plan_check};
use crate::cli::PlanArgs;
use crate::engine::sched::SchedConfig;
use crate::engine::sim_settings::SimSettings;
use crate::ollama::OllamaClient;
use crate::plan::{self, Asked, Planner, bounds};
use crate::run::{MissingModels, Target};
use crate::scenario;
use crate::units::limits::printable;

/// Where the catalogue's sizes come from, in words.
const CATALOGUE_SIZES: &str = "the catalogue (`kabench models --sources`), estimated by E1: weights + f16 KV × num_ctx × parallel + compute buffer (768 MiB past 4096 total context, 2 GiB past 32768) + 300 MiB, or a catalogue model's measured overhead";

pub(super) async fn plan(args: PlanArgs) -> Result<()> {
    let (asked, settings) = asked(&args)?;
    let config = host(&args, settings.clone())?;
    if asked.models.is_empty() {
        return Err(plan::PlanError::NoModels.into());
    }
    let target = args.target.as_deref().map(Target::parse);
    let planner = match &target {
        Some(Target::Ollama(url)) => live_planner(url, &asked, &config, &args).await?,
        _ => Planner {
            config,
            catalogue: settings.catalogue(),
            measured: Vec::new(),
            sizes_from: CATALOGUE_SIZES.into(),
        },
    };
    let planned = planner.plan(&asked)?;
    if args.json && !args.check {
        println!("{}", serde_json::to_string_pretty(&planned)?);
        return Ok(());
    }
    if !args.json {
        // Names come from the flags and the server: no control character reaches the
        // terminal.
        let text = plan::render::text(&planned);
        let mut out = std::io::stdout().lock();
        for line in text.lines() {
            writeln!(out, "{}", printable(line))?;
        }
    }
    if !args.check {
        return Ok(());
    }
    let target = target.unwrap_or(Target::Sim);
    plan_check::check(&args, &planner, &planned, &target).await
}

/// The models, contexts, parallels and quantizations asked: the scenario's, the flags
/// over them; a model named twice counts once (`tiny-50m` ≡ `tiny-50m:latest`).
fn asked(args: &PlanArgs) -> Result<(Asked, SimSettings)> {
    let (mut asked, settings) = match &args.scenario {
        Some(path) => {
            let s = scenario::load(path)?;
            (plan::scenario::asked(&s), s.sim)
        }
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
    let from_flag = |given: bool, flag: &str, key: &str| {
        if given || args.scenario.is_none() {
            flag.to_string()
        } else {
            format!("{key} in the scenario")
        }
    };
    for &n in &asked.num_ctx {
        bounds::check(
            &from_flag(!args.num_ctx.is_empty(), "--num-ctx", "num_ctx"),
            u64::from(n),
            u64::from(bounds::MAX_NUM_CTX),
        )?;
    }
    for &n in &asked.parallel {
        bounds::check(
            &from_flag(!args.parallel.is_empty(), "--parallel", "parallel"),
            u64::from(n),
            u64::from(bounds::MAX_PARALLEL),
        )?;
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
    // The flags are checked before anything is computed from them (`bounds`).
    let name = |given: bool, flag: &str, key: &str| {
        if given || args.scenario.is_none() {
            flag.to_string()
        } else {
            format!("{key} in the scenario's [sim]")
        }
    };
    settings.overlay(super::host_settings(&args.host, &Default::default()));
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
    bounds::check(
        &name(args.host.vram.is_some(), "--vram", "vram"),
        config.vram_bytes,
        bounds::MAX_VRAM_BYTES,
    )?;
    bounds::check(
        &name(args.host.gpus.is_some(), "--gpus", "gpus"),
        u64::from(config.gpus),
        u64::from(bounds::MAX_GPUS),
    )?;
    Ok(config)
}

/// Sizes from a live server: its models, and `/api/ps` after a load at each num_ctx.
async fn live_planner(
    url: &str,
    asked: &Asked,
    config: &SchedConfig,
    args: &PlanArgs,
) -> Result<Planner> {
    let client = OllamaClient::new(url).map_err(|e| {
        BadInput(format!(
            "--target {url:?}: {e}; write an Ollama address such as http://127.0.0.1:11434, or sim"
        ))
    })?;
    let found = plan::live::read_models(&client, &asked.models, args.timeout)
        .await
        .with_context(|| format!("reading the models of {url}"))?;
    if !found.missing.is_empty() {
        return Err(MissingModels {
            target: client.base_url().to_string(),
            models: found.missing,
        }
        .into());
    }
    let (gpus_given, vram_given) = (args.host.gpus.is_some(), args.host.vram.is_some());
    plan::live::planner(
        &client,
        found,
        asked,
        config,
        gpus_given,
        vram_given,
        args.timeout,
    )
    .await
}
