//! Shared test harness: the kabench binary, JSON and CSV readers of a run folder, temp
//! copies of the committed run folders, the embedded simulator in process, and a
//! real Ollama server (`../shared/ollama`, a CPU build of Ollama v0.32.15) started on a
//! free loopback port with its own models directory under `target/`, loaded with tiny
//! random-weight models written by its `make_tiny_models.py`.
//!
//! The real server is optional on a user's machine: [`RealOllama::start`] returns `None`
//! and prints one line saying why when `../shared/ollama` is absent, when
//! `KABENCH_SKIP_REAL_OLLAMA=1`, or when the model writer's Python packages (`gguf`,
//! `numpy`) are missing. With `KABENCH_REQUIRE_REAL_OLLAMA=1` (set by `.ci/run`) a
//! missing prerequisite fails the test instead of skipping it. A one-node Slurm
//! cluster for the fleet tests is in [`slurm`], and network namespaces that give each
//! real server of a fleet its own address in [`netns`].
#![allow(dead_code)]

pub mod doctor;
pub mod llama;
pub mod netns;
pub mod slurm;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The kabench binary under test.
pub fn kabench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kabench"))
}

/// Runs kabench to its end, whatever its exit.
pub fn run(args: &[&str]) -> Output {
    kabench().args(args).output().expect("kabench runs")
}

/// Runs kabench and asserts exit 0.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "kabench {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kabench compare BASE NEW` plus `extra`: exit code, stdout, stderr.
pub fn compare(base: &Path, new: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = kabench()
        .arg("compare")
        .arg(base)
        .arg(new)
        .args(extra)
        .output()
        .expect("kabench compare runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Requests and cold requests per cell of a run folder's `requests.csv`.
pub fn cold_per_cell(dir: &Path) -> std::collections::BTreeMap<String, (usize, usize)> {
    let mut out: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for r in request_rows(dir) {
        let e = out.entry(r["cell"].clone()).or_default();
        e.0 += 1;
        e.1 += (r["cold"] == "true") as usize;
    }
    out
}

/// A JSON file, parsed; a run folder's `run.json` or `summary.json` is also checked
/// against its published schema (`schema/`), so every folder a test reads is.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).expect("valid JSON");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(schema) = schema_of(name) {
        assert_valid(schema, &value, path);
    }
    value
}

/// The published schema a run folder's JSON file `name` follows, if it has one.
pub fn schema_of(name: &str) -> Option<&'static jsonschema::Validator> {
    static RUN: OnceLock<jsonschema::Validator> = OnceLock::new();
    static SUMMARY: OnceLock<jsonschema::Validator> = OnceLock::new();
    let (cell, file) = match name {
        "run.json" => (&RUN, "run.schema.json"),
        "summary.json" => (&SUMMARY, "summary.schema.json"),
        _ => return None,
    };
    Some(cell.get_or_init(|| {
        let path = root().join("schema").join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
    }))
}

/// Panics with every place `value` (read from `path`) breaks `schema`.
pub fn assert_valid(schema: &jsonschema::Validator, value: &Value, path: &Path) {
    let errors: Vec<String> = schema
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not follow its published schema:\n{}",
        path.display(),
        errors.join("\n")
    );
}

/// Checks a run folder's `run.json` and, when it has one, `summary.json` against the
/// published schemas.
pub fn assert_valid_folder(dir: &Path) {
    read_json(&dir.join("run.json"));
    if dir.join("summary.json").is_file() {
        read_json(&dir.join("summary.json"));
    }
}

