//! `kabench doctor` against the real Ollama v0.32.15 (CPU build, `../shared/ollama`)
//! and against `kabench sim --gpus 0`: every verdict checked against what the server
//! does (`"-1"` rejected with 400, `options.keep_alive` ignored, `/v1` following the
//! server default, a `num_ctx` change reloading, `OLLAMA_KEEP_ALIVE` read back), the
//! same verdicts from both, and what was resident before restored. The real-server
//! test skips with one line where the server is not available.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::doctor::{self, check, failing, verdicts};
use crate::common::{RealOllama, SimServer, kabench};
use serde_json::Value;

/// `kabench doctor --json` against `url`: its exit code and report.
fn doctor(url: &str, extra: &[&str]) -> (i32, Value) {
    let (code, report, _) = doctor::report(url, extra);
    (code, report)
}

/// What OLLAMA.md says v0.32.15 does, asserted on one server's report.
fn assert_documented_behaviour(report: &Value, server_keep_alive_s: f64) {
    let v = verdicts(report);
    for endpoint in ["generate", "chat"] {
        let of = |form: &str| v[&format!("{endpoint}.{form}")].as_str();
        assert_eq!(of("string_minus_one"), "rejected", "KA4 on {endpoint}");
        assert_eq!(of("number"), "honoured", "KA2 on {endpoint}");
        assert_eq!(of("negative"), "honoured", "KA2 on {endpoint}");
        assert_eq!(of("duration"), "honoured", "KA3 on {endpoint}");
        assert_eq!(of("in_options"), "ignored", "KA1 on {endpoint}");
        assert_eq!(of("absent"), "honoured", "KA5 on {endpoint}");
        assert_eq!(of("zero"), "honoured", "KA3/T3 on {endpoint}");
    }
    let rejected = check(report, "generate.string_minus_one");
    assert!(
        rejected["evidence"]
            .as_str()
            .unwrap()
            .contains(r#"HTTP 400: time: missing unit in duration "-1""#),
        "{rejected}"
    );
    assert_eq!(v["v1.chat_completions"], "ignored", "H9");
    assert!(
        check(report, "v1.chat_completions")["evidence"]
            .as_str()
            .unwrap()
            .contains("the server default"),
    );
    assert_eq!(
        v["num_ctx.change"], "honoured",
        "L5: a num_ctx change reloads"
    );
    assert_eq!(v["num_ctx.absent"], "honoured", "L6: no num_ctx reloads");
    let reload = check(report, "num_ctx.change")["value"]["reload_s"]
        .as_f64()
        .unwrap();
    assert!(reload >= 0.1, "a reload costs a load: {reload}");
    let ka = check(report, "server.keep_alive")["value"]
        .as_f64()
        .unwrap();
    assert!(
        (ka - server_keep_alive_s).abs() <= 1.5,
        "OLLAMA_KEEP_ALIVE read back as {ka} s, set {server_keep_alive_s} s"
    );
    assert_eq!(check(report, "server.default_context")["value"], 4096, "L7");
    assert_eq!(check(report, "server.version")["value"], "0.32.15");
    let memory = &check(report, "memory.num_ctx")["value"];
    let sizes = memory["size"].as_array().unwrap();
    assert!(sizes[0].as_u64() < sizes[1].as_u64(), "{memory}");
    assert_eq!(check(report, "server.num_parallel")["value"], 1.0);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["holds"] == true),
        "every check holds: {report}"
    );
}

