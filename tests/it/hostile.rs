//! The real binary against small hostile servers on loopback: a server that redirects,
//! one that answers `/api/version` but is not Ollama. Each test starts its own server
//! on 127.0.0.1:0 and stops with the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/run")
        .join(name)
        .display()
        .to_string()
}

async fn serve(app: Router) -> SocketAddr {
    serve_at(|_| app).await
}

/// Serves the app `make` builds for the address it gets.
async fn serve_at(make: impl FnOnce(SocketAddr) -> Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = make(addr);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `kabench run fast-sim.toml --target URL` in a blocking thread: (exit code, stderr).
async fn run_against(addr: SocketAddr) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kabench"))
            .args(["run", &fixture("fast-sim.toml"), "--quiet", "--no-prewarm"])
            .arg("--target")
            .arg(format!("http://{addr}"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_error_naming_status_and_location_never_followed() {
    // /api/version answers; every other request is redirected to /moved, which answers
    // 404 to a GET: a client that followed the 302 would report "not installed".
    let addr = serve_at(|addr| {
        let moved = format!("http://{addr}/moved");
        Router::new()
            .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
            .route(
                "/moved",
                get(|| async { (StatusCode::NOT_FOUND, r#"{"error":"model 'x' not found"}"#) }),
            )
            .fallback(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, moved)], "").into_response()
            })
    })
    .await;
    let (code, stderr) = run_against(addr).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("HTTP 302"), "{stderr}");
    assert!(
        stderr.contains(&format!("redirect to http://{addr}/moved")),
        "{stderr}"
    );
    assert!(!stderr.contains("not installed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_ollama_is_named_so_not_unreachable() {
    for body in [
        "<html><body>router admin</body></html>",
        r#"{"name":"some other api"}"#,
    ] {
        let app = Router::new().fallback(move || async move { body });
        let addr = serve(app).await;
        let (code, stderr) = run_against(addr).await;
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains("answered GET /api/version but is not Ollama"),
            "{stderr}"
        );
        assert!(!stderr.contains("cannot reach"), "{stderr}");
    }
}

/// A scenario of one generate request to model `m`, with `extra` lines in `[run]`.
fn one_request_scenario(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("one.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"one\"\n[[stream]]\nname = \"s\"\nmodel = \"m\"\nprompt_tokens = 4\nmax_tokens = 4\n\
             arrival = {{ kind = \"constant\", rate = \"1/s\" }}\n[run]\nrequests = 1\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// The Ollama endpoints a run needs before its first request (version, show, ps).
fn ollama_basics() -> Router {
    Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route("/api/show", axum::routing::post(|| async { "{}" }))
        .route("/api/ps", get(|| async { r#"{"models":[]}"# }))
}

/// Waits for `child` to exit, at most `limit`.
async fn wait_child(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    None
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_streaming_keeps_what_was_measured() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // The answer starts (200, one token) and then stalls forever.
    let streaming = Arc::new(AtomicBool::new(false));
    let flag = streaming.clone();
    let app = ollama_basics().route(
        "/api/generate",
        axum::routing::post(move || {
            let flag = flag.clone();
            async move {
                let first = futures_util::stream::once(async move {
                    flag.store(true, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(
                        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n",
                    ))
                });
                let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
                axum::body::Body::from_stream(body)
            }
        }),
    );
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(tmp.path(), "timeout = \"60s\"\ngrace = \"200ms\"\n");
    let out = tmp.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kabench"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--no-prewarm"])
        .arg("--target")
        .arg(format!("http://{addr}"))
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !streaming.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let code = wait_child(&mut child, std::time::Duration::from_secs(20)).await;
    assert_eq!(code, Some(130));
    let mut reader = csv::Reader::from_path(out.join("requests.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let get = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].to_string();
    assert_eq!(get("error"), "cancelled");
    assert_eq!(get("status"), "200");
    for measured in ["sent_ms", "first_byte_ms", "first_token_ms"] {
        assert!(
            get(measured).parse::<f64>().is_ok(),
            "{measured} lost: {:?}",
            rows[0]
        );
    }
}

/// Runs `kabench run SCENARIO --target ADDR --out OUT --quiet [extra]` as a child.
fn spawn_run(scenario: &Path, addr: SocketAddr, out: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kabench"))
        .args(["run", scenario.to_str().unwrap(), "--quiet"])
        .args(extra)
        .arg("--target")
        .arg(format!("http://{addr}"))
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut text);
    }
    text
}

/// A one-token streamed answer, or the reply to an empty-prompt load/unload.
fn generate_reply(body: &serde_json::Value) -> String {
    let unload = body["keep_alive"] == 0;
    if body.get("prompt").is_none_or(|p| p.as_str() == Some("")) {
        let reason = if unload { "unload" } else { "load" };
        format!(
            "{{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"{reason}\"}}\n"
        )
    } else {
        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":1}\n".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ps_listing_150_000_models_is_unloaded_once_per_model_and_sampled_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // 150 000 entries of three models that never leave.
    let entries: Vec<String> = (0..150_000)
        .map(|i| {
            format!(
                r#"{{"name":"m{0}","model":"m{0}","size":1000,"size_vram":1000,"digest":"","details":{{}},"expires_at":"2099-01-01T00:00:00Z"}}"#,
                i % 3
            )
        })
        .collect();
    let ps = axum::body::Bytes::from(format!("{{\"models\":[{}]}}", entries.join(",")));
    let unloads = Arc::new(AtomicUsize::new(0));
    let counter = unloads.clone();
    let app = Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route("/api/show", axum::routing::post(|| async { "{}" }))
        .route("/api/ps", get(move || async move { ps.clone() }))
        .route(
            "/api/generate",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let counter = counter.clone();
                async move {
                    if body["keep_alive"] == 0 {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    generate_reply(&body)
                }
            }),
        );
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(
        tmp.path(),
        "timeout = \"10s\"\nunload_timeout = \"3s\"\n[telemetry]\nsources = [\"ollama_ps\"]\nps_interval = \"200ms\"\n",
    );
    let out = tmp.path().join("run");
    let started = std::time::Instant::now();
    let mut child = spawn_run(&scenario, addr, &out, &["--no-prewarm"]);
    let code = wait_child(&mut child, std::time::Duration::from_secs(120)).await;
    let stderr = stderr_of(&mut child);
    assert!(code.is_some(), "the run did not end: {stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{stderr}"
    );
    // One unload per distinct model, not one per entry and round.
    assert_eq!(unloads.load(Ordering::SeqCst), 3, "{stderr}");
    // vram.csv: at most 64 model rows per sample, plus the total of all 150 000.
    let mut reader = csv::Reader::from_path(out.join("vram.csv")).unwrap();
    let mut per_sample: std::collections::BTreeMap<String, usize> = Default::default();
    let mut totals = 0;
    for row in reader.records() {
        let row = row.unwrap();
        if row[3].is_empty() {
            totals += 1;
            assert!(row[6].starts_with("models=150000"), "{row:?}");
        } else {
            *per_sample.entry(row[0].to_string()).or_default() += 1;
        }
    }
    assert!(totals > 0, "{stderr}");
    assert!(per_sample.values().all(|n| *n <= 64), "{per_sample:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_a_load_cannot_hang_prewarm_unload_or_ctrl_c() {
    // /api/ps lists a model forever; every /api/generate (load, unload, request) hangs.
    let app = Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route("/api/show", axum::routing::post(|| async { "{}" }))
        .route(
            "/api/ps",
            get(|| async {
                r#"{"models":[{"name":"m","model":"m","size":1,"size_vram":1,"digest":"","details":{},"expires_at":"2099-01-01T00:00:00Z"}]}"#
            }),
        )
        .route(
            "/api/generate",
            axum::routing::post(std::future::pending::<&'static str>),
        );
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(
        tmp.path(),
        "timeout = \"2s\"\nunload_timeout = \"1s\"\ngrace = \"200ms\"\n",
    );
    // With prewarm, to the end: every call is bounded by its timeout.
    let out = tmp.path().join("bounded");
    let started = std::time::Instant::now();
    let mut child = spawn_run(&scenario, addr, &out, &[]);
    let code = wait_child(&mut child, std::time::Duration::from_secs(60)).await;
    let stderr = stderr_of(&mut child);
    assert!(code.is_some(), "the run hung: {stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{stderr}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete", "{stderr}");
    // Ctrl-C during the prewarm's hung load ends the run at once.
    let out = tmp.path().join("interrupted");
    let scenario = one_request_scenario(
        tmp.path(),
        "timeout = \"600s\"\nunload_timeout = \"600s\"\ngrace = \"200ms\"\n",
    );
    let mut child = spawn_run(&scenario, addr, &out, &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let signalled = std::time::Instant::now();
    let code = wait_child(&mut child, std::time::Duration::from_secs(30)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(5),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_users_do_not_follow_redirects_either() {
    // Every generate is redirected to /moved, which answers 404 to a GET: a user that
    // followed the 302 would record "model not found".
    let addr = serve_at(|addr| {
        let moved = format!("http://{addr}/moved");
        Router::new()
            .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
            .route("/api/show", axum::routing::post(|| async { "{}" }))
            .route("/api/ps", get(|| async { r#"{"models":[]}"# }))
            .route(
                "/moved",
                get(|| async { (StatusCode::NOT_FOUND, r#"{"error":"model 'm' not found"}"#) }),
            )
            .route(
                "/api/generate",
                axum::routing::post(move || async move {
                    (StatusCode::FOUND, [(header::LOCATION, moved)], "").into_response()
                }),
            )
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(
        tmp.path(),
        "timeout = \"5s\"\n[swarm]\nusers = 1\nhatch_rate = 10.0\nthink_time = { min = \"100ms\", max = \"200ms\" }\nrun_time = \"1s\"\n",
    );
    let out = tmp.path().join("run");
    let output = tokio::task::spawn_blocking(move || {
        let o = Command::new(env!("CARGO_BIN_EXE_kabench"))
            .args(["swarm", scenario.to_str().unwrap(), "--quiet"])
            .arg("--target")
            .arg(format!("http://{addr}"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (o, out)
    })
    .await
    .unwrap();
    let (o, out) = output;
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut reader = csv::Reader::from_path(out.join("requests.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let answered: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("error")] != "cancelled")
        .collect();
    assert!(!answered.is_empty(), "{stderr}");
    for row in answered {
        assert_eq!(&row[col("status")], "302", "{row:?}");
        assert!(
            row[col("error_detail")].contains(&format!("redirect to http://{addr}/moved")),
            "{row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_ps_that_never_answers_cannot_hold_up_the_requests() {
    // /api/ps hangs; generate answers at once. Residency comes from one watcher per cell,
    // never a /api/ps call each request waits for: the rows record it as unknown.
    let app = Router::new()
        .route("/api/version", get(|| async { r#"{"version":"0.32.15"}"# }))
        .route("/api/show", axum::routing::post(|| async { "{}" }))
        .route("/api/ps", get(std::future::pending::<&'static str>))
        .route(
            "/api/generate",
            axum::routing::post(|body: axum::Json<serde_json::Value>| async move {
                generate_reply(&body.0)
            }),
        );
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = one_request_scenario(
        tmp.path(),
        "timeout = \"4s\"\nunload_timeout = \"1s\"\ngrace = \"200ms\"\n",
    );
    let text = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("requests = 1", "requests = 3");
    std::fs::write(&scenario, text).unwrap();
    let out = tmp.path().join("run");
    let started = std::time::Instant::now();
    let mut child = spawn_run(&scenario, addr, &out, &["--no-prewarm"]);
    let code = wait_child(&mut child, std::time::Duration::from_secs(120)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "a hung /api/ps held the run {:?}: {stderr}",
        started.elapsed()
    );
    let mut rows = csv::Reader::from_path(out.join("requests.csv")).unwrap();
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(&r[col("error")], "", "{r:?}");
        assert_eq!(
            &r[col("resident_before")],
            "",
            "unknown, not guessed: {r:?}"
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_the_target_checking_and_pulling_models_are_bounded_and_stop_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let quick = one_request_scenario(tmp.path(), "timeout = \"2s\"\n");
    let ok_version = || async { r#"{"version":"0.32.15"}"# };

    // /api/version never answers: the run's 2 s timeout ends it, not a 60 s default.
    let addr =
        serve(Router::new().route("/api/version", get(std::future::pending::<&'static str>))).await;
    let started = std::time::Instant::now();
    let mut child = spawn_run(&quick, addr, &tmp.path().join("a"), &["--no-prewarm"]);
    let code = wait_child(&mut child, std::time::Duration::from_secs(40)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}: {stderr}",
        started.elapsed()
    );
    assert!(stderr.contains("no reply within 2s"), "{stderr}");

    // --pull: the model is missing and the pull reports once, then stalls: it fails
    // after the run's timeout without progress, naming what to do.
    let stalled = Router::new()
        .route("/api/version", get(ok_version))
        .route(
            "/api/show",
            axum::routing::post(|| async {
                (StatusCode::NOT_FOUND, r#"{"error":"model 'm' not found"}"#)
            }),
        )
        .route(
            "/api/pull",
            axum::routing::post(|| async {
                use futures_util::StreamExt;
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"{\"status\":\"pulling manifest\"}\n",
                    ))
                });
                axum::body::Body::from_stream(first.chain(futures_util::stream::pending()))
            }),
        );
    let addr = serve(stalled).await;
    let started = std::time::Instant::now();
    let mut child = spawn_run(
        &quick,
        addr,
        &tmp.path().join("b"),
        &["--no-prewarm", "--pull"],
    );
    let code = wait_child(&mut child, std::time::Duration::from_secs(40)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}: {stderr}",
        started.elapsed()
    );
    assert!(stderr.contains("pulling m"), "{stderr}");
    assert!(stderr.contains("no progress from the server"), "{stderr}");

    // /api/show never answers and the timeout is long: Ctrl-C ends it at once, 130.
    let slow = one_request_scenario(tmp.path(), "timeout = \"600s\"\n");
    let addr = serve(Router::new().route("/api/version", get(ok_version)).route(
        "/api/show",
        axum::routing::post(std::future::pending::<&'static str>),
    ))
    .await;
    let mut child = spawn_run(&slow, addr, &tmp.path().join("c"), &["--no-prewarm"]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let signalled = std::time::Instant::now();
    let code = wait_child(&mut child, std::time::Duration::from_secs(30)).await;
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(5),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupted while asking about model m"),
        "{stderr}"
    );
    assert!(!tmp.path().join("c").join("requests.csv").exists());
}
