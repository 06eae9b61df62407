//! `cargo bench --bench harness`: kabench's own hot paths, so its overhead is known and
//! stays low: parsing a streamed NDJSON response, recording a request (histograms and
//! its CSV row), planning 10⁵ open-loop sends, the scheduler model on a virtual clock
//! (10⁶ events), the simulator answering a warm request beyond its modelled time,
//! rendering the report of a 10⁵-request run, and `kabench predict`'s replay (10⁶
//! requests through one policy on one core; 30 days, 10⁶ requests, 3 models, 20
//! policies, timed once). Figures are kept in `benches/README.md`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kabench::analysis::MsHistogram;
use kabench::engine::catalogue::Catalogue;
use kabench::engine::sched::{RequestKind, SchedConfig, SchedEvent, SchedRequest, Scheduler};
use kabench::engine::sim;
use kabench::engine::sim_settings::SimSettings;
use kabench::folder::{
    self, CellMeta, CellParams, RequestRecord, RunFolder, RunMeta, RunStatus, StreamMeta,
    TargetKind, TargetMeta,
};
use kabench::ollama::OllamaClient;
use kabench::ollama::api::{GenerateRequest, StreamChunk};
use kabench::ollama::stream::{NdjsonDecoder, parse_ndjson_body};
use kabench::report::{self, RenderOptions};
use kabench::run::open_loop::{self as runner, RunnerConfig};
use kabench::scenario::{Api, Arrival, Cell, CellStream, Prompt};
use kabench::units::{KeepAlive, Rate};
use kabench::workload::{self, Limit};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// A streamed generate response recorded from a real Ollama, or an inline stand-in.
fn ndjson_fixture() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/ollama/generate-stream-warm-dolphin3-8b-v0.10.1.ndjson");
    std::fs::read(path).unwrap_or_else(|_| {
        let mut body = Vec::new();
        for i in 0..29 {
            body.extend_from_slice(
                format!(
                    "{{\"model\":\"m\",\"created_at\":\"2025-08-01T19:22:03.{i:07}Z\",\"response\":\" word{i}\",\"done\":false}}\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(b"{\"model\":\"m\",\"created_at\":\"2025-08-01T19:22:04Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1545312100,\"load_duration\":10593900,\"prompt_eval_count\":12,\"prompt_eval_duration\":42000000,\"eval_count\":29,\"eval_duration\":1400000000}\n");
        body
    })
}

fn ndjson(c: &mut Criterion) {
    let body = ndjson_fixture();
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut g = c.benchmark_group("ndjson");
    g.throughput(Throughput::Elements(lines));
    g.bench_function("whole_body", |b| {
        b.iter(|| parse_ndjson_body(black_box(&body)).map(|v| v.len()))
    });
    // As it arrives from the socket: in pieces that split lines.
    g.bench_function("streamed_64_byte_pieces", |b| {
        b.iter(|| {
            let mut d = NdjsonDecoder::new();
            let mut n = 0usize;
            for piece in black_box(&body).chunks(64) {
                n += d.push::<StreamChunk>(piece).map(|v| v.len()).unwrap_or(0);
            }
            n + d.finish::<StreamChunk>().ok().flatten().map_or(0, |_| 1)
        })
    });
    g.finish();
}

fn sample_row(i: u32) -> RequestRecord {
    let t = i as f64 * 10.0;
    RequestRecord {
        cell: "c01-ka_5m".into(),
        request: i,
        stream: "chat".into(),
        model: "qwen2.5:7b-instruct-q4_K_M".into(),
        keep_alive: KeepAlive::from_written("5m"),
        intended_ms: t,
        sent_ms: Some(t + 0.05),
        first_byte_ms: Some(t + 30.0),
        first_token_ms: Some(t + 31.0),
        first_answer_ms: Some(t + 31.0),
        end_ms: t + 480.0 + (i % 97) as f64,
        status: Some(200),
        resident_before: Some(!i.is_multiple_of(50)),
        load_duration_ms: Some(if i.is_multiple_of(50) { 1100.0 } else { 4.0 }),
        cold: i.is_multiple_of(50),
        cold_reason: if i.is_multiple_of(50) {
            "both".into()
        } else {
            String::new()
        },
        prompt_eval_count: Some(64),
        prompt_eval_ms: Some(70.0),
        eval_count: Some(32),
        eval_ms: Some(440.0),
        total_duration_ms: Some(470.0),
        ttft_ms: Some(31.0 + (i % 13) as f64),
        e2e_ms: Some(480.0 + (i % 97) as f64),
        itl_ms: Some(14.2),
        ..Default::default()
    }
}

fn recording(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    let mut hists = [MsHistogram::new(), MsHistogram::new(), MsHistogram::new()];
    let mut i = 0u32;
    g.bench_function("histograms_ttft_e2e_itl", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let v = (i % 5000) as f64 * 0.37;
            hists[0].record_ms(black_box(v));
            hists[1].record_ms(black_box(v * 9.0));
            hists[2].record_ms(black_box(v / 7.0));
        })
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("requests.csv");
    let mut csv =
        folder::CsvAppender::<RequestRecord>::create(&path).unwrap_or_else(|e| panic!("{e:#}"));
    let row = sample_row(7);
    g.bench_function("csv_row_append_flush", |b| {
        b.iter(|| csv.append(black_box(&row)))
    });
    g.finish();
}

fn open_loop_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("workload");
    g.throughput(Throughput::Elements(100_000));
    let poisson = Arrival::Poisson {
        rate: Rate::per_second(200.0),
    };
    let gamma = Arrival::Gamma {
        rate: Rate::per_second(200.0),
        cv: 2.0,
    };
    for (name, arrival) in [("poisson_1e5", poisson), ("gamma_cv2_1e5", gamma)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                workload::send_offsets(black_box(&arrival), Limit::Requests(100_000), 7)
                    .map(|v| v.len())
            })
        });
    }
    g.finish();
}

