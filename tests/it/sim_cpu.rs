//! The simulator standing in for Ollama's CPU build (`gpus = 0`) over real loopback:
//! `/api/ps` holds every model in system memory with the sizes the CPU build measured,
//! only `OLLAMA_MAX_LOADED_MODELS` (0 → 3) limits co-residency, `/metrics` models no
//! VRAM, and `run.json`'s description says so.

use std::net::SocketAddr;

use kabench::engine::sim;
use kabench::engine::sim_settings::SimSettings;
use kabench::ollama::OllamaClient;
use kabench::units::KeepAlive;

/// What `/api/ps` of Ollama v0.32.15's CPU build showed at num_ctx 4096 (size_vram 0),
/// in load order: loading the fourth evicted the first (E5, 3 with no GPU).
const MEASURED: [(&str, u64); 4] = [
    ("tiny-50m:latest", 139_271_862),
    ("tiny-50m:q8_0", 113_455_921),
    ("tiny-50m:q4_K_M", 101_994_985),
    ("tiny-150m:latest", 349_563_779),
];

#[tokio::test]
async fn e2_e5_cpu_host_matches_the_cpu_build() {
    let settings = SimSettings {
        gpus: Some(0),
        ..SimSettings::for_tests()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = sim::spawn(&settings, 7, listen).await.unwrap();
    let client = OllamaClient::new(&handle.base_url()).unwrap();
    let forever = KeepAlive::parse("-1").unwrap();
    for (name, _) in MEASURED {
        // Requested as scenarios write them (`tiny-50m`), shown with the tag.
        let asked = name.trim_end_matches(":latest");
        client
            .load(asked, Some(&forever), Some(4096))
            .await
            .unwrap();
    }
    let ps = client.ps().await.unwrap();
    let mut got: Vec<(String, u64, u64, Option<u64>)> = ps
        .models
        .iter()
        .map(|m| (m.name.clone(), m.size, m.size_vram, m.context_length))
        .collect();
    got.sort();
    let mut want: Vec<(String, u64, u64, Option<u64>)> = MEASURED[1..]
        .iter()
        .map(|(n, s)| (n.to_string(), *s, 0, Some(4096)))
        .collect();
    want.sort();
    assert_eq!(got, want, "three stay, in system memory, the first evicted");

    let metrics = reqwest::get(format!("{}/metrics", handle.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nkabench_sim_vram_used_bytes 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nkabench_sim_vram_total_bytes 0\n"),
        "{metrics}"
    );
    let described = handle.state.describe(&[("tiny-50m".into(), 4096)]);
    assert_eq!(described.gpus, 0);
    assert_eq!(described.vram_bytes, 0);
    assert!(described.gpu.starts_with("CPU-only host"), "{described:?}");
    assert!(described.calibrated_from.is_none());
    handle.shutdown().await;
}
