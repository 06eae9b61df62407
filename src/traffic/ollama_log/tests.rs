//! Tests of the server-log reader.

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ollama_log")
        .join(name)
}

fn all(log: &OllamaLog) -> Vec<Request> {
    log.requests()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn go_durations_as_gin_prints_them() {
    let close = |text: &str, want: f64| {
        let got = go_duration_seconds(text).unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{text}: {got} != {want}");
    };
    close("385ns", 385e-9);
    close("72.508µs", 72.508e-6);
    close("12.1μs", 12.1e-6);
    close("184.975us", 184.975e-6);
    close("842.3005ms", 0.8423005);
    close("2.843912s", 2.843912);
    close("1m2.500000001s", 62.500000001);
    close("1h0m0.5s", 3600.5);
    close("0s", 0.0);
    assert_eq!(go_duration_seconds("soon"), None);
    assert_eq!(go_duration_seconds("-1s"), None);
}

#[test]
fn an_access_line_is_read_and_others_are_not() {
    let a = parse_access(
        r#"[GIN] 2026/05/22 - 17:28:26 | 200 |     2.843912s |      10.0.0.192 | POST     "/api/chat""#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.client, "10.0.0.192");
    assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/api/chat"));
    assert!((a.latency_s - 2.843912).abs() < 1e-12);
    // 2026-05-22 is day 20595 since the epoch.
    assert_eq!(
        a.end_local,
        20595.0 * 86400.0 + 17.0 * 3600.0 + 28.0 * 60.0 + 26.0
    );
    assert!(parse_access("llama_model_loader: - kv 0").is_none());
    assert!(parse_access("[GIN] 2026/05/22 | 200").unwrap().is_err());
}

#[test]
fn tz_offsets() {
    assert_eq!(parse_tz("UTC").unwrap(), time::UtcOffset::UTC);
    assert_eq!(parse_tz("+02:00").unwrap().whole_seconds(), 7200);
    assert_eq!(parse_tz("-0500").unwrap().whole_seconds(), -18000);
    assert_eq!(parse_tz("+5:30").unwrap().whole_seconds(), 19800);
    assert_eq!(parse_tz("+2").unwrap().whole_seconds(), 7200);
    let e = parse_tz("Europe/Paris").unwrap_err();
    assert!(e.contains("+02:00"), "{e}");
    assert!(parse_tz("+25:00").is_err());
}

#[test]
fn every_documented_access_form_is_read() {
    let opts = LogOptions {
        model: Some("m".into()),
        ..LogOptions::default()
    };
    let log = OllamaLog::open(&fixture("access-forms.log"), opts).unwrap();
    let scan = log.scan();
    // 2xx of each inference API, the 5xx (it reached the runner); not the 4xx, the
    // 3xx, /api/tags or HEAD /.
    assert_eq!(scan.rows, 7, "{:?}", scan.notes);
    assert_eq!(scan.models, ["m".to_string()]);
    assert_eq!(
        scan.clients,
        ["10.0.0.192", "127.0.0.1", "10.0.0.5"].map(String::from)
    );
    let note = &scan.notes[0];
    assert!(
        note.contains("3 other access lines, 2 refused with 4xx"),
        "{note}"
    );
    assert!(note.contains("skipped: 1 lines"), "{note}");
    assert!(note.contains("unparsable: 0"), "{note}");
    // The start is the end (local +02:00, from the time= line) minus the latency;
    // the hour-long request ends last but started before the one above it.
    let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
    let want = [
        0.0,
        6.0016115,
        14.343911999,
        162.743912,
        275.343912,
        306.343912,
        334.843911,
    ];
    assert_eq!(t.len(), want.len());
    for (got, want) in t.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{t:?}");
    }
    assert_eq!(scan.first, "2026-05-22T15:28:23.156088Z");
    // Without debug lines there are no unloads to check against.
    assert!(log.logged_unloads().is_none());
    // --tz moves every access line; the gaps stay.
    let opts = LogOptions {
        model: Some("m".into()),
        tz: Some(parse_tz("UTC").unwrap()),
        ..LogOptions::default()
    };
    let utc = OllamaLog::open(&fixture("access-forms.log"), opts).unwrap();
    assert_eq!(utc.scan().first, "2026-05-22T17:28:23.156088Z");
}

#[test]
fn a_log_without_model_names_needs_model() {
    let e = OllamaLog::open(&fixture("access-forms.log"), LogOptions::default()).unwrap_err();
    assert!(
        matches!(e, TrafficError::NoModelInLog { line: 2, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--model"), "{e}");
}

#[test]
fn a_log_joined_out_of_order_is_sorted_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("joined.log");
    std::fs::write(
        &p,
        "[GIN] 2026/05/22 - 17:30:00 | 200 | 1s | 127.0.0.1 | POST \"/api/chat\"\n\
         [GIN] 2026/05/22 - 17:30:00 | 200 | 1s | 127.0.0.1 | POST \"/api/chat\"\n\
         [GIN] 2026/05/22 - 17:20:00 | 200 | 2s | 127.0.0.1 | POST \"/api/chat\"\n",
    )
    .unwrap();
    let opts = LogOptions {
        model: Some("m".into()),
        ..LogOptions::default()
    };
    let log = OllamaLog::open(&p, opts).unwrap();
    assert!(!log.scan().sorted);
    assert!(
        log.scan()
            .notes
            .iter()
            .any(|n| n.contains("sorted in memory"))
    );
    let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
    // Duplicate times stay, in file order.
    assert_eq!(t, [0.0, 601.0, 601.0]);
}

#[test]
fn strict_names_the_unparsable_line() {
    let opts = |strict| LogOptions {
        model: Some("m".into()),
        strict,
        ..LogOptions::default()
    };
    let log = OllamaLog::open(&fixture("broken.log"), opts(false)).unwrap();
    assert_eq!(log.scan().rows, 2);
    assert!(
        log.scan().notes[0].contains("unparsable: 1"),
        "{:?}",
        log.scan().notes
    );
    let e = OllamaLog::open(&fixture("broken.log"), opts(true)).unwrap_err();
    assert!(matches!(e, TrafficError::Unparsable { line: 3, .. }), "{e}");
    assert!(e.to_string().contains("broken.log:3:"), "{e}");
    assert!(e.to_string().contains("\"soon\""), "{e}");
}

#[test]
fn the_real_debug_log_names_models_loads_unloads_and_settings() {
    let log = OllamaLog::open(&fixture("real-debug.log"), LogOptions::default()).unwrap();
    let scan = log.scan();
    assert_eq!(scan.rows, 7);
    assert_eq!(
        scan.models,
        ["tiny-50m:latest", "tiny-50m:q8_0"].map(String::from)
    );
    assert_eq!(scan.model_rows, [5, 2]);
    assert_eq!(log.setting("OLLAMA_KEEP_ALIVE"), Some("3s"));
    assert_eq!(log.setting("OLLAMA_MAX_LOADED_MODELS"), Some("1"));
    let loads: Vec<(Option<&str>, f64)> = log
        .loads()
        .iter()
        .map(|l| (l.model.as_deref(), l.seconds))
        .collect();
    assert_eq!(
        loads,
        [
            (Some("tiny-50m:latest"), 0.52),
            (Some("tiny-50m:latest"), 1.53),
            (Some("tiny-50m:q8_0"), 2.55),
            (Some("tiny-50m:latest"), 2.64)
        ]
    );
    let u = log.logged_unloads().unwrap();
    let kinds: Vec<(u32, bool)> = u.iter().map(|u| (u.model, u.evicted)).collect();
    assert_eq!(kinds, [(0, false), (0, true), (1, false), (0, false)]);
    // Each expiry 3 s after its model's last request ended.
    let r = all(&log);
    assert_eq!(
        r.iter().map(|r| r.model).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1, 0, 0]
    );
    assert!(r.windows(2).all(|w| w[0].t <= w[1].t));
    // The cold request waited for its load: its service time is the rest.
    let s = r[0].service_s.unwrap();
    assert!((s - (3.559307733 - 0.52)).abs() < 1e-9, "{s}");
}

#[test]
fn a_latency_over_a_day_is_not_an_access_line() {
    let line = "[GIN] 2026/05/22 - 17:28:40 | 200 | 2562047h47m16.854775807s | 10.0.0.1 | POST \"/api/chat\"";
    let err = parse_access(line).unwrap().unwrap_err();
    assert!(err.contains("24 h"), "{err}");
    let ok = "[GIN] 2026/05/22 - 17:28:40 | 200 | 23h59m0s | 10.0.0.1 | POST \"/api/chat\"";
    assert!(parse_access(ok).unwrap().is_ok());
}
