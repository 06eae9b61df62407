//! `kabench run` end to end through the real binary against the simulator on loopback:
//! cold counts per keep_alive, a complete run folder, `kabench report` reproducing the
//! numbers from the files alone, fault injection, Ctrl-C and a target killed midway.

use crate::common::{kabench, read_json, run_ok};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/run")
        .join(name)
}

fn rows(dir: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(dir.join("requests.csv")).expect("requests.csv");
    r.records().map(|x| x.expect("row")).collect()
}

fn header(dir: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(dir.join("requests.csv")).expect("requests.csv");
    r.headers().unwrap().iter().map(str::to_string).collect()
}

fn stream_of(cell: &Value) -> &Value {
    &cell["streams"][0]
}

#[test]
fn keep_alive_sweep_cold_counts_follow_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = run_ok(&[
        "run",
        fixture("fast-sim.toml").to_str().unwrap(),
        "--target",
        "sim",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("keep_alive"), "table on stdout: {stdout}");

    for f in [
        "scenario.toml",
        "run.json",
        "requests.csv",
        "vram.csv",
        "summary.json",
        "index.html",
        "summary.md",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["target"]["kind"], "sim");
    assert_eq!(meta["ollama_version"], "0.32.15");

    let h = header(&out);
    for col in [
        "cell",
        "stream",
        "model",
        "keep_alive",
        "intended_ms",
        "sent_ms",
        "first_token_ms",
        "end_ms",
        "status",
        "error",
        "cold",
        "load_duration_ms",
        "ttft_ms",
        "e2e_ms",
    ] {
        assert!(
            h.iter().any(|c| c == col),
            "requests.csv lacks {col}: {h:?}"
        );
    }
    assert_eq!(rows(&out).len(), 21, "one row per request");

    let summary = read_json(&out.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    let by_ka = |ka: &str| {
        cells
            .iter()
            .find(|c| c["params"]["keep_alive"] == ka)
            .unwrap_or_else(|| panic!("no cell with keep_alive {ka}"))
    };
    // keep_alive 0: every request waits for a load.
    let zero = stream_of(by_ka("0"));
    assert_eq!(zero["requests"], 7);
    assert_eq!(zero["cold"], 7, "{zero}");
    assert!(zero["ttft_ms"]["warm"].is_null());
    // 500ms: cold exactly after the 1 s gaps (requests 0, 2, 4, 6).
    let mid = stream_of(by_ka("500ms"));
    assert_eq!(mid["cold"], 4, "{mid}");
    // -1 (forever): only the first request of the stream.
    let forever = stream_of(by_ka("-1"));
    assert_eq!(forever["cold"], 1, "{forever}");
    assert_eq!(forever["errors"], 0);
    assert!(
        forever["ttft_ms"]["cold"]["p50"].as_f64().unwrap()
            > forever["ttft_ms"]["warm"]["p50"].as_f64().unwrap()
    );
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(forever["e2e_ms"]["all"][q].is_number(), "{q}");
    }

    // The loads the client's cold verdicts add up to are the simulator's own count.
    let sim_loads = &meta["sim"]["loads_per_cell"];
    for cell in cells {
        let id = cell["id"].as_str().unwrap();
        assert_eq!(
            stream_of(cell)["loads"],
            sim_loads[id],
            "cell {id}: loads witnessed vs the simulator's count"
        );
    }

    // A second run into the same folder is refused: nothing recorded is overwritten.
    let again = kabench()
        .args([
            "run",
            fixture("fast-sim.toml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"));

    // The report rebuilds the same numbers from a copy of the folder's files alone.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["scenario.toml", "run.json", "requests.csv", "vram.csv"] {
        std::fs::copy(out.join(f), copy.join(f)).unwrap();
    }
    run_ok(&["report", copy.to_str().unwrap()]);
    let again = read_json(&copy.join("summary.json"));
    assert_eq!(again["cells"], summary["cells"]);
    assert!(copy.join("index.html").exists());
}

