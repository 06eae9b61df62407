//! `kabench doctor` from the tests: its JSON report on a server, one check of it, its
//! verdicts by id, Ctrl-C to a running one, and a dry run that has nowhere to send
//! anything.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kabench;

/// `kabench doctor --json --target URL --model tiny-50m` plus `extra`: its exit code,
/// report and stderr; it must end within two minutes.
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
    // A guard against a hang, not a speed goal: the slowest doctor waits out a timer
    // and a few cold loads, which a busy host stretches.
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "the doctor took {:?}\n{}\nstderr {stderr}",
        start.elapsed(),
        failing(&report)
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

/// Sends Ctrl-C (SIGINT) to a running `kabench doctor --json` (stdout piped) and waits:
/// it must exit 130 within 10 s with a report that says it was interrupted; that
/// report. `log` (the server's log) is added to a failed assertion's message.
pub fn interrupt(child: Child, log: impl Fn() -> String) -> Value {
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let out = child.wait_with_output().expect("kabench ends");
    let took = signalled.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!(
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    assert_eq!(out.status.code(), Some(130), "{ctx}");
    assert!(took < Duration::from_secs(10), "{took:?}: {ctx}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["interrupted"], true, "{ctx}");
    assert_eq!(check(&report, "probe.interrupted")["holds"], false, "{ctx}");
    report
}