/// `requests.csv` of a run folder as maps from column to value.
pub fn request_rows(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join("requests.csv")).expect("requests.csv");
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|x| {
            let x = x.expect("row");
            header
                .iter()
                .cloned()
                .zip(x.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// The project's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/ollama` beside the checkout.
pub fn ollama_dir() -> PathBuf {
    root().join("../shared/ollama")
}

/// The tiny models every real-Ollama test may use: (name, source GGUF, `-q` level).
/// `tiny-embed` is tiny-50m's architecture with a mean pooling type, so Ollama lists
/// it with the `embedding` capability and serves `/api/embed` and `/v1/embeddings`
/// (a model without a pooling type answers them 501: its runner has no embeddings).
pub const TINY_MODELS: [(&str, &str, Option<&str>); 5] = [
    ("tiny-50m", "tiny-50m", None),
    ("tiny-50m:q8_0", "tiny-50m", Some("q8_0")),
    ("tiny-50m:q4_K_M", "tiny-50m", Some("q4_K_M")),
    ("tiny-150m", "tiny-150m", None),
    ("tiny-embed", "tiny-embed", None),
];

/// Writes `tiny-embed.gguf` with `make_tiny_models.py`'s own writer (tiny-50m's shape
/// and tokenizer) plus `llama.pooling_type` = mean: what makes Ollama treat a GGUF as
/// an embedding model.
const TINY_EMBED_PY: &str = r#"
import importlib.util, sys
import gguf
spec = importlib.util.spec_from_file_location("tiny", sys.argv[1])
tiny = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny)
add_name = gguf.GGUFWriter.add_name
def with_pooling(self, name):
    add_name(self, name)
    self.add_pooling_type(gguf.PoolingType.MEAN)
gguf.GGUFWriter.add_name = with_pooling
tiny.write_model(sys.argv[2], "tiny-embed", *tiny.MODELS["tiny-50m"])
"#;

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One line on stderr and `None`, or a panic when the CI asks for the real server.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("KABENCH_REQUIRE_REAL_OLLAMA").is_ok_and(|v| v == "1") {
        panic!("real Ollama required (KABENCH_REQUIRE_REAL_OLLAMA=1) but {why}");
    }
    eprintln!("skipping the real-Ollama test: {why}");
    None
}

