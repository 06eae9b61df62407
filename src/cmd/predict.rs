//! `kabench predict`: the traffic opened (`predict::input`), the host and the prices
//! from the scenario with the flags over them, every policy replayed, the table (or
//! summary.json) printed, and a run folder written when asked.

use std::io::Write;

use anyhow::{Context, Result};

use super::{BadInput, host_settings};
use crate::cli::{PredictArgs, TimestampUnit};
use crate::engine::sim_settings::SimSettings;
use crate::folder::CostSettings;
use crate::predict::input::{self, Input};
use crate::predict::{self, Policy, PredictOptions, output};
use crate::scenario;
use crate::traffic::request_log::TimeUnit;

pub(super) fn predict(args: PredictArgs) -> Result<()> {
    let (prediction, host, info) = replay(&args)?;
    let quiet = args.summary.quiet;
    print(&prediction, &info, args.summary.json)?;
    if !quiet {
        eprintln!(
            "replayed {} requests × {} policies in {:.2} s",
            prediction.scan.rows,
            prediction.outcomes.len(),
            prediction.wall_s
        );
    }
    if let Some(dir) = &args.out {
        output::write_folder(dir, &prediction, &host, &info)?;
        let rendered = crate::report::render(dir, &crate::report::RenderOptions::default())
            .with_context(|| format!("rendering the report of {}", dir.display()))?;
        if !quiet {
            eprintln!("{}", rendered.headline);
            eprintln!(
                "wrote {}: open {}",
                dir.display(),
                rendered.index_html.display()
            );
        }
    }
    Ok(())
}

/// The traffic of `args` replayed under every policy: the prediction, the host it
/// ran on and the facts its folder records.
fn replay(args: &PredictArgs) -> Result<(predict::Prediction, predict::Host, output::FolderInfo)> {
    let (mut settings, mut cost, mut source) = match &args.scenario {
        Some(path) => {
            let s = scenario::load(path)?;
            (s.sim, s.cost, format!("the [sim] of {}", path.display()))
        }
        None => (
            SimSettings::default(),
            CostSettings::default(),
            "the simulator's defaults and catalogue".to_string(),
        ),
    };
    // The input first: a server log says how the server ran (laid under the flags).
    let opened =
        input::open(&input_of(args), &mut settings, args.calibrate.is_none()).map_err(BadInput)?;
    if !opened.taken.is_empty() {
        source = format!("{source}, with {}", opened.taken.join(", "));
    }
    settings.overlay(SimSettings {
        calibrate: args.calibrate.as_ref().map(|dir| dir.display().to_string()),
        ..host_settings(&args.host, &args.server)
    });
    cost.wait_second = args.wait_second.unwrap_or(cost.wait_second);
    cost.vram_gb_hour = args.vram_gb_hour.unwrap_or(cost.vram_gb_hour);
    cost.ram_gb_hour = args.ram_gb_hour.unwrap_or(cost.ram_gb_hour);
    if args.cold_penalty.is_some() {
        cost.cold_penalty = args.cold_penalty;
    }
    let host = predict::Host::new(&settings, args.seed, &source)
        .map_err(|e| BadInput(format!("host: {e:#}")))?;
    let log = opened.source.as_ref();
    let (models, unit_of) =
        predict::resolve_models(log.scan(), &host, &cost).map_err(|e| BadInput(e.to_string()))?;
    let policies = policies(args, log.scan().has_keep_alive);
    let quiet = args.summary.quiet;
    if !quiet {
        eprintln!(
            "predict: {} ({} requests over {}, {} model(s)) on a simulated {} ({}), {} policies",
            log.scan().path.display(),
            log.scan().rows,
            crate::recommend::format_seconds(log.scan().span_s),
            models.len(),
            host.describe(),
            host.source,
            policies.len()
        );
    }
    let opts = PredictOptions {
        policies,
        cost: cost.clone(),
        prompt_tokens: args.prompt_tokens,
        output_tokens: args.output_tokens,
        cold_threshold: args.cold_threshold,
        progress: !quiet,
        train: args.train,
        fast_min_rows: predict::FAST_MIN_ROWS,
    };
    let prediction = predict::predict(log, &host, &models, &unit_of, &opts)?;
    let info = output::FolderInfo {
        time_scale: args.time_scale,
        seed: args.seed,
        cost,
        cold_threshold_ms: crate::folder::ms(args.cold_threshold),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    Ok((prediction, host, info))
}

/// What `kabench predict --requests LOG` would advise (its verdict lines), with
/// `--calibrate DIR` when given; quiet.
pub(super) fn advice(
    log: &std::path::Path,
    calibrate: Option<&std::path::Path>,
) -> Result<Vec<String>> {
    let mut argv = vec![
        "kabench".into(),
        "predict".into(),
        "--requests".into(),
        log.as_os_str().to_owned(),
        "--quiet".into(),
    ];
    if let Some(dir) = calibrate {
        argv.push("--calibrate".into());
        argv.push(dir.as_os_str().to_owned());
    }
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv)?;
    let crate::cli::Command::Predict(args) = cli.command else {
        anyhow::bail!("not a predict command");
    };
    let (prediction, _, _) = replay(&args)?;
    Ok(output::verdict(&prediction))
}

/// The input flags as `predict::input` takes them.
fn input_of(args: &PredictArgs) -> Input {
    Input {
        requests: args.requests.clone(),
        ollama_log: args.ollama_log.clone(),
        trace: args.trace.clone(),
        horizon: args.horizon,
        scenario: args.scenario.clone(),
        slice: args.slice,
        clients: args.client.clone(),
        tz: args.tz,
        strict: args.strict,
        model: args.model.clone(),
        time_scale: args.time_scale,
        unit: match args.timestamp_unit {
            TimestampUnit::Auto => TimeUnit::Auto,
            TimestampUnit::S => TimeUnit::Seconds,
            TimestampUnit::Ms => TimeUnit::Millis,
        },
        seed: args.seed,
    }
}

/// The fixed keep_alives asked (and the grid), as-sent when the input says, and the
/// adaptive ones.
fn policies(args: &PredictArgs, has_keep_alive: bool) -> Vec<Policy> {
    let mut policies = predict::fixed_policies(&args.keep_alive, !args.no_grid);
    if has_keep_alive {
        policies.push(Policy::AsSent);
    }
    policies.extend([
        Policy::Histogram,
        Policy::Adaptive,
        Policy::PreWarm,
        Policy::Optimum,
        Policy::PreloadBound,
    ]);
    policies
}

/// The table and its verdict, or summary.json, on stdout.
fn print(prediction: &predict::Prediction, info: &output::FolderInfo, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&output::summary_json(prediction, info)?)?
        )?;
    } else {
        write!(out, "{}", output::table(prediction))?;
        for line in output::verdict(prediction) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
