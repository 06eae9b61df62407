//! Telemetry sources against small servers on loopback: a recorded-format DCGM exporter
//! scrape, a recorded `/api/ps` reply, the simulator's metrics, and a whole sampling run
//! in which NVML is unavailable (no driver here) while the other sources go on.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use kabench::folder::{self, RunFolder, RunMeta};
use kabench::telemetry::ollama_ps::OllamaPsSampler;
use kabench::telemetry::prometheus::PromSampler;
use kabench::telemetry::{self, Sampler, SourceError, TelemetryConfig};
use tokio_util::sync::CancellationToken;

const DCGM: &str = include_str!("../fixtures/dcgm_metrics.txt");

/// `/api/ps` of Ollama v0.11.6 with two resident models (shared/fixtures/ollama/
/// ps-two-models-v0.11.6.pretty.json).
const PS_TWO_MODELS: &str = r#"{
  "models": [
    {"name": "granite3.3:2b", "model": "granite3.3:2b", "size": 2629206853,
     "digest": "07bd1f170855240f9e162bf54ea494a8bc1c73d8cbd1365d7fccbeb7d2504947",
     "details": {"parent_model": "", "format": "gguf", "family": "granite",
                 "families": ["granite"], "parameter_size": "2.5B", "quantization_level": "Q4_K_M"},
     "expires_at": "2025-08-23T15:38:39.2249446+02:00", "size_vram": 2629206853, "context_length": 4096},
    {"name": "smollm2:1.7b", "model": "smollm2:1.7b", "size": 3501615104,
     "digest": "cef4a1e09247f018ca0c482ad4c2ce1474aba5e87f245dacf97f07948d05d8b4",
     "details": {"parent_model": "", "format": "gguf", "family": "llama",
                 "families": ["llama"], "parameter_size": "1.7B", "quantization_level": "Q8_0"},
     "expires_at": "2025-08-23T15:38:16.054006+02:00", "size_vram": 3501615104, "context_length": 4096}
  ]
}"#;

const SIM_METRICS: &str = "# TYPE kabench_sim_vram_used_bytes gauge\n\
kabench_sim_vram_used_bytes 6130821957\n\
# TYPE kabench_sim_vram_total_bytes gauge\n\
kabench_sim_vram_total_bytes 25769803776\n\
# TYPE kabench_sim_model_size_vram_bytes gauge\n\
kabench_sim_model_size_vram_bytes{model=\"granite3.3:2b\"} 2629206853\n\
kabench_sim_model_size_vram_bytes{model=\"smollm2:1.7b\"} 3501615104\n";

const MIB: u64 = 1 << 20;

