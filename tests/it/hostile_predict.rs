//! `kabench predict` and `sim --calibrate` on hostile input, through the real binary:
//! times, time scales, load times and latencies of 1e300 or Go's largest duration,
//! ServeGen rates and horizons that would plan billions of requests, lines and fields
//! far over the limits, and a replay where most requests are refused. Each is refused
//! with exit 2 naming the file, line and field (or the flag) and the limit, or shown
//! in the table; nothing outside the temp dir is written.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;

fn predict(dir: &Path, args: &[&str]) -> Output {
    common::kabench()
        .arg("predict")
        .args(args)
        .args(["--no-grid", "-q"])
        .current_dir(dir)
        .env("KABENCH_SKIP_REAL_OLLAMA", "1")
        .output()
        .expect("kabench runs")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2, no panic, and every word of `wanted` in stderr; the temp dir holds only
/// the files the test wrote.
fn refused(out: &Output, dir: &Path, files: usize, wanted: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(err.len() < 4000, "the error is {} bytes long", err.len());
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), files);
    err
}

#[test]
fn a_timestamp_of_1e300_is_refused_naming_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "t.csv",
        "timestamp,model\n0,tiny-50m\n1e300,tiny-50m\n",
    );
    let out = predict(tmp.path(), &["--requests", "t.csv"]);
    refused(&out, tmp.path(), 1, &["t.csv:3", "timestamp", "100 years"]);
}

#[test]
fn a_time_scale_of_1e300_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "t.csv",
        "timestamp,model\n0,tiny-50m\n10,tiny-50m\n",
    );
    let out = predict(
        tmp.path(),
        &["--requests", "t.csv", "--time-scale", "1e300"],
    );
    refused(
        &out,
        tmp.path(),
        1,
        &["t.csv:3", "--time-scale", "100 years"],
    );
}

#[test]
fn a_mooncake_timestamp_of_1e300_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "m.jsonl",
        "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5}\n{\"timestamp\": 1e300, \"input_length\": 10, \"output_length\": 5}\n",
    );
    let out = predict(tmp.path(), &["--trace", "m.jsonl", "--model", "tiny-50m"]);
    refused(
        &out,
        tmp.path(),
        1,
        &["m.jsonl:2", "timestamp", "100 years"],
    );
}

#[test]
fn a_load_time_of_1e300_in_a_server_log_is_not_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = "time=2026-05-22T17:28:20.000Z level=INFO source=llama_server.go:1362 msg=\"llama-server started in 1e300 seconds\"\n\
        [GIN] 2026/05/22 - 17:28:26 | 200 |     2.843912s |      10.0.0.192 | POST     \"/api/chat\"\n\
        [GIN] 2026/05/22 - 17:28:40 | 200 |     1.5s |      10.0.0.192 | POST     \"/api/chat\"\n";
    write(tmp.path(), "s.log", log);
    let out = predict(
        tmp.path(),
        &["--ollama-log", "s.log", "--model", "tiny-50m", "--strict"],
    );
    refused(&out, tmp.path(), 1, &["s.log:1", "load time", "100 years"]);
    // Without --strict the line is skipped, counted and named.
    let out = predict(
        tmp.path(),
        &["--ollama-log", "s.log", "--model", "tiny-50m"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("unparsable line(s) skipped") && table.contains("line 1"),
        "{table}"
    );
}

#[test]
fn a_latency_of_gos_largest_duration_is_flagged_not_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = "[GIN] 2026/05/22 - 17:28:26 | 200 |     2.843912s |      10.0.0.192 | POST     \"/api/chat\"\n\
        [GIN] 2026/05/22 - 17:28:40 | 200 | 2562047h47m16.854775807s |      10.0.0.192 | POST     \"/api/chat\"\n\
        [GIN] 2026/05/22 - 17:29:00 | 200 |     1.5s |      10.0.0.192 | POST     \"/api/chat\"\n";
    write(tmp.path(), "s.log", log);
    let out = predict(
        tmp.path(),
        &["--ollama-log", "s.log", "--model", "tiny-50m", "--strict"],
    );
    refused(&out, tmp.path(), 1, &["s.log:2", "latency", "24 h"]);
    let out = predict(
        tmp.path(),
        &["--ollama-log", "s.log", "--model", "tiny-50m", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two requests replayed, none with an hour-long TTFT.
    let cell = &summary["cells"][0];
    let text = cell.to_string();
    assert!(!text.contains("3600000"), "{text}");
    let requests: u64 = cell["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(requests, 2, "{text}");
}

#[test]
fn a_servegen_rate_of_1e6_is_refused_before_drawing() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "g.csv",
        "client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale\n1,0,1e6,1,Gamma,1,1\n",
    );
    let out = common::kabench()
        .args(["predict", "--trace", "g.csv", "--client", "1"])
        .args(["--model", "tiny-50m", "--no-grid", "-q"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    refused(
        &out,
        tmp.path(),
        1,
        &["g.csv:2", "rate_rps", "at most 10000000 requests"],
    );
}

#[test]
fn a_horizon_of_a_century_is_refused_before_planning() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "s.toml",
        "[run]\nrequests = 1\n\n[[stream]]\nname = \"a\"\nmodel = \"tiny-50m\"\narrival = { kind = \"poisson\", rate = \"10/s\" }\n",
    );
    let started = std::time::Instant::now();
    let out = predict(tmp.path(), &["--scenario", "s.toml", "--horizon", "36500d"]);
    refused(&out, tmp.path(), 1, &["--horizon", "10000000"]);
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

#[test]
fn a_line_over_the_limit_is_refused_in_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "x".repeat(2 << 20);
    write(tmp.path(), "r.csv", &format!("timestamp,model\n0,{long}\n"));
    write(tmp.path(), "s.log", &format!("[GIN] {long}"));
    write(
        tmp.path(),
        "m.jsonl",
        &format!("{{\"timestamp\": 0}}\n{{{long}"),
    );
    write(
        tmp.path(),
        "g.csv",
        &format!("client_id,window_start_s,rate_rps\n1,0,{long}\n"),
    );
    for args in [
        vec!["--requests", "r.csv"],
        vec!["--ollama-log", "s.log", "--model", "tiny-50m"],
        vec!["--trace", "m.jsonl", "--model", "tiny-50m"],
        vec!["--trace", "g.csv", "--client", "1", "--model", "tiny-50m"],
    ] {
        let out = predict(tmp.path(), &args);
        refused(&out, tmp.path(), 4, &[args[1], "longer than 1048576 bytes"]);
    }
}

