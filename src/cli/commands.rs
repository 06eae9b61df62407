//! One short function per subcommand: load, run or render, print, and decide the exit.

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::analysis::Summary;
use crate::cli::{
    BadInput, CompareArgs, DoctorArgs, FleetArgs, FleetEngine, Interrupted, MergeArgs, ModelsArgs,
    ProxyArgs, ReportArgs, RunArgs, SimArgs, SwarmArgs, ValidateArgs,
};
use crate::folder::RunStatus;
use crate::run::open_loop::RunOptions;
use crate::run::request::Slice;
use crate::run::{self, RunOutcome, Target};
use crate::scenario;
use crate::shard::{self, Shard};
use crate::sim;
use crate::sim_settings::{FaultSettings, SimSettings};

pub(super) async fn run(args: RunArgs) -> Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    let plan = scenario::plan(&scenario);
    let cli_target = Target::from_args(&args.target).map_err(BadInput)?;
    let target = Target::resolve(cli_target.as_ref(), &scenario);
    check_target(&target)?;
    let start_at = args
        .start_at
        .as_deref()
        .map(shard::parse_start_at)
        .transpose()
        .map_err(|e| BadInput(e.0))?;
    let slice = match (&args.shard, args.shards) {
        (Some(text), shards) => Some(Slice {
            shard: Shard::parse(text, shards, |k| std::env::var(k).ok())
                .map_err(|e| BadInput(e.0))?,
            by: scenario.run.shard_by,
        }),
        (None, Some(n)) => {
            let launch = crate::fleet::launch::Launch {
                scenario_path: args.scenario.clone(),
                shards: n,
                target,
                out: args.out.clone(),
                start_at,
                prewarm: !args.no_prewarm,
            };
            return launch_shards(launch, &scenario, &plan, args.json, args.quiet).await;
        }
        (None, None) => None,
    };
    let options = RunOptions {
        target,
        out: args.out,
        pull: args.pull,
        prewarm: !args.no_prewarm,
        slice,
        start_at,
    };
    let (cancel, tx, progress) = observe(args.quiet);
    let outcome = run::open_loop::run(&scenario, &plan, &options, tx, cancel.clone()).await;
    let _ = progress.await;
    finish(outcome?, args.json, &cancel)
}

/// `kabench run --shards N` without `--shard`: N shard processes here, then the merge.
async fn launch_shards(
    launch: crate::fleet::launch::Launch,
    scenario: &scenario::Scenario,
    plan: &scenario::Plan,
    json: bool,
    quiet: bool,
) -> Result<()> {
    if launch.shards == 0 {
        return Err(BadInput("--shards 0: give at least 1 shard".into()).into());
    }
    let (cancel, tx, progress) = observe(quiet);
    let launched = crate::fleet::launch::launch(&launch, scenario, plan, &tx, &cancel).await;
    drop(tx);
    let _ = progress.await;
    let launched = launched?;
    let merged = &launched.merged;
    for w in &merged.warnings {
        eprintln!("warning: {w}");
    }
    let rendered = crate::report::render(&merged.dir, &crate::report::RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", merged.dir.display()))?;
    print_result(&read_summary(&merged.dir)?, json)?;
    eprintln!("{}", rendered.headline);
    eprintln!(
        "wrote {} from {} shards ({} requests, {} errors): open {}",
        merged.dir.display(),
        launch.shards,
        merged.rows,
        merged.errors,
        rendered.index_html.display()
    );
    if cancel.is_cancelled() {
        return Err(Interrupted(merged.dir.display().to_string()).into());
    }
    if !launched.failed.is_empty() {
        anyhow::bail!("shard process(es) failed: {}", launched.failed.join("; "));
    }
    Ok(())
}

pub(super) async fn swarm(args: SwarmArgs) -> Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    let plan = scenario::plan(&scenario);
    if args.users == Some(0) {
        return Err(BadInput(
            "--users 0: a swarm needs at least 1 user; give --users 1 or more (or leave it out for [swarm] users)".into(),
        )
        .into());
    }
    let target = Target::resolve(
        args.target.as_deref().map(Target::parse).as_ref(),
        &scenario,
    );
    check_target(&target)?;
    let options = run::closed_loop::SwarmOptions {
        target,
        out: args.out,
        users: args.users,
        run_time: args.run_time,
    };
    let (cancel, tx, progress) = observe(args.quiet);
    let outcome = run::closed_loop::run(&scenario, &plan, &options, tx, cancel.clone()).await;
    let _ = progress.await;
    finish(outcome?, args.json, &cancel)
}

/// An Ollama address the client cannot use is bad input (exit 2), before anything runs.
fn check_target(target: &Target) -> Result<()> {
    for url in &target.urls() {
        crate::ollama::OllamaClient::new(url).map_err(|e| {
            BadInput(format!(
                "target {url:?}: {e}; write an Ollama address such as http://127.0.0.1:11434 or host:11434, or use --target sim"
            ))
        })?;
    }
    Ok(())
}

