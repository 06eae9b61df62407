//! `kabench doctor --target-kind llama-router` and `--target-kind llama-swap` against
//! the real binaries in `../shared/` (the router's children and llama-swap's upstream
//! started with `-t 1`): what the doctor measured (the cold load, the sleep or TTL
//! timer, the wake, the evictions) is checked against the server's own log (spawns,
//! "entering sleeping state", LRU evictions, "Unloading model, TTL of Ns reached"),
//! and the server must be left as found. Each test skips with one line where a binary
//! is absent. Also `--dry-run` (nothing sent) and the flags that do not apply (exit 2).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kabench::llama::preset::{ModelPreset, Preset};
use kabench::llama::router::ModelState;
use kabench::llama::router_log::{self, RouterEvent};
use kabench::llama::swap::SwapState;
use kabench::llama::swap_log::{self, SwapEvent};
use serde_json::Value;

use crate::common::doctor::{check, failing, interrupt, report as doctor_report};
use crate::common::llama::{
    BIG, SMALL, Server, router_state, router_with_big_running, start_router, start_swap,
    start_swap_stopping_in, swap_state, wait_router,
};
use crate::common::{kabench, timing_turn};

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The victims of the router log's LRU evictions, in order.
fn log_evictions(log: &str) -> Vec<String> {
    router_log::parse(log)
        .into_iter()
        .filter_map(|e| match e {
            RouterEvent::Evict { victim, .. } => Some(victim),
            _ => None,
        })
        .collect()
}

/// `kabench doctor --target <server>` with `args`, which must exit 0: its report, the
/// server's log right after, and what a failed assertion prints (the checks that do not
/// hold, stderr, the log).
fn doctor_ok(server: &Server, args: &[&str]) -> (Value, String, String) {
    let (code, report, stderr) = doctor_report(&format!("http://{}", server.host), args);
    let log = server.log_text();
    let ctx = format!("{}\n{stderr}\n{log}", failing(&report));
    assert_eq!(code, 0, "{ctx}");
    (report, log, ctx)
}

/// `kabench doctor --target-kind kind` against the other server at `url`: exit 1, with
/// an error that `says` what the server is not.
fn assert_not_kind(url: &str, kind: &str, says: &str) {
    let out = kabench()
        .args(["doctor", "--target-kind", kind, "--target", url])
        .output()
        .expect("kabench runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(says), "{err}");
}

/// Whether the report's restore lines load a model again.
fn loaded_again(report: &Value) -> bool {
    report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("loaded again"))
}

/// How many times llama-swap's log says `model` became ready (each load).
fn readies(server: &Server, model: &str) -> usize {
    swap_log::parse(&server.log_text())
        .iter()
        .filter(|l| matches!(&l.event, SwapEvent::Ready { model: m } if m == model))
        .count()
}

/// [`readies`] once it reaches `n`, or after 3 s: the restore's line can reach the log
/// just after `/running` shows the model ready.
fn wait_readies(server: &Server, model: &str, n: usize) -> usize {
    let start = Instant::now();
    while readies(server, model) < n && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    readies(server, model)
}