#[test]
fn an_error_echoes_an_excerpt_of_a_long_field() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "y".repeat(300_000);
    write(
        tmp.path(),
        "r.csv",
        &format!("timestamp,model\n0,tiny-50m\n{long},tiny-50m\n"),
    );
    let out = predict(tmp.path(), &["--requests", "r.csv"]);
    refused(&out, tmp.path(), 1, &["r.csv:3", "(300000 bytes)"]);
    write(
        tmp.path(),
        "r.csv",
        &format!("timestamp,model\n0,tiny-50m\n1,{long}\n"),
    );
    let out = predict(tmp.path(), &["--requests", "r.csv"]);
    refused(&out, tmp.path(), 1, &["(300000 bytes)"]);
}

#[test]
fn refused_requests_are_shown_in_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("timestamp,model\n");
    for _ in 0..40 {
        csv.push_str("0,tiny-50m\n");
    }
    write(tmp.path(), "r.csv", &csv);
    write(
        tmp.path(),
        "s.toml",
        "[run]\nrequests = 1\n\n[[stream]]\nname = \"a\"\nmodel = \"tiny-50m\"\narrival = { kind = \"constant\", rate = \"1/s\" }\n\n[sim]\nmax_queue = 2\nnum_parallel = 1\n",
    );
    let out = predict(tmp.path(), &["--requests", "r.csv", "--scenario", "s.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(header.contains("errors"), "{table}");
    // 40 at once on a cold model with a queue of 2: one loads, two wait, 37 are
    // refused with 503, and cold% is of the 3 answered (all waited for the load:
    // 100%), not 3 of 40 (7.5%).
    let row = table
        .lines()
        .find(|l| l.starts_with("5m "))
        .expect("a 5m row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "40", "{row}");
    assert_eq!(cols[2], "37", "{row}");
    assert_eq!(cols[3], "3", "{row}");
    assert_eq!(cols[4], "100.0%", "{row}");
    assert!(table.contains("warning: requests failed"), "{table}");
}

#[test]
fn sim_calibrate_refuses_a_load_duration_of_1e300_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    common::copy_run(&common::fixture_dir("run-small"), &run);
    let csv = run.join("requests.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "load_duration_ms")
        .unwrap();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    cells[at] = "1e300".into();
    lines[1] = cells.join(",");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    // A simulator that started would serve until killed: give it 10 s.
    let mut child = common::kabench()
        .args(["sim", "--listen", "127.0.0.1:0", "--calibrate"])
        .arg(&run)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 10 {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("requests.csv:2")
            && err.contains("load_duration_ms")
            && err.contains("100 years"),
        "{err}"
    );
    write(tmp.path(), "t.csv", "timestamp,model\n0,tiny:1b\n");
    let out = predict(
        tmp.path(),
        &["--requests", "t.csv", "--calibrate", run.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("load_duration_ms"), "{err}");
}

#[test]
fn an_overloaded_replay_holds_a_bounded_number_of_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("timestamp,model,output_tokens\n");
    for i in 0..22_000 {
        csv.push_str(&format!("{:.3},tiny-50m,2000\n", f64::from(i) * 0.001));
    }
    write(tmp.path(), "r.csv", &csv);
    let out = predict(tmp.path(), &["--requests", "r.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("5m "))
        .expect("a 5m row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "22000", "{row}");
    let errors: u64 = cols[2].parse().unwrap();
    assert!(errors >= 1_000, "{row}");
    assert!(
        table.contains("refused because 20000 were already waiting"),
        "{table}"
    );
}
