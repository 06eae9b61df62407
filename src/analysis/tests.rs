//! Summaries of tiny hand-made run folders.

use super::*;
use crate::folder::StreamMeta;

fn cold(model: &str, sent: f64, load: f64) -> RequestRecord {
    RequestRecord {
        model: model.into(),
        sent_ms: Some(sent),
        load_duration_ms: Some(load),
        cold: true,
        ..Default::default()
    }
}

#[test]
fn requests_sharing_a_load_count_once() {
    let rows = vec![
        cold("a", 0.0, 300.0),
        cold("a", 100.0, 200.5),
        cold("a", 1000.0, 300.0),
        cold("b", 100.0, 200.0),
        RequestRecord {
            model: "a".into(),
            sent_ms: Some(50.0),
            ..Default::default()
        },
    ];
    assert_eq!(loads_witnessed(&rows, Duration::from_millis(100)), 3);
}

fn row(cell: &str, i: u32, cold: bool, ttft: f64, error: &str) -> RequestRecord {
    RequestRecord {
        cell: cell.into(),
        request: i,
        stream: "s".into(),
        model: "m".into(),
        keep_alive: KeepAlive::from_written("2s"),
        intended_ms: i as f64 * 100.0,
        end_ms: i as f64 * 100.0 + ttft + 50.0,
        status: Some(if error.is_empty() { 200 } else { 500 }),
        error: error.into(),
        cold,
        load_duration_ms: Some(if cold { 1500.0 } else { 3.0 }),
        ttft_ms: error.is_empty().then_some(ttft),
        e2e_ms: error.is_empty().then_some(ttft + 50.0),
        eval_count: Some(32),
        eval_ms: Some(320.0),
        ..Default::default()
    }
}

fn meta() -> RunMeta {
    RunMeta {
        scenario: "t".into(),
        cold_threshold_ms: 100.0,
        cells: vec![CellMeta {
            id: "c0".into(),
            params: CellParams::default().with("keep_alive", "2s"),
            streams: vec![StreamMeta {
                name: "s".into(),
                model: "m".into(),
                keep_alive: KeepAlive::from_written("2s"),
                ..Default::default()
            }],
            started_ms: Some(0.0),
            ended_ms: Some(1000.0),
            host: None,
        }],
        ..Default::default()
    }
}

#[test]
fn cold_warm_split_errors_and_penalty() {
    let mut rows = vec![row("c0", 0, true, 1600.0, "")];
    for i in 1..9 {
        rows.push(row("c0", i, false, 40.0, ""));
    }
    rows.push(row("c0", 9, false, 0.0, "http"));
    let s = summarize(&meta(), &rows, &[], None);
    let st = &s.cells[0].streams[0];
    assert_eq!(st.requests, 10);
    assert_eq!(st.errors, 1);
    assert_eq!(st.errors_by_kind["http"], 1);
    assert_eq!(st.cold, 1);
    assert_eq!(st.answered, 9);
    assert!((st.cold_ratio - 1.0 / 9.0).abs() < 1e-9);
    let cold = st.ttft_ms.cold.unwrap();
    let warm = st.ttft_ms.warm.unwrap();
    assert!((cold.p50 - 1600.0).abs() < 2.0);
    assert!((warm.p99 - 40.0).abs() < 0.1);
    assert_eq!(st.ttft_ms.all.unwrap().count, 9);
    assert!((st.cold_penalty_ms.unwrap() - 1560.0).abs() < 2.0);
    assert!((st.tokens_per_s.unwrap() - 100.0).abs() < 1e-6);
    assert!((st.load_ms.unwrap().p50 - 1500.0).abs() < 2.0);
}

#[test]
fn empty_groups_are_null_in_json() {
    let rows: Vec<_> = (0..3).map(|i| row("c0", i, false, 30.0, "")).collect();
    let s = summarize(&meta(), &rows, &[], None);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["cells"][0]["streams"][0]["ttft_ms"]["cold"].is_null());
    assert!(json["cells"][0]["streams"][0]["ttft_ms"]["warm"]["p50"].is_number());
    assert_eq!(json["cells"][0]["params"]["keep_alive"], "2s");
}

#[test]
fn a_new_threshold_reclassifies_without_a_rerun() {
    let rows = vec![
        row("c0", 0, true, 1600.0, ""),
        row("c0", 1, false, 40.0, ""),
    ];
    let s = summarize(&meta(), &rows, &[], Some(Duration::from_secs(2)));
    assert_eq!(s.cells[0].streams[0].cold, 0);
    assert_eq!(s.cold_threshold_ms, 2000.0);
}

#[test]
fn the_cold_ratio_is_over_requests_sent_and_answered() {
    // 10 requests: 6 saturated (never sent), 1 connect error the residency check
    // called cold, 3 answered and cold: every request answered was cold.
    let mut rows: Vec<RequestRecord> = (0..6)
        .map(|i| RequestRecord {
            sent_ms: None,
            status: None,
            ..row("c0", i, false, 0.0, "saturated")
        })
        .collect();
    rows.push(RequestRecord {
        resident_before: Some(false),
        status: None,
        ..row("c0", 6, true, 0.0, "connect")
    });
    for i in 7..10 {
        rows.push(row("c0", i, true, 1600.0, ""));
    }
    let s = summarize(&meta(), &rows, &[], None);
    let st = &s.cells[0].streams[0];
    assert_eq!(st.requests, 10);
    assert_eq!(st.errors, 7);
    assert_eq!(st.errors_by_kind["saturated"], 6);
    assert_eq!(st.errors_by_kind["connect"], 1);
    assert_eq!(st.answered, 3);
    assert_eq!(st.cold, 3);
    assert!((st.cold_ratio - 1.0).abs() < 1e-9, "{}", st.cold_ratio);
    // Nothing answered: no ratio to speak of, and no cold request counted.
    let s = summarize(&meta(), &rows[..7], &[], None);
    let st = &s.cells[0].streams[0];
    assert_eq!((st.answered, st.cold, st.cold_ratio), (0, 0, 0.0));
}
