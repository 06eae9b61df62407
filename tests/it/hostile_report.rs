//! `kabench report` and `compare` against hostile run folders: a requests.csv too large
//! to hold whole (read row by row into per-stream figures under `ulimit -v`), one that
//! is large and holds
//! thousands of models (rendered under `ulimit -v` with a bounded page and bounded
//! charts), `inf` and `NaN` latencies (skipped rows, finite charts, no hang), a
//! `run.json` with a negative price or duplicate cells (refused, naming the field) and
//! model names with terminal escapes (never reach the terminal or the pages raw).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{fixture_run, kabench, root};

/// The fixture's rows, header first.
fn fixture_rows(dir: &Path) -> (String, Vec<Vec<String>>) {
    let text = fs::read_to_string(dir.join("requests.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Runs `kabench report DIR` (with `env`), killed after `limit`.
fn report(dir: &Path, env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = kabench();
    cmd.arg("report").arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, limit)
}

fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The names of the files in `dir` (recursively), with their sizes.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), fs::metadata(&p).unwrap().len()));
        }
    }
    out.sort();
    out
}

/// A proxy-like run folder: one cell whose `models` streams are each a model, `rows`
/// requests spread over them (a few with ESC and NUL in their names).
fn many_models(models: usize, rows: usize) -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir) = fixture_run("run-small");
    let (header, template) = fixture_rows(&dir);
    let name = |i: usize| match i {
        0 => "evil\u{1b}[2J\u{1b}]0;pwned\u{7}".to_string(),
        1 => "nul\u{0}model".to_string(),
        _ => format!("model-{i}"),
    };
    let mut meta = read_json(&dir.join("run.json"));
    let stream0 = meta["cells"][0]["streams"][0].clone();
    let streams: Vec<Value> = (0..models)
        .map(|i| {
            let mut s = stream0.clone();
            s["name"] = json!(name(i));
            s["model"] = json!(name(i));
            s
        })
        .collect();
    let mut cell = meta["cells"][0].clone();
    cell["streams"] = json!(streams);
    cell["ended_ms"] = json!(rows as f64 * 10.0 + 2000.0);
    meta["cells"] = json!([cell]);
    write_json(&dir.join("run.json"), &meta);
    let mut out = std::io::BufWriter::new(fs::File::create(dir.join("requests.csv")).unwrap());
    writeln!(out, "{header}").unwrap();
    for i in 0..rows {
        let mut r = template[i % template.len()].clone();
        // Skewed: model 0 and 1 get many requests, the rest a few each.
        let m = if i % 3 == 0 { i % 2 } else { i % models };
        let t = i as f64 * 10.0;
        r[0] = "c0".into();
        r[1] = (i / models).to_string();
        r[2] = name(m);
        r[3] = name(m);
        r[6] = format!("{t}");
        r[7] = format!("{t}");
        r[8] = format!("{}", t + 5.0);
        r[9] = format!("{}", t + 6.0);
        r[10] = format!("{}", t + 6.0);
        r[11] = format!("{}", t + 9.0);
        let line = r
            .iter()
            .map(|f| {
                if f.contains(['\0', '\u{1b}', ',', '"']) {
                    format!("\"{}\"", f.replace('"', "\"\""))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    (tmp, dir)
}

fn no_raw_controls(what: &str, text: &str) {
    for bad in ['\u{1b}', '\u{0}', '\u{7}'] {
        assert!(
            !text.contains(bad),
            "{what} holds a raw {:?}",
            bad.escape_unicode().to_string()
        );
    }
}

/// The acceptance bound of issue 24: the report's peak memory is under 500 MB. Run
/// under `ulimit -v 512000` (500 MiB of address space, which counts every reservation
/// and not only the resident pages: the report is one thread, so it reserves little
/// beyond what it uses; with the bounded reader it peaks near 190 MB resident at the
/// 250 000 rows it holds whole). Here 30 000 rows over 1 000 models: before the bounds
/// this drew one chart per model and a page of tens of MB.
#[cfg(target_os = "linux")]
#[test]
fn a_large_run_of_thousands_of_models_renders_bounded_under_ulimit() {
    let (_tmp, dir) = many_models(1_000, 30_000);
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -v 512000; exec \"$0\" report \"$1\"")
        .arg(env!("CARGO_BIN_EXE_kabench"))
        .arg(&dir);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    no_raw_controls("stdout", &stdout);
    no_raw_controls("stderr", &stderr);
    // The terminal table: at most 20 streams, the rest as one row.
    assert!(stdout.contains("other 981 models"), "{stdout}");
    assert!(stdout.lines().count() < 40, "{stdout}");
    assert!(
        stdout.contains("\\u{1b}"),
        "the ESC name is shown escaped: {stdout}"
    );
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.len() < 1_000_000, "index.html is {} bytes", page.len());
    no_raw_controls("index.html", &page);
    assert!(page.contains("other 981 models"));
    let md = fs::read_to_string(dir.join("summary.md")).unwrap();
    no_raw_controls("summary.md", &md);
    assert!(md.len() < 100_000, "summary.md is {} bytes", md.len());
    let charts: Vec<(PathBuf, u64)> = files(&dir.join("charts"));
    assert!(charts.len() <= 30, "{} charts", charts.len());
    for (p, n) in &charts {
        assert!(*n < 200_000, "{} is {n} bytes", p.display());
    }
    // recommendation.json and summary.json still hold every model.
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(
        summary["cells"][0]["streams"].as_array().unwrap().len(),
        1_000
    );
    let recs = read_json(&dir.join("recommendation.json"));
    assert_eq!(recs.as_array().unwrap().len(), 1_000);
}

/// Past the rows the report holds whole (lowered through its hidden knob, so the test
/// need not write half a million rows) the report still renders: every row counted,
/// the percentiles those of every row, and a note naming the file and the bound.
#[test]
fn rows_past_the_bound_are_counted_with_the_bound_noted() {
    let (_tmp, dir) = many_models(3, 1_001);
    let whole = report(&dir, &[], Duration::from_secs(30));
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let exact = read_json(&dir.join("summary.json"));
    let out = report(
        &dir,
        &[("KABENCH_MAX_REPORT_ROWS", "1000")],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("requests.csv: 1001 rows, more than the 1000"),
        "{stderr}"
    );
    let past = read_json(&dir.join("summary.json"));
    let streams = |s: &Value| s["cells"][0]["streams"].as_array().unwrap().clone();
    for (a, b) in streams(&exact).iter().zip(streams(&past).iter()) {
        for key in [
            "requests",
            "warmup",
            "errors",
            "answered",
            "cold",
            "loads",
            "cold_ratio",
            "ttft_ms",
            "e2e_ms",
            "tpot_ms",
            "load_ms",
            "errors_by_kind",
        ] {
            assert_eq!(a[key], b[key], "{key} of {}", a["name"]);
        }
    }
}

/// A scenario planning more requests than one report holds whole is flagged before it
/// runs: `validate` and `run` both say so (every row is counted, but the memory figures
/// and charts are over the first rows of each cell).
#[test]
fn a_plan_past_the_report_limit_is_flagged_before_the_run() {
    let scenario = root().join("scenarios/quickstart.toml");
    let out = kabench()
        .arg("validate")
        .arg(&scenario)
        .env("KABENCH_MAX_REPORT_ROWS", "20")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("more than the 20 rows one report holds whole"),
        "{stderr}"
    );
    assert!(
        stderr.contains("over the first rows of each cell"),
        "{stderr}"
    );
    let out = kabench().arg("validate").arg(&scenario).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rows one report holds whole"), "{stderr}");
}