/// Where the tiny models live: `target/real-ollama/models`, written once per test
/// process (`ollama create` is idempotent and takes about a second a model).
fn models_dir() -> Result<PathBuf, String> {
    static MODELS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let base = root().join("target/real-ollama");
            let gguf = base.join("gguf");
            let models = base.join("models");
            std::fs::create_dir_all(&gguf).map_err(|e| format!("{}: {e}", gguf.display()))?;
            std::fs::create_dir_all(&models).map_err(|e| format!("{}: {e}", models.display()))?;
            llama::write_tiny_models(&gguf, &["tiny-50m", "tiny-150m"])?;
            let embed = gguf.join("tiny-embed.gguf");
            if !embed.exists() {
                let out = Command::new("python3")
                    .args(["-c", TINY_EMBED_PY])
                    .arg(ollama_dir().join("make_tiny_models.py"))
                    .arg(&embed)
                    .output()
                    .map_err(|e| format!("python3 could not run: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "writing tiny-embed.gguf failed (pip install gguf numpy?): {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            // A short-lived server to create the models in the shared directory.
            let server = Server::spawn(&models, &[], &base.join("create.log"), None)?;
            for (name, src, quant) in TINY_MODELS {
                let modelfile = base.join(format!("{src}.Modelfile"));
                std::fs::write(
                    &modelfile,
                    format!("FROM {}\n", gguf.join(format!("{src}.gguf")).display()),
                )
                .map_err(|e| e.to_string())?;
                let mut create = Command::new(ollama_dir().join("bin/ollama"));
                create
                    .args(["create", name, "-f"])
                    .arg(&modelfile)
                    .env("OLLAMA_HOST", &server.host)
                    .env("OLLAMA_NO_CLOUD", "1");
                if let Some(q) = quant {
                    create.args(["-q", q]);
                }
                let out = create.output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "ollama create {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            drop(server);
            Ok(models)
        })
        .clone()
}

/// A running `ollama serve`; killed on drop.
struct Server {
    child: Child,
    host: String,
}

impl Server {
    /// `ollama serve` on a free loopback port, or inside the namespace `at` on its own
    /// address.
    fn spawn(
        models: &Path,
        env: &[(&str, &str)],
        log: &Path,
        at: Option<&netns::Netns>,
    ) -> Result<Server, String> {
        let host = match at {
            Some(ns) => format!("{}:11434", ns.addr),
            None => format!("127.0.0.1:{}", free_port()),
        };
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let exe = ollama_dir().join("bin/ollama");
        let mut cmd = match at {
            Some(ns) => ns.command(&exe),
            None => Command::new(&exe),
        };
        cmd.arg("serve")
            .env("OLLAMA_HOST", &host)
            .env("OLLAMA_MODELS", models)
            .env("OLLAMA_NO_CLOUD", "1")
            .env_remove("OLLAMA_KEEP_ALIVE")
            .env_remove("OLLAMA_MAX_LOADED_MODELS")
            .env_remove("OLLAMA_NUM_PARALLEL")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group, so the runners it starts go with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| format!("ollama serve: {e}"))?;
        let mut server = Server { child, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "ollama serve exited with {status}: see {}",
                    log.display()
                ));
            }
            if version(&server.host).is_some() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "ollama serve did not answer within 30 s: see {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server and every runner (`llama-server`) it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/version` with a short timeout, over a plain TCP stream (no client needed).
fn version(host: &str) -> Option<String> {
    let (status, body) = http(host, "GET", "/api/version", None).ok()?;
    (status == 200).then(|| {
        serde_json::from_str::<Value>(&body).ok()?["version"]
            .as_str()
            .map(str::to_string)
    })?
}

/// One HTTP/1.1 request on loopback; returns the status and the body as text.
pub fn http(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

/// A real Ollama for one test: its own port and environment, the shared tiny models.
/// The timing-sensitive tests' turn: the real-Ollama tests and the simulator tests that
/// run several kabench processes at once (shards beside one process) hold it, so on 2
/// cores no two of them run together and their timings stay meaningful; the other
/// tests of the binary still run beside them.
pub fn timing_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds the [`timing_turn`] so the real-Ollama tests run one at a time (timings on 2
/// cores stay meaningful).
pub struct RealOllama {
    server: Server,
    /// `http://127.0.0.1:PORT`, or `http://ADDR:11434` in its own namespace.
    pub url: String,
    /// Where its log goes.
    pub log: PathBuf,
    /// Its network namespace, removed after the server stopped (fields drop in order).
    _netns: Option<netns::Netns>,
    _turn: Option<MutexGuard<'static, ()>>,
}

impl RealOllama {
    /// Starts a server with extra environment (`OLLAMA_MAX_LOADED_MODELS`, …); `None`
    /// (after one line on stderr) when the real server cannot be had here.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Option<RealOllama> {
        if std::env::var("KABENCH_SKIP_REAL_OLLAMA").is_ok_and(|v| v == "1") {
            eprintln!("skipping the real-Ollama test: KABENCH_SKIP_REAL_OLLAMA=1");
            return None;
        }
        if !ollama_dir().join("bin/ollama").exists() {
            return skip("../shared/ollama/bin/ollama is not here (a user's checkout)");
        }
        let turn = timing_turn();
        let models = match models_dir() {
            Ok(m) => m,
            Err(e) => return skip(&e),
        };
        let log = root().join(format!("target/real-ollama/{name}.log"));
        let server = match Server::spawn(&models, env, &log, None) {
            Ok(s) => s,
            Err(e) => return skip(&e),
        };
        Some(RealOllama {
            url: format!("http://{}", server.host),
            server,
            log,
            _netns: None,
            _turn: Some(turn),
        })
    }

    /// Two servers that are distinct hosts: each in its own network namespace with its
    /// own address ([`netns`]) where the machine allows it (the second of the answer
    /// says so), else on two loopback ports ([`RealOllama::start_pair`]).
    pub fn start_distinct_pair(
        name: &str,
        env: &[(&str, &str)],
    ) -> Option<((RealOllama, RealOllama), bool)> {
        if std::env::var("KABENCH_SKIP_REAL_OLLAMA").is_ok_and(|v| v == "1") {
            eprintln!("skipping the real-Ollama test: KABENCH_SKIP_REAL_OLLAMA=1");
            return None;
        }
        if !ollama_dir().join("bin/ollama").exists() {
            return skip("../shared/ollama/bin/ollama is not here (a user's checkout)");
        }
        let namespaces = match netns::Netns::create_many(2) {
            Ok(n) => n,
            Err(why) => {
                eprintln!("no network namespaces here ({why}): the two servers share loopback");
                return RealOllama::start_pair(name, env).map(|p| (p, false));
            }
        };
        let turn = timing_turn();
        let models = match models_dir() {
            Ok(m) => m,
            Err(e) => return skip(&e),
        };
        let mut servers = Vec::new();
        for (i, ns) in namespaces.into_iter().enumerate() {
            let log = root().join(format!("target/real-ollama/{name}-ns{i}.log"));
            let server = match Server::spawn(&models, env, &log, Some(&ns)) {
                Ok(s) => s,
                Err(e) => return skip(&e),
            };
            servers.push(RealOllama {
                url: format!("http://{}", server.host),
                server,
                log,
                _netns: Some(ns),
                _turn: None,
            });
        }
        let second = servers.pop()?;
        let mut first = servers.pop()?;
        first._turn = Some(turn);
        Some(((first, second), true))
    }

    /// Two servers at once on two ports (a small fleet), sharing the tiny models; the
    /// pair takes one turn. `None` as for [`RealOllama::start`].
    pub fn start_pair(name: &str, env: &[(&str, &str)]) -> Option<(RealOllama, RealOllama)> {
        let first = RealOllama::start(&format!("{name}-a"), env)?;
        let models = match models_dir() {
            Ok(m) => m,
            Err(e) => return skip(&e),
        };
        let log = root().join(format!("target/real-ollama/{name}-b.log"));
        let server = match Server::spawn(&models, env, &log, None) {
            Ok(s) => s,
            Err(e) => return skip(&e),
        };
        let second = RealOllama {
            url: format!("http://{}", server.host),
            server,
            log,
            _netns: None,
            _turn: None,
        };
        Some((first, second))
    }

    /// `host:port`.
    pub fn host(&self) -> &str {
        &self.server.host
    }

    /// One request to the server: status and body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.host(), method, path, body).expect("the real Ollama answers")
    }

    /// The server's log so far (for assertion messages and the scheduler's lines).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `kabench sim` as a child process on a free loopback port; killed on drop.
pub struct SimServer {
    child: Child,
    /// `host:port`.
    pub host: String,
    /// `http://host:port`.
    pub url: String,
}

impl SimServer {
    /// Starts `kabench sim --listen 127.0.0.1:0` with extra flags (`--gpus 0`, …).
    pub fn start(flags: &[&str]) -> SimServer {
        use std::io::{BufRead, BufReader};
        let mut child = kabench()
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kabench sim starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("kabench sim says where it listens")
                .expect("stderr line");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let host = url.trim_start_matches("http://").to_string();
        SimServer { child, host, url }
    }

    /// One request: status and body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.host, method, path, body).expect("the simulator answers")
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files of a run folder that a run writes and a report reads.
pub const RUN_FILES: [&str; 4] = ["run.json", "requests.csv", "vram.csv", "scenario.toml"];

/// A committed run folder under `tests/fixtures/`.
pub fn fixture_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Copies the run files of `from` into `to` (created).
pub fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in RUN_FILES {
        std::fs::copy(from.join(f), to.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

/// A fresh temporary copy of the committed run folder `tests/fixtures/<name>` (the
/// fixture itself is never written); the folder lives as long as the `TempDir`.
pub fn fixture_run(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_run(&fixture_dir(name), &dir);
    (tmp, dir)
}

/// The embedded simulator in process on a free loopback port, and a client to it.
pub async fn start_sim(
    settings: &kabench::engine::sim_settings::SimSettings,
    seed: u64,
) -> (
    kabench::engine::sim::SimHandle,
    kabench::ollama::OllamaClient,
) {
    let handle = kabench::engine::sim::spawn(settings, seed, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts");
    let client = kabench::ollama::OllamaClient::new(&handle.base_url()).unwrap();
    (handle, client)
}
