//! The client against the simulator over real loopback (port 0): keep_alive timers,
//! cold/warm `load_duration`, `/api/ps`, eviction, queue limits, every endpoint, and
//! fault injection producing each `ClientError` kind. Loads are ms-scale
//! (`SimSettings::for_tests`) and keep_alive values short so the suite stays fast.

use crate::common;

use std::time::{Duration, Instant};

use kabench::engine::sim::SimHandle;
use kabench::engine::sim_settings::{FaultSettings, SimSettings};
use kabench::ollama::api;
use kabench::ollama::{ClientError, ErrorKind, OllamaClient};
use kabench::units::KeepAlive;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const SMALL: &str = "qwen2.5:3b";
const OTHER: &str = "llama3.2:3b";
const EMBED: &str = "nomic-embed-text:v1.5";
const THINKER: &str = "qwen3:8b";
const LIMIT: Option<Duration> = Some(Duration::from_secs(10));

async fn start(settings: SimSettings) -> (SimHandle, OllamaClient) {
    common::start_sim(&settings, 7).await
}

fn options(num_predict: i64) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("num_ctx".into(), json!(2048));
    o.insert("num_predict".into(), json!(num_predict));
    o
}

fn prompt_req(model: &str, keep_alive: Option<Value>, num_predict: i64) -> api::GenerateRequest {
    api::GenerateRequest {
        model: model.into(),
        prompt: Some(api::synthetic_prompt(32)),
        keep_alive,
        options: Some(options(num_predict)),
        ..Default::default()
    }
}

fn ms(ns: Option<u64>) -> f64 {
    ns.unwrap_or(0) as f64 / 1e6
}

fn expires_in(expires_at: &str) -> f64 {
    let t = OffsetDateTime::parse(expires_at, &Rfc3339).unwrap();
    (t - OffsetDateTime::now_utc()).as_seconds_f64()
}