/// `inf` and `NaN` in a latency column: those rows are skipped and noted with their
/// line and field (as every row that does not parse is), and the charts are drawn with
/// finite ranges (before, the CDF chart spun forever).
#[test]
fn inf_and_nan_latencies_are_skipped_and_noted_and_the_charts_finish() {
    let (_tmp, dir) = fixture_run("run-small");
    let (header, mut rows) = fixture_rows(&dir);
    let col = |name: &str| header.split(',').position(|h| h == name).unwrap();
    rows[1][col("ttft_ms")] = "inf".into();
    rows[2][col("e2e_ms")] = "NaN".into();
    rows[3][col("end_ms")] = "-inf".into();
    let text: Vec<String> = std::iter::once(header.clone())
        .chain(rows.iter().map(|r| r.join(",")))
        .collect();
    fs::write(dir.join("requests.csv"), text.join("\n") + "\n").unwrap();
    let mut vram = fs::read_to_string(dir.join("vram.csv")).unwrap();
    vram.push_str("inf,sim,sim,,1000,,,\n");
    fs::write(dir.join("vram.csv"), vram).unwrap();
    let out = report(&dir, &[], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (line, field) in [(3, "ttft_ms"), (4, "e2e_ms"), (5, "end_ms")] {
        let want = format!(
            "requests.csv line {line}: a row that does not parse was skipped ({field} is not a finite number)"
        );
        assert!(stderr.contains(&want), "{want}\n{stderr}");
    }
    assert!(stderr.contains("t_ms is not a finite number"), "{stderr}");
    let summary = read_json(&dir.join("summary.json"));
    let requests: u64 = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["streams"].as_array().unwrap())
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    let kept = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| !(1..=3).contains(i) && r[col("warmup")] == "false")
        .count();
    assert_eq!(requests, kept as u64);
    let cdf = fs::read_to_string(dir.join("charts/ttft-cdf.svg")).unwrap();
    assert!(!cdf.contains("inf") && !cdf.contains("NaN"), "{cdf}");
}

