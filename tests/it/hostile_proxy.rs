//! `kabench proxy` against hostile clients and upstreams, each a small fake on
//! loopback: an upstream that redirects as Ollama does (`/api/generate/` → 307), model
//! names with control characters, idle and slow clients, large bodies beyond the
//! buffer budget, a newline-less reply, thousands of model names, a huge `/api/ps`, an
//! upstream that never answers, a shutdown with requests in flight (and a second
//! Ctrl-C), `OPTIONS *`, and an `--out` that already holds files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kabench::proxy::{self, ProxyConfig, ProxyHandle, ProxyLimits};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the fake upstream saw and how it answers.
#[derive(Default)]
struct Upstream {
    /// (path, body) of each request, `/api/ps` left out.
    seen: Mutex<Vec<(String, Vec<u8>)>>,
    /// Requests being answered now, and the most at once.
    now: AtomicUsize,
    most: AtomicUsize,
    /// Held this long before answering a model request.
    hold: Mutex<Duration>,
    /// Bytes of `/api/ps` reply (0: a small real one).
    ps_bytes: AtomicUsize,
}

const DONE: &str = "{\"model\":\"m\",\"response\":\"hi\",\"done\":true,\"load_duration\":1000000,\"eval_count\":1}\n";

/// Ollama's routing, as far as the proxy cares: a trailing or doubled slash is
/// answered 307 to the clean path (as Ollama's router does); model requests get one
/// NDJSON line after `hold`.
async fn fake(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/api/ps" {
        let n = up.ps_bytes.load(Ordering::SeqCst);
        let body = if n == 0 {
            json!({"models": []}).to_string()
        } else {
            format!("{{\"models\":[],\"pad\":\"{}\"}}", "x".repeat(n))
        };
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    if path == "/api/version" {
        return axum::Json(json!({"version": "0.0.0"})).into_response();
    }
    if path == "/api/tags" {
        let m = json!({"name": "m:latest", "model": "m:latest", "modified_at": "2026-01-01T00:00:00Z", "size": 1, "digest": "0", "details": {}});
        return axum::Json(json!({"models": [m]})).into_response();
    }
    let clean: String = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| format!("/{p}"))
        .collect();
    let body = axum::body::to_bytes(req.into_body(), 1 << 30)
        .await
        .unwrap_or_default();
    up.seen.lock().unwrap().push((path.clone(), body.to_vec()));
    if clean != path {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, clean)],
            "",
        )
            .into_response();
    }
    let now = up.now.fetch_add(1, Ordering::SeqCst) + 1;
    up.most.fetch_max(now, Ordering::SeqCst);
    let hold = *up.hold.lock().unwrap();
    tokio::time::sleep(hold).await;
    up.now.fetch_sub(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/x-ndjson")], DONE).into_response()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn upstream() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let app = Router::new().fallback(fake).with_state(up.clone());
    (serve(app).await, up)
}

fn config(upstream: SocketAddr, out: &Path) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{upstream}"),
        out: out.into(),
        rewrite_keep_alive: None,
        quiet: true,
    }
}

/// A client that follows no redirect, as the proxy must not.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn rows_of(dir: &Path, file: &str) -> Vec<BTreeMap<String, String>> {
    let Ok(mut r) = csv::Reader::from_path(dir.join(file)) else {
        return Vec::new();
    };
    r.deserialize().map(Result::unwrap).collect()
}

