//! The host's state per cell in `run.json` (`cells[].host`: load average, CPU shares,
//! steal) and the report's warnings when a cell ran on a busy host.

use crate::common::{self, read_json, run_ok};

use std::fs;

#[test]
fn a_run_records_the_host_per_cell_and_a_busy_cell_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let scenario = common::root().join("tests/fixtures/run/fast-sim.toml");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        "sim",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    // read_json validates run.json against schema/run.schema.json.
    let meta = read_json(&out.join("run.json"));
    for cell in meta["cells"].as_array().unwrap() {
        if !cfg!(target_os = "linux") {
            assert!(cell.get("host").is_none());
            continue;
        }
        let h = &cell["host"];
        assert!(h["cpus"].as_u64().unwrap() >= 1, "{h}");
        for share in ["busy", "kabench", "ollama", "other", "steal", "iowait"] {
            let v = h[share].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{share} {h}");
        }
        assert!(h["load1_end"].as_f64().unwrap() >= 0.0);
    }
    if !cfg!(target_os = "linux") {
        return;
    }
    // The same folder with a busy first cell: the report warns about it (and only it).
    let path = out.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    v["cells"][0]["host"]["other"] = 0.7.into();
    v["cells"][0]["host"]["load1_end"] = 4.2.into();
    for c in v["cells"].as_array_mut().unwrap().iter_mut().skip(1) {
        c["host"]["other"] = 0.0.into();
        c["host"]["steal"] = 0.0.into();
    }
    fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    run_ok(&["report", out.to_str().unwrap()]);
    let md = fs::read_to_string(out.join("summary.md")).unwrap();
    let id = v["cells"][0]["id"].as_str().unwrap();
    assert!(
        md.contains(&format!(
            "cell {id}: the host was busy during this cell (other processes used 70%"
        )),
        "{md}"
    );
    assert_eq!(md.matches("the host was busy").count(), 1, "{md}");
}
