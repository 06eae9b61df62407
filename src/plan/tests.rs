//! The planner against `OLLAMA.md`'s figures (rule IDs in the names), against `/api/ps`
//! sizes recorded from real servers (`../shared/fixtures/ollama/`), and its fit, order
//! and change rules on small cases.

use super::*;
use crate::engine::catalogue::Capability;
use crate::folder::{RequestRecord, VramSample};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: u64 = 1024 * 1024;

fn gib(b: u64) -> f64 {
    b as f64 / GIB
}

fn planner(config: SchedConfig) -> Planner {
    Planner {
        config,
        catalogue: Catalogue::builtin(),
        measured: Vec::new(),
        sizes_from: String::new(),
    }
}

fn est(model: &str, ctx: u32, parallel: u32) -> Estimate {
    let cat = Catalogue::builtin();
    let spec = cat.resolve(model).unwrap();
    let config = SchedConfig {
        num_parallel: parallel,
        ..SchedConfig::default()
    };
    estimate::estimate(model, spec, ctx, &config, &[])
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn e1_kv_cache_of_llama31_8b_is_128_kib_per_token() {
    // OLLAMA.md (E1's formula): 128 KiB per token, 0.5 GiB at 4k, 4 GiB at 32k.
    let e = est("llama3.1:8b", 4096, 1);
    assert_eq!(e.kv_per_token, 128 * 1024);
    assert_eq!(e.kv, 512 * MIB);
    assert_eq!(est("llama3.1:8b", 32768, 1).kv, 4096 * MIB);
}

#[test]
fn e1_three_8b_q4_fit_at_4k_and_two_at_32k_on_24_gib() {
    // OLLAMA.md, "24 GB holds three 7B": ≈5.1 GiB each at 4096 (three fit, the default
    // cap is 3), ≈9.3 GiB each at 32k (two). Those figures are weights + KV + E1's
    // num_batch term; the estimate adds the runtime's 300 MiB.
    let at4k = est("llama3.1:8b", 4096, 1);
    let at32k = est("llama3.1:8b", 32768, 1);
    let without_runtime = |e: &Estimate| gib(e.total - 300 * MIB);
    assert!((without_runtime(&at4k) - 5.1).abs() < 0.1, "{at4k:?}");
    assert!((without_runtime(&at32k) - 9.3).abs() < 0.1, "{at32k:?}");
    let config = SchedConfig::default();
    let three = |e: &Estimate| fit::fit(&config, &[e.clone(), e.clone(), e.clone()]);
    assert!(three(&at4k).fits);
    let f = three(&at32k);
    assert!(!f.fits);
    let joined = f.steps.iter().filter(|s| s.verdict.joins()).count();
    assert_eq!(joined, 2, "{f:?}");
    assert_eq!(f.steps[2].verdict, Verdict::TooBig);
}

#[test]
fn e1_q4_saves_about_half_at_32k_against_f16() {
    // OLLAMA.md, "q4 cuts VRAM ~60%": 8B at 32k predicts 9.3 vs 19.7 GiB, −53%.
    let q4 = est("llama3.1:8b-instruct-q4_K_M", 32768, 1);
    let f16 = est("llama3.1:8b-instruct-fp16", 32768, 1);
    let q4g = gib(q4.total - 300 * MIB);
    let f16g = gib(f16.total - 300 * MIB);
    assert!((f16g - 19.7).abs() < 0.1, "{f16g}");
    assert!((1.0 - q4g / f16g - 0.53).abs() < 0.02, "{q4g} vs {f16g}");
}

#[test]
fn e1_num_batch_term_and_l8_kv_for_every_slot() {
    // E1: 0 / 768 MiB / 2 GiB for total context ≤ 4096 / above / above 32768; L8: KV
    // for num_ctx × num_parallel.
    let one = est("qwen2.5:7b", 4096, 1);
    let two = est("qwen2.5:7b", 4096, 2);
    let four = est("qwen2.5:7b", 16384, 4);
    assert_eq!(one.overhead, 300 * MIB);
    assert_eq!(two.overhead, 768 * MIB + 300 * MIB);
    assert_eq!(four.overhead, 2048 * MIB + 300 * MIB);
    assert_eq!(two.kv, 2 * one.kv);
    assert_eq!(four.parallel, 4);
}

#[test]
fn l8_embedding_models_get_one_slot() {
    let e = est("nomic-embed-text:v1.5", 2048, 4);
    assert_eq!(e.parallel, 1);
}

#[test]
fn l5_num_ctx_is_clamped_to_the_training_context() {
    // qwen2.5:7b trains at 32k: asking 65536 gets 32768.
    assert_eq!(est("qwen2.5:7b", 65536, 1).num_ctx, 32768);
}

#[test]
fn estimate_matches_the_resident_size_ollama_docs_show_for_mistral() {
    // OLLAMA.md: ollama/ollama docs/api.md shows mistral 7B Q4_0 at 5,137,025,024 bytes
    // resident (its context unstated; the docs' era defaulted to 2048, later 4096).
    let docs = 5_137_025_024f64;
    for ctx in [2048, 4096] {
        let e = est("mistral:7b-instruct-q4_0", ctx, 1);
        let err = (e.total as f64 - docs) / docs;
        assert!(
            err.abs() < 0.10,
            "num_ctx {ctx}: {} vs {docs}: {err:.3}",
            e.total
        );
    }
}

fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/ollama")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn fixtures_here() -> bool {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/ollama")
        .is_dir()
}

