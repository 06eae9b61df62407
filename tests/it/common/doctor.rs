//! `kabench doctor` from the tests: its JSON report on a server, one check of it, its
//! verdicts by id, and a dry run that has nowhere to send anything.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kabench;

/// `kabench doctor --json --target URL --model tiny-50m` plus `extra`: its exit code,
/// report and stderr; it must end within a minute.
pub fn report(url: &str, extra: &[&str]) -> (i32, Value, String) {
    let start = Instant::now();
    let out = kabench()
        .args(["doctor", "--json", "--target", url, "--model", "tiny-50m"])
        .args(extra)
        .output()
        .expect("kabench doctor runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout}\nstderr {stderr}"));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the doctor took {:?}",
        start.elapsed()
    );
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// The check `id` of a report.
pub fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {report}"))
}

/// The checks that do not hold, one line each with their evidence: what a failed
/// assertion on a doctor's exit code prints first.
pub fn failing(report: &Value) -> String {
    let rows: Vec<String> = report["checks"]
        .as_array()
        .map(|c| c.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["holds"] != true)
        .map(|c| format!("{}: {} ({})", c["id"], c["verdict"], c["evidence"]))
        .collect();
    format!("not holding: {}\nreport: {report}", rows.join("; "))
}

/// Every check's verdict, by id.
pub fn verdicts(report: &Value) -> BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `kabench doctor --dry-run --target 127.0.0.1:9 --model tiny-50m` plus `extra`:
/// nothing listens on port 9 (discard) of loopback, and a dry run sends nothing.
pub fn dry_run(extra: &[&str]) -> Output {
    kabench()
        .args([
            "doctor",
            "--dry-run",
            "--target",
            "127.0.0.1:9",
            "--model",
            "tiny-50m",
        ])
        .args(extra)
        .output()
        .expect("kabench doctor runs")
}
