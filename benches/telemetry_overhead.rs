//! Sampler overhead: runs the NVML sampler (or, without a GPU, the RSS fallback) and the
//! `/api/ps` poller at several intervals and prints the CPU time this whole process used
//! over 10 s of steady sampling (after 1 s of warm-up) as a share of one core, from
//! per-thread nanoseconds and from `/proc/self/stat` ticks, next to a run with no source.
//! The `/api/ps` server runs in a child process, so serving polls is not counted.
//! `cargo bench --bench telemetry_overhead`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use kabench::folder::{RunFolder, RunMeta};
use kabench::telemetry::{self, TelemetryConfig};
use tokio_util::sync::CancellationToken;

const RUN_FOR: Duration = Duration::from_secs(10);
/// Sampling before the measured span, so start-up costs stay out of it.
const WARM_UP: Duration = Duration::from_secs(1);
const SERVE_ARG: &str = "--serve-ps";
const PS: &str = r#"{"models":[{"name":"granite3.3:2b","model":"granite3.3:2b","size":2629206853,"digest":"07bd1f170855240f9e162bf54ea494a8bc1c73d8cbd1365d7fccbeb7d2504947","details":{"parent_model":"","format":"gguf","family":"granite","families":["granite"],"parameter_size":"2.5B","quantization_level":"Q4_K_M"},"expires_at":"2025-08-23T15:38:39.2249446+02:00","size_vram":2629206853,"context_length":4096}]}"#;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may hold spaces, end with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / USER_HZ
}

/// On-CPU nanoseconds of each live thread of this process, by thread id, with its name
/// (`/proc/self/task/*/schedstat`, first field): finer than the 10 ms ticks of
/// `/proc/self/stat`. Threads live through the whole bench (see the runtime's keep-alive).
fn thread_cpu() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(ns) = ns {
            out.insert(tid, (name.trim().to_string(), ns));
        }
    }
    out
}

/// CPU use of this process at one moment.
struct Snap {
    at: Instant,
    ticks: f64,
    threads: BTreeMap<u32, (String, u64)>,
}

impl Snap {
    fn take() -> Snap {
        Snap {
            at: Instant::now(),
            ticks: cpu_seconds(),
            threads: thread_cpu(),
        }
    }
}

/// CPU used between two snapshots: from `/proc/self/stat` ticks (`cpu`), from per-thread
/// nanoseconds (`fine`, and per thread name), over `wall` seconds.
struct Steady {
    cpu: f64,
    fine: f64,
    wall: f64,
    threads: Vec<(String, f64)>,
}

impl Steady {
    fn between(from: &Snap, to: &Snap) -> Steady {
        Steady {
            cpu: to.ticks - from.ticks,
            fine: thread_total(&from.threads, &to.threads),
            wall: (to.at - from.at).as_secs_f64(),
            threads: thread_delta(&from.threads, &to.threads),
        }
    }
}

