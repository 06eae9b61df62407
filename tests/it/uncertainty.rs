//! Numbers with their uncertainty, on the embedded simulator (seeded): a small cell's
//! p99 shown as the maximum it is, intervals on every headline figure that shrink as
//! the cell grows, and a recommendation that says when two keep_alive values cannot be
//! told apart (and then takes the one that holds less memory).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common;

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/fixtures/uncertainty").join(name)
}

/// Runs `scenario` on the simulator into `out`; returns stdout (the table).
fn run(scenario: &Path, out: &Path) -> String {
    let o = common::kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--target",
            "sim",
            "--out",
        ])
        .arg(out)
        .arg("--quiet")
        .output()
        .expect("kabench runs");
    assert!(
        o.status.success(),
        "kabench run {}: {}\n{}",
        scenario.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The first stream of the cell whose keep_alive is `ka`.
fn stream<'a>(summary: &'a Value, ka: &str) -> &'a Value {
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["streams"][0])
        .find(|s| s["keep_alive"] == ka || (ka == "-1" && s["keep_alive_forever"] == true))
        .unwrap_or_else(|| panic!("no cell of keep_alive {ka}"))
}

fn width(iv: &Value) -> f64 {
    iv["hi"].as_f64().unwrap() - iv["lo"].as_f64().unwrap()
}

#[test]
fn a_cell_of_twelve_shows_its_p99_as_the_maximum() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let table = run(&fixture("twelve.toml"), &out);
    let summary = common::read_json(&out.join("summary.json"));
    for ka in ["0", "-1"] {
        let s = stream(&summary, ka);
        assert_eq!(s["requests"], 12);
        let iv = &s["intervals"];
        assert_eq!(iv["level"], 0.95);
        assert_eq!(iv["ttft_ms"]["count"], 12);
        assert!(iv["ttft_ms"]["p99"].is_null(), "{iv}");
        assert!(iv["ttft_ms"]["p50"]["lo"].is_number(), "{iv}");
        assert!(iv["e2e_ms"]["p50"]["hi"].is_number(), "{iv}");
        assert!(iv["cold_ratio"]["hi"].as_f64().unwrap() > s["cold_ratio"].as_f64().unwrap());
        // tokens/s is the median of the per-request rates, inside its interval.
        let tps = s["tokens_per_s"].as_f64().unwrap();
        let t = &iv["tokens_per_s"];
        assert!(t["lo"].as_f64().unwrap() <= tps && tps <= t["hi"].as_f64().unwrap());
    }
    // Every table says what the p99 of twelve requests is.
    assert!(
        table.contains("(n=12)") && table.contains("max "),
        "{table}"
    );
    let md = fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("max ") && md.contains("(n=12)"), "{md}");
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("(n=12)"), "the page");
    // The SLO is judged, and the recommendation says on what: the slowest requests,
    // not a p99 estimate, which twelve requests cannot give.
    let recs = common::read_json(&out.join("recommendation.json"));
    let r = &recs[0];
    assert_eq!(r["form"], "slo");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("too few requests for an interval"),
        "{reason}"
    );
    assert!(reason.contains("(n=12)"), "{reason}");
    // On its own frontier, drawn on the axis it was decided on.
    assert_eq!(r["frontier_metric"], "p99_ttft_ms");
    let chosen: Vec<&Value> = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["keep_alive"] == r["chosen"])
        .collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0]["on_frontier"], true);
}

#[test]
fn intervals_shrink_as_requests_grow() {
    let tmp = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(fixture("twelve.toml")).unwrap();
    let mut widths = Vec::new();
    for n in [12, 48] {
        let scenario = tmp.path().join(format!("n{n}.toml"));
        fs::write(
            &scenario,
            text.replace("requests = 12", &format!("requests = {n}")),
        )
        .unwrap();
        let out = tmp.path().join(format!("run{n}"));
        run(&scenario, &out);
        let summary = common::read_json(&out.join("summary.json"));
        let s = stream(&summary, "-1");
        assert_eq!(s["requests"], n);
        let iv = s["intervals"].clone();
        // Every figure of the cell has an interval but the p99 (under 368 requests).
        for (figure, v) in [
            ("ttft p50", &iv["ttft_ms"]["p50"]),
            ("e2e p50", &iv["e2e_ms"]["p50"]),
            ("cold ratio", &iv["cold_ratio"]),
            ("tokens/s", &iv["tokens_per_s"]),
        ] {
            assert!(
                v["lo"].is_number(),
                "{n} requests: {figure} has no interval: {iv}"
            );
        }
        // The p90 needs 36 requests for an interval.
        assert_eq!(iv["ttft_ms"]["p90"].is_null(), n < 36, "{iv}");
        widths.push(width(&iv["cold_ratio"]));
    }
    assert!(
        widths[1] < widths[0] / 2.0,
        "the cold ratio's interval shrinks from 12 to 48 requests: {widths:?}"
    );
}

#[test]
fn indistinguishable_cells_recommend_the_one_holding_less_memory() {
    let _turn = common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&fixture("near.toml"), &out);
    let summary = common::read_json(&out.join("summary.json"));
    let (zero, short) = (stream(&summary, "0"), stream(&summary, "700ms"));
    assert_eq!(zero["cold"], 8, "{zero}");
    assert_eq!(short["cold"], 7, "{short}");
    let recs = common::read_json(&out.join("recommendation.json"));
    let r = &recs[0];
    assert_eq!(r["form"], "cost");
    // 700ms is the cheaper by its figures, by less than the noise of 7 against 8 cold
    // starts: 0, which holds less memory, is recommended, and the page says why.
    assert_eq!(r["cost_choice"], "700ms");
    assert_eq!(r["chosen"], "0");
    let noise = &r["noise"];
    assert_eq!(noise["best"], "700ms");
    assert_eq!(noise["indistinguishable"][0]["keep_alive"], "0");
    let sure = noise["confidence"].as_f64().unwrap();
    assert!(sure > 0.0 && sure < 0.95, "{noise}");
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("cannot be told from it"), "the page says so");
    assert!(html.contains("keep_alive 0</strong>"), "and recommends 0");
    let md = fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("OLLAMA_KEEP_ALIVE=0"), "{md}");
    assert!(md.contains("wins") && md.contains("resamples"), "{md}");
}
