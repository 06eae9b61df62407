//! Contract tests: the client parses recorded real Ollama responses
//! (`../shared/fixtures/ollama/`, see its README) byte for byte, and times a recorded
//! stream replayed over loopback. Skipped with a note when the fixtures are absent.

use std::path::PathBuf;
use std::time::Duration;

use kabench::ollama::api;
use kabench::ollama::error::error_message;
use kabench::ollama::stream::{NdjsonDecoder, parse_json_stream, parse_ndjson_body};
use kabench::ollama::{ClientError, ErrorKind, OllamaClient};

fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/ollama");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: recorded Ollama fixtures not found at {}",
            dir.display()
        );
        None
    }
}

fn fixture(name: &str) -> Option<Vec<u8>> {
    let dir = fixtures_dir()?;
    Some(std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}")))
}

/// Feeds `bytes` to the incremental decoder `step` bytes at a time.
fn decode_in_steps(bytes: &[u8], step: usize) -> Vec<api::StreamChunk> {
    let mut d = NdjsonDecoder::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(step) {
        out.extend(d.push::<api::StreamChunk>(piece).unwrap());
    }
    out.extend(d.finish::<api::StreamChunk>().unwrap());
    out
}

#[test]
fn cold_dolphin_stream_parses_in_any_chunking() {
    let Some(bytes) = fixture("generate-stream-cold-dolphin3-8b-v0.10.1.ndjson") else {
        return;
    };
    for step in [1, 7, 64, 4096] {
        let chunks = decode_in_steps(&bytes, step);
        assert_eq!(chunks.len(), 32, "step {step}");
        assert!(chunks[..31].iter().all(|c| !c.done));
        assert_eq!(chunks[0].answer_text(), Some("A"));
        let last = chunks.last().unwrap();
        assert!(last.done);
        assert_eq!(last.done_reason.as_deref(), Some("stop"));
        assert_eq!(
            last.metrics,
            api::Metrics {
                total_duration: Some(5397760600),
                load_duration: Some(3691191000),
                prompt_eval_count: Some(31),
                prompt_eval_duration: Some(220642000),
                eval_count: Some(32),
                eval_duration: Some(1485422000),
            }
        );
    }
    assert_eq!(parse_ndjson_body(&bytes).unwrap().len(), 32);
}

#[test]
fn warm_dolphin_stream_has_a_small_nonzero_load_duration() {
    let Some(bytes) = fixture("generate-stream-warm-dolphin3-8b-v0.10.1.ndjson") else {
        return;
    };
    let chunks = decode_in_steps(&bytes, 13);
    assert_eq!(chunks.len(), 30);
    let m = chunks.last().unwrap().metrics;
    assert_eq!(m.load_duration, Some(27751400));
    assert_eq!(m.total_duration, Some(1454616200));
    assert_eq!(m.eval_count, Some(30));
    // M6: warm is well under the 100 ms cold threshold, and never 0.
    assert!(m.load_duration.unwrap() > 0 && m.load_duration.unwrap() < 100_000_000);
}

#[test]
fn qwen3_think_tags_arrive_inside_response() {
    let Some(bytes) = fixture("generate-stream-warm-qwen3-8b-think-tags-v0.10.1.trimmed.ndjson")
    else {
        return;
    };
    let chunks = decode_in_steps(&bytes, 5);
    assert_eq!(chunks.len(), 10);
    assert_eq!(chunks[0].answer_text(), Some("<think>"));
    assert_eq!(chunks[0].thinking_text(), None);
    assert_eq!(chunks.last().unwrap().metrics.load_duration, Some(22157200));
}

#[test]
fn nonstream_qwen3_cold_and_warm() {
    let (Some(cold), Some(warm)) = (
        fixture("generate-nonstream-cold-qwen3-8b-v0.10.1.json"),
        fixture("generate-nonstream-warm-qwen3-8b-v0.10.1.json"),
    ) else {
        return;
    };
    let cold = parse_ndjson_body(&cold).unwrap();
    assert_eq!(cold.len(), 1);
    assert!(cold[0].done);
    assert_eq!(cold[0].metrics.load_duration, Some(1855668700));
    assert!(cold[0].answer_text().unwrap().starts_with("<think>"));
    let warm = parse_ndjson_body(&warm).unwrap();
    assert_eq!(warm[0].metrics.load_duration, Some(20564400));
    assert_eq!(warm[0].metrics.eval_count, Some(167));
    assert_eq!(warm[0].done_reason.as_deref(), Some("stop"));
}