async fn wait_until_empty(client: &OllamaClient, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client.ps().await.unwrap().models.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn cold_then_warm_and_keep_alive_expiry() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    let ka = KeepAlive::parse("300ms").unwrap();
    let cold = client
        .generate(&prompt_req(SMALL, Some(ka.to_json()), 6), LIMIT)
        .await;
    assert!(cold.is_ok(), "{:?}", cold.error);
    assert_eq!(cold.status, Some(200));
    // A ~1.9 GB file at 50 GB/s plus 20 ms runtime start.
    assert!(ms(cold.metrics.load_duration) >= 40.0, "{:?}", cold.metrics);
    assert_eq!(cold.metrics.eval_count, Some(6));
    assert_eq!(cold.metrics.prompt_eval_count, Some(32));
    assert_eq!(cold.done_reason.as_deref(), Some("length"));
    assert_eq!(cold.chunks, 7, "one line per token, then done");
    assert!(cold.metrics.total_duration >= cold.metrics.load_duration);

    let warm = client
        .generate(&prompt_req(SMALL, Some(ka.to_json()), 6), LIMIT)
        .await;
    assert!(warm.is_ok(), "{:?}", warm.error);
    let load = ms(warm.metrics.load_duration);
    assert!(load > 0.0 && load < 20.0, "M4: warm load {load} ms");
    let tps =
        warm.metrics.eval_count.unwrap() as f64 / warm.metrics.eval_duration.unwrap() as f64 * 1e9;
    assert!(tps > 10.0, "{tps}");

    let ps = client.ps().await.unwrap();
    assert_eq!(ps.models.len(), 1);
    let m = &ps.models[0];
    assert_eq!(m.name, SMALL);
    assert_eq!(m.context_length, Some(2048));
    assert_eq!(m.size, m.size_vram);
    let left = expires_in(&m.expires_at);
    assert!((0.1..=0.4).contains(&left), "expires in {left} s");
    assert!(
        wait_until_empty(&client, Duration::from_secs(2)).await,
        "T4: expired"
    );
    let stats = sim.state.stats();
    assert_eq!((stats.loads, stats.expirations), (1, 1));
    assert_eq!(sim.state.requests(), 2);
    assert_eq!(sim.state.vram_used(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn keep_alive_zero_forever_and_bad_forms() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    let ex = client
        .generate(&prompt_req(SMALL, Some(json!(0)), 2), LIMIT)
        .await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert!(
        wait_until_empty(&client, Duration::from_millis(300)).await,
        "T3"
    );

    let ex = client
        .generate(&prompt_req(SMALL, Some(json!(-1)), 2), LIMIT)
        .await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    let ps = client.ps().await.unwrap();
    let years = expires_in(&ps.models[0].expires_at) / (365.25 * 86400.0);
    assert!((291.0..293.0).contains(&years), "P4 forever: {years} years");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.ps().await.unwrap().models.len(), 1, "T5");

    // KA4: a numeric string is rejected with Go's text.
    let ex = client
        .generate(&prompt_req(SMALL, Some(json!("-1")), 2), LIMIT)
        .await;
    assert_eq!(
        ex.error,
        Some(ClientError::Http {
            status: 400,
            message: "time: missing unit in duration \"-1\"".into()
        })
    );
    let ex = client
        .generate(&prompt_req(SMALL, Some(json!(true)), 2), LIMIT)
        .await;
    assert_eq!(ex.error.and_then(|e| e.status()), Some(400));

    // E6: unload reply at once; the model leaves ps.
    let took = client.unload(SMALL).await.unwrap();
    assert!(took < Duration::from_millis(500));
    assert!(wait_until_empty(&client, Duration::from_millis(300)).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn h2_h3_errors_and_plain_404() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    let ex = client
        .generate(&prompt_req("no-such-model:1b", None, 2), LIMIT)
        .await;
    assert_eq!(
        ex.error,
        Some(ClientError::Http {
            status: 404,
            message: "model 'no-such-model:1b' not found".into()
        })
    );
    // The real v0.32.15 answers an empty model on /api/generate with 404 (chat: 400).
    let ex = client.generate(&prompt_req("", None, 2), LIMIT).await;
    assert_eq!(
        ex.error.unwrap().to_string(),
        "HTTP 404: model '' not found"
    );
    let ex = client.generate(&prompt_req(EMBED, None, 2), LIMIT).await;
    assert_eq!(
        ex.error.unwrap().to_string(),
        format!("HTTP 400: \"{EMBED}\" does not support generate")
    );
    let chat = api::ChatRequest {
        model: EMBED.into(),
        messages: Some(vec![api::Message {
            role: "user".into(),
            content: "hi".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let ex = client.chat(&chat, LIMIT).await;
    assert_eq!(
        ex.error.unwrap().to_string(),
        format!("HTTP 400: \"{EMBED}\" does not support chat")
    );
    let err = client.show("nope:1b").await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    // Raw requests for what the client never sends.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = sim.base_url();
    let r = http
        .post(format!("{base}/api/generate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"missing request body"}"#
    );
    let r = http
        .post(format!("{base}/api/generate"))
        .body("{\"model\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("{\"error\":"));
    let r = http
        .post(format!("{base}/api/generate"))
        .body(r#"{"model":"qwen2.5:3b","prompt":"x","options":{"num_ctx":"big"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"option \"num_ctx\" must be of type integer"}"#
    );
    let r = http
        .get(format!("{base}/api/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404 page not found");
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Ollama is running");
    let r = http
        .get(format!("{base}/api/generate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(sim.state.stats().loads, 0, "no error loaded anything");
    sim.shutdown().await;
}

#[tokio::test]
async fn info_endpoints_version_tags_show_pull_metrics() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    assert_eq!(client.version().await.unwrap(), "0.32.15");
    let tags = client.tags().await.unwrap();
    let t = tags.models.iter().find(|m| m.name == SMALL).unwrap();
    assert!(t.size > 1_000_000_000);
    assert_eq!(t.details.quantization_level, "Q4_K_M");
    assert_eq!(t.digest.len(), 64);
    OffsetDateTime::parse(&t.modified_at, &Rfc3339).unwrap();

    let show = client.show(SMALL).await.unwrap();
    assert!(show.capabilities.contains(&"completion".to_string()));
    assert_eq!(show.model_info["qwen2.context_length"], 32768);
    assert_eq!(show.model_info["qwen2.block_count"], 36);
    assert_eq!(show.model_info["qwen2.attention.head_count_kv"], 2);
    assert!(show.model_info.contains_key("qwen2.embedding_length"));
    let show = client.show(EMBED).await.unwrap();
    assert_eq!(show.capabilities, vec!["embedding".to_string()]);

    let mut lines = Vec::new();
    client.pull(SMALL, |p| lines.push(p.clone())).await.unwrap();
    assert_eq!(lines[0].status, "pulling manifest");
    assert_eq!(lines.last().unwrap().status, "success");
    let blob = lines
        .iter()
        .find(|p| p.status.starts_with("pulling ") && p.digest.is_some())
        .unwrap();
    assert_eq!(blob.status.len(), "pulling ".len() + 12);
    assert!(
        lines
            .iter()
            .any(|p| p.completed.is_some() && p.completed == p.total)
    );
    assert!(lines.iter().any(|p| p.status == "verifying sha256 digest"));
    let err = client.pull("nope:1b", |_| {}).await.unwrap_err();
    assert_eq!(
        err,
        ClientError::StreamError("pull model manifest: file does not exist".into())
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("{}/api/pull", sim.base_url()))
        .body(r#"{"model":"nope:1b","stream":false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    client
        .load(SMALL, Some(&KeepAlive::parse("5s").unwrap()), Some(2048))
        .await
        .unwrap();
    let text = http
        .get(format!("{}/metrics", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kabench_sim_loads_total 1"), "{text}");
    assert!(text.contains(&format!(
        "kabench_sim_model_size_vram_bytes{{model=\"{SMALL}\"}}"
    )));
    assert!(text.contains(&format!(
        "kabench_sim_vram_used_bytes {}",
        sim.state.vram_used()
    )));
    assert!(text.contains("kabench_sim_vram_total_bytes "));
    sim.shutdown().await;
}

#[tokio::test]
async fn m7_load_reply_then_stream_false_chat_and_thinking() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    let took = client
        .load(SMALL, Some(&KeepAlive::parse("2s").unwrap()), Some(2048))
        .await
        .unwrap();
    assert!(
        took >= Duration::from_millis(40),
        "cold load timed on the client: {took:?}"
    );
    assert_eq!(client.ps().await.unwrap().models.len(), 1);

    let mut req = prompt_req(SMALL, None, 5);
    req.stream = Some(false);
    let ex = client.generate(&req, LIMIT).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.chunks, 1);
    assert_eq!(ex.metrics.eval_count, Some(5));
    assert!(ex.first_answer_at.is_some());

    let chat = api::ChatRequest {
        model: SMALL.into(),
        messages: Some(vec![api::Message {
            role: "user".into(),
            content: api::synthetic_prompt(10),
            ..Default::default()
        }]),
        options: Some(options(4)),
        ..Default::default()
    };
    let ex = client.chat(&chat, LIMIT).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.chunks, 5);
    assert_eq!(ex.metrics.prompt_eval_count, Some(10));

    // Chat load: empty messages, reply done_reason "load".
    let load = api::ChatRequest {
        model: SMALL.into(),
        ..Default::default()
    };
    let ex = client.chat(&load, LIMIT).await;
    assert_eq!(ex.done_reason.as_deref(), Some("load"));
    assert_eq!(ex.metrics, api::Metrics::default());

    // M10: a thinking model streams reasoning first.
    let ex = client
        .generate(&prompt_req(THINKER, Some(json!("1s")), 8), LIMIT)
        .await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert!(ex.first_token_at.unwrap() < ex.first_answer_at.unwrap());
    assert_eq!(ex.metrics.eval_count, Some(8));
    let mut no_think = prompt_req(THINKER, Some(json!("1s")), 8);
    no_think.think = Some(json!(false));
    let ex = client.generate(&no_think, LIMIT).await;
    assert_eq!(ex.first_token_at, ex.first_answer_at);
    sim.shutdown().await;
}

#[tokio::test]
async fn m8_embed() {
    let (sim, client) = start(SimSettings::for_tests()).await;
    let req = api::EmbedRequest {
        model: EMBED.into(),
        input: Some(json!(["one text", "another text here"])),
        keep_alive: Some(json!("1s")),
        ..Default::default()
    };
    let ex = client.embed(&req, LIMIT).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert!(ex.metrics.load_duration.unwrap() > 0);
    assert_eq!(ex.metrics.prompt_eval_count, Some(5));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let reply: api::EmbedResponse = http
        .post(format!("{}/api/embed", sim.base_url()))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply.embeddings.len(), 2);
    assert_eq!(reply.embeddings[0].len(), 768);
    assert_ne!(reply.embeddings[0], reply.embeddings[1]);
    // An empty input only loads; with keep_alive 0 the model leaves after.
    let unload = api::EmbedRequest {
        model: EMBED.into(),
        keep_alive: Some(json!(0)),
        ..Default::default()
    };
    let ex = client.embed(&unload, LIMIT).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert!(wait_until_empty(&client, Duration::from_millis(300)).await);
    assert_eq!(sim.state.stats().loads, 1);
    sim.shutdown().await;
}

fn small_gpu() -> SimSettings {
    SimSettings {
        vram: Some("4GiB".into()),
        ..SimSettings::for_tests()
    }
}

#[tokio::test]
async fn e3_second_model_evicts_the_idle_first_and_waits_for_a_busy_one() {
    let (sim, client) = start(small_gpu()).await;
    let ka = Some(json!("10s"));
    assert!(
        client
            .generate(&prompt_req(SMALL, ka.clone(), 2), LIMIT)
            .await
            .is_ok()
    );
    let ex = client
        .generate(&prompt_req(OTHER, ka.clone(), 2), LIMIT)
        .await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    let ps = client.ps().await.unwrap();
    assert_eq!(ps.models.len(), 1);
    assert_eq!(ps.models[0].name, OTHER);
    assert_eq!(sim.state.stats().evictions, 1);

    // Now OTHER is busy for ~60 tokens when SMALL asks: SMALL's load waits for it.
    let busy_client = client.clone();
    let busy_req = prompt_req(OTHER, ka.clone(), 60);
    let busy = tokio::spawn(async move { busy_client.generate(&busy_req, LIMIT).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let waiter = client
        .generate(&prompt_req(SMALL, ka.clone(), 2), LIMIT)
        .await;
    let busy = busy.await.unwrap();
    assert!(
        busy.is_ok() && waiter.is_ok(),
        "{:?} {:?}",
        busy.error,
        waiter.error
    );
    assert!(
        waiter.end_at > busy.end_at,
        "the load waited for the busy model"
    );
    assert!(
        waiter.first_token_at.unwrap() > busy.end_at,
        "SMALL got its first token only after OTHER finished"
    );
    assert_eq!(client.ps().await.unwrap().models[0].name, SMALL);
    sim.shutdown().await;
}

#[tokio::test]
async fn q2_past_max_queue_is_503() {
    let settings = SimSettings {
        max_queue: Some(1),
        ..SimSettings::for_tests()
    };
    let (sim, client) = start(settings).await;
    let models = [SMALL, OTHER, "mistral:7b", "qwen2.5:7b"];
    let tasks: Vec<_> = models
        .iter()
        .map(|m| {
            let c = client.clone();
            let req = prompt_req(m, Some(json!("1s")), 1);
            tokio::spawn(async move { c.generate(&req, LIMIT).await })
        })
        .collect();
    let mut busy = 0;
    for t in tasks {
        let ex = t.await.unwrap();
        if let Some(e) = ex.error {
            assert_eq!(
                e,
                ClientError::Http {
                    status: 503,
                    message: "server busy, please try again.  maximum pending requests exceeded"
                        .into()
                }
            );
            busy += 1;
        }
    }
    assert!(busy >= 1, "some requests must be refused");
    assert_eq!(sim.state.stats().rejected, busy);
    sim.shutdown().await;
}

fn faulty(f: FaultSettings) -> SimSettings {
    SimSettings {
        faults: FaultSettings {
            stall: Some("200ms".into()),
            ..f
        },
        ..SimSettings::for_tests()
    }
}

#[tokio::test]
async fn faults_produce_each_error_kind() {
    let cases = [
        (
            FaultSettings {
                error_500: Some(1.0),
                ..Default::default()
            },
            ErrorKind::Http,
        ),
        (
            FaultSettings {
                midstream_error: Some(1.0),
                ..Default::default()
            },
            ErrorKind::StreamError,
        ),
        (
            FaultSettings {
                drop_connection: Some(1.0),
                ..Default::default()
            },
            ErrorKind::BrokenStream,
        ),
        (
            FaultSettings {
                failed_load: Some(1.0),
                ..Default::default()
            },
            ErrorKind::Http,
        ),
    ];
    for (faults, kind) in cases {
        let (sim, client) = start(faulty(faults.clone())).await;
        let ex = client
            .generate(&prompt_req(SMALL, Some(json!("1s")), 8), LIMIT)
            .await;
        let err = ex
            .error
            .unwrap_or_else(|| panic!("{faults:?} gave no error"));
        assert_eq!(err.kind(), kind, "{faults:?}: {err}");
        if kind == ErrorKind::StreamError || kind == ErrorKind::BrokenStream {
            assert_eq!(ex.status, Some(200), "M9: status stays 200");
        }
        if faults.failed_load.is_some() {
            assert_eq!(err.status(), Some(500));
            assert!(
                client.ps().await.unwrap().models.is_empty(),
                "L9: nothing stays"
            );
        }
        sim.shutdown().await;
    }

    // A slow stream under a tight timeout: the client gives up.
    let (sim, client) = start(faulty(FaultSettings {
        slow_stream: Some(1.0),
        slow_factor: Some(50.0),
        ..Default::default()
    }))
    .await;
    let ex = client
        .generate(
            &prompt_req(SMALL, Some(json!("1s")), 20),
            Some(Duration::from_millis(300)),
        )
        .await;
    assert_eq!(ex.error.map(|e| e.kind()), Some(ErrorKind::Timeout));
    assert!(
        ex.first_token_at.is_some(),
        "tokens came before the timeout"
    );
    sim.shutdown().await;

    // A stalled load under a tight timeout: the client gives up before the first byte,
    // and the abandoned load leaves nothing resident (L4).
    let (sim, client) = start(faulty(FaultSettings {
        stalled_load: Some(1.0),
        ..Default::default()
    }))
    .await;
    let ex = client
        .generate(
            &prompt_req(SMALL, Some(json!("10s")), 2),
            Some(Duration::from_millis(50)),
        )
        .await;
    assert_eq!(ex.error.map(|e| e.kind()), Some(ErrorKind::Timeout));
    assert_eq!(ex.first_byte_at, None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        client.ps().await.unwrap().models.is_empty(),
        "L4: abandoned load"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn ka2_numbers_past_a_go_duration_are_taken_and_unload_when_idle_as_on_ollama() {
    // Ollama v0.32.15 answers these 200 (its conversion to nanoseconds overflows into
    // a negative duration) and unloads the model as soon as the request ends; an
    // empty prompt loads (it is not the exact zero of an unload request).
    let (sim, client) = start(SimSettings::for_tests()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = sim.base_url();
    for (path, body, reason) in [
        (
            "generate",
            json!({"model": SMALL, "prompt": "x", "stream": false, "keep_alive": 1e20, "options": {"num_predict": 1}}),
            Some("length"),
        ),
        (
            "generate",
            json!({"model": SMALL, "prompt": "x", "stream": false, "keep_alive": 1.7e308, "options": {"num_predict": 1}}),
            Some("length"),
        ),
        (
            "generate",
            json!({"model": SMALL, "prompt": "x", "stream": false, "keep_alive": 9.3e9, "options": {"num_predict": 1}}),
            Some("length"),
        ),
        (
            "generate",
            json!({"model": SMALL, "keep_alive": 1e20}),
            Some("load"),
        ),
        (
            "chat",
            json!({"model": SMALL, "stream": false, "messages": [{"role": "user", "content": "x"}], "keep_alive": 1e300, "options": {"num_predict": 1}}),
            Some("length"),
        ),
        (
            "embed",
            json!({"model": EMBED, "input": "x", "keep_alive": 1e20}),
            None,
        ),
    ] {
        let r = http
            .post(format!("{base}/api/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} {body}: no answer: {e}"));
        assert_eq!(r.status(), 200, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        if let Some(reason) = reason {
            assert_eq!(v["done_reason"], reason, "{path} {body}: {v}");
        }
        assert!(
            wait_until_empty(&client, Duration::from_secs(2)).await,
            "{path} {body}: unloaded as soon as idle"
        );
    }
    // A duration string past the longest Go duration stays a 400 (KA4), never a
    // dropped connection.
    let r = http
        .post(format!("{base}/api/generate"))
        .json(&json!({"model": SMALL, "prompt": "x", "keep_alive": "9999999999999999h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "time: invalid duration \"9999999999999999h\"");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_3_mb_image_is_accepted_as_ollama_accepts_it() {
    let (sim, _client) = start(SimSettings::for_tests()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = sim.base_url();
    // A 3 MB image in base64 (4 MB on the wire), as a vision client sends it.
    let image = "A".repeat(4 * 1024 * 1024);
    let r = http
        .post(format!("{base}/api/generate"))
        .json(&json!({
            "model": "llava:7b", "prompt": "what is this?", "images": [image],
            "stream": false, "keep_alive": 0, "options": {"num_predict": 2, "num_ctx": 2048}
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"done\":true"), "{text}");
    sim.shutdown().await;
}

/// `[sim.faults] finish_lag`: after a reply, a model that idled before shows its stale
/// expiry (P4, busy after idling) until the scheduler hears of the end, and then
/// expires its keep_alive after that, not after the reply.
#[tokio::test]
async fn with_a_finish_lag_the_new_expiry_starts_when_the_scheduler_hears_of_the_end() {
    let lag = Duration::from_millis(800);
    let (sim, client) = start(SimSettings {
        faults: FaultSettings {
            finish_lag: Some("800ms".into()),
            ..Default::default()
        },
        ..SimSettings::for_tests()
    })
    .await;
    let first = client
        .generate(&prompt_req(SMALL, Some(json!("30s")), 1), LIMIT)
        .await;
    assert!(first.error.is_none(), "{:?}", first.error);
    tokio::time::sleep(lag * 2).await;
    let stale = client.ps().await.unwrap().models[0].expires_at.clone();
    let ex = client
        .generate(&prompt_req(SMALL, Some(json!(7)), 1), LIMIT)
        .await;
    assert!(ex.error.is_none(), "{:?}", ex.error);
    let replied = Instant::now();
    let right_after = client.ps().await.unwrap().models[0].expires_at.clone();
    assert_eq!(right_after, stale, "the end is not heard yet");
    tokio::time::sleep(lag + Duration::from_millis(400)).await;
    let models = client.ps().await.unwrap().models;
    let left = expires_in(&models[0].expires_at) + replied.elapsed().as_secs_f64();
    // Timed from the reply: 7 s plus the lag.
    assert!((left - 7.8).abs() < 0.3, "{left}");
    sim.shutdown().await;
}