/// A `run.json` that fails validation is refused (exit 2) with the field named, and
/// no recommendation, summary or page is written from it; `compare` refuses it too.
#[test]
fn a_run_json_with_a_negative_price_or_duplicate_cells_is_refused() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 4] = [
        (|m| m["cells"] = json!("many"), "fails validation"),
        (
            |m| m["cost"]["vram_gb_hour"] = json!(-5.0),
            "cost.vram_gb_hour",
        ),
        (
            |m| {
                let c = m["cells"][0].clone();
                let cells = m["cells"].as_array_mut().unwrap();
                for _ in 0..50 {
                    cells.push(c.clone());
                }
            },
            "cells[3].id",
        ),
        (
            |m| m["cost"]["cold_penalty_s"] = json!(1e300),
            "cost.cold_penalty_s",
        ),
    ];
    for (edit, field) in cases {
        let (_tmp, dir) = fixture_run("run-small");
        let mut meta = read_json(&dir.join("run.json"));
        edit(&mut meta);
        write_json(&dir.join("run.json"), &meta);
        let before = files(&dir);
        let out = report(&dir, &[], Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains("run.json"), "{stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
        assert_eq!(files(&dir), before, "{field}: nothing is written");
        let (_t2, good) = fixture_run("run-small");
        let out = run_bounded(
            {
                let mut c = kabench();
                c.arg("compare").arg(&good).arg(&dir);
                c
            },
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "compare, {field}: {stderr}");
        assert!(stderr.contains(field), "compare, {field}: {stderr}");
    }
}

