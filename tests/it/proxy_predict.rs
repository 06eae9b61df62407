//! The proxy's log of a run, replayed: `kabench run` sends a keep_alive sweep through
//! `kabench proxy` to a server (the simulator, and the real Ollama where available),
//! and `kabench predict --requests proxy-requests.csv` replays every logged request
//! with the keep_alive it carried (the "as-sent" row). The server is the reference:
//! the replay must count the cold starts the run measured, in total and cell by cell
//! (each cell's rows replayed alone: the run unloads every model before a cell).
//!
//! The gaps keep their distance from every keep_alive: a request's idle gap (its
//! arrival less the previous request's end) is at least 0.45 s away from each
//! keep_alive on the simulator (whose loads take 0.3 s, unjittered), and over a second
//! on the real server (gaps × 6, whose loads take up to seconds on a busy host), so
//! the counts are exact. The run's own control calls pass through the proxy too (the
//! pre-load before the first cell, the unload before each cell), and the replay must
//! take them for what they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, RealOllama, SimServer};
use kabench::proxy::{self, ProxyConfig};

/// Send times of one cell, seconds (before the scenario's `time_scale`). Idle gaps
/// after the service: about 0.45, 1.9, 0.5, 3.4 and 0.5 s. Cold per keep_alive (at
/// scale 1): `0` → 6, `1s` → 3 (after 1.9 and 3.4), `3s` → 2 (after 3.4), `-1` → 1.
const SEND_TIMES: [f64; 6] = [0.0, 0.8, 3.0, 3.8, 7.5, 8.3];

/// The same simulated host for the simulator and the replay: unjittered loads of
/// about 0.3 s (as `tests/fixtures/predict/agree.toml`).
const SIM: &str = r#"
[sim]
runtime_start = "300ms"
cached_bandwidth = "100GB"
cold_bandwidth = "100GB"
load_jitter = 0.0
vram_release_delay = "20ms"
"#;

/// One study: the scenario, where its run and the proxy's log went.
struct Study {
    scenario: PathBuf,
    run_dir: PathBuf,
    log_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Writes the scenario (`model`, the sweep `keep_alives`, gaps × `scale`, `sim` laid in).
fn study(model: &str, keep_alives: &[&str], scale: f64, sim: &str) -> Study {
    let tmp = tempfile::tempdir().unwrap();
    let times: String = SEND_TIMES.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(tmp.path().join("gaps.csv"), format!("time_s\n{times}")).unwrap();
    let sweep: Vec<String> = keep_alives.iter().map(|k| format!("{k:?}")).collect();
    let scenario = tmp.path().join("through-proxy.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "through-proxy"
seed = 3
{sim}
[[stream]]
name = "s"
model = "{model}"
api = "generate"
prompt_tokens = 20
max_tokens = 4
arrival = {{ kind = "trace", file = "gaps.csv", column = "time_s", time_scale = {scale:?} }}

[run]
requests = {n}
timeout = "60s"

[sweep]
keep_alive = [{sweep}]
"#,
            n = SEND_TIMES.len(),
            sweep = sweep.join(", ")
        ),
    )
    .unwrap();
    Study {
        scenario,
        run_dir: tmp.path().join("run"),
        log_dir: tmp.path().join("proxy"),
        _tmp: tmp,
    }
}

/// Runs the scenario through a proxy in front of `upstream`; returns the run's
/// `summary.json`.
async fn run_through_proxy(s: &Study, upstream: &str) -> Value {
    let proxy = proxy::spawn(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.into(),
        out: s.log_dir.clone(),
        rewrite_keep_alive: None,
        quiet: true,
    })
    .await
    .unwrap();
    let mut run = common::kabench();
    run.arg("run")
        .arg(&s.scenario)
        .args(["--target", &proxy.base_url(), "--out"])
        .arg(&s.run_dir)
        .arg("--quiet");
    // The proxy serves on this runtime's workers while the run blocks another thread.
    let out = tokio::task::spawn_blocking(move || run.output().unwrap())
        .await
        .unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
    assert!(
        out.status.success(),
        "kabench run through the proxy: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    common::read_json(&s.run_dir.join("summary.json"))
}

/// The run's cold count per cell (by `params.keep_alive`), in cell order.
fn measured(summary: &Value) -> Vec<(String, u64)> {
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ka = match &c["params"]["keep_alive"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let cold = c["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["cold"].as_u64().unwrap())
                .sum();
            (ka, cold)
        })
        .collect()
}

/// `kabench predict --requests log` (its other flags in `extra`): the as-sent row's
/// cold count, all models together.
fn as_sent_cold(log: &Path, extra: &[&str]) -> u64 {
    let out = common::kabench()
        .arg("predict")
        .arg("--requests")
        .arg(log)
        .args(["--no-grid", "--json", "--quiet"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predict {}: {}",
        log.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["params"]["keep_alive"] == "as-sent")
        .unwrap_or_else(|| panic!("no as-sent row in {summary}"));
    cell["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cold"].as_u64().unwrap())
        .sum()
}

/// The proxy log's rows, in arrival order (the proxy writes each as it ends).
fn log_rows(log: &Path) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(log).unwrap();
    let header = r.headers().unwrap().clone();
    let t = header.iter().position(|h| h == "t_ms").unwrap();
    let mut rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    rows.sort_by(|a, b| {
        let at = |x: &csv::StringRecord| x[t].parse::<f64>().unwrap();
        at(a).total_cmp(&at(b))
    });
    (header, rows)
}

