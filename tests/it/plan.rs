//! `kabench plan` through the binary: the acceptance set on a 24 GiB GPU (fits at 4096,
//! not at 32768, with the arithmetic), `--check` on the simulator observing the
//! predicted evictions (E1, E3) and leaving run folders `kabench report` renders, the
//! bad-input exits, and `--check` against the real Ollama (CPU build, tiny models)
//! observing the evictions the model cap predicts (E5) with `OLLAMA_MAX_LOADED_MODELS`
//! 1 and 2.

use crate::common::{RealOllama, SimServer, kabench, read_json, run_ok};

const ACCEPTANCE: [&str; 7] = [
    "plan",
    "--models",
    "qwen2.5:7b,llama3.1:8b,mistral:7b",
    "--num-ctx",
    "4096,32768",
    "--vram",
    "24GiB",
];

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_three_7b_models_fit_at_4096_and_not_at_32768_on_24_gib() {
    let out = text(&run_ok(&ACCEPTANCE));
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(['1', '2'])).collect();
    assert!(
        rows[0].contains(" 4096 ") && rows[0].contains(" yes "),
        "{out}"
    );
    assert!(
        rows[1].contains(" 32768 ") && rows[1].contains(" no "),
        "{out}"
    );
    // The arithmetic: each model's parts and each admission test with its rule.
    assert!(out.contains("131072 B/token × 32768 × 1"), "{out}");
    assert!(
        out.contains("> 80% × 6.25 GiB free = 5.00 GiB: evicts one first (E1, E3)"),
        "{out}"
    );
    assert!(
        out.contains("smallest change that fits: num_ctx 16384"),
        "{out}"
    );
    assert!(
        out.contains("OLLAMA_CONTEXT_LENGTH=16384 ollama serve"),
        "{out}"
    );
}

