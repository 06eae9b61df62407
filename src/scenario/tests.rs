//! Tests of scenario parsing, defaults, every validation message (line and key), and
//! plan expansion.

use std::collections::HashSet;

use super::*;

fn p(text: &str) -> std::result::Result<Scenario, ScenarioError> {
    parse(text, Path::new("scenarios/x.toml"))
}

const FULL: &str = r#"
name = "full"
seed = 7
[target]
kind = "ollama"
url = "http://127.0.0.1:11434"
[sim]
vram = "24GiB"
max_loaded_models = 2
[[stream]]
name = "tagging"
model = "qwen2.5:7b-instruct-{quant}"
api = "chat"
num_ctx = 8192
prompt_tokens = 300
max_tokens = 16
keep_alive = 300
arrival = { kind = "gamma", rate = "0.5/s", cv = 2 }
[[stream]]
name = "vision"
model = "llava:7b-{quant}"
prompt = "Describe this image."
images = 1
think = false
arrival = { kind = "onoff", rate = "2/s", on = "10s", off = 60 }
[run]
requests = 20
concurrency = 8
timeout = "30s"
warmup = 1
cold_threshold = "150ms"
pause = 2
[sweep]
keep_alive = ["0", "2s", 30, -1]
rate = ["0.2/s", "2/s"]
quant = ["q4_K_M", "q8_0", "fp16"]
[telemetry]
sources = ["ollama_ps", "prometheus"]
interval = "10ms"
ps_interval = "250ms"
ps_adaptive = false
prometheus_url = "http://prom:9090"
[cost]
vram_gb_hour = 3.5
cold_penalty = "2s"
[slo]
ttft_p99 = "1.5s"
[swarm]
users = 4
think_time = { min = "500ms", max = "2s" }
run_time = "10s"
"#;

#[test]
fn a_full_scenario_parses_with_every_section() {
    let s = p(FULL).unwrap();
    assert_eq!(s.name, "full");
    assert_eq!(s.seed, 7);
    assert_eq!(
        s.target,
        Some(TargetSpec::Ollama {
            url: Some("http://127.0.0.1:11434".into())
        })
    );
    assert_eq!(s.sim.vram.as_deref(), Some("24GiB"));
    assert_eq!(s.streams.len(), 2);
    let t = &s.streams[0];
    assert_eq!((t.api, t.num_ctx, t.max_tokens), (Api::Chat, 8192, 16));
    assert_eq!(t.prompt, Prompt::Tokens(300));
    assert_eq!(t.keep_alive.as_ref().unwrap().written(), "300");
    assert!(matches!(&t.arrival, Arrival::Gamma { rate, cv } if rate.value() == 0.5 && *cv == 2.0));
    let v = &s.streams[1];
    assert_eq!((v.api, v.images, v.think), (Api::Generate, 1, Some(false)));
    assert_eq!(v.prompt, Prompt::Text("Describe this image.".into()));
    assert_eq!(
        v.arrival,
        Arrival::OnOff {
            rate: Rate::parse("2/s").unwrap(),
            on: Duration::from_secs(10),
            off: Duration::from_secs(60)
        }
    );
    assert_eq!(s.run.requests, Some(20));
    assert_eq!(s.run.concurrency, 8);
    assert_eq!(s.run.timeout, Duration::from_secs(30));
    assert_eq!(s.run.cold_threshold, Duration::from_millis(150));
    assert_eq!(s.run.pause, Duration::from_secs(2));
    let ka: Vec<&str> = s.sweep.keep_alive.iter().map(|k| k.written()).collect();
    assert_eq!(ka, ["0", "2s", "30", "-1"]);
    assert!(s.sweep.keep_alive[3].is_forever());
    assert_eq!(s.telemetry.interval, Duration::from_millis(10));
    assert_eq!(s.telemetry.ps_interval, Some(Duration::from_millis(250)));
    assert!(!s.telemetry.ps_adaptive, "set to false");
    assert_eq!(s.telemetry.release_tolerance, Duration::from_millis(260));
    assert_eq!(
        s.telemetry.prometheus_query.as_deref(),
        Some("DCGM_FI_DEV_FB_USED")
    );
    assert_eq!(s.cost.vram_gb_hour, 3.5);
    assert_eq!(s.cost.wait_second, 1.0);
    assert_eq!(s.cost.cold_penalty, Some(Duration::from_secs(2)));
    assert_eq!(s.slo.ttft_p99, Some(Duration::from_millis(1500)));
    assert_eq!(s.swarm.users, 4);
    assert_eq!(s.swarm.hatch_rate, 4.0);
    assert_eq!(s.swarm.think_time.min, Duration::from_millis(500));
    assert_eq!(s.swarm.run_time, Duration::from_secs(10));
    assert_eq!(s.source, FULL);
}

