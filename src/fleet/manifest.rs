//! `kabench fleet k8s|slurm`: the text that runs a sharded scenario on the engines
//! teams already have, with no coordinator of kabench's own. For Kubernetes, a
//! ConfigMap holding the scenario, an Indexed Job of N pods (each `kabench run --shard
//! auto`, its index from `JOB_COMPLETION_INDEX`) writing to a shared volume, and a
//! merge Job that waits for the N shard folders to end and runs `kabench merge`
//! (`k8s`). For Slurm, a bash script that writes the scenario into the shared run
//! folder and submits an array of N tasks and the merge as a dependent job
//! (`--dependency=afterany`; `slurm`). Both fix one start barrier so the shards keep
//! in step. Knows nothing of how a shard runs.
//!
//! Nothing a user gives reaches the text unescaped: the scenario travels base64 in the
//! ConfigMap's `binaryData` (no character of it can end a YAML block), every other
//! string of the manifest is a YAML double-quoted scalar with line breaks escaped, and
//! every word of the Slurm script is single-quoted (paths, the partition, the account
//! and the time go on
//! `sbatch`'s command line, never into `#SBATCH` lines, which cannot be quoted).
//! Control characters, which would end a line of the script or a here-document, are
//! refused ([`Unsafe`]), naming the flag.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::shard::{self, MAX_SHARDS};
use crate::units::limits::{excerpt, printable};

pub mod k8s;
mod slurm;

pub use k8s::{K8s, k8s};
pub use slurm::{MAX_CPUS_PER_TASK, SLURM_SCENARIO, Slurm, slurm};

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
pub(crate) fn q(text: &str) -> String {
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
    pub(crate) fn run_args(
        &self,
        scenario: &str,
        out: &str,
        quote: fn(&str) -> String,
    ) -> Vec<String> {
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
    pub(crate) fn check(&self) -> Result<(), Unsafe> {
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

    pub(crate) fn shard_glob(&self, out: &str) -> String {
        format!("{out}/shard-*-of-{}", self.shards)
    }
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