#[test]
fn m10_thinking_stream_starts_with_thinking_and_lacks_zero_metrics() {
    let Some(bytes) = fixture("generate-stream-thinking-gpt-oss-120b-hosted-turbo.pretty.json")
    else {
        return;
    };
    let chunks = parse_ndjson_body(&bytes).unwrap();
    assert_eq!(chunks.len(), 36);
    let first_token = chunks
        .iter()
        .position(|c| c.thinking_text().is_some() || c.answer_text().is_some())
        .unwrap();
    assert_eq!(first_token, 1, "chunk 0 is empty");
    assert_eq!(chunks[first_token].thinking_text(), Some("User"));
    assert_eq!(chunks[first_token].answer_text(), None);
    let first_answer = chunks
        .iter()
        .position(|c| c.answer_text().is_some())
        .unwrap();
    assert_eq!(first_answer, 27, "26 thinking chunks come first");
    let last = chunks.last().unwrap();
    assert!(last.done);
    assert_eq!(
        last.metrics,
        api::Metrics {
            total_duration: Some(316071589),
            prompt_eval_count: Some(81),
            eval_count: Some(43),
            ..Default::default()
        }
    );
}

#[test]
fn chat_load_unload_and_tool_replies() {
    let (Some(load), Some(unload), Some(tools), Some(thinking)) = (
        fixture("chat-load-llama3.2-docs-example.pretty.json"),
        fixture("chat-unload-llama3.2-docs-example.pretty.json"),
        fixture("chat-nonstream-tool_calls-llama3.2-docs-example.pretty.json"),
        fixture("chat-nonstream-thinking-tool_calls-gpt-oss-120b-hosted-turbo.pretty.json"),
    ) else {
        return;
    };
    for (bytes, reason) in [(&load, "load"), (&unload, "unload")] {
        let c = &parse_ndjson_body(bytes).unwrap()[0];
        assert!(c.done);
        assert_eq!(c.done_reason.as_deref(), Some(reason));
        assert_eq!(c.metrics, api::Metrics::default(), "M7: no metrics");
        assert_eq!(c.message.as_ref().unwrap().role, "assistant");
        assert_eq!(c.answer_text(), None);
    }
    let t = &parse_ndjson_body(&tools).unwrap()[0];
    assert!(t.done);
    assert!(t.message.as_ref().unwrap().tool_calls.is_some());
    assert!(t.metrics.total_duration.is_some() && t.metrics.eval_duration.is_some());
    let th = &parse_ndjson_body(&thinking).unwrap()[0];
    assert!(th.thinking_text().is_some());
    assert_eq!(th.done_reason, None);
    assert!(th.metrics.total_duration.is_some());
    assert_eq!(th.metrics.load_duration, None);
}

#[test]
fn p1_ps_sizes_and_expires_at_strings() {
    let (Some(partial), Some(two), Some(cpu)) = (
        fixture("ps-partial-offload-dolphin3-8b-v0.10.1.pretty.json"),
        fixture("ps-two-models-v0.11.6.pretty.json"),
        fixture("ps-cpu-only-size_vram-0-tinyllama.pretty.json"),
    ) else {
        return;
    };
    let p: api::PsResponse = serde_json::from_slice(&partial).unwrap();
    let m = &p.models[0];
    assert_eq!(m.name, "dolphin3:8b");
    assert_eq!((m.size, m.size_vram), (8650752576, 7015958528));
    assert!(m.size_vram < m.size, "P2: partial offload");
    assert_eq!(m.context_length, Some(16384));
    assert_eq!(m.expires_at, "2025-08-01T21:27:04.6179283+02:00");
    assert_eq!(m.details.quantization_level, "Q4_K_M");

    let p: api::PsResponse = serde_json::from_slice(&two).unwrap();
    assert_eq!(p.models.len(), 2);
    assert_eq!(p.models[0].expires_at, "2025-08-23T15:38:39.2249446+02:00");
    assert_eq!(p.models[1].expires_at, "2025-08-23T15:38:16.054006+02:00");
    assert!(
        p.models[0].expires_at > p.models[1].expires_at,
        "P1: latest first"
    );
    assert_eq!(p.models[1].size, 3501615104);

    let p: api::PsResponse = serde_json::from_slice(&cpu).unwrap();
    assert_eq!(p.models[0].size_vram, 0);
    assert_eq!(p.models[0].size, 827340800);
    assert_eq!(p.models[0].expires_at, "2025-08-20T22:09:46.162460313Z");
}