/// `/api/tags` size of a model in the recorded listing.
fn tags_size(name: &str) -> u64 {
    let tags = fixture("tags-v0.11.6.pretty.json");
    tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["size"].as_u64())
        .unwrap()
}

/// `(size, size_vram, context_length)` of a model in a recorded `/api/ps`.
fn ps_entry(file: &str, name: &str) -> (u64, u64, u32) {
    let ps = fixture(file);
    let m = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
        .clone();
    (
        m["size"].as_u64().unwrap(),
        m["size_vram"].as_u64().unwrap(),
        m["context_length"].as_u64().unwrap() as u32,
    )
}

fn spec(
    name: &str,
    file: u64,
    layers: u32,
    kv_heads: u32,
    head_dim: u32,
    quant: &str,
) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        aliases: Vec::new(),
        family: "llama".into(),
        parameter_size: String::new(),
        quantization: quant.into(),
        file_bytes: file,
        block_count: layers,
        kv_heads,
        head_dim,
        context_length: 131072,
        prefill_tps: 0.0,
        decode_tps: 0.0,
        capabilities: vec![Capability::Completion],
        embedding_length: None,
        source: String::new(),
        load_s: None,
        overhead_bytes: None,
        overhead_per_token: None,
    }
}

#[test]
fn p2_estimate_of_dolphin3_from_its_recorded_show_and_tags_is_within_10_percent_of_api_ps() {
    // A real v0.10.1 server held dolphin3:8b (Llama-3.1-8B geometry, Q4_K_M) at
    // context_length 16384: /api/ps size 8,650,752,576. Its geometry from the recorded
    // /api/show, its file from the recorded /api/tags, read as `--target` reads them.
    if !fixtures_here() {
        return;
    }
    let show: crate::ollama::api::ShowResponse =
        serde_json::from_value(fixture("show-verbose-dolphin3-8b-v0.11.6.pretty.json")).unwrap();
    let spec = live::spec_from_show("dolphin3:8b", &show, tags_size("dolphin3:8b")).unwrap();
    assert_eq!(
        (spec.block_count, spec.kv_heads, spec.head_dim),
        (32, 8, 128)
    );
    let (size, _, ctx) = ps_entry(
        "ps-partial-offload-dolphin3-8b-v0.10.1.pretty.json",
        "dolphin3:8b",
    );
    let e = estimate::estimate("dolphin3:8b", &spec, ctx, &SchedConfig::default(), &[]);
    assert!(
        e.weights + e.kv <= size,
        "weights + KV exceed what the server held"
    );
    let err = (e.total as f64 - size as f64) / size as f64;
    assert!(err.abs() < 0.10, "{} vs {size}: {err:.3}", e.total);
}