#[test]
fn doctor_router_skips_beside_a_running_model_then_measures_sleep_and_wake_against_the_log() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = router_with_big_running(run.path(), 2) else {
        return;
    };

    // Without --allow-evict: BIG runs and SMALL does not, so nothing is loaded.
    let (report, _, ctx) = doctor_ok(&server, &["--target-kind", "llama-router"]);
    assert_eq!(report["kind"], "llama-router");
    let skipped = check(&report, "probe.skipped");
    assert!(skipped["evidence"].as_str().unwrap().contains(BIG), "{ctx}");
    let tally = router_log::tally(&router_log::parse(&server.log_text()));
    assert_eq!(tally.get(SMALL).map_or(0, |t| t.spawns), 0, "{ctx}");
    assert_eq!(router_state(&server, SMALL), ModelState::Unloaded);
    assert_eq!(router_state(&server, BIG), ModelState::Loaded);

    // With it: a cold load, the preset's sleep, the wake; each in the log.
    let (report, log, ctx) = doctor_ok(
        &server,
        &[
            "--target-kind",
            "llama-router",
            "--allow-evict",
            "--max-wait",
            "15",
        ],
    );
    let cold = &check(&report, "load.cold")["value"];
    assert_eq!(
        (&cold["state_before"], &cold["state_after"]),
        (&Value::from("unloaded"), &Value::from("loaded")),
        "{ctx}"
    );
    assert!(f(&cold["cold_s"]) > f(&cold["warm_s"]), "{ctx}");
    let timer = &check(&report, "sleep.timer")["value"];
    assert_eq!(timer["stated_s"], 2, "{ctx}");
    assert_eq!(timer["state_after"], "sleeping", "{ctx}");
    let slept = f(&timer["seconds_after_end"]);
    assert!(
        (1.9..=3.6).contains(&slept),
        "asleep after {slept} s: {ctx}"
    );
    assert_eq!(
        check(&report, "poll.keeps_loaded")["verdict"],
        "no",
        "{ctx}"
    );
    let wake = &check(&report, "wake.cost")["value"];
    assert_eq!(wake["state_before"], "sleeping", "{ctx}");
    assert_eq!(wake["state_after"], "loaded", "{ctx}");
    let mem = &check(&report, "memory.process")["value"];
    assert!(
        f(&mem["asleep_bytes"]) < f(&mem["loaded_bytes"]),
        "sleep frees memory: {ctx}"
    );
    let cap = &check(&report, "cap.models_max")["value"];
    assert_eq!(cap["exact"], false, "{ctx}");
    assert_eq!(cap["most_at_once"], 2, "{ctx}");
    assert_eq!(cap["stated_max_instances"], 2, "{ctx}");
    // The log: one spawn, one sleep, one wake of SMALL; nothing evicted.
    let tally = router_log::tally(&router_log::parse(&log));
    let small = &tally[SMALL];
    assert_eq!(
        (small.spawns, small.sleeps, small.wakes),
        (1, 1, 1),
        "{ctx}"
    );
    assert!(log_evictions(&log).is_empty(), "{ctx}");
    // Left as found.
    assert_eq!(router_state(&server, SMALL), ModelState::Unloaded, "{ctx}");
    assert_eq!(router_state(&server, BIG), ModelState::Loaded, "{ctx}");
    server.stop();
}

#[test]
fn doctor_router_with_allow_evict_sees_the_models_max_eviction_the_log_shows_and_restores() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = start_router(run.path(), 1, &Preset::default()) else {
        return;
    };
    assert_eq!(server.chat(BIG), 200);
    let url = format!("http://{}", server.host);
    // The llama-swap doctor against the router says it is not a llama-swap (exit 1).
    assert_not_kind(&url, "llama-swap", "not a llama-swap");
    let (report, log, ctx) = doctor_ok(
        &server,
        &[
            "--target-kind",
            "llama-router",
            "--allow-evict",
            "--max-wait",
            "2",
        ],
    );
    // No sleep-idle-seconds in the child's args: it says it never sleeps, not waiting.
    let timer = check(&report, "sleep.timer");
    assert!(timer["value"]["seconds_after_end"].is_null(), "{ctx}");
    assert!(timer["value"]["stated_s"].is_null(), "{ctx}");
    assert!(
        timer["evidence"]
            .as_str()
            .unwrap()
            .contains("states no sleep-idle-seconds"),
        "{ctx}"
    );
    // SMALL's cold load evicted BIG, and the row says so.
    assert_eq!(
        check(&report, "load.cold")["value"]["evicted"],
        serde_json::json!([BIG]),
        "{ctx}"
    );
    // The evictions it saw are the router's, in order: SMALL's load evicted BIG, the
    // second model's load evicted SMALL; so the cap is exact.
    let cap = &check(&report, "cap.models_max")["value"];
    let seen: Vec<String> = cap["evictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["victim"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, log_evictions(&log), "{ctx}");
    assert_eq!(seen, [BIG, SMALL], "{ctx}");
    assert_eq!(
        (&cap["cap"], &cap["exact"]),
        (&Value::from(1), &Value::from(true)),
        "{ctx}"
    );
    // Left as found: BIG loaded again, SMALL not running.
    wait_router(
        &server,
        BIG,
        ModelState::Loaded,
        std::time::Duration::from_secs(10),
    );
    assert_eq!(router_state(&server, SMALL), ModelState::Unloaded, "{ctx}");
    assert!(loaded_again(&report), "{ctx}");
    server.stop();
}

