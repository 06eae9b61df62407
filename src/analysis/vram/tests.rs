//! The figures, release delays and warnings of `analysis::vram` on synthetic traces.

use super::*;
use crate::folder::StreamMeta;

const MODEL: &str = "m:1b";
const SIZE: u64 = 2_000_000_000; // 2 GB
const STEP_MS: f64 = 100.0;

fn cell(ka: &str) -> CellMeta {
    CellMeta {
        id: "c0".into(),
        streams: vec![StreamMeta {
            name: "s".into(),
            model: MODEL.into(),
            keep_alive: KeepAlive::from_written(ka),
            ..Default::default()
        }],
        started_ms: Some(0.0),
        ended_ms: Some(11_500.0),
        ..Default::default()
    }
}

/// Requests [0.5,1.5] s, [3.5,4.5] s, [10.5,11.5] s: gaps of 2 s and 6 s.
fn requests() -> Vec<RequestRecord> {
    [(500.0, 1500.0), (3500.0, 4500.0), (10_500.0, 11_500.0)]
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| RequestRecord {
            cell: "c0".into(),
            request: i as u32,
            stream: "s".into(),
            model: MODEL.into(),
            intended_ms: a,
            sent_ms: Some(a),
            end_ms: b,
            status: Some(200),
            ..Default::default()
        })
        .collect()
}

/// Whether a server honouring keep_alive `k_ms` holds the model at `t` (loads are
/// instant; the model unloads `k_ms` after a request ends unless another starts).
fn resident(t: f64, reqs: &[RequestRecord], k_ms: f64) -> bool {
    reqs.iter()
        .any(|r| t >= r.sent_ms.unwrap() && t < r.end_ms + k_ms)
}

/// `/api/ps` and simulator rows every 100 ms for `until_ms`, plus NVML device rows
/// with a 500 MB baseline when `nvml` is set.
fn trace(reqs: &[RequestRecord], k_ms: f64, until_ms: f64, nvml: bool) -> Vec<VramSample> {
    let mut out = Vec::new();
    let mut t = 0.0;
    while t <= until_ms {
        let on = resident(t, reqs, k_ms);
        let used = if on { SIZE } else { 0 };
        if on {
            out.push(VramSample {
                t_ms: t,
                source: "ollama_ps".into(),
                device: "ollama".into(),
                model: MODEL.into(),
                used_bytes: SIZE,
                total_bytes: Some(SIZE),
                extra: "2026-01-01T00:00:00Z".into(),
                host: String::new(),
            });
        }
        out.push(VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            device: "ollama".into(),
            used_bytes: used,
            total_bytes: Some(used),
            ..Default::default()
        });
        out.push(VramSample {
            t_ms: t,
            source: "sim".into(),
            device: "sim".into(),
            used_bytes: used,
            total_bytes: Some(24_000_000_000),
            ..Default::default()
        });
        if nvml {
            out.push(VramSample {
                t_ms: t,
                source: "nvml".into(),
                device: "gpu0".into(),
                used_bytes: 500_000_000 + used,
                total_bytes: Some(24_000_000_000),
                ..Default::default()
            });
        }
        t += STEP_MS;
    }
    out
}

const TOL: Duration = Duration::from_millis(350);

#[test]
fn release_delay_of_a_3s_keep_alive_is_3s_within_one_interval() {
    let reqs = requests();
    let samples = trace(&reqs, 3000.0, 20_000.0, false);
    let f = vram_figures(&samples, &reqs, &cell("3s"), TOL).unwrap();
    assert_eq!(f.source, "sim");
    assert_eq!(f.release.len(), 1);
    let r = &f.release[0];
    let d = r.release_delay_s.unwrap();
    assert!((d - 3.0).abs() <= STEP_MS / 1000.0, "delay {d}");
    assert!(r.honoured);
    assert_eq!(crate::units::as_written(r.keep_alive.as_ref()), "3s");
    assert_eq!(f.peak_bytes, SIZE);
}

