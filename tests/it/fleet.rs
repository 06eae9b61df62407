//! Sharded runs end to end: `kabench run --shards 3` (three shard processes against
//! one shared embedded simulator, merged) meets the same cold starts per cell as one
//! process; the merged summary's percentiles are those of the merged rows and of the
//! added histograms; `kabench merge` accepts a crashed shard and a missing one with a
//! warning naming them, and refuses shards of another scenario (exit 2). Also: shard
//! histograms added equal one histogram of all the values, at every percentile.

use crate::common;

use std::path::Path;

use crate::common::{cold_per_cell, kabench, read_json, request_rows, run_ok};
use hdrhistogram::Histogram;
use kabench::analysis::MsHistogram;
use kabench::folder::histograms;
use kabench::folder::{self, RequestRecord};

const SCENARIO: &str = "tests/fixtures/fleet/two-models.toml";

fn same_percentiles(a: &Histogram<u64>, b: &Histogram<u64>) {
    assert_eq!(a.len(), b.len());
    for q in 0..=1000 {
        let q = q as f64 / 1000.0;
        assert_eq!(
            a.value_at_quantile(q),
            b.value_at_quantile(q),
            "quantile {q}"
        );
    }
    assert_eq!((a.min(), a.max(), a.mean()), (b.min(), b.max(), b.mean()));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn three_shards_meet_the_cold_starts_of_one_process_and_merge_exactly() {
    let _turn = common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let sharded = tmp.path().join("sharded");
    run_ok(&["run", SCENARIO, "--out", one.to_str().unwrap(), "-q"]);
    let out = run_ok(&[
        "run",
        SCENARIO,
        "--shards",
        "3",
        "--out",
        sharded.to_str().unwrap(),
        "-q",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("from 3 shards (16 requests, 0 errors)"),
        "{stderr}"
    );

    // The same cold starts per cell: the shared simulator saw the global pattern.
    let (a, b) = (cold_per_cell(&one), cold_per_cell(&sharded));
    assert_eq!(a, b, "one process {a:?} vs three shards {b:?}");
    assert_eq!(b["c01-ka_0"], (8, 8));
    assert_eq!(b["c02-ka_-1"], (8, 2));
    // Every shard sent its slice, all from the same barrier.
    let meta = read_json(&sharded.join("run.json"));
    assert_eq!(meta["target"]["kind"], "sim");
    assert_eq!(meta["merged"]["count"], 3);
    assert_eq!(meta["merged"]["missing"].as_array().unwrap().len(), 0);
    for i in 0..3 {
        let shard = read_json(&sharded.join(format!("shard-{i}-of-3/run.json")));
        assert_eq!(shard["shard"]["index"], i);
        assert_eq!(
            shard["shard"]["start_at"],
            read_json(&sharded.join("shard-0-of-3/run.json"))["shard"]["start_at"]
        );
        assert!(shard["shard"]["clock_offset_ms"].as_f64().unwrap().abs() < 2000.0);
    }

    // The documented columns gained at the end: the host of a fleet (empty here).
    let header = |f: &str| {
        std::fs::read_to_string(sharded.join(f))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert!(header("requests.csv").ends_with(",itl_ms,target,repetition"));
    assert!(header("vram.csv").ends_with(",extra,host"));

    // Rows in intended-time order, and the summary's percentiles are the merged rows'.
    let rows: Vec<RequestRecord> = folder::read_requests(&sharded).unwrap();
    assert!(
        rows.windows(2)
            .all(|w| w[0].intended_ms <= w[1].intended_ms)
    );
    let from_rows = histograms::from_rows(&rows);
    let files = histograms::read(&sharded).unwrap();
    assert_eq!(
        files, from_rows,
        "the added shard histograms are the merged rows'"
    );
    let summary = read_json(&sharded.join("summary.json"));
    for cell in summary["cells"].as_array().unwrap() {
        for s in cell["streams"].as_array().unwrap() {
            let key = |m: &str| {
                (
                    cell["id"].as_str().unwrap().to_string(),
                    s["name"].as_str().unwrap().to_string(),
                    m.to_string(),
                )
            };
            for (metric, json) in [
                ("ttft_ms", &s["ttft_ms"]["all"]),
                ("e2e_ms", &s["e2e_ms"]["all"]),
                ("ttft_ms_cold", &s["ttft_ms"]["cold"]),
            ] {
                let p = MsHistogram::from_us(files[&key(metric)].clone()).percentiles();
                match p {
                    None => assert!(json.is_null()),
                    Some(p) => {
                        for (name, v) in [
                            ("p50", p.p50),
                            ("p90", p.p90),
                            ("p99", p.p99),
                            ("p999", p.p999),
                            ("max", p.max),
                        ] {
                            assert_eq!(
                                json[name].as_f64().unwrap(),
                                v,
                                "{metric} {name} of {:?}",
                                key(metric)
                            );
                        }
                    }
                }
            }
        }
    }

    // A crashed shard (status running, no histograms, a torn last row) and a missing
    // one: merged with warnings naming them, and said in the headline and run.json.
    let partial = tmp.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    for i in [0, 2] {
        copy_dir(
            &sharded.join(format!("shard-{i}-of-3")),
            &partial.join(format!("shard-{i}-of-3")),
        );
    }
    let crashed = partial.join("shard-2-of-3");
    let mut meta2 = read_json(&crashed.join("run.json"));
    meta2["status"] = "running".into();
    std::fs::write(crashed.join("run.json"), meta2.to_string()).unwrap();
    std::fs::remove_dir_all(crashed.join("histograms")).unwrap();
    let text = std::fs::read_to_string(crashed.join("requests.csv")).unwrap();
    std::fs::write(crashed.join("requests.csv"), &text[..text.len() - 20]).unwrap();
    let merged = partial.join("merged");
    let out = run_ok(&[
        "merge",
        merged.to_str().unwrap(),
        partial.join("shard-0-of-3").to_str().unwrap(),
        partial.join("shard-1-of-3").to_str().unwrap(),
        crashed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shard 1 of 3 is missing"), "{stderr}");
    assert!(
        stderr.contains("shard-2-of-3: running (it crashed or was killed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Merged from 2 of 3 shards (missing: shard 1; did not complete: shard-2-of-3"
        ),
        "{stderr}"
    );
    let m = read_json(&merged.join("run.json"));
    assert_eq!(m["merged"]["missing"], serde_json::json!([1]));
    assert!(
        m["merged"]["incomplete"][0]
            .as_str()
            .unwrap()
            .starts_with("shard-2-of-3")
    );
    assert!(
        std::fs::read_to_string(merged.join("summary.md"))
            .unwrap()
            .contains("Merged from 2 of 3 shards")
    );

    // Shards of another scenario are refused, exit 2, naming what differs.
    let mut meta0 = read_json(&partial.join("shard-0-of-3/run.json"));
    meta0["scenario_sha256"] = "0000".into();
    std::fs::write(partial.join("shard-0-of-3/run.json"), meta0.to_string()).unwrap();
    let refused = kabench()
        .args(["merge", partial.join("again").to_str().unwrap()])
        .arg(partial.join("shard-0-of-3"))
        .arg(&crashed)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("are not shards of one run: the scenario (sha256) differs"),
        "{err}"
    );
}

/// Deterministic pseudo-random latencies in ms, heavy-tailed.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            0.05 + 20.0 / (1.0 - u * 0.999).powf(1.5)
        })
        .collect()
}

#[test]
fn shard_histograms_added_equal_one_histogram_of_all_values_at_every_percentile() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=20u64 {
        let vals = values(seed, 500 + seed as usize * 97);
        let shards = 1 + (seed as usize % 7);
        let mut whole = histograms::empty();
        let mut merged = histograms::empty();
        let mut parts = vec![histograms::empty(); shards];
        for (i, v) in vals.iter().enumerate() {
            histograms::record_ms(&mut whole, *v);
            // An uneven split: shards get runs of values, not one each.
            histograms::record_ms(&mut parts[(i / (1 + seed as usize)) % shards], *v);
        }
        for (i, p) in parts.iter().enumerate() {
            // Through the V2 compressed files, as shards leave them.
            let mut files = histograms::HistogramFiles::new();
            files.insert(("c".into(), format!("s{seed}"), format!("m{i}")), p.clone());
            histograms::write(dir.path(), &files).unwrap();
        }
        let back = histograms::read(dir.path()).unwrap();
        for ((_, stream, _), h) in back
            .iter()
            .filter(|((_, s, _), _)| *s == format!("s{seed}"))
        {
            assert_eq!(stream, &format!("s{seed}"));
            merged.add(h).unwrap();
        }
        assert_eq!(merged, whole, "seed {seed}, {shards} shards");
        same_percentiles(&merged, &whole);
    }
}