/// Ctrl-C → the cancel token; progress events → stderr.
fn observe(
    quiet: bool,
) -> (
    CancellationToken,
    mpsc::UnboundedSender<run::ProgressEvent>,
    tokio::task::JoinHandle<()>,
) {
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if interrupt().await {
            eprintln!("\ninterrupted: stopping sends, waiting for requests in flight…");
            on_ctrl_c.cancel();
        }
    });
    let (tx, rx) = mpsc::unbounded_channel();
    // Quiet: nobody listens, so an event costs a failed send, not a task's wake-up.
    let progress = if quiet {
        drop(rx);
        tokio::spawn(async {})
    } else {
        tokio::spawn(crate::progress::show(rx, false))
    };
    (cancel, tx, progress)
}

/// Ctrl-C, or SIGTERM on Unix (what CI runners and `kill` send): true when one came.
async fn interrupt() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                _ = term.recv() => true,
            },
            Err(_) => tokio::signal::ctrl_c().await.is_ok(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Renders the finished run, prints its table and decides the outcome; a Ctrl-C that
/// came after the last request (while rendering) still ends it with exit 130.
fn finish(outcome: RunOutcome, json: bool, cancel: &CancellationToken) -> Result<()> {
    let rendered = crate::report::render(&outcome.dir, &crate::report::RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", outcome.dir.display()))?;
    print_result(&read_summary(&outcome.dir)?, json)?;
    eprintln!("{}", rendered.headline);
    eprintln!(
        "wrote {} ({} requests, {} errors): open {}",
        outcome.dir.display(),
        outcome.requests,
        outcome.errors,
        rendered.index_html.display()
    );
    decide(&outcome, cancel.is_cancelled())
}

/// The exit of a finished run: interrupted (by its status, or by a Ctrl-C seen after
/// the run, while rendering), failed, every request failed, or ok.
fn decide(outcome: &RunOutcome, interrupted: bool) -> Result<()> {
    if interrupted && outcome.status != RunStatus::Failed {
        return Err(Interrupted(outcome.dir.display().to_string()).into());
    }
    match outcome.status {
        RunStatus::Interrupted => Err(Interrupted(outcome.dir.display().to_string()).into()),
        RunStatus::Failed => Err(anyhow::anyhow!(
            "the run failed; see {}/run.json",
            outcome.dir.display()
        )),
        _ if outcome.requests > 0 && outcome.errors == outcome.requests => Err(anyhow::anyhow!(
            "every request failed; see {}/requests.csv",
            outcome.dir.display()
        )),
        _ => Ok(()),
    }
}

/// The `summary.json` that `report::render` just wrote.
fn read_summary(dir: &std::path::Path) -> Result<Summary> {
    let path = dir.join(crate::folder::SUMMARY_JSON);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub(super) fn fleet(args: FleetArgs) -> Result<()> {
    use crate::fleet::manifest::{self, Fleet, K8s, Slurm};
    let common = match &args.engine {
        FleetEngine::K8s(k) => &k.common,
        FleetEngine::Slurm(s) => &s.common,
    };
    if common.shards == 0 {
        return Err(BadInput("--shards 0: give at least 1 shard".into()).into());
    }
    let scenario = scenario::load(&common.scenario)?;
    let plan = scenario::plan(&scenario);
    let cli_target = Target::from_args(&common.target).map_err(BadInput)?;
    let target = Target::resolve(cli_target.as_ref(), &scenario);
    check_target(&target)?;
    if target == Target::Sim {
        return Err(BadInput(
            "the target is the simulator: every shard would run its own, and none would see the global arrivals; give the Ollama address(es) the shards share (--target, or [target] in the scenario)".into(),
        )
        .into());
    }
    // The barrier on a whole second, as people read and compare it.
    let start_at = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(
            (std::time::SystemTime::now() + common.start_delay)
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + 1),
        );
    let name = common.name.as_deref().map_or_else(
        || manifest::run_name(&scenario.name, start_at),
        manifest::dns_name,
    );
    let fleet = Fleet {
        scenario_text: scenario.source.clone(),
        scenario_path: manifest::absolute(&common.scenario),
        name: name.clone(),
        shards: common.shards,
        targets: common.target.clone(),
        start_at,
        run_span: run::open_loop::run_span(&plan, scenario.run.pause)?,
    };
    let text = match &args.engine {
        FleetEngine::K8s(k) => manifest::k8s(
            &fleet,
            &K8s {
                image: k.image.clone(),
                claim: k.claim.clone(),
                namespace: k.namespace.clone(),
            },
        ),
        FleetEngine::Slurm(s) => manifest::slurm(
            &fleet,
            &Slurm {
                out: manifest::absolute(
                    &s.out
                        .clone()
                        .unwrap_or_else(|| std::path::Path::new("reports").join(&name)),
                ),
                partition: s.partition.clone(),
                kabench: s.kabench.clone(),
            },
        ),
    };
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

pub(super) fn merge(args: MergeArgs) -> Result<()> {
    let merged = crate::fleet::merge::merge(&args.out, &args.shards)?;
    for w in &merged.warnings {
        eprintln!("warning: {w}");
    }
    let rendered = crate::report::render(&merged.dir, &crate::report::RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", merged.dir.display()))?;
    print_result(&read_summary(&merged.dir)?, args.json)?;
    eprintln!("{}", rendered.headline);
    eprintln!(
        "merged {} shard folder(s) into {} ({} requests, {} errors): open {}",
        args.shards.len(),
        merged.dir.display(),
        merged.rows,
        merged.errors,
        rendered.index_html.display()
    );
    Ok(())
}

pub(super) fn validate(args: ValidateArgs) -> Result<()> {
    let mut failed = None;
    for file in &args.files {
        match scenario::load(file) {
            Ok(s) => {
                let plan = scenario::plan(&s);
                let requests: u64 = plan
                    .cells
                    .iter()
                    .map(|c| run::request::planned_requests(c).unwrap_or(0))
                    .sum();
                println!(
                    "{}: ok: scenario {:?}, {} cell(s), {} stream(s), {} request(s)",
                    file.display(),
                    s.name,
                    plan.cells.len(),
                    s.streams.len(),
                    requests
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(BadInput(format!("{} is not a valid scenario", e.path.display())).into()),
        None => Ok(()),
    }
}

pub(super) fn report(args: ReportArgs) -> Result<()> {
    let options = crate::report::RenderOptions {
        cold_threshold: args.cold_threshold,
    };
    let rendered = crate::report::render(&args.dir, &options)?;
    print_result(&read_summary(&args.dir)?, args.json)?;
    eprintln!("{}", rendered.headline);
    eprintln!("wrote {}", rendered.index_html.display());
    Ok(())
}

pub(super) fn compare(args: CompareArgs) -> Result<()> {
    let thresholds = crate::report::compare::CompareThresholds {
        p99_pct: args.max_p99_increase,
        cold_ratio_abs: args.max_cold_ratio_increase,
        vram_pct: args.max_vram_increase,
        error_rate_abs: args.max_error_rate_increase,
    };
    for (flag, v) in [
        ("--max-p99-increase", thresholds.p99_pct),
        ("--max-cold-ratio-increase", thresholds.cold_ratio_abs),
        ("--max-vram-increase", thresholds.vram_pct),
        ("--max-error-rate-increase", thresholds.error_rate_abs),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(BadInput(format!("{flag} {v}: give a finite number of at least 0")).into());
        }
    }
    let comparison =
        crate::report::compare::compare_runs(&args.base, &args.new, &thresholds, args.force)?;
    print!("{}", comparison.to_text());
    let regressions = comparison.regressions();
    if comparison.changes.is_empty() {
        Err(anyhow::anyhow!(
            "nothing to compare: no cell and stream of {} matches {}",
            args.new.display(),
            args.base.display()
        ))
    } else if regressions.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} stream(s) past the thresholds",
            regressions.len()
        ))
    }
}

pub(super) async fn serve_sim(args: SimArgs) -> Result<()> {
    let mut settings = match &args.scenario {
        Some(path) => scenario::load(path)?.sim,
        None => SimSettings::default(),
    };
    settings.overlay(SimSettings {
        vram: args.vram,
        gpus: args.gpus,
        max_loaded_models: args.max_loaded_models,
        num_parallel: args.num_parallel,
        max_queue: args.max_queue,
        keep_alive: args.keep_alive,
        context_length: args.context_length,
        load_timeout: args.load_timeout,
        page_cache_warm: args.page_cache_warm.then_some(true),
        calibrate: args.calibrate.map(|dir| dir.display().to_string()),
        faults: FaultSettings {
            error_500: args.fault_500,
            midstream_error: args.fault_midstream_error,
            drop_connection: args.fault_drop_connection,
            slow_stream: args.fault_slow_stream,
            stalled_load: args.fault_stalled_load,
            stall: args.fault_stall,
            failed_load: args.fault_failed_load,
            slow_factor: None,
        },
        ..Default::default()
    });
    if let Some(dir) = &settings.calibrate {
        let calibration = crate::calibrate::calibrate(std::path::Path::new(dir))
            .map_err(|e| BadInput(format!("--calibrate: {e:#}")))?;
        for line in calibration.describe() {
            eprintln!("{line}");
        }
    }
    settings
        .sched_config(args.seed)
        .map_err(|e| BadInput(format!("simulator settings: {e}")))?;
    let handle = sim::spawn(&settings, args.seed, args.listen).await?;
    eprintln!(
        "kabench sim: an Ollama-compatible model of Ollama's scheduler (rules of Ollama 0.32.15), listening on http://{}",
        handle.addr
    );
    eprintln!(
        "point any Ollama client at it: OLLAMA_HOST=http://{} ; Ctrl-C stops it",
        handle.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    Ok(())
}

pub(super) fn models(args: ModelsArgs) -> Result<()> {
    use std::io::Write;
    let listing = crate::sim_settings::catalogue_listing(args.num_ctx, args.sources)?;
    std::io::stdout().lock().write_all(listing.as_bytes())?;
    Ok(())
}

/// Prints the per-cell table (or the JSON document) on stdout.
fn print_result(summary: &Summary, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(summary)?)?;
    } else {
        out.write_all(crate::report::table::result_table(summary).as_bytes())?;
    }
    Ok(())
}

pub(super) async fn doctor(args: DoctorArgs) -> Result<()> {
    let invocation = crate::doctor::cli::Invocation {
        target: args.target,
        model: args.model,
        embed_model: args.embed_model,
        json: args.json,
        dry_run: args.dry_run,
    };
    let stop = crate::doctor::Stop::default();
    let (first, second) = (stop.stop.clone(), stop.abandon.clone());
    let listener = tokio::spawn(async move {
        if interrupt().await {
            eprintln!("\ninterrupted: putting back what the doctor found (Ctrl-C again to skip)…");
            first.cancel();
            if interrupt().await {
                second.cancel();
            }
        }
    });
    let result = crate::doctor::cli::command(invocation, &stop).await;
    listener.abort();
    result.map_err(|e| {
        let bad = e.is::<crate::doctor::ModelMissing>() || e.is::<crate::doctor::cli::BadTarget>();
        if bad {
            BadInput(format!("{e:#}")).into()
        } else {
            e
        }
    })
}

pub(super) async fn proxy(args: ProxyArgs) -> Result<()> {
    let raw = args
        .upstream
        .or_else(|| std::env::var("OLLAMA_HOST").ok())
        .unwrap_or_default();
    let upstream = crate::ollama::host::parse_ollama_host(&raw)
        .map_err(|e| BadInput(format!("--upstream {raw:?}: {e}")))?;
    let rewrite = match &args.rewrite_keep_alive {
        Some(k) => Some(
            crate::units::KeepAlive::parse(k)
                .map_err(|e| BadInput(format!("--rewrite-keep-alive {k:?}: {e}")))?
                .to_json(),
        ),
        None => None,
    };
    let config = crate::proxy::ProxyConfig {
        listen: args.listen,
        upstream: upstream.as_str().trim_end_matches('/').to_string(),
        out: args.out.clone(),
        rewrite_keep_alive: rewrite,
        quiet: args.quiet,
    };
    let handle = crate::proxy::spawn(config).await?;
    eprintln!(
        "kabench proxy: http://{} -> {}, logging to {}; Ctrl-C stops it",
        handle.addr,
        upstream.as_str().trim_end_matches('/'),
        args.out.join(crate::proxy::log::LOG_CSV).display()
    );
    interrupt().await;
    let stats = handle.shutdown(std::time::Duration::from_secs(5)).await;
    eprintln!(
        "kabench proxy: stopped; {} request(s) logged to {}",
        stats.rows,
        args.out.join(crate::proxy::log::LOG_CSV).display()
    );
    match stats.exported {
        Ok(n) if n > 0 => {
            let rendered =
                crate::report::render(&args.out, &crate::report::RenderOptions::default())?;
            eprintln!("{}", rendered.headline);
            eprintln!(
                "wrote {} (observed, not swept)",
                rendered.index_html.display()
            );
        }
        Ok(_) => eprintln!("no model request passed: no report"),
        Err(e) => eprintln!("could not write the run folder for the report: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;
    use std::path::PathBuf;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_ctrl_c_while_rendering_exits_130_not_0() {
        let outcome = |status| RunOutcome {
            dir: PathBuf::from("reports/x"),
            status,
            requests: 4,
            errors: 0,
        };
        let interrupted = |r: Result<()>| r.is_err_and(|e| e.is::<Interrupted>());
        assert!(decide(&outcome(RunStatus::Complete), false).is_ok());
        assert!(interrupted(decide(&outcome(RunStatus::Complete), true)));
        assert!(interrupted(decide(&outcome(RunStatus::Interrupted), false)));
        let failed = decide(&outcome(RunStatus::Failed), true).unwrap_err();
        assert!(!failed.is::<Interrupted>());
    }
}
