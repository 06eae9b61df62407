//! `kabench doctor --target-kind llama-server` against the real llama.cpp
//! `llama-server` (b10488, `../shared/ollama/lib/ollama/llama-server`) started with
//! `--sleep-idle-seconds 2` and `--metrics` on the tiny-50m GGUF: every verdict is
//! checked against the server's own evidence (its log's "entering/exiting sleeping
//! state" and model-load lines, its `/props`, its process). Skips with one line where
//! the binary or the model writer is absent. Also `--dry-run` (nothing sent) and the
//! flags that do not apply to a kind (exit 2).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::doctor::{check, interrupt, report as doctor_report};
use crate::common::{SimServer, free_port, http, kabench, root, timing_turn};

/// The llama-server beside Ollama's runner.
fn llama_server_bin() -> PathBuf {
    root().join("../shared/ollama/lib/ollama/llama-server")
}

/// One line on stderr and `None`, or a panic when the CI asks for the real servers.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("KABENCH_REQUIRE_REAL_OLLAMA").is_ok_and(|v| v == "1") {
        panic!("real llama-server required (KABENCH_REQUIRE_REAL_OLLAMA=1) but {why}");
    }
    eprintln!("skipping the real llama-server test: {why}");
    None
}

/// `target/real-ollama/gguf/tiny-50m.gguf`, written by `make_tiny_models.py` if absent.
fn tiny_50m() -> Result<PathBuf, String> {
    let dir = root().join("target/real-ollama/gguf");
    crate::common::llama::write_tiny_models(&dir, &["tiny-50m"])?;
    Ok(dir.join("tiny-50m.gguf"))
}

/// A running llama-server, killed on drop.
struct LlamaServer {
    child: Child,
    host: String,
    log: PathBuf,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    /// `llama-server -t 1 --sleep-idle-seconds 2 -m tiny-50m.gguf -c 2048 -np 1` and
    /// `extra` on a free loopback port, once `/health` answers 200.
    fn start(name: &str, extra: &[&str]) -> Option<LlamaServer> {
        let mut args = vec!["--sleep-idle-seconds", "2"];
        args.extend_from_slice(extra);
        Self::start_with(name, &args)
    }