#[test]
fn doctor_swap_measures_cold_start_and_the_ttl_the_log_shows_and_reloads_what_it_found() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = start_swap(run.path(), 3) else {
        return;
    };
    // Found loaded: the doctor unloads it for a cold load and loads it again at the end.
    assert_eq!(server.chat(SMALL), 200);
    let (report, log, ctx) = doctor_ok(
        &server,
        &["--target-kind", "llama-swap", "--max-wait", "15"],
    );
    assert_eq!(report["kind"], "llama-swap");
    let cold = &check(&report, "load.cold")["value"];
    assert_eq!(cold["unloaded_first"], true, "{ctx}");
    assert_eq!(cold["state_before"], "unloaded", "{ctx}");
    assert_eq!(cold["state_after"], "loaded", "{ctx}");
    assert!(f(&cold["cold_s"]) > f(&cold["warm_s"]), "{ctx}");
    let timer = &check(&report, "ttl.timer")["value"];
    assert_eq!(timer["stated_s"], 3, "{ctx}");
    let measured = f(&timer["seconds_after_end"]);
    assert!((2.9..=4.6).contains(&measured), "{measured} s: {ctx}");
    assert_eq!(
        check(&report, "poll.keeps_loaded")["verdict"],
        "no",
        "{ctx}"
    );
    // The log: one TTL unload of 3 s, measured from the end of the last request there
    // as the doctor measured it; three loads (before, the cold one, the restore).
    let lines = swap_log::parse(&log);
    let ttl: Vec<_> = lines
        .iter()
        .filter(
            |l| matches!(&l.event, SwapEvent::TtlUnload { model, ttl_secs: 3 } if model == SMALL),
        )
        .collect();
    assert_eq!(ttl.len(), 1, "{ctx}");
    let unload_at = ttl[0].at.expect("stampmilli times");
    let last_request = lines
        .iter()
        .filter(
            |l| matches!(&l.event, SwapEvent::Request { path, .. } if path == "/v1/completions"),
        )
        .filter_map(|l| l.at)
        .filter(|at| *at < unload_at)
        .max()
        .expect("a request before the unload");
    let logged = (unload_at - last_request).as_secs_f64();
    assert!(
        (logged - measured).abs() < 0.6,
        "logged {logged} s, measured {measured} s: {ctx}"
    );
    assert_eq!(
        wait_readies(&server, SMALL, 3),
        3,
        "{ctx}\n{}",
        server.log_text()
    );
    assert_eq!(swap_state(&server, SMALL), Some(SwapState::Ready), "{ctx}");
    server.stop();
}

#[test]
fn doctor_swap_sends_nothing_to_a_model_while_it_stops_and_leaves_llama_swap_answering() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    // Each stop takes 2 s: llama-swap shows the model `stopping` that long after its
    // ttl, and a request sent then would never be answered (nor any after it).
    let Some(server) = start_swap_stopping_in(run.path(), 3, 2) else {
        return;
    };
    assert_eq!(server.chat(SMALL), 200);
    let (report, log, ctx) = doctor_ok(
        &server,
        &["--target-kind", "llama-swap", "--max-wait", "15"],
    );
    let timer = &check(&report, "ttl.timer")["value"];
    let measured = f(&timer["seconds_after_end"]);
    assert!((2.9..=4.6).contains(&measured), "{measured} s: {ctx}");
    // The restore waited for the ttl's stop to end before loading the model again.
    assert!(loaded_again(&report), "{ctx}");
    let lines = swap_log::parse(&log);
    let stop_at = lines
        .iter()
        .find(|l| matches!(&l.event, SwapEvent::TtlUnload { model, .. } if model == SMALL))
        .and_then(|l| l.at)
        .unwrap_or_else(|| panic!("no ttl unload in the log: {ctx}"));
    let requests_after: Vec<_> = lines
        .iter()
        .filter(
            |l| matches!(&l.event, SwapEvent::Request { path, .. } if path == "/v1/completions"),
        )
        .filter_map(|l| l.at)
        .filter(|at| *at > stop_at)
        .collect();
    assert_eq!(requests_after.len(), 1, "one restore request: {ctx}");
    assert!(
        (requests_after[0] - stop_at).as_secs_f64() > 1.8,
        "the restore was sent while the model stopped: {ctx}"
    );
    assert_eq!(wait_readies(&server, SMALL, 3), 3, "{ctx}");
    assert_eq!(swap_state(&server, SMALL), Some(SwapState::Ready), "{ctx}");
    assert_eq!(server.chat(SMALL), 200, "{}", server.log_text());
    server.stop();
}

