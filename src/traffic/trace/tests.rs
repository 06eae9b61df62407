//! Tests of the trace readers.

use std::path::{Path, PathBuf};

use super::*;
use crate::traffic::{Request, Source};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/traces")
        .join(name)
}

fn all(s: &dyn Source) -> Vec<Request> {
    s.requests()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn opts(models: &[&str], clients: &[&str]) -> TraceOptions {
    TraceOptions {
        models: models.iter().map(|m| m.to_string()).collect(),
        clients: clients.iter().map(|c| c.to_string()).collect(),
        time_scale: 1.0,
        seed: 7,
    }
}

#[test]
fn formats_are_told_apart() {
    assert_eq!(detect(&fixture("servegen-cut.csv")).unwrap(), "servegen");
    assert_eq!(detect(&fixture("mooncake-cut.jsonl")).unwrap(), "mooncake");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/predict/gaps.csv");
    assert_eq!(detect(&csv).unwrap(), "csv");
}

#[test]
fn servegen_windows_become_their_requests() {
    let path = fixture("servegen-cut.csv");
    let e = ServeGen::open(&path, opts(&["m"], &[])).unwrap_err();
    assert!(e.to_string().contains("give --client"), "{e}");
    assert!(e.to_string().contains("2 (290 requests"), "{e}");
    let e = ServeGen::open(&path, opts(&[], &["2"])).unwrap_err();
    assert!(e.to_string().contains("--model"), "{e}");
    let e = ServeGen::open(&path, opts(&["m"], &["9"])).unwrap_err();
    assert!(e.to_string().contains("no client \"9\""), "{e}");
    let g = ServeGen::open(&path, opts(&["m"], &["2"])).unwrap();
    assert_eq!(g.scan().rows, 290);
    // The client's span: its last window with requests ends at 6000 s of the file's
    // 21600 s (its later windows are idle).
    assert_eq!(g.scan().span_s, 6000.0);
    assert!(
        g.scan()
            .notes
            .iter()
            .any(|n| n.contains("ends at 6000 s of the file's 21600 s")),
        "{:?}",
        g.scan().notes
    );
    let r = all(&g);
    assert_eq!(r.len(), 290);
    assert!(r.windows(2).all(|w| w[0].t <= w[1].t));
    // Each window's requests fall inside it: as many as rate × 600 (window 0: 53).
    assert_eq!(r.iter().filter(|q| q.t < 600.0).count(), 53);
    // The same seed draws the same gaps; another seed others.
    assert_eq!(all(&g), r);
    let other = ServeGen::open(
        &path,
        TraceOptions {
            seed: 8,
            ..opts(&["m"], &["2"])
        },
    )
    .unwrap();
    assert_ne!(all(&other), r);
    // Two clients, each its own model, merged in time order.
    let two = ServeGen::open(&path, opts(&["a", "b"], &["2", "40"])).unwrap();
    assert_eq!(two.scan().models, ["a", "b"].map(String::from));
    assert_eq!(two.scan().model_rows, [290, 16490]);
    let r2 = all(&two);
    assert_eq!(r2.len(), 290 + 16490);
    assert!(r2.windows(2).all(|w| w[0].t <= w[1].t));
    let mine: Vec<f64> = r2.iter().filter(|q| q.model == 0).map(|q| q.t).collect();
    assert_eq!(mine, r.iter().map(|q| q.t).collect::<Vec<_>>());
}

#[test]
fn mooncake_buckets_are_spread_to_the_next() {
    let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
    assert_eq!(m.scan().rows, 40);
    assert!((m.scan().span_s - 15.0).abs() < 1e-9);
    let r = all(&m);
    let t: Vec<f64> = r.iter().map(|q| q.t).collect();
    assert_eq!(t.len(), 40);
    for (i, x) in t[..10].iter().enumerate() {
        assert!((x - 0.3 * i as f64).abs() < 1e-9, "{t:?}");
    }
    // The 3 requests at 5999 ms share the 3001 ms up to 9000.
    assert!((t[26] - 5.999).abs() < 1e-9 && (t[27] - (5.999 + 3.001 / 3.0)).abs() < 1e-9);
    // The last bucket takes the usual width.
    assert!((t[39] - 13.5).abs() < 1e-9, "{t:?}");
    assert_eq!(r[0].prompt_tokens, Some(6758));
    assert_eq!(r[0].output_tokens, Some(500));
    let e = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &["1"])).unwrap_err();
    assert!(e.to_string().contains("no clients"), "{e}");
}

#[test]
fn a_slice_cuts_and_rebases() {
    let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
    let f = Filtered::new(Box::new(m), Some((3.0, 9.0)), 1.0, &[]).unwrap();
    // Buckets 3000 (16) and 5999 (3) only, from 0.
    assert_eq!(f.scan().rows, 19);
    assert_eq!(f.scan().span_s, 6.0);
    let t: Vec<f64> = all(&f).iter().map(|q| q.t).collect();
    assert!(
        t[0].abs() < 1e-9 && t.iter().all(|x| (0.0..6.0).contains(x)),
        "{t:?}"
    );
    // With a time scale the slice is still in the input's seconds.
    let scaled = TraceOptions {
        time_scale: 2.0,
        ..opts(&["m"], &[])
    };
    let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), scaled).unwrap();
    let f = Filtered::new(Box::new(m), Some((3.0, 9.0)), 2.0, &[]).unwrap();
    assert_eq!(f.scan().rows, 19);
    let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
    let e = Filtered::new(Box::new(m), Some((100.0, 200.0)), 1.0, &[])
        .err()
        .unwrap();
    assert!(e.to_string().contains("no request falls"), "{e}");
    assert_eq!(parse_slice("1d..8d").unwrap(), (86400.0, 8.0 * 86400.0));
    assert_eq!(parse_slice("..6h").unwrap(), (0.0, 21600.0));
    assert_eq!(parse_slice("3600..").unwrap().0, 3600.0);
    assert!(parse_slice("5..2").is_err());
    assert!(parse_slice("soon").is_err());
}

#[test]
fn a_slice_bound_past_100_years_is_refused() {
    assert!(parse_slice("0..1e300").unwrap_err().contains("100 years"));
    assert!(parse_slice("0..86400").is_ok());
}

#[test]
fn a_window_over_the_request_limit_is_refused_before_drawing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.csv");
    std::fs::write(
        &path,
        "client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale\n1,0,1e6,1,Gamma,1,1\n",
    )
    .unwrap();
    let err = ServeGen::open(&path, opts(&["m"], &["1"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rate_rps") && err.contains("10000000"),
        "{err}"
    );
}

#[test]
fn the_busiest_published_servegen_window_is_within_the_limit() {
    // ServeGen's m-small file peaks at 2,442.07 requests/s in one 600 s window.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.csv");
    std::fs::write(
        &path,
        "client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale\n1,0,2442.07,1,Gamma,1,1\n",
    )
    .unwrap();
    let trace = ServeGen::open(&path, opts(&["m"], &["1"])).unwrap();
    assert_eq!(trace.scan().rows, 1_465_242);
}