/// Drives the scheduler on virtual time until `events` operations (submits, finishes,
/// timer advances) ran: four models, a request every 250 ms on a rotation, keep_alive
/// 1 s, each served for 100 ms, so loads, expiries and warm hits all happen.
fn sched_events(events: u64) -> u64 {
    let cfg = SchedConfig {
        seed: 1,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(cfg, Catalogue::builtin());
    let models = [
        "qwen2.5:3b-instruct-q4_K_M",
        "qwen2.5:7b-instruct-q4_K_M",
        "llama3.1:8b-instruct-q4_K_M",
        "mistral:7b-instruct-q4_K_M",
    ];
    let ka = KeepAlive::from_seconds(1.0);
    let gap = Duration::from_millis(250);
    let serve = Duration::from_millis(100);
    let mut running: std::collections::BTreeMap<Duration, Vec<u64>> = Default::default();
    let (mut now, mut next_send, mut id, mut done) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    while done < events {
        let timer = s.next_wakeup();
        let finish = running.keys().next().copied();
        let t = [Some(next_send), timer, finish]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_send);
        now = now.max(t);
        if Some(t) == finish {
            for rid in running.remove(&t).unwrap_or_default() {
                s.finish(now, rid);
                done += 1;
            }
        } else if Some(t) == timer && t < next_send {
            s.advance(now);
            done += 1;
        } else {
            let req = SchedRequest {
                id,
                model: models[(id % 4) as usize].to_string(),
                num_ctx: Some(4096),
                keep_alive: Some(ka.clone()),
                kind: RequestKind::Serve,
            };
            let _ = s.submit(now, req);
            id += 1;
            next_send = now + gap;
            done += 1;
        }
        for ev in s.drain_events() {
            if let SchedEvent::Dispatched { id, .. } = ev {
                running.entry(now + serve).or_default().push(id);
            }
        }
    }
    s.stats().loads
}

fn scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("virtual_clock_1e6_events", |b| {
        b.iter(|| sched_events(black_box(1_000_000)))
    });
    g.finish();
}