#[test]
fn defaults_apply_to_a_minimal_scenario() {
    let s = p("[[stream]]\nmodel = \"m\"\narrival = { kind = \"poisson\", rate = 1 }\n[run]\nrequests = 3\n")
        .unwrap();
    assert_eq!(s.name, "x");
    assert_eq!(s.seed, 0);
    assert_eq!(s.target, None);
    let st = &s.streams[0];
    assert_eq!(st.name, "stream1");
    assert_eq!(
        (st.api, st.num_ctx, st.max_tokens, st.images),
        (Api::Generate, 4096, 32, 0)
    );
    assert_eq!(st.keep_alive, None);
    assert_eq!(st.arrival.rate().unwrap().written(), "1");
    let r = &s.run;
    assert_eq!((r.concurrency, r.warmup), (64, 0));
    assert_eq!(r.timeout, Duration::from_secs(120));
    assert_eq!(r.cold_threshold, Duration::from_millis(100));
    assert_eq!(r.unload_timeout, Duration::from_secs(30));
    assert_eq!(r.grace, Duration::from_secs(5));
    assert_eq!(s.telemetry.sources, ["nvml", "ollama_ps", "rss"]);
    assert_eq!(s.telemetry.interval, Duration::from_millis(100));
    assert_eq!(s.telemetry.release_tolerance, Duration::from_millis(350));
    assert!(
        s.telemetry.ps_adaptive,
        "/api/ps is polled adaptively unless the scenario says otherwise"
    );
    assert_eq!(s.telemetry.prometheus_query, None);
    assert_eq!(s.cost.vram_gb_hour, DEFAULT_VRAM_GB_HOUR);
    assert_eq!(s.slo.ttft_p99, None);
    assert_eq!((s.swarm.users, s.swarm.hatch_rate), (10, 10.0));
    assert_eq!(s.swarm.run_time, Duration::from_secs(30));
    let plan = plan(&s);
    assert_eq!(plan.cells.len(), 1);
    assert_eq!(plan.cells[0].id, "c01");
    assert!(plan.cells[0].params.is_empty());
}

#[test]
fn the_sweep_expands_to_the_cartesian_product() {
    let s = p(FULL).unwrap();
    let plan = plan(&s);
    assert_eq!(plan.cells.len(), 4 * 2 * 3);
    for (i, c) in plan.cells.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.params.len(), 3);
    }
    let ids: HashSet<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), plan.cells.len(), "ids are unique");
    // keep_alive varies slowest, quant fastest: keep_alive #1 (of 4), rate #0 (of 2),
    // quant #1 (of 3) is cell 1×6 + 0×3 + 1 = 7.
    let c = &plan.cells[7];
    assert_eq!(c.id, "c08-ka_2s-rate_0.2ps-quant_q8_0");
    assert_eq!(&c.params["keep_alive"], "2s");
    assert_eq!(&c.params["rate"], "0.2/s");
    assert_eq!(&c.params["quant"], "q8_0");
    assert_eq!(c.streams[0].model, "qwen2.5:7b-instruct-q8_0");
    assert_eq!(c.streams[1].model, "llava:7b-q8_0");
    assert_eq!(c.streams[0].keep_alive.as_ref().unwrap().written(), "2s");
    assert_eq!(c.streams[0].arrival.rate().unwrap().value(), 0.2);
    assert!(matches!(c.streams[0].arrival, Arrival::Gamma { cv, .. } if cv == 2.0));
    assert!(
        matches!(c.streams[1].arrival, Arrival::OnOff { ref rate, .. } if rate.written() == "0.2/s")
    );
    assert_eq!(c.streams[0].requests, Some(20));
    assert_eq!(c.streams[0].warmup, 1);
    let last = plan.cells.last().unwrap();
    assert_eq!(last.id, "c24-ka_-1-rate_2ps-quant_fp16");
    assert_eq!(&last.params["keep_alive"], "-1");
    assert_eq!(&plan.cells[12].params["keep_alive"], "30");
    assert_eq!(
        plan.cells[12].streams[0]
            .keep_alive
            .as_ref()
            .unwrap()
            .to_json(),
        serde_json::json!(30)
    );
    assert!(plan.cells.iter().all(|c| {
        c.id.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
    }));
}

