//! The Slurm script of `kabench fleet slurm`: the scenario written into the shared
//! run folder, an array of the shards and the merge as a job depending on it.

use std::fmt::Write;
use std::time::SystemTime;

use super::{Fleet, Unsafe, base64, check_value, sh};
use crate::shard;
use crate::units::limits::printable;

/// Slurm specifics.
#[derive(Debug, Clone)]
pub struct Slurm {
    /// The run folder on the shared filesystem.
    pub out: String,
    /// `--partition`, when given.
    pub partition: Option<String>,
    /// `--account`, when given.
    pub account: Option<String>,
    /// `--time` of the shards, when given (else the barrier's wait, the run's span
    /// and ten minutes).
    pub time: Option<String>,
    /// `--cpus-per-task` of each shard (a load generator needs one).
    pub cpus_per_task: u32,
    /// The kabench executable on the nodes.
    pub kabench: String,
}

/// The most `--cpus-per-task` a shard may ask for.
pub const MAX_CPUS_PER_TASK: u32 = 256;

/// The file the Slurm script writes the scenario to, in the shared run folder: every
/// array task runs that copy (the submit host's path may not exist on the nodes), and
/// `merge` accepts it beside the shard folders.
pub const SLURM_SCENARIO: &str = "fleet-scenario.toml";

/// The Slurm script: it writes the scenario into the shared run folder, submits the
/// array of shards and the merge, which runs once every shard ended, however it ended
/// (`afterany`: a failed, cancelled or late shard is merged as missing). Every word
/// of it that a user gave is single-quoted, the output paths, the partition, the
/// account and the time limit go on `sbatch`'s command line, and the here-documents
/// (quoted, so nothing in them is expanded when submitting) hold no user text that
/// could end them (the scenario travels base64, whose alphabet has no `_`).
pub fn slurm(fleet: &Fleet, s: &Slurm) -> Result<String, Unsafe> {
    fleet.check()?;
    check_value("--out", &s.out)?;
    check_value("--kabench", &s.kabench)?;
    for (flag, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--time", &s.time),
    ] {
        if let Some(v) = value {
            check_value(flag, v)?;
        }
    }
    if s.cpus_per_task == 0 || s.cpus_per_task > MAX_CPUS_PER_TASK {
        return Err(Unsafe(format!(
            "--cpus-per-task {}: give 1 to {MAX_CPUS_PER_TASK} (the limit)",
            s.cpus_per_task
        )));
    }
    let n = fleet.shards;
    let out = &s.out;
    let copy = format!("{out}/{SLURM_SCENARIO}");
    let args = fleet.run_args(&copy, out, sh).join(" ");
    // The partition and the account for both jobs; --time for the shards only (the
    // merge keeps its own 30 minutes).
    let mut on_line = String::new();
    for (flag, value) in [("--partition", &s.partition), ("--account", &s.account)] {
        if let Some(v) = value {
            let _ = write!(on_line, " {flag}={}", sh(v));
        }
    }
    let shards_time = s
        .time
        .as_ref()
        .map_or(String::new(), |t| format!(" --time={}", sh(t)));
    // sbatch reads `%` in an output path as a pattern (%j, %A, %a); `%%` is a `%`.
    let log = |file: &str| sh(&format!("{}/{file}", out.replace('%', "%%")));
    let merge_dirs = (0..n)
        .map(|i| {
            sh(&format!(
                "{out}/{}",
                shard::Shard { index: i, count: n }.dir_name()
            ))
        })
        .collect::<Vec<_>>()
        .join(" ");
    // The shards' limit: the wait for the barrier, the run's span and ten minutes
    // (a --time flag replaces it on sbatch's command line).
    let ahead = shard::ms_between(fleet.start_at, SystemTime::now()).max(0.0) as u64 / 1000;
    let minutes = (fleet.run_span.as_secs() + ahead).div_ceil(60) + 10;
    let scenario_b64 = base64(fleet.scenario_text.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(format!(
        "#!/bin/bash
# kabench: {n} shards of one global schedule as a Slurm array, in step from
# {start}; then `kabench merge` as a job that runs once every shard ended.
# Submit it now (the shards must start before the barrier): bash THIS_FILE
#
# Shared file systems: the run folder
#   {out_show}
# must be one file system mounted at that path on this host, on every node the
# shards may run on and on the merge's node (the script writes the scenario there,
# each shard writes its folder there, the merge reads them all). The kabench
# executable ({kabench_show}) must be on every node, at that path or on the PATH.
# Nothing else is shared.
#
# A shard that fails, is cancelled or starts more than {tolerance} after the barrier
# (it then sends nothing and leaves a folder marked late) is merged as missing: the
# merge depends on the array with afterany and names the missing shards in its
# headline. Each shard is one task of {cpus} CPU(s) (--cpus-per-task).
set -euo pipefail
mkdir -p -- {out_q}
base64 -d > {copy_q} <<'KABENCH_SCENARIO_END'
{scenario_b64}
KABENCH_SCENARIO_END
shards=$(sbatch --parsable{on_line}{shards_time} --output={shard_log} <<'SLURM'
#!/bin/bash
#SBATCH --job-name={name}-shards
#SBATCH --array=0-{last}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={minutes}
exec {kabench} {args}
SLURM
)
sbatch --parsable{on_line} --output={merge_log} --dependency=afterany:\"${{shards}}\" <<'SLURM'
#!/bin/bash
#SBATCH --job-name={name}-merge
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=30
exec {kabench} merge {out_q} {merge_dirs}
SLURM
printf 'submitted the shards as job %s; the merged run folder will be %s\\n' \"${{shards}}\" {out_q}
",
        start = shard::format_time(fleet.start_at),
        out_q = sh(out),
        out_show = printable(out),
        kabench_show = printable(&s.kabench),
        copy_q = sh(&copy),
        shard_log = log("slurm-%A_%a.log"),
        merge_log = log("slurm-merge-%j.log"),
        name = fleet.name,
        last = n - 1,
        cpus = s.cpus_per_task,
        tolerance = humantime::format_duration(fleet.late_tolerance),
        kabench = sh(&s.kabench),
    ))
}
