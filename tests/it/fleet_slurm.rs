//! `kabench fleet slurm` on a real Slurm: a one-node cluster of Debian's `slurm-wlm`
//! (`common::slurm`) runs exactly the script kabench prints. Against the real Ollama
//! (`../shared/ollama`), the merged run of 3 array tasks meets the one-process run of
//! the same scenario against the same server: the same cold requests per cell (from
//! the server's own load_duration), idle memory within the noise, the same
//! recommendation. An array task cancelled with `scancel` is merged as missing, named
//! in the headline, and the run stays reportable. Each skips with one line where Slurm
//! or the real server cannot be had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::slurm::Slurm;
use crate::common::{self, RealOllama, cold_per_cell, kabench, read_json, request_rows, run_ok};

/// One stream of 3 requests at `rate` (the real server: 8 s apart), swept over
/// keep_alive 0 and -1: 3 cold, then one. The real server's gap is longer than a cold
/// load of tiny-50m and its prompt on a 2-core machine under a load of 9 (4.9 s seen):
/// a request sent while the first still loads waits for it and reads as cold by its
/// load_duration.
fn scenario(dir: &Path, url: &str, rate: &str) -> PathBuf {
    let path = dir.join("slurm-fleet.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "slurm-fleet"
seed = 7

[target]
kind = "ollama"
url = "{url}"

[[stream]]
name = "chat"
model = "tiny-50m"
max_tokens = 4
prompt_tokens = 20
arrival = {{ kind = "constant", rate = "{rate}" }}

[run]
requests = 3

[sweep]
keep_alive = ["0", "-1"]
"#
        ),
    )
    .unwrap();
    path
}

/// Prints the script `kabench fleet slurm` writes, runs it on the cluster as a user
/// would (`bash script`), and returns the shards' job id.
fn submit(slurm: &Slurm, scenario: &Path, out: &Path, shards: u32, delay: &str) -> String {
    let printed = run_ok(&[
        "fleet",
        "slurm",
        scenario.to_str().unwrap(),
        "--shards",
        &shards.to_string(),
        "--start-delay",
        delay,
        "--out",
        out.to_str().unwrap(),
        "--kabench",
        env!("CARGO_BIN_EXE_kabench"),
    ]);
    let script = out.with_extension("sh");
    std::fs::write(&script, &printed.stdout).unwrap();
    // One CPU per shard unless asked.
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains("#SBATCH --cpus-per-task=1\n"), "{text}");
    let ran = slurm
        .cmd("bash")
        .arg(&script)
        .current_dir(out.parent().unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(
        ran.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    said.split("submitted the shards as job ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no job id in {said:?}"))
        .to_string()
}

fn idle_gb_s(dir: &Path) -> BTreeMap<String, f64> {
    let summary = read_json(&dir.join("summary.json"));
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["vram"]["idle_gb_seconds"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn logs(out: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                text += &format!(
                    "--- {}\n{}\n",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
    }
    text
}

#[test]
fn the_printed_slurm_script_on_a_real_cluster_meets_the_one_process_run() {
    let Some(ollama) = RealOllama::start("slurm", &[]) else {
        return;
    };
    let Some(slurm) = Slurm::start("meets") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let scenario = scenario(tmp.path(), &ollama.url, "0.125/s");

    let one = tmp.path().join("one");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        one.to_str().unwrap(),
        "-q",
    ]);

    let out = tmp.path().join("sharded");
    submit(&slurm, &scenario, &out, 3, "8s");
    assert!(
        slurm.wait_idle(Duration::from_secs(300)),
        "the jobs did not end in 300 s\n{}",
        logs(&out)
    );
    let run = out.join("run.json");
    assert!(run.is_file(), "no merged run.json\n{}", logs(&out));
    let meta = read_json(&run);
    assert_eq!(meta["merged"]["count"], 3, "{}", logs(&out));
    assert_eq!(meta["merged"]["missing"], serde_json::json!([]), "{meta}");
    // The shards ran the copy of the scenario in the shared run folder.
    assert_eq!(
        std::fs::read(out.join("fleet-scenario.toml")).unwrap(),
        std::fs::read(&scenario).unwrap()
    );

    let (a, b) = (cold_per_cell(&one), cold_per_cell(&out));
    let rows = |dir: &Path| {
        request_rows(dir)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        a,
        b,
        "cold requests per cell, one process vs the Slurm array\none:\n{}\narray:\n{}\nwarnings: {}",
        rows(&one),
        rows(&out),
        meta["warnings"]
    );
    assert_eq!(a.values().map(|c| c.1).collect::<Vec<_>>(), [3, 1], "{a:?}");

    let (ia, ib) = (idle_gb_s(&one), idle_gb_s(&out));
    for (cell, x) in &ia {
        let y = ib[cell];
        // The noise: a sample interval's worth of the model held, either way.
        assert!(
            (x - y).abs() <= 0.25 * x.max(y) + 0.05,
            "idle GB·s of cell {cell}: one process {x}, Slurm array {y} ({ia:?} vs {ib:?})"
        );
    }
    let chosen = |dir: &Path| read_json(&dir.join("recommendation.json"))[0]["chosen"].clone();
    assert_eq!(chosen(&one), chosen(&out), "the recommendation");
    drop(ollama);
}

#[test]
fn an_array_task_cancelled_with_scancel_is_merged_as_missing_and_the_run_reports() {
    let Some(slurm) = Slurm::start("scancel") else {
        return;
    };
    let sim = common::SimServer::start(&["--gpus", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let scenario = scenario(tmp.path(), &sim.url, "1/s");
    let out = tmp.path().join("run");
    let job = submit(&slurm, &scenario, &out, 3, "6s");
    let cancelled = slurm
        .cmd("scancel")
        .arg(format!("{job}_1"))
        .output()
        .unwrap();
    assert!(cancelled.status.success(), "{cancelled:?}");
    assert!(
        slurm.wait_idle(Duration::from_secs(120)),
        "the jobs did not end in 120 s\n{}",
        logs(&out)
    );
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "complete", "{}", logs(&out));
    assert_eq!(meta["merged"]["missing"], serde_json::json!([1]), "{meta}");
    assert_eq!(meta["merged"]["shards"].as_array().unwrap().len(), 2);
    // Shards 0 and 2 sent theirs: 2 of the 3 requests of each cell.
    assert_eq!(request_rows(&out).len(), 4);
    let merge_log = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("slurm-merge-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_default();
    assert!(
        merge_log.contains("Merged from 2 of 3 shards (missing: shard 1"),
        "{merge_log}"
    );
    let report = kabench()
        .args(["report", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(
        String::from_utf8_lossy(&report.stderr).contains("missing: shard 1"),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
}