    /// `llama-server -t 1 -m tiny-50m.gguf -c 2048 -np 1` and `args`.
    fn start_with(name: &str, extra: &[&str]) -> Option<LlamaServer> {
        if std::env::var("KABENCH_SKIP_REAL_OLLAMA").is_ok_and(|v| v == "1") {
            eprintln!("skipping the real llama-server test: KABENCH_SKIP_REAL_OLLAMA=1");
            return None;
        }
        if !llama_server_bin().exists() {
            return skip(
                "../shared/ollama/lib/ollama/llama-server is not here (a user's checkout)",
            );
        }
        let model = match tiny_50m() {
            Ok(m) => m,
            Err(e) => return skip(&e),
        };
        let port = free_port();
        let log = root().join(format!("target/real-ollama/{name}.log"));
        let file = std::fs::File::create(&log).expect("the log file");
        let child = Command::new(llama_server_bin())
            .args([
                "-t",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["-c", "2048", "-np", "1", "-m"])
            .arg(&model)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log file"))
            .stderr(file)
            .spawn()
            .expect("llama-server starts");
        let server = LlamaServer {
            child,
            host: format!("127.0.0.1:{port}"),
            log,
        };
        let start = Instant::now();
        while !matches!(http(&server.host, "GET", "/health", None), Ok((200, _))) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "llama-server did not answer /health in 30 s: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of its log that contain `what`.
    fn count(&self, what: &str) -> usize {
        self.log_text().lines().filter(|l| l.contains(what)).count()
    }

    fn props(&self) -> Value {
        let (status, body) = http(&self.host, "GET", "/props", None).expect("/props");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/props is JSON")
    }

    /// Waits (up to 10 s) until `/props` says asleep.
    fn wait_asleep(&self) {
        let start = Instant::now();
        while self.props()["is_sleeping"] != true {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never fell asleep"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const ENTERING: &str = "srv  handle_sleep: server is entering sleeping state";
const EXITING: &str = "srv  handle_sleep: server is exiting sleeping state";
const LOADING: &str = "load_model: loading model";

#[test]
fn doctor_measures_wake_memory_timer_and_polling_on_the_real_llama_server() {
    let _turn = timing_turn();
    let Some(server) = LlamaServer::start("doctor-llama", &["--metrics"]) else {
        return;
    };
    server.wait_asleep();
    let (entered, exited, loads) = (
        server.count(ENTERING),
        server.count(EXITING),
        server.count(LOADING),
    );
    // The shared helper: --json --model tiny-50m, within a minute.
    let url = format!("http://{}", server.host);
    let (code, report, stderr) =
        doctor_report(&url, &["--target-kind", "llama-server", "--max-wait", "20"]);
    let ctx = format!("{report:#}\n{stderr}\n{}", server.log_text());
    assert_eq!(code, 0, "{ctx}");
    assert_eq!(report["kind"], "llama-server");
    assert_eq!(report["model"], "tiny-50m");
    // It says what it will do before doing it.
    assert!(
        stderr.contains("found asleep; what the run does"),
        "{stderr}"
    );

    // The sleeps and wakes it saw are the ones the server logged, each wake a reload.
    let count = &check(&report, "sleep.count")["value"];
    let (sleeps, wakes) = (
        count["sleeps"].as_u64().unwrap(),
        count["wakes"].as_u64().unwrap(),
    );
    assert_eq!(server.count(ENTERING) - entered, sleeps as usize, "{ctx}");
    assert_eq!(server.count(EXITING) - exited, wakes as usize, "{ctx}");
    assert_eq!(server.count(LOADING) - loads, wakes as usize, "{ctx}");
    // Found asleep: woken by the first request, the wake, /metrics and /slots.
    assert_eq!(wakes, 4, "{ctx}");
    assert_eq!(sleeps, 4, "{ctx}");

    // The wake: asleep before, awake after, slower than warm requests.
    let wake = &check(&report, "wake.cost")["value"];
    assert_eq!(wake["asleep_before"], true, "{ctx}");
    assert_eq!(wake["asleep_after"], false, "{ctx}");
    assert!(
        wake["wake_s"].as_f64().unwrap() > wake["warm_s"].as_f64().unwrap(),
        "{ctx}"
    );

    // The memory: the server's own process, read from the listening socket.
    let mem = &check(&report, "memory.freed")["value"];
    assert_eq!(
        mem["pid"].as_u64(),
        Some(u64::from(server.child.id())),
        "{ctx}"
    );
    let (awake, asleep) = (
        mem["awake_bytes"].as_u64().unwrap(),
        mem["asleep_bytes"].as_u64().unwrap(),
    );
    // The tiny-50m weights alone are 55 MB.
    assert!(awake > asleep + 40_000_000, "{ctx}");
    assert_eq!(mem["freed_bytes"].as_u64(), Some(awake - asleep));

    // The timer: 2 s, counted from the end of the request, not stated by /props.
    let timer = check(&report, "sleep.timer");
    assert_eq!(timer["value"]["idle_seconds"], 2.0, "{ctx}");
    assert_eq!(timer["value"]["props_states_timer"], false);
    for d in timer["value"]["seconds_after_end"].as_array().unwrap() {
        let d = d.as_f64().unwrap();
        assert!((2.0..3.5).contains(&d), "{ctx}");
    }
    let end = check(&report, "sleep.from_end");
    assert_eq!(end["verdict"], "yes", "{ctx}");
    assert!(end["value"]["request_s"].as_f64().unwrap() >= 1.5, "{ctx}");

    // Polling: /health and /props do not keep it awake, /metrics and /slots do.
    assert_eq!(
        check(&report, "poll.health_props")["verdict"],
        "no",
        "{ctx}"
    );
    for id in ["poll.metrics", "poll.slots"] {
        let row = check(&report, id);
        assert_eq!(row["verdict"], "yes", "{id}: {ctx}");
        assert_eq!(row["value"]["status"], 200, "{id}");
        assert_eq!(row["value"]["wakes_from_sleep"], true, "{id}");
        // Awake through the polling, asleep after it stopped.
        assert!(
            row["value"]["slept_after_stop_s"].as_f64().is_some(),
            "{id}: {ctx}"
        );
    }
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["holds"] == true)
    );

    // Left as found: asleep, and nothing logged after the run.
    assert_eq!(server.props()["is_sleeping"], true);
    assert_eq!(report["restored"][0], "found asleep, left asleep");
}

#[test]
fn doctor_llama_dry_run_lists_the_requests_and_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let out = kabench()
        .args([
            "doctor",
            "--target-kind",
            "llama-server",
            "--dry-run",
            "--target",
            &target,
        ])
        .output()
        .expect("kabench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(nothing sent)"), "{text}");
    for line in [
        "GET /props",
        "GET /health",
        "POST /completion",
        "GET /metrics",
        "GET /slots",
    ] {
        assert!(text.contains(line), "{line} missing: {text}");
    }
    assert!(text.contains("run it when the server is idle"), "{text}");
    let json = kabench()
        .args([
            "doctor",
            "--target-kind",
            "llama-server",
            "--dry-run",
            "--json",
        ])
        .args(["--target", &target, "--model", "m"])
        .output()
        .expect("kabench runs");
    assert!(json.status.success());
    let rows: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["path"] == "/completion" && r["body"]["model"] == "m")
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a dry run connected to the target"
    );
}