fn tiny_request() -> GenerateRequest {
    let mut options = Map::new();
    options.insert("num_ctx".into(), Value::from(4096));
    options.insert("num_predict".into(), Value::from(1));
    GenerateRequest {
        model: "qwen2.5:3b-instruct-q4_K_M".into(),
        prompt: Some("Hi".into()),
        stream: Some(false),
        keep_alive: Some(Value::from(-1)),
        options: Some(options),
        ..Default::default()
    }
}

/// A simulated host whose model computes almost instantly, so what remains of a warm
/// request is HTTP, scheduling and the client.
fn fast_sim() -> SimSettings {
    let mut spec = Catalogue::builtin()
        .resolve("qwen2.5:3b-instruct-q4_K_M")
        .cloned()
        .unwrap_or_else(|| panic!("the built-in catalogue lacks qwen2.5:3b-instruct-q4_K_M"));
    spec.prefill_tps = 1e12;
    spec.decode_tps = 1e12;
    SimSettings {
        runtime_start: Some("1ms".into()),
        page_cache_warm: Some(true),
        cached_bandwidth: Some("1000GB".into()),
        models: vec![spec],
        ..SimSettings::for_tests()
    }
}

fn simulator(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let handle = rt
        .block_on(sim::spawn(&fast_sim(), 0, ([127, 0, 0, 1], 0).into()))
        .unwrap_or_else(|e| panic!("simulator: {e:#}"));
    let client = OllamaClient::new(&handle.base_url()).unwrap_or_else(|e| panic!("{e}"));
    let req = tiny_request();
    rt.block_on(async {
        let ex = client.generate(&req, None).await;
        assert!(ex.is_ok(), "warm-up request failed: {:?}", ex.error);
    });
    let mut g = c.benchmark_group("sim");
    g.sample_size(30);
    g.bench_function("warm_request_round_trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ex = client.generate(&req, None).await;
                    total += ex.e2e();
                }
                total
            })
        })
    });
    // Client e2e minus the server's own total_duration (warm overhead and modelled
    // compute): what the HTTP stack, simulator and client add per request.
    g.bench_function("warm_request_beyond_modelled_time", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ex = client.generate(&req, None).await;
                    let modelled = Duration::from_nanos(ex.metrics.total_duration.unwrap_or(0));
                    total += ex.e2e().saturating_sub(modelled);
                }
                total
            })
        })
    });
    g.finish();
    rt.block_on(handle.shutdown());
}

/// A run folder of `n` requests over four keep_alive cells, written once.
fn run_folder(dir: &Path, n: u32) {
    let cells: Vec<CellMeta> = ["5m", "30s", "0", "-1"]
        .iter()
        .enumerate()
        .map(|(i, ka)| CellMeta {
            id: format!("c{:02}-ka_{ka}", i + 1),
            params: CellParams::default().with("keep_alive", ka),
            streams: vec![StreamMeta {
                name: "chat".into(),
                model: "qwen2.5:7b-instruct-q4_K_M".into(),
                keep_alive: KeepAlive::from_written(ka),
                api: Api::Chat,
                arrival: "poisson".into(),
                rate_per_s: Some(2.0),
                planned: n / 4,
                num_ctx: Some(4096),
            }],
            started_ms: Some(i as f64 * 1e6),
            ended_ms: Some((i + 1) as f64 * 1e6),
            host: None,
        })
        .collect();
    let meta = RunMeta {
        tool: "kabench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        scenario: "bench".into(),
        scenario_file: "bench.toml".into(),
        target: TargetMeta {
            kind: TargetKind::Sim,
            url: "http://127.0.0.1:1".into(),
            urls: Vec::new(),
        },
        ollama_version: Some("0.32.15".into()),
        started_at: folder::utc_now_rfc3339(),
        status: RunStatus::Complete,
        cold_threshold_ms: 100.0,
        cells: cells.clone(),
        ..Default::default()
    };
    let mut w =
        RunFolder::create(dir, "name = \"bench\"\n", meta).unwrap_or_else(|e| panic!("{e:#}"));
    for i in 0..n {
        let cell = &cells[(i % 4) as usize];
        let mut row = sample_row(i / 4);
        row.cell = cell.id.clone();
        row.keep_alive = cell.streams[0].keep_alive.clone();
        row.intended_ms += (i % 4) as f64 * 1e6;
        w.append_request(&row).unwrap_or_else(|e| panic!("{e:#}"));
    }
    w.write_meta().unwrap_or_else(|e| panic!("{e:#}"));
}

