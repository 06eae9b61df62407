//! The first acceptance step of issue 29 against the real servers: one scenario
//! (`scenarios/ollama-vs-llama-server.toml`) sweeps Ollama's keep_alive 0 / 5s / -1 and
//! llama.cpp `llama-server`'s `--sleep-idle-seconds` 1 / 5 / off on the same arrivals
//! (three requests 2.5 s apart), against `../shared/ollama` and the llama-server beside
//! it, which kabench starts per cell. The run ends complete, renders one page with both
//! servers, and each llama-server cell's cold count equals the wakes its own log
//! records ("server is exiting sleeping state"); the same holds on llama-server's
//! native `/completion` (`api = "generate"`). Skips with one line where the real
//! Ollama or the llama-server binary is not here.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use crate::common::{RealOllama, kabench, ollama_dir, read_json, request_rows, root, run_ok};

/// The llama-server binary beside the real Ollama.
fn llama_server() -> Option<std::path::PathBuf> {
    let bin = ollama_dir().join("lib/ollama/llama-server");
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "skipping the llama-server test: ../shared/ollama/lib/ollama/llama-server is not here"
        );
        None
    }
}

/// Cold rows per cell.
fn cold_per_cell(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = out.entry(r["cell"].clone()).or_default();
        e.0 += 1;
        if r["cold"] == "true" {
            e.1 += 1;
        }
        assert!(r["error"].is_empty(), "a failed request: {r:?}");
    }
    out
}

