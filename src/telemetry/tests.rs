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

#[test]
fn the_writer_writes_every_row_in_batches_and_the_rows_sent_after_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vram.csv");
    folder::write_csv::<VramSample>(&path, []).unwrap();
    let out = folder::append_to::<VramSample>(&path).unwrap();
    let (tx, rx) = mpsc::channel::<VramSample>();
    let stop = CancellationToken::new();
    let failed = (CancellationToken::new(), Arc::new(OnceLock::new()));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || write_rows(out, rx, failed, stop))
    };
    let row = |t_ms: f64| VramSample {
        t_ms,
        source: "rss".into(),
        ..Default::default()
    };
    for t in 0..5 {
        tx.send(row(f64::from(t))).unwrap();
    }
    // A batch reaches the file within a write interval, rows in the order sent.
    let read = || folder::read_vram_limited(dir.path(), 100, &mut Vec::new()).unwrap();
    let deadline = Instant::now() + WRITE_EVERY * 4;
    while read().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read().len(), 5);
    // Stopped: a sender still alive (a managed server's sampler) has its last rows
    // written, and the writer ends when it goes.
    stop.cancel();
    std::thread::sleep(Duration::from_millis(50));
    tx.send(row(5.0)).unwrap();
    tx.send(row(6.0)).unwrap();
    drop(tx);
    assert_eq!(writer.join().unwrap(), (7, None));
    let t: Vec<f64> = read().iter().map(|r| r.t_ms).collect();
    assert_eq!(t, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}
