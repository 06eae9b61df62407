//! `kabench compare` with significance: a second run of the same scenario reads as "no
//! change detected" (exit 0), a slower server (the simulator with 300 ms added before
//! every answer, `--fault-delay`) as a significant regression (exit 1), and
//! `compare.md` / `compare.html` say the same as the terminal.

use crate::common::{self, RealOllama, SimServer, compare, run_ok};

use std::fs;
use std::path::{Path, PathBuf};

/// A short gaps scenario: constant gaps of 250 ms, keep_alive 0 (every request cold)
/// and -1 (cold once), millisecond-scale loads on the simulator.
const GAPS: &str = r#"
name = "gaps-short"
seed = 5

[sim]
vram = "24GiB"
runtime_start = "20ms"
cached_bandwidth = "100GB"
cold_bandwidth = "50GB"
vram_release_delay = "20ms"

[[stream]]
name = "chat"
model = "MODEL"
api = "generate"
num_ctx = 2048
prompt_tokens = 16
max_tokens = 4
arrival = { kind = "constant", rate = "RATE" }

[run]
requests = REQUESTS
timeout = "30s"

[telemetry]
interval = "20ms"

[sweep]
keep_alive = ["0", -1]
"#;

fn scenario(dir: &Path, model: &str, rate: &str, requests: u32) -> PathBuf {
    let file = dir.join("gaps.toml");
    let text = GAPS
        .replace("MODEL", model)
        .replace("RATE", rate)
        .replace("REQUESTS", &requests.to_string());
    fs::write(&file, text).unwrap();
    file
}

fn run(file: &Path, target: &str, out: &Path) {
    run_ok(&[
        "run",
        file.to_str().unwrap(),
        "--target",
        target,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

#[test]
fn a_copy_of_a_run_is_no_change_detected_in_every_output() {
    let (_tmp, base) = common::fixture_run("run-small");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy");
    common::copy_run(&base, &copy);
    let out = tmp.path().join("cmp");
    let (code, stdout, stderr) = compare(&base, &copy, &["--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        last_line(&stdout).starts_with("no change detected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("significance level 0.05, noise threshold ±2%"),
        "{stdout}"
    );
    let md = fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("**no change detected"), "{md}");
    let page = fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(page.contains("<strong>no change detected"), "{page}");
    // Nothing else was written.
    let mut names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["compare.html", "compare.md"]);
}

#[test]
fn the_statistics_flags_are_checked() {
    let (_tmp, base) = common::fixture_run("run-small");
    for (flag, value) in [
        ("--significance-level", "0"),
        ("--significance-level", "1.5"),
        ("--noise-threshold", "2"),
        ("--noise-threshold", "1.5"),
        ("--resamples", "5"),
        ("--resamples", "99999999"),
    ] {
        let (code, _, stderr) = compare(&base, &base, &[flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let (code, stdout, _) = compare(
        &base,
        &base,
        &[
            "--significance-level",
            "0.01",
            "--noise-threshold",
            "0.05",
            "--resamples",
            "500",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("significance level 0.01, noise threshold ±5%, 500 bootstrap resamples"),
        "{stdout}"
    );
}

#[test]
fn a_server_300_ms_slower_is_a_significant_regression_on_the_simulator() {
    let _turn = common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "tiny-50m", "10/s", 12);
    let file_arg = file.to_str().unwrap();
    let (base, slow) = (tmp.path().join("base"), tmp.path().join("slow"));
    {
        let sim = SimServer::start(&["--scenario", file_arg]);
        run(&file, &sim.url, &base);
    }
    {
        let sim = SimServer::start(&["--scenario", file_arg, "--fault-delay", "300ms"]);
        run(&file, &sim.url, &slow);
    }
    let out = tmp.path().join("cmp");
    let (code, stdout, stderr) = compare(&base, &slow, &["--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("regressed significantly past the thresholds"),
        "{stderr}"
    );
    for cell in ["keep_alive=0 ", "keep_alive=-1 "] {
        let line = stdout
            .lines()
            .find(|l| l.contains(cell) && l.contains("TTFT p50 ms"))
            .unwrap_or_else(|| panic!("{cell}: {stdout}"));
        assert!(line.ends_with("regressed !"), "{line}");
        assert!(
            line.contains('[') && line.contains("%]"),
            "an interval: {line}"
        );
    }
    assert!(!stdout.contains("no change detected"), "{stdout}");
    let md = fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("regressed: TTFT p50"), "{md}");
    // The other way round it is an improvement, and passes.
    let (code, stdout, _) = compare(&slow, &base, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("improved: TTFT p50"), "{stdout}");
}

#[test]
fn a_second_run_on_the_real_server_is_no_change_detected() {
    let Some(ollama) = RealOllama::start("compare-sig", &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "tiny-50m", "1/s", 5);
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    run(&file, &ollama.url, &first);
    run(&file, &ollama.url, &second);
    let (code, stdout, stderr) = compare(&first, &second, &[]);
    eprintln!("{stdout}");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        last_line(&stdout).starts_with("no change detected"),
        "{stdout}"
    );
    // A CPU-only host: NVML's absence is a note, not a warning (no model in GPU memory).
    let md = fs::read_to_string(second.join("summary.md")).unwrap();
    let warnings = md
        .split("## Warnings")
        .nth(1)
        .map_or("", |w| w.split("\n## ").next().unwrap_or(""));
    assert!(!warnings.contains("nvml"), "{md}");
    if md.contains("telemetry nvml unavailable") {
        assert!(md.contains("no model in GPU memory"), "{md}");
    }
}

/// The same study run twice against the real server gives the same recommendation:
/// eight requests 2 s apart a cell, so keep_alive 0 (every request cold) and -1 (the
/// first) stand apart beyond the noise, even on a busy host, where five requests 1 s
/// apart did not (a reply that outlasts the gap finds the model still loaded).
#[test]
fn the_same_study_twice_on_the_real_server_gives_the_same_recommendation() {
    let Some(ollama) = RealOllama::start("same-advice", &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "tiny-50m", "0.5/s", 8);
    let runs = [tmp.path().join("first"), tmp.path().join("second")];
    for dir in &runs {
        run(&file, &ollama.url, dir);
    }
    let advice: Vec<serde_json::Value> = runs
        .iter()
        .map(|dir| common::read_json(&dir.join("recommendation.json"))[0].clone())
        .collect();
    for a in &advice {
        assert_eq!(a["chosen"], "-1", "one cold start of 8 beats 8 of 8: {a}");
        assert_eq!(
            a["noise"]["indistinguishable"].as_array().map(Vec::len),
            Some(0),
            "{a}"
        );
    }
}