fn rendering(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let built = Instant::now();
    run_folder(dir.path(), 100_000);
    eprintln!(
        "harness: wrote a 10^5-request run folder in {:?}",
        built.elapsed()
    );
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.bench_function("render_1e5_requests", |b| {
        b.iter(|| report::render(dir.path(), &RenderOptions::default()).map(|r| r.headline.len()))
    });
    g.finish();
}

/// Issue 5's figure: how late the open-loop runner sends against its intended times at
/// 200 requests/s on the simulator (30 s under `cargo bench`, 2 s in test mode). Not a
/// criterion loop: one run, its percentiles printed.
fn send_accuracy(_: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = std::env::var("KABENCH_SEND_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 30 } else { 2 });
    let rt = kabench::run::pacer::runtime().unwrap_or_else(|e| panic!("runtime: {e}"));
    let settings = SimSettings {
        num_parallel: Some(64),
        ..fast_sim()
    };
    let handle = rt
        .block_on(sim::spawn(&settings, 0, ([127, 0, 0, 1], 0).into()))
        .unwrap_or_else(|e| panic!("simulator: {e:#}"));
    let client = OllamaClient::new(&handle.base_url()).unwrap_or_else(|e| panic!("{e}"));
    let cell = Cell {
        index: 0,
        id: "c01".into(),
        params: Default::default(),
        streams: vec![CellStream {
            name: "s".into(),
            model: "qwen2.5:3b-instruct-q4_K_M".into(),
            api: Api::Generate,
            num_ctx: 4096,
            prompt: Prompt::Tokens(20),
            max_tokens: 4,
            keep_alive: Some(KeepAlive::forever()),
            arrival: Arrival::Constant {
                rate: Rate::per_second(200.0),
            },
            requests: None,
            duration: Some(Duration::from_secs(seconds)),
            warmup: 0,
            images: 0,
            think: None,
            repetition: 0,
            seed: 1,
        }],
        server: None,
    };
    let config = RunnerConfig {
        concurrency: 4096,
        timeout: Duration::from_secs(30),
        cold_threshold: folder::DEFAULT_COLD_THRESHOLD,
        unload_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(1),
        check_resident: true,
    };
    let rows = rt.block_on(async {
        let _ = client
            .load("qwen2.5:3b-instruct-q4_K_M", None, Some(4096))
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let epoch = Instant::now();
        runner::run_cell(&client, &cell, &config, epoch, tx, CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut rows = Vec::new();
        while let Some(r) = rx.recv().await {
            rows.push(r);
        }
        rows
    });
    let mut late = MsHistogram::new();
    let mut beyond_model = MsHistogram::new();
    let mut errors = 0;
    for r in &rows {
        match r.sent_ms {
            Some(sent) if !r.is_error() => {
                late.record_ms((sent - r.intended_ms).max(0.0));
                if let Some(total) = r.total_duration_ms {
                    beyond_model.record_ms((r.end_ms - sent - total).max(0.0));
                }
            }
            _ => errors += 1,
        }
    }
    if let Some(p) = beyond_model.percentiles() {
        eprintln!(
            "send_accuracy: round trip beyond the simulator's total_duration at 200 requests/s \
             (HTTP, simulator, client): p50 {:.3} ms, p99 {:.3} ms",
            p.p50, p.p99
        );
    }
    if let Some(p) = late.percentiles() {
        eprintln!(
            "send_accuracy: 200 requests/s for {seconds} s on the simulator: {} sent, {errors} failed; \
             sent - intended: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            p.count, p.p50, p.p99, p.max
        );
    }
    rt.block_on(handle.shutdown());
}

/// Poisson arrivals over `span_s` seconds, `n` requests rotating over `models`.
fn predict_input(n: usize, span_s: f64, models: u32) -> Vec<kabench::traffic::Request> {
    let mut rng = kabench::rng::SeededRng::new(7);
    let mean = span_s / n as f64;
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            t += -mean * (1.0 - rng.unit()).ln();
            kabench::traffic::Request {
                t,
                model: (i as u32) % models,
                prompt_tokens: None,
                output_tokens: None,
                num_ctx: None,
                client: None,
                keep_alive: None,
                service_s: None,
                kind: kabench::traffic::Kind::Serve,
            }
        })
        .collect()
}