#[test]
fn seeds_are_stable_distinct_per_stream_and_shared_across_keep_alive() {
    let s = p(FULL).unwrap();
    let a = plan(&s);
    assert_eq!(a, plan(&s), "planning is deterministic");
    // Cells 0..6 are keep_alive "0"; cells 6..12 the same rate×quant points at "2s".
    for i in 0..6 {
        let (x, y) = (&a.cells[i], &a.cells[i + 6]);
        assert_eq!(x.params["rate"], y.params["rate"]);
        assert_eq!(
            x.streams[0].seed, y.streams[0].seed,
            "same arrivals for each keep_alive"
        );
        assert_ne!(x.streams[0].seed, x.streams[1].seed, "streams differ");
    }
    let distinct: HashSet<u64> = a.cells[..6]
        .iter()
        .flat_map(|c| c.streams.iter().map(|s| s.seed))
        .collect();
    assert_eq!(
        distinct.len(),
        12,
        "every rate/quant point and stream has its own seed"
    );
    let other = p(&FULL.replace("seed = 7", "seed = 8")).unwrap();
    assert_ne!(
        plan(&other).cells[0].streams[0].seed,
        a.cells[0].streams[0].seed
    );
}

#[test]
fn repeat_rotates_the_order_reseeds_each_repetition_and_keeps_keep_alive_pairs() {
    let once = p(FULL).unwrap();
    assert_eq!(once.run.repeat, 1, "default");
    let s = p(&FULL.replace("warmup = 1", "warmup = 1\nrepeat = 3")).unwrap();
    assert_eq!(s.run.repeat, 3);
    let base = plan(&once);
    let a = plan(&s);
    let n = base.cells.len();
    assert_eq!(a.cells.len(), 3 * n);
    for (i, c) in a.cells.iter().enumerate() {
        assert_eq!(c.index, i);
        let k = i / n + 1;
        let b = &base.cells[(i % n + k - 1) % n];
        assert_eq!(c.id, format!("{}-r{k}", b.id));
        assert_eq!(c.params.repetition, Some(k as u32));
        assert_eq!(c.params.pooled(), b.params);
        assert_eq!(c.params.written()["repetition"], k.to_string());
        assert!(c.streams.iter().all(|s| s.repetition == k as u32));
        assert_ne!(c.streams[0].seed, b.streams[0].seed, "reseeded");
    }
    // Repetition 2 starts where repetition 1's second cell was.
    assert_eq!(a.cells[n].id, format!("{}-r2", base.cells[1].id));
    // Within a repetition, cells differing only in keep_alive share their seeds; across
    // repetitions they do not.
    let seed = |id: &str| a.cells.iter().find(|c| c.id == id).unwrap().streams[0].seed;
    let (x0, y0) = (&base.cells[0].id, &base.cells[6].id);
    assert_eq!(seed(&format!("{x0}-r2")), seed(&format!("{y0}-r2")));
    assert_ne!(seed(&format!("{x0}-r1")), seed(&format!("{x0}-r2")));
    let ids: HashSet<&str> = a.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), a.cells.len(), "ids are unique");

    for bad in ["repeat = 0", "repeat = 101", "repeat = -2"] {
        let e = p(&FULL.replace("warmup = 1", &format!("warmup = 1\n{bad}"))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("run.repeat") && text.contains("1 to 100"),
            "{text}"
        );
    }
}

