//! The real llama.cpp servers in `../shared/` for the tests: their binaries, the tiny
//! GGUF models the router and llama-swap list (a folder holding nothing else), the
//! router and llama-swap started on a free port (logging to a file, stopped with
//! SIGTERM), and their models' states as the status endpoints and kabench's residency
//! readers say. Where a binary or the models are missing, or
//! `KABENCH_SKIP_REAL_LLAMA=1`, the test skips with one line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kabench::llama::cell::{write_router_preset, write_swap_config};
use kabench::llama::preset::{ModelPreset, Preset};
use kabench::llama::router::{ModelState, parse_models, state_of};
use kabench::llama::swap::{self, SwapState, parse_running};
use kabench::llama::swap_config::{CmdArg, SwapConfig, SwapModel};
use kabench::llama::{ModelResidency, ServerKind};

use super::{free_port, http, ollama_dir, root};

/// The two tiny models the llama.cpp tests load.
pub const SMALL: &str = "tiny-50m";
/// The larger of the two.
pub const BIG: &str = "tiny-150m";

/// One line on stderr and `None`.
pub fn skip<T>(why: &str) -> Option<T> {
    eprintln!("skipping the real llama.cpp test: {why}");
    None
}

/// `../shared/<rel>` when it exists and real-server tests are wanted.
pub fn shared_bin(rel: &str) -> Option<PathBuf> {
    if std::env::var("KABENCH_SKIP_REAL_LLAMA").is_ok_and(|v| v == "1") {
        return skip("KABENCH_SKIP_REAL_LLAMA=1");
    }
    let path = root().join("../shared").join(rel);
    if path.is_file() {
        Some(path.canonicalize().unwrap_or(path))
    } else {
        skip(&format!("{} is absent", path.display()))
    }
}

