//! `kabench fleet k8s|slurm`: the manifest or script that runs a scenario as shards on
//! a cluster, printed on stdout.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::BadInput;
use super::output::check_target;
use crate::cli::{FleetArgs, FleetEngine};
use crate::fleet::manifest::{self, Fleet, K8s, Slurm};
use crate::run::{self, Target};
use crate::scenario;
use crate::shard;

pub(super) fn fleet(args: FleetArgs) -> Result<()> {
    let common = match &args.engine {
        FleetEngine::K8s(k) => &k.common,
        FleetEngine::Slurm(s) => &s.common,
    };
    shard::check_count(common.shards, "--shards").map_err(|e| BadInput(e.0))?;
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
    if common.start_delay > shard::MAX_BARRIER_AHEAD {
        return Err(BadInput(format!(
            "--start-delay {}: over the limit of {} (the start barrier may be at most that far ahead)",
            humantime::format_duration(common.start_delay),
            humantime::format_duration(shard::MAX_BARRIER_AHEAD)
        ))
        .into());
    }
    if common.late_tolerance < shard::MIN_LATE_TOLERANCE
        || common.late_tolerance > shard::MAX_LATE_TOLERANCE
    {
        return Err(BadInput(format!(
            "--late-tolerance {}: give {} to {} (how late after the barrier a shard may start and still send)",
            humantime::format_duration(common.late_tolerance),
            humantime::format_duration(shard::MIN_LATE_TOLERANCE),
            humantime::format_duration(shard::MAX_LATE_TOLERANCE)
        ))
        .into());
    }
    // The barrier on a whole second, as people read and compare it.
    let start_at = UNIX_EPOCH
        + Duration::from_secs(
            (SystemTime::now() + common.start_delay)
                .duration_since(UNIX_EPOCH)
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
        late_tolerance: common.late_tolerance,
    };
    let text = match &args.engine {
        FleetEngine::K8s(k) => {
            // In a cluster, a loopback target is each pod itself.
            for url in target.urls() {
                manifest::k8s::check_cluster_target("the target", &url)
                    .map_err(|e| BadInput(e.0))?;
            }
            let k8s = K8s {
                image: k.image.clone(),
                claim: k.claim.clone(),
                namespace: k.namespace.clone(),
                new_claim: k.new_claim.clone(),
                storage_class: k.storage_class.clone(),
                cpu: (k.cpu_request.clone(), k.cpu_limit.clone()),
                memory: (k.memory_request.clone(), k.memory_limit.clone()),
                ttl_s: u32::try_from(k.ttl.as_secs().min(i32::MAX as u64)).unwrap_or(0),
            };
            manifest::k8s(&fleet, &k8s).map_err(|e| BadInput(e.0))?
        }
        FleetEngine::Slurm(s) => {
            let out = match &s.out {
                Some(out) => manifest::absolute(out),
                None => {
                    // Derived from the working directory, which may hold anything.
                    let out = manifest::absolute(&Path::new("reports").join(&name));
                    manifest::check_value(
                        "the default --out (reports/<name> in the working directory; give --out)",
                        &out,
                    )
                    .map_err(|e| BadInput(e.0))?;
                    out
                }
            };
            let slurm = Slurm {
                out,
                partition: s.partition.clone(),
                account: s.account.clone(),
                time: s.time.clone(),
                cpus_per_task: s.cpus_per_task,
                kabench: s.kabench.clone(),
            };
            manifest::slurm(&fleet, &slurm).map_err(|e| BadInput(e.0))?
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