#[test]
fn idle_gb_seconds_grow_with_keep_alive_as_the_gaps_predict() {
    // Held while idle: min(gap, k) for each gap (2 s, 6 s) plus k after the last
    // request, times 2 GB. k = 0 → 0; 1 → 6; 3 → 16; 10 → 36 GB·s.
    let reqs = requests();
    let mut last = -1.0;
    for (k, expected) in [(0.0, 0.0), (1.0, 6.0), (3.0, 16.0), (10.0, 36.0)] {
        let samples = trace(&reqs, k * 1000.0, 11_500.0 + k * 1000.0 + 2000.0, false);
        let f = vram_figures(&samples, &reqs, &cell(&format!("{k}")), TOL).unwrap();
        assert!(
            (f.idle_gb_seconds - expected).abs() < 1e-6,
            "k={k}: idle {} vs {expected}",
            f.idle_gb_seconds
        );
        // Busy time (3 s of requests) is held too.
        assert!((f.gb_seconds_held - (expected + 6.0)).abs() < 1e-6);
        assert!(f.idle_gb_seconds > last || (k == 0.0 && f.idle_gb_seconds == 0.0));
        last = f.idle_gb_seconds;
        let r = &f.release[0];
        assert!(r.honoured, "k={k}: {r:?}");
        assert!((r.release_delay_s.unwrap() - k).abs() < 1e-9);
    }
}

#[test]
fn over_one_horizon_a_longer_keep_alive_never_looks_cheaper_whatever_the_samples_span() {
    // Requests sent at 0.5, 3.5 and 10.5 s; the horizon's tail is 4 s + 5 s, so every
    // cell is counted over [0.5 s, 19.5 s]. The forever cell's samples stop early (a
    // shard that left at 13 s), the 4 s cell's run on to 30 s: neither changes the span.
    let reqs = requests();
    let horizon = crate::folder::IdleHorizon {
        tail_ms: 9000.0,
        rule: String::new(),
    };
    let window = horizon.window(&reqs, &cell("4s")).unwrap();
    assert_eq!((window.from_ms, window.to_ms), (500.0, 19_500.0));
    let figures = |k_ms: f64, until_ms: f64, ka: &str| {
        let samples = trace(&reqs, k_ms, until_ms, false);
        vram_figures_over(&samples, &reqs, &cell(ka), TOL, Some(window)).unwrap()
    };
    let four = figures(4000.0, 30_000.0, "4s");
    let forever = figures(1e9, 13_000.0, "-1");
    // 4 s: min(gap, 4) over the gaps of 2 s and 6 s, plus 4 s after the last: 10 s idle.
    assert!((four.idle_gb_seconds - 2.0 * 10.0).abs() < 1e-6, "{four:?}");
    // -1: held from 0.5 s to 19.5 s less 3 s busy: 16 s idle, though sampled to 13 s.
    assert!(
        (forever.idle_gb_seconds - 2.0 * 16.0).abs() < 1e-6,
        "{forever:?}"
    );
    assert!((forever.gb_seconds_held - 2.0 * 19.0).abs() < 1e-6);
    assert!(forever.idle_gb_seconds > four.idle_gb_seconds);
    // Without the horizon the short sample span made -1 look cheaper than 4 s.
    let cut = vram_figures(&trace(&reqs, 1e9, 13_000.0, false), &reqs, &cell("-1"), TOL);
    assert!(cut.unwrap().idle_gb_seconds < four.idle_gb_seconds);
}

