//! `kabench predict`: a request log replayed through the scheduler model under every
//! keep_alive policy; flags checked and laid over the scenario's `[sim]` and `[cost]`.

use anyhow::{Context, Result};

use crate::cli::{BadInput, PredictArgs};
use crate::folder::CostSettings;
use crate::scenario;
use crate::sim_settings::SimSettings;
use crate::units;

pub(super) fn predict(args: PredictArgs) -> Result<()> {
    use crate::predict::{self, Policy, PredictOptions, output};
    use crate::traffic::Source;
    use crate::traffic::ollama_log::{self, LogOptions, OllamaLog};
    use crate::traffic::request_log::{ReadOptions, RequestLog, TimeUnit};
    use crate::traffic::trace;
    let bad = |what: &str, e: &dyn std::fmt::Display| BadInput(format!("{what}{e}"));
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(BadInput(format!(
            "--time-scale {}: give a number above 0",
            args.time_scale
        ))
        .into());
    }
    if !(args.train > 0.0 && args.train <= 1.0) {
        return Err(BadInput(format!(
            "--train {}: give the share of the time span to train on, above 0 and at most 1 (0.5: the first half)",
            args.train
        ))
        .into());
    }
    let unit = match args.timestamp_unit.as_str() {
        "auto" => TimeUnit::Auto,
        "s" => TimeUnit::Seconds,
        "ms" => TimeUnit::Millis,
        other => {
            return Err(
                BadInput(format!("--timestamp-unit {other:?}: write auto, s or ms")).into(),
            );
        }
    };
    let mut given = Vec::new();
    for text in args.keep_alive.iter().filter(|t| !t.trim().is_empty()) {
        given.push(
            units::KeepAlive::parse(text.trim())
                .map_err(|e| bad(&format!("--keep-alive {text:?}: "), &e))?,
        );
    }
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
    let slice = args
        .slice
        .as_deref()
        .map(crate::traffic::trace::parse_slice)
        .transpose()
        .map_err(|e| bad("", &e))?;
    let mut native_clients = false;
    // A per-request CSV (kabench's request log, or a trace in its columns).
    let request_log = |path: &std::path::Path| {
        let options = ReadOptions {
            model: args.model.clone(),
            time_scale: args.time_scale,
            unit,
        };
        RequestLog::open(path, options).map_err(|e| bad("", &e))
    };
    let input: Box<dyn Source + Send> = match (&args.requests, &args.ollama_log) {
        (None, None) if args.trace.is_some() => {
            let path = args.trace.as_deref().unwrap_or(std::path::Path::new(""));
            let topts = trace::TraceOptions {
                models: args
                    .model
                    .iter()
                    .flat_map(|m| m.split(','))
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
                clients: args.client.clone(),
                time_scale: args.time_scale,
                seed: args.seed,
            };
            match trace::detect(path).map_err(|e| bad("", &e))? {
                "servegen" => {
                    native_clients = true;
                    Box::new(trace::ServeGen::open(path, topts).map_err(|e| bad("", &e))?)
                }
                "mooncake" => {
                    Box::new(trace::Mooncake::open(path, topts).map_err(|e| bad("", &e))?)
                }
                _ => Box::new(request_log(path)?),
            }
        }
        (Some(path), _) => Box::new(request_log(path)?),
        (None, Some(path)) => {
            let tz = args
                .tz
                .as_deref()
                .map(ollama_log::parse_tz)
                .transpose()
                .map_err(|e| bad("", &e))?;
            let log = OllamaLog::open(
                path,
                LogOptions {
                    model: args.model.clone(),
                    tz,
                    strict: args.strict,
                    time_scale: args.time_scale,
                },
            )
            .map_err(|e| bad("", &e))?;
            let taken = apply_log_settings(&log, &mut settings, args.calibrate.is_none());
            if !taken.is_empty() {
                source = format!("{source}, with {}", taken.join(", "));
            }
            Box::new(log)
        }
        (None, None) if args.horizon.is_some() => {
            let (Some(path), Some(horizon)) = (&args.scenario, args.horizon) else {
                return Err(BadInput(
                    "--horizon replays the streams of --scenario FILE: give both".into(),
                )
                .into());
            };
            if horizon.is_zero() {
                return Err(BadInput(
                    "--horizon 0: give how long the streams send, e.g. 7d".into(),
                )
                .into());
            }
            Box::new(
                crate::traffic::streams::Streams::open(path, horizon, args.time_scale)
                    .map_err(|e| bad("", &e))?,
            )
        }
        (None, None) => {
            return Err(BadInput(
                "give the traffic: --requests FILE.csv, --ollama-log FILE or --trace FILE".into(),
            )
            .into());
        }
    };
    let clients: &[String] = if native_clients { &[] } else { &args.client };
    let input: Box<dyn Source + Send> = if slice.is_some() || !clients.is_empty() {
        Box::new(
            trace::Filtered::new(input, slice, args.time_scale, clients)
                .map_err(|e| bad("", &e))?,
        )
    } else {
        input
    };
    settings.overlay(SimSettings {
        vram: args.vram.clone(),
        gpus: args.gpus,
        max_loaded_models: args.max_loaded_models,
        num_parallel: args.num_parallel,
        keep_alive: args.server_keep_alive.clone(),
        calibrate: args.calibrate.as_ref().map(|dir| dir.display().to_string()),
        ..Default::default()
    });
    for (flag, v) in [
        ("--wait-second", args.wait_second),
        ("--vram-gb-hour", args.vram_gb_hour),
        ("--ram-gb-hour", args.ram_gb_hour),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(BadInput(format!("{flag} {v}: give a finite number of at least 0")).into());
        }
    }
    cost.wait_second = args.wait_second.unwrap_or(cost.wait_second);
    cost.vram_gb_hour = args.vram_gb_hour.unwrap_or(cost.vram_gb_hour);
    cost.ram_gb_hour = args.ram_gb_hour.unwrap_or(cost.ram_gb_hour);
    if args.cold_penalty.is_some() {
        cost.cold_penalty = args.cold_penalty;
    }
    let host = predict::Host::new(&settings, args.seed, &source)
        .map_err(|e| bad("host: ", &format!("{e:#}")))?;
    let log = input.as_ref();
    let (models, unit_of) =
        predict::resolve_models(log.scan(), &host, &cost).map_err(|e| bad("", &e))?;
    let mut policies = predict::fixed_policies(&given, !args.no_grid);
    if log.scan().has_keep_alive {
        policies.push(Policy::AsSent);
    }
    policies.extend([
        Policy::Histogram,
        Policy::Adaptive,
        Policy::PreWarm,
        Policy::Optimum,
    ]);
    if !args.quiet {
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
        progress: !args.quiet,
        train: args.train,
    };
    let prediction = predict::predict(log, &host, &models, &unit_of, &opts)?;
    let info = output::FolderInfo {
        time_scale: args.time_scale,
        seed: args.seed,
        cost,
        cold_threshold_ms: crate::folder::ms(args.cold_threshold),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&output::summary_json(&prediction, &info)?)?
            )?;
        } else {
            write!(out, "{}", output::table(&prediction))?;
            for line in output::verdict(&prediction) {
                writeln!(out, "{line}")?;
            }
        }
    }
    if !args.quiet {
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
        if !args.quiet {
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

/// Lays a server log's settings under the flags: its `server config` line's
/// OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS and OLLAMA_NUM_PARALLEL, and (when not
/// calibrating from a run folder) each model's median measured load time. Returns what
/// was taken, in words.
fn apply_log_settings(
    log: &crate::traffic::ollama_log::OllamaLog,
    settings: &mut SimSettings,
    loads: bool,
) -> Vec<String> {
    use crate::traffic::Source;
    let mut taken = Vec::new();
    if let Some(ka) = log.setting("OLLAMA_KEEP_ALIVE")
        && units::KeepAlive::parse(ka).is_ok()
    {
        settings.keep_alive = Some(ka.to_string());
        taken.push(format!("OLLAMA_KEEP_ALIVE={ka}"));
    }
    if let Some(n) = log
        .setting("OLLAMA_MAX_LOADED_MODELS")
        .and_then(|v| v.parse::<u32>().ok())
    {
        settings.max_loaded_models = Some(n);
        taken.push(format!("OLLAMA_MAX_LOADED_MODELS={n}"));
    }
    if let Some(n) = log
        .setting("OLLAMA_NUM_PARALLEL")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
    {
        settings.num_parallel = Some(n);
        taken.push(format!("OLLAMA_NUM_PARALLEL={n}"));
    }
    if !taken.is_empty() {
        taken = vec![format!(
            "{} from the log's server config line",
            taken.join(" ")
        )];
    }
    if loads {
        let catalogue = settings.catalogue();
        for (model, median, n) in log.load_medians() {
            if !log.scan().models.contains(&model) {
                continue;
            }
            if let Some(spec) = catalogue.resolve(&model) {
                let mut spec = spec.clone();
                spec.load_s = Some(median);
                spec.source = format!(
                    "load time: the median of {n} `llama-server started in … seconds` lines of {}; the rest: {}",
                    log.scan().path.display(),
                    spec.source
                );
                taken.push(format!(
                    "{model} loading in {median:.2} s (median of {n} `llama-server started` lines)"
                ));
                settings.models.push(spec);
            }
        }
    }
    taken
}
