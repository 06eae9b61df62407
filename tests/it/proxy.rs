//! `kabench proxy`: bytes, status and headers pass unchanged and streams are forwarded
//! as they arrive (a scripted upstream), the request log and the first-time warnings
//! (the simulator, and the real Ollama where available), `/metrics`, and bad input: an
//! upstream that is down (502, logged, the proxy keeps serving), a client that leaves
//! mid-stream (the upstream request is cancelled, the row says so), a malformed body
//! (passed through, logged as such). The official Python client runs through it when
//! the `ollama` package is installed.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{RealOllama, SimServer};
use kabench::proxy::{self, ProxyConfig, ProxyHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Held by the load test and the real-server tests, so the load does not starve the
/// real server's timings.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The NDJSON body the scripted upstream streams, one line per chunk.
const LINES: [&str; 5] = [
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\",\"response\":\"a\",\"done\":false}\n",
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00.1Z\",\"response\":\" b\",\"done\":false}\n",
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00.2Z\",\"response\":\" ü\",\"done\":false}\n",
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00.3Z\",\"response\":\"\",\"done\":false}\n",
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00.4Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"load_duration\":350000000,\"eval_count\":3}\n",
];

/// A scripted upstream: answers every request with `LINES`, one chunk each `gap`
/// apart, and a custom header; sets `gone` when a write fails (the reader left).
async fn scripted(gap: Duration, gone: Arc<AtomicBool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let gone = gone.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                let mut body = vec![0u8; len];
                let _ = sock.read_exact(&mut body).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nX-Upstream: scripted\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                for line in LINES {
                    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                    if sock.write_all(chunk.as_bytes()).await.is_err()
                        || sock.flush().await.is_err()
                    {
                        gone.store(true, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(gap).await;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

async fn start_proxy(upstream: &str, out: &Path) -> ProxyHandle {
    proxy::spawn(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.into(),
        out: out.into(),
        rewrite_keep_alive: None,
        quiet: true,
    })
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Status, content type and every chunk with its arrival time.
async fn chunks(
    url: &str,
    body: &Value,
) -> (u16, String, Option<String>, Vec<(Duration, Vec<u8>)>) {
    let start = Instant::now();
    let mut resp = http().post(url).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    let custom = resp
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string());
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.push((start.elapsed(), c.to_vec()));
    }
    (status, ctype, custom, out)
}

fn rows(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    rows_of(dir, "proxy-requests.csv")
}

fn rows_of(dir: &Path, file: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join(file)).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|x| {
            header
                .iter()
                .cloned()
                .zip(x.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_proxied_stream_has_the_same_bytes_and_arrives_chunk_by_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let gap = Duration::from_millis(150);
    let upstream = scripted(gap, Arc::new(AtomicBool::new(false))).await;
    let proxy = start_proxy(&format!("http://{upstream}"), dir.path()).await;
    let body = json!({"model": "m", "prompt": "hi"});
    let direct = chunks(&format!("http://{upstream}/api/generate"), &body).await;
    let proxied = chunks(&format!("{}/api/generate", proxy.base_url()), &body).await;
    let bytes =
        |c: &[(Duration, Vec<u8>)]| c.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<u8>>();
    assert_eq!(bytes(&proxied.3), bytes(&direct.3), "byte for byte");
    assert_eq!(bytes(&proxied.3), LINES.concat().into_bytes());
    assert_eq!(
        (proxied.0, &proxied.1, &proxied.2),
        (direct.0, &direct.1, &direct.2)
    );
    // No buffering: each line arrives on its own, about one gap after the one before.
    assert_eq!(proxied.3.len(), LINES.len(), "{:?}", proxied.3);
    let first = proxied.3[0].0;
    let last = proxied.3[LINES.len() - 1].0;
    assert!(first < gap, "first chunk after {first:?}");
    assert!(
        last - first >= gap * 3,
        "chunks spread over {:?}",
        last - first
    );
    let stats = proxy.shutdown(Duration::from_secs(2)).await;
    assert_eq!(stats.rows, 1);
    let row = &rows(dir.path())[0];
    assert_eq!(row["outcome"], "ok");
    assert_eq!(row["cold"], "true");
    assert_eq!(row["load_duration_ms"].parse::<f64>().unwrap(), 350.0);
    assert_eq!(row["bytes"], LINES.concat().len().to_string());
    let ttft: f64 = row["ttft_ms"].parse().unwrap();
    let e2e: f64 = row["e2e_ms"].parse().unwrap();
    assert!(
        ttft < e2e && e2e >= (gap * 4).as_secs_f64() * 1000.0,
        "{row:?}"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request_and_the_row_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let gone = Arc::new(AtomicBool::new(false));
    let upstream = scripted(Duration::from_millis(300), gone.clone()).await;
    let proxy = start_proxy(&format!("http://{upstream}"), dir.path()).await;
    let mut resp = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .json(&json!({"model": "m", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let start = Instant::now();
    while !gone.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone.load(Ordering::SeqCst),
        "the upstream saw its reader leave"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown(Duration::from_secs(2)).await;
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "client_gone");
    assert_eq!(rows[0]["e2e_ms"], "");
}

#[tokio::test]
async fn a_client_that_stops_reading_after_the_last_line_got_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let gone = Arc::new(AtomicBool::new(false));
    // The end of the body comes a gap after the last line.
    let upstream = scripted(Duration::from_millis(300), gone.clone()).await;
    let proxy = start_proxy(&format!("http://{upstream}"), dir.path()).await;
    let mut resp = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .json(&json!({"model": "m", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    let mut body = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&c);
        if body.ends_with(LINES[LINES.len() - 1].as_bytes()) {
            break;
        }
    }
    // The whole answer is in hand: the client leaves before the end of the body.
    drop(resp);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown(Duration::from_secs(2)).await;
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "ok", "{:?}", rows[0]);
    assert_eq!(rows[0]["cold"], "true");
    assert_eq!(rows[0]["kind"], "serve");
    let e2e: f64 = rows[0]["e2e_ms"].parse().unwrap();
    assert!(
        (1200.0..1500.0).contains(&e2e),
        "the last line's time: {e2e}"
    );
}

#[tokio::test]
async fn an_upstream_that_is_down_gets_502s_logged_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let proxy = start_proxy(&format!("http://127.0.0.1:{port}"), dir.path()).await;
    for _ in 0..2 {
        let resp = http()
            .post(format!("{}/api/chat", proxy.base_url()))
            .json(&json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");
    }
    let metrics = http()
        .get(format!("{}/metrics", proxy.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kabench_proxy_upstream_errors_total 2"),
        "{metrics}"
    );
    let warnings = proxy.warnings();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
    assert!(warnings[0].contains("Ollama could not be reached"));
    proxy.shutdown(Duration::from_secs(2)).await;
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["outcome"] == "upstream_unreachable" && r["status"] == "502")
    );
}

/// The pains an app shows, through the proxy to a server: `(path, body)`.
fn pains(model: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "/api/generate",
            json!({"model": model, "prompt": "hi", "stream": false,
            "options": {"num_predict": 2, "keep_alive": "1h"}}),
        ),
        (
            "/api/chat",
            json!({"model": model, "keep_alive": "-1",
            "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": model, "max_tokens": 2, "keep_alive": "5m",
            "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/api/generate",
            json!({"model": model, "prompt": "hi", "keep_alive": "30s",
            "options": {"num_predict": 2, "num_ctx": 1024}}),
        ),
    ]
}

/// Sends `pains` directly and through the proxy; checks statuses match and the log.
async fn through(
    server: &str,
    dir: &Path,
) -> (Vec<std::collections::BTreeMap<String, String>>, Vec<String>) {
    let proxy = start_proxy(server, dir).await;
    for (path, body) in pains("tiny-50m") {
        let via = http()
            .post(format!("{}{path}", proxy.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = via.status();
        let via_length = via.headers().get("content-length").cloned();
        let text = via.text().await.unwrap();
        let direct = http()
            .post(format!("{server}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(status, direct.status(), "{path}: {text}");
        if body["stream"] == false || status == 400 {
            // A whole reply keeps its Content-Length (its value depends on the text).
            assert!(
                via_length.is_some() && direct.headers().contains_key("content-length"),
                "{path}: {via_length:?}"
            );
        }
        if status == 400 {
            assert_eq!(
                text,
                direct.text().await.unwrap(),
                "error bodies pass unchanged"
            );
        }
    }
    // A malformed body passes through to the server's own 400.
    let resp = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let warnings = proxy.warnings();
    proxy.shutdown(Duration::from_secs(2)).await;
    // The malformed body names no model: it is logged beside the model requests.
    let other = rows_of(dir, "proxy-other.csv");
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0]["note"], "malformed_body");
    assert_eq!(other[0]["status"], "400");
    (rows(dir), warnings)
}

fn check_log(rows: &[std::collections::BTreeMap<String, String>], warnings: &[String]) {
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[0]["keep_alive_placement"], "options");
    assert_eq!(
        rows[0]["keep_alive"], "",
        "ignored inside options: none applied"
    );
    assert_eq!(rows[0]["keep_alive_sent"], "\"1h\"");
    assert_eq!(rows[0]["output_tokens"], "2");
    assert_eq!(rows[0]["cold"], "true", "the first request loads");
    assert_eq!(rows[0]["model"], "tiny-50m");
    assert_eq!(rows[1]["status"], "400");
    assert!(rows[1]["note"].contains("keep_alive_string_minus_one"));
    assert_eq!(rows[2]["keep_alive_placement"], "v1_dropped");
    assert_eq!(rows[3]["num_ctx"], "1024");
    assert_eq!(rows[3]["cold"], "true", "a num_ctx change reloads");
    assert!(rows[3]["note"].contains("reload:num_ctx"), "{:?}", rows[3]);
    assert_eq!(rows[3]["keep_alive"], "30s");
    for w in [
        "inside \"options\"",
        "the string \"-1\"",
        "/v1 endpoint",
        "another num_ctx",
    ] {
        assert!(warnings.iter().any(|x| x.contains(w)), "{w}: {warnings:?}");
    }
}

#[tokio::test]
async fn the_simulator_through_the_proxy_logs_each_request_and_warns_once_per_pain() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::start(&["--gpus", "0"]);
    let (rows, warnings) = through(&sim.url, dir.path()).await;
    check_log(&rows, &warnings);
    // The log is a request log `kabench predict` reads as it is.
    let log = dir.path().join("proxy-requests.csv");
    let out = common::kabench()
        .args([
            "predict",
            "--requests",
            log.to_str().unwrap(),
            "--gpus",
            "0",
            "--no-grid",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predict: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_real_ollama_through_the_proxy_logs_each_request_and_warns_once_per_pain() {
    let _heavy = HEAVY.lock().await;
    let Some(real) = RealOllama::start("proxy", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rows, warnings) = through(&real.url, dir.path()).await;
    check_log(&rows, &warnings);
}

fn has_python_ollama() -> bool {
    let has = std::process::Command::new("python3")
        .args(["-c", "import ollama"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!("skipping: the Python ollama package is not installed (pip install ollama)");
    }
    has
}

/// The official Python client against `server`, through a proxy first (its first
/// request loads the model), then directly: the same results, one row per request
/// with the model, the keep_alive form and the cold flag, and the misplaced
/// keep_alive flagged.
fn python_through(server: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(start_proxy(server, dir.path()));
    let script = r#"
import json, sys, ollama
c = ollama.Client(host=sys.argv[1])
out = []
r = c.generate(model="tiny-50m", prompt="hi", options={"num_predict": 3}, keep_alive="10s")
out.append(r["done_reason"])
parts = [p["message"]["content"] for p in c.chat(model="tiny-50m", stream=True,
         messages=[{"role": "user", "content": "x"}], options={"num_predict": 3, "keep_alive": "1h"})]
out.append(len(parts))
print(json.dumps(out))
"#;
    let run = |url: &str| {
        let o = std::process::Command::new("python3")
            .args(["-c", script, url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let proxied = run(&proxy.base_url());
    let direct = run(server);
    assert_eq!(proxied, direct, "the client's results are unchanged");
    let warnings = proxy.warnings();
    rt.block_on(proxy.shutdown(Duration::from_secs(2)));
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["model"] == "tiny-50m" && r["outcome"] == "ok")
    );
    assert_eq!(rows[0]["keep_alive"], "10s");
    assert_eq!(rows[0]["keep_alive_sent"], "\"10s\"");
    assert_eq!(rows[0]["keep_alive_placement"], "top");
    assert_eq!(rows[0]["cold"], "true", "the first request loads");
    assert_eq!(rows[1]["keep_alive_placement"], "options");
    // The cold flag is the M6 rule on the reply's load_duration (on a starved host a
    // warm hand-over can pass 100 ms, so the flag, not a fixed value, is checked).
    for r in &rows {
        let load: f64 = r["load_duration_ms"].parse().unwrap();
        assert_eq!(r["cold"], (load >= 100.0).to_string(), "{r:?}");
    }
    assert!(warnings.iter().any(|w| w.contains("inside \"options\"")));
}

#[test]
fn the_python_ollama_client_through_the_proxy_to_the_simulator() {
    if has_python_ollama() {
        let sim = SimServer::start(&["--gpus", "0"]);
        python_through(&sim.url);
    }
}

#[test]
fn the_python_ollama_client_through_the_proxy_to_the_real_ollama() {
    let _heavy = HEAVY.blocking_lock();
    if !has_python_ollama() {
        return;
    }
    if let Some(real) = RealOllama::start("proxy-python", &[]) {
        python_through(&real.url);
    }
}

/// A fast upstream: every POST gets two NDJSON lines at once.
async fn fast_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/x-ndjson")],
            "{\"response\":\"a\",\"done\":false}\n{\"response\":\"\",\"done\":true,\"load_duration\":1000000}\n",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Open-loop load at `rate` per second for `secs` on `url`: latencies in ms, in order.
async fn load(url: &str, rate: u32, secs: u32) -> Vec<f64> {
    let client = http();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..rate * secs {
        let at = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let t = Instant::now();
            let resp = client
                .post(&url)
                .json(&json!({"model": "m", "prompt": "x", "keep_alive": "5m"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// 200 requests/s through the proxy (5 s here; `KABENCH_PROXY_LOAD_S=30` for the
/// figures in `benches/README.md`): every request gets its row, and the latency added
/// over the same load sent directly is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_loopback_load_loses_no_row() {
    let _heavy = HEAVY.lock().await;
    let secs: u32 = std::env::var("KABENCH_PROXY_LOAD_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rate = 200;
    let dir = tempfile::tempdir().unwrap();
    let upstream = fast_upstream().await;
    let proxy = start_proxy(&format!("http://{upstream}"), dir.path()).await;
    let mut direct = load(&format!("http://{upstream}/api/generate"), rate, secs).await;
    let mut proxied = load(&format!("{}/api/generate", proxy.base_url()), rate, secs).await;
    let stats = proxy.shutdown(Duration::from_secs(5)).await;
    let n = u64::from(rate * secs);
    assert_eq!(stats.rows, n, "one row per request");
    let rows = rows(dir.path());
    assert_eq!(rows.len() as u64, n);
    assert!(
        rows.iter()
            .all(|r| r["outcome"] == "ok" && r["cold"] == "false")
    );
    let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
    let (p50, p99) = (pct(&mut proxied, 0.5), pct(&mut proxied, 0.99));
    eprintln!(
        "proxy load: {n} requests at {rate}/s; direct p50 {d50:.3} ms p99 {d99:.3} ms; proxied p50 {p50:.3} ms p99 {p99:.3} ms; added p50 {:.3} ms p99 {:.3} ms",
        p50 - d50,
        p99 - d99
    );
}

#[tokio::test]
async fn a_proxy_log_renders_as_an_observed_run_and_the_rewrite_applies_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::start(&["--gpus", "0"]);
    let proxy = proxy::spawn(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: sim.url.clone(),
        out: dir.path().into(),
        rewrite_keep_alive: Some(json!("3s")),
        quiet: true,
    })
    .await
    .unwrap();
    for (path, body) in [
        (
            "/api/generate",
            json!({"model": "tiny-50m", "prompt": "hi", "stream": false,
            "options": {"num_predict": 2, "keep_alive": "1h"}}),
        ),
        (
            "/api/generate",
            json!({"model": "tiny-50m", "prompt": "hi", "stream": false,
            "options": {"num_predict": 2}}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "tiny-50m", "max_tokens": 2,
            "messages": [{"role": "user", "content": "x"}]}),
        ),
    ] {
        let r = http()
            .post(format!("{}{path}", proxy.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // The rewritten keep_alive is what the server applied: 3 s, not 5 m.
    let ps: Value = http()
        .get(format!("{}/api/ps", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = time::OffsetDateTime::parse(
        ps["models"][0]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (at - time::OffsetDateTime::now_utc()).as_seconds_f64();
    assert!(left < 4.0, "the /v1 request kept the rewritten 3s: {left}");
    let stats = proxy.shutdown(Duration::from_secs(2)).await;
    assert_eq!(stats.exported, Ok(3));
    let log = rows(dir.path());
    assert!(log[0]["note"].contains("rewritten:\"3s\""), "{:?}", log[0]);
    assert!(
        !log[2]["note"].contains("rewritten"),
        "/v1 is not rewritten"
    );

    let out = common::kabench()
        .args(["report", dir.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = &summary["cells"][0];
    assert_eq!(cell["id"], "observed");
    let streams: Vec<&str> = cell["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["tiny-50m generate", "tiny-50m v1_chat"]);
    assert_eq!(cell["streams"][0]["requests"], 2);
    assert_eq!(cell["streams"][0]["cold"], 1);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("observed traffic through kabench proxy, not a sweep"),
        "{md}"
    );
    assert!(!md.contains("no readable scenario.toml"), "{md}");
    // The folder kabench just wrote records the [cost] and [slo] it is weighed by:
    // the report has nothing to say about an older kabench.
    assert!(!md.contains("records no [cost] or [slo]"), "{md}");
    common::assert_valid_folder(dir.path());
    let run = common::read_json(&dir.path().join("run.json"));
    assert_eq!(run["target"]["kind"], "proxy");
    assert_eq!(run["cost"]["vram_gb_hour"], 7.2);
    assert!(run["slo"].is_object(), "{run}");
    common::run_ok(&[
        "validate",
        dir.path().join("scenario.toml").to_str().unwrap(),
    ]);
}

#[tokio::test]
async fn two_clients_with_different_num_ctx_through_the_proxy_show_as_num_ctx_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::start(&["--gpus", "0"]);
    let proxy = start_proxy(&sim.url, dir.path()).await;
    for i in 0..6 {
        let ctx = if i % 2 == 0 { 1024 } else { 2048 };
        let r = http()
            .post(format!("{}/api/generate", proxy.base_url()))
            .json(
                &json!({"model": "tiny-50m", "prompt": "hi", "stream": false,
                "keep_alive": "5m", "options": {"num_predict": 1, "num_ctx": ctx}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let warnings = proxy.warnings();
    proxy.shutdown(Duration::from_secs(2)).await;
    assert!(
        warnings.iter().any(|w| w.contains("another num_ctx")),
        "{warnings:?}"
    );
    let out = common::kabench()
        .args(["report", dir.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reloads = &summary["cells"][0]["reloads"];
    assert_eq!(reloads["by_cause"]["num_ctx"], 5, "{reloads}");
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("send one num_ctx from every client"), "{md}");
}