#[test]
fn p2_estimates_of_two_small_gpu_models_bound_their_recorded_sizes() {
    // A real v0.11.6 server held granite3.3:2b (Q4_K_M) and smollm2:1.7b (Q8_0) fully in
    // VRAM at context 4096. Geometry from ibm-granite/granite-3.3-2b-instruct (40 layers,
    // 8 KV heads of 64) and HuggingFaceTB/SmolLM2-1.7B-Instruct (24 layers, 32 KV heads
    // of 64) config.json; files from the recorded /api/tags. E1's fixed 300 MiB
    // undercounts the compute buffers of these small models by about half a GB: the
    // estimate stays within 20%, and weights + KV never exceed the size.
    if !fixtures_here() {
        return;
    }
    let ps = "ps-two-models-v0.11.6.pretty.json";
    for (name, layers, kv_heads, quant) in [
        ("granite3.3:2b", 40, 8, "Q4_K_M"),
        ("smollm2:1.7b", 24, 32, "Q8_0"),
    ] {
        let s = spec(name, tags_size(name), layers, kv_heads, 64, quant);
        let (size, size_vram, ctx) = ps_entry(ps, name);
        assert_eq!(size, size_vram, "{name} was wholly in VRAM");
        let e = estimate::estimate(name, &s, ctx, &SchedConfig::default(), &[]);
        assert!(e.weights + e.kv <= size, "{name}");
        let err = (e.total as f64 - size as f64) / size as f64;
        assert!(err.abs() < 0.20, "{name}: {} vs {size}: {err:.3}", e.total);
    }
}

#[test]
fn p2_on_a_cpu_only_server_e1_is_an_upper_bound() {
    // A CPU-only server held tinyllama (TinyLlama-1.1B: 22 layers, 4 KV heads of 64;
    // Q4_0 = 4.5 bits per weight, the catalogue's rule, on 1.1 B weights) at 4096:
    // size 827,340,800, size_vram 0. Without a GPU the runtime's 300 MiB is not held,
    // so E1's prediction is above the size and weights + KV below it.
    if !fixtures_here() {
        return;
    }
    let (size, size_vram, ctx) = ps_entry(
        "ps-cpu-only-size_vram-0-tinyllama.pretty.json",
        "tinyllama:latest",
    );
    assert_eq!(size_vram, 0);
    let file = (1.1e9 * 4.5 / 8.0) as u64;
    let s = spec("tinyllama:latest", file, 22, 4, 64, "Q4_0");
    let e = estimate::estimate("tinyllama", &s, ctx, &SchedConfig::default(), &[]);
    assert!(
        e.weights + e.kv <= size && size <= e.total,
        "{e:?} vs {size}"
    );
}

#[test]
fn a_measured_size_replaces_the_estimate_and_is_marked() {
    let cat = Catalogue::builtin();
    let spec = cat.resolve("tiny-50m").unwrap();
    let m = MeasuredSize {
        model: spec.name.clone(),
        num_ctx: 2048,
        size: 100_000_000,
        size_vram: 0,
        load_s: 0.3,
    };
    let config = SchedConfig::default();
    let e = estimate::estimate("tiny-50m", spec, 2048, &config, std::slice::from_ref(&m));
    assert_eq!((e.total, e.figure), (100_000_000, Figure::Measured));
    assert_eq!(e.weights + e.kv + e.overhead, e.total);
    let other = estimate::estimate("tiny-50m", spec, 4096, &config, &[m]);
    assert_eq!(other.figure, Figure::Estimated);
}

#[test]
fn e5_the_model_cap_evicts_on_a_cpu_host_first_listed_first() {
    // E2: no VRAM test without a GPU; E5: the cap evicts; E3: the idle model with the
    // shortest keep_alive goes (the round-robin gives the first listed the shortest).
    let models = names(&["tiny-50m", "tiny-50m:q8_0", "tiny-150m"]);
    let config = SchedConfig {
        gpus: 0,
        max_loaded_models: 2,
        ..SchedConfig::default()
    };
    let p = planner(config);
    let c = p.evaluate(&models, 2048, 1, None, 2).unwrap();
    assert!(!c.fit.fits);
    assert_eq!(c.fit.steps[2].verdict, Verdict::CountCap);
    let cold: Vec<bool> = c.timeline.iter().map(|s| s.cold).collect();
    assert_eq!(cold, [true, true, true, true, true, false]);
    assert_eq!(c.timeline[2].evicted, ["tiny-50m:latest"]);
    assert_eq!(c.timeline[3].evicted, ["tiny-50m:q8_0"]);
    assert_eq!(c.timeline[4].evicted, ["tiny-50m:latest"]);
    // The smallest change: raise the cap.
    let plan = p
        .plan(&Asked {
            models: models.clone(),
            num_ctx: vec![2048],
            ..Asked::default()
        })
        .unwrap();
    let best = &plan.combinations[0].changes[0];
    assert_eq!(best.axis, change::Axis::MaxLoadedModels);
    assert_eq!(best.what, "OLLAMA_MAX_LOADED_MODELS=3");
    // With a cap of 1 every request is cold and evicts the one before.
    let one = p.evaluate(&models, 2048, 1, None, 1).unwrap();
    assert!(one.timeline.iter().all(|s| s.cold));
    assert_eq!(one.evictions, 5);
}

