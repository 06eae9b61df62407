//! `kabench fleet k8s|slurm`: the text that runs a sharded scenario on the engines
//! teams already have, with no coordinator of kabench's own. For Kubernetes, a
//! ConfigMap holding the scenario, an Indexed Job of N pods (each `kabench run --shard
//! auto`, its index from `JOB_COMPLETION_INDEX`) writing to a shared volume, and a
//! merge Job that waits for the N shard folders to end and runs `kabench merge`. For
//! Slurm, a bash script that submits an array of N tasks and the merge as a dependent
//! job (`--dependency=afterok`). Both fix one start barrier so the shards keep in step.
//! Knows nothing of how a shard runs.
//!
//! Nothing a user gives reaches the text unescaped: the scenario travels base64 in the
//! ConfigMap's `binaryData` (no character of it can end a YAML block), every other
//! string of the manifest is a YAML double-quoted scalar with line breaks escaped, and
//! every word of the Slurm script is single-quoted (paths and the partition go on
//! `sbatch`'s command line, never into `#SBATCH` lines, which cannot be quoted).
//! Control characters, which would end a line of the script or a here-document, are
//! refused ([`Unsafe`]), naming the flag.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::shard::{self, MAX_SHARDS, SHARDS_ENV};
use crate::units::limits::{excerpt, printable};

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
    /// How late after the barrier a shard may start and still send
    /// (`--late-tolerance` of every shard).
    pub late_tolerance: Duration,
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

/// A value the manifest cannot carry (bad input): it names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsafe(pub String);

/// Refuses a value with a control character (a newline, a carriage return, NUL, ESC,
/// U+0085, U+2028…): it would end a line of the script, a here-document or a YAML
/// scalar. `what` names the flag.
pub fn check_value(what: &str, value: &str) -> Result<(), Unsafe> {
    if matches!(printable(value), Cow::Borrowed(_)) {
        return Ok(());
    }
    Err(Unsafe(format!(
        "{what} {:?}: holds a control character (a newline, a carriage return, a line or paragraph separator…), which would end a line of the generated text; give it without",
        excerpt(value)
    )))
}

/// A YAML (and JSON) double-quoted string; every control character, the ones YAML
/// reads as line breaks (U+0085, U+2028, U+2029) and the byte-order mark are escaped.
fn q(text: &str) -> String {
    let json = serde_json::Value::from(text).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), as Kubernetes reads `binaryData`.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ABC[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
            "--late-tolerance".into(),
            humantime::format_duration(self.late_tolerance).to_string(),
            "--out".into(),
            out.to_string(),
        ]);
        // Not --quiet: the pod's or task's log says how long it waits for the barrier
        // and how each cell went.
        args.iter().map(|a| quote(a)).collect()
    }

    /// Checks what every manifest embeds: the shard count, the name, the targets and
    /// the scenario's path.
    fn check(&self) -> Result<(), Unsafe> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(Unsafe(format!(
                "--shards {}: give 1 to {MAX_SHARDS} shards (the limit)",
                self.shards
            )));
        }
        if dns_name(&self.name) != self.name {
            return Err(Unsafe(format!(
                "--name {:?}: not a DNS-safe name (lowercase letters, digits and -, at most 40)",
                excerpt(&self.name)
            )));
        }
        for t in &self.targets {
            check_value("--target", t)?;
        }
        check_value("the scenario's path", &self.scenario_path)
    }

    fn shard_glob(&self, out: &str) -> String {
        format!("{out}/shard-*-of-{}", self.shards)
    }
}

/// The Kubernetes manifest: a ConfigMap, the Indexed Job of the shards and the merge
/// Job, as one multi-document YAML.
pub fn k8s(fleet: &Fleet, k: &K8s) -> Result<String, Unsafe> {
    fleet.check()?;
    check_value("--image", &k.image)?;
    check_value("--claim", &k.claim)?;
    if let Some(n) = &k.namespace {
        check_value("--namespace", n)?;
    }
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
        q(&k.claim)
    );
    // The scenario travels base64 (binaryData): the pods read it back byte for byte,
    // and no character of it can end the YAML around it.
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}{ns}\nbinaryData:\n  scenario.toml: {}",
        q(&format!("{name}-scenario")),
        q(&base64(fleet.scenario_text.as_bytes()))
    );
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
    Ok(out)
}

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
    let mut on_line = String::new();
    for (flag, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--time", &s.time),
    ] {
        if let Some(v) = value {
            let _ = write!(on_line, " {flag}={}", sh(v));
        }
    }
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
# executable ({kabench_show}) must be at that path on every node. Nothing else is shared.
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
shards=$(sbatch --parsable{on_line} --output={shard_log} <<'SLURM'
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
        assert_eq!(q("a\u{2028}b\u{85}c"), r#""a\u2028b\u0085c""#);
    }

    #[test]
    fn base64_is_rfc4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn control_characters_are_refused_naming_the_flag() {
        assert!(check_value("--out", "/runs/$(x) it's").is_ok());
        for bad in ["a\nb", "a\rb", "a\u{2028}b", "a\u{85}b", "a\0b"] {
            let e = check_value("--partition", bad).unwrap_err().0;
            assert!(e.starts_with("--partition "), "{e}");
        }
    }
}
