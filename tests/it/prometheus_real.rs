//! A real Prometheus (Debian's `prometheus` package: `prometheus` and `promtool`)
//! scrapes `kabench proxy` in front of the real Ollama every second while traffic
//! passes; PromQL over Prometheus's HTTP API checks that the series say what happened
//! (cold starts, keep_alive applied and where it was set, reloads by cause, a model the
//! server does not list counted as `other`), every query of the docs' dashboard runs,
//! and `promtool check metrics` passes on the exposition. Skips with one line where the
//! binaries are missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, RealOllama};
use kabench::proxy::{self, ProxyConfig};

/// `prometheus` and `promtool` on PATH, or `None` after one line on stderr.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            eprintln!(
                "skipping the Prometheus test: prometheus and promtool are not installed (apt-get install prometheus)"
            );
            None
        }
    }
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping `target` every second, its data under `dir`.
async fn start_prometheus(bin: &Path, dir: &Path, target: &str) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kabench-proxy\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = common::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{}/-/ready", p.url)).await
            && r.status().is_success()
        {
            return p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An instant query's result vector.
async fn query(prom: &str, q: &str) -> Vec<Value> {
    let mut url = reqwest::Url::parse(&format!("{prom}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", q);
    let r: Value = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success", "{q}: {r}");
    r["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single value of `q`, or `None` when it has no series.
async fn value(prom: &str, q: &str) -> Option<f64> {
    let v = query(prom, q).await;
    assert!(v.len() <= 1, "{q}: {v:?}");
    v.first()
        .and_then(|s| s["value"][1].as_str())
        .map(|s| s.parse().unwrap())
}

async fn generate(base: &str, body: Value) -> u16 {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/generate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_proxy_and_the_series_say_what_happened() {
    let Some((prometheus, promtool)) = binaries() else {
        return;
    };
    let Some(real) = RealOllama::start("prometheus", &[("OLLAMA_MAX_LOADED_MODELS", "1")]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let px = proxy::spawn(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: real.url.clone(),
        out: tmp.path().join("log"),
        rewrite_keep_alive: None,
        quiet: true,
    })
    .await
    .unwrap();
    assert!(px.wait_polled(Duration::from_secs(5)).await);
    let prom = start_prometheus(&prometheus, tmp.path(), &px.addr.to_string()).await;
    let base = px.base_url();
    let ask = |model: &str, extra: Value| {
        let mut b =
            json!({"model": model, "prompt": "hi", "stream": false, "options": {"num_predict": 2}});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let ka = json!({"keep_alive": "2m"});
    assert_eq!(generate(&base, ask("tiny-50m", ka.clone())).await, 200); // cold
    assert_eq!(generate(&base, ask("tiny-50m", ka.clone())).await, 200); // warm
    assert_eq!(generate(&base, ask("tiny-150m", json!({}))).await, 200); // evicts tiny-50m
    assert_eq!(generate(&base, ask("tiny-50m", ka.clone())).await, 200); // reload: evicted
    let ctx = json!({"keep_alive": "2m", "options": {"num_predict": 2, "num_ctx": 1024}});
    assert_eq!(generate(&base, ask("tiny-50m", ctx)).await, 200); // reload: num_ctx
    assert_eq!(generate(&base, ask("no-such-model", json!({}))).await, 404);
    let _ = reqwest::get(format!("{base}/api/tags")).await.unwrap();
    // Two scrapes after an /api/ps poll that saw the last load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    let p = prom.url.as_str();
    while value(p, r#"kabench_proxy_requests_total{endpoint="other"}"#)
        .await
        .is_none()
    {
        assert!(t.elapsed() < Duration::from_secs(10), "no scrape");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = r#"model="tiny-50m:latest""#;
    assert_eq!(
        value(p, "sum(kabench_proxy_cold_starts_total)").await,
        Some(4.0)
    );
    for cause in ["evicted", "num_ctx"] {
        let q = format!(r#"kabench_proxy_reloads_total{{{m},cause="{cause}"}}"#);
        assert_eq!(value(p, &q).await, Some(1.0), "{q}");
    }
    let q = format!(
        r#"kabench_proxy_last_reload_timestamp_seconds{{{m},cause="num_ctx",from="default",to="1024"}}"#
    );
    assert!(value(p, &q).await.is_some(), "{q}");
    let q = format!(r#"kabench_proxy_keep_alive_seconds{{{m},source="request"}}"#);
    assert_eq!(value(p, &q).await, Some(120.0));
    let q = r#"kabench_proxy_keep_alive_seconds{model="tiny-150m:latest",source="server_default"}"#;
    assert_eq!(value(p, q).await, Some(300.0));
    let q = r#"kabench_proxy_requests_total{model="other",endpoint="generate",code="404"}"#;
    assert_eq!(value(p, q).await, Some(1.0));
    // Only inference calls are timed: not the listing, not the 404.
    assert!(
        query(p, r#"kabench_proxy_e2e_seconds_count{model=~"none|other"}"#)
            .await
            .is_empty()
    );
    let left = value(p, &format!("kabench_proxy_model_expires_in_seconds{{{m}}}")).await;
    assert!(
        left.is_some_and(|s| (60.0..=120.0).contains(&s)),
        "{left:?}"
    );
    let ram = value(
        p,
        &format!(r#"kabench_proxy_model_memory_bytes{{{m},memory="ram"}}"#),
    )
    .await;
    assert!(ram.is_some_and(|b| b > 0.0), "{ram:?}");
    assert_eq!(value(p, "kabench_proxy_upstream_up").await, Some(1.0));
    // Every query of the docs' dashboard runs.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("docs/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let q = t["expr"].as_str().unwrap();
            let q = q
                .replace("$job", "kabench-proxy")
                .replace("$__rate_interval", "1m");
            let _ = query(p, &q).await;
        }
    }
    // promtool's lint of the exposition, and of the docs' scrape config.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let o = check.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(&promtool)
        .args(["check", "config"])
        .arg(common::root().join("docs/prometheus.yml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    drop(prom);
    px.shutdown(Duration::ZERO).await;
    // The 404 is logged, but the run folder does not ask its model to fit.
    let log = std::fs::read_to_string(tmp.path().join("log/proxy-requests.csv")).unwrap();
    assert!(log.contains("no-such-model"));
    let rows = common::request_rows(&tmp.path().join("log"));
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| !r.values().any(|v| v.contains("no-such-model")))
    );
}
