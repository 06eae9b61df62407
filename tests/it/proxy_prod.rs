//! `kabench proxy` as an operator runs it in production: it refuses to forward to its
//! own address and catches a loop at run time by its hop header; SIGTERM mid-stream
//! leaves a complete log, counts that match the files and a report; HEAD and OPTIONS
//! are logged by their status; the log's keep_alive is what the server received; a
//! listener beyond loopback is warned about; `/metrics` labels only listed models, and
//! the docs' dashboard queries only metrics the proxy exports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, RealOllama};
use kabench::proxy::{self, ProxyConfig, metrics::METRIC_NAMES};

fn rows_of(dir: &Path, file: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let Ok(mut r) = csv::Reader::from_path(dir.join(file)) else {
        return Vec::new();
    };
    r.deserialize().map(Result::unwrap).collect()
}

/// Starts `kabench proxy` on a free port; returns it with its port once it accepts.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = common::kabench();
    cmd.args(["proxy", "--listen", &listen]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(&listen).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Its exit status and stderr, within 20 s.
fn finish(mut child: Child) -> (i32, String) {
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the proxy did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

/// One raw HTTP/1.1 exchange: the status line's code.
fn raw(port: u16, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_proxy_refuses_to_forward_to_its_own_address() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("log");
    let port = common::free_port();
    let host = format!("127.0.0.1:{port}");
    let o = common::kabench()
        .args(["proxy", "--listen", &host, "--out"])
        .arg(&out)
        .env("OLLAMA_HOST", &host)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("own address") && err.contains(&host), "{err}");
    assert!(!out.exists(), "nothing is written");
}

#[tokio::test]
async fn a_loop_through_another_proxy_is_caught_by_the_hop_header() {
    let tmp = tempfile::tempdir().unwrap();
    let port_b = common::free_port();
    let config = |listen: String, upstream: String, dir: &str| ProxyConfig {
        listen: listen.parse().unwrap(),
        upstream,
        out: tmp.path().join(dir),
        rewrite_keep_alive: None,
        quiet: true,
    };
    let a = proxy::spawn(config(
        "127.0.0.1:0".into(),
        format!("http://127.0.0.1:{port_b}"),
        "a",
    ))
    .await
    .unwrap();
    let b = proxy::spawn(config(format!("127.0.0.1:{port_b}"), a.base_url(), "b"))
        .await
        .unwrap();
    let t = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{}/api/generate", a.base_url()))
        .body(r#"{"model":"m","prompt":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 508);
    assert!(r.text().await.unwrap().contains("forwards back"));
    assert!(t.elapsed() < Duration::from_secs(2));
    let metrics = reqwest::get(format!("{}/metrics", a.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("kabench_proxy_loops_total 0"),
        "{metrics}"
    );
    let stats = a.shutdown(Duration::ZERO).await;
    b.shutdown(Duration::ZERO).await;
    // The request came back to `a` once, and was refused there.
    let other = rows_of(&tmp.path().join("a"), "proxy-other.csv");
    let back: Vec<_> = other
        .iter()
        .filter(|r| r["path"] == "/api/generate")
        .collect();
    assert_eq!(back.len(), 1, "{other:?}");
    assert_eq!(
        (back[0]["outcome"].as_str(), back[0]["status"].as_str()),
        ("loop", "508")
    );
    let log = rows_of(&tmp.path().join("a"), "proxy-requests.csv");
    assert_eq!((log.len(), log[0]["status"].as_str()), (1, "508"));
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("comes back") || w.contains("came back"))
    );
}

#[test]
fn listening_beyond_loopback_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = common::free_port();
    let port = common::free_port();
    let mut child = common::kabench()
        .args(["proxy", "--listen", &format!("0.0.0.0:{port}"), "--out"])
        .arg(tmp.path().join("o"))
        .args(["--upstream", &format!("127.0.0.1:{dead}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref().take(3) {
        seen.push_str(&line.unwrap());
        seen.push('\n');
        if seen.contains("beyond this host") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("beyond this host"), "{seen}");
}

/// A stream the server is still sending at SIGTERM is cut after `--grace`, logged
/// `cut_at_shutdown`, counted, and the report is still written; HEAD and OPTIONS are
/// logged by their status; the log holds the keep_alive the server received.
#[tokio::test]
async fn sigterm_mid_stream_leaves_a_complete_log_and_a_report() {
    let Some(real) = RealOllama::start("proxy-prod-sigterm", &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("log");
    let out_s = out.to_str().unwrap();
    let (child, port) = start(
        &[
            "--upstream",
            &real.url,
            "--out",
            out_s,
            "--grace",
            "1s",
            "--rewrite-keep-alive",
            "10m",
        ],
        &[],
    );
    assert_eq!(raw(port, "HEAD", "/"), 200);
    let options = raw(port, "OPTIONS", "/api/tags");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let warm = http
        .post(format!("http://127.0.0.1:{port}/api/generate"))
        .body(r#"{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":"1m","options":{"num_predict":2}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status().as_u16(), 200);
    let _ = warm.bytes().await;
    let mut stream = http
        .post(format!("http://127.0.0.1:{port}/api/generate"))
        .body(r#"{"model":"tiny-50m","prompt":"count","options":{"num_predict":100000,"temperature":1}}"#)
        .send()
        .await
        .unwrap();
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );
    sigterm(&child);
    // The client keeps reading until the proxy cuts it.
    while let Ok(Some(_)) = stream.chunk().await {}
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    let log = rows_of(&out, "proxy-requests.csv");
    let other = rows_of(&out, "proxy-other.csv");
    assert!(
        err.contains(&format!(
            "{} model request(s) logged to {out_s}/proxy-requests.csv, {} other request(s)",
            log.len(),
            other.len()
        )) && err.contains("1 cut at shutdown"),
        "{err}"
    );
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["outcome"], "cut_at_shutdown");
    assert_eq!(
        (
            log[0]["keep_alive"].as_str(),
            log[0]["keep_alive_sent"].as_str()
        ),
        ("10m", "\"1m\""),
        "the server received 10m; the client sent 1m"
    );
    for (method, status) in [
        ("HEAD", "200".to_string()),
        ("OPTIONS", options.to_string()),
    ] {
        let row = other.iter().find(|r| r["method"] == method).unwrap();
        assert_eq!(row["status"], status, "{row:?}");
        assert_ne!(row["outcome"], "client_gone", "{row:?}");
    }
    assert!(
        out.join("index.html").exists(),
        "the report is written: {err}"
    );
    assert!(!err.contains("no report"), "{err}");
    // What the app sends, beside what its traffic says.
    assert!(
        err.contains("the app sends") && err.contains("keep_alive \"1m\" on 1 of 2"),
        "{err}"
    );
    assert!(err.contains("what the traffic says"), "{err}");
}

/// The dashboard in docs/ queries only metrics the proxy exports, and the scrape
/// config points at the proxy's default address.
#[test]
fn the_docs_dashboard_names_only_exported_metrics() {
    let root = common::root();
    let text = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut names = 0;
        for (i, _) in e.match_indices("kabench_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| METRIC_NAMES.contains(f))
                .unwrap_or(&name)
                .to_string();
            assert!(METRIC_NAMES.contains(&family.as_str()), "{name} in {e}");
            used.insert(family);
            names += 1;
        }
        assert!(names > 0, "a query with no kabench metric: {e}");
        // A selector `name{` or `name[` must be a kabench metric.
        for (i, c) in e.char_indices().filter(|(_, c)| *c == '{' || *c == '[') {
            let start = e[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |p| p + 1);
            let before = &e[start..i];
            assert!(
                before.is_empty() || before.starts_with("kabench_"),
                "{c} after {before}, not a kabench metric, in {e}"
            );
        }
    }
    assert!(
        used.len() >= 10,
        "the dashboard shows most metrics: {used:?}"
    );
    let scrape = std::fs::read_to_string(root.join("docs/prometheus.yml")).unwrap();
    assert!(scrape.contains("127.0.0.1:11435") && scrape.contains("/metrics"));
}
