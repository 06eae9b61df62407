//! `kabench fleet k8s|slurm`: the text that runs a sharded scenario on the engines
//! teams already have, with no coordinator of kabench's own. For Kubernetes, a
//! ConfigMap holding the scenario, an Indexed Job of N pods (each `kabench run --shard
//! auto`, its index from `JOB_COMPLETION_INDEX`) writing to a shared volume, and a
//! merge Job that waits for the N shard folders to end and runs `kabench merge`. For
//! Slurm, a bash script that submits an array of N tasks and the merge as a dependent
//! job (`--dependency=afterok`). Both fix one start barrier so the shards keep in step.
//! Knows nothing of how a shard runs.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::shard::{self, SHARDS_ENV};

/// What every manifest needs.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The scenario's text (carried in the ConfigMap).
    pub scenario_text: String,
    /// The scenario file as the shards will read it (Slurm: a path on the shared
    /// filesystem).
    pub scenario_path: String,
    /// A DNS-safe name for the jobs and folders.
    pub name: String,
    /// Shards.
    pub shards: u32,
    /// `--target` for every shard (empty: the scenario's `[target]`).
    pub targets: Vec<String>,
    /// The start barrier.
    pub start_at: SystemTime,
    /// How long the whole sharded run takes after the barrier (the merge waits that
    /// long and some more for the shards to end).
    pub run_span: Duration,
}

/// Kubernetes specifics.
#[derive(Debug, Clone)]
pub struct K8s {
    /// The kabench image.
    pub image: String,
    /// A ReadWriteMany PersistentVolumeClaim shared by the shards and the merge.
    pub claim: String,
    /// Namespace (none: the current one).
    pub namespace: Option<String>,
}

/// Slurm specifics.
#[derive(Debug, Clone)]
pub struct Slurm {
    /// The run folder on the shared filesystem.
    pub out: String,
    /// `--partition`, when given.
    pub partition: Option<String>,
    /// The kabench executable on the nodes.
    pub kabench: String,
}

/// A name Kubernetes and file systems accept: lowercase letters, digits and `-`, at
/// most 40 characters, from `text`.
pub fn dns_name(text: &str) -> String {
    let mut out: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(40);
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "kabench".into()
    } else {
        out
    }
}