#[test]
fn doctor_router_ctrl_c_during_the_wait_unloads_what_it_loaded_and_exits_130() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let preset = Preset {
        models: vec![ModelPreset {
            id: SMALL.into(),
            sleep_idle_seconds: Some(50),
        }],
        ..Preset::default()
    };
    let Some(server) = start_router(run.path(), 2, &preset) else {
        return;
    };
    // Nothing runs; SMALL sleeps after 50 s, so the wait after the cold load goes on.
    let child = kabench()
        .args(["doctor", "--target-kind", "llama-router", "--json"])
        .args(["--max-wait", "60", "--model", SMALL])
        .args(["--target", &format!("http://{}", server.host)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kabench runs");
    wait_router(&server, SMALL, ModelState::Loaded, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let report = interrupt(child, || server.log_text());
    let ctx = format!("{report}\n{}", server.log_text());
    assert_eq!(
        report["restored"][0],
        format!("{SMALL}: found not running, unloaded again"),
        "{ctx}"
    );
    assert_eq!(router_state(&server, SMALL), ModelState::Unloaded, "{ctx}");
    let tally = router_log::tally(&router_log::parse(&server.log_text()));
    assert_eq!(tally[SMALL].spawns, 1, "{ctx}");
    server.stop();
}

#[test]
fn doctor_swap_leaves_another_running_model_alone_unless_allowed_to_evict_it() {
    let _turn = timing_turn();
    let run = tempfile::tempdir().unwrap();
    let Some(server) = start_swap(run.path(), 0) else {
        return;
    };
    assert_eq!(server.chat(BIG), 200);
    let url = format!("http://{}", server.host);
    // The router doctor against llama-swap says it is not a router (exit 1).
    assert_not_kind(&url, "llama-router", "not a llama-server in router mode");
    // BIG runs and SMALL does not: one model at a time, so nothing is loaded.
    let (report, _, ctx) = doctor_ok(&server, &["--target-kind", "llama-swap"]);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "probe.skipped"),
        "{ctx}"
    );
    assert_eq!(readies(&server, SMALL), 0, "{ctx}");
    assert_eq!(swap_state(&server, BIG), Some(SwapState::Ready), "{ctx}");
    // Allowed: SMALL's load swaps BIG out (seen, and in the log as a second load of
    // BIG when it is loaded again); ttl 0 is stated, so nothing is waited for.
    let (report, _, ctx) = doctor_ok(&server, &["--target-kind", "llama-swap", "--allow-evict"]);
    assert_eq!(
        check(&report, "load.cold")["value"]["evicted"],
        serde_json::json!([BIG]),
        "{ctx}"
    );
    let timer = &check(&report, "ttl.timer")["value"];
    assert_eq!(timer["stated_s"], 0, "{ctx}");
    assert!(timer["seconds_after_end"].is_null(), "{ctx}");
    assert_eq!(swap_state(&server, BIG), Some(SwapState::Ready), "{ctx}");
    assert_eq!(swap_state(&server, SMALL), None, "{ctx}");
    let big = wait_readies(&server, BIG, 2);
    assert_eq!((readies(&server, SMALL), big), (1, 2), "{ctx}");
    server.stop();
}

#[test]
fn doctor_router_and_swap_dry_runs_send_nothing_and_foreign_flags_exit_2() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    for (kind, lines) in [
        (
            "llama-router",
            &[
                "GET /models",
                "GET /props",
                "POST /models/unload",
                "POST /v1/completions",
            ][..],
        ),
        (
            "llama-swap",
            &[
                "GET /running",
                "GET /v1/models",
                "POST /api/models/unload/m",
                "POST /v1/completions",
            ][..],
        ),
    ] {
        let out = kabench()
            .args([
                "doctor",
                "--target-kind",
                kind,
                "--dry-run",
                "--allow-evict",
            ])
            .args(["--target", &target, "--model", "m"])
            .output()
            .expect("kabench runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("(nothing sent)"), "{text}");
        for line in lines {
            assert!(text.contains(line), "{kind}: {line} missing: {text}");
        }
        let json = kabench()
            .args(["doctor", "--target-kind", kind, "--dry-run", "--json"])
            .args(["--target", &target, "--model", "m"])
            .output()
            .expect("kabench runs");
        let rows: Value = serde_json::from_slice(&json.stdout).expect("JSON");
        assert!(
            rows.as_array()
                .unwrap()
                .iter()
                .any(|r| r["path"] == "/v1/completions" && r["body"]["model"] == "m"),
            "{rows}"
        );
    }
    for args in [
        vec!["--target-kind", "llama-router", "--pid", "1"],
        vec!["--target-kind", "llama-swap", "--embed-model", "e"],
        vec!["--target-kind", "llama-router", "--target", "sim"],
        vec!["--max-wait", "5"],
    ] {
        let mut cmd = kabench();
        cmd.arg("doctor");
        if !args.contains(&"--target") {
            cmd.args(["--target", &target]);
        }
        let out = cmd.args(&args).output().expect("kabench runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a dry or refused run connected to the target"
    );
}