/// Serves the fixtures on 127.0.0.1:0 and returns the base URL.
async fn serve() -> String {
    let app = Router::new()
        .route("/metrics", get(|| async { DCGM }))
        .route("/sim/metrics", get(|| async { SIM_METRICS }))
        .route(
            "/api/ps",
            get(|| async { ([("content-type", "application/json")], PS_TWO_MODELS) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn prometheus_sampler_parses_a_served_dcgm_scrape() {
    let base = serve().await;
    let url = format!("{base}/metrics");
    let mut s = PromSampler::new("prometheus", &url, None, Duration::from_millis(100)).unwrap();
    let rows = s.sample().await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let gpu0 = &rows[0];
    assert_eq!(gpu0.device, "gpu-node-a100-01/gpu0");
    assert_eq!(gpu0.model, "");
    assert_eq!(gpu0.used_bytes, 12345 * MIB);
    // used + free + reserved = the A100's 40 GiB.
    assert_eq!(gpu0.total_bytes, Some(40960 * MIB));
    assert_eq!(gpu0.extra, "NVIDIA A100-SXM4-40GB");
    assert_eq!(rows[1].device, "gpu-node-a100-01/gpu1");
    assert_eq!(rows[1].used_bytes, 0);
}

#[tokio::test]
async fn ps_poller_reads_a_recorded_reply_with_a_total_row() {
    let base = serve().await;
    let mut s = OllamaPsSampler::new(&base).unwrap();
    let rows = s.sample().await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].model, "granite3.3:2b");
    assert_eq!(rows[0].used_bytes, 2629206853);
    assert_eq!(rows[0].extra, "2025-08-23T15:38:39.2249446+02:00");
    assert_eq!(rows[1].total_bytes, Some(3501615104));
    assert_eq!(rows[2].model, "");
    assert_eq!(rows[2].used_bytes, 2629206853 + 3501615104);
}

#[tokio::test]
async fn a_missing_endpoint_is_unavailable_and_a_closed_port_a_failure() {
    let base = serve().await;
    let mut s =
        PromSampler::scrape("sim", &format!("{base}/nothing"), Duration::from_millis(10)).unwrap();
    assert!(matches!(s.sample().await, Err(SourceError::Unavailable(_))));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut ps = OllamaPsSampler::new(&format!("http://{closed}")).unwrap();
    assert!(matches!(ps.sample().await, Err(SourceError::Failed(_))));
}

/// Captures log output of the whole test binary (only one test installs it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_nvml_goes_on_with_the_other_sources_at_10ms() {
    let logs = Captured::default();
    let writer = logs.clone();
    // The tracing subscriber only: `init()` would also install a `log` logger, which
    // another test of this binary (goose's swarm) may already have set.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .expect("the only tracing subscriber of the test binary");

    let base = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let run = RunFolder::create(dir.path(), "name = \"t\"\n", RunMeta::default()).unwrap();
    let me: String = std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let config = TelemetryConfig {
        sources: vec![
            "nvml".into(),
            "ollama_ps".into(),
            "rss".into(),
            "prometheus".into(),
            "sim".into(),
        ],
        interval: Duration::from_millis(10),
        ps_interval: Some(Duration::from_millis(10)),
        process_names: vec![me.clone()],
        ollama_url: Some(base.clone()),
        fleet_urls: Vec::new(),
        prometheus_url: Some(format!("{base}/metrics")),
        prometheus_query: None,
        sim_metrics_url: Some(format!("{base}/sim/metrics")),
    };
    let epoch = Instant::now();
    let handle =
        telemetry::start(config, epoch, run.vram_path(), CancellationToken::new()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = handle.stop().await;
    let elapsed_ms = folder::ms(epoch.elapsed());

    let nvml_here = nvml_wrapper::Nvml::init().is_ok_and(|n| n.device_count().unwrap_or(0) > 0);
    let nvml = &report.sources["nvml"];
    if nvml_here {
        assert_eq!(nvml, "ok");
        assert!(report.gpu.is_some());
    } else {
        assert!(nvml.starts_with("unavailable: "), "{nvml}");
        assert!(report.gpu.is_none());
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("telemetry source nvml unavailable").count(),
            1,
            "{text}"
        );
    }
    for source in ["ollama_ps", "rss", "prometheus", "sim"] {
        assert_eq!(report.sources[source], "ok", "{source}: {report:?}");
    }
    assert!(report.write_error.is_none());

    let rows = folder::read_vram(dir.path()).unwrap();
    assert_eq!(rows.len() as u64, report.samples);
    for source in ["ollama_ps", "rss", "prometheus", "sim"] {
        let polls = rows
            .iter()
            .filter(|r| r.source == source && (r.model.is_empty() || source == "rss"))
            .count();
        // 300 ms at 10 ms: a loaded 2-core machine still gets several polls in.
        assert!(polls >= 5, "{source}: {polls} polls");
    }
    assert!(rows.iter().all(|r| r.t_ms >= 0.0 && r.t_ms <= elapsed_ms));
    let ps_total = rows
        .iter()
        .find(|r| r.source == "ollama_ps" && r.model.is_empty())
        .unwrap();
    assert_eq!(ps_total.used_bytes, 2629206853 + 3501615104);
    assert!(
        rows.iter()
            .any(|r| r.source == "sim" && r.model == "smollm2:1.7b" && r.used_bytes == 3501615104)
    );
    assert!(
        rows.iter()
            .any(|r| r.source == "rss" && r.model == me && r.used_bytes > MIB)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_rows_keep_the_telemetry_interval_when_a_faster_reader_shares_the_poller() {
    use kabench::telemetry::ps_feed::PsFeed;
    let base = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let run = RunFolder::create(dir.path(), "name = \"t\"\n", RunMeta::default()).unwrap();
    let feed = PsFeed::new(&base).unwrap();
    // A residency watcher has the poller ask every 20 ms.
    let mut fast = feed.subscribe(Duration::from_millis(20));
    let config = TelemetryConfig {
        sources: vec!["ollama_ps".into()],
        ps_interval: Some(Duration::from_millis(200)),
        ollama_url: Some(base.clone()),
        ..Default::default()
    };
    let epoch = Instant::now();
    let handle = telemetry::start_with_feeds(
        config,
        std::slice::from_ref(&feed),
        epoch,
        run.vram_path(),
        CancellationToken::new(),
    )
    .unwrap();
    let mut answers = 0;
    let counting = async {
        while fast.changed().await {
            answers += 1;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1000), counting).await;
    let report = handle.stop().await;
    assert_eq!(report.sources["ollama_ps"], "ok", "{report:?}");
    let totals: Vec<f64> = folder::read_vram(dir.path())
        .unwrap()
        .into_iter()
        .filter(|r| r.source == "ollama_ps" && r.model.is_empty())
        .map(|r| r.t_ms)
        .collect();
    // The same answers: the 20 ms reader saw many, vram.csv got one per 200 ms (less
    // a quarter for jitter; stamps are mid-poll), as when the telemetry polls alone.
    assert!(answers >= 8, "{answers} answers in 1 s at 20 ms");
    assert!((2..=8).contains(&totals.len()), "{totals:?}");
    assert!(
        totals.windows(2).all(|w| w[1] - w[0] >= 100.0),
        "{totals:?}"
    );
}