/// Sends raw bytes and reads until the proxy closes or `limit` passes: (reply, closed).
async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (String, bool) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_redirect_passes_back_unchanged_logged_with_its_model_rewritten_and_counted() {
    let (addr, up) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(addr, tmp.path());
    cfg.rewrite_keep_alive = Some(json!("10m"));
    let proxy = proxy::spawn(cfg).await.unwrap();
    assert!(proxy.wait_polled(Duration::from_secs(5)).await);
    for (path, endpoint) in [("/api/generate/", "generate"), ("//api//chat", "chat")] {
        let url = format!("{}{path}", proxy.base_url());
        let body =
            json!({"model": "m", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]});
        let r = http().post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 307, "{path}: the 307 passes back");
        let clean = format!("/api/{endpoint}");
        assert_eq!(r.headers()["location"], clean.as_str(), "{path}");
        let (seen_path, forwarded) = up.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen_path, path, "forwarded once, as sent, never followed");
        let sent: Value = serde_json::from_slice(&forwarded).unwrap();
        assert_eq!(
            sent["keep_alive"], "10m",
            "{path}: --rewrite-keep-alive applied"
        );
        // The client follows it itself: that request is its own row.
        let r = http()
            .post(format!("{}{clean}", proxy.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.unwrap();
    }
    // Each row is written as its reply ends, which the client may see a moment before.
    let want = [
        "kabench_proxy_requests_total{model=\"m:latest\",endpoint=\"generate\",code=\"307\"} 1",
        "kabench_proxy_requests_total{model=\"m:latest\",endpoint=\"generate\",code=\"200\"} 1",
        "kabench_proxy_requests_total{model=\"m:latest\",endpoint=\"chat\",code=\"307\"} 1",
        "kabench_proxy_requests_total{model=\"m:latest\",endpoint=\"chat\",code=\"200\"} 1",
    ];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let metrics = http()
            .get(format!("{}/metrics", proxy.base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if want.iter().all(|w| metrics.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{metrics}\n{:?}\n{:?}",
            std::fs::read_to_string(tmp.path().join("proxy-requests.csv")),
            std::fs::read_to_string(tmp.path().join("proxy-other.csv"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = proxy.shutdown(Duration::from_secs(2)).await;
    let other = rows_of(tmp.path(), "proxy-other.csv");
    let redirects: Vec<_> = other.iter().filter(|r| r["status"] == "307").collect();
    assert_eq!(redirects.len(), 2, "{other:?}");
    for r in &redirects {
        assert_eq!(r["model"], "m");
        assert_eq!(r["outcome"], "redirected");
        assert!(r["note"].contains("rewritten:\"10m\""), "{r:?}");
    }
    assert_eq!(redirects[0]["endpoint"], "generate");
    assert_eq!(redirects[1]["endpoint"], "chat");
    // The requests log holds the requests that ran, once each.
    assert_eq!(rows_of(tmp.path(), "proxy-requests.csv").len(), 2);
    assert_eq!(stats.exported, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_name_with_control_characters_round_trips_through_scenario_toml() {
    let (addr, _up) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let name = "\u{1b}[2J\u{1b}[31mevil\"\\\u{0}\n\u{2028}'''\"\"\"";
    let r = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .json(&json!({"model": name, "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    r.bytes().await.unwrap();
    let stats = proxy.shutdown(Duration::from_secs(2)).await;
    assert_eq!(stats.exported, Ok(1));
    let text = std::fs::read_to_string(tmp.path().join("scenario.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).expect("scenario.toml is valid TOML");
    let stream = &table["stream"].as_array().unwrap()[0];
    assert_eq!(stream["model"].as_str(), Some(name), "the name round-trips");
    assert!(!text.contains('\u{1b}'), "no raw ESC in the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_cut_by_the_read_timeouts_and_connections_are_capped() {
    let (addr, _up) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut limits = ProxyLimits::default();
    limits.conn.max_connections = 1;
    limits.conn.header_timeout = Duration::from_millis(600);
    limits.body.read_timeout = Duration::from_millis(600);
    let proxy = proxy::spawn_with(config(addr, tmp.path()), limits)
        .await
        .unwrap();
    let paddr = proxy.addr;
    // An idle connection holds the only slot until the header timeout closes it; a
    // request on a second connection waits for that, then is served.
    let started = Instant::now();
    let idle = tokio::spawn(async move { raw(paddr, b"", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (reply, _) = raw(
        paddr,
        b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let waited = started.elapsed();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        waited >= Duration::from_millis(450),
        "the second connection waited for the slot ({waited:?})"
    );
    let (_, closed) = idle.await.unwrap();
    assert!(closed, "the idle connection was closed by the proxy");
    // A kept-alive connection left idle after its request: closed too.
    let started = Instant::now();
    let (reply, closed) = raw(
        paddr,
        b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        closed && started.elapsed() < Duration::from_secs(3),
        "idle keep-alive connection closed after {:?}",
        started.elapsed()
    );
    // Half a header line, then nothing: closed.
    let started = Instant::now();
    let (_, closed) = raw(paddr, b"POST /api/gen", Duration::from_secs(5)).await;
    assert!(closed && started.elapsed() < Duration::from_secs(3));
    // Headers promising 100 bytes, 10 sent, then nothing: a 408, logged.
    let (reply, _) = raw(
        paddr,
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("--read-timeout"), "{reply}");
    proxy.shutdown(Duration::from_secs(1)).await;
    let other = rows_of(tmp.path(), "proxy-other.csv");
    assert!(
        other
            .iter()
            .any(|r| r["status"] == "408" && r["outcome"] == "bad_request"),
        "{other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_buffer_budget_wait_their_turn() {
    let (addr, up) = upstream().await;
    *up.hold.lock().unwrap() = Duration::from_millis(300);
    let tmp = tempfile::tempdir().unwrap();
    let mut limits = ProxyLimits::default();
    limits.body.max_body = 1 << 20;
    limits.body.budget_bytes = 1 << 20;
    let proxy = proxy::spawn_with(config(addr, tmp.path()), limits)
        .await
        .unwrap();
    // Four 700 KB bodies at once, with a budget of 1 MiB of bodies: one at a time.
    let body = json!({"model": "m", "prompt": "x".repeat(700_000)}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = format!("{}/api/generate", proxy.base_url());
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = http()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            r.bytes().await.unwrap();
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        up.most.load(Ordering::SeqCst),
        1,
        "bodies held at once stay within the budget"
    );
    // Over the body limit: 413 before anything is read or forwarded.
    let r = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .body(vec![b' '; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(up.seen.lock().unwrap().len(), 4);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reply_without_a_newline_is_scanned_once() {
    const SIZE: usize = 48 << 20;
    let chunk = Bytes::from(vec![b'a'; 64 << 10]);
    let app = Router::new().fallback(move || {
        let chunk = chunk.clone();
        async move {
            let stream = futures_util::stream::iter(
                (0..SIZE / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream)
        }
    });
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let started = Instant::now();
    let mut r = http()
        .post(format!("{}/api/generate", proxy.base_url()))
        .json(&json!({"model": "m", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    let mut n = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len();
    }
    let took = started.elapsed();
    assert_eq!(n, SIZE, "every byte passed");
    assert!(took < Duration::from_secs(6), "48 MB took {took:?}");
    proxy.shutdown(Duration::from_secs(1)).await;
    let rows = rows_of(tmp.path(), "proxy-requests.csv");
    assert_eq!(rows[0]["bytes"], SIZE.to_string());
    assert!(
        rows[0]["note"].contains("reply_line_over_limit"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_model_names_bound_the_series_and_the_export() {
    let (addr, up) = upstream().await;
    // A 6 MB /api/ps: not read, said so.
    up.ps_bytes.store(6 << 20, Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let proxy = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let client = http();
    let url = format!("{}/api/generate", proxy.base_url());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 1500 {
                    return;
                }
                let r = client
                    .post(&url)
                    .json(&json!({"model": format!("model-{i}"), "prompt": "hi"}))
                    .send()
                    .await
                    .unwrap();
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = client
        .get(format!("{}/metrics", proxy.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("kabench_proxy_requests_total{"))
        .count();
    assert_eq!(series, 1, "names the server does not list share one series");
    assert!(metrics.contains(
        "kabench_proxy_requests_total{model=\"other\",endpoint=\"generate\",code=\"200\"} 1500"
    ));
    let deadline = Instant::now() + Duration::from_secs(4);
    while !proxy.warnings().iter().any(|w| w.contains("/api/ps")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        proxy.warnings().iter().any(|w| w.contains("4 MiB")),
        "{:?}",
        proxy.warnings()
    );
    let started = Instant::now();
    let stats = proxy.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stats.exported, Ok(1500));
    assert!(started.elapsed() < Duration::from_secs(5));
    let run = crate::common::read_json(&tmp.path().join("run.json"));
    let streams = run["cells"][0]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), kabench::proxy::export::MAX_STREAMS + 1);
    let other = streams
        .iter()
        .find(|s| s["model"] == "(other)")
        .expect("one stream for the rest");
    assert!(
        other["name"].as_str().unwrap().contains("1436 more"),
        "{other}"
    );
}

/// An upstream that reads each request and never answers.
async fn silent() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_upstream_never_answered_are_logged_and_shutdown_cuts_before_the_export() {
    let addr = silent().await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let url = format!("{}/api/generate", proxy.base_url());
    // A client that gives up waiting: its row says so.
    let r = http()
        .post(&url)
        .json(&json!({"model": "gone", "prompt": "hi"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.is_err());
    // Two still waiting at shutdown: cut after the grace period, both in the export.
    for model in ["a", "b"] {
        let url = url.clone();
        tokio::spawn(async move {
            let _ = http()
                .post(url)
                .json(&json!({"model": model, "prompt": "hi"}))
                .send()
                .await;
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stats = proxy.shutdown(Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    let log = rows_of(tmp.path(), "proxy-requests.csv");
    let outcome = |m: &str| {
        log.iter()
            .find(|r| r["model"] == m)
            .map(|r| (r["outcome"].clone(), r["note"].clone()))
    };
    assert_eq!(
        outcome("gone"),
        Some(("client_gone".into(), "no_answer_yet".into()))
    );
    assert_eq!(outcome("a").unwrap().0, "cut_at_shutdown");
    assert_eq!(outcome("b").unwrap().0, "cut_at_shutdown");
    assert_eq!(stats.exported, Ok(3), "every row is in the export");
    let requests = crate::common::request_rows(tmp.path());
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r["error"] == "cancelled"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rows_of(tmp.path(), "proxy-requests.csv").len(),
        3,
        "nothing after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_answered_not_counted_as_an_unreachable_upstream() {
    let (addr, _up) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy: ProxyHandle = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let (reply, _) = raw(
        proxy.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("allow: "), "{reply}");
    let metrics = http()
        .get(format!("{}/metrics", proxy.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kabench_proxy_upstream_errors_total 0"),
        "{metrics}"
    );
    assert!(proxy.warnings().is_empty(), "{:?}", proxy.warnings());
    proxy.shutdown(Duration::from_secs(1)).await;
    let other = rows_of(tmp.path(), "proxy-other.csv");
    assert_eq!(other[0]["outcome"], "not_forwarded");
}

#[test]
fn a_non_empty_out_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("requests.csv"), "precious").unwrap();
    let o = crate::common::kabench()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&out.display().to_string()) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("requests.csv")).unwrap(),
        "precious"
    );
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = crate::common::kabench()
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// Sends `sig` to `pid`.
fn kill(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_ends_the_proxy_at_once() {
    let addr = silent().await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("px");
    let port = crate::common::free_port();
    let mut child = crate::common::kabench()
        .args(["proxy", "--quiet", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--upstream")
        .arg(format!("http://{addr}"))
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/generate");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the proxy listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A request the upstream never answers keeps the shutdown waiting its grace.
    tokio::spawn(async move {
        let _ = http()
            .post(url)
            .json(&json!({"model": "m", "prompt": "hi"}))
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    kill("-INT", child.id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill("-INT", child.id());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(130), "{}", status.1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exited at once, not after the 5 s grace ({:?})",
        started.elapsed()
    );
    assert!(status.1.contains("interrupted again"), "{}", status.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_never_reach_the_terminal_and_one_interrupt_stops_cleanly() {
    let (addr, _up) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("px\u{1b}[2Jx");
    let port = crate::common::free_port();
    let mut child = crate::common::kabench()
        .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--upstream")
        .arg(format!("http://{addr}"))
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the proxy listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = "\u{1b}]0;owned\u{7}\u{1b}[31mred";
    let r = http()
        .post(format!("http://127.0.0.1:{port}/api/generate"))
        .json(&json!({"model": name, "prompt": "hi", "options": {"keep_alive": "1m"}}))
        .send()
        .await
        .unwrap();
    r.bytes().await.unwrap();
    kill("-INT", child.id());
    let (status, err) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "a raw ESC reached the terminal: {err:?}"
    );
    assert!(err.contains("1 model request(s) logged"), "{err}");
    let text = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["stream"][0]["model"].as_str(), Some(name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_finds_no_room_in_the_budget_in_time_gets_a_503() {
    let (addr, up) = upstream().await;
    *up.hold.lock().unwrap() = Duration::from_millis(1500);
    let tmp = tempfile::tempdir().unwrap();
    let mut limits = ProxyLimits::default();
    limits.body.max_body = 1 << 20;
    limits.body.budget_bytes = 1 << 20;
    limits.body.read_timeout = Duration::from_millis(300);
    let proxy = proxy::spawn_with(config(addr, tmp.path()), limits)
        .await
        .unwrap();
    let body = json!({"model": "m", "prompt": "x".repeat(700_000)}).to_string();
    let url = format!("{}/api/generate", proxy.base_url());
    let first = {
        let (url, body) = (url.clone(), body.clone());
        tokio::spawn(async move { http().post(url).body(body).send().await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = http().post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("--max-buffered"), "{text}");
    assert_eq!(first.await.unwrap().as_u16(), 200);
    proxy.shutdown(Duration::from_secs(1)).await;
    let other = rows_of(tmp.path(), "proxy-other.csv");
    assert!(
        other
            .iter()
            .any(|r| r["status"] == "503" && r["outcome"] == "proxy_busy"),
        "{other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_within_the_grace_period_is_in_the_export() {
    // Five lines, 150 ms apart.
    let app = Router::new().fallback(|| async {
        let stream = futures_util::stream::unfold(0, |i| async move {
            if i == 5 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            let line = if i == 4 {
                DONE.to_string()
            } else {
                "{\"response\":\"a\",\"done\":false}\n".to_string()
            };
            Some((Ok::<_, std::io::Error>(line), i + 1))
        });
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(stream),
        )
    });
    let addr = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let proxy = proxy::spawn(config(addr, tmp.path())).await.unwrap();
    let url = format!("{}/api/generate", proxy.base_url());
    let body = json!({"model": "m", "prompt": "hi"});
    http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let second = tokio::spawn(async move {
        let r = http().post(&url).json(&body).send().await.unwrap();
        r.bytes().await.unwrap().len()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = proxy.shutdown(Duration::from_secs(3)).await;
    assert!(second.await.unwrap() > 0);
    assert_eq!(
        stats.exported,
        Ok(2),
        "both rows, the one in flight included"
    );
    let requests = crate::common::request_rows(tmp.path());
    assert!(
        requests.iter().all(|r| r["error"].is_empty()),
        "{requests:?}"
    );
}

#[test]
fn the_export_of_a_log_naming_ten_thousand_models_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = csv::Writer::from_path(tmp.path().join("proxy-requests.csv")).unwrap();
    for i in 0..10_000u32 {
        w.serialize(kabench::proxy::log::ProxyRow {
            timestamp: "2026-01-01T00:00:00Z".into(),
            t_ms: f64::from(i),
            method: "POST".into(),
            path: "/api/generate".into(),
            endpoint: "generate".into(),
            model: format!("model-{i}-{}", "x".repeat(200)),
            kind: "serve".into(),
            status: Some(200),
            ttft_ms: Some(5.0),
            e2e_ms: Some(9.0),
            outcome: "ok".into(),
            ..Default::default()
        })
        .unwrap();
    }
    w.flush().unwrap();
    let started = Instant::now();
    let n = kabench::proxy::export::write_run_folder(
        tmp.path(),
        "http://127.0.0.1:9",
        None,
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    assert_eq!(n, 10_000);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let run = crate::common::read_json(&tmp.path().join("run.json"));
    let streams = run["cells"][0]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), kabench::proxy::export::MAX_STREAMS + 1);
    let text = std::fs::read_to_string(tmp.path().join("scenario.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["stream"].as_array().unwrap().len(), streams.len());
}
