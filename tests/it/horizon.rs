//! One analysis, one horizon: the quickstart's shape (`tests/fixtures/fleet/
//! quickstart-scaled.toml`, the quickstart at about half the time) run in one process
//! and as three shards against ONE shared simulator (`kabench sim`, both runs
//! `--target` it) meets the same cold starts per cell, idle memory within 5% per cell
//! and the same recommendation: every cell's memory is counted over the run's one
//! idle horizon, recorded in `run.json`, whichever path wrote the folder. And
//! `kabench predict --scenario` over the run's span replays the run's cold starts per
//! keep_alive.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{self, SimServer, read_json, run_ok};
use serde_json::Value;

const SCENARIO: &str = "tests/fixtures/fleet/quickstart-scaled.toml";
/// The sweep's keep_alives, as the scenario writes them.
const SWEEP: [&str; 4] = ["0", "1s", "2s", "-1"];

/// Per cell (by its keep_alive): requests, cold requests, idle GB·s, held GB·s.
fn cells(dir: &Path) -> BTreeMap<String, (u64, u64, f64, f64)> {
    let summary = read_json(&dir.join("summary.json"));
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = &c["streams"][0];
            (
                c["params"]["keep_alive"].as_str().unwrap().to_string(),
                (
                    s["requests"].as_u64().unwrap(),
                    s["cold"].as_u64().unwrap(),
                    c["vram"]["idle_gb_seconds"].as_f64().unwrap(),
                    c["vram"]["gb_seconds_held"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn chosen(dir: &Path) -> Value {
    read_json(&dir.join("recommendation.json"))[0]["chosen"].clone()
}

/// How long the run's cells sent: from a cell's start to its last intended send (the
/// same schedule in every cell), in ms.
fn send_span_ms(dir: &Path) -> f64 {
    let meta = read_json(&dir.join("run.json"));
    let cell = &meta["cells"][0];
    let start = cell["started_ms"].as_f64().unwrap();
    let id = cell["id"].as_str().unwrap();
    common::request_rows(dir)
        .iter()
        .filter(|r| r["cell"] == id)
        .map(|r| r["intended_ms"].parse::<f64>().unwrap() - start)
        .fold(0.0, f64::max)
}

#[test]
fn one_process_three_shards_and_predict_meet_the_same_cells() {
    let _turn = common::timing_turn();
    let sim = SimServer::start(&["--scenario", SCENARIO, "--seed", "54"]);
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let sharded = tmp.path().join("sharded");
    run_ok(&[
        "run",
        SCENARIO,
        "--target",
        &sim.url,
        "--out",
        one.to_str().unwrap(),
        "-q",
    ]);
    run_ok(&[
        "run",
        SCENARIO,
        "--target",
        &sim.url,
        "--shards",
        "3",
        "--out",
        sharded.to_str().unwrap(),
        "-q",
    ]);

    // One horizon, recorded: the longest finite keep_alive (2 s) + 5 s after each
    // cell's last send, in the one-process run, every shard and the merged run.
    for dir in [one.clone(), sharded.clone(), sharded.join("shard-1-of-3")] {
        let h = &read_json(&dir.join("run.json"))["idle_horizon"];
        assert_eq!(h["tail_ms"], 7000.0, "{}: {h}", dir.display());
    }

    let (a, b) = (cells(&one), cells(&sharded));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same cells"
    );
    for ka in SWEEP {
        let ((n1, cold1, idle1, _), (n3, cold3, idle3, _)) = (a[ka], b[ka]);
        assert_eq!(n1, n3, "keep_alive {ka}: requests");
        assert_eq!(cold1, cold3, "keep_alive {ka}: cold starts, {a:?} vs {b:?}");
        // Held memory is counted over the one horizon: within 5% (a cell that holds
        // next to nothing, keep_alive 0, within 1 GB·s: each release seen up to a poll
        // late). Idle memory is that less the time requests were in flight: within 5%,
        // or 2 GB·s (a 7B model for 0.4 s: what request durations jitter by with three
        // shard processes and a simulator sharing two cores).
        let (held1, held3) = (a[ka].3, b[ka].3);
        assert!(
            (held1 - held3).abs() <= (0.05 * held1.max(held3)).max(1.0),
            "keep_alive {ka}: held {held1:.2} GB·s in one process vs {held3:.2} in three shards"
        );
        let larger = idle1.max(idle3);
        assert!(
            (idle1 - idle3).abs() <= (0.05 * larger).max(2.0),
            "keep_alive {ka}: idle {idle1:.2} GB·s in one process vs {idle3:.2} in three shards ({a:?} vs {b:?})"
        );
    }
    // Holding longer never looks cheaper: idle memory grows with keep_alive.
    for figures in [&a, &b] {
        let idle: Vec<f64> = SWEEP.iter().map(|k| figures[*k].2).collect();
        assert!(idle.windows(2).all(|w| w[0] <= w[1]), "{idle:?}");
        assert!(idle[3] > idle[2], "-1 holds more than 2s: {idle:?}");
    }
    assert_eq!(chosen(&one), chosen(&sharded), "the same recommendation");
    assert_eq!(
        chosen(&one),
        "2s",
        "2s holds less than -1 for the same one cold start"
    );

    // `kabench predict --scenario` over the run's span (its last send, plus a
    // millisecond) replays the same arrivals and meets the run's cold starts.
    let span_ms = send_span_ms(&one).ceil() + 1.0;
    let out = run_ok(&[
        "predict",
        "--scenario",
        SCENARIO,
        "--horizon",
        &format!("{span_ms}ms"),
        "--keep-alive",
        &SWEEP.join(","),
        "--no-grid",
        "--json",
        "-q",
    ]);
    let predicted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_policy: BTreeMap<String, (u64, u64)> = predicted["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["policy"]["kind"] == "fixed")
        .map(|c| {
            let s = &c["streams"][0];
            (
                c["params"]["keep_alive"].as_str().unwrap().to_string(),
                (s["requests"].as_u64().unwrap(), s["cold"].as_u64().unwrap()),
            )
        })
        .collect();
    for ka in SWEEP {
        let (n, cold, _, _) = a[ka];
        assert_eq!(
            per_policy.get(ka),
            Some(&(n, cold)),
            "keep_alive {ka}: predicted {per_policy:?}, run {a:?}"
        );
    }
}
