//! The adaptive `/api/ps` schedule, a run's default (`ps_adaptive = false` turns it
//! off): it asks far less often than a fixed fast schedule, yet reads the same cold
//! requests and the same idle memory. The simulator runs in this process behind a layer that counts
//! its `/api/ps` requests; `kabench run` targets it over loopback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kabench::engine::sim::{self, SimState};
use kabench::engine::sim_settings::SimSettings;

use crate::common::{cold_per_cell, kabench, read_json};

/// Sends of the short-lived model (keep_alive 300ms): groups 0.9 s and more apart, so
/// it unloads between them and the first request of each group is cold.
const SHORT_TRACE: &str = "time_s\n0.0\n0.1\n1.0\n1.1\n2.4\n3.8\n4.0\n";
/// Sends of the model kept forever: one load, then warm.
const KEPT_TRACE: &str = "time_s\n0.05\n1.5\n3.0\n4.5\n";

/// The scenario, with `telemetry` as its `[telemetry]` lines.
fn scenario(telemetry: &str) -> String {
    format!(
        r#"name = "ps-adaptive"
seed = 3

[[stream]]
name = "short"
model = "qwen2.5:3b-instruct-q4_0"
api = "generate"
num_ctx = 2048
prompt_tokens = 16
max_tokens = 4
keep_alive = "300ms"
arrival = {{ kind = "trace", file = "short.csv", column = "time_s" }}

[[stream]]
name = "kept"
model = "tiny-50m"
api = "generate"
num_ctx = 2048
prompt_tokens = 16
max_tokens = 4
keep_alive = -1
arrival = {{ kind = "trace", file = "kept.csv", column = "time_s" }}

[run]
requests = 11
timeout = "10s"

[telemetry]
sources = ["ollama_ps"]
{telemetry}
"#
    )
}

/// Runs the scenario with `telemetry` against the simulator at `url` into `dir/run`;
/// returns the run folder.
async fn run(dir: &Path, url: &str, telemetry: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("short.csv"), SHORT_TRACE).unwrap();
    std::fs::write(dir.join("kept.csv"), KEPT_TRACE).unwrap();
    let sc = dir.join("s.toml");
    std::fs::write(&sc, scenario(telemetry)).unwrap();
    let out = dir.join("run");
    let mut cmd = kabench();
    cmd.args(["run", sc.to_str().unwrap(), "--target", url])
        .args(["--no-prewarm", "--quiet", "--out", out.to_str().unwrap()]);
    let done = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        done.status.success(),
        "kabench run failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// Serves the simulator on loopback, counting its `/api/ps` requests; returns the base
/// URL and the count.
async fn counted_sim() -> (String, Arc<AtomicUsize>) {
    let state = SimState::new(&SimSettings::for_tests(), 5).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = sim::app(state).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            if req.uri().path() == "/api/ps" {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

/// The cell's idle GB·s and the short model's release delay.
fn figures(out: &Path) -> (f64, Option<f64>) {
    let summary = read_json(&out.join("summary.json"));
    let vram = &summary["cells"][0]["vram"];
    assert_eq!(vram["source"], "ollama_ps", "{vram}");
    let idle = vram["idle_gb_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("idle GB·s missing: {vram}"));
    let release = vram["release"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"].as_str().unwrap().starts_with("qwen2.5:3b"))
        .and_then(|r| r["release_delay_s"].as_f64());
    (idle, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_adaptive_polls_api_ps_far_less_and_measures_the_same() {
    let fixed_dir = tempfile::tempdir().unwrap();
    let (url, hits) = counted_sim().await;
    let fixed = run(
        fixed_dir.path(),
        &url,
        "ps_interval = \"20ms\"\nps_adaptive = false",
    )
    .await;
    let fixed_polls = hits.swap(0, Ordering::SeqCst);

    let adaptive_dir = tempfile::tempdir().unwrap();
    let (url, hits) = counted_sim().await;
    // The default: adaptive, fast at 20 ms around the changes it expects.
    let adaptive = run(adaptive_dir.path(), &url, "ps_interval = \"20ms\"").await;
    let adaptive_polls = hits.load(Ordering::SeqCst);

    // The run lasts about 5 s plus its tail: a fixed 20 ms schedule asks hundreds of
    // times, the adaptive one about twice a second plus a few fast polls per load and
    // unload.
    assert!(
        adaptive_polls * 3 < fixed_polls,
        "adaptive {adaptive_polls} /api/ps requests, fixed 20 ms {fixed_polls}"
    );

    // The same requests cold: the first of each group of the short model, and the
    // first of the kept one.
    let (cold_fixed, cold_adaptive) = (cold_per_cell(&fixed), cold_per_cell(&adaptive));
    assert_eq!(cold_adaptive, cold_fixed);
    let (sent, cold) = cold_adaptive.values().next().copied().unwrap();
    assert_eq!((sent, cold), (11, 5), "{cold_adaptive:?}");

    // The same idle memory, and the short model's release seen as promptly.
    let (idle_fixed, release_fixed) = figures(&fixed);
    let (idle_adaptive, release_adaptive) = figures(&adaptive);
    eprintln!(
        "/api/ps requests: adaptive {adaptive_polls}, fixed {fixed_polls}; idle GB·s adaptive \
         {idle_adaptive:.4}, fixed {idle_fixed:.4}; release adaptive {release_adaptive:?} s, \
         fixed {release_fixed:?} s"
    );
    assert!(idle_fixed > 0.0);
    let drift = (idle_adaptive - idle_fixed).abs() / idle_fixed;
    assert!(
        drift < 0.05,
        "idle GB·s adaptive {idle_adaptive}, fixed {idle_fixed}"
    );
    let (rf, ra) = (
        release_fixed.expect("release seen at 20 ms"),
        release_adaptive.expect("release seen by the adaptive schedule"),
    );
    assert!(
        (ra - rf).abs() < 0.1,
        "release delay adaptive {ra} s, fixed {rf} s"
    );
}

/// A cell whose model is kept forever, `/api/ps` read only by the run itself (no
/// telemetry), on the fixed schedule: no release is due in its tail, so the release wait
/// asks every 500 ms, not every 50 ms (which was about 100 requests over a 5 s tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_with_no_release_due_asks_api_ps_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let (url, hits) = counted_sim().await;
    let sc = dir.path().join("kept.toml");
    std::fs::write(
        &sc,
        r#"name = "kept"
[[stream]]
name = "kept"
model = "tiny-50m"
api = "generate"
num_ctx = 2048
prompt_tokens = 16
max_tokens = 4
keep_alive = -1
arrival = { kind = "constant", rate = "2/s" }
[run]
requests = 2
timeout = "10s"
[telemetry]
sources = []
ps_adaptive = false
"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    let mut cmd = kabench();
    cmd.args(["run", sc.to_str().unwrap(), "--target", &url])
        .args(["--no-prewarm", "--quiet", "--out", out.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let done = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        done.status.success(),
        "kabench run failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let polls = hits.load(Ordering::SeqCst);
    let cell = &read_json(&out.join("run.json"))["cells"][0];
    eprintln!("/api/ps requests: {polls} in {took:?}; cell {cell}");
    // The cell runs its 0.5 s of sends and watches its idle horizon's tail: a poll
    // every 500 ms is about a dozen; every 50 ms in the tail, over a hundred.
    assert!(
        took > std::time::Duration::from_secs(3),
        "the tail was watched: {took:?}"
    );
    assert!(
        polls < 40,
        "{polls} /api/ps requests in {took:?} with nothing to release"
    );
    assert_eq!(cold_per_cell(&out).values().next(), Some(&(2, 1)));
}
