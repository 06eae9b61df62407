//! The real binary's Ollama client, `kabench doctor` and `kabench plan` against small
//! hostile servers on loopback: a stream line without end, a body without end, a
//! redirect, a `created_at` in 9999, a server that never answers, absurd sizes and
//! layer counts, and model names with escape sequences. Each test starts its own
//! server on 127.0.0.1:0 and stops with the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::common::{read_json, request_rows};

/// Serves `app` on a free loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `kabench ARGS` in a blocking thread, killed after `limit`: its output and how long
/// it took.
async fn kabench(args: Vec<String>, limit: Duration) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kabench"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        (out, start.elapsed())
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A body of `total` bytes of `x` and then nothing more, never ending.
fn endless_line(total: usize) -> Body {
    let pieces = futures_util::stream::iter(
        (0..total / 65_536).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 65_536]))),
    );
    Body::from_stream(futures_util::StreamExt::chain(
        pieces,
        futures_util::stream::pending(),
    ))
}

/// A scenario of one generate request to model `m`.
fn one_request_scenario(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("one.toml");
    std::fs::write(
        &path,
        "name = \"one\"\n[[stream]]\nname = \"s\"\nmodel = \"m\"\nprompt_tokens = 4\nmax_tokens = 4\n\
         arrival = { kind = \"constant\", rate = \"1/s\" }\n[run]\nrequests = 1\ntimeout = \"60s\"\n",
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_line_without_end_is_an_error_row_and_the_run_ends() {
    // 4 MiB of one line, no newline, and then the stream stalls: only the line limit
    // (1 MiB) can end the request before its 60 s timeout.
    let app = Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route("/api/show", post(|| async { "{}" }))
        .route("/api/ps", get(|| async { r#"{"models":[]}"# }))
        .route("/api/generate", post(|| async { endless_line(4 << 20) }));
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(tmp.path());
    let out = tmp.path().join("run");
    let (output, took) = kabench(
        args(&[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--no-prewarm",
            "--target",
            &format!("http://{addr}"),
            "--out",
            out.to_str().unwrap(),
        ]),
        Duration::from_secs(50),
    )
    .await;
    let stderr = text(&output.stderr);
    assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    assert!(output.status.code().is_some(), "killed: {stderr}");
    let rows = request_rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["error"], "bad_json", "{rows:?}");
    assert!(
        rows[0]["error_detail"].contains("stream line longer than 1048576 bytes"),
        "{rows:?}"
    );
    let run = read_json(&out.join("run.json"));
    assert_ne!(run["status"], "running", "{run}");
    // Nothing was written beside the run folder.
    let beside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_redirect_with_its_location_instead_of_a_verdict() {
    // Every request but /api/version is answered 307 to /elsewhere, which answers
    // "not found" to a GET: a doctor that followed it would say "not installed".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let moved = format!("http://{addr}/elsewhere");
    let app = Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route(
            "/elsewhere",
            get(|| async { (StatusCode::NOT_FOUND, r#"{"error":"model 'm' not found"}"#) }),
        )
        .fallback(move || async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, moved)],
                "",
            )
                .into_response()
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (output, _) = kabench(
        args(&[
            "doctor",
            "--target",
            &format!("http://{addr}"),
            "--model",
            "m",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HTTP 307"), "{stderr}");
    assert!(
        stderr.contains(&format!("redirect to http://{addr}/elsewhere")),
        "{stderr}"
    );
    assert!(stderr.contains("does not follow redirects"), "{stderr}");
    assert!(stderr.contains("--target"), "{stderr}");
    assert!(!stderr.contains("not installed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_a_body_without_end() {
    let app = Router::new().route("/api/version", get(|| async { endless_line(32 << 20) }));
    let addr = serve(app).await;
    let (output, took) = kabench(
        args(&[
            "doctor",
            "--target",
            &format!("http://{addr}"),
            "--model",
            "m",
        ]),
        Duration::from_secs(40),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(
        stderr.contains("longer than 16777216 bytes (the doctor's body limit)"),
        "{stderr}"
    );
}

/// A model name with a terminal escape (a title change) and a NUL.
const ODD_NAME: &str = "m\u{1b}]0;owned\u{7}\u{0}:latest";

/// What the stateful fake holds: the resident models (name, num_ctx) and every
/// request body seen.
#[derive(Default)]
struct Fake {
    resident: Vec<(String, u64)>,
    seen: Vec<(String, Value)>,
}

/// An Ollama of one model slot whose replies carry `created_at` at the last instant of
/// 9999 (any later clock reading overflows the calendar): a load
/// evicts whatever was resident, keep_alive 0 unloads.
/// With `chat_without_end`, `/api/chat` answers a body that never ends (past the
/// doctor's body limit), which ends the probes with an error.
fn far_future_ollama(state: Arc<Mutex<Fake>>, chat_without_end: bool) -> Router {
    let ps_state = state.clone();
    let load = move |path: &'static str| {
        let state = state.clone();
        post(move |body: axum::Json<Value>| {
            let state = state.clone();
            async move {
                let body = body.0;
                let model = body["model"].as_str().unwrap_or("").to_string();
                let mut s = state.lock().unwrap();
                s.seen.push((path.to_string(), body.clone()));
                let unload = body["keep_alive"] == json!(0) || body["keep_alive"] == json!("0");
                s.resident.retain(|(m, _)| unload && *m != model);
                if !unload {
                    let ctx = body["options"]["num_ctx"].as_u64().unwrap_or(4096);
                    s.resident = vec![(model.clone(), ctx)];
                }
                axum::Json(json!({
                    "model": model, "created_at": "9999-12-31T23:59:59.999999999Z",
                    "response": "", "message": {"role": "assistant", "content": ""},
                    "choices": [], "done": true, "done_reason": if unload { "unload" } else { "stop" },
                    "load_duration": 200_000_000u64
                }))
            }
        })
    };
    Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route(
            "/api/tags",
            get(|| async { axum::Json(json!({"models": [{"name": ODD_NAME, "size": 1000}]})) }),
        )
        .route(
            "/api/show",
            post(|| async { r#"{"capabilities":["completion"],"model_info":{}}"# }),
        )
        .route(
            "/api/ps",
            get(move || {
                let s = ps_state.lock().unwrap();
                let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
                let expires = expires
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                let models: Vec<Value> = s
                    .resident
                    .iter()
                    .map(|(m, ctx)| {
                        json!({"name": m, "model": m, "size": 1000, "size_vram": 1000,
                               "expires_at": expires, "context_length": ctx})
                    })
                    .collect();
                async move { axum::Json(json!({ "models": models })) }
            }),
        )
        .route("/api/generate", load("/api/generate"))
        .route(
            "/api/chat",
            if chat_without_end {
                post(|| async { endless_line(20 << 20) })
            } else {
                load("/api/chat")
            },
        )
        .route("/v1/chat/completions", load("/v1/chat/completions"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_survives_a_created_at_in_9999_and_restores_what_it_moved() {
    let state = Arc::new(Mutex::new(Fake {
        resident: vec![("other:latest".into(), 2048)],
        seen: Vec::new(),
    }));
    let addr = serve(far_future_ollama(state.clone(), false)).await;
    // The only model installed (the one probed) has a terminal escape (a title
    // change) and a NUL in its name; the probes evict the model loaded before.
    let (output, took) = kabench(
        args(&[
            "doctor",
            "--allow-evict",
            "--target",
            &format!("http://{addr}"),
        ]),
        Duration::from_secs(60),
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{:?}: {stderr}",
        output.status
    );
    // No control character from the name reached the terminal; the name is shown escaped.
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{0}'),
        "{stdout:?}"
    );
    assert!(stdout.contains("\\u{1b}"), "{stdout}");
    assert!(
        stdout.contains("restored: other:latest: loaded again"),
        "{stdout}"
    );
    let s = state.lock().unwrap();
    assert_eq!(
        s.resident,
        vec![("other:latest".to_string(), 2048)],
        "{stdout}"
    );
    let last = &s.seen.last().unwrap().1;
    assert_eq!(last["model"], "other:latest");
    assert_eq!(last["options"]["num_ctx"], 2048);
}

/// A server that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_a_server_that_never_answers_stops_at_its_timeout() {
    let addr = silent_server().await;
    let (output, took) = kabench(
        args(&[
            "plan",
            "--models",
            "m",
            "--target",
            &format!("http://{addr}"),
            "--timeout",
            "1s",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(
        stderr.contains("did not answer /api/tags within 1s"),
        "{stderr}"
    );
}

/// `/api/show` of a llama with `layers` layers, `/api/tags` listing `m` at
/// `file_bytes`, a load that answers after `load_delay`, `/api/ps` listing `m`.
fn plan_server(layers: u64, file_bytes: u64, load_delay: Duration) -> Router {
    Router::new()
        .route(
            "/api/tags",
            get(move || async move {
                axum::Json(json!({"models": [{"name": "m:latest", "model": "m:latest",
                    "size": file_bytes, "digest": "d", "modified_at": "2026-01-01T00:00:00Z",
                    "details": {}}]}))
            }),
        )
        .route(
            "/api/show",
            post(move || async move {
                axum::Json(json!({
                    "capabilities": ["completion"],
                    "details": {"parameter_size": "1B", "quantization_level": "Q4_0"},
                    "model_info": {"general.architecture": "llama",
                        "llama.block_count": layers, "llama.attention.head_count": 8,
                        "llama.attention.head_count_kv": 8, "llama.embedding_length": 512,
                        "llama.context_length": 4096}
                }))
            }),
        )
        .route(
            "/api/generate",
            post(move || async move {
                tokio::time::sleep(load_delay).await;
                r#"{"model":"m:latest","response":"","done":true,"done_reason":"load"}"#
            }),
        )
        .route(
            "/api/ps",
            get(|| async {
                r#"{"models":[{"name":"m:latest","model":"m:latest","digest":"d","details":{},"size":400000000,"size_vram":400000000,"expires_at":"2099-01-01T00:00:00Z","context_length":2048}]}"#
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_stops_at_its_timeout_on_a_load_that_never_ends() {
    let addr = serve(plan_server(8, 100_000_000, Duration::from_secs(3600))).await;
    let (output, took) = kabench(
        args(&[
            "plan",
            "--models",
            "m",
            "--num-ctx",
            "2048",
            "--target",
            &format!("http://{addr}"),
            "--timeout",
            "1s",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        stderr.contains(&format!(
            "http://{addr} did not answer a load of m at num_ctx 2048 within 1s"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_a_model_of_2_to_the_40_layers_naming_the_field() {
    let addr = serve(plan_server(1 << 40, 100_000_000, Duration::ZERO)).await;
    let (output, _) = kabench(
        args(&[
            "plan",
            "--models",
            "m",
            "--num-ctx",
            "2048",
            "--target",
            &format!("http://{addr}"),
        ]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("llama.block_count"), "{stderr}");
    assert!(stderr.contains("1099511627776"), "{stderr}");
    assert!(stderr.contains("limit of 65536"), "{stderr}");
    assert!(text(&output.stdout).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_absurd_sizes_and_flags_naming_them() {
    // A file size of 2^64-1 bytes from /api/tags.
    let addr = serve(plan_server(8, u64::MAX, Duration::ZERO)).await;
    let (output, _) = kabench(
        args(&[
            "plan",
            "--models",
            "m",
            "--target",
            &format!("http://{addr}"),
        ]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/api/tags size of m"), "{stderr}");
    // --vram of 2^64-1 bytes, and a --gpus, --num-ctx and --parallel past their limits.
    for (flag, value, limit) in [
        ("--vram", "18446744073709551615B", "1125899906842624"),
        ("--gpus", "4294967295", "1024"),
        ("--num-ctx", "4294967295", "16777216"),
        ("--parallel", "100000", "1024"),
    ] {
        let (output, _) = kabench(
            args(&["plan", "--models", "qwen2.5:7b", flag, value]),
            Duration::from_secs(30),
        )
        .await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("limit of {limit}")),
            "{flag}: {stderr}"
        );
        assert!(!text(&output.stdout).contains("fits"), "{flag}");
    }
    // A zero --timeout would fail every call at once: refused as a usage error.
    let (output, _) = kabench(
        args(&["plan", "--models", "qwen2.5:7b", "--timeout", "0s"]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--timeout") && stderr.contains("longer than 0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_a_model_name_with_an_escape_sequence_escaped() {
    let addr = serve(plan_server(8, 100_000_000, Duration::ZERO)).await;
    let name = "m\u{1b}[2J";
    let (output, _) = kabench(
        args(&[
            "plan",
            "--models",
            name,
            "--num-ctx",
            "2048",
            "--target",
            &format!("http://{addr}"),
        ]),
        Duration::from_secs(30),
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "{stdout:?} {stderr:?}"
    );
    assert!(stdout.contains("m\\u{1b}[2J"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_control_reply_without_end() {
    // An /api/ps that never ends: the client stops at its body limit (64 MiB) instead
    // of buffering until the control-call timeout.
    let app = Router::new().route("/api/ps", get(|| async { endless_line(80 << 20) }));
    let addr = serve(app).await;
    let client = kabench::ollama::OllamaClient::new(&format!("http://{addr}")).unwrap();
    let started = Instant::now();
    let err = client.ps().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.to_string().contains("longer than 67108864 bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_restores_what_it_moved_when_the_probes_end_on_an_error() {
    let state = Arc::new(Mutex::new(Fake {
        resident: vec![("other:latest".into(), 2048)],
        seen: Vec::new(),
    }));
    let addr = serve(far_future_ollama(state.clone(), true)).await;
    let (output, took) = kabench(
        args(&[
            "doctor",
            "--json",
            "--allow-evict",
            "--target",
            &format!("http://{addr}"),
        ]),
        Duration::from_secs(60),
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    let error = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "probe.error")
        .unwrap_or_else(|| panic!("no probe.error row: {stdout}"));
    assert!(
        error["evidence"]
            .as_str()
            .unwrap()
            .contains("16777216 bytes (the doctor's body limit)"),
        "{error}"
    );
    let restored = report["restored"].to_string();
    assert!(
        restored.contains("other:latest: loaded again"),
        "{restored}"
    );
    let s = state.lock().unwrap();
    assert_eq!(s.resident, vec![("other:latest".to_string(), 2048)]);
}
