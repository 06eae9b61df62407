//! Tests of the request-log reader.

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/predict")
        .join(name)
}

fn all(log: &RequestLog) -> Vec<Request> {
    log.requests()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn every_column_of_the_fixture_is_read() {
    let log = RequestLog::open(&fixture("requests.csv"), ReadOptions::default()).unwrap();
    let scan = log.scan();
    assert_eq!(scan.rows, 5);
    assert!(scan.sorted);
    assert!(scan.has_keep_alive);
    assert_eq!(
        scan.models,
        ["qwen2.5:7b-instruct-q4_K_M", "llama3.2:3b"].map(String::from)
    );
    assert_eq!(scan.model_rows, [3, 2]);
    assert_eq!(scan.model_ctx, [Some(4096), Some(2048)]);
    assert_eq!(scan.clients, ["app", "cli"].map(String::from));
    let kas: Vec<&str> = scan.keep_alives.iter().map(KeepAlive::written).collect();
    assert_eq!(kas, ["5m", "-1", "300"]);
    assert!((scan.span_s - 694.25).abs() < 1e-6, "{}", scan.span_s);
    assert_eq!(scan.sha256.len(), 64);
    let r = all(&log);
    let t: Vec<f64> = r.iter().map(|r| r.t).collect();
    for (got, want) in t.iter().zip([0.0, 4.5, 5.0, 694.0, 694.25]) {
        assert!((got - want).abs() < 1e-6, "{t:?}");
    }
    assert_eq!(r[0].prompt_tokens, Some(300));
    assert_eq!(r[0].output_tokens, Some(32));
    assert_eq!(r[0].keep_alive, Some(0));
    assert_eq!(r[2].model, 1);
    assert_eq!(r[2].num_ctx, None);
    assert_eq!(r[2].keep_alive, None);
    assert_eq!(r[2].client, Some(1));
    assert_eq!(r[3].prompt_tokens, None);
    assert_eq!(r[3].keep_alive, Some(1));
    assert_eq!(r[4].keep_alive, Some(2));
}

#[test]
fn epoch_milliseconds_are_recognised_and_scaled() {
    let opts = ReadOptions {
        time_scale: 2.0,
        ..ReadOptions::default()
    };
    let log = RequestLog::open(&fixture("epoch_ms.csv"), opts).unwrap();
    let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
    assert_eq!(t, [0.0, 0.5, 20.5]);
    assert!(log.scan().notes.iter().any(|n| n.contains("milliseconds")));
    assert!(!log.scan().has_keep_alive);
}

#[test]
fn unsorted_input_is_sorted_with_a_note_and_duplicates_noted() {
    let log = RequestLog::open(&fixture("unsorted.csv"), ReadOptions::default()).unwrap();
    assert!(!log.scan().sorted);
    assert!(
        log.scan()
            .notes
            .iter()
            .any(|n| n.contains("not in time order")),
        "{:?}",
        log.scan().notes
    );
    let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
    assert_eq!(t, [0.0, 0.0, 30.0, 60.0]);
    assert!((log.scan().span_s - 60.0).abs() < 1e-9);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let open = |name: &str| RequestLog::open(&fixture(name), ReadOptions::default());
    for name in ["empty.csv", "header_only.csv"] {
        let e = open(name).unwrap_err();
        assert!(matches!(e, TrafficError::Empty { .. }), "{name}: {e}");
        assert!(e.to_string().contains("is empty"), "{e}");
    }
    let e = open("no_timestamp.csv").unwrap_err();
    assert!(matches!(e, TrafficError::NoTimestamp { .. }), "{e}");
    assert!(
        e.to_string().contains("its columns are: time_s, model"),
        "{e}"
    );
    let e = open("bad_time.csv").unwrap_err();
    assert!(
        e.to_string().contains("bad_time.csv:3: column `timestamp`"),
        "{e}"
    );
    let e = open("missing.csv").unwrap_err();
    assert!(matches!(e, TrafficError::Read { .. }), "{e}");
    // No model column: --model names it, else a clear error.
    let e = RequestLog::open(&fixture("no_timestamp.csv"), ReadOptions::default());
    assert!(e.is_err());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("times.csv");
    std::fs::write(&p, "timestamp\n1\n2\n").unwrap();
    let e = RequestLog::open(&p, ReadOptions::default()).unwrap_err();
    assert!(matches!(e, TrafficError::NoModel { .. }), "{e}");
    let opts = ReadOptions {
        model: Some("tiny-50m".into()),
        ..ReadOptions::default()
    };
    let log = RequestLog::open(&p, opts).unwrap();
    assert_eq!(log.scan().models, ["tiny-50m".to_string()]);
    assert_eq!(all(&log).len(), 2);
}

#[test]
fn the_kind_column_marks_loads_and_unloads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kinds.csv");
    std::fs::write(
        &p,
        "timestamp,model,keep_alive,kind\n0,m,-1,serve\n1,m,0,unload\n2,m,,Load\n3,m,-1,\n",
    )
    .unwrap();
    let log = RequestLog::open(&p, ReadOptions::default()).unwrap();
    let kinds: Vec<Kind> = all(&log).iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Serve, Kind::Unload, Kind::Load, Kind::Serve]);
    std::fs::write(&p, "timestamp,model,kind\n0,m,reload\n").unwrap();
    let e = RequestLog::open(&p, ReadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("column `kind`: \"reload\" is not a request kind"),
        "{e}"
    );
}

#[test]
fn datetimes_in_the_forms_logs_write() {
    let z = parse_datetime("2026-05-22T17:28:26Z").unwrap();
    assert_eq!(parse_datetime("2026-05-22T19:28:26+02:00"), Some(z));
    assert_eq!(parse_datetime("2026-05-22 17:28:26"), Some(z));
    let azure = parse_datetime("2023-11-16 18:17:03.9799600").unwrap();
    let azure2 = parse_datetime("2023-11-16 18:17:04.0319600").unwrap();
    assert!((azure2 - azure - 0.052).abs() < 1e-6);
    assert_eq!(parse_datetime("yesterday"), None);
}

#[test]
fn a_future_timestamp_is_noted_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("future.csv");
    std::fs::write(
        &p,
        "timestamp,model\n2999-01-01T00:00:00Z,m\n2999-01-01T00:00:01Z,m\n",
    )
    .unwrap();
    let log = RequestLog::open(&p, ReadOptions::default()).unwrap();
    assert!(log.scan().notes.iter().any(|n| n.contains("future")));
    assert_eq!(all(&log).len(), 2);
}