#[test]
fn e1_acceptance_set_fits_at_4k_not_at_32k_and_a_smaller_context_fixes_it() {
    let p = planner(SchedConfig::default());
    let plan = p
        .plan(&Asked {
            models: names(&["qwen2.5:7b", "llama3.1:8b", "mistral:7b"]),
            num_ctx: vec![32768, 4096],
            ..Asked::default()
        })
        .unwrap();
    let (first, second) = (&plan.combinations[0], &plan.combinations[1]);
    assert_eq!(
        (first.num_ctx, first.fit.fits, first.evictions),
        (4096, true, 0)
    );
    assert!(first.fit.headroom.unwrap() > 0);
    assert_eq!((second.num_ctx, second.fit.fits), (32768, false));
    assert!(second.evictions > 0);
    // The fit test and the scheduler's replay agree: round 1 evicts exactly when a
    // model does not join.
    let round1 = second.timeline.iter().filter(|s| s.round == 1);
    assert_eq!(
        round1.map(|s| s.evicted.len()).sum::<usize>(),
        second
            .fit
            .steps
            .iter()
            .filter(|s| !s.verdict.joins())
            .count()
    );
    let best = &second.changes[0];
    assert_eq!(best.axis, change::Axis::NumCtx);
    assert_eq!(best.settings.num_ctx, 16384);
    let text = render::text(&plan);
    assert!(text.contains("≤ 80% × "), "{text}");
    assert!(text.contains("evicts one first (E1, E3)"), "{text}");
    assert!(text.contains("OLLAMA_CONTEXT_LENGTH=16384"), "{text}");
}

#[test]
fn errors_for_no_models_unknown_models_missing_quants_and_a_vram_that_fits_nothing() {
    let p = planner(SchedConfig::default());
    assert_eq!(p.plan(&Asked::default()), Err(PlanError::NoModels));
    let unknown = p.plan(&Asked {
        models: names(&["nosuch:1b"]),
        ..Asked::default()
    });
    assert!(matches!(unknown, Err(PlanError::UnknownModel(m, _)) if m == "nosuch:1b"));
    let quant = p.plan(&Asked {
        models: names(&["tiny-150m"]),
        quant: names(&["q8_0"]),
        ..Asked::default()
    });
    assert!(matches!(quant, Err(PlanError::NoQuant { .. })));
    let small = planner(SchedConfig {
        vram_bytes: 2 << 30,
        ..SchedConfig::default()
    });
    let err = small
        .plan(&Asked {
            models: names(&["qwen2.5:7b", "llama3.1:8b"]),
            num_ctx: vec![4096],
            ..Asked::default()
        })
        .unwrap_err();
    assert!(matches!(err, PlanError::FitsNothing { .. }), "{err}");
    assert!(err.to_string().contains("larger --vram"));
}

#[test]
fn quantization_variants_resolve_by_tag() {
    let p = planner(SchedConfig::default());
    let models = names(&["qwen2.5:7b"]);
    let c = p.evaluate(&models, 4096, 1, Some("q8_0"), 0).unwrap();
    assert_eq!(c.estimates[0].model, "qwen2.5:7b-instruct-q8_0");
    assert_eq!(c.estimates[0].quantization, "Q8_0");
}

fn row(model: &str, t: f64, cold: bool) -> RequestRecord {
    RequestRecord {
        model: model.into(),
        intended_ms: t,
        sent_ms: Some(t),
        end_ms: t + 200.0,
        cold,
        ..RequestRecord::default()
    }
}

fn poll(t: f64, models: &[&str]) -> Vec<VramSample> {
    let mut out: Vec<VramSample> = models
        .iter()
        .map(|m| VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            model: m.to_string(),
            used_bytes: 0,
            total_bytes: Some(1),
            ..VramSample::default()
        })
        .collect();
    if out.is_empty() {
        out.push(VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            ..VramSample::default()
        });
    }
    out
}

