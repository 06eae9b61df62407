//! `kabench doctor` as an operator runs it on a production Ollama: a model it found
//! loaded stays loaded unless `--allow-evict` (the checks that would evict it are
//! skipped and named), an eviction it is allowed to cause shows
//! `OLLAMA_MAX_LOADED_MODELS`, the first load is called "from disk" only after a
//! `mincore` check of the model file, the preamble and `--dry-run` list the loads,
//! unloads and num_ctx changes, and a connection error names its cause. The real
//! server runs with `OLLAMA_MAX_LOADED_MODELS=1`.

use serde_json::Value;

use crate::common::{RealOllama, free_port, kabench};

use crate::common::doctor::{self, check, failing};

/// `(name, expires_at)` of each model in `/api/ps`.
fn resident(real: &RealOllama) -> Vec<(String, String)> {
    let (_, body) = real.call("GET", "/api/ps", None);
    serde_json::from_str::<Value>(&body).unwrap()["models"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["expires_at"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A server with a cap of 1 and tiny-150m loaded for 5 minutes.
fn cap_one_with_a_loaded_model(name: &str) -> Option<RealOllama> {
    let real = RealOllama::start(name, &[("OLLAMA_MAX_LOADED_MODELS", "1")])?;
    let load = r#"{"model":"tiny-150m","keep_alive":"5m","options":{"num_ctx":1024}}"#;
    assert_eq!(real.call("POST", "/api/generate", Some(load)).0, 200);
    Some(real)
}

#[test]
fn doctor_leaves_a_model_it_found_loaded_and_names_the_checks_it_skipped() {
    let Some(real) = cap_one_with_a_loaded_model("doctor-safe-skip") else {
        return;
    };
    let before = resident(&real);
    assert_eq!(before.len(), 1, "{before:?}");
    let (code, report, stderr) = doctor::report(&real.url, &[]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    // Nothing moved: the same model, the same expiry.
    assert_eq!(resident(&real), before, "{report}");
    let skipped = check(&report, "probe.skipped");
    let evidence = skipped["evidence"].as_str().unwrap();
    assert!(evidence.contains("tiny-150m:latest"), "{skipped}");
    assert!(evidence.contains("num_ctx reloads"), "{skipped}");
    assert!(skipped["fix"].as_str().unwrap().contains("--allow-evict"));
    let cap = check(&report, "server.max_loaded_models");
    assert_eq!(cap["value"]["at_least"], 1, "{cap}");
    assert!(
        cap["evidence"].as_str().unwrap().contains("skipped"),
        "{cap}"
    );
    // The preamble says so before anything is sent.
    assert!(
        stderr.contains("loaded now: tiny-150m:latest (num_ctx 1024)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped: the checks that load tiny-50m"),
        "{stderr}"
    );
}

#[test]
fn with_allow_evict_an_eviction_shows_the_cap_and_the_evicted_model_comes_back() {
    let Some(real) = cap_one_with_a_loaded_model("doctor-safe-evict") else {
        return;
    };
    let (code, report, stderr) = doctor::report(&real.url, &["--allow-evict"]);
    assert_eq!(code, 0, "{}\n{stderr}", failing(&report));
    let cap = check(&report, "server.max_loaded_models");
    assert_eq!(cap["value"]["value"], 1, "{cap}");
    assert!(
        cap["evidence"]
            .as_str()
            .unwrap()
            .contains("OLLAMA_MAX_LOADED_MODELS=1"),
        "{cap}"
    );
    // The preamble listed what the probes change.
    assert!(stderr.contains("tiny-50m: unloaded"), "{stderr}");
    assert!(
        stderr.contains("num_ctx sent: none (the server default)"),
        "{stderr}"
    );
    // Put back: tiny-150m loaded again, the probe model gone.
    let restored = report["restored"].to_string();
    assert!(
        restored.contains("tiny-150m:latest: loaded again (num_ctx 1024"),
        "{restored}"
    );
    let now = resident(&real);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].0, "tiny-150m:latest");
    // The first load is "from disk" only where mincore said the file was not cached;
    // the model file here is on this machine, so it was checked.
    let load = check(&report, "load.page_cache");
    let evidence = load["evidence"].as_str().unwrap();
    assert!(load["value"]["file_cached_before"].is_number(), "{load}");
    assert!(evidence.contains("mincore"), "{load}");
    let cached = load["value"]["file_cached_before"].as_f64().unwrap();
    assert_eq!(evidence.contains("from disk"), cached < 0.5, "{load}");
}

#[test]
fn a_refused_connection_is_named() {
    let port = free_port();
    let out = kabench()
        .args(["doctor", "--target", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("is Ollama running there?"), "{stderr}");
}

#[test]
fn the_dry_run_lists_every_load_unload_and_num_ctx_change() {
    let out = doctor::dry_run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("tiny-50m: unloaded"), "{stdout}");
    assert!(
        stdout.contains("num_ctx sent: none (the server default), 2048"),
        "{stdout}"
    );
    assert!(stdout.contains("[unloads tiny-50m]"), "{stdout}");
    assert!(
        stdout.contains("[loads tiny-50m unless loaded, at num_ctx 2048"),
        "{stdout}"
    );
    assert!(stdout.contains("--allow-evict"), "{stdout}");
    // The JSON form gives each request's change.
    let out = doctor::dry_run(&["--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let unloads = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["changes"] == "unloads tiny-50m")
        .count();
    assert!(unloads >= 2, "{rows}");
}