fn ps(call: impl Fn(&str, &str, Option<&str>) -> (u16, String)) -> Vec<Value> {
    let (_, body) = call("GET", "/api/ps", None);
    serde_json::from_str::<Value>(&body).unwrap()["models"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn doctor_gives_the_same_verdicts_on_the_real_server_and_the_simulator() {
    let Some(real) = RealOllama::start("doctor", &[("OLLAMA_KEEP_ALIVE", "45s")]) else {
        return;
    };
    let sim = SimServer::start(&["--gpus", "0", "--keep-alive", "45s"]);
    // A model resident before the run, with its own context and keep-alive, on both.
    let preload = r#"{"model":"tiny-50m","keep_alive":"3m","options":{"num_ctx":1024}}"#;
    assert_eq!(real.call("POST", "/api/generate", Some(preload)).0, 200);
    assert_eq!(sim.call("POST", "/api/generate", Some(preload)).0, 200);

    let (real_code, real_report) = doctor(&real.url, &[]);
    let (sim_code, sim_report) = doctor(&sim.url, &[]);
    assert_eq!(real_code, 0, "{}", failing(&real_report));
    assert_eq!(sim_code, 0, "{}", failing(&sim_report));
    assert_documented_behaviour(&real_report, 45.0);
    assert_documented_behaviour(&sim_report, 45.0);
    assert_eq!(verdicts(&real_report), verdicts(&sim_report));

    // Restored: resident again with its num_ctx and about the rest of its 3 minutes.
    for (who, models) in [
        ("real", ps(|m, p, b| real.call(m, p, b))),
        ("sim", ps(|m, p, b| sim.call(m, p, b))),
    ] {
        assert_eq!(models.len(), 1, "{who}: {models:?}");
        assert_eq!(models[0]["context_length"], 1024, "{who}");
        let at = time::OffsetDateTime::parse(
            models[0]["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let left = (at - time::OffsetDateTime::now_utc()).as_seconds_f64();
        assert!((100.0..181.0).contains(&left), "{who}: expires in {left} s");
    }
}

#[test]
fn a_server_that_sets_the_expiry_two_seconds_after_its_reply_gets_the_same_verdicts() {
    // On a busy host the real server processes a request's end seconds after its
    // reply, so its new expiry starts late; the simulator's finish_lag does the same.
    // Timed from the reply, keep_alive 7 would read back as 9 s and be "ignored".
    let sim = SimServer::start(&[
        "--gpus",
        "0",
        "--keep-alive",
        "45s",
        "--fault-finish-lag",
        "2s",
    ]);
    let (code, report) = doctor(&sim.url, &[]);
    assert_eq!(code, 0, "{}", failing(&report));
    assert_documented_behaviour(&report, 45.0);
    let number = check(&report, "generate.number");
    assert!(
        number["evidence"].as_str().unwrap().contains("expires 7."),
        "{number}"
    );
}

#[test]
fn doctor_on_the_simulator_probes_an_embedding_model_and_restores_nothing_it_found_empty() {
    let sim = SimServer::start(&["--gpus", "0"]);
    let (code, report) = doctor(&sim.url, &["--embed-model", "nomic-embed-text:v1.5"]);
    assert_eq!(code, 0, "{report}");
    let v = verdicts(&report);
    assert_eq!(v["embed.string_minus_one"], "rejected");
    assert_eq!(v["embed.number"], "honoured");
    assert_eq!(v["embed.in_options"], "ignored");
    assert_eq!(v["embed.zero"], "honoured");
    assert_eq!(v["v1.embeddings"], "ignored", "H9");
    assert_eq!(check(&report, "server.keep_alive")["value"], 300.0);
    assert!(
        ps(|m, p, b| sim.call(m, p, b)).is_empty(),
        "nothing left loaded"
    );
}

/// A fake server that answers 200 to everything and never lists a model in
/// `/api/ps`: it accepts the string `"-1"` and honours no keep_alive.
fn lenient_server() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let reply = if first.contains("/api/version") {
                r#"{"version":"0.32.15"}"#.to_string()
            } else if first.contains("/api/ps") {
                r#"{"models":[]}"#.to_string()
            } else if first.contains("/api/show") {
                r#"{"capabilities":["completion"],"model_info":{}}"#.to_string()
            } else {
                format!(
                    r#"{{"model":"tiny-50m","created_at":"{now}","response":"","done":true,"load_duration":300000000}}"#
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn doctor_exits_1_when_a_check_does_not_hold() {
    let url = lenient_server();
    let (code, report) = doctor(&url, &[]);
    assert_eq!(code, 1, "{report}");
    let minus_one = check(&report, "generate.string_minus_one");
    assert_eq!(minus_one["verdict"], "ignored", "{minus_one}");
    assert_eq!(minus_one["expected"], "rejected");
    assert_eq!(minus_one["holds"], false);
    assert_eq!(check(&report, "generate.number")["holds"], false);
    let out = kabench()
        .args(["doctor", "--target", &url, "--model", "tiny-50m"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checks found a problem: "), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("generate.string_minus_one"));
}

#[test]
fn a_server_keep_alive_of_0_is_read_back_and_its_default_context_still_seen() {
    // The model unloads after every reply: the doctor loads it once more to read the
    // context it picks, and the fix says what 0 costs.
    let sim = SimServer::start(&["--gpus", "0", "--keep-alive", "0"]);
    let (code, report) = doctor(&sim.url, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(check(&report, "server.keep_alive")["value"], 0.0);
    assert!(
        check(&report, "server.keep_alive")["fix"]
            .as_str()
            .unwrap()
            .contains("every request after a pause is a cold load")
    );
    assert_eq!(check(&report, "server.default_context")["value"], 4096);
    assert_eq!(verdicts(&report)["num_ctx.change"], "honoured");
    assert_eq!(verdicts(&report)["v1.chat_completions"], "ignored");
}

#[test]
fn doctor_exits_2_for_a_model_the_server_lacks() {
    let sim = SimServer::start(&["--gpus", "0"]);
    let out = kabench()
        .args(["doctor", "--target", &sim.url, "--model", "no-such-model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not installed"));
}

#[test]
fn doctor_dry_run_sends_nothing_and_lists_every_request() {
    // Port 9 (discard) on loopback: nothing listens, and nothing is sent.
    let out = doctor::dry_run(&[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"POST /api/generate {"keep_alive":"-1""#),
        "{text}"
    );
    assert!(text.contains(r#""options":{"keep_alive":"5s""#), "{text}");
    assert!(text.contains("POST /v1/chat/completions"), "{text}");
    assert!(text.contains("(nothing sent)"), "{text}");
}

#[test]
fn doctor_reads_num_parallel_2_from_the_kv_growth_on_both_servers() {
    let Some(real) = RealOllama::start("doctor-parallel", &[("OLLAMA_NUM_PARALLEL", "2")]) else {
        return;
    };
    let sim = SimServer::start(&["--gpus", "0", "--num-parallel", "2"]);
    for url in [&real.url, &sim.url] {
        let (code, report) = doctor(url, &[]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(
            check(&report, "server.num_parallel")["value"],
            2.0,
            "{url}: {report}"
        );
    }
}

/// The embedding verdicts of a report: `embed.*` and `v1.embeddings`.
fn embedding_verdicts(report: &Value) -> BTreeMap<String, String> {
    verdicts(report)
        .into_iter()
        .filter(|(id, _)| id.starts_with("embed.") || id == "v1.embeddings")
        .collect()
}

#[test]
fn doctor_checks_embeddings_on_the_real_server_as_on_the_simulator() {
    // `tiny-embed` (tests/common: tiny-50m with a pooling type) is an embedding model
    // to Ollama: /api/show lists `embedding`, /api/embed answers with vectors.
    let Some(real) = RealOllama::start("doctor-embed", &[]) else {
        return;
    };
    let (code, report) = doctor(&real.url, &["--embed-model", "tiny-embed"]);
    assert_eq!(code, 0, "{}", failing(&report));
    let v = embedding_verdicts(&report);
    for (form, want) in [
        ("string_minus_one", "rejected"),
        ("number", "honoured"),
        ("negative", "honoured"),
        ("duration", "honoured"),
        ("in_options", "ignored"),
        ("absent", "honoured"),
        ("zero", "honoured"),
    ] {
        assert_eq!(v[&format!("embed.{form}")], want, "embed.{form}: {report}");
    }
    assert_eq!(v["v1.embeddings"], "ignored", "H9: {report}");
    assert!(
        check(&report, "embed.string_minus_one")["evidence"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{report}"
    );
    // OLLAMA_MAX_LOADED_MODELS is a lower bound, and the table says so.
    let cap = check(&report, "server.max_loaded_models");
    let at_least = cap["value"]["at_least"].as_u64().unwrap();
    assert!(at_least >= 1, "{cap}");
    assert!(
        cap["check"]
            .as_str()
            .unwrap()
            .ends_with(&format!("at least {at_least}")),
        "{cap}"
    );
    assert!(
        ps(|m, p, b| real.call(m, p, b)).is_empty(),
        "nothing left loaded"
    );
    let sim = SimServer::start(&["--gpus", "0"]);
    let (sim_code, sim_report) = doctor(&sim.url, &["--embed-model", "nomic-embed-text:v1.5"]);
    assert_eq!(sim_code, 0, "{sim_report}");
    assert_eq!(embedding_verdicts(&sim_report), v);
}

#[cfg(unix)]
#[test]
fn ctrl_c_mid_doctor_puts_back_the_model_it_found() {
    use std::process::Stdio;
    let sim = SimServer::start(&["--gpus", "0"]);
    let preload = r#"{"model":"tiny-50m","keep_alive":"3m","options":{"num_ctx":1024}}"#;
    assert_eq!(sim.call("POST", "/api/generate", Some(preload)).0, 200);
    let child = kabench()
        .args(["doctor", "--target", &sim.url, "--model", "tiny-50m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-doctor: once the probes have changed what is resident (the model unloaded,
    // or loaded again with another context or keep_alive).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let models = ps(|m, p, b| sim.call(m, p, b));
        if models.len() != 1 || models[0]["context_length"] != 1024 {
            break;
        }
        assert!(Instant::now() < until, "the doctor never changed /api/ps");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "{:?}",
        signalled.elapsed()
    );
    assert!(stdout.contains("probe.interrupted"), "{stdout}");
    assert!(
        stdout.contains("restored: tiny-50m") && stdout.contains("loaded again (num_ctx 1024"),
        "{stdout}"
    );
    // Resident again with its context and about the rest of its 3 minutes.
    let models = ps(|m, p, b| sim.call(m, p, b));
    assert_eq!(models.len(), 1, "{models:?}");
    assert_eq!(models[0]["context_length"], 1024);
    let at = time::OffsetDateTime::parse(
        models[0]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (at - time::OffsetDateTime::now_utc()).as_seconds_f64();
    assert!((100.0..181.0).contains(&left), "expires in {left} s");
}