/// Splits the log into one file per cell: a cell is a run of consecutive requests
/// carrying the cell's keep_alive (`kind` serve); the run's control calls go
/// with the cell before them (the pre-load and unload before the first, with the
/// first). Returns the files in cell order.
fn per_cell_logs(log: &Path, cells: &[(String, u64)], dir: &Path) -> Vec<PathBuf> {
    let (header, rows) = log_rows(log);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (ka, kind) = (col("keep_alive"), col("kind"));
    let mut groups: Vec<Vec<&csv::StringRecord>> = vec![Vec::new()];
    let mut cell = 0;
    let mut seen = 0;
    for row in &rows {
        let served = &row[kind] == "serve";
        if served && seen == SEND_TIMES.len() {
            cell += 1;
            seen = 0;
            groups.push(Vec::new());
        }
        if served {
            assert_eq!(
                keep_alive_seconds(&row[ka]),
                keep_alive_seconds(&cells[cell].0),
                "row {row:?} belongs to cell {}",
                cells[cell].0
            );
            seen += 1;
        }
        groups[cell].push(row);
    }
    assert_eq!(groups.len(), cells.len(), "one group of rows per cell");
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let path = dir.join(format!("cell-{i}.csv"));
            let mut w = csv::Writer::from_path(&path).unwrap();
            w.write_record(&header).unwrap();
            for row in g {
                w.write_record(*row).unwrap();
            }
            w.flush().unwrap();
            path
        })
        .collect()
}

fn keep_alive_seconds(text: &str) -> f64 {
    kabench::units::KeepAlive::parse(text)
        .unwrap()
        .seconds_or_infinity()
}

/// The acceptance check: the whole log, and each cell's rows, replayed as sent, give
/// the cold counts the run measured.
fn check(s: &Study, summary: &Value, predict_flags: &[&str], want: &[(&str, u64)]) {
    let cells = measured(summary);
    let expected: Vec<(String, u64)> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let log = s.log_dir.join("proxy-requests.csv");
    assert_eq!(cells, expected, "the run's cold counts per cell");
    let total: u64 = cells.iter().map(|c| c.1).sum();
    assert_eq!(
        as_sent_cold(&log, predict_flags),
        total,
        "the whole proxy log replayed as sent: the run measured {cells:?}"
    );
    let split = s.log_dir.join("cells");
    std::fs::create_dir_all(&split).unwrap();
    let mut predicted: BTreeMap<usize, u64> = BTreeMap::new();
    for (i, file) in per_cell_logs(&log, &cells, &split).iter().enumerate() {
        predicted.insert(i, as_sent_cold(file, predict_flags));
    }
    let got: Vec<(String, u64)> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.0.clone(), predicted[&i]))
        .collect();
    assert_eq!(got, cells, "each cell's rows replayed as sent");
}

/// The policies' cells of `kabench predict --requests log --json` (`extra` flags).
fn predict_cells(log: &Path, extra: &[&str]) -> Vec<Value> {
    let out = common::run_ok(
        &[
            &["predict", "--requests", log.to_str().unwrap()],
            &["--no-grid", "--json", "--quiet"][..],
            extra,
        ]
        .concat(),
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["cells"].as_array().unwrap().clone()
}

/// A logged unload and load, by hand: "as sent" replays them as the server took them
/// (neither a request nor cold); a fixed policy leaves them out.
#[test]
fn logged_loads_and_unloads_are_replayed_as_sent_and_left_out_of_fixed_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.csv");
    let m = "qwen2.5:3b-instruct-q4_K_M";
    std::fs::write(
        &log,
        format!(
            "timestamp,model,keep_alive,kind,prompt_tokens,output_tokens\n\
             0,{m},-1,serve,20,4\n\
             5,{m},0,unload,,\n\
             10,{m},-1,serve,20,4\n\
             15,{m},0,unload,,\n\
             20,{m},-1,load,,\n\
             30,{m},-1,serve,20,4\n"
        ),
    )
    .unwrap();
    let cells = predict_cells(&log, &["--keep-alive", "-1"]);
    let stream = |name: &str| {
        cells
            .iter()
            .find(|c| c["params"]["keep_alive"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["streams"][0]
            .clone()
    };
    // Cold at 0 and at 10 (after the unload); the load at 20 makes 30 warm.
    assert_eq!(stream("as-sent")["cold"], 2, "{}", stream("as-sent"));
    assert_eq!(stream("as-sent")["requests"], 3);
    // -1 without the client's unloads: only the first.
    assert_eq!(stream("-1")["cold"], 1);
    assert_eq!(stream("-1")["requests"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_log_of_a_run_on_the_simulator_replays_to_its_cold_counts() {
    let s = study(
        "qwen2.5:3b-instruct-q4_K_M",
        &["-1", "1s", "0", "3s"],
        1.0,
        SIM,
    );
    let scenario = s.scenario.to_str().unwrap().to_string();
    let sim = SimServer::start(&["--scenario", &scenario, "--seed", "3"]);
    let summary = run_through_proxy(&s, &sim.url).await;
    check(
        &s,
        &summary,
        &["--scenario", &scenario, "--seed", "3"],
        &[("-1", 1), ("1s", 3), ("0", 6), ("3s", 2)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_log_of_a_run_on_the_real_ollama_replays_to_its_cold_counts() {
    let Some(real) = RealOllama::start("proxy-predict", &[]) else {
        return;
    };
    // Gaps × 6 (4.8 s and more): on a busy host a load of the tiny model takes up to
    // 3.5 s, so a request must not arrive while the one before is still loading. Cold
    // under 10s: the first, and those after the gaps of 13.2 and 22.2 s.
    let s = study("tiny-50m", &["10s", "0"], 6.0, "");
    let summary = run_through_proxy(&s, &real.url).await;
    let run_dir = s.run_dir.to_str().unwrap().to_string();
    check(
        &s,
        &summary,
        &["--calibrate", &run_dir],
        &[("10s", 3), ("0", 6)],
    );
}