#[test]
fn json_output_ranks_the_fitting_combination_first() {
    let mut args = ACCEPTANCE.to_vec();
    args.push("--json");
    let out = run_ok(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let combos = v["combinations"].as_array().unwrap();
    assert_eq!(combos[0]["num_ctx"], 4096);
    assert_eq!(combos[0]["fit"]["fits"], true);
    assert_eq!(combos[1]["fit"]["fits"], false);
    assert_eq!(combos[1]["estimates"][1]["figure"], "estimated");
    assert_eq!(combos[1]["changes"][0]["axis"], "num_ctx");
}

#[test]
fn check_on_the_simulator_observes_the_predicted_evictions() {
    // Wall-clock timing: not beside another timing-sensitive test.
    let _turn = crate::common::timing_turn();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("check");
    let mut args = ACCEPTANCE.to_vec();
    args.extend(["--check", "--target", "sim", "--quiet", "--out"]);
    args.push(out_dir.to_str().unwrap());
    let out = text(&run_ok(&args));
    assert!(out.contains("check #2 num_ctx 32768"), "{out}");
    assert_eq!(
        out.matches("every request as predicted").count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("observed 3 cold loads and 0 evictions"),
        "{out}"
    );
    assert!(
        out.contains("observed 5 cold loads and 3 evictions"),
        "{out}"
    );
    // Who evicted whom, when, and the reload time (E8's wait included).
    let round1 = out
        .lines()
        .filter(|l| l.starts_with("round 1 observed:"))
        .nth(1)
        .unwrap();
    assert!(
        round1.contains("at 6.0 s (evicts qwen2.5:7b-instruct-q4_K_M)"),
        "{round1}"
    );
    assert!(
        round1.contains("mistral:7b-instruct-q4_K_M cold "),
        "{round1}"
    );
    // Each check is a run folder the report renders, with VRAM per model over time
    // and the fits-together section.
    let dir = out_dir.join("c02-ctx32768-p1");
    run_ok(&["report", dir.to_str().unwrap()]);
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Fits together? (c01)"), "{md}");
    assert!(
        md.contains("would have fit: all of them with num_ctx 16384"),
        "{md}"
    );
    let svg = std::fs::read_to_string(dir.join("charts/vram-c01.svg")).unwrap();
    for m in [
        "qwen2.5:7b-instruct-q4_K_M",
        "llama3.1:8b-instruct-q4_K_M",
        "mistral:7b-instruct-q4_K_M",
    ] {
        assert!(svg.contains(m), "the VRAM chart draws {m}");
    }
    assert!(dir.join("turns-1.csv").is_file());
    let meta = read_json(&dir.join("run.json"));
    assert_eq!(meta["sim"]["evictions"], 3);
    let fits_dir = out_dir.join("c01-ctx4096-p1");
    let md = std::fs::read_to_string(fits_dir.join("summary.md")).unwrap();
    assert!(md.contains("**yes: all 3 stay resident together"), "{md}");
}

fn bad(args: &[&str]) -> String {
    let out = kabench().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_input_exits_2_with_what_to_do() {
    let e = bad(&["plan", "--models", "nosuch:1b"]);
    assert!(
        e.contains("unknown model \"nosuch:1b\"") && e.contains("kabench models"),
        "{e}"
    );
    let e = bad(&["plan", "--models", ""]);
    assert!(e.contains("no models to plan"), "{e}");
    let e = bad(&["plan"]);
    assert!(e.contains("no models to plan"), "{e}");
    let e = bad(&[
        "plan",
        "--models",
        "qwen2.5:7b,llama3.1:8b",
        "--vram",
        "2GiB",
    ]);
    assert!(
        e.contains("fits none of the models") && e.contains("larger --vram"),
        "{e}"
    );
    let e = bad(&["plan", "--models", "qwen2.5:7b", "--vram", "lots"]);
    assert!(e.contains("bad size"), "{e}");
}

#[test]
fn a_scenario_gives_the_models_and_the_host() {
    let out = text(&run_ok(&[
        "plan",
        "--scenario",
        "scenarios/multi-model-24gb.toml",
    ]));
    assert!(out.contains("host: 1 × 24 GiB GPU"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("1 ")), "{out}");
}

#[test]
fn live_sizes_from_a_server_match_the_catalogue_estimate_on_the_simulator() {
    // `kabench sim` as a live target: /api/show, /api/tags and /api/ps after a load give
    // the sizes (measured), which must be the catalogue's E1 estimate the simulator holds;
    // --quant reads the variants the server has.
    let sim = SimServer::start(&[]);
    let models = "qwen2.5:7b-instruct-q4_K_M,llama3.1:8b-instruct-q4_K_M";
    let args = |target: &str| {
        let mut a = vec![
            "plan",
            "--models",
            models,
            "--num-ctx",
            "8192",
            "--quant",
            "q4_K_M,q8_0",
        ];
        a.extend(["--target", target, "--json"]);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let live: serde_json::Value = serde_json::from_slice(
        &run_ok(
            &args(&sim.url)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .stdout,
    )
    .unwrap();
    let cat: serde_json::Value = serde_json::from_slice(
        &run_ok(&args("sim").iter().map(String::as_str).collect::<Vec<_>>()).stdout,
    )
    .unwrap();
    assert!(
        live["sizes_from"]
            .as_str()
            .unwrap()
            .starts_with("measured on ")
    );
    let totals = |v: &serde_json::Value| -> Vec<(String, u64, String)> {
        v["combinations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["estimates"].as_array().unwrap().clone())
            .map(|e| {
                (
                    e["model"].as_str().unwrap().to_string(),
                    e["total"].as_u64().unwrap(),
                    e["figure"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (l, c) = (totals(&live), totals(&cat));
    assert_eq!(l.len(), 4);
    for ((lm, lt, lf), (cm, ct, cf)) in l.iter().zip(&c) {
        assert_eq!(
            (lm, lf.as_str(), cf.as_str()),
            (cm, "measured", "estimated")
        );
        assert_eq!(lt, ct, "{lm}: measured on the simulator vs the catalogue");
    }
}

#[test]
fn a_scenario_model_outside_the_catalogue_is_planned_and_checked_on_the_simulator() {
    // A [[sim.models]] entry goes to the simulator with the check.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("extra.toml");
    std::fs::write(&path, EXTRA).unwrap();
    let out = text(&run_ok(&[
        "plan",
        "--scenario",
        path.to_str().unwrap(),
        "--check",
        "--quiet",
        "--gap",
        "2s",
        "--out",
        tmp.path().join("check").to_str().unwrap(),
    ]));
    assert!(out.contains("host: 1 × 8 GiB GPU"), "{out}");
    assert!(out.contains("mini:1b (mini:1b, Q4_K_M)"), "{out}");
    assert!(out.contains("every request as predicted"), "{out}");
}

const EXTRA: &str = r#"name = "extra"
[sim]
vram = "8GiB"
[[sim.models]]
name = "mini:1b"
family = "llama"
parameter_size = "1B"
quantization = "Q4_K_M"
file_bytes = 1000000000
block_count = 16
kv_heads = 8
head_dim = 64
context_length = 8192
prefill_tps = 900.0
decode_tps = 100.0
capabilities = ["completion"]
[[stream]]
name = "a"
model = "mini:1b"
num_ctx = 8192
arrival = { kind = "constant", rate = "1/s" }
[[stream]]
name = "b"
model = "qwen2.5:3b"
num_ctx = 8192
arrival = { kind = "constant", rate = "1/s" }
[run]
requests = 2
"#;

/// `--check` against the real server with `OLLAMA_MAX_LOADED_MODELS=cap`: the sizes
/// are measured, the host is CPU-only, and the observed evictions are the predicted ones.
fn real_cap_check(cap: &str, expect_cold: usize, expect_evictions: usize) {
    let Some(real) = RealOllama::start(
        &format!("plan-cap{cap}"),
        &[("OLLAMA_MAX_LOADED_MODELS", cap)],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("check");
    let out = kabench()
        .args([
            "plan",
            "--models",
            "tiny-50m,tiny-50m:q8_0,tiny-150m",
            "--num-ctx",
            "2048",
            "--max-loaded-models",
            cap,
            "--target",
            &real.url,
            "--check",
            "--quiet",
            // A cold load of tiny-150m can take 4 s on a busy 2-core host.
            "--gap",
            "7s",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = text(&out);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nserver log: {}",
        String::from_utf8_lossy(&out.stderr),
        real.log.display()
    );
    assert!(stdout.contains("host: a CPU-only host"), "{stdout}");
    assert!(stdout.contains("(measured)"), "{stdout}");
    assert!(stdout.contains("every request as predicted"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "observed {expect_cold} cold loads and {expect_evictions} evictions"
        )),
        "{stdout}"
    );
}

#[test]
fn real_ollama_check_observes_the_cap_of_one_model() {
    // E5 with a cap of 1: every request loads and evicts the one before.
    real_cap_check("1", 6, 5);
}

#[test]
fn real_ollama_check_observes_the_cap_of_two_models() {
    // E5 with a cap of 2, E3's victim the idle model with the shortest keep_alive.
    real_cap_check("2", 5, 3);
}

#[test]
fn real_ollama_unknown_model_says_what_to_pull() {
    let Some(real) = RealOllama::start("plan-unknown", &[]) else {
        return;
    };
    let out = kabench()
        .args([
            "plan",
            "--models",
            "tiny-50m,nosuch:1b",
            "--target",
            &real.url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("`ollama pull nosuch:1b`"), "{e}");
}
