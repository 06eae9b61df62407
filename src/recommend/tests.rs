//! The recommendation on synthetic summaries: hand-computed costs, SLO picks, break-even
//! and snippets.

use super::*;
use crate::analysis::vram::VramFigures;
use crate::analysis::{Percentiles, Split};
use crate::folder::CellParams;
use std::time::Duration;

fn pct(p99: f64) -> Percentiles {
    Percentiles {
        p50: p99 / 2.0,
        p90: p99,
        p99,
        p999: p99,
        max: p99,
        mean: p99 / 2.0,
        count: 100,
    }
}

fn cell(id: &str, ka: &str, cold: u64, p99: f64, idle: f64) -> CellSummary {
    CellSummary {
        id: id.into(),
        params: CellParams::default().with("keep_alive", ka),
        streams: vec![StreamSummary {
            name: "chat".into(),
            model: "m:7b".into(),
            keep_alive: KeepAlive::from_written(ka),
            rate_per_s: Some(0.1),
            requests: 100,
            warmup: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            answered: 100,
            cold,
            loads: 0,
            cold_ratio: cold as f64 / 100.0,
            ttft_ms: Split {
                all: Some(pct(p99)),
                warm: None,
                cold: None,
            },
            e2e_ms: Split::default(),
            tpot_ms: None,
            load_ms: None,
            cold_penalty_ms: Some(2000.0),
            tokens_per_s: None,
            intervals: None,
            hosts: Vec::new(),
        }],
        vram: Some(VramFigures {
            source: "sim".into(),
            gb_seconds_held: idle + 100.0,
            idle_gb_seconds: idle,
            peak_bytes: 5_000_000_000,
            mean_bytes: 4e9,
            release: Vec::new(),
            gpu: None,
            ram: None,
            counted: "GPU".into(),
        }),
        memory_missing: None,
        ran_late: None,
        warnings: Vec::new(),
        reloads: Default::default(),
        predicted: false,
        policy: None,
        repetitions: None,
    }
}

fn summary() -> Summary {
    Summary {
        scenario: "t".into(),
        target: Default::default(),
        ollama_version: None,
        status: Default::default(),
        cold_threshold_ms: 100.0,
        cells: vec![
            cell("c0", "10s", 60, 2500.0, 500.0),
            cell("c1", "1m", 20, 2300.0, 3000.0),
            cell("c2", "10m", 2, 80.0, 20000.0),
        ],
        predicted: false,
        best_fixed: None,
        optimum: None,
        pre_load_bound: None,
        gaps: Vec::new(),
        out_of_sample: None,
    }
}

fn cost(vram_gb_hour: f64) -> CostSettings {
    CostSettings {
        vram_gb_hour,
        ram_gb_hour: 1.0,
        wait_second: 1.0,
        cold_penalty: None,
    }
}

#[test]
fn cost_form_picks_the_hand_computed_minimum() {
    // Penalty 2 s × 1: cold costs 120, 40, 4. VRAM at 7.2/GB-h = 0.002/GB-s:
    // 1, 6, 40. Totals 121, 46, 44 → 10m.
    let recs = recommend(&summary(), &cost(7.2), &SloSettings::default());
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.form, Form::Cost);
    let written = |k: &Option<Option<KeepAlive>>| {
        k.as_ref()
            .map(|k| crate::units::as_written(k.as_ref()).to_string())
    };
    assert_eq!(written(&r.cost_choice).as_deref(), Some("10m"));
    // 44 against 46 is within the noise of 2 and 20 cold starts in 100 requests: the
    // one of the two that holds less memory is recommended, and the reason says so.
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "1m");
    let noise = r.noise.as_ref().unwrap();
    assert_eq!(noise.best.as_deref(), Some("10m"));
    assert!(r.reason.contains("cannot be told from it"), "{}", r.reason);
    let totals: Vec<f64> = r.candidates.iter().map(|c| c.cost.unwrap().total).collect();
    for (got, want) in totals.iter().zip([121.0, 46.0, 44.0]) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    // Dearer memory (72/GB-h: 10, 60, 400) → totals 130, 100, 404 → 1m.
    let r = &recommend(&summary(), &cost(72.0), &SloSettings::default())[0];
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "1m");
    assert!(r.candidates.iter().all(|c| c.on_frontier));
}

#[test]
fn system_memory_is_priced_at_ram_gb_hour() {
    // The same cells held in system memory (a CPU-only host): memory at 1.0/GB-h
    // = 1/3600 per GB-s: 0.139, 0.833, 5.556; totals 120.139, 40.833, 9.556 → 10m.
    let mut s = summary();
    for c in &mut s.cells {
        let v = c.vram.as_mut().unwrap();
        let part = |idle: f64| crate::analysis::vram::MemoryPart {
            source: "ollama_ps".into(),
            gb_seconds_held: idle,
            idle_gb_seconds: idle,
            peak_bytes: if idle > 0.0 { 5_000_000_000 } else { 0 },
            mean_bytes: 0.0,
        };
        v.gpu = Some(part(0.0));
        v.ram = Some(part(v.idle_gb_seconds));
        v.counted = "system RAM".into();
    }
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    let costs: Vec<Cost> = r.candidates.iter().map(|c| c.cost.unwrap()).collect();
    for (got, idle) in costs.iter().zip([500.0, 3000.0, 20000.0]) {
        assert_eq!(got.vram, 0.0);
        assert!((got.ram - idle / 3600.0).abs() < 1e-9, "{got:?}");
    }
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "10m");
    assert!(r.reason.contains("idle system-memory GB·s"), "{}", r.reason);
    // Break-even: 2 s ÷ (5 GB × 1.0 / 3600 s) = 1440 s.
    assert!((r.break_even_s.unwrap() - 1440.0).abs() < 1e-6);
}