/// An input held in memory, for the replay benches.
struct Held {
    scan: kabench::traffic::Scan,
    requests: std::sync::Arc<Vec<kabench::traffic::Request>>,
}

impl kabench::traffic::Source for Held {
    fn scan(&self) -> &kabench::traffic::Scan {
        &self.scan
    }
    fn requests(&self) -> Result<kabench::traffic::RequestIter, kabench::traffic::TrafficError> {
        let all = self.requests.clone();
        Ok(Box::new((0..all.len()).map(move |i| Ok(all[i].clone()))))
    }
}

const PREDICT_MODELS: [&str; 3] = [
    "qwen2.5:3b-instruct-q4_K_M",
    "qwen2.5:7b-instruct-q4_K_M",
    "llama3.1:8b-instruct-q4_K_M",
];

fn held(requests: Vec<kabench::traffic::Request>, models: usize) -> Held {
    let span = requests.last().map_or(0.0, |r| r.t);
    let scan = kabench::traffic::Scan {
        rows: requests.len() as u64,
        sorted: true,
        span_s: span,
        models: PREDICT_MODELS[..models]
            .iter()
            .map(|m| m.to_string())
            .collect(),
        model_ctx: vec![None; models],
        model_rows: vec![requests.len() as u64 / models as u64; models],
        ..Default::default()
    };
    Held {
        scan,
        requests: std::sync::Arc::new(requests),
    }
}

/// `kabench predict`'s engine on one core: 10⁶ requests of one model (30 days, one
/// every 2.6 s on average: a load the host keeps up with) through one fixed policy
/// (keep_alive 1m).
fn predict_replay(c: &mut Criterion) {
    use kabench::predict::{self, Host, Lookahead, Policy, ReplayModel, ReplaySettings};
    let host = Host::new(&SimSettings::default(), 1, "bench").unwrap();
    let cost = kabench::folder::CostSettings::default();
    // 10⁶ under `cargo bench`, 10⁴ in test mode (`cargo test --bench harness`).
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let input = held(predict_input(n, 30.0 * 86_400.0, 1), 1);
    let (figures, _) = predict::resolve_models(&input.scan, &host, &cost).unwrap();
    let models: Vec<ReplayModel> = figures
        .iter()
        .map(|f| ReplayModel {
            name: f.model.clone(),
            spec: host.catalogue.resolve(&f.model).unwrap().clone(),
            break_even_s: f.break_even_s,
            load_s: f.load_s,
        })
        .collect();
    let settings = ReplaySettings {
        prompt_tokens: 300,
        output_tokens: 16,
        cold_threshold: Duration::from_millis(100),
        sent: Vec::new(),
        split_s: input.scan.span_s / 2.0,
    };
    let ahead = Lookahead::new(1);
    let mut g = c.benchmark_group("predict");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("replay_1e6_requests_one_policy_one_core", |b| {
        b.iter(|| {
            let mut r = predict::replay::Replay::new(
                Policy::Fixed(KeepAlive::parse("1m").unwrap()),
                &host,
                models.clone(),
                settings.clone(),
            );
            for q in input.requests.iter() {
                r.arrive(q, &ahead);
            }
            black_box(r.finish(&ahead).models[0].cold)
        })
    });
    g.finish();
}