/// A YAML (and JSON) double-quoted string.
fn q(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A shell single-quoted word.
pub fn sh(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Fleet {
    fn run_args(&self, scenario: &str, out: &str, quote: fn(&str) -> String) -> Vec<String> {
        let mut args = vec!["run".to_string(), scenario.to_string()];
        for t in &self.targets {
            args.push("--target".into());
            args.push(t.clone());
        }
        args.extend([
            "--shard".into(),
            "auto".into(),
            "--shards".into(),
            self.shards.to_string(),
            "--start-at".into(),
            shard::format_time(self.start_at),
            "--out".into(),
            out.to_string(),
            "--quiet".into(),
        ]);
        args.iter().map(|a| quote(a)).collect()
    }

    fn shard_glob(&self, out: &str) -> String {
        format!("{out}/shard-*-of-{}", self.shards)
    }
}

/// The Kubernetes manifest: a ConfigMap, the Indexed Job of the shards and the merge
/// Job, as one multi-document YAML.
pub fn k8s(fleet: &Fleet, k: &K8s) -> String {
    let name = &fleet.name;
    let runs = format!("/runs/{name}");
    let ns = k
        .namespace
        .as_ref()
        .map_or(String::new(), |n| format!("\n  namespace: {}", q(n)));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# kabench: {} shards of one global schedule, in step from {} (apply it before then),\n\
         # then the merge. The shards write {runs}/shard-<i>-of-{} on the claim {};\n\
         # the merged run folder is {runs} (copy it out and open index.html).",
        fleet.shards,
        shard::format_time(fleet.start_at),
        fleet.shards,
        k.claim
    );
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}{ns}\ndata:\n  scenario.toml: |",
        q(&format!("{name}-scenario"))
    );
    for line in fleet.scenario_text.lines() {
        if line.trim().is_empty() {
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
    let args = fleet.run_args("/scenario/scenario.toml", &runs, q);
    let _ = writeln!(out, "---");
    let _ = write!(
        out,
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {job}{ns}
  labels:
    app.kubernetes.io/name: kabench
    kabench/run: {name_q}
spec:
  completionMode: Indexed
  completions: {n}
  parallelism: {n}
  # A shard retried later would miss the start barrier: failures are merged as missing.
  backoffLimit: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kabench
        kabench/run: {name_q}
    spec:
      restartPolicy: Never
      containers:
        - name: shard
          image: {image}
          command: [\"kabench\"]
          args: [{args}]
          env:
            - name: {shards_env}
              value: {n_q}
          volumeMounts:
            - name: runs
              mountPath: /runs
            - name: scenario
              mountPath: /scenario
              readOnly: true
      volumes:
        - name: runs
          persistentVolumeClaim:
            claimName: {claim}
        - name: scenario
          configMap:
            name: {cm}
",
        job = q(&format!("{name}-shards")),
        name_q = q(name),
        n = fleet.shards,
        n_q = q(&fleet.shards.to_string()),
        image = q(&k.image),
        args = args.join(", "),
        shards_env = SHARDS_ENV,
        claim = q(&k.claim),
        cm = q(&format!("{name}-scenario")),
    );
    // The merge waits until every shard folder's run.json has ended (or the run's span
    // and ten minutes more have passed), then merges what is there.
    let wait = fleet.run_span.as_secs() + 600;
    let script = format!(
        "deadline=$(( $(date +%s) + {secs} )); \
         while [ \"$(grep -l '\"ended_at\": \"' {glob}/run.json 2>/dev/null | wc -l)\" -lt {n} ] && [ \"$(date +%s)\" -lt \"$deadline\" ]; do sleep 10; done; \
         exec kabench merge {runs} {glob_all}",
        secs = wait + shard::ms_between(fleet.start_at, SystemTime::now()).max(0.0) as u64 / 1000,
        glob = fleet.shard_glob(&runs),
        n = fleet.shards,
        glob_all = (0..fleet.shards)
            .map(|i| format!(
                "{runs}/{}",
                shard::Shard {
                    index: i,
                    count: fleet.shards
                }
                .dir_name()
            ))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let _ = writeln!(out, "---");
    let _ = write!(
        out,
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {job}{ns}
  labels:
    app.kubernetes.io/name: kabench
    kabench/run: {name_q}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kabench
        kabench/run: {name_q}
    spec:
      restartPolicy: Never
      containers:
        - name: merge
          image: {image}
          command: [\"/bin/sh\", \"-c\"]
          args: [{script}]
          volumeMounts:
            - name: runs
              mountPath: /runs
      volumes:
        - name: runs
          persistentVolumeClaim:
            claimName: {claim}
",
        job = q(&format!("{name}-merge")),
        name_q = q(name),
        image = q(&k.image),
        script = q(&script),
        claim = q(&k.claim),
    );
    out
}

/// The Slurm script: it submits the array of shards and the merge, which runs only
/// when every shard succeeded (`afterok`).
pub fn slurm(fleet: &Fleet, s: &Slurm) -> String {
    let n = fleet.shards;
    let out = &s.out;
    let args = fleet.run_args(&fleet.scenario_path, out, sh).join(" ");
    let partition = s
        .partition
        .as_ref()
        .map_or(String::new(), |p| format!("#SBATCH --partition={p}\n"));
    let merge_dirs = (0..n)
        .map(|i| {
            sh(&format!(
                "{out}/{}",
                shard::Shard { index: i, count: n }.dir_name()
            ))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let minutes = fleet.run_span.as_secs().div_ceil(60) + 10;
    format!(
        "#!/bin/bash
# kabench: {n} shards of one global schedule as a Slurm array, in step from
# {start}; then `kabench merge` as a job that runs once every shard succeeded.
# Submit it now (the shards must start before the barrier): bash THIS_FILE
# To merge what is there even when a shard failed, use --dependency=afterany.
set -euo pipefail
mkdir -p {out_q}
shards=$(sbatch --parsable <<'SLURM'
#!/bin/bash
#SBATCH --job-name={name}-shards
#SBATCH --array=0-{last}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time={minutes}
#SBATCH --output={out}/slurm-%A_%a.log
{partition}exec {kabench} {args}
SLURM
)
sbatch --parsable --dependency=afterok:\"${{shards}}\" <<'SLURM'
#!/bin/bash
#SBATCH --job-name={name}-merge
#SBATCH --ntasks=1
#SBATCH --time=30
#SBATCH --output={out}/slurm-merge-%j.log
{partition}exec {kabench} merge {out_q} {merge_dirs}
SLURM
echo \"submitted the shards as job ${{shards}}; the merged run folder will be {out}\"
",
        start = shard::format_time(fleet.start_at),
        out_q = sh(out),
        name = fleet.name,
        last = n - 1,
        kabench = sh(&s.kabench),
    )
}

/// The run folder name of a manifest: `<name>-<UTC yyyymmddThhmmssZ of the barrier>`.
pub fn run_name(scenario_name: &str, start_at: SystemTime) -> String {
    let stamp: String = shard::format_time(start_at)
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(12)
        .collect();
    dns_name(&format!("{}-{stamp}", dns_name(scenario_name)))
}

/// The absolute form of a path (for Slurm nodes that share the file system).
pub fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quotes() {
        assert_eq!(dns_name("My_Scenario 2"), "my-scenario-2");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(q("a\"b"), r#""a\"b""#);
    }
}