#[test]
fn slo_form_picks_the_least_memory_meeting_the_slo() {
    let slo = SloSettings {
        ttft_p99: Some(Duration::from_millis(2400)),
    };
    let r = &recommend(&summary(), &cost(7.2), &slo)[0];
    assert_eq!(r.form, Form::Slo);
    assert_eq!(
        r.slo_choice
            .as_ref()
            .map(|k| crate::units::as_written(k.as_ref())),
        Some("1m")
    );
    assert_eq!(
        r.cost_choice
            .as_ref()
            .map(|k| crate::units::as_written(k.as_ref())),
        Some("10m")
    );
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "1m");
    assert_eq!(r.candidates[0].meets_slo, Some(false));
    let strict = SloSettings {
        ttft_p99: Some(Duration::from_millis(50)),
    };
    let r = &recommend(&summary(), &cost(7.2), &strict)[0];
    assert_eq!(r.form, Form::Cost);
    assert!(r.reason.contains("no swept keep_alive met"));
}

#[test]
fn break_even_follows_the_ski_rental_rule() {
    // 2 s × 1 / (5 GB × 7.2 / 3600) = 2 / 0.01 = 200 s.
    let r = &recommend(&summary(), &cost(7.2), &SloSettings::default())[0];
    assert!((r.break_even_s.unwrap() - 200.0).abs() < 1e-9);
    assert_eq!(r.model_gb, Some(5.0));
    let fixed = CostSettings {
        cold_penalty: Some(Duration::from_secs(3)),
        ..cost(7.2)
    };
    let r = &recommend(&summary(), &fixed, &SloSettings::default())[0];
    assert!((r.break_even_s.unwrap() - 300.0).abs() < 1e-9);
    assert_eq!(format_seconds(252.0), "4m12s");
}

#[test]
fn without_vram_the_cold_only_form_says_so() {
    let mut s = summary();
    for c in &mut s.cells {
        c.vram = None;
    }
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    assert_eq!(r.form, Form::ColdOnly);
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "10m");
    assert!(r.reason.contains("no memory measured"));
    assert!(r.break_even_s.is_none());
}

#[test]
fn snippets_carry_the_wire_forms() {
    let s = snippets("m", KeepAlive::from_written("-1").as_ref());
    assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=-1");
    assert_eq!(s.keep_alive_field, "\"keep_alive\": -1");
    let s = snippets("m", KeepAlive::from_written("300").as_ref());
    assert_eq!(s.keep_alive_field, "\"keep_alive\": 300");
    assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=5m");
    let s = snippets("m", KeepAlive::from_written("0.5").as_ref());
    assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=500ms");
    let s = snippets("m", KeepAlive::from_written("10m").as_ref());
    assert_eq!(s.keep_alive_field, "\"keep_alive\": \"10m\"");
    assert!(s.native_request.contains("\"keep_alive\":\"10m\""));
    assert!(s.notes.iter().any(|n| n.contains("/v1")));
}

fn with_errors(mut s: Summary, cell: usize, errors: u64) -> Summary {
    s.cells[cell].streams[0].errors = errors;
    s.cells[cell].streams[0].errors_by_kind = BTreeMap::from([("connect".into(), errors)]);
    s
}

#[test]
fn a_cell_with_too_many_failed_requests_is_not_a_candidate() {
    // 10m is the cost pick (44); at 10 of 100 failed it stays one, at 11 it is out
    // and 1m (46) wins.
    let r = &recommend(
        &with_errors(summary(), 2, 10),
        &cost(7.2),
        &SloSettings::default(),
    )[0];
    assert_eq!(
        r.cost_choice
            .as_ref()
            .map(|k| crate::units::as_written(k.as_ref())),
        Some("10m")
    );
    let r = &recommend(
        &with_errors(summary(), 2, 11),
        &cost(7.2),
        &SloSettings::default(),
    )[0];
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "1m");
    assert!(
        r.reason.contains("10m: 11 of 100 requests failed"),
        "{}",
        r.reason
    );
    assert!(!r.candidates[2].on_frontier);
    // Also for the SLO and cold-only forms.
    let slo = SloSettings {
        ttft_p99: Some(Duration::from_millis(100)),
    };
    let r = &recommend(&with_errors(summary(), 2, 100), &cost(7.2), &slo)[0];
    assert_ne!(crate::units::as_written(r.chosen.as_ref()), "10m");
    let mut s = with_errors(summary(), 2, 100);
    for c in &mut s.cells {
        c.vram = None;
    }
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    assert_eq!(r.form, Form::ColdOnly);
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "1m");
}

