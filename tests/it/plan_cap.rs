//! `kabench plan` against the real Ollama run as an operator runs it: `--check`
//! without `--max-loaded-models` on a server with `OLLAMA_MAX_LOADED_MODELS=1` names
//! the cap the evictions show, and the sizes are measured at the num_ctx asked for,
//! clamped to the model's context, or at the server's own default when none is asked,
//! never at a context nobody asked for.

use serde_json::Value;

use crate::common::{RealOllama, kabench};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn check_infers_the_cap_from_the_evictions() {
    let Some(real) = RealOllama::start("plan-cap-infer", &[("OLLAMA_MAX_LOADED_MODELS", "1")])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = kabench()
        .args([
            "plan",
            "--models",
            "tiny-50m,tiny-50m:q8_0",
            "--num-ctx",
            "1024",
            "--target",
            &real.url,
            "--check",
            "--quiet",
            "--gap",
            "3s",
            "--out",
        ])
        .arg(tmp.path().join("check"))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let hint =
        "the server evicts as if OLLAMA_MAX_LOADED_MODELS=1; rerun with --max-loaded-models 1";
    assert!(stdout.contains(hint), "{stdout}\n{stderr}");
    assert!(stderr.contains(hint), "{stderr}");
    // Two models taking turns under a cap of 1: every request a load of its own.
    assert!(
        stdout.contains("observed 4 cold loads and 3 evictions"),
        "{stdout}"
    );
}

#[test]
fn sizes_are_measured_at_the_num_ctx_asked_clamped_or_at_the_server_default() {
    let Some(real) = RealOllama::start("plan-num-ctx", &[]) else {
        return;
    };
    let plan = |extra: &[&str]| {
        let out = kabench()
            .args([
                "plan", "--models", "tiny-50m", "--json", "--target", &real.url,
            ])
            .args(extra)
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let json: Value = serde_json::from_str(&stdout).unwrap();
        (json, stderr)
    };
    // tiny-50m's context is 4096: 8192 is clamped to it, as Ollama clamps it (L5).
    let (_, stderr) = plan(&["--num-ctx", "8192"]);
    assert!(
        stderr.contains("measuring tiny-50m at num_ctx 4096 (its context_length"),
        "{stderr}"
    );
    assert!(!stderr.contains("8192 (a load"), "{stderr}");
    // None asked: the server's own default, read back, not the 32k of a 24 GiB host.
    let (json, stderr) = plan(&[]);
    assert!(
        stderr.contains("measuring tiny-50m at the server's default context"),
        "{stderr}"
    );
    assert!(!stderr.contains("32768"), "{stderr}");
    assert!(!json.to_string().contains("32768"), "{json}");
    assert!(
        json.to_string()
            .contains("the server's default context, 4096"),
        "{json}"
    );
}
