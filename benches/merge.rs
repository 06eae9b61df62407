//! `kabench merge` of 16 shard folders of 10^5 request rows each (1.6 × 10^6 rows):
//! reading every requests.csv, sorting the rows by intended time, writing the merged
//! requests.csv, adding the shards' histograms and writing run.json. The folders are
//! made once before timing; each iteration merges into a fresh folder.
//!
//! `cargo bench --bench merge`

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kabench::fleet::merge;
use kabench::folder::{self, RequestRecord, RunFolder, RunMeta, ShardMeta, histograms};

const SHARDS: u32 = 16;
const ROWS: usize = 100_000;

fn shard_folder(root: &Path, index: u32) -> PathBuf {
    let dir = root.join(format!("shard-{index}-of-{SHARDS}"));
    let meta = RunMeta {
        tool: "kabench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        scenario: "bench".into(),
        scenario_sha256: "same".into(),
        seed: 1,
        status: folder::RunStatus::Complete,
        shard: Some(ShardMeta {
            index,
            count: SHARDS,
            by: "request".into(),
            start_at: "2026-12-01T00:00:00Z".into(),
            clock_offset_ms: Some(0.5),
            cell_starts_ms: vec![0.0],
            histograms: Some(histograms::SETTINGS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let w = RunFolder::create(&dir, "name = \"bench\"\n", meta).unwrap();
    w.write_meta().unwrap();
    // Round-robin by request: shard i sends global requests i, i + 16, …
    let rows: Vec<RequestRecord> = (0..ROWS)
        .map(|k| {
            let global = k * SHARDS as usize + index as usize;
            let t = global as f64 * 10.0;
            let cold = global.is_multiple_of(50);
            RequestRecord {
                cell: "c01-ka_5m".into(),
                request: global as u32,
                stream: "chat".into(),
                model: "qwen2.5:7b-instruct-q4_K_M".into(),
                intended_ms: t,
                sent_ms: Some(t + 0.3),
                first_token_ms: Some(t + 40.0 + (global % 97) as f64),
                end_ms: t + 400.0 + (global % 389) as f64,
                status: Some(200),
                resident_before: Some(!cold),
                load_duration_ms: Some(if cold { 2500.0 } else { 3.0 }),
                cold,
                ttft_ms: Some(40.0 + (global % 97) as f64),
                e2e_ms: Some(400.0 + (global % 389) as f64),
                eval_count: Some(32),
                ..Default::default()
            }
        })
        .collect();
    folder::write_csv(&dir.join(folder::REQUESTS_CSV), &rows).unwrap();
    histograms::write(&dir, &histograms::from_rows(&rows)).unwrap();
    dir
}

fn bench_merge(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..SHARDS).map(|i| shard_folder(tmp.path(), i)).collect();
    let mut g = c.benchmark_group("merge");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(60));
    g.throughput(Throughput::Elements(SHARDS as u64 * ROWS as u64));
    let mut n = 0u32;
    g.bench_function("16 shards x 100000 rows", |b| {
        b.iter(|| {
            n += 1;
            let out = tmp.path().join(format!("merged-{n}"));
            let merged = merge::merge(&out, &shards).unwrap();
            assert_eq!(merged.rows, SHARDS as u64 * ROWS as u64);
            std::fs::remove_dir_all(&out).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