#[test]
fn a_shard_killed_mid_run_leaves_a_folder_merge_accepts_with_a_warning() {
    let sim = common::SimServer::start(&["--gpus", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let start_at = kabench::shard::format_time(
        std::time::SystemTime::now() + std::time::Duration::from_secs(2),
    );
    let shard = |i: u32| {
        kabench()
            .args(["run", SCENARIO, "--target", &sim.url, "--out"])
            .arg(&out)
            .args(["--shard", &format!("{i}/2"), "--start-at", &start_at, "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut s0, mut s1) = (shard(0), shard(1));
    // Into the first cell (sends from 2 s after the barrier, one a second), then a
    // hard kill: no close, no histograms, run.json still "running".
    std::thread::sleep(std::time::Duration::from_secs(6));
    s1.kill().unwrap();
    s1.wait().unwrap();
    assert!(s0.wait().unwrap().success());
    let killed = out.join("shard-1-of-2");
    assert_eq!(read_json(&killed.join("run.json"))["status"], "running");
    let sent_before_kill = request_rows(&killed).len();
    assert!(
        sent_before_kill > 0 && sent_before_kill < 8,
        "{sent_before_kill}"
    );

    let merged = tmp.path().join("merged");
    let o = run_ok(&[
        "merge",
        merged.to_str().unwrap(),
        out.join("shard-0-of-2").to_str().unwrap(),
        killed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("warning: shard-1-of-2: running (it crashed or was killed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "shard-1-of-2: no histogram files (it did not finish): rebuilt from its requests.csv"
        ),
        "{stderr}"
    );
    assert_eq!(
        request_rows(&merged).len(),
        request_rows(&out.join("shard-0-of-2")).len() + sent_before_kill
    );
    let m = read_json(&merged.join("run.json"));
    assert_eq!(m["merged"]["incomplete"].as_array().unwrap().len(), 1);
}