/// `compare` shows names with control characters escaped on the terminal.
#[test]
fn compare_escapes_control_characters_in_names() {
    let (_t1, base) = many_models(3, 30);
    let (_t2, new) = many_models(3, 30);
    let mut c = kabench();
    c.arg("compare").arg(&base).arg(&new);
    let out = run_bounded(c, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    no_raw_controls("compare stdout", &stdout);
    no_raw_controls("compare stderr", &stderr);
    assert!(stdout.contains("evil\\u{1b}"), "{stdout}");
}

/// Issue 24 item 10: a `requests.csv` of 750 000 rows (before, a refusal past 500 000
/// rows, and about 1.1 GB when held whole: 1.46 GB for a million) is reported under
/// `ulimit -v 512000` (500 MiB of address space): read once, row by row, every
/// stream's counts, loads and percentiles over every row, equal to those computed here
/// within the histograms' precision, and a bounded page.
#[cfg(target_os = "linux")]
#[test]
fn rows_past_the_old_limit_report_under_ulimit_with_every_row_counted() {
    const ROWS: usize = 750_000;
    let (_tmp, dir) = fixture_run("run-small");
    let (header, _) = fixture_rows(&dir);
    let cells = ["c0", "c1", "c2"];
    let per_cell = ROWS / cells.len();
    // Each cell's TTFTs, to compute the percentiles independently (8 MB in all; the
    // CSV itself is written as it is generated).
    let mut ttfts: Vec<Vec<f64>> = vec![Vec::with_capacity(per_cell); cells.len()];
    let mut colds = vec![0u64; cells.len()];
    let mut out = std::io::BufWriter::new(fs::File::create(dir.join("requests.csv")).unwrap());
    writeln!(out, "{header}").unwrap();
    for (k, cell) in cells.iter().enumerate() {
        for j in 0..per_cell {
            let i = (k * per_cell + j) as u64;
            let x = (i.wrapping_mul(2_654_435_761) % 100_000) as f64;
            let cold = j % 50 == 0;
            let (ttft, load) = if cold {
                (900.0 + x / 1000.0, 850.0)
            } else {
                (20.0 + x / 100.0, 0.5)
            };
            ttfts[k].push(ttft);
            colds[k] += cold as u64;
            let t = j as f64 * 10.0;
            let e2e = ttft + 100.0;
            writeln!(
                out,
                "{cell},{j},chat,tiny:1b,0,false,{t},{t},{},{},{},{},200,,,false,{load},{cold},,20,20.0,16,90.0,{e2e},{ttft},{e2e},6.0",
                t + ttft - 5.0,
                t + ttft,
                t + ttft,
                t + e2e,
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -v 512000; exec \"$0\" report \"$1\"")
        .arg(env!("CARGO_BIN_EXE_kabench"))
        .arg(&dir)
        .env_remove("KABENCH_MAX_REPORT_ROWS");
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert!(
        stderr.contains(&format!(
            "requests.csv: {} rows, more than the 250000",
            per_cell * cells.len()
        )),
        "{stderr}"
    );
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.len() < 1_000_000, "index.html is {} bytes", page.len());
    for (p, n) in files(&dir.join("charts")) {
        assert!(n < 300_000, "{} is {n} bytes", p.display());
    }
    let summary = read_json(&dir.join("summary.json"));
    let near = |got: &Value, want: f64, what: &str| {
        let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
        assert!(
            (got - want).abs() <= want * 2e-3 + 1e-3,
            "{what}: {got} against {want}"
        );
    };
    for (k, cell) in cells.iter().enumerate() {
        let c = summary["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == *cell)
            .unwrap();
        let s = &c["streams"][0];
        assert_eq!(s["requests"], json!(per_cell), "{cell}");
        assert_eq!(s["cold"], json!(colds[k]), "{cell}");
        // Each cold row waited for a load of its own (500 ms apart).
        assert_eq!(s["loads"], json!(colds[k]), "{cell}");
        let v = &mut ttfts[k];
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            near(
                &s["ttft_ms"]["all"][key],
                rank(q),
                &format!("{cell} ttft {key}"),
            );
            let ci = &s["intervals"]["ttft_ms"][key];
            let (lo, hi) = (ci["lo"].as_f64().unwrap(), ci["hi"].as_f64().unwrap());
            assert!(
                lo <= rank(q) * 1.002 && hi >= rank(q) * 0.998,
                "{cell} {key}: {ci}"
            );
        }
        near(
            &s["ttft_ms"]["all"]["max"],
            *v.last().unwrap(),
            &format!("{cell} ttft max"),
        );
        assert!(
            c["warnings"]
                .to_string()
                .contains("more than the report holds whole"),
            "{}",
            c["warnings"]
        );
    }
}

/// Past the bound, a run of a thousand streams holds a count per latency bucket each
/// stream saw, not a full histogram per stream (before the sparse histograms this took
/// 1.5 GB): rendered under `ulimit -v`, every stream's counts and percentiles those of
/// the report that holds every row.
#[cfg(target_os = "linux")]
#[test]
fn a_thousand_streams_past_the_bound_stay_bounded_with_the_same_percentiles() {
    let (_tmp, dir) = many_models(1_000, 30_000);
    let whole = report(&dir, &[], Duration::from_secs(120));
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let exact = read_json(&dir.join("summary.json"));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -v 512000; exec \"$0\" report \"$1\"")
        .arg(env!("CARGO_BIN_EXE_kabench"))
        .arg(&dir)
        .env("KABENCH_MAX_REPORT_ROWS", "4000");
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert!(
        stderr.contains("30000 rows, more than the 4000"),
        "{stderr}"
    );
    let past = read_json(&dir.join("summary.json"));
    let streams = |s: &Value| s["cells"][0]["streams"].as_array().unwrap().clone();
    let (a, b) = (streams(&exact), streams(&past));
    assert_eq!(a.len(), 1_000);
    for (a, b) in a.iter().zip(b.iter()) {
        for key in ["requests", "errors", "cold", "ttft_ms", "e2e_ms", "tpot_ms"] {
            assert_eq!(a[key], b[key], "{key} of {}", a["name"]);
        }
    }
}

/// Past the bound, the repetitions of a cell are pooled from every repetition's
/// accumulators: the pooled counts and percentiles, and each repetition's own counts,
/// are those of the report that holds every row.
#[test]
fn repetitions_past_the_bound_pool_every_row() {
    let _turn = crate::common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    crate::common::run_ok(&[
        "run",
        "tests/fixtures/repeat/five.toml",
        "--target",
        "sim",
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    let exact = read_json(&dir.join("summary.json"));
    let out = report(
        &dir,
        &[("KABENCH_MAX_REPORT_ROWS", "6")],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("more than the 6 the report holds whole"),
        "{stderr}"
    );
    let past = read_json(&dir.join("summary.json"));
    let cells = |s: &Value| s["cells"].as_array().unwrap().clone();
    let (a, b) = (cells(&exact), cells(&past));
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b.iter()) {
        assert!(a["repetitions"].is_object(), "{}", a["id"]);
        assert_eq!(a["repetitions"]["runs"].as_array().unwrap().len(), 5);
        for (ra, rb) in a["repetitions"]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["repetitions"]["runs"].as_array().unwrap())
        {
            assert_eq!(ra["streams"], rb["streams"], "{}", ra["id"]);
        }
        for (sa, sb) in a["streams"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["streams"].as_array().unwrap())
        {
            for key in ["requests", "errors", "cold", "loads", "ttft_ms", "e2e_ms"] {
                assert_eq!(sa[key], sb[key], "{key} of {} {}", a["id"], sa["name"]);
            }
        }
    }
}