#[test]
fn fault_injection_records_every_request_once_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run_ok(&[
        "run",
        fixture("faults.toml").to_str().unwrap(),
        "--target",
        "sim",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-prewarm",
    ]);
    let all = rows(&out);
    assert_eq!(all.len(), 60, "one row per request");
    let h = header(&out);
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let mut ids: Vec<&str> = all.iter().map(|r| &r[col("request")]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no request recorded twice");
    let kinds: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|r| &r[col("error")])
        .filter(|k| !k.is_empty())
        .collect();
    for expected in ["http", "stream_error", "broken_stream"] {
        assert!(kinds.contains(expected), "no {expected} among {kinds:?}");
    }
    let summary = read_json(&out.join("summary.json"));
    let s = stream_of(&summary["cells"][0]);
    let errors = s["errors"].as_u64().unwrap();
    assert!(errors > 0 && errors < 60, "{s}");
    let by_kind: u64 = s["errors_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, errors);
    assert!(
        s["ttft_ms"]["all"]["p99"].is_number(),
        "percentiles beside errors"
    );
}

/// Starts `kabench run` in the background, returning the child.
fn spawn_run(scenario: &str, target: &str, out: &Path) -> std::process::Child {
    kabench()
        .args([
            "run",
            fixture(scenario).to_str().unwrap(),
            "--target",
            target,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--no-prewarm",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kabench starts")
}

fn wait_for_rows(dir: &Path, n: usize, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if dir.join("requests.csv").exists() && rows(dir).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} rows after {limit:?}");
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("kabench did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_a_complete_reportable_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = spawn_run("steady.toml", "sim", &out);
    wait_for_rows(&out, 10, Duration::from_secs(30));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "interrupted");
    let n = rows(&out).len();
    assert!((10..240).contains(&n), "{n} rows");
    assert!(
        out.join("index.html").exists(),
        "the run renders what it recorded"
    );
    run_ok(&["report", out.to_str().unwrap()]);
    let summary = read_json(&out.join("summary.json"));
    let counted: u64 = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| stream_of(c)["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, n);
}

#[cfg(unix)]
#[test]
fn a_target_killed_midway_is_recorded_per_request() {
    let mut sim = kabench()
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            fixture("steady.toml").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("sim prints its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = spawn_run("steady.toml", &addr, &out);
    wait_for_rows(&out, 10, Duration::from_secs(30));
    sim.kill().unwrap();
    let _ = sim.wait();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "request failures are data, not a failed run"
    );
    let all = rows(&out);
    assert_eq!(all.len(), 240, "every planned request has its row");
    let h = header(&out);
    let err = h.iter().position(|c| c == "error").unwrap();
    assert!(all.iter().any(|r| &r[err] == "connect"));
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "complete");
    assert!(out.join("index.html").exists());
}

#[test]
fn a_malformed_scenario_is_refused_before_anything_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nseed = 1\n\n[[stream]]\nname = \"s\"\nmodel = \"qwen2.5:3b\"\narrival = { kind = \"poisson\", rate = \"fast\" }\n\n[run]\nrequests = 3\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = kabench()
        .args(["run", bad.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:7"), "names the line: {err}");
    assert!(err.contains("rate"), "names the key: {err}");
    assert!(!out.exists(), "nothing was run");
}

#[test]
fn a_missing_model_on_the_target_is_exit_2_with_the_pull_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = tmp.path().join("missing.toml");
    std::fs::write(
        &sc,
        "name = \"x\"\nseed = 1\n\n[[stream]]\nname = \"s\"\nmodel = \"nosuchmodel:1b\"\narrival = { kind = \"constant\", rate = \"1/s\" }\n\n[run]\nrequests = 1\n",
    )
    .unwrap();
    let o = kabench()
        .args(["run", sc.to_str().unwrap(), "--target", "sim", "--out"])
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ollama pull nosuchmodel:1b"), "{err}");
}