#[test]
fn observed_evictions_come_from_api_ps_around_each_cold_request() {
    let models = names(&["a", "b"]);
    let rows = [
        row("a", 0.0, true),
        row("b", 1000.0, true),
        row("a", 2000.0, true),
    ];
    let mut samples = Vec::new();
    samples.extend(poll(-10.0, &[]));
    samples.extend(poll(500.0, &["a:latest"]));
    samples.extend(poll(1500.0, &["b:latest"]));
    samples.extend(poll(2500.0, &["a:latest"]));
    let seen = observe::observed(&models, &rows, &samples);
    assert_eq!(seen[0].evicted, Vec::<String>::new());
    assert_eq!(seen[1].evicted, ["a"]);
    assert_eq!(
        (seen[2].round, seen[2].evicted.clone()),
        (2, vec!["b".to_string()])
    );
    let predicted = vec![
        Step {
            round: 1,
            model: "a".into(),
            cold: true,
            evicted: vec![],
            at_s: None,
            load_s: None,
        },
        Step {
            round: 1,
            model: "b".into(),
            cold: true,
            evicted: vec!["a".into()],
            at_s: None,
            load_s: None,
        },
        Step {
            round: 2,
            model: "a".into(),
            cold: false,
            evicted: vec![],
            at_s: None,
            load_s: None,
        },
    ];
    let cmp = observe::Comparison::of(predicted, seen);
    assert!(!cmp.matches());
    assert_eq!(cmp.differences, [2]);
    assert!(cmp.text().contains("1 request(s) differ (#3)"));
}

#[test]
fn an_overlapping_request_is_read_at_its_load_not_its_end_and_named() {
    // c loads at 2.0 s (evicting a) and still runs at 3.0 s when a comes back and
    // evicts b: reading /api/ps at c's end would blame c for b.
    let models = names(&["a", "b", "c"]);
    let mut rows = vec![
        row("a", 0.0, true),
        row("b", 1000.0, true),
        row("c", 2000.0, true),
        row("a", 3000.0, true),
    ];
    rows[2].load_duration_ms = Some(500.0);
    rows[2].end_ms = 3500.0;
    rows[3].load_duration_ms = Some(100.0);
    let mut samples = Vec::new();
    samples.extend(poll(500.0, &["a"]));
    samples.extend(poll(1500.0, &["a", "b"]));
    samples.extend(poll(2600.0, &["b", "c"]));
    samples.extend(poll(3200.0, &["c", "a"]));
    samples.extend(poll(3600.0, &["c", "a"]));
    let seen = observe::observed(&models, &rows, &samples);
    assert_eq!(seen[2].evicted, ["a"]);
    assert_eq!(seen[3].evicted, ["b"]);
    assert_eq!(observe::overlapping(&rows), [3]);
}

#[test]
fn a_request_that_waited_on_a_load_is_not_a_load_of_its_own() {
    // b is sent while a loads (0–2.0 s) and is handed over 20 ms after a's load ends:
    // its load_duration (1.52 s) is the wait. c, sent during a's load too, loads
    // itself for 0.6 s after it: a load.
    let mut rows = vec![
        row("a", 0.0, true),
        row("b", 500.0, true),
        row("c", 600.0, true),
        row("a", 5000.0, false),
    ];
    rows[0].load_duration_ms = Some(2000.0);
    rows[1].load_duration_ms = Some(1520.0);
    rows[2].load_duration_ms = Some(2000.0);
    let refs: Vec<&RequestRecord> = rows.iter().collect();
    assert_eq!(observe::made_load(&refs), [true, false, true, false]);
    let seen = observe::observed(&names(&["a", "b", "c"]), &rows, &[]);
    assert_eq!(seen.iter().filter(|s| s.cold).count(), 2);
    assert_eq!(seen[1].load_s, None);
}

#[test]
fn the_most_models_listed_at_once_is_read_from_the_polls() {
    let mut samples = Vec::new();
    samples.extend(poll(0.0, &["a"]));
    samples.extend(poll(1000.0, &["a", "b"]));
    samples.extend(poll(2000.0, &["b"]));
    assert_eq!(observe::most_resident(&samples), 2);
    assert_eq!(observe::most_resident(&[]), 0);
}