/// Writes each of `names` missing from `dir` (`<name>.gguf`) with the Ollama folder's
/// `make_tiny_models.py`.
pub fn write_tiny_models(dir: &Path, names: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|m| !dir.join(format!("{m}.gguf")).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let out = Command::new("python3")
        .arg(ollama_dir().join("make_tiny_models.py"))
        .arg(dir)
        .args(&missing)
        .output()
        .map_err(|e| format!("python3 could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "make_tiny_models.py failed (pip install gguf numpy?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `target/llama-kinds/gguf` with [`SMALL`] and [`BIG`] only (the router lists every
/// GGUF of its folder), written once per test process.
pub fn gguf_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = DIR.get_or_init(|| {
        let dir = root().join("target/llama-kinds/gguf");
        write_tiny_models(&dir, &[SMALL, BIG]).map(|()| dir)
    });
    match made {
        Ok(dir) => Some(dir.clone()),
        Err(why) => skip(why),
    }
}

/// A server process logging to a file; stopped with SIGTERM (never SIGKILL first:
/// llama-swap's upstream would be orphaned).
pub struct Server {
    child: Child,
    log: PathBuf,
    pub host: String,
}

impl Server {
    fn spawn(mut cmd: Command, log: PathBuf, host: String, ready_path: &str) -> Server {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("the server starts");
        let server = Server { child, log, host };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok((200, _)) = http(&server.host, "GET", ready_path, None) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} never answered {ready_path}: {}",
            server.host,
            server.log_text()
        );
    }

    /// Resident bytes of the server's process tree (it and its model processes).
    pub fn rss(&self) -> u64 {
        kabench::telemetry::rss::tree_rss(self.child.id()).expect("the server runs")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One chat request of 4 tokens for `model`; its status.
    pub fn chat(&self, model: &str) -> u16 {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":4}}"#
        );
        http(&self.host, "POST", "/v1/chat/completions", Some(&body))
            .unwrap()
            .0
    }

    pub fn get(&self, path: &str) -> String {
        let (status, body) = http(&self.host, "GET", path, None).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// SIGTERM, then wait (up to 15 s) for the exit; the log afterwards.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log_text()
    }

    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A models folder holding links to the two tiny GGUFs (the router lists every GGUF there).
fn models_folder(run: &Path, gguf: &Path) -> PathBuf {
    let dir = run.join("models");
    std::fs::create_dir(&dir).unwrap();
    for m in [SMALL, BIG] {
        std::os::unix::fs::symlink(
            gguf.join(format!("{m}.gguf")),
            dir.join(format!("{m}.gguf")),
        )
        .unwrap();
    }
    dir
}

/// The router with `--models-max max` and `preset` (written into `run`), `-t 1`.
pub fn start_router(run: &Path, max: u32, preset: &Preset) -> Option<Server> {
    let bin = shared_bin("llama-cpp/bin/llama-server")?;
    let gguf = gguf_dir()?;
    let models = models_folder(run, &gguf);
    let ini = write_router_preset(run, 0, preset).unwrap();
    let cache = run.join("llama-cache");
    std::fs::create_dir(&cache).unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.env("LLAMA_CACHE", &cache)
        .arg("--models-dir")
        .arg(&models)
        .arg("--models-preset")
        .arg(&ini)
        .args([
            "--models-max",
            &max.to_string(),
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .args(["-c", "2048", "-np", "1", "-t", "1", "--no-ui"]);
    Some(Server::spawn(
        cmd,
        run.join("router.log"),
        format!("127.0.0.1:{port}"),
        "/health",
    ))
}

/// `model`'s state in the router's `/models`; the run loop's residency reader
/// (`ServerKind::residency_of`) must read the same answer alike.
pub fn router_state(server: &Server, model: &str) -> ModelState {
    let body = server.get("/models");
    let models = parse_models(body.as_bytes()).unwrap();
    let state = state_of(&models, model).unwrap_or_else(|| panic!("{model} not in /models"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let same = match state {
        ModelState::Unloaded => ModelResidency::Unloaded,
        ModelState::Loading => ModelResidency::Loading,
        ModelState::Loaded => ModelResidency::Loaded,
        ModelState::Sleeping => ModelResidency::Sleeping,
    };
    assert_eq!(
        ServerKind::LlamaRouter.residency_of(&json, model),
        Some(same),
        "{body}"
    );
    state
}

/// Polls `/models` until `model` is `want` (up to `limit`); how long it took.
pub fn wait_router(server: &Server, model: &str, want: ModelState, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let state = router_state(server, model);
        if state == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{model} stayed {state:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The router (`--models-max 2`) with [`SMALL`] put to sleep `small_sleep` s after its
/// last request and [`BIG`] never, and [`BIG`] loaded by a chat request.
pub fn router_with_big_running(run: &Path, small_sleep: i64) -> Option<Server> {
    let preset = Preset {
        models: vec![
            ModelPreset {
                id: SMALL.into(),
                sleep_idle_seconds: Some(small_sleep),
            },
            ModelPreset {
                id: BIG.into(),
                sleep_idle_seconds: None,
            },
        ],
        ..Preset::default()
    };
    let server = start_router(run, 2, &preset)?;
    assert_eq!(server.chat(BIG), 200, "{}", server.log_text());
    Some(server)
}

/// llama-swap in front of the upstream llama-server, its config written by kabench
/// with the models in a folder whose name needs quoting (a space, a quote, a `#`).
pub fn start_swap(run: &Path, ttl: u64) -> Option<Server> {
    start_swap_stopping_in(run, ttl, 0)
}

/// [`start_swap`] with each upstream stopping `stop_s` seconds after llama-swap's
/// SIGTERM (a shell around llama-server traps it and waits), so that `/running`
/// shows the model `stopping` that long, as a large model's stop does.
pub fn start_swap_stopping_in(run: &Path, ttl: u64, stop_s: u32) -> Option<Server> {
    let swap = shared_bin("llama-swap/bin/llama-swap")?;
    let llama = shared_bin("llama-cpp/bin/llama-server")?;
    let gguf = gguf_dir()?;
    let odd = run.join("models dir 'q' #1");
    std::fs::create_dir(&odd).unwrap();
    let lit = |s: &str| CmdArg::Literal(s.to_string());
    let mut models = Vec::new();
    for m in [SMALL, BIG] {
        let file = odd.join(format!("{m}.gguf"));
        std::os::unix::fs::symlink(gguf.join(format!("{m}.gguf")), &file).unwrap();
        let mut cmd = Vec::new();
        if stop_s > 0 {
            let trap = format!("trap 'sleep {stop_s}; exit 0' TERM; \"$0\" \"$@\" & wait $!");
            cmd.extend([lit("bash"), lit("-c"), lit(&trap)]);
        }
        cmd.extend([
            lit(llama.to_str().unwrap()),
            lit("--host"),
            lit("127.0.0.1"),
        ]);
        cmd.extend([lit("--port"), CmdArg::Port, lit("--alias"), CmdArg::ModelId]);
        cmd.extend(["-c", "2048", "-np", "1", "-t", "1", "--no-webui", "-m"].map(lit));
        cmd.push(lit(file.to_str().unwrap()));
        models.push(SwapModel {
            id: m.to_string(),
            cmd,
            ttl,
        });
    }
    let config = SwapConfig {
        health_check_timeout: 30,
        start_port: kabench::llama::server::free_ports(2)
            .expect("two consecutive free loopback ports"),
        models,
    };
    let yaml = write_swap_config(run, 0, &config).unwrap();
    let port = free_port();
    let mut cmd = Command::new(swap);
    cmd.arg("-config")
        .arg(&yaml)
        .arg("-listen")
        .arg(format!("127.0.0.1:{port}"));
    Some(Server::spawn(
        cmd,
        run.join("llama-swap.log"),
        format!("127.0.0.1:{port}"),
        "/health",
    ))
}

/// `model`'s state in llama-swap's `/running` (`None`: not running); the run loop's
/// residency reader must read the same answer alike.
pub fn swap_state(server: &Server, model: &str) -> Option<SwapState> {
    let body = server.get("/running");
    let state = swap::state_of(&parse_running(body.as_bytes()).unwrap(), model);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let same = match state {
        Some(SwapState::Ready) => ModelResidency::Loaded,
        Some(SwapState::Starting) => ModelResidency::Loading,
        Some(SwapState::Stopping) => ModelResidency::Stopping,
        _ => ModelResidency::Unloaded,
    };
    assert_eq!(
        ServerKind::LlamaSwap.residency_of(&json, model),
        Some(same),
        "{body}"
    );
    state
}
