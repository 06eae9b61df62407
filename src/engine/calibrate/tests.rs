//! Tests of the calibration from a run folder.

use super::*;
use std::io::Write;

const HEADER: &str = "cell,request,stream,model,keep_alive,warmup,intended_ms,sent_ms,first_byte_ms,first_token_ms,first_answer_ms,end_ms,status,error,error_detail,resident_before,load_duration_ms,cold,cold_reason,prompt_eval_count,prompt_eval_ms,eval_count,eval_ms,total_duration_ms,ttft_ms,e2e_ms,itl_ms";

/// A request row: model, stream, cold, load_duration ms, prompt tokens/ms, eval tokens/ms.
#[allow(clippy::too_many_arguments)]
fn row(
    stream: &str,
    model: &str,
    cold: bool,
    load: f64,
    pc: u64,
    pms: f64,
    ec: u64,
    ems: f64,
) -> String {
    format!(
        "c01,0,{stream},{model},5m,false,0,1,2,3,3,500,200,,,{},{load},{cold},{},{pc},{pms},{ec},{ems},499,3,500,10",
        !cold,
        if cold { "both" } else { "" }
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let mut f = std::fs::File::create(dir.join(file)).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A CPU-only run of tiny-50m (as the scenario names it, `/api/ps` adds the tag) and
/// an unknown model, plus one failed row that must not count.
fn cpu_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        row("chat", "tiny-50m", true, 260.0, 100, 50.0, 16, 80.0),
        row("chat", "tiny-50m", true, 250.0, 100, 50.0, 16, 80.0),
        row("chat", "tiny-50m", true, 510.0, 100, 50.0, 16, 80.0),
        // Warm: a cached prompt prefix makes prompt eval look 50× faster.
        row("chat", "tiny-50m", false, 1.0, 100, 1.0, 16, 100.0),
        row("chat", "tiny-50m", false, 2.0, 100, 1.0, 16, 80.0),
        row("chat", "tiny-50m", false, 1.5, 100, 1.0, 16, 70.0),
        row("other", "custom:1b", true, 800.0, 200, 100.0, 32, 320.0),
        "c01,9,chat,tiny-50m,5m,false,0,1,,,,500,500,http,boom,false,9000,true,both,,,,,,,500,"
            .to_string(),
    ];
    write(
        dir.path(),
        "requests.csv",
        &format!("{HEADER}\n{}\n", rows.join("\n")),
    );
    write(
        dir.path(),
        "vram.csv",
        "t_ms,source,device,model,used_bytes,total_bytes,extra\n\
         10,ollama_ps,ollama,tiny-50m:latest,0,139271862,2026-01-01T00:00:00Z\n\
         10,ollama_ps,ollama,,0,139271862,models=1\n\
         20,ollama_ps,ollama,tiny-50m:latest,0,139000000,2026-01-01T00:00:00Z\n\
         30,ollama_ps,ollama,custom:1b,0,2000000000,2026-01-01T00:00:00Z\n\
         30,rss,host,,900000000,,processes=2\n",
    );
    write(
        dir.path(),
        "scenario.toml",
        "name = \"t\"\n[[stream]]\nname = \"chat\"\nmodel = \"tiny-50m\"\nnum_ctx = 4096\n\
         [[stream]]\nname = \"other\"\nmodel = \"custom:1b\"\nnum_ctx = 2048\n",
    );
    dir
}