/// CPU seconds of all threads between two [`thread_cpu`] snapshots.
fn thread_total(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> f64 {
    thread_delta(before, after).iter().map(|t| t.1).sum()
}

/// CPU seconds per thread name between two [`thread_cpu`] snapshots, busiest first.
fn thread_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> Vec<(String, f64)> {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, ns)) in after {
        let start = before.get(tid).map_or(0, |b| b.1);
        *by_name.entry(name.clone()).or_default() += ns.saturating_sub(start);
    }
    let mut out: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(n, ns)| (n, ns as f64 / 1e9))
        .filter(|(_, s)| *s > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// The 1-minute load average, as a measure of how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Child mode: serve `/api/ps` on loopback and print the port.
fn serve_ps() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the child server");
    rt.block_on(async {
        let app = Router::new().route(
            "/api/ps",
            get(|| async { ([("content-type", "application/json")], PS) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        println!("{}", listener.local_addr().expect("local address").port());
        let _ = axum::serve(listener, app).await;
    });
}

fn spawn_server() -> (Child, u16) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .arg(SERVE_ARG)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the /api/ps server");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("child stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the port");
    (child, line.trim().parse().expect("a port number"))
}

/// This executable's process name as Linux reports it (15 bytes at most).
fn own_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect()
}

/// Times single RSS samples for 3 s at 10 ms: the usual sample and the ones that also
/// rescan the process table (about once a second).
fn rss_sample_costs() {
    use kabench::telemetry::BlockingSampler;
    let Ok(mut s) = telemetry::rss::RssSampler::new(vec![own_name()], Duration::from_millis(10))
    else {
        return;
    };
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let _ = s.sample();
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = times[0];
    let mut rest = times[1..].to_vec();
    rest.sort();
    let median = rest[rest.len() / 2];
    let slowest: Vec<String> = rest
        .iter()
        .rev()
        .take(4)
        .map(|d| format!("{d:?}"))
        .collect();
    println!(
        "rss sample cost: first (full scan) {first:?}, median {median:?}, slowest (rescans) {}",
        slowest.join(" ")
    );
}

/// The `/api/ps` interval a run used.
fn config_ps(interval_ms: u64, ps_ms: Option<u64>) -> Duration {
    TelemetryConfig {
        interval: Duration::from_millis(interval_ms),
        ps_interval: ps_ms.map(Duration::from_millis),
        ..Default::default()
    }
    .effective_ps_interval()
}

fn main() {
    if std::env::args().any(|a| a == SERVE_ARG) {
        serve_ps();
        return;
    }
    let (mut child, port) = spawn_server();
    let nvml = nvml_wrapper::Nvml::init().is_ok_and(|n| n.device_count().unwrap_or(0) > 0);
    let local = if nvml { "nvml" } else { "rss" };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking threads stay for the whole bench, so per-thread times add up.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .expect("a runtime");
    println!("## Telemetry overhead");
    println!(
        "sources: {local} + ollama_ps (server in a child process), {RUN_FOR:?} each; load average {}",
        load_average()
    );
    // (sources, interval, /api/ps interval: None = the default, no faster than 100 ms)
    let runs: [(&[&str], u64, Option<u64>); 7] = [
        (&[], 10, None),
        (&[local, "ollama_ps"], 10, None),
        (&[local], 10, None),
        (&["ollama_ps"], 10, None),
        (&["ollama_ps"], 10, Some(10)),
        (&[local, "ollama_ps"], 10, Some(10)),
        (&[local, "ollama_ps"], 100, None),
    ];
    for (sources, interval_ms, ps_ms) in runs {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let run = RunFolder::create(dir.path(), "", RunMeta::default()).expect("a run folder");
        let config = TelemetryConfig {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_millis(interval_ms),
            ps_interval: ps_ms.map(Duration::from_millis),
            // The server child and this process share a name: RSS reads two live pids
            // per sample, as it would an Ollama server and a runner.
            process_names: vec![own_name()],
            ollama_url: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        };
        let (steady, once, report) = rt.block_on(async {
            // Let the runtime settle before measuring.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let epoch = Instant::now();
            let before = Snap::take();
            let handle = telemetry::start(config, epoch, run.vram_path(), CancellationToken::new())
                .expect("telemetry starts");
            // Start-up (HTTP client, first process scan) is paid once per run: measure
            // the steady state after it.
            tokio::time::sleep(WARM_UP).await;
            let from = Snap::take();
            tokio::time::sleep(RUN_FOR).await;
            let to = Snap::take();
            let report = handle.stop().await;
            let after = Snap::take();
            let once = thread_total(&before.threads, &from.threads)
                + thread_total(&to.threads, &after.threads);
            (Steady::between(&from, &to), once, report)
        });
        let Steady {
            cpu,
            fine,
            wall,
            threads,
        } = steady;
        let ps = if sources.contains(&"ollama_ps") {
            format!(", /api/ps every {:?}", config_ps(interval_ms, ps_ms))
        } else {
            String::new()
        };
        let name = if sources.is_empty() {
            "(none)".to_string()
        } else {
            sources.join(" + ")
        };
        let per_thread: Vec<String> = threads
            .iter()
            .map(|(n, s)| format!("{n} {:.3}%", 100.0 * s / wall))
            .collect();
        println!(
            "{name:<16} every {interval_ms:>3} ms{ps}: {:.3}% of one core ({fine:.4} s on CPU over {wall:.2} s; utime+stime {:.2}%); start and stop {:.1} ms CPU; {} rows, {:?}",
            100.0 * fine / wall,
            100.0 * cpu / wall,
            1e3 * once,
            report.samples,
            report.sources
        );
        println!("    by thread: {}", per_thread.join(", "));
    }
    println!("load average at the end: {}", load_average());
    rss_sample_costs();
    let _ = child.kill();
    let _ = child.wait();
}