/// The scale, timed once (printed): 30 days, 10⁶ requests, 3 models, 20
/// policies (the fixed grid, 2m, histogram, adaptive, pre-warm, the optimum), on every core.
fn predict_30_days(_: &mut Criterion) {
    use kabench::predict::{self, Host, Policy, PredictOptions};
    let host = Host::new(&SimSettings::default(), 1, "bench").unwrap();
    let cost = kabench::folder::CostSettings::default();
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let input = held(predict_input(n, 30.0 * 86_400.0, 3), 3);
    let (figures, unit_of) = predict::resolve_models(&input.scan, &host, &cost).unwrap();
    let mut policies = predict::fixed_policies(&[KeepAlive::parse("2m").unwrap()], true);
    policies.extend([
        Policy::Histogram,
        Policy::Adaptive,
        Policy::PreWarm,
        Policy::Optimum,
    ]);
    let opts = PredictOptions {
        policies,
        cost,
        prompt_tokens: 300,
        output_tokens: 16,
        cold_threshold: Duration::from_millis(100),
        progress: false,
        train: 0.5,
        fast_min_rows: predict::FAST_MIN_ROWS,
    };
    let started = Instant::now();
    let p = predict::predict(&input, &host, &figures, &unit_of, &opts).unwrap();
    println!(
        "predict/30d_{n}_requests_3_models_{}_policies: {:.2} s wall on {} cores",
        p.outcomes.len(),
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

/// Issue 28's scale for one uncontended model, timed once each (printed): 30 days, 10⁶
/// requests of qwen2.5:3b, each arriving after the previous one ended (a gap of at least
/// a cold load and its answer), 20 fixed keep_alives, priced from the gaps in one pass
/// (`predict::fast`) and, beside it, through the scheduler as before (every core).
fn predict_fast(_: &mut Criterion) {
    use kabench::predict::{self, Host, PredictOptions};
    let settings = SimSettings {
        load_jitter: Some(0.0),
        ..SimSettings::default()
    };
    let host = Host::new(&settings, 1, "bench").unwrap();
    let cost = kabench::folder::CostSettings::default();
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let span = 30.0 * 86_400.0;
    let probe = held(predict_input(1, 1.0, 1), 1);
    let (figures, unit_of) = predict::resolve_models(&probe.scan, &host, &cost).unwrap();
    let service = 0.2;
    let floor = figures[0].load_first_s + service + 0.05;
    let mean = (span / n as f64 - floor).max(0.1);
    let mut rng = kabench::rng::SeededRng::new(11);
    let mut t = 0.0;
    let requests: Vec<kabench::traffic::Request> = (0..n)
        .map(|_| {
            t += floor - mean * (1.0 - rng.unit()).ln();
            kabench::traffic::Request {
                t,
                model: 0,
                prompt_tokens: None,
                output_tokens: None,
                num_ctx: None,
                client: None,
                keep_alive: None,
                service_s: Some(service),
                kind: kabench::traffic::Kind::Serve,
            }
        })
        .collect();
    let input = held(requests, 1);
    let given: Vec<KeepAlive> = ["2m", "20s", "45s", "2h", "6h"]
        .iter()
        .map(|k| KeepAlive::parse(k).unwrap())
        .collect();
    let policies = predict::fixed_policies(&given, true);
    for (label, fast_min_rows) in [
        ("from the gaps, one pass", 0),
        ("through the scheduler", u64::MAX),
    ] {
        let opts = PredictOptions {
            policies: policies.clone(),
            cost: cost.clone(),
            prompt_tokens: 300,
            output_tokens: 16,
            cold_threshold: Duration::from_millis(100),
            progress: false,
            train: 0.5,
            fast_min_rows,
        };
        let started = Instant::now();
        let p = predict::predict(&input, &host, &figures, &unit_of, &opts).unwrap();
        println!(
            "predict/30d_{n}_requests_1_model_{}_fixed_policies ({label}): {:.2} s wall, best fixed {}",
            p.outcomes.len(),
            started.elapsed().as_secs_f64(),
            p.best_fixed()
                .map_or("-".into(), |b| p.outcomes[b].policy.name())
        );
    }
}

criterion_group!(
    benches,
    predict_replay,
    predict_30_days,
    predict_fast,
    send_accuracy,
    ndjson,
    recording,
    open_loop_plan,
    scheduler,
    simulator,
    rendering
);
criterion_main!(benches);