#[test]
fn with_no_valid_candidate_nothing_is_recommended() {
    let mut s = summary();
    for i in 0..3 {
        s = with_errors(s, i, 100);
    }
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    assert_eq!(r.form, Form::NoCandidate);
    assert!(r.chosen_candidate().is_none());
    assert!(r.cost_choice.is_none());
    assert!(r.candidates.iter().all(|c| !c.on_frontier));
    let h = r.headline();
    assert!(h.starts_with("chat (m:7b): no recommendation"), "{h}");
    assert!(h.contains("10s: all 100 requests failed"), "{h}");
    assert!(!h.contains("OLLAMA_KEEP_ALIVE"), "{h}");
}

#[test]
fn a_cell_whose_memory_is_missing_gets_no_recommendation_over_it() {
    let mut s = summary();
    s.cells[1].vram = None;
    s.cells[1].memory_missing = Some("the shards that sampled it did not complete".into());
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    assert_eq!(r.form, Form::NoCandidate);
    assert!(r.chosen_candidate().is_none());
    assert!(
        r.reason
            .contains("the memory of 1 of the 3 swept cells was not measured"),
        "{}",
        r.reason
    );
    let h = r.headline();
    assert!(h.contains("did not complete"), "{h}");
    assert!(!h.contains("OLLAMA_KEEP_ALIVE"), "{h}");
}

#[test]
fn the_recommendation_is_never_off_its_own_frontier() {
    // Many seeds and cost weights, each form: the chosen cell is always one the
    // frontier marks, and the frontier is drawn on the deciding rule's axis.
    let kas = ["0", "5s", "30s", "1m", "10m", "-1"];
    let mut rng = crate::rng::SeededRng::new(25);
    let mut forms = BTreeMap::new();
    for round in 0..150 {
        let n = 2 + (rng.next_u64() % 5) as usize;
        let mut s = summary();
        s.cells = (0..n)
            .map(|i| {
                let cold = rng.next_u64() % 101;
                let p99 = 50.0 + 4000.0 * rng.unit();
                let idle = 20_000.0 * rng.unit();
                cell(&format!("c{i}"), kas[i], cold, p99, idle)
            })
            .collect();
        if round % 5 == 0 {
            for c in &mut s.cells {
                c.vram = None;
            }
        }
        let slo = SloSettings {
            ttft_p99: (round % 3 == 0).then(|| Duration::from_millis(500 + round as u64 * 7)),
        };
        let prices = cost(0.01 + 200.0 * rng.unit());
        let r = &recommend(&s, &prices, &slo)[0];
        *forms.entry(format!("{:?}", r.form)).or_insert(0) += 1;
        let chosen = r.chosen_candidate().expect("a pick");
        assert!(
            chosen.on_frontier,
            "round {round}: {:?} chose {} off its frontier ({}): {:?}",
            r.form,
            chosen.cell,
            r.frontier_metric,
            r.candidates
                .iter()
                .map(|c| (&c.cell, c.on_frontier))
                .collect::<Vec<_>>()
        );
        let want = if r.form == Form::Slo {
            "p99_ttft_ms"
        } else {
            "cold_ratio"
        };
        assert_eq!(r.frontier_metric, want, "round {round}");
        if r.form == Form::Cost {
            let noise = r.noise.as_ref().unwrap();
            let c = noise.confidence.unwrap();
            assert!((0.0..=1.0).contains(&c));
        }
    }
    for form in ["Cost", "Slo", "ColdOnly"] {
        assert!(forms.get(form).copied().unwrap_or(0) > 10, "{forms:?}");
    }
}

#[test]
fn the_cost_choice_holds_over_a_range_of_memory_prices() {
    // Totals 121, 46, 44 at 7.2: 10m is the cheapest up to the price where 1m's
    // smaller memory pays for its 18 extra cold starts (36 = 34 GB-h·k → 7.2 × 36/34).
    let mut s = summary();
    // Distinguishable: the counts of a hundred times more requests.
    for c in &mut s.cells {
        let st = &mut c.streams[0];
        st.requests *= 100;
        st.answered *= 100;
        st.cold *= 100;
        if let Some(v) = c.vram.as_mut() {
            v.idle_gb_seconds *= 100.0;
        }
    }
    let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
    assert_eq!(crate::units::as_written(r.chosen.as_ref()), "10m");
    let noise = r.noise.as_ref().unwrap();
    assert!(noise.indistinguishable.is_empty(), "{noise:?}");
    assert!(noise.confidence.unwrap() > 0.95, "{noise:?}");
    let range = noise.holds_for.unwrap();
    assert!(range.vram_gb_hour_from <= 7.2);
    let to = range.vram_gb_hour_to.unwrap();
    assert!((to - 7.2 * 3600.0 / 3400.0).abs() < 1e-6, "{range:?}");
    assert!(
        r.reason.contains("10m is the cheapest for vram_gb_hour"),
        "{}",
        r.reason
    );
}
