//! `cargo bench --bench keep_alive`: the latency of one small streamed request to a warm
//! model, to a cold one (unloaded before each iteration, only the request timed), and to
//! one just past its keep_alive expiry, for each model of a short list. Default target:
//! the in-process simulator on a free loopback port with page-cache-warm load times;
//! `KABENCH_TARGET=http://host:11434` and `KABENCH_MODELS=a,b` measure a live Ollama.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use kabench::engine::sim::{self, SimHandle};
use kabench::engine::sim_settings::SimSettings;
use kabench::ollama::OllamaClient;
use kabench::ollama::api::GenerateRequest;
use kabench::ollama::name::same_model;
use kabench::units::KeepAlive;
use serde_json::{Map, Value};
use tokio::runtime::Runtime;

const DEFAULT_MODELS: [&str; 2] = ["qwen2.5:3b-instruct-q4_K_M", "qwen2.5:7b-instruct-q4_K_M"];

/// The measured endpoint and, for the simulator, its handle (kept alive for the run).
struct Target {
    client: OllamaClient,
    models: Vec<String>,
    /// keep_alive of the expiry case: short, but whole seconds on a live Ollama.
    short: KeepAlive,
    _sim: Option<SimHandle>,
}

/// Realistic cached loads: runtime start 0.5 s + file ÷ 10 GB/s, so a 7B Q4_K_M
/// (≈4.6 GB) loads in about 1 s and a 3B in about 0.7 s (OLLAMA.md, load-time model).
fn sim_settings() -> SimSettings {
    SimSettings {
        runtime_start: Some("500ms".into()),
        cached_bandwidth: Some("10GB".into()),
        page_cache_warm: Some(true),
        vram_release_delay: Some("10ms".into()),
        load_jitter: Some(0.02),
        ..SimSettings::default()
    }
}

fn target(rt: &Runtime) -> Target {
    let models: Vec<String> = std::env::var("KABENCH_MODELS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_MODELS.iter().map(|s| s.to_string()).collect());
    let (url, sim, short) = match std::env::var("KABENCH_TARGET") {
        Ok(url) if !url.trim().is_empty() && url.trim() != "sim" => {
            (url.trim().to_string(), None, "1s")
        }
        _ => {
            let handle = rt
                .block_on(sim::spawn(
                    &sim_settings(),
                    0,
                    "127.0.0.1:0".parse().expect("a literal address"),
                ))
                .unwrap_or_else(|e| fail(&format!("starting the simulator: {e:#}")));
            (handle.base_url(), Some(handle), "200ms")
        }
    };
    let client = OllamaClient::new(&url).unwrap_or_else(|e| fail(&format!("{url}: {e}")));
    let version = rt
        .block_on(client.version())
        .unwrap_or_else(|e| fail(&format!("cannot reach {}: {e}", client.base_url())));
    eprintln!(
        "keep_alive bench: target {} ({}, version {version}), models {}",
        client.base_url(),
        if sim.is_some() {
            "in-process simulator, page-cache-warm loads"
        } else {
            "live Ollama"
        },
        models.join(", ")
    );
    Target {
        client,
        models,
        short: KeepAlive::parse(short).unwrap_or_else(|e| fail(&e.to_string())),
        _sim: sim,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("keep_alive bench: {message}");
    std::process::exit(1)
}

fn request(model: &str, keep_alive: &KeepAlive) -> GenerateRequest {
    let mut options = Map::new();
    options.insert("num_ctx".into(), Value::from(4096));
    options.insert("num_predict".into(), Value::from(1));
    GenerateRequest {
        model: model.to_string(),
        prompt: Some("Hi".into()),
        stream: Some(true),
        keep_alive: Some(keep_alive.to_json()),
        options: Some(options),
        ..Default::default()
    }
}

/// One timed request; a failed one ends the bench (its figure would be meaningless).
async fn timed(client: &OllamaClient, req: &GenerateRequest) -> Duration {
    let ex = client.generate(req, Some(Duration::from_secs(120))).await;
    if let Some(e) = &ex.error {
        fail(&format!("{}: {e}", req.model));
    }
    ex.e2e()
}

/// Waits until `/api/ps` no longer lists `model` (or 60 s pass).
async fn await_gone(client: &OllamaClient, model: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match client.ps().await {
            Ok(ps)
                if !ps
                    .models
                    .iter()
                    .any(|m| same_model(&m.name, model) || same_model(&m.model, model)) =>
            {
                return;
            }
            Err(e) => fail(&format!("/api/ps: {e}")),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    fail(&format!("{model} is still resident after 60 s"));
}

fn keep_alive(c: &mut Criterion) {
    let rt = Runtime::new().unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let t = target(&rt);
    let forever = KeepAlive::forever();
    for model in &t.models {
        let mut g = c.benchmark_group(format!("keep_alive/{model}"));
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));

        let warm = request(model, &forever);
        rt.block_on(timed(&t.client, &warm));
        g.bench_function("warm", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += timed(&t.client, &warm).await;
                    }
                    total
                })
            })
        });

        g.bench_function("cold", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if let Err(e) = t.client.unload(model).await {
                            fail(&format!("unloading {model}: {e}"));
                        }
                        await_gone(&t.client, model).await;
                        total += timed(&t.client, &warm).await;
                    }
                    total
                })
            })
        });

        let short = request(model, &t.short);
        g.bench_function(format!("expired_{}", t.short.written()), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        timed(&t.client, &short).await;
                        await_gone(&t.client, model).await;
                        total += timed(&t.client, &short).await;
                    }
                    total
                })
            })
        });
        g.finish();
        let _ = rt.block_on(t.client.unload(model));
    }
}

criterion_group!(benches, keep_alive);
criterion_main!(benches);
