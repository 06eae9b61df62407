//! A shard that misses its start barrier: started 90 s after it, it sends nothing and
//! leaves a folder marked `late` (exit 1, naming it); one started 4 s after the
//! barrier of a run whose other shard was in time is counted missing by `merge`, which
//! names it in the headline; a cell a shard started past the tolerance is left out of
//! the merged run's recommendation. Against `kabench sim` over HTTP.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::{self, kabench, read_json, request_rows, run_ok};

const SCENARIO: &str = "tests/fixtures/fleet/two-models.toml";

fn shard(sim: &str, out: &Path, i: u32, start_at: SystemTime) -> std::process::Output {
    kabench()
        .args(["run", SCENARIO, "--target", sim, "--out"])
        .arg(out)
        .args(["--shard", &format!("{i}/2"), "--start-at"])
        .arg(kabench::shard::format_time(start_at))
        .arg("-q")
        .output()
        .unwrap()
}

#[test]
fn a_shard_started_90_s_after_its_barrier_never_sends_and_is_merged_as_missing() {
    let _turn = common::timing_turn();
    let sim = common::SimServer::start(&["--gpus", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");

    let late = shard(
        &sim.url,
        &out,
        1,
        SystemTime::now() - Duration::from_secs(90),
    );
    let e = String::from_utf8_lossy(&late.stderr);
    assert_eq!(late.status.code(), Some(1), "{e}");
    assert!(
        e.contains("this shard sent nothing") && e.contains("marked late"),
        "{e}"
    );
    let late_dir = out.join("shard-1-of-2");
    let meta = read_json(&late_dir.join("run.json"));
    assert_eq!(meta["status"], "late");
    let late_ms = meta["shard"]["late_ms"].as_f64().unwrap();
    assert!((90_000.0..120_000.0).contains(&late_ms), "{late_ms}");
    assert_eq!(meta["shard"]["late_tolerance_ms"], 2000.0);
    assert!(meta["ended_at"].is_string(), "{meta}");
    assert!(request_rows(&late_dir).is_empty());
    // The simulator never loaded a model: nothing was sent.
    let (_, ps) = sim.call("GET", "/api/ps", None);
    assert!(ps.contains("\"models\":[]"), "{ps}");

    // One run: shard 0 in time, shard 1 started 4 s after the same barrier.
    let out = tmp.path().join("run2");
    let barrier = SystemTime::now() + Duration::from_secs(2);
    let on_time = {
        let url = sim.url.clone();
        let out = out.clone();
        std::thread::spawn(move || shard(&url, &out, 0, barrier))
    };
    std::thread::sleep(
        (barrier + Duration::from_secs(4))
            .duration_since(SystemTime::now())
            .unwrap(),
    );
    let late = shard(&sim.url, &out, 1, barrier);
    assert_eq!(late.status.code(), Some(1));
    let on_time = on_time.join().unwrap();
    assert!(
        on_time.status.success(),
        "{}",
        String::from_utf8_lossy(&on_time.stderr)
    );
    let late_dir = out.join("shard-1-of-2");
    assert_eq!(read_json(&late_dir.join("run.json"))["status"], "late");
    let merged = tmp.path().join("merged");
    let o = run_ok(&[
        "merge",
        merged.to_str().unwrap(),
        out.join("shard-0-of-2").to_str().unwrap(),
        late_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("Merged from 1 of 2 shards (missing: shard 1 (late: woke 4.")
            && stderr.contains("over its tolerance of 2.0 s"),
        "{stderr}"
    );
    let m = read_json(&merged.join("run.json"));
    assert_eq!(m["merged"]["missing"], serde_json::json!([1]));
    assert!(
        m["merged"]["sent_nothing"]["1"]
            .as_str()
            .unwrap()
            .contains("woke 4.")
    );
    assert_eq!(m["merged"]["shards"].as_array().unwrap().len(), 1);
    assert_eq!(request_rows(&merged).len(), 8, "shard 0's half of 16");
    common::assert_valid_folder(&merged);

    // A shard that started in time but began a cell past the tolerance: that cell is
    // no candidate of the merged run's recommendation.
    let edited = tmp.path().join("edited");
    std::fs::create_dir_all(&edited).unwrap();
    let copy = edited.join("shard-0-of-2");
    common::copy_run(&out.join("shard-0-of-2"), &copy);
    let mut run: serde_json::Value = read_json(&copy.join("run.json"));
    let cell = run["cells"][1]["id"].as_str().unwrap().to_string();
    run["shard"]["late_cells"] = serde_json::json!({ cell.clone(): 3500.0 });
    std::fs::write(
        copy.join("run.json"),
        serde_json::to_string_pretty(&run).unwrap(),
    )
    .unwrap();
    let merged2 = tmp.path().join("merged2");
    let o = run_ok(&[
        "merge",
        merged2.to_str().unwrap(),
        copy.to_str().unwrap(),
        late_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "cell {cell}: shard-0-of-2 started it 3.5 s late; no keep_alive is recommended over it"
        )),
        "{stderr}"
    );
    let recs = read_json(&merged2.join("recommendation.json"));
    let rec = &recs[0];
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("ran late (shard-0-of-2 started it 3.5 s late)"),
        "{rec}"
    );
    assert_eq!(rec["chosen"], "0", "{rec}");
}
