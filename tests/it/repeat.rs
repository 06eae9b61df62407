//! Repetitions (`[run] repeat`, `kabench run --repeat`) on the embedded simulator
//! (seeded): every cell runs N times with the order rotated per repetition, every
//! repetition's rows are recorded, the summary pools them into one cell per point of
//! the sweep with an interval on every headline figure, and a sharded run pools the
//! same cells.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{self, read_json, request_rows, run_ok};

const FIVE: &str = "tests/fixtures/repeat/five.toml";

fn run(out: &Path, target: &str, extra: &[&str]) {
    let mut args = vec![
        "run",
        FIVE,
        "--target",
        target,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// The recorded cells' ids, in run order.
fn cell_ids(dir: &Path) -> Vec<String> {
    read_json(&dir.join("run.json"))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// Per pooled cell: requests and model loads of its stream.
fn pooled(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    read_json(&dir.join("summary.json"))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = &c["streams"][0];
            (
                c["id"].as_str().unwrap().to_string(),
                (
                    s["requests"].as_u64().unwrap(),
                    s["loads"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn has_interval(v: &Value) -> bool {
    v["lo"].is_number() && v["hi"].is_number() && v["lo"].as_f64() <= v["hi"].as_f64()
}

#[test]
fn five_repetitions_are_rotated_recorded_and_pooled_with_intervals() {
    let _turn = common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&out, "sim", &[]);

    // Ten recorded cells, repetition K's order rotated by K−1.
    let ids = cell_ids(&out);
    assert_eq!(
        ids,
        [
            "c01-ka_0-r1",
            "c02-ka_-1-r1",
            "c02-ka_-1-r2",
            "c01-ka_0-r2",
            "c01-ka_0-r3",
            "c02-ka_-1-r3",
            "c02-ka_-1-r4",
            "c01-ka_0-r4",
            "c01-ka_0-r5",
            "c02-ka_-1-r5",
        ]
    );
    let meta = read_json(&out.join("run.json"));
    for (i, c) in meta["cells"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["params"]["repetition"], (i / 2 + 1).to_string(), "{c}");
    }

    // Every repetition's rows, with its repetition.
    let rows = request_rows(&out);
    assert_eq!(rows.len(), 10 * 12);
    for id in &ids {
        let k = id.rsplit("-r").next().unwrap();
        let mine: Vec<_> = rows.iter().filter(|r| &r["cell"] == id).collect();
        assert_eq!(mine.len(), 12, "{id}");
        assert!(mine.iter().all(|r| r["repetition"] == k), "{id}");
    }
    // Each repetition draws its own arrivals; keep_alive 0 and -1 share them within one.
    let gaps = |id: &str| -> Vec<i64> {
        let start = meta["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["started_ms"]
            .as_f64()
            .unwrap();
        rows.iter()
            .filter(|r| r["cell"] == id)
            .map(|r| (r["intended_ms"].parse::<f64>().unwrap() - start).round() as i64)
            .collect()
    };
    assert_ne!(gaps("c01-ka_0-r1"), gaps("c01-ka_0-r2"));

    // One pooled cell per keep_alive, over all sixty requests, every headline
    // figure with its interval.
    let summary = read_json(&out.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert!(c["params"].get("repetition").is_none(), "{c}");
        let s = &c["streams"][0];
        assert_eq!(s["requests"], 60, "{}", c["id"]);
        let iv = &s["intervals"];
        assert!(has_interval(&iv["ttft_ms"]["p50"]), "{iv}");
        assert!(has_interval(&iv["ttft_ms"]["p90"]), "{iv}");
        assert!(has_interval(&iv["cold_ratio"]), "{iv}");
        let reps = c["repetitions"]["runs"].as_array().unwrap();
        assert_eq!(reps.len(), 5);
        let cold: u64 = reps
            .iter()
            .map(|r| r["streams"][0]["cold"].as_u64().unwrap())
            .sum();
        assert_eq!(cold, s["cold"].as_u64().unwrap());
        let idle: Vec<f64> = reps
            .iter()
            .map(|r| r["idle_gb_seconds"].as_f64().unwrap())
            .collect();
        let mean = idle.iter().sum::<f64>() / 5.0;
        let pooled = c["vram"]["idle_gb_seconds"].as_f64().unwrap();
        assert!((mean - pooled).abs() < 1e-9, "{idle:?} vs {pooled}");
        let m = &c["repetitions"]["idle_gb_seconds"];
        assert!(has_interval(m), "{m}");
    }
    // keep_alive -1 loads its model once per repetition; 0 at least as often.
    let p = pooled(&out);
    assert_eq!(p["c02-ka_-1"], (60, 5));
    assert!(p["c01-ka_0"].0 == 60 && p["c01-ka_0"].1 >= 5, "{p:?}");

    // The recommendation reads the pooled cells: cost with its interval.
    let recs = read_json(&out.join("recommendation.json"));
    for cand in recs[0]["candidates"].as_array().unwrap() {
        assert!(
            cand["cell"] == "c01-ka_0" || cand["cell"] == "c02-ka_-1",
            "{cand}"
        );
        assert!(has_interval(&cand["cost_interval"]), "{cand}");
        assert!(has_interval(&cand["idle_gb_s_interval"]), "{cand}");
    }
}

#[test]
fn repeat_on_the_command_line_overrides_the_scenario_and_shards_pool_alike() {
    let _turn = common::timing_turn();
    // One simulator both runs share, as a fleet of shards does.
    let sim = common::SimServer::start(&["--scenario", FIVE, "--seed", "25"]);
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let sharded = tmp.path().join("sharded");
    run(&one, &sim.url, &["--repeat", "2"]);
    run(&sharded, &sim.url, &["--repeat", "2", "--shards", "2"]);
    for dir in [&one, &sharded] {
        assert_eq!(
            cell_ids(dir),
            ["c01-ka_0-r1", "c02-ka_-1-r1", "c02-ka_-1-r2", "c01-ka_0-r2"],
            "{}",
            dir.display()
        );
    }
    let (a, b) = (pooled(&one), pooled(&sharded));
    assert_eq!(a, b, "one process vs two shards");
    assert_eq!(a["c02-ka_-1"], (24, 2));
}

#[test]
fn a_repeat_out_of_range_is_bad_input_naming_where() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::root().join(FIVE))
        .unwrap()
        .replace("repeat = 5", "repeat = 1000");
    let scenario = tmp.path().join("too-many.toml");
    std::fs::write(&scenario, &text).unwrap();
    let line = text.lines().position(|l| l == "repeat = 1000").unwrap() + 1;
    let out = tmp.path().join("run");
    let o = common::kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--target",
            "sim",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("too-many.toml")
            && err.contains(&format!(":{line}"))
            && err.contains("run.repeat")
            && err.contains("1 to 100"),
        "{err}"
    );
    assert!(!out.exists());

    for n in ["0", "101"] {
        let o = common::kabench()
            .args(["run", FIVE, "--target", "sim", "--repeat", n, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "--repeat {n}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--repeat") && err.contains("each cell runs"),
            "{err}"
        );
        assert!(!out.exists());
    }
}