#[test]
fn early_unload_and_a_forever_model_released_are_not_honoured() {
    let reqs = requests();
    // The server unloads after 1 s though 5 s was asked.
    let samples = trace(&reqs, 1000.0, 20_000.0, false);
    let c = cell("5s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    assert!(!f.release[0].honoured);
    let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
    assert!(
        w.iter()
            .any(|w| w.starts_with("keep_alive not honoured for m:1b: released 1.00 s")),
        "{w:?}"
    );
    let forever = cell("-1");
    let f = vram_figures(&samples, &reqs, &forever, TOL).unwrap();
    assert!(!f.release[0].honoured);
    // Never released, as asked.
    let held = trace(&reqs, 1e9, 20_000.0, false);
    let f = vram_figures(&held, &reqs, &forever, TOL).unwrap();
    assert!(f.release[0].honoured && f.release[0].release_delay_s.is_none());
    assert!(vram_warnings(&held, &reqs, &forever, &f, TOL).is_empty());
}

#[test]
fn never_released_past_the_deadline_warns() {
    let reqs = requests();
    let samples = trace(&reqs, 1e9, 20_000.0, false);
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    assert!(f.release[0].release_delay_s.is_none() && !f.release[0].honoured);
    let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
    assert!(w.iter().any(|w| w.contains("never released")), "{w:?}");
}

#[test]
fn partial_offload_warns_once_per_model() {
    let reqs = requests();
    let mut samples = trace(&reqs, 3000.0, 16_000.0, false);
    for s in samples.iter_mut().filter(|s| s.model == MODEL) {
        s.total_bytes = Some(SIZE * 2);
    }
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("partly offloaded") && w[0].contains("(50% on the GPU)"));
}

#[test]
fn a_cpu_only_host_counts_system_memory_not_zero() {
    // The real server on a CPU host: /api/ps size_vram 0, size the resident bytes.
    let reqs = requests();
    let samples: Vec<VramSample> = trace(&reqs, 3000.0, 16_000.0, false)
        .into_iter()
        .filter(|s| s.source == "ollama_ps")
        .map(|mut s| {
            s.total_bytes = Some(s.used_bytes);
            s.used_bytes = 0;
            s
        })
        .collect();
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    assert_eq!(f.counted, "system RAM");
    let (gpu, ram) = (f.gpu.as_ref().unwrap(), f.ram.as_ref().unwrap());
    assert_eq!((gpu.peak_bytes, ram.peak_bytes), (0, SIZE));
    assert!(ram.idle_gb_seconds > 0.0 && f.idle_gb_seconds == ram.idle_gb_seconds);
    assert_eq!(f.idle_split(), (0.0, ram.idle_gb_seconds));
    assert_eq!(f.release[0].release_delay_s.map(|d| d.round()), Some(3.0));
    assert!(
        vram_warnings(&samples, &reqs, &c, &f, TOL).is_empty(),
        "a model in system memory is a fact, not a fault"
    );
}

#[test]
fn partly_offloaded_memory_is_split_between_gpu_and_system() {
    let reqs = requests();
    let samples: Vec<VramSample> = trace(&reqs, 3000.0, 16_000.0, false)
        .into_iter()
        .filter(|s| s.source == "ollama_ps")
        .map(|mut s| {
            s.total_bytes = Some(s.used_bytes * 2);
            s
        })
        .collect();
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    assert_eq!(f.counted, "GPU + system RAM");
    assert_eq!(f.peak_split(), (SIZE, SIZE));
    assert_eq!(f.peak_bytes, 2 * SIZE);
}

#[test]
fn nvml_is_preferred_and_agrees_with_ps_without_warnings() {
    let reqs = requests();
    let samples = trace(&reqs, 3000.0, 20_000.0, true);
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    assert_eq!(f.source, "nvml");
    assert_eq!(f.peak_bytes, SIZE + 500_000_000);
    assert!(vram_warnings(&samples, &reqs, &c, &f, TOL).is_empty());
}

#[test]
fn nvml_left_high_after_unload_and_disagreeing_with_ps_warns() {
    let reqs = requests();
    let mut samples = trace(&reqs, 3000.0, 20_000.0, true);
    // Half of what /api/ps lists shows on the GPU, and 1 GB stays after the unload.
    for s in samples.iter_mut().filter(|s| s.source == "nvml") {
        s.used_bytes = if s.t_ms >= 4000.0 {
            1_500_000_000
        } else {
            500_000_000
        };
        if s.t_ms < 100.0 {
            s.used_bytes = 500_000_000;
        }
    }
    let c = cell("3s");
    let f = vram_figures(&samples, &reqs, &c, TOL).unwrap();
    let w = vram_warnings(&samples, &reqs, &c, &f, TOL);
    assert!(
        w.iter().any(|w| w.starts_with("memory not given back")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with("/api/ps and NVML disagree")),
        "{w:?}"
    );
}

