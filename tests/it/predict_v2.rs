//! `kabench predict` v2 through the real binary: requests that share a load are one
//! reload in every cost; a thin test half and an overloaded host explain themselves
//! instead of recommending; a ServeGen client's span is its own; and, against the real
//! Ollama with `OLLAMA_DEBUG=1`, each request's keep_alive comes from the scheduler's
//! timer lines so that every unload the server logged is predicted.

use crate::common::{RealOllama, run, run_ok};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

const MODEL: &str = "qwen2.5:7b-instruct-q4_K_M";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The cell whose `params.keep_alive` is `name`.
fn cell<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["params"]["keep_alive"] == name)
        .unwrap_or_else(|| panic!("no cell {name:?} in {summary}"))
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("summary JSON on stdout")
}

/// `kabench predict --requests CSV <extra> --train TRAIN -q`, asserted to succeed.
fn predict(csv: &Path, train: &str, extra: &[&str]) -> Output {
    let csv = csv.to_str().unwrap();
    let args = [
        &["predict", "--requests", csv][..],
        extra,
        &["--train", train, "-q"],
    ]
    .concat();
    run_ok(&args)
}

/// [`predict`]'s table.
fn predict_table(csv: &Path, train: &str, extra: &[&str]) -> String {
    String::from_utf8_lossy(&predict(csv, train, extra).stdout).into_owned()
}

/// [`predict`]'s summary (`--json`).
fn predict_json(csv: &Path, train: &str, extra: &[&str]) -> Value {
    json_of(&predict(csv, train, &[extra, &["--json"]].concat()))
}

