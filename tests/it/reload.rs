//! Reload-thrash detection end to end: `scenarios/reload-thrash.toml` on the simulator
//! (two clients of one model with different `num_ctx`, and an embedder evicting the
//! chat model under `OLLAMA_MAX_LOADED_MODELS=1`) gives `summary.json`
//! `cells[].reloads` counts for both causes, and the report names both with the fix.

use crate::common::{self, read_json, root, run_ok};

#[test]
fn the_reload_thrash_scenario_counts_and_names_both_causes() {
    // Its reload causes are read from timings on the simulator's real clock: it takes
    // the timing tests' turn, so no other such test shares the 2 cores with it.
    let _turn = common::timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let scenario = root().join("scenarios/reload-thrash.toml");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let summary = read_json(&out.join("summary.json"));
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    let mut causes = std::collections::BTreeMap::new();
    for cell in cells {
        let reloads = &cell["reloads"];
        let by_cause = reloads["by_cause"].as_object().unwrap();
        let sum: u64 = by_cause.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(reloads["total"].as_u64().unwrap(), sum, "{reloads}");
        for (cause, n) in by_cause {
            *causes.entry(cause.clone()).or_insert(0) += n.as_u64().unwrap();
        }
        for f in reloads["findings"].as_array().unwrap() {
            assert!(!f["fix"].as_str().unwrap().is_empty(), "{f}");
        }
    }
    assert!(causes.get("num_ctx").is_some_and(|n| *n > 0), "{causes:?}");
    assert!(causes.get("evicted").is_some_and(|n| *n > 0), "{causes:?}");
    // Nearly every reload is explained (the simulator runs on a real clock: on a
    // starved host a load can straddle the evidence windows; CI once saw 2 of 16).
    let total: u64 = causes.values().sum();
    let unknown = causes.get("unknown").copied().unwrap_or(0);
    assert!(unknown * 5 <= total, "reloads explained: {causes:?}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("(num_ctx): ") && md.contains("send one num_ctx from every client"),
        "{md}"
    );
    assert!(
        md.contains("(evicted): for nomic-embed-text:v1.5")
            && md.contains("raise OLLAMA_MAX_LOADED_MODELS"),
        "{md}"
    );
}