#[test]
fn cell_samples_stop_at_the_next_cell() {
    let mut a = cell("3s");
    a.started_ms = Some(1000.0);
    let mut b = a.clone();
    b.id = "c1".into();
    b.started_ms = Some(5000.0);
    let samples: Vec<VramSample> = (0..100)
        .map(|i| VramSample {
            t_ms: i as f64 * 100.0,
            source: "sim".into(),
            ..Default::default()
        })
        .collect();
    let mine = cell_samples(&samples, &[a, b], "c0");
    assert_eq!(mine.first().unwrap().t_ms, 1000.0);
    assert_eq!(mine.last().unwrap().t_ms, 4900.0);
}

#[test]
fn figures_serialize_snake_case() {
    let f = VramFigures {
        source: "sim".into(),
        gb_seconds_held: 1.0,
        idle_gb_seconds: 0.5,
        peak_bytes: 2,
        mean_bytes: 1.5,
        release: vec![],
        gpu: None,
        ram: None,
        counted: "GPU".into(),
    };
    let v = serde_json::to_value(&f).unwrap();
    assert!(v.get("idle_gb_seconds").is_some() && v.get("peak_bytes").is_some());
}

mod eviction {
    use super::*;

    fn ps_row(t: f64, model: &str) -> VramSample {
        VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            device: "ollama".into(),
            model: model.into(),
            used_bytes: 5_000_000_000,
            total_bytes: Some(5_000_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn an_early_release_that_makes_room_for_another_model_is_an_eviction() {
        // Model a (keep_alive 30s) ends at 1 s; b starts loading at 4 s and is resident
        // from 6 s; a leaves at 5 s, long before its 30 s.
        let cell = CellMeta {
            id: "c0".into(),
            streams: vec![
                StreamMeta {
                    name: "sa".into(),
                    model: "a".into(),
                    keep_alive: KeepAlive::from_written("30s"),
                    ..Default::default()
                },
                StreamMeta {
                    name: "sb".into(),
                    model: "b".into(),
                    keep_alive: KeepAlive::from_written("30s"),
                    ..Default::default()
                },
            ],
            started_ms: Some(0.0),
            ended_ms: Some(10_000.0),
            ..Default::default()
        };
        let req = |stream: &str, model: &str, start: f64, end: f64| RequestRecord {
            cell: "c0".into(),
            stream: stream.into(),
            model: model.into(),
            intended_ms: start,
            sent_ms: Some(start),
            end_ms: end,
            status: Some(200),
            ..Default::default()
        };
        let requests = vec![req("sa", "a", 0.0, 1000.0), req("sb", "b", 4000.0, 7000.0)];
        let mut samples = Vec::new();
        let mut t = 0.0;
        while t <= 10_000.0 {
            samples.push(VramSample {
                t_ms: t,
                source: "ollama_ps".into(),
                device: "ollama".into(),
                ..Default::default()
            });
            if t < 5000.0 {
                samples.push(ps_row(t, "a"));
            }
            if t >= 6000.0 {
                samples.push(ps_row(t, "b"));
            }
            t += 100.0;
        }
        let tol = Duration::from_millis(350);
        let f = vram_figures(&samples, &requests, &cell, tol).unwrap();
        let a = f.release.iter().find(|r| r.model == "a").unwrap();
        assert_eq!(a.evicted_for.as_deref(), Some("b"));
        assert!(a.honoured, "an eviction follows the server's rules");
        let w = vram_warnings(&samples, &requests, &cell, &f, tol);
        assert!(
            w.iter()
                .any(|w| w.contains("a was evicted") && w.contains("room for b")),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("not honoured for a")), "{w:?}");
    }
}

#[test]
fn the_preference_orders_exactly_the_telemetry_sources() {
    let mut mine = SOURCE_PREFERENCE.to_vec();
    let mut all = crate::folder::TELEMETRY_SOURCES.to_vec();
    mine.sort_unstable();
    all.sort_unstable();
    assert_eq!(mine, all);
}
