//! `kabench run`: a scenario run in this process, one shard of it (`--shard`), or
//! `--shards N` shard processes here and their merge.

use anyhow::Result;

use super::output::{self, check_target};
use super::signal::watch;
use super::{BadInput, Interrupted};
use crate::cli::RunArgs;
use crate::fleet::launch::{self, Launch};
use crate::run::open_loop::RunOptions;
use crate::run::request::Slice;
use crate::run::{self, Target};
use crate::scenario;
use crate::shard::{self, Shard};

pub(super) async fn run(args: RunArgs) -> Result<()> {
    // The barrier is checked against the process's start, before anything else: a
    // shard that starts after it is not refused but ends late at it (it sends nothing).
    if let Some(at) = args.start_at {
        let now = std::time::SystemTime::now();
        if args.shard.is_some() {
            shard::check_shard_barrier(at, now, "--start-at")
        } else {
            shard::check_barrier(at, now, "--start-at")
        }
        .map_err(|e| BadInput(e.0))?;
    }
    if args.late_tolerance < shard::MIN_LATE_TOLERANCE {
        return Err(BadInput(format!(
            "--late-tolerance {}: under the limit of {} (a process wakes that late at a barrier by itself); give at least that",
            humantime::format_duration(args.late_tolerance),
            humantime::format_duration(shard::MIN_LATE_TOLERANCE)
        ))
        .into());
    }
    if args.late_tolerance > shard::MAX_LATE_TOLERANCE {
        return Err(BadInput(format!(
            "--late-tolerance {}: over the limit of {} (a shard that late no longer runs in step with the others)",
            humantime::format_duration(args.late_tolerance),
            humantime::format_duration(shard::MAX_LATE_TOLERANCE)
        ))
        .into());
    }
    if let (None, Some(n)) = (&args.shard, args.shards) {
        let limit = shard::max_local_shards();
        if n > limit {
            return Err(BadInput(format!(
                "--shards {n} is over the limit of {limit} shard processes on this machine (4 per CPU, at least 64); run more shards on a cluster (kabench fleet k8s|slurm)"
            ))
            .into());
        }
    }
    let mut scenario = scenario::load(&args.scenario)?;
    if let Some(n) = args.repeat {
        if n > scenario::MAX_REPEAT {
            return Err(BadInput(format!(
                "--repeat {n} is over the limit: give how many times each cell runs, 1 to {}",
                scenario::MAX_REPEAT
            ))
            .into());
        }
        scenario.run.repeat = n;
    }
    let plan = scenario::plan(&scenario);
    if let Some(warning) = super::validate::over_report_limit(super::validate::planned_total(&plan))
    {
        eprintln!("warning: {warning}");
    }
    let cli_target = Target::from_args(&args.target).map_err(BadInput)?;
    let target = Target::resolve(cli_target.as_ref(), &scenario);
    check_target(&target)?;
    let slice = match (&args.shard, args.shards) {
        (Some(text), shards) => Some(Slice {
            shard: Shard::parse(text, shards, |k| std::env::var(k).ok())
                .map_err(|e| BadInput(e.0))?,
            by: scenario.run.shard_by,
        }),
        (None, Some(shards)) => {
            let launch = Launch {
                scenario_path: args.scenario.clone(),
                shards,
                target,
                out: args.out.clone(),
                start_at: args.start_at,
                prewarm: !args.no_prewarm,
                repeat: args.repeat,
            };
            return launch_shards(
                launch,
                &scenario,
                &plan,
                args.summary.json,
                args.summary.quiet,
            )
            .await;
        }
        (None, None) => None,
    };
    let options = RunOptions {
        target,
        out: args.out,
        pull: args.pull,
        prewarm: !args.no_prewarm,
        slice,
        start_at: args.start_at,
        late_tolerance: args.late_tolerance,
    };
    let w = watch(args.summary.quiet);
    let outcome = run::open_loop::run(&scenario, &plan, &options, w.events, w.cancel.clone()).await;
    let _ = w.progress.await;
    let outcome = outcome?;
    if outcome.status == crate::folder::RunStatus::Late {
        // Nothing was sent: there is no report to render, only the folder that tells
        // merge this shard is missing.
        anyhow::bail!(
            "this shard sent nothing and left {} marked late (see its run.json): merge counts it missing; start the shards before the barrier (a later --start-at, or a larger --late-tolerance)",
            outcome.dir.display()
        );
    }
    output::finish(outcome, args.summary.json, w.cancel.is_cancelled())
}

/// `kabench run --shards N` without `--shard`: N shard processes here, then the merge.
async fn launch_shards(
    launch: Launch,
    scenario: &scenario::Scenario,
    plan: &scenario::Plan,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let w = watch(quiet);
    let launched = launch::launch(&launch, scenario, plan, &w.events, &w.cancel).await;
    drop(w.events);
    let _ = w.progress.await;
    let launched = launched?;
    let merged = &launched.merged;
    for warning in &merged.warnings {
        eprintln!("warning: {warning}");
    }
    let rendered = output::render(&merged.dir)?;
    output::print(&merged.dir, &rendered, json)?;
    eprintln!(
        "wrote {} from {} shards ({} requests, {} errors): open {}",
        merged.dir.display(),
        launch.shards,
        merged.rows,
        merged.errors,
        rendered.index_html.display()
    );
    if w.cancel.is_cancelled() {
        return Err(Interrupted(merged.dir.display().to_string()).into());
    }
    if !launched.failed.is_empty() {
        anyhow::bail!("shard process(es) failed: {}", launched.failed.join("; "));
    }
    Ok(())
}