#[test]
fn h5_tags_version_and_show() {
    let (Some(tags), Some(turbo), Some(version), Some(show), Some(show_turbo)) = (
        fixture("tags-v0.11.6.pretty.json"),
        fixture("tags-hosted-turbo.pretty.json"),
        fixture("version-v0.11.6.json"),
        fixture("show-verbose-dolphin3-8b-v0.11.6.pretty.json"),
        fixture("show-gpt-oss-120b-hosted-turbo.pretty.json"),
    ) else {
        return;
    };
    let t: api::TagsResponse = serde_json::from_slice(&tags).unwrap();
    assert_eq!(t.models.len(), 7);
    assert_eq!(t.models[0].name, "smollm2:1.7b");
    assert_eq!(t.models[0].size, 1820428533);
    assert_eq!(t.models[1].details.parameter_size, "7.2B");
    assert!(t.models.iter().any(|m| m.name.starts_with("hf.co/")));
    let t: api::TagsResponse = serde_json::from_slice(&turbo).unwrap();
    assert_eq!(t.models.len(), 3);
    assert!(t.models.iter().all(|m| m.details.families.is_none()));

    let v: api::VersionResponse = serde_json::from_slice(&version).unwrap();
    assert_eq!(v.version, "0.11.6");

    let s: api::ShowResponse = serde_json::from_slice(&show).unwrap();
    assert_eq!(s.capabilities, vec!["completion".to_string()]);
    assert_eq!(s.model_info["llama.context_length"], 131072);
    assert_eq!(s.model_info["llama.block_count"], 32);
    assert_eq!(s.model_info["llama.attention.head_count_kv"], 8);
    assert_eq!(s.details.family, "llama");
    let s: api::ShowResponse = serde_json::from_slice(&show_turbo).unwrap();
    assert_eq!(s.capabilities, vec!["thinking".to_string()]);
    assert_eq!(s.modified_at, "0001-01-01T00:00:00Z");
}

#[test]
fn h1_error_bodies() {
    let (Some(e401), Some(e502), Some(required), Some(pasted)) = (
        fixture("error-401-unauthorized-hosted-turbo.json"),
        fixture("error-502-upstream-hosted-turbo.json"),
        fixture("error-chat-model-is-required-v0.10.1.json"),
        fixture("error-model-not-found-llama2-as-pasted.txt"),
    ) else {
        return;
    };
    assert_eq!(error_message(&e401), "unauthorized");
    assert_eq!(error_message(&e502), "upstream error");
    assert_eq!(error_message(&required), "model is required");
    // Not valid JSON as pasted: the client keeps the plain body as the message.
    assert_eq!(
        error_message(&pasted),
        r#"{"error":"model "llama2" not found, try pulling it first"}"#
    );
    // An error object inside a stream decodes as a chunk carrying `error` (M9).
    let chunks = parse_ndjson_body(&required).unwrap();
    assert_eq!(chunks[0].error.as_deref(), Some("model is required"));
    assert!(parse_json_stream::<api::ErrorBody>(&e502).is_ok());
}

/// Serves `body` for every POST, split into small pieces with pauses, so the client
/// sees a real chunked stream.
async fn replay_server(
    body: Vec<u8>,
    status: u16,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::response::Response;
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
                .chunks(97)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let stream = futures_util::stream::iter(pieces).then(|p| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                p
            });
            Response::builder()
                .status(status)
                .header("content-type", "application/x-ndjson")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

use futures_util::StreamExt;

