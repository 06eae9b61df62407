//! The report's own rules: the simulated host note, the headline, the one keep_alive ordering across table, recommendation and charts, notes against warnings.

use super::*;
use crate::units::KeepAlive;

#[test]
fn sim_note_reads_the_recorded_host() {
    let host = SimHost {
        gpu: "1 × 24GiB GPU".into(),
        gpus: 1,
        vram_bytes: 24 << 30,
        models: vec![crate::folder::SimModel {
            model: "m".into(),
            file_bytes: 5,
            source: "https://example.com/m".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let n = sim_note(Some(&host));
    assert_eq!(n.gpu, "1 × 24GiB GPU");
    assert_eq!(n.models[0].file, crate::units::format_bytes(5));
    assert_eq!(
        n.models[0].source_url.as_deref(),
        Some("https://example.com/m")
    );
    assert_eq!(n.calibrated_from, None);
    let cpu = SimHost {
        gpu: "CPU-only host".into(),
        calibrated_from: Some("reports/real".into()),
        ..Default::default()
    };
    let n = sim_note(Some(&cpu));
    assert_eq!(n.calibrated_from.as_deref(), Some("reports/real"));
    assert!(!n.facts.iter().any(|f| f.starts_with("vram = ")));
    let h = headline(&[], Some(&n), RunStatus::Complete);
    assert!(
        h.starts_with("Simulated run: a model of Ollama on a simulated CPU-only host calibrated from the run reports/real, not"),
        "{h}"
    );
    assert!(sim_note(None).gpu.contains("not described"));
    assert_eq!(slug("Chat <script>"), "chat-script");
}

fn rec(workload: &str, chosen: &str) -> Recommendation {
    Recommendation {
        workload: workload.into(),
        model: "m".into(),
        fixed: Default::default(),
        candidates: Vec::new(),
        frontier_metric: String::new(),
        has_vram: true,
        cold_penalty_s: None,
        cold_penalty_source: String::new(),
        model_gb: None,
        model_ram_gb: None,
        cost_choice: None,
        slo_choice: None,
        chosen: KeepAlive::from_written(chosen),
        form: crate::recommend::Form::Cost,
        reason: String::new(),
        break_even_s: None,
        snippets: crate::recommend::Snippets {
            server_env: format!("OLLAMA_KEEP_ALIVE={chosen}"),
            native_request: String::new(),
            keep_alive_field: String::new(),
            notes: Vec::new(),
        },
        advice: Vec::new(),
        noise: None,
    }
}

/// A summary whose cells run keep_alive in a scrambled sweep order, one stream each.
fn scrambled(kas: &[&str]) -> Summary {
    let cells: Vec<serde_json::Value> = kas
        .iter()
        .enumerate()
        .map(|(i, ka)| {
            let p = serde_json::json!({"p50": 10.0 * (i as f64 + 1.0), "p90": 20.0, "p99": 30.0 * (i as f64 + 1.0), "p999": 40.0, "max": 50.0, "mean": 20.0, "count": 4});
            serde_json::json!({
                "id": format!("c{i}"),
                "params": if ka.is_empty() { serde_json::json!({}) } else { serde_json::json!({"keep_alive": ka}) },
                "streams": [{
                    "name": "chat", "model": "m", "keep_alive": ka, "keep_alive_s": null,
                    "rate_per_s": 1.0, "requests": 4, "warmup": 0, "errors": 0,
                    "errors_by_kind": {}, "cold": i, "cold_ratio": i as f64 / 4.0,
                    "ttft_ms": {"all": p, "warm": null, "cold": null},
                    "e2e_ms": {"all": p, "warm": null, "cold": null},
                    "tpot_ms": null, "load_ms": null, "cold_penalty_ms": 100.0,
                    "tokens_per_s": null
                }],
                "vram": null
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "scenario": "s", "target": {"kind": "sim", "url": "u"}, "ollama_version": null,
        "status": "complete", "cold_threshold_ms": 100.0, "cells": cells
    }))
    .unwrap()
}

/// The positions of `labels` in `text`, each the first `>label<`-bounded match.
fn positions(text: &str, labels: &[&str]) -> Vec<usize> {
    labels
        .iter()
        .map(|l| {
            text.find(&format!(">{l}<"))
                .or_else(|| text.find(&format!(">\n{l}\n<")))
                .unwrap_or_else(|| panic!("{l} not in the text"))
        })
        .collect()
}

#[test]
fn the_table_the_headline_the_recommendation_and_the_charts_order_keep_alive_alike() {
    let summary = scrambled(&["5m", "0", "", "-1", "30s"]);
    let want = ["0", "30s", "5m", "-1", ""];
    let shown: Vec<String> = want
        .iter()
        .map(|w| display_keep_alive(KeepAlive::from_written(w).as_ref()))
        .collect();
    // The table (stdout, summary.md and index.html share its rows).
    let rows: Vec<&str> = table::rows_in_order(&summary)
        .iter()
        .map(|(_, s)| crate::units::as_written(s.keep_alive.as_ref()))
        .collect();
    assert_eq!(rows, want);
    let html_rows: Vec<String> = html::cell_rows(&summary)
        .into_iter()
        .map(|r| r.keep_alive)
        .collect();
    assert_eq!(html_rows, shown);
    // The recommendation's candidates.
    let recs = recommend::recommend(&summary, &CostSettings::default(), &SloSettings::default());
    let cands: Vec<&str> = recs[0]
        .candidates
        .iter()
        .map(|c| crate::units::as_written(c.keep_alive.as_ref()))
        .collect();
    assert_eq!(cands, want);
    // Every keep_alive chart: its categories left to right.
    for metric in [charts::Metric::P99Ttft, charts::Metric::ColdRatio] {
        let svg = charts::by_keep_alive(&summary, metric).unwrap();
        let labels: Vec<&str> = shown.iter().map(String::as_str).collect();
        let at = positions(&svg, &labels);
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    }
    // The headline: the longest sent value covers every workload.
    let picks = [rec("a", "5m"), rec("b", "-1"), rec("c", ""), rec("d", "0")];
    let h = headline(&picks, None, RunStatus::Complete);
    assert!(h.contains("(-1 covers them all)"), "{h}");
}

#[test]
fn an_absent_nvml_is_a_note_on_a_simulated_run_and_a_warning_on_a_real_one() {
    let mut meta = RunMeta::default();
    meta.telemetry
        .insert("nvml".into(), "unavailable: no NVIDIA driver".into());
    let summary = scrambled(&["0"]);
    meta.target.kind = TargetKind::Sim;
    assert!(
        run_warnings(&meta, &summary, &[], false)
            .iter()
            .all(|w| !w.contains("nvml"))
    );
    assert_eq!(
        run_notes(&meta, false),
        ["telemetry nvml unavailable: no NVIDIA driver"]
    );
    meta.target.kind = TargetKind::Ollama;
    // A CPU-only host (no model in GPU memory): a note, not a warning.
    assert!(
        run_warnings(&meta, &summary, &[], false)
            .iter()
            .all(|w| !w.contains("nvml"))
    );
    let notes = run_notes(&meta, false);
    assert!(
        notes.len() == 1 && notes[0].contains("no model in GPU memory"),
        "{notes:?}"
    );
    // A GPU expected (/api/ps reports size_vram > 0): a warning.
    let ps = folder::VramSample {
        t_ms: 0.0,
        source: "ollama_ps".into(),
        device: String::new(),
        model: "m".into(),
        used_bytes: 1 << 30,
        total_bytes: Some(1 << 30),
        extra: String::new(),
        host: String::new(),
    };
    assert!(gpu_expected(&meta, &[ps]));
    assert!(
        run_warnings(&meta, &summary, &[], true)
            .iter()
            .any(|w| w.contains("nvml"))
    );
    assert!(run_notes(&meta, true).is_empty());
}

#[test]
fn axis_ticks_have_no_trailing_zeros() {
    assert_eq!(charts::tick(&1200.0), "1200");
    assert_eq!(charts::tick(&0.5), "0.5");
    assert_eq!(charts::tick(&2.25), "2.25");
    assert_eq!(charts::tick(&-0.0), "0");
}

#[test]
fn different_picks_per_workload_go_per_request() {
    let one = headline(
        &[rec("a", "30s"), rec("b", "30s")],
        None,
        RunStatus::Complete,
    );
    assert!(!one.contains("one per server"), "{one}");
    let two = headline(
        &[rec("a", "30s"), rec("b", "5m"), rec("c", "0")],
        None,
        RunStatus::Complete,
    );
    assert!(two.contains("one per server"), "{two}");
    assert!(two.contains("(5m covers them all)"), "{two}");
}

#[test]
fn chart_ranges_are_finite_and_never_degenerate() {
    let cases = [
        (f64::NAN, f64::INFINITY),
        (5.0, 5.0),
        (f64::NEG_INFINITY, 0.0),
        (1e300, 1e308),
        (3.0, 1.0),
        (0.0, 1e-300),
    ];
    for (lo, hi) in cases {
        let (a, b) = charts::axis(lo, hi);
        assert!(
            a.is_finite() && b.is_finite() && b > a,
            "{lo}..{hi} gave {a}..{b}"
        );
    }
    let (a, b) = charts::log_axis(1e-300, f64::INFINITY);
    assert!(a > 0.0 && b.is_finite() && b > a, "{a}..{b}");
}

#[test]
fn a_cdf_of_many_requests_and_non_finite_values_stays_small() {
    let rows: Vec<crate::folder::RequestRecord> = (0..100_000)
        .map(|i| crate::folder::RequestRecord {
            ttft_ms: Some(match i {
                0 => f64::INFINITY,
                1 => f64::NAN,
                2 => 1e300,
                _ => 1.0 + i as f64,
            }),
            cold: i % 10 == 0,
            ..Default::default()
        })
        .collect();
    let svg = charts::ttft_cdf(&rows).unwrap();
    assert!(svg.len() < 200_000, "{} bytes", svg.len());
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn servers_get_their_own_headline_and_the_ollama_advice_stays_per_server() {
    let mut ollama = rec("chat", "5s");
    ollama.fixed.insert("server".into(), "ollama".into());
    let mut llama = rec("chat", "1s");
    llama.fixed.insert("server".into(), "llama".into());
    llama.fixed.insert(
        crate::folder::KNOB_LABEL.into(),
        "--sleep-idle-seconds".into(),
    );
    let h = headline(&[ollama.clone(), llama.clone()], None, RunStatus::Complete);
    assert!(
        h.contains("chat (m) [server=ollama]: set keep_alive 5s"),
        "{h}"
    );
    assert!(
        h.contains(
            "chat (m) [server=llama]: start the server with --sleep-idle-seconds 1 (idle_unload 1s)"
        ),
        "{h}"
    );
    // Different picks on different servers are not one OLLAMA_KEEP_ALIVE's conflict.
    assert!(!h.contains("want different values"), "{h}");
    // Two picks on the one Ollama are.
    let mut other = rec("embed", "-1");
    other.fixed.insert("server".into(), "ollama".into());
    let h = headline(&[ollama, other, llama.clone()], None, RunStatus::Complete);
    assert!(h.contains("want different values"), "{h}");
    // One server: no chart across servers; no candidates: none either.
    assert!(
        servers_chart::across_servers(std::slice::from_ref(&llama))
            .unwrap()
            .is_none()
    );
}

/// A candidate of `knob` with a cold ratio and idle memory, if measured.
fn candidate(knob: &str, cold_ratio: f64, idle_gb_s: Option<f64>) -> crate::recommend::Candidate {
    crate::recommend::Candidate {
        cell: format!("c-{knob}"),
        keep_alive: KeepAlive::from_written(knob),
        rate_per_s: None,
        requests: 10,
        cold: (cold_ratio * 10.0) as u64,
        answered: 10,
        cold_ratio,
        cold_ratio_interval: None,
        errors: 0,
        p99_ttft_ms: Some(120.0),
        p99_ttft_interval: None,
        p99_ttft_count: 10,
        cold_load_ms: None,
        idle_gb_s,
        idle_gpu_gb_s: None,
        idle_ram_gb_s: idle_gb_s,
        memory: None,
        peak_bytes: None,
        peak_ram_bytes: None,
        cost: None,
        repetitions: 1,
        idle_gb_s_interval: None,
        cost_interval: None,
        per_repetition: Vec::new(),
        on_frontier: true,
        meets_slo: None,
        honoured: None,
        ran_late: None,
    }
}

#[test]
fn the_frontier_across_servers_lists_every_cell_and_never_draws_a_missing_memory_as_zero() {
    let mut ollama = rec("chat", "5s");
    ollama.fixed.insert("server".into(), "ollama".into());
    ollama.candidates = vec![
        candidate("0", 1.0, Some(0.5)),
        candidate("5s", 0.3, Some(7.25)),
    ];
    let mut llama = rec("chat", "1s");
    llama.fixed.insert("server".into(), "llama".into());
    llama.candidates = vec![candidate("1s", 0.6, None), candidate("-1", 0.1, Some(40.0))];
    let recs = [ollama, llama];
    let points = servers_chart::points(&recs).unwrap();
    let rows: Vec<(&str, &str, Option<f64>, bool)> = points
        .iter()
        .map(|p| (p.server.as_str(), p.knob.as_str(), p.idle_gb_s, p.chosen))
        .collect();
    assert_eq!(
        rows,
        [
            ("llama", "1s", None, true),
            ("llama", "-1", Some(40.0), false),
            ("ollama", "0", Some(0.5), false),
            ("ollama", "5s", Some(7.25), true),
        ]
    );
    // The chart leaves the unmeasured cell out rather than put it at 0 GB·s.
    let svg = servers_chart::across_servers(&recs).unwrap().unwrap();
    assert!(
        svg.contains("5s · p99 120 ms"),
        "the measured cells are drawn"
    );
    assert!(!svg.contains("1s · p99"), "the unmeasured one is not");
}

#[test]
fn the_tradeoff_chart_names_a_cell_without_memory_instead_of_drawing_it_at_0() {
    let mut r = rec("chat", "5s");
    r.candidates = vec![
        candidate("0", 1.0, Some(0.5)),
        candidate("5s", 0.3, None),
        candidate("-1", 0.1, Some(40.0)),
    ];
    let svg = charts::tradeoff(&r).unwrap();
    assert!(svg.contains("not measured, not drawn: 5s"), "named");
    // Without memory at all: the keep_alive axis, forever to the right of 5 s.
    r.has_vram = false;
    let svg = charts::tradeoff(&r).unwrap();
    assert!(svg.contains("-1 (forever)"), "forever is labelled");
    assert!(!svg.contains("not measured"), "every cell drawn");
}