#[test]
fn doctor_flags_of_the_other_kind_are_refused_with_exit_2() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    for args in [
        vec!["--pid", "1"],
        vec!["--max-wait", "5"],
        vec!["--target-kind", "llama-server", "--allow-evict"],
        vec!["--target-kind", "llama-server", "--embed-model", "e"],
    ] {
        let out = kabench()
            .args(["doctor", "--target", &target])
            .args(&args)
            .output()
            .expect("kabench runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--target-kind"), "{args:?}: {err}");
    }
    assert!(listener.accept().is_err(), "a refused run connected");
}

#[test]
fn doctor_says_when_the_llama_server_never_sleeps_and_when_memory_cannot_be_read() {
    let _turn = timing_turn();
    // No --sleep-idle-seconds: sleep is off.
    let Some(server) = LlamaServer::start_with("doctor-llama-nosleep", &[]) else {
        return;
    };
    let out = kabench()
        .args([
            "doctor",
            "--target-kind",
            "llama-server",
            "--json",
            "--max-wait",
            "3",
        ])
        .args([
            "--target",
            &format!("http://{}", server.host),
            "--pid",
            "4000000000",
        ])
        .output()
        .expect("kabench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    let ctx = format!("{report:#}");
    let timer = check(&report, "sleep.timer");
    assert!(timer["value"]["seconds_after_end"].is_null(), "{ctx}");
    assert!(
        timer["evidence"]
            .as_str()
            .unwrap()
            .contains("not asleep 3 s"),
        "{ctx}"
    );
    // Memory it could not read is "unavailable" and null, never 0.
    let mem = check(&report, "memory.freed");
    assert!(
        mem["evidence"].as_str().unwrap().starts_with("unavailable"),
        "{ctx}"
    );
    assert!(mem["value"]["freed_bytes"].is_null(), "{ctx}");
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != "wake.cost")
    );
    assert_eq!(check(&report, "sleep.count")["value"]["sleeps"], 0);
    assert_eq!(server.count(ENTERING), 0, "{}", server.log_text());
    assert_eq!(report["restored"][0], "found awake, left awake");

    // Ctrl-C while it waits for a sleep that never comes: it stops at once, says so,
    // leaves the server as found, and exits 130.
    let child = kabench()
        .args([
            "doctor",
            "--target-kind",
            "llama-server",
            "--json",
            "--max-wait",
            "60",
        ])
        .args(["--target", &format!("http://{}", server.host)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kabench runs");
    std::thread::sleep(Duration::from_secs(2));
    let report = interrupt(child, || server.log_text());
    assert_eq!(report["restored"][0], "found awake, left awake");
    assert_eq!(server.props()["is_sleeping"], false);
}

#[test]
fn doctor_llama_server_against_an_ollama_says_it_is_not_one() {
    let sim = SimServer::start(&[]);
    let out = kabench()
        .args([
            "doctor",
            "--target-kind",
            "llama-server",
            "--target",
            &sim.url,
        ])
        .output()
        .expect("kabench runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a llama-server"), "{err}");
}
