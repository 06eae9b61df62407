//! `kabench run --shards N`: a sharded run on this machine, for testing the fleet path
//! and for one machine too big for one load generator. It starts the target once (the
//! embedded simulator, or the given Ollama hosts), so the server sees the global
//! arrival pattern, prewarms it, sets a start barrier a few seconds ahead, spawns N
//! processes of this executable each with `JOB_COMPLETION_INDEX=i` exactly as a
//! Kubernetes Indexed Job would, waits for them, and merges their folders. Knows
//! nothing of how a shard runs its cells.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fleet::merge::{self, Merged};
use crate::folder::TargetKind;
use crate::run::open_loop::{self, RunnerConfig};
use crate::run::{Target, recorder, target};
use crate::scenario::{Plan, Scenario};
use crate::shard::{self, K8S_INDEX_ENV};

/// How long after the launch the shards start (their start-up and model checks).
pub const LEAD_TIME: Duration = Duration::from_secs(3);

/// What to launch.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The scenario file, as given (passed on to every shard).
    pub scenario_path: PathBuf,
    /// Shards.
    pub shards: u32,
    /// The target.
    pub target: Target,
    /// The merged run folder; the shard folders go inside it.
    pub out: Option<PathBuf>,
    /// The start barrier; default now + [`LEAD_TIME`].
    pub start_at: Option<SystemTime>,
    /// Prewarm the target once before the barrier.
    pub prewarm: bool,
    /// `--repeat N`, passed on to every shard (`None`: the scenario's `[run] repeat`).
    pub repeat: Option<u32>,
}

/// A finished launch: the merge, and the shards whose process failed.
#[derive(Debug)]
pub struct Launched {
    /// The merge of the shard folders.
    pub merged: Merged,
    /// `shard-<i>-of-<N>: exit <code>` of every shard process that did not exit 0.
    pub failed: Vec<String>,
}

/// Runs the shards against one shared target and merges them into `out`.
pub async fn launch(
    launch: &Launch,
    scenario: &Scenario,
    plan: &Plan,
    progress: &mpsc::UnboundedSender<crate::run::ProgressEvent>,
    cancel: &CancellationToken,
) -> Result<Launched> {
    let out = launch
        .out
        .clone()
        .unwrap_or_else(|| recorder::default_run_dir(&scenario.name));
    // The merge at the end refuses what it would overwrite: refuse it before the run.
    super::merge::check_out(&out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    target::with_target(scenario, &launch.target, async |sim| {
        let timeout = scenario.run.timeout;
        let (_, clients, _) = target::connect_all(&launch.target, sim, timeout, cancel).await?;
        for client in &clients {
            target::check_models(client, plan, false, timeout, progress, cancel).await?;
        }
        if launch.prewarm {
            let config = RunnerConfig::from_run(&scenario.run);
            for client in &clients {
                open_loop::prewarm(client, plan, &config, progress, cancel).await;
                let _ =
                    crate::run::unload_all_until(client, scenario.run.unload_timeout, cancel).await;
            }
        }
        let urls: Vec<String> = clients.iter().map(|c| c.base_url().to_string()).collect();
        let start_at = launch
            .start_at
            .unwrap_or_else(|| SystemTime::now() + LEAD_TIME);
        // A given barrier may have passed while the target was checked and prewarmed.
        shard::check_barrier(start_at, SystemTime::now(), "--start-at").map_err(|e| {
            anyhow::anyhow!(
                "{}; the target's checks and prewarm took until now: give a later --start-at (or --no-prewarm)",
                e.0
            )
        })?;
        let _ = progress.send(crate::run::ProgressEvent::Note(format!(
            "starting {} shards against {}, in step from {}",
            launch.shards,
            urls.join(", "),
            shard::format_time(start_at)
        )));
        let failed = run_shards(launch, &out, &urls, start_at, progress, cancel).await?;
        let dirs: Vec<PathBuf> = (0..launch.shards)
            .map(|index| {
                out.join(
                    shard::Shard {
                        index,
                        count: launch.shards,
                    }
                    .dir_name(),
                )
            })
            .collect();
        // The shards saw an Ollama address; the merged run says it was the simulator.
        let merged = merge::merge_shaped(&out, &dirs, |meta| {
            if let Some(h) = sim {
                meta.target.kind = TargetKind::Sim;
                let mut host = h.state.describe(&recorder::plan_models(plan));
                let stats = h.state.stats();
                host.loads = Some(stats.loads);
                host.evictions = Some(stats.evictions);
                host.expirations = Some(stats.expirations);
                meta.sim = Some(host);
            }
        })?;
        Ok(Launched { merged, failed })
    })
    .await
}

/// Spawns the shard processes and waits for them; returns the ones that failed.
async fn run_shards(
    launch: &Launch,
    out: &Path,
    urls: &[String],
    start_at: SystemTime,
    progress: &mpsc::UnboundedSender<crate::run::ProgressEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the kabench executable")?;
    let mut children = Vec::new();
    for index in 0..launch.shards {
        let name = shard::Shard {
            index,
            count: launch.shards,
        }
        .dir_name();
        let log = std::fs::File::create(out.join(format!("{name}.log")))
            .with_context(|| format!("creating {}/{name}.log", out.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("run").arg(&launch.scenario_path);
        if let Some(n) = launch.repeat {
            cmd.args(["--repeat", &n.to_string()]);
        }
        for url in urls {
            cmd.args(["--target", url]);
        }
        let child = cmd
            .arg("--out")
            .arg(out)
            .args(["--shard", "auto", "--shards", &launch.shards.to_string()])
            .args(["--start-at", &shard::format_time(start_at), "--quiet"])
            .env(K8S_INDEX_ENV, index.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the shard log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        children.push((name, child));
    }
    let mut failed = Vec::new();
    // The shards are quiet: until the barrier, say now and then that they wait for it.
    let mut next_note = SystemTime::now();
    for (name, mut child) in children {
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {name}"))?
            {
                break status;
            }
            if cancel.is_cancelled() {
                // The shards got the same Ctrl-C (one process group); give them time to
                // leave their folders complete.
                let status = tokio::task::spawn_blocking(move || child.wait())
                    .await
                    .context("waiting for a shard")??;
                break status;
            }
            let now = SystemTime::now();
            if let Ok(left) = start_at.duration_since(now)
                && left >= Duration::from_secs(1)
                && now >= next_note
            {
                let _ = progress.send(crate::run::ProgressEvent::Note(format!(
                    "the shards wait for the start barrier {}: {} left",
                    shard::format_time(start_at),
                    humantime::format_duration(Duration::from_secs(left.as_secs()))
                )));
                next_note = now
                    + if left > Duration::from_secs(300) {
                        Duration::from_secs(60)
                    } else {
                        Duration::from_secs(10)
                    };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !status.success() {
            failed.push(format!(
                "{name}: exit {} (see {}/{name}.log)",
                status.code().map_or("by signal".into(), |c| c.to_string()),
                out.display()
            ));
        }
    }
    Ok(failed)
}
