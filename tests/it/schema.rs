//! The documented machine interface of a run folder: `summary.json`'s keys and the
//! columns of `requests.csv` and `vram.csv`. Keys and columns are only ever added (a
//! column at the end): a change that removes or renames one fails here.

use crate::common;

use std::collections::BTreeSet;

use kabench::report::{RenderOptions, render};
use serde_json::Value;

/// Every key path of `summary.json` a consumer may rely on (`[]` is any array element).
const SUMMARY_KEYS: &[&str] = &[
    "scenario",
    "target.kind",
    "target.url",
    "ollama_version",
    "status",
    "cold_threshold_ms",
    "cells[].id",
    "cells[].params",
    "cells[].warnings",
    "cells[].streams[].name",
    "cells[].streams[].model",
    "cells[].streams[].keep_alive",
    "cells[].streams[].keep_alive_s",
    "cells[].streams[].keep_alive_forever",
    "cells[].streams[].rate_per_s",
    "cells[].streams[].requests",
    "cells[].streams[].warmup",
    "cells[].streams[].errors",
    "cells[].streams[].errors_by_kind",
    "cells[].streams[].answered",
    "cells[].streams[].cold",
    "cells[].streams[].loads",
    "cells[].streams[].cold_ratio",
    "cells[].streams[].ttft_ms.all.p50",
    "cells[].streams[].ttft_ms.all.p90",
    "cells[].streams[].ttft_ms.all.p99",
    "cells[].streams[].ttft_ms.all.p999",
    "cells[].streams[].ttft_ms.all.max",
    "cells[].streams[].ttft_ms.all.mean",
    "cells[].streams[].ttft_ms.all.count",
    "cells[].streams[].ttft_ms.warm",
    "cells[].streams[].ttft_ms.cold",
    "cells[].streams[].e2e_ms.all.p99",
    "cells[].streams[].tpot_ms",
    "cells[].streams[].load_ms",
    "cells[].streams[].cold_penalty_ms",
    "cells[].streams[].tokens_per_s",
    "cells[].vram.source",
    "cells[].vram.gb_seconds_held",
    "cells[].vram.idle_gb_seconds",
    "cells[].vram.peak_bytes",
    "cells[].vram.mean_bytes",
    "cells[].vram.counted",
    "cells[].vram.gpu",
    "cells[].vram.release[].model",
    "cells[].vram.release[].keep_alive",
    "cells[].vram.release[].keep_alive_s",
    "cells[].vram.release[].release_delay_s",
    "cells[].vram.release[].honoured",
];

/// The columns of `requests.csv`, in order; new ones only ever go after them.
const REQUESTS_COLUMNS: &[&str] = &[
    "cell",
    "request",
    "stream",
    "model",
    "keep_alive",
    "warmup",
    "intended_ms",
    "sent_ms",
    "first_byte_ms",
    "first_token_ms",
    "first_answer_ms",
    "end_ms",
    "status",
    "error",
    "error_detail",
    "resident_before",
    "load_duration_ms",
    "cold",
    "cold_reason",
    "prompt_eval_count",
    "prompt_eval_ms",
    "eval_count",
    "eval_ms",
    "total_duration_ms",
    "ttft_ms",
    "e2e_ms",
    "itl_ms",
];

/// The columns of `vram.csv`, in order.
const VRAM_COLUMNS: &[&str] = &[
    "t_ms",
    "source",
    "device",
    "model",
    "used_bytes",
    "total_bytes",
    "extra",
];

/// Every key path of `v`, arrays written `[]`.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                paths(x, &p, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn header(path: &std::path::Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.headers().unwrap().iter().map(str::to_string).collect()
}

#[test]
fn summary_json_keeps_every_documented_key() {
    let (_tmp, dir) = common::fixture_run("run-small");
    render(&dir, &RenderOptions::default()).unwrap();
    let summary = common::read_json(&dir.join("summary.json"));
    let mut have = BTreeSet::new();
    paths(&summary, "", &mut have);
    let missing: Vec<&&str> = SUMMARY_KEYS
        .iter()
        .filter(|k| !have.contains(**k))
        .collect();
    assert!(missing.is_empty(), "summary.json lost {missing:?}");
}

#[test]
fn requests_and_vram_csv_keep_their_columns_in_order() {
    // A fresh run's headers (the simulator in process is not needed: the writer makes
    // them before the first request) and the committed folder's agree.
    let tmp = tempfile::tempdir().unwrap();
    let w = kabench::folder::RunFolder::create(
        tmp.path(),
        "name = \"x\"\n",
        kabench::folder::RunMeta::default(),
    )
    .unwrap();
    common::assert_valid_folder(w.dir());
    for dir in [w.dir(), common::fixture_dir("run-small").as_path()] {
        let requests = header(&dir.join("requests.csv"));
        assert!(
            requests.starts_with(
                &REQUESTS_COLUMNS
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            ),
            "requests.csv of {}: {requests:?}",
            dir.display()
        );
        let vram = header(&dir.join("vram.csv"));
        assert!(
            vram.starts_with(
                &VRAM_COLUMNS
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            ),
            "vram.csv of {}: {vram:?}",
            dir.display()
        );
    }
}

#[test]
fn the_published_schemas_are_the_ones_the_types_generate() {
    // `KABENCH_BLESS=1 cargo test --test schema` rewrites the committed copies.
    let bless = std::env::var("KABENCH_BLESS").is_ok_and(|v| v == "1");
    let dir = common::root().join(kabench::analysis::schema::SCHEMA_DIR);
    for (file, schema) in kabench::analysis::schema::all() {
        let path = dir.join(file);
        let generated = kabench::analysis::schema::to_text(&schema);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from the schema the types generate: run `KABENCH_BLESS=1 cargo test --test schema` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_committed_run_folders_and_their_rendered_summaries_follow_the_schema() {
    let fixtures = common::root().join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("run.json").is_file() {
            common::assert_valid_folder(&dir);
            let (_tmp, copy) = common::fixture_run(dir.file_name().unwrap().to_str().unwrap());
            render(&copy, &RenderOptions::default()).unwrap();
            common::assert_valid_folder(&copy);
            checked += 1;
        }
    }
    assert!(checked > 0, "no run folder under {}", fixtures.display());
}

#[test]
fn a_folder_that_breaks_the_schema_is_caught() {
    // The check can fail: a run.json whose status is no status, a cell without an id.
    let schema = common::schema_of("run.json").unwrap();
    let mut run = common::read_json(&common::fixture_dir("run-small").join("run.json"));
    assert!(schema.is_valid(&run));
    run["status"] = Value::from("finished-ish");
    assert!(!schema.is_valid(&run));
    let mut run = common::read_json(&common::fixture_dir("run-small").join("run.json"));
    run["cells"][0].as_object_mut().unwrap().remove("id");
    assert!(!schema.is_valid(&run));
}