#[test]
fn release_delay_and_idle_vram_match_keep_alive_on_the_simulator() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run_ok(&[
        "run",
        fixture("release.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let summary = read_json(&out.join("summary.json"));
    let h = header(&out);
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let all = rows(&out);
    let interval_s = 0.1;
    let mut idle = Vec::new();
    for cell in summary["cells"].as_array().unwrap() {
        let ka: f64 = match cell["params"]["keep_alive"].as_str().unwrap() {
            "1s" => 1.0,
            "3s" => 3.0,
            other => panic!("unexpected keep_alive {other}"),
        };
        let vram = &cell["vram"];
        let release = &vram["release"][0];
        let delay = release["release_delay_s"]
            .as_f64()
            .expect("release observed");
        assert!(
            (delay - ka).abs() <= interval_s + 0.05,
            "keep_alive {ka}: release delay {delay}"
        );
        assert_eq!(release["honoured"], true);

        // Hand calculation: the model (size = peak) is idle after request 0 until it is
        // released (1s) or until request 1 arrives (3s), and for keep_alive after request 1.
        let id = cell["id"].as_str().unwrap();
        let mine: Vec<_> = all.iter().filter(|r| &r[col("cell")] == id).collect();
        let t = |r: &csv::StringRecord, c: &str| r[col(c)].parse::<f64>().unwrap() / 1000.0;
        let (end0, sent1) = (t(mine[0], "end_ms"), t(mine[1], "sent_ms"));
        let held_between = (sent1 - end0).min(ka);
        let size_gb = vram["peak_bytes"].as_f64().unwrap() / 1e9;
        let expected = size_gb * (held_between + ka);
        let measured = vram["idle_gb_seconds"].as_f64().unwrap();
        assert!(
            (measured - expected).abs() <= size_gb * 2.0 * (interval_s + 0.05),
            "keep_alive {ka}: idle {measured} GB·s, expected {expected}"
        );
        idle.push((ka, measured));
    }
    idle.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        idle[0].1 < idle[1].1,
        "idle VRAM grows with keep_alive: {idle:?}"
    );
}

#[test]
fn every_sweep_axis_expands_and_reaches_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run_ok(&[
        "run",
        fixture("grid.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--json",
    ]);
    let summary = read_json(&out.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 8, "2 keep_alive × 2 rates × 2 quants");
    let mut seen = std::collections::BTreeSet::new();
    for cell in cells {
        let p = &cell["params"];
        let (ka, rate, quant) = (
            p["keep_alive"].as_str().unwrap(),
            p["rate"].as_str().unwrap(),
            p["quant"].as_str().unwrap(),
        );
        assert!(["0", "-1"].contains(&ka) && ["2/s", "4/s"].contains(&rate));
        let s = stream_of(cell);
        assert_eq!(s["model"], format!("qwen2.5:3b-instruct-{quant}"));
        assert_eq!(s["requests"], 5);
        let expected_cold = if ka == "0" { 5 } else { 1 };
        assert_eq!(s["cold"], expected_cold, "{ka} {rate} {quant}");
        seen.insert((ka, rate, quant));
    }
    assert_eq!(seen.len(), 8, "every combination once");
    let charts: Vec<String> = std::fs::read_dir(out.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        charts.iter().any(|c| c.starts_with("cost-heatmap")),
        "a keep_alive × rate heatmap: {charts:?}"
    );
    let p99 = std::fs::read_to_string(out.join("charts/p99-ttft-by-keep-alive.svg")).unwrap();
    for label in ["keep_alive", "ms"] {
        assert!(p99.contains(label), "axis label {label} as text");
    }
    let recs = read_json(&out.join("recommendation.json"));
    assert!(
        recs.to_string().contains("q8_0"),
        "quantization advice names the swept values"
    );
}

#[test]
fn requests_past_the_concurrency_cap_are_recorded_as_saturated() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run_ok(&[
        "run",
        fixture("saturate.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-prewarm",
    ]);
    let all = rows(&out);
    assert_eq!(all.len(), 30, "every planned request has its row");
    let h = header(&out);
    let (err, sent) = (
        h.iter().position(|c| c == "error").unwrap(),
        h.iter().position(|c| c == "sent_ms").unwrap(),
    );
    let saturated: Vec<_> = all.iter().filter(|r| &r[err] == "saturated").collect();
    assert!(
        !saturated.is_empty(),
        "one in flight at a time cannot keep up"
    );
    assert!(saturated.iter().all(|r| r[sent].is_empty()), "never sent");
    assert!(all.iter().any(|r| r[err].is_empty()), "some got through");
    let summary = read_json(&out.join("summary.json"));
    let s = stream_of(&summary["cells"][0]);
    assert_eq!(s["errors_by_kind"]["saturated"], saturated.len());
}

#[test]
fn two_interleaved_traces_are_replayed_in_phase() {
    // Two clients of one log: a sends at 10.0, 10.4 and 10.8 s; b at 10.2 and 10.6 s.
    // Replayed together, b's sends stay 200 ms after a's, not shifted to start with them.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.csv"), "time_s\n10.0\n10.4\n10.8\n").unwrap();
    std::fs::write(tmp.path().join("b.csv"), "time_s\n10.2\n10.6\n").unwrap();
    let scenario = tmp.path().join("two.toml");
    let fast = std::fs::read_to_string(fixture("fast-sim.toml")).unwrap();
    let sim = &fast[fast.find("[sim]").unwrap()..fast.find("[[stream]]").unwrap()];
    let stream = |name: &str| {
        format!(
            "[[stream]]\nname = \"{name}\"\nmodel = \"qwen2.5:3b-instruct-q4_0\"\nprompt_tokens = 16\nmax_tokens = 4\nkeep_alive = -1\narrival = {{ kind = \"trace\", file = \"{name}.csv\" }}\n"
        )
    };
    std::fs::write(
        &scenario,
        format!(
            "name = \"two\"\n{sim}{}{}[run]\nrequests = 3\ntimeout = \"10s\"\n",
            stream("a"),
            stream("b")
        ),
    )
    .unwrap();
    let out = tmp.path().join("run");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        "sim",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let head = header(&out);
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let mut sends: Vec<(String, f64)> = rows(&out)
        .iter()
        .map(|r| {
            (
                r[col("stream")].to_string(),
                r[col("intended_ms")].parse().unwrap(),
            )
        })
        .collect();
    sends.sort_by(|x, y| x.1.total_cmp(&y.1));
    let order: Vec<&str> = sends.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(order, ["a", "b", "a", "b", "a"], "{sends:?}");
    let t0 = sends[0].1;
    for ((_, t), want) in sends.iter().zip([0.0, 200.0, 400.0, 600.0, 800.0]) {
        assert!((t - t0 - want).abs() < 1.0, "{sends:?}");
    }
}

/// A full disk, as the process sees it: files may not grow past `kib` KiB (writes past it
/// fail with "File too large", the signal that would kill the process is ignored).
#[cfg(unix)]
fn run_with_file_limit(kib: u32, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kabench"))
        .args(args)
        .output()
        .expect("bash runs kabench")
}

#[cfg(unix)]
#[test]
fn a_full_disk_stops_the_run_at_once_and_run_json_says_failed_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let started = Instant::now();
    // vram.csv outgrows 16 KiB during the first cell; run.json and requests.csv do not.
    let o = run_with_file_limit(
        16,
        &[
            "run",
            fixture("fast-sim.toml").to_str().unwrap(),
            "--target",
            "sim",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write vram.csv") && stderr.contains("stopping the run"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "failed", "{meta}");
    let failure = meta["failure"].as_str().unwrap();
    assert!(failure.starts_with("cannot write vram.csv"), "{failure}");
    let cells_done = meta["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ended_ms"].is_number())
        .count();
    assert!(
        cells_done < 3,
        "the run went on after the disk filled: {meta}"
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.contains("reserve"),
            "{name} left behind"
        );
    }
}