#[tokio::test]
async fn client_times_a_replayed_recorded_stream() {
    let Some(bytes) = fixture("generate-stream-thinking-gpt-oss-120b-hosted-turbo.pretty.json")
    else {
        return;
    };
    // The pretty-printed capture is not NDJSON: re-encode it one object per line.
    let values: Vec<serde_json::Value> = parse_json_stream(&bytes).unwrap();
    let mut ndjson = Vec::new();
    for v in &values {
        ndjson.extend(serde_json::to_vec(v).unwrap());
        ndjson.push(b'\n');
    }
    let (addr, task) = replay_server(ndjson, 200).await;
    let client = OllamaClient::new(&addr.to_string()).unwrap();
    let req = api::GenerateRequest {
        model: "gpt-oss:120b".into(),
        prompt: Some("Describe a rabbit".into()),
        ..Default::default()
    };
    let ex = client.generate(&req, Some(Duration::from_secs(10))).await;
    assert!(ex.error.is_none(), "{:?}", ex.error);
    assert_eq!(ex.status, Some(200));
    assert_eq!(ex.chunks, 36);
    assert_eq!(ex.metrics.eval_count, Some(43));
    assert_eq!(ex.done_reason.as_deref(), Some("stop"));
    let (sent, first_byte, first_token, first_answer) = (
        ex.sent_at,
        ex.first_byte_at.unwrap(),
        ex.first_token_at.unwrap(),
        ex.first_answer_at.unwrap(),
    );
    assert!(sent <= first_byte && first_byte <= first_token);
    assert!(
        first_token < first_answer,
        "thinking comes before the answer"
    );
    assert!(first_answer <= ex.end_at);
    task.abort();
}

#[tokio::test]
async fn client_reports_a_truncated_recorded_stream_as_broken() {
    let Some(bytes) = fixture("generate-stream-cold-dolphin3-8b-v0.10.1.ndjson") else {
        return;
    };
    // Cut the capture before its done line.
    let cut = bytes[..bytes.len() - 10]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let (addr, task) = replay_server(bytes[..cut].to_vec(), 200).await;
    let client = OllamaClient::new(&format!("http://{addr}")).unwrap();
    let req = api::GenerateRequest {
        model: "dolphin3:8b".into(),
        prompt: Some("hi".into()),
        ..Default::default()
    };
    let ex = client.generate(&req, Some(Duration::from_secs(10))).await;
    assert_eq!(ex.chunks, 31);
    assert!(
        matches!(ex.error, Some(ClientError::BrokenStream(_))),
        "{:?}",
        ex.error
    );
    task.abort();

    let (addr, task) = replay_server(br#"{"error": "upstream error"}"#.to_vec(), 502).await;
    let client = OllamaClient::new(&format!("http://{addr}")).unwrap();
    let ex = client.generate(&req, None).await;
    assert_eq!(ex.status, Some(502));
    assert_eq!(
        ex.error,
        Some(ClientError::Http {
            status: 502,
            message: "upstream error".into()
        })
    );
    assert_eq!(ex.error.unwrap().kind(), ErrorKind::Http);
    task.abort();
}

/// Keys of a JSON object.
fn keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn sim_replies_have_the_recorded_shapes() {
    let (Some(ps_fixture), Some(stream_fixture), Some(tags_fixture)) = (
        fixture("ps-two-models-v0.11.6.pretty.json"),
        fixture("generate-stream-cold-dolphin3-8b-v0.10.1.ndjson"),
        fixture("tags-v0.11.6.pretty.json"),
    ) else {
        return;
    };
    let settings = kabench::engine::sim_settings::SimSettings::for_tests();
    let sim = kabench::engine::sim::spawn(&settings, 1, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = sim.base_url();
    let body = http
        .post(format!("{base}/api/generate"))
        .body(r#"{"model":"qwen2.5:3b","prompt":"hello there","keep_alive":"5s","options":{"num_predict":3,"num_ctx":2048}}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let got: Vec<serde_json::Value> = parse_json_stream(&body).unwrap();
    let want: Vec<serde_json::Value> = parse_json_stream(&stream_fixture).unwrap();
    assert_eq!(keys(&got[0]), keys(&want[0]), "token line");
    // `context` too: deprecated, but v0.32.15 still sends it (tests/it/differential.rs).
    assert_eq!(
        keys(got.last().unwrap()),
        keys(want.last().unwrap()),
        "done line"
    );

    let ps: serde_json::Value = http
        .get(format!("{base}/api/ps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: serde_json::Value = serde_json::from_slice(&ps_fixture).unwrap();
    let (got_m, want_m) = (&ps["models"][0], &want["models"][0]);
    assert_eq!(keys(got_m), keys(want_m));
    assert_eq!(keys(&got_m["details"]), keys(&want_m["details"]));

    let tags: serde_json::Value = http
        .get(format!("{base}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: serde_json::Value = serde_json::from_slice(&tags_fixture).unwrap();
    assert_eq!(keys(&tags["models"][0]), keys(&want["models"][0]));
    sim.shutdown().await;
}