#[test]
fn the_model_axis_replaces_every_model_and_may_carry_quant() {
    let s = p("[[stream]]\narrival = { kind = \"constant\", rate = \"1/s\" }\n[run]\nduration = \"10s\"\n[sweep]\nmodel = [\"llama3.1:8b-instruct-{quant}\", \"mistral:7b\"]\nquant = [\"q4_K_M\"]\n")
        .unwrap();
    let plan = plan(&s);
    assert_eq!(plan.cells.len(), 2);
    assert_eq!(
        plan.cells[0].streams[0].model,
        "llama3.1:8b-instruct-q4_K_M"
    );
    assert_eq!(plan.cells[1].streams[0].model, "mistral:7b");
    assert_eq!(&plan.cells[1].params["model"], "mistral:7b");
    assert_eq!(plan.cells[1].id, "c02-quant_q4_K_M-model_mistral_7b");
    assert_eq!(
        plan.cells[0].streams[0].duration,
        Some(Duration::from_secs(10))
    );
}

#[test]
fn a_rate_axis_fills_missing_rates_and_refuses_traces() {
    let s = p("[[stream]]\nmodel = \"m\"\narrival = { kind = \"constant\" }\n[run]\nrequests = 3\n[sweep]\nrate = [\"1/s\", \"4/s\"]\n").unwrap();
    let plan = plan(&s);
    assert_eq!(
        plan.cells[1].streams[0].arrival,
        Arrival::Constant {
            rate: Rate::parse("4/s").unwrap()
        }
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "time\n0\n1.5\n").unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[[stream]]\nmodel = \"m\"\narrival = { kind = \"trace\", file = \"t.csv\" }\n[run]\nrequests = 3\n[sweep]\nrate = [\"1/s\"]\n").unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("sweep.rate"), Some(7)),
        "{e}"
    );
    assert!(e.message.contains("replays a trace"), "{e}");
}

#[test]
fn trace_files_resolve_next_to_the_scenario_and_columns_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("traces")).unwrap();
    std::fs::write(
        dir.path().join("traces/t.csv"),
        "TIMESTAMP,n\n2023-11-16 18:17:03.5,1\n2023-11-16 18:17:05.5,2\n",
    )
    .unwrap();
    let path = dir.path().join("s.toml");
    let text = "[[stream]]\nmodel = \"m\"\narrival = { kind = \"trace\", file = \"traces/t.csv\", time_scale = 2.0, skip = 1 }\n[run]\nrequests = 3\n";
    std::fs::write(&path, text).unwrap();
    let s = load(&path).unwrap();
    assert_eq!(
        s.streams[0].arrival,
        Arrival::Trace {
            file: dir.path().join("traces/t.csv"),
            column: None,
            time_scale: 2.0,
            skip: 1,
            epoch: Some(1700158625.5)
        }
    );
    std::fs::write(&path, text.replace("skip = 1", "column = \"when\"")).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("stream[0].arrival.column"), "{e}");
    assert!(e.message.contains("its columns are: TIMESTAMP, n"), "{e}");
    let e = load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(
        e.to_string().contains("cannot read the scenario file"),
        "{e}"
    );
}

#[test]
fn the_error_display_has_every_part() {
    let e = ScenarioError {
        path: "scenarios/x.toml".into(),
        line: Some(12),
        column: Some(9),
        key: Some("stream[0].arrival.rate".into()),
        message: "bad rate \"fast\"".into(),
    };
    assert_eq!(
        e.to_string(),
        "scenarios/x.toml:12:9: key `stream[0].arrival.rate`: bad rate \"fast\""
    );
    let e = ScenarioError {
        line: None,
        column: None,
        key: None,
        ..e
    };
    assert_eq!(e.to_string(), "scenarios/x.toml: bad rate \"fast\"");
}