#[test]
fn measures_each_model_of_a_cpu_run() {
    let dir = cpu_run();
    let c = calibrate(dir.path()).unwrap();
    assert!(c.cpu_only);
    assert!(!c.simulated, "no run.json: not known to be simulated");
    assert_eq!(c.models.len(), 2);
    let m = &c.models[0];
    assert_eq!(m.model, "tiny-50m");
    assert_eq!(m.ps_name.as_deref(), Some("tiny-50m:latest"));
    assert_eq!(m.cold_requests, 3, "the failed row is left out");
    assert_eq!(m.cold_load_ms, Some(260.0));
    assert_eq!(m.warm_load_ms, Some(1.5));
    assert_eq!(m.prefill_tps, Some(2000.0), "from the cold requests only");
    assert_eq!(m.decode_tps, Some(200.0));
    assert_eq!(
        m.resident_bytes,
        Some(139_271_862),
        "the largest /api/ps size"
    );
    assert_eq!(m.on_gpu(), Some(false));
    assert_eq!(m.num_ctx, Some(4096));
    let (lo, hi) = c.warm_range_ms.unwrap();
    assert!(
        (1.0..1.5).contains(&lo) && hi > 1.5 && hi <= 2.0,
        "{lo} {hi}"
    );
    let text = c.describe().join("\n");
    assert!(text.contains("CPU-only host"), "{text}");
    assert!(text.contains("tiny-50m: cold load 0.260 s"), "{text}");
}

#[test]
fn overrides_make_the_simulator_that_host() {
    let dir = cpu_run();
    let c = calibrate(dir.path()).unwrap();
    let mut settings = SimSettings {
        vram: Some("24GiB".into()),
        calibrate: Some(dir.path().display().to_string()),
        ..SimSettings::default()
    };
    c.apply(&mut settings);
    assert_eq!(settings.gpus, Some(0));
    assert_eq!(settings.vram, None);
    assert_eq!(settings.calibrate, None);
    let config = settings.sched_config(1).unwrap();
    assert!(config.cpu_only());
    assert!(config.warm_overhead.1 <= std::time::Duration::from_millis(2));
    let cat = settings.catalogue();
    let tiny = cat.resolve("tiny-50m").unwrap();
    assert_eq!(tiny.load_s, Some(0.26));
    assert_eq!(tiny.decode_tps, 200.0);
    assert_eq!(
        crate::engine::sched::predicted_size(tiny, 4096, 1),
        139_271_862,
        "resident size reproduced at the run's num_ctx"
    );
    assert!(
        tiny.source.starts_with("calibrated from run "),
        "{}",
        tiny.source
    );
    let custom = cat.resolve("custom:1b").unwrap();
    assert_eq!(custom.name, "custom:1b");
    assert_eq!(
        crate::engine::sched::predicted_size(custom, 2048, 1),
        2_000_000_000
    );
    assert_eq!(
        crate::engine::sched::predicted_size(custom, 8192, 1),
        2_000_000_000
    );
    assert_eq!(custom.load_s, Some(0.8));
    assert_eq!(custom.context_length, 2048);
}

#[test]
fn a_gpu_run_leaves_the_host_and_a_missing_folder_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "requests.csv",
        &format!(
            "{HEADER}\n{}\n",
            row("chat", "qwen2.5:7b", true, 3000.0, 10, 10.0, 4, 40.0)
        ),
    );
    write(
        dir.path(),
        "vram.csv",
        "t_ms,source,device,model,used_bytes,total_bytes,extra\n\
         10,ollama_ps,ollama,qwen2.5:7b,5000000000,5000000000,\n",
    );
    let c = calibrate(dir.path()).unwrap();
    assert!(!c.cpu_only);
    assert_eq!(c.models[0].on_gpu(), Some(true));
    let mut settings = SimSettings::default();
    c.apply(&mut settings);
    assert_eq!(settings.gpus, None);
    assert_eq!(settings.warm_overhead, None, "no warm request measured");
    // No num_ctx known: the measured size at any context.
    let cat = settings.catalogue();
    let m = cat.resolve("qwen2.5:7b").unwrap();
    assert_eq!(m.name, "qwen2.5:7b-instruct-q4_K_M");
    assert_eq!(
        crate::engine::sched::predicted_size(m, 4096, 1),
        5_000_000_000
    );
    let e = calibrate(&dir.path().join("nope")).unwrap_err();
    assert!(format!("{e:#}").contains("kabench run folder"), "{e:#}");
}