#[test]
fn ollama_keep_alive_and_llama_server_sleep_on_one_frontier_match_the_server_log() {
    if llama_server().is_none() {
        return;
    }
    // Starts Ollama with the tiny models and writes their GGUF files, which the
    // scenario's llama-server loads too.
    let Some(ollama) = RealOllama::start("llama-server-vs-ollama", &[]) else {
        return;
    };
    let gguf = root().join("target/real-ollama/gguf/tiny-50m.gguf");
    assert!(gguf.is_file(), "{} was not written", gguf.display());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let scenario = root().join("scenarios/ollama-vs-llama-server.toml");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        &ollama.url,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "complete", "{meta}");
    let summary = read_json(&out.join("summary.json"));
    let rows = request_rows(&out);
    let cold = cold_per_cell(&rows);
    let ids: Vec<&String> = cold.keys().collect();
    assert_eq!(ids.len(), 6, "six cells: {ids:?}");
    let cell = |prefix: &str| -> (String, usize, usize) {
        let (id, (n, c)) = cold
            .iter()
            .find(|(id, _)| id.contains(prefix))
            .unwrap_or_else(|| panic!("no cell {prefix} in {ids:?}"));
        (id.clone(), *n, *c)
    };
    // Ollama: keep_alive 0 unloads after every request, 5s and -1 keep it.
    let (_, n, c) = cell("srv_ollama-iu_0");
    assert_eq!((n, c), (3, 3), "keep_alive 0: every request cold");
    for knob in ["srv_ollama-iu_5s", "srv_ollama-iu_-1"] {
        let (_, n, c) = cell(knob);
        assert_eq!((n, c), (3, 1), "{knob}: only the first load is cold");
    }
    // llama-server: its own log says how often it woke; kabench's cold count agrees.
    let log_text = |id: &str| {
        let path = out.join("servers").join(format!("{id}.log"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut expected = BTreeMap::new();
    expected.insert("srv_llama-server-iu_1s", 2);
    expected.insert("srv_llama-server-iu_5s", 0);
    expected.insert("srv_llama-server-iu_-1", 0);
    for (knob, want) in expected {
        let (id, n, c) = cell(knob);
        let log = log_text(&id);
        let wakes = log.matches("server is exiting sleeping state").count();
        assert_eq!(n, 3, "{id}: three requests");
        assert_eq!(
            c, wakes,
            "{id}: kabench counted {c} cold, the server's log {wakes} wakes"
        );
        assert_eq!(
            c, want,
            "{id}: sleep 1 s with 2.5 s gaps wakes every request after the first; 5 s and off never sleep"
        );
        if knob.ends_with("-1") {
            assert!(
                !log.contains("entering sleeping state"),
                "{id}: off never sleeps"
            );
        }
    }
    // The first request of a llama-server cell is warm: the server loaded at start.
    for r in rows.iter().filter(|r| r["cell"].contains("llama-server")) {
        if r["request"] == "0" {
            assert_eq!(r["cold"], "false", "{r:?}");
        }
    }
    // Memory of the llama-server cells is its process tree's RSS: sleeping frees
    // some of it, so sleep 1 s holds less idle memory than off.
    let idle = |prefix: &str| -> f64 {
        let c = summary["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"].as_str().unwrap_or("").contains(prefix))
            .unwrap_or_else(|| panic!("no summary cell {prefix}"));
        assert_eq!(c["vram"]["source"], "server_rss", "{prefix}: {}", c["vram"]);
        c["vram"]["idle_gb_seconds"].as_f64().unwrap()
    };
    let (asleep, awake) = (
        idle("srv_llama-server-iu_1s"),
        idle("srv_llama-server-iu_-1"),
    );
    assert!(
        asleep < awake,
        "sleep 1 s holds less idle memory ({asleep} GB·s) than off ({awake} GB·s)"
    );
    // One page, both servers on it, a recommendation for each.
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for id in cold.keys() {
        assert!(html.contains(id.as_str()), "index.html lacks cell {id}");
    }
    assert!(
        html.contains("Tradeoff across servers"),
        "index.html has one frontier across servers"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("server=ollama") && md.contains("server=llama-server"),
        "one recommendation per server:\n{md}"
    );
    // The frontier's rows in the summary too: a row per cell of each server.
    let across = md
        .split("## Across servers")
        .nth(1)
        .unwrap_or_else(|| panic!("no frontier across servers:\n{md}"));
    let table = across.split("\n## ").next().unwrap();
    for server in ["ollama", "llama-server"] {
        let rows = table
            .lines()
            .filter(|l| l.starts_with(&format!("| {server} |")))
            .count();
        assert_eq!(rows, 3, "three cells of {server}:\n{table}");
    }
    drop(ollama);
}

/// The children of `pid` (from `/proc/*/stat`).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[test]
fn ctrl_c_stops_the_server_kabench_started_and_leaves_no_child() {
    let Some(bin) = llama_server() else {
        return;
    };
    // Only the GGUF file is needed: RealOllama::start writes it (and skips where it
    // cannot), the server itself is not used.
    let Some(ollama) = RealOllama::start("llama-server-ctrl-c", &[]) else {
        return;
    };
    let gguf = root().join("target/real-ollama/gguf/tiny-50m.gguf");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"# one llama-server cell, interrupted
[target]
kind = "llama-server"
command = [{bin:?}, "-m", "{{model_path}}", "--sleep-idle-seconds", "{{sleep_idle_seconds}}", "--host", "127.0.0.1", "--port", "{{port}}", "-t", "1", "-c", "512", "--no-webui"]
model_path = {gguf:?}
idle_unload = ["off"]
[[stream]]
model = "tiny-50m"
prompt_tokens = 8
max_tokens = 2
arrival = {{ kind = "constant", rate = "0.2/s" }}
[run]
requests = 5
"#,
            bin = bin.display().to_string(),
            gguf = gguf.display().to_string(),
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let mut child = kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let me = child.id();
    // Wait for the server to answer its first request (the first row is written).
    let deadline = Instant::now() + Duration::from_secs(60);
    let server = loop {
        let rows = std::fs::read_to_string(out.join("requests.csv")).unwrap_or_default();
        let kids = children(me);
        if rows.lines().count() > 1 && !kids.is_empty() {
            break kids;
        }
        assert!(Instant::now() < deadline, "the server never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(me as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "interrupted", "{status}: {meta}");
    for pid in server {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the server {pid} outlived kabench"
        );
    }
    assert!(
        out.join("servers").is_dir(),
        "the server's log folder is kept"
    );
    drop(ollama);
}

/// A scenario of one started server whose command is `command` (a TOML array).
fn one_server(dir: &std::path::Path, command: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            "# a started server that fails\n[target]\nkind = \"llama-server\"\ncommand = {command}\n{extra}\n[[stream]]\nmodel = \"m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n[run]\nrequests = 1\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_server_that_exits_or_never_gets_healthy_fails_the_run_naming_its_command() {
    let dir = tempfile::tempdir().unwrap();
    // Exits at once: the error names the command and the log's last line.
    let scenario = one_server(
        dir.path(),
        r#"["sh", "-c", "echo no such model file >&2; exit 3", "{port}"]"#,
        "",
    );
    let out = dir.path().join("run");
    let run = kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(
        err.contains("`sh -c echo no such model file >&2; exit 3")
            && err.contains("exited")
            && err.contains("no such model file"),
        "{err}"
    );
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "failed", "{meta}");
    assert_eq!(meta["target"]["kind"], "llama-server", "{meta}");
    // Runs but never answers GET /health: stopped after health_timeout, and said so.
    let dir = tempfile::tempdir().unwrap();
    let scenario = one_server(
        dir.path(),
        r#"["sh", "-c", "exec sleep 30", "{port}"]"#,
        "health_timeout = \"1s\"",
    );
    let out = dir.path().join("run");
    let started = Instant::now();
    let run = kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(
        err.contains("did not answer GET /health with 200 within 1s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped after its health timeout, not after its 30 s"
    );
    // Nothing outside the output folder: the scenario and the run folder only.
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["run", "s.toml"]);
}

#[test]
fn a_bad_server_command_is_refused_before_anything_starts_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = one_server(
        dir.path(),
        r#"["llama-server", "--ttl", "{ttl}", "--port", "{port}"]"#,
        "",
    );
    let out = dir.path().join("run");
    let run = kabench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.toml:4:") && err.contains("key `target.command`") && err.contains("{ttl}"),
        "{err}"
    );
    assert!(!out.exists(), "nothing was started or written");
}

