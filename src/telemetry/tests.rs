//! The sampling task, its sources and its graceful unavailability.

use super::*;

#[test]
fn truncated_linux_process_names_still_match() {
    assert!(process_name_matches("ollama", "ollama"));
    assert!(process_name_matches(
        "ollama_llama_se",
        "ollama_llama_server"
    ));
    assert!(!process_name_matches("ollama_llama_se", "ollama"));
    assert!(!process_name_matches("ollamax", "ollama"));
}

#[tokio::test]
async fn unknown_source_and_zero_interval_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vram.csv");
    std::fs::write(&path, "t_ms\n").unwrap();
    let bad = TelemetryConfig {
        sources: vec!["nvidia-smi".into()],
        ..Default::default()
    };
    let err = start(bad, Instant::now(), &path, CancellationToken::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("nvidia-smi"), "{err}");
    let zero = TelemetryConfig {
        interval: Duration::ZERO,
        ..Default::default()
    };
    assert!(start(zero, Instant::now(), &path, CancellationToken::new()).is_err());
    let zero_ps = TelemetryConfig {
        ps_interval: Some(Duration::ZERO),
        ..Default::default()
    };
    assert!(start(zero_ps, Instant::now(), &path, CancellationToken::new()).is_err());
}

#[test]
fn ps_polls_no_faster_than_100_ms_unless_asked() {
    let at = |interval_ms: u64, ps_ms: Option<u64>| {
        TelemetryConfig {
            interval: Duration::from_millis(interval_ms),
            ps_interval: ps_ms.map(Duration::from_millis),
            ..Default::default()
        }
        .effective_ps_interval()
    };
    assert_eq!(at(10, None), Duration::from_millis(100));
    assert_eq!(at(100, None), Duration::from_millis(100));
    assert_eq!(at(500, None), Duration::from_millis(500));
    assert_eq!(at(10, Some(10)), Duration::from_millis(10));
    assert_eq!(at(100, Some(1000)), Duration::from_millis(1000));
}
