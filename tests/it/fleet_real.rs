//! A small real fleet: two real Ollama servers (`../shared/ollama`, CPU build) as
//! distinct hosts — each in its own network namespace with its own address where the
//! machine allows it (root: `common::netns`), else on two loopback ports — as the
//! targets of one scenario, run as 2 shards split by host
//! (`kabench run --shards 2`; a request every 4 s, so 8 s apart on each host, longer
//! than a cold load of tiny-50m on a busy 2-core machine): per-host and merged figures
//! in the summary, and each host's `/api/ps` telemetry in the merged `vram.csv`. Skips
//! when the real server cannot be had (see `tests/it/common`).

use crate::common::{RealOllama, read_json, request_rows, run_ok};

#[test]
fn two_real_ollama_hosts_run_as_two_shards_give_per_host_and_merged_figures() {
    let Some(((a, b), distinct)) = RealOllama::start_distinct_pair("fleet", &[]) else {
        return;
    };
    if distinct {
        // Two addresses, neither loopback: the rows and series below are per host.
        assert!(!a.url.contains("127.0.0.1") && !b.url.contains("127.0.0.1"));
        assert_ne!(a.url.split(':').nth(1), b.url.split(':').nth(1));
    }
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("fleet.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "real-fleet"
seed = 5

[target]
kind = "ollama"
urls = ["{}", "{}"]

[[stream]]
name = "chat"
model = "tiny-50m"
max_tokens = 4
prompt_tokens = 20
arrival = {{ kind = "constant", rate = "0.25/s" }}

[run]
requests = 4
shard_by = "target"

[sweep]
keep_alive = ["0", "-1"]
"#,
            a.url, b.url
        ),
    )
    .unwrap();
    let out_dir = tmp.path().join("run");
    let out = run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--shards",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        stderr.contains("from 2 shards (8 requests, 0 errors)"),
        "{stderr}"
    );
    let hosts = [a.url.clone(), b.url.clone()];

    // Rows: the target column names each host; shard i sent to host i only.
    let rows = request_rows(&out_dir);
    for h in &hosts {
        assert_eq!(rows.iter().filter(|r| &r["target"] == h).count(), 4, "{h}");
    }
    for (i, h) in hosts.iter().enumerate() {
        let shard = request_rows(&out_dir.join(format!("shard-{i}-of-2")));
        assert!(
            shard.iter().all(|r| &r["target"] == h),
            "shard {i} sent only to {h}"
        );
    }

    // Per-host and merged figures: keep_alive 0 makes every request cold, -1 only each
    // host's first.
    let summary = read_json(&out_dir.join("summary.json"));
    for (cell, cold_per_host) in [(0, 2), (1, 1)] {
        let s = &summary["cells"][cell]["streams"][0];
        assert_eq!(s["requests"], 4);
        assert_eq!(s["cold"], 2 * cold_per_host);
        let per_host = s["hosts"].as_array().expect("per-host figures");
        assert_eq!(per_host.len(), 2);
        for (h, want) in per_host.iter().zip(&hosts) {
            assert_eq!(&h["target"], want);
            assert_eq!(h["requests"], 2);
            assert_eq!(h["cold"], cold_per_host, "{cell} {h}");
            assert!(h["ttft_ms"]["p50"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(stdout.contains(&format!("  @ {}", a.url)), "{stdout}");
    let md = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(md.contains(&format!("c02-ka_-1 @ {}", b.url)), "{md}");

    // Each host's /api/ps in the merged vram.csv, with the model seen resident.
    let mut r = csv::Reader::from_path(out_dir.join("vram.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (source, model, host) = (col("source"), col("model"), col("host"));
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    for h in &hosts {
        let mine: Vec<_> = recs
            .iter()
            .filter(|x| &x[source] == "ollama_ps" && &x[host] == h)
            .collect();
        assert!(mine.len() > 10, "{h}: {} /api/ps rows", mine.len());
        assert!(
            mine.iter().any(|x| &x[model] == "tiny-50m:latest"),
            "{h}: the model never showed in its /api/ps"
        );
    }
    let meta = read_json(&out_dir.join("run.json"));
    assert_eq!(meta["merged"]["count"], 2);
    assert_eq!(meta["target"]["urls"].as_array().unwrap().len(), 2);
}