/// `api = "generate"` against llama-server is its native `/completion` (no
/// `data: [DONE]`; the last event has `"stop": true`): every request ends without an
/// error, with the server's own token count, and the cold count of a 1 s sleep with
/// 2.5 s gaps equals the wakes in the server's log.
#[test]
fn the_native_completion_shape_is_timed_and_its_cold_count_matches_the_log() {
    let Some(bin) = llama_server() else {
        return;
    };
    let Some(gguf) = crate::common::llama::gguf_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"# one llama-server cell on the native /completion
[target]
kind = "llama-server"
command = [{bin:?}, "-m", "{{model_path}}", "--sleep-idle-seconds", "{{sleep_idle_seconds}}", "--host", "127.0.0.1", "--port", "{{port}}", "-t", "1", "-c", "512", "--no-webui"]
model_path = {gguf:?}
idle_unload = ["1s"]
health_timeout = "60s"
[[stream]]
model = "tiny-50m"
api = "generate"
prompt_tokens = 8
max_tokens = 3
arrival = {{ kind = "constant", rate = "0.4/s" }}
[run]
requests = 3
timeout = "60s"
"#,
            bin = bin.display().to_string(),
            gguf = gguf.join("tiny-50m.gguf").display().to_string(),
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    run_ok(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = request_rows(&out);
    let cold = cold_per_cell(&rows);
    assert_eq!(cold.len(), 1, "{cold:?}");
    let (id, (n, c)) = cold.iter().next().unwrap();
    assert_eq!(*n, 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r["eval_count"], "3", "the server's predicted_n: {r:?}");
        assert!(!r["ttft_ms"].is_empty(), "a first token was timed: {r:?}");
    }
    let log = std::fs::read_to_string(out.join("servers").join(format!("{id}.log"))).unwrap();
    let wakes = log.matches("server is exiting sleeping state").count();
    assert_eq!(*c, wakes, "kabench counted {c} cold, the log {wakes} wakes");
    assert_eq!(
        *c, 2,
        "sleep 1 s with 2.5 s gaps: every request after the first"
    );
}
