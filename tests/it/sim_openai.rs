//! The simulator's OpenAI-compatible endpoints against H9 (`/v1/*` drop `keep_alive`
//! and `num_ctx`: a cold load gets `OLLAMA_KEEP_ALIVE`, a resident model keeps its
//! value), and the 501 of an embedding request to a model without embeddings, as the
//! real v0.32.15 answers them (checked live in `tests/it/doctor.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use kabench::engine::sim::{self, SimHandle};
use kabench::engine::sim_settings::SimSettings;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CHAT: &str = "tiny-50m";
const EMBED: &str = "nomic-embed-text:v1.5";

async fn start(keep_alive: &str) -> (SimHandle, reqwest::Client) {
    let settings = SimSettings {
        gpus: Some(0),
        keep_alive: Some(keep_alive.into()),
        ..SimSettings::for_tests()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = sim::spawn(&settings, 5, listen).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    (handle, http)
}

async fn post(http: &reqwest::Client, sim: &SimHandle, path: &str, body: Value) -> (u16, String) {
    let resp = http
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Seconds from now to the model's `expires_at`, with its `context_length`; `None`
/// when it is not resident.
async fn expiry(http: &reqwest::Client, sim: &SimHandle, model: &str) -> Option<(f64, u64)> {
    let ps: Value = http
        .get(format!("{}/api/ps", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str().unwrap().starts_with(model))?
        .clone();
    let at = OffsetDateTime::parse(m["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let left = (at - OffsetDateTime::now_utc()).as_seconds_f64();
    Some((left, m["context_length"].as_u64().unwrap_or(0)))
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": CHAT,
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 3,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn h9_v1_chat_cold_load_gets_the_server_keep_alive_and_default_context() {
    let (sim, http) = start("7s").await;
    let (status, body) = post(
        &http,
        &sim,
        "/v1/chat/completions",
        chat_body(json!({"keep_alive": "1h", "options": {"num_ctx": 1024}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert!(v["usage"].get("total_duration").is_none());
    let (left, ctx) = expiry(&http, &sim, CHAT).await.expect("resident");
    assert!((6.0..7.5).contains(&left), "expires in {left} s, not 7 s");
    assert_eq!(ctx, 4096, "num_ctx dropped: the default context");
    sim.shutdown().await;
}

#[tokio::test]
async fn h9_v1_chat_leaves_a_resident_models_keep_alive_and_never_rejects_it() {
    let (sim, http) = start("7s").await;
    let (status, _) = post(
        &http,
        &sim,
        "/api/generate",
        json!({"model": CHAT, "prompt": "hi", "stream": false, "keep_alive": "1h",
               "options": {"num_predict": 1}}),
    )
    .await;
    assert_eq!(status, 200);
    // keep_alive 0 and the string "-1" (400 on the native API) are both dropped.
    for ka in [json!(0), json!("-1")] {
        let (status, body) = post(
            &http,
            &sim,
            "/v1/chat/completions",
            chat_body(json!({ "keep_alive": ka })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (left, _) = expiry(&http, &sim, CHAT).await.expect("still resident");
        assert!(left > 3500.0, "keeps 1h, expires in {left} s");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn h9_v1_chat_streams_server_sent_events_ending_in_done() {
    let (sim, http) = start("5m").await;
    let resp = http
        .post(format!("{}/v1/chat/completions", sim.base_url()))
        .json(&chat_body(json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data: events"))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks.len(), 4, "3 tokens and the finish chunk: {text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
    sim.shutdown().await;
}

#[tokio::test]
async fn h9_v1_embeddings_cold_load_gets_the_server_keep_alive() {
    let (sim, http) = start("9s").await;
    let (status, body) = post(
        &http,
        &sim,
        "/v1/embeddings",
        json!({"model": EMBED, "input": ["one", "two"], "keep_alive": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 768);
    let (left, _) = expiry(&http, &sim, EMBED).await.expect("resident");
    assert!((8.0..9.5).contains(&left), "expires in {left} s, not 9 s");
    sim.shutdown().await;
}

#[tokio::test]
async fn h9_v1_errors_have_openais_shape_and_ollamas_texts() {
    let (sim, http) = start("5m").await;
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "model 'nope' not found",
        ),
        (
            "/v1/embeddings",
            json!({"model": "nope", "input": "x"}),
            404,
            "not_found_error",
            "model \"nope\" not found, try pulling it first",
        ),
        (
            "/v1/chat/completions",
            json!({"model": CHAT, "messages": []}),
            400,
            "invalid_request_error",
            "[] is too short - 'messages'",
        ),
        (
            "/v1/embeddings",
            json!({"model": CHAT}),
            400,
            "invalid_request_error",
            "invalid input",
        ),
    ];
    for (path, body, status, kind, message) in cases {
        let (got, text) = post(&http, &sim, path, body).await;
        assert_eq!(got, status, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], kind, "{text}");
        assert_eq!(v["error"]["message"], message, "{text}");
        assert!(v["error"]["code"].is_null());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn embedding_a_model_without_embeddings_is_501_after_its_keep_alive_applied() {
    let (sim, http) = start("5m").await;
    let (status, body) = post(
        &http,
        &sim,
        "/api/embed",
        json!({"model": CHAT, "input": "hi", "keep_alive": "4s"}),
    )
    .await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "This server does not support embeddings. Start it with `--embeddings`"
    );
    let (left, _) = expiry(&http, &sim, CHAT).await.expect("loaded");
    assert!((3.0..4.5).contains(&left), "keep_alive 4s applied: {left}");
    let (status, body) = post(
        &http,
        &sim,
        "/v1/embeddings",
        json!({"model": CHAT, "input": "hi"}),
    )
    .await;
    assert_eq!(status, 501, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    sim.shutdown().await;
}
