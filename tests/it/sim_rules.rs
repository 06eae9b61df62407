//! The simulator's HTTP surface against the `OLLAMA.md` rules not covered by name
//! elsewhere (KA1, M1, M2, M5, P2, H4, H6), checked on raw bytes over loopback with
//! plain reqwest so that nothing in kabench's own client can hide a wrong shape.

use crate::common;

use std::time::Duration;

use kabench::engine::sim::SimHandle;
use kabench::engine::sim_settings::SimSettings;
use serde_json::{Value, json};

const SMALL: &str = "qwen2.5:3b-instruct-q4_0";

async fn start(settings: SimSettings) -> (SimHandle, reqwest::Client) {
    let (handle, _) = common::start_sim(&settings, 3).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    (handle, http)
}

async fn post(
    http: &reqwest::Client,
    sim: &SimHandle,
    path: &str,
    body: Value,
) -> (u16, String, String) {
    let resp = http
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

async fn ps(http: &reqwest::Client, sim: &SimHandle) -> Value {
    let text = http
        .get(format!("{}/api/ps", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn lines(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n'), "every NDJSON line ends with \\n");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn ka1_keep_alive_inside_options_is_ignored() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (status, _, _) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false,
               "options": {"keep_alive": 0, "num_predict": 2, "num_ctx": 2048}}),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Had options.keep_alive 0 counted, the model would be gone; the default 5m holds it.
    let ps = ps(&http, &sim).await;
    assert_eq!(ps["models"][0]["name"], SMALL, "{ps}");
    sim.shutdown().await;
}

#[tokio::test]
async fn m1_ndjson_by_default_and_one_object_with_stream_false() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (status, ctype, body) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "options": {"num_predict": 5, "num_ctx": 2048}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/x-ndjson");
    let chunks = lines(&body);
    assert_eq!(chunks.len(), 6, "five tokens, then the done line: {body}");
    assert!(chunks[..5].iter().all(|c| c["done"] == false));
    assert_eq!(chunks[5]["done"], true);
    assert!(!body.contains("data:"), "no SSE framing");

    let (status, ctype, body) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false,
               "options": {"num_predict": 5, "num_ctx": 2048}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["done"], true);
    let streamed: String = chunks[..5]
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    assert_eq!(
        one["response"].as_str().unwrap().split_whitespace().count(),
        streamed.split_whitespace().count(),
        "the whole text in one object"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn m2_lines_carry_model_created_at_and_text_and_done_reason() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (_, _, body) = post(
        &http,
        &sim,
        "/api/chat",
        json!({"model": SMALL, "messages": [{"role": "user", "content": "hi"}],
               "options": {"num_predict": 3, "num_ctx": 2048}}),
    )
    .await;
    let chunks = lines(&body);
    for c in &chunks {
        assert_eq!(c["model"], SMALL);
        let at = c["created_at"].as_str().unwrap();
        assert!(at.ends_with('Z'), "UTC: {at}");
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(c["message"]["role"], "assistant");
        assert!(c["message"]["content"].is_string());
    }
    assert_eq!(
        chunks.last().unwrap()["done_reason"],
        "length",
        "num_predict reached"
    );
    let (_, _, body) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false, "options": {"num_ctx": 2048}}),
    )
    .await;
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["done_reason"], "stop", "an answer that ends on its own");
    assert!(one["response"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn m5_total_covers_load_and_tokens_per_second_follow_the_catalogue() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (_, _, body) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false,
               "options": {"num_predict": 40, "num_ctx": 2048}}),
    )
    .await;
    let one: Value = serde_json::from_str(&body).unwrap();
    let total = one["total_duration"].as_u64().unwrap();
    let load = one["load_duration"].as_u64().unwrap();
    let eval = one["eval_duration"].as_u64().unwrap();
    assert!(total >= load + eval, "{one}");
    let tps = one["eval_count"].as_f64().unwrap() / eval as f64 * 1e9;
    let spec = sim.state.catalogue().resolve(SMALL).unwrap().decode_tps;
    assert!((tps - spec).abs() / spec < 0.35, "{tps} t/s against {spec}");
    sim.shutdown().await;
}

#[tokio::test]
async fn p2_size_vram_is_size_when_it_fits_and_less_when_it_spills() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "", "options": {"num_ctx": 2048}}),
    )
    .await;
    let p = ps(&http, &sim).await;
    assert_eq!(p["models"][0]["size"], p["models"][0]["size_vram"], "{p}");
    sim.shutdown().await;

    // A 14B fp16 (≈28 GiB) alone on a 16 GiB GPU loads anyway, partly on the CPU (E2).
    let (sim, http) = start(SimSettings {
        vram: Some("16GiB".into()),
        ..SimSettings::for_tests()
    })
    .await;
    post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": "qwen2.5:14b-instruct-fp16", "prompt": "", "options": {"num_ctx": 2048}}),
    )
    .await;
    let p = ps(&http, &sim).await;
    let m = &p["models"][0];
    let (size, vram) = (
        m["size"].as_u64().unwrap(),
        m["size_vram"].as_u64().unwrap(),
    );
    assert!(vram > 0 && vram < size, "{p}");
    sim.shutdown().await;
}

#[tokio::test]
async fn h4_an_option_of_the_wrong_type_is_500_and_unknown_options_are_ignored() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (status, _, body) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false, "options": {"num_ctx": "big"}}),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "option \"num_ctx\" must be of type integer"
    );
    let (status, _, _) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": SMALL, "prompt": "hi", "stream": false,
               "options": {"num_ctx": 2048, "num_predict": 2, "no_such_option": true}}),
    )
    .await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn h6_pull_streams_progress_and_an_unknown_model_errors() {
    let (sim, http) = start(SimSettings::for_tests()).await;
    let (status, _, body) = post(&http, &sim, "/api/pull", json!({"model": SMALL})).await;
    assert_eq!(status, 200);
    let progress = lines(&body);
    let statuses: Vec<&str> = progress
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"));
    assert_eq!(statuses.last(), Some(&"success"));
    assert!(statuses.contains(&"verifying sha256 digest"));
    assert!(statuses.contains(&"writing manifest"));
    let blob = progress
        .iter()
        .find(|p| p["status"].as_str().unwrap().starts_with("pulling ") && p["digest"].is_string())
        .expect("a blob line");
    let hex = blob["status"]
        .as_str()
        .unwrap()
        .trim_start_matches("pulling ");
    assert_eq!(hex.len(), 12, "pulling <12 hex>");
    assert!(blob["total"].as_u64().unwrap() > 0);

    let (status, _, body) = post(&http, &sim, "/api/pull", json!({"model": "nosuch:1b"})).await;
    assert_eq!(status, 200, "the error comes inside the stream");
    let last = lines(&body).pop().unwrap();
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .starts_with("pull model manifest"),
        "{last}"
    );
    let (status, _, _) = post(
        &http,
        &sim,
        "/api/pull",
        json!({"model": "nosuch:1b", "stream": false}),
    )
    .await;
    assert_eq!(status, 500);
    sim.shutdown().await;
}