/// Three requests at once wait on one load, twice: six cold requests, two reloads,
/// and the cost prices two.
#[test]
fn requests_that_share_a_load_are_one_reload() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "bursts.csv",
        &format!(
            "timestamp,model,prompt_tokens,output_tokens\n0,{MODEL},20,4\n0,{MODEL},20,4\n0,{MODEL},20,4\n3600,{MODEL},20,4\n3600,{MODEL},20,4\n3600,{MODEL},20,4\n"
        ),
    );
    let summary = predict_json(&csv, "1", &["--keep-alive", "0", "--no-grid"]);
    let zero = cell(&summary, "0");
    assert_eq!(zero["streams"][0]["cold"], 6, "{zero}");
    assert_eq!(zero["policy"]["cold_loads"], 2, "{zero}");
    let penalty = zero["streams"][0]["cold_penalty_ms"].as_f64().unwrap() / 1000.0;
    let cold_cost = zero["policy"]["cost"]["cold"].as_f64().unwrap();
    assert!(
        (cold_cost - 2.0 * penalty).abs() < 1e-9,
        "{cold_cost} vs {penalty}"
    );
    // The table shows both: cold requests and reloads.
    let table = predict_table(&csv, "1", &["--keep-alive", "0", "--no-grid"]);
    assert!(table.lines().next().unwrap().contains("reloads"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("0 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[3], row[5]), ("6", "2"), "{table}");
}

/// Traffic only in the first part of the span: the test half has one request, and the
/// out-of-sample line says there is too little traffic instead of "0.0 against 0.0".
#[test]
fn a_thin_test_half_is_too_little_traffic_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("timestamp,model\n");
    for i in 0..40 {
        text.push_str(&format!("{},{MODEL}\n", i * 10));
    }
    text.push_str(&format!("10000,{MODEL}\n"));
    let csv = write(dir.path(), "early.csv", &text);
    let table = predict_table(&csv, "0.5", &[]);
    assert!(
        table.contains("too little traffic after the split: 1 request(s) in the remaining 50%"),
        "{table}"
    );
    assert!(!table.contains(", against "), "{table}");
    let summary = predict_json(&csv, "0.5", &[]);
    let oos = &summary["out_of_sample"];
    assert_eq!(oos["too_little_traffic"], true, "{oos}");
    assert_eq!(oos["test_requests"], 1, "{oos}");
    assert!(oos["best_fixed_after_split"].is_null(), "{oos}");
}

/// A 7B model serving one request at a time, sent one long answer a second: the queue
/// grows for the whole input; predict says the host cannot serve it, with the
/// utilisation, and recommends nothing.
#[test]
fn an_overloaded_host_says_so_and_recommends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("timestamp,model,prompt_tokens,output_tokens\n");
    for i in 0..300 {
        text.push_str(&format!("{i},{MODEL},50,2000\n"));
    }
    let csv = write(dir.path(), "flood.csv", &text);
    let table = predict_table(&csv, "1", &["--num-parallel", "1"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("warning: the host cannot serve this traffic"))
        .unwrap_or_else(|| panic!("{table}"));
    let busy: f64 = line
        .split(" is busy ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(busy > 100.0, "{line}");
    assert!(line.contains("no keep_alive is recommended"), "{line}");
    assert!(!table.contains("best fixed keep_alive:"), "{table}");
    let summary = predict_json(&csv, "1", &["--num-parallel", "1"]);
    assert!(
        summary.get("best_fixed").is_none(),
        "{}",
        summary["best_fixed"]
    );
}

/// A ServeGen client whose windows go quiet after the first hour of a four-hour file:
/// the span replayed and split is the client's hour, and a note says so.
#[test]
fn a_servegen_clients_span_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        String::from("client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale\n");
    for w in 0..24 {
        let rate = if w < 6 { 0.1 } else { 0.0 };
        text.push_str(&format!("7,{},{rate},1.0,Gamma,1.0,10.0\n", w * 600));
    }
    for w in 0..24 {
        text.push_str(&format!("8,{},0.05,1.0,Gamma,1.0,20.0\n", w * 600));
    }
    let trace = write(dir.path(), "sg.csv", &text);
    let out = run_ok(&[
        "predict",
        "--trace",
        trace.to_str().unwrap(),
        "--client",
        "7",
        "--model",
        MODEL,
        "--no-grid",
        "-q",
    ]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("the client's traffic ends at 3600 s of the file's 14400 s"),
        "{table}"
    );
    // Split at half the client's hour: both halves have traffic, so a result.
    assert!(table.contains(", against "), "{table}");
    // Without --client, the clients are listed one per line, the busiest first.
    let out = run(&["predict", "--trace", trace.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let at8 = err.find("\n  8 (").unwrap_or_else(|| panic!("{err}"));
    let at7 = err.find("\n  7 (").unwrap_or_else(|| panic!("{err}"));
    assert!(at8 < at7, "{err}");
}

/// Against the real Ollama with OLLAMA_DEBUG=1 and the server's default of 5m: one
/// client sends keep_alive 0, 5s, 30s and -1. The log, captured here, says what each
/// request sent (the scheduler's timer lines), and the "as sent" replay predicts every
/// unload the server logged within ±2 s.
#[test]
fn per_request_keep_alive_from_the_real_servers_debug_log() {
    let Some(ollama) = RealOllama::start(
        "predict-v2-keep-alive",
        &[("OLLAMA_DEBUG", "1"), ("OLLAMA_KEEP_ALIVE", "5m")],
    ) else {
        return;
    };
    let generate = |ka: &str| {
        let body = format!(
            r#"{{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":{ka},"options":{{"num_predict":2}}}}"#
        );
        let (status, text) = ollama.call("POST", "/api/generate", Some(&body));
        assert_eq!(status, 200, "{text}");
    };
    let pause = |s: f64| std::thread::sleep(std::time::Duration::from_secs_f64(s));
    // Loaded and unloaded at once (0); loaded, expired after 5 s; loaded again, held
    // 30 s, then forever, then unloaded by a 0.
    generate("0");
    pause(1.5);
    generate("\"5s\"");
    pause(7.0);
    generate("\"30s\"");
    pause(1.5);
    generate("-1");
    pause(1.5);
    generate("0");
    pause(1.0);
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path(), "server.log", &ollama.log_text());
    drop(ollama);
    let out = run_ok(&[
        "predict",
        "--ollama-log",
        log.to_str().unwrap(),
        "--keep-alive",
        "5m",
        "--no-grid",
        "-q",
    ]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let check = table
        .lines()
        .find(|l| l.starts_with("server log check (as-sent)"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(check.contains("the log shows 3 (0 evicted)"), "{check}");
    assert!(check.contains("every unload agrees"), "{check}");
    assert!(
        table.contains("per-request keep_alive from 5 scheduler timer line(s)"),
        "{table}"
    );
    // Replayed at the server's default instead, the unloads do not match.
    let default_row = table.lines().find(|l| l.starts_with("5m ")).unwrap();
    let cols: Vec<&str> = default_row.split_whitespace().collect();
    assert_eq!(cols[3], "1", "{default_row}");
}

/// A deterministic uniform draw in (0, 1).
fn unit(x: &mut u64) -> f64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Poisson arrivals of `model` (mean gap `mean` s) up to `span`, from `from`.
fn poisson(rows: &mut Vec<(f64, String)>, model: &str, from: f64, span: f64, mean: f64, seed: u64) {
    let mut x = seed;
    let mut t = from;
    loop {
        t += -mean * unit(&mut x).ln();
        if t >= from + span {
            break;
        }
        rows.push((t, model.to_string()));
    }
}

fn csv_of(dir: &Path, name: &str, mut rows: Vec<(f64, String)>) -> PathBuf {
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut text = String::from("timestamp,model\n");
    for (t, m) in rows {
        text.push_str(&format!("{t:.3},{m}\n"));
    }
    write(dir, name, &text)
}

fn policy_cost(summary: &Value, name: &str, part: &str) -> f64 {
    cell(summary, name)["policy"][part]["total"]
        .as_f64()
        .unwrap()
}

const SMALL: &str = "qwen2.5:3b-instruct-q4_K_M";

/// A cron-like client (every 15 minutes, a few seconds late at most) on the 7B, mixed
/// into Poisson traffic on the 3B: pre-warm loads the 7B just before each run and
/// closes well over 30% of the gap from the best fixed keep_alive to the optimum.
#[test]
fn pre_warm_pays_on_a_periodic_client_mixed_into_poisson_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut x = 3u64;
    for i in 0..96 {
        rows.push((i as f64 * 900.0 + 5.0 * unit(&mut x), MODEL.to_string()));
    }
    poisson(&mut rows, SMALL, 0.0, 86_400.0, 120.0, 5);
    let csv = csv_of(dir.path(), "mixed.csv", rows);
    let summary = predict_json(&csv, "1", &[]);
    let best = summary["best_fixed"].as_str().unwrap().to_string();
    let (b, o, pw) = (
        policy_cost(&summary, &best, "cost"),
        policy_cost(&summary, "keep-alive-optimum", "cost"),
        policy_cost(&summary, "pre-warm", "cost"),
    );
    assert!(b > o, "{b} {o}");
    assert!(
        b - pw >= 0.3 * (b - o),
        "best fixed {b}, optimum {o}, pre-warm {pw}"
    );
    let pwc = cell(&summary, "pre-warm");
    assert!(
        pwc["policy"]["prewarm_loads"].as_u64().unwrap() >= 80,
        "{pwc}"
    );
    // Only the periodic client's model was pre-warmed; the report says so and how much
    // of the gap it closed.
    let table = predict_table(&csv, "1", &[]);
    let line = table.lines().find(|l| l.starts_with("pre-warm (")).unwrap();
    assert!(
        line.contains(&format!("pre-warmed (periodic): {MODEL} (")),
        "{line}"
    );
    assert!(!line.contains(&format!("{SMALL} (")), "{line}");
    assert!(
        line.contains("of the gap from the best fixed keep_alive"),
        "{line}"
    );
}

/// Poisson traffic only: no model is periodic, pre-warm never loads ahead and costs
/// what the adaptive policy costs, on the held-out half too.
#[test]
fn pre_warm_stays_out_of_a_stream_with_no_periodic_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    poisson(&mut rows, MODEL, 0.0, 86_400.0, 600.0, 9);
    let csv = csv_of(dir.path(), "poisson.csv", rows);
    let summary = predict_json(&csv, "0.5", &[]);
    let pwc = cell(&summary, "pre-warm");
    assert_eq!(pwc["policy"]["prewarm_loads"], 0, "{pwc}");
    for part in ["cost", "cost_test"] {
        let (pw, ad) = (
            policy_cost(&summary, "pre-warm", part),
            policy_cost(&summary, "adaptive", part),
        );
        assert!(
            (pw - ad).abs() <= 1e-9 * ad.max(1.0),
            "{part}: {pw} vs {ad}"
        );
    }
    let table = predict_table(&csv, "0.5", &[]);
    assert!(
        table.contains("no model's gaps were periodic enough to pre-warm"),
        "{table}"
    );
}

/// The gap distribution changes half-way (a chat burst every 20 s, then a request an
/// hour): the fixed value fitted on the first half holds the model through the second
/// half's long gaps for nothing; the adaptive policy learns the new gaps and beats it
/// there.
#[test]
fn after_a_regime_shift_adaptive_beats_the_fixed_value_fitted_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    poisson(&mut rows, MODEL, 0.0, 43_200.0, 20.0, 13);
    poisson(&mut rows, MODEL, 43_200.0, 43_200.0, 3_600.0, 17);
    let csv = csv_of(dir.path(), "shift.csv", rows);
    let summary = predict_json(&csv, "0.5", &[]);
    let fitted = summary["out_of_sample"]["recommended"]
        .as_str()
        .unwrap()
        .to_string();
    let adaptive = policy_cost(&summary, "adaptive", "cost_test");
    // Every fixed value as good as the fitted one on the first half loses to adaptive
    // on the second.
    let best_train = policy_cost(&summary, &fitted, "cost_train");
    for c in summary["cells"].as_array().unwrap() {
        if c["policy"]["kind"] != "fixed" {
            continue;
        }
        let train = c["policy"]["cost_train"]["total"].as_f64().unwrap();
        if train <= best_train * 1.0001 {
            let test = c["policy"]["cost_test"]["total"].as_f64().unwrap();
            assert!(
                adaptive < test,
                "{}: {test} vs adaptive {adaptive}",
                c["policy"]["name"]
            );
        }
    }
    assert!(adaptive < policy_cost(&summary, &fitted, "cost_test"));
}
