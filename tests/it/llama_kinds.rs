//! The third acceptance step of issue 29 through the kabench binary: `kabench run` on
//! scenarios with `kind = "llama-router"` and `kind = "llama-swap"`, against the real
//! binaries in `../shared/`, which kabench starts per cell with the config file it
//! writes for the cell's `idle_unload` value. Router LRU eviction (`--models-max 1`,
//! two models alternating), a preset's per-model sleep and llama-swap's `ttl` expiry:
//! what kabench counted from the status endpoint (`GET /models`, `GET /running`) must
//! equal what the server's own log says (evictions, wakes from sleep, TTL unloads,
//! loads), the cell's `servers/<cell>.check.json` must agree, sleep and TTL unload
//! must hold less idle memory (process-tree RSS) than off, and the report must
//! render. Each test skips with one line where `../shared` lacks the binary, Python
//! cannot write the tiny models, or `KABENCH_SKIP_REAL_LLAMA=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{kabench, read_json, request_rows, root, timing_turn};

use crate::common::llama::{BIG, SMALL, gguf_dir, shared_bin};

/// A TOML string.
fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// One stream of `model` sending at `times` (seconds from the cell start).
fn stream(dir: &Path, name: &str, model: &str, times: &[f64]) -> String {
    let csv = dir.join(format!("{name}.csv"));
    let mut text = String::from("t\n");
    for t in times {
        text.push_str(&format!("{t}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    format!(
        "[[stream]]\nname = \"{name}\"\nmodel = \"{model}\"\napi = \"chat\"\nnum_ctx = 512\nprompt_tokens = 8\nmax_tokens = 4\narrival = {{ kind = \"trace\", file = {}, column = \"t\", epoch = 0 }}\n",
        q(&csv)
    )
}

/// Runs `kabench run` on `scenario` (written in `dir`); the run folder.
fn run_scenario(dir: &Path, scenario: &str) -> PathBuf {
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join("run");
    let cache = dir.join("llama-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let done = kabench()
        // The router also lists the models of $LLAMA_CACHE: keep it empty.
        .env("LLAMA_CACHE", &cache)
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .expect("kabench runs");
    assert!(
        done.status.success(),
        "kabench run failed: {}\nstderr:\n{}\nstdout:\n{}",
        done.status,
        String::from_utf8_lossy(&done.stderr),
        String::from_utf8_lossy(&done.stdout)
    );
    let meta = read_json(&out.join("run.json"));
    assert_eq!(meta["status"], "complete", "{meta}");
    out
}

/// The cell whose id contains `part`, its rows in send order.
fn cell_rows<'a>(
    rows: &'a [BTreeMap<String, String>],
    part: &str,
) -> (String, Vec<&'a BTreeMap<String, String>>) {
    let id = rows
        .iter()
        .map(|r| r["cell"].clone())
        .find(|c| c.contains(part))
        .unwrap_or_else(|| panic!("no cell {part}"));
    let mut mine: Vec<_> = rows.iter().filter(|r| r["cell"] == id).collect();
    mine.sort_by(|a, b| {
        let t = |r: &BTreeMap<String, String>| r["sent_ms"].parse::<f64>().unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    for r in &mine {
        assert!(r["error"].is_empty(), "a failed request: {r:?}");
    }
    (id, mine)
}

fn colds(rows: &[&BTreeMap<String, String>]) -> usize {
    rows.iter().filter(|r| r["cold"] == "true").count()
}

/// The cell's server log and its check record (which must agree).
fn log_and_check(out: &Path, id: &str) -> (String, Value) {
    let log = std::fs::read_to_string(out.join("servers").join(format!("{id}.log"))).unwrap();
    let check = read_json(&out.join("servers").join(format!("{id}.check.json")));
    assert_eq!(check["agrees"], true, "{id}: {check}\n{log}");
    (log, check)
}

/// A cell's idle memory (GB·s) from the server's process-tree RSS.
fn idle_gb_s(out: &Path, id: &str) -> f64 {
    let summary = read_json(&out.join("summary.json"));
    let c = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no summary cell {id}"));
    assert_eq!(c["vram"]["source"], "server_rss", "{id}: {}", c["vram"]);
    c["vram"]["idle_gb_seconds"].as_f64().unwrap()
}

/// The loads kabench counted in a cell's check record (all models).
fn kabench_loads(check: &Value) -> usize {
    check["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kabench_loads"].as_u64().unwrap() as usize)
        .sum()
}

/// The report renders every cell.
fn report_renders(out: &Path, ids: &[&str]) {
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for id in ids {
        assert!(html.contains(id), "index.html lacks cell {id}");
    }
}

#[test]
fn router_lru_eviction_with_models_max_1_matches_the_log() {
    let Some(bin) = shared_bin("llama-cpp/bin/llama-server") else {
        return;
    };
    let Some(gguf) = gguf_dir() else {
        return;
    };
    let _turn = timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = format!(
        "name = \"router-lru\"\nseed = 1\n[target]\nkind = \"llama-router\"\nname = \"router\"\ncommand = [{}, \"--models-dir\", \"{{models_dir}}\", \"--models-preset\", \"{{models_preset}}\", \"--models-max\", \"1\", \"--host\", \"127.0.0.1\", \"--port\", \"{{port}}\", \"-c\", \"512\", \"-np\", \"1\", \"-t\", \"1\", \"--no-ui\"]\nmodels_dir = {}\nidle_unload = [\"off\"]\n{}{}[run]\nrequests = 3\ntimeout = \"60s\"\n",
        q(&bin),
        q(&gguf),
        stream(d, "small", SMALL, &[0.0, 2.0, 4.0]),
        stream(d, "big", BIG, &[1.0, 3.0, 5.0]),
    );
    let out = run_scenario(d, &scenario);
    assert_eq!(
        read_json(&out.join("run.json"))["target"]["kind"],
        "llama-router"
    );
    let rows = request_rows(&out);
    let (id, mine) = cell_rows(&rows, "iu_-1");
    assert_eq!(mine.len(), 6, "{mine:?}");
    // Alternating models with room for one: every request found its model unloaded
    // (GET /models), so every one is cold.
    for r in &mine {
        assert_eq!(r["cold"], "true", "{r:?}");
        assert_eq!(r["resident_before"], "false", "{r:?}");
    }
    let (log, check) = log_and_check(&out, &id);
    // kabench's loads: its cold requests, one load for those that overlapped (on a busy
    // host a request for a model still loading joins that load).
    let kabench_loads: u64 = check["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kabench_loads"].as_u64().unwrap())
        .sum();
    let cold_requests: u64 = check["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kabench_cold_requests"].as_u64().unwrap())
        .sum();
    assert_eq!(cold_requests as usize, colds(&mine), "{check}");
    let spawns = log.matches("spawning server instance with name=").count();
    assert_eq!(
        spawns as u64, kabench_loads,
        "{id}: spawns in the log\n{log}"
    );
    // Each load after the first took the other model's one slot: an LRU eviction, or
    // (when the request was queued behind a load) the slot given up when it went idle.
    let evictions = log.matches("evicting idle LRU name=").count();
    let given_up = log
        .matches("giving up its slot to a queued request")
        .count();
    assert_eq!(
        (evictions + given_up) as u64,
        kabench_loads - 1,
        "{id}: each load after the first evicted the other model\n{log}"
    );
    let evicted: u64 = [SMALL, BIG]
        .iter()
        .map(|m| check["log_tally"][m]["evicted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(evicted as usize, evictions, "{check}");
    assert!(
        out.join("cell-0-router-preset.ini").is_file(),
        "the cell's preset is in the run folder"
    );
    report_renders(&out, &[&id]);
}

#[test]
fn router_preset_sleep_wakes_match_the_log() {
    let Some(bin) = shared_bin("llama-cpp/bin/llama-server") else {
        return;
    };
    let Some(gguf) = gguf_dir() else {
        return;
    };
    let _turn = timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = format!(
        "name = \"router-sleep\"\nseed = 1\n[target]\nkind = \"llama-router\"\nname = \"router\"\ncommand = [{}, \"--models-dir\", \"{{models_dir}}\", \"--models-preset\", \"{{models_preset}}\", \"--models-max\", \"2\", \"--host\", \"127.0.0.1\", \"--port\", \"{{port}}\", \"-c\", \"512\", \"-np\", \"1\", \"-t\", \"1\", \"--no-ui\"]\nmodels_dir = {}\nidle_unload = [\"1s\", \"off\"]\n{}[run]\nrequests = 3\ntimeout = \"60s\"\n",
        q(&bin),
        q(&gguf),
        stream(d, "small", SMALL, &[0.0, 2.5, 5.0]),
    );
    let out = run_scenario(d, &scenario);
    let preset = std::fs::read_to_string(out.join("cell-0-router-preset.ini")).unwrap();
    assert!(
        preset.contains("[tiny-50m]\nsleep-idle-seconds = 1\n"),
        "{preset}"
    );
    let rows = request_rows(&out);
    // Sleep 1 s with 2.5 s gaps: the first request spawns, each later one wakes.
    let (id, mine) = cell_rows(&rows, "iu_1s");
    let (log, check) = log_and_check(&out, &id);
    let wakes = log.matches("server is exiting sleeping state").count();
    assert_eq!(mine.len(), 3);
    assert_eq!(colds(&mine), 3, "{mine:?}");
    assert_eq!(kabench_loads(&check), 3, "{check}");
    assert_eq!(
        wakes,
        kabench_loads(&check) - 1,
        "{id}: wakes in the log\n{log}"
    );
    for r in &mine {
        assert_eq!(r["resident_before"], "false", "{r:?}");
    }
    // Off: only the spawn is cold, the log never sleeps.
    let (id_off, off) = cell_rows(&rows, "iu_-1");
    let (log_off, _) = log_and_check(&out, &id_off);
    assert_eq!(colds(&off), 1, "{off:?}");
    assert!(!log_off.contains("entering sleeping state"), "{log_off}");
    // Sleeping frees the model's memory: sleep 1 s holds less idle memory than off.
    let (asleep, awake) = (idle_gb_s(&out, &id), idle_gb_s(&out, &id_off));
    assert!(asleep < awake, "sleep 1 s {asleep} GB·s, off {awake} GB·s");
    report_renders(&out, &[&id, &id_off]);
}

/// A `kind = "llama-swap"` scenario on the shared llama-swap and llama-server (`None`
/// where one is absent): `wrap` (TOML strings, each followed by a comma) goes before
/// llama-server in `model_command`; then the `idle_unload` axis, the streams and `[run]`.
fn swap_scenario(
    name: &str,
    wrap: &str,
    idle_unload: &str,
    streams: &str,
    run: &str,
) -> Option<String> {
    let swap = shared_bin("llama-swap/bin/llama-swap")?;
    let server = shared_bin("llama-cpp/bin/llama-server")?;
    let gguf = gguf_dir()?;
    Some(format!(
        "name = \"{name}\"\nseed = 1\n[target]\nkind = \"llama-swap\"\nname = \"swap\"\ncommand = [{}, \"-config\", \"{{swap_config}}\", \"-listen\", \"127.0.0.1:{{port}}\"]\nmodel_command = [{wrap}{}, \"-m\", \"{{model_path}}\", \"--host\", \"127.0.0.1\", \"--port\", \"{{port}}\", \"--alias\", \"{{model_id}}\", \"-c\", \"512\", \"-np\", \"1\", \"-t\", \"1\", \"--no-ui\"]\nmodels_dir = {}\nidle_unload = {idle_unload}\n{streams}[run]\n{run}",
        q(&swap),
        q(&server),
        q(&gguf),
    ))
}

#[test]
fn swap_ttl_unloads_and_loads_match_the_log() {
    let _turn = timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(scenario) = swap_scenario(
        "swap-ttl",
        "",
        r#"["1s", "off"]"#,
        &stream(d, "small", SMALL, &[0.0, 3.0, 6.0]),
        "requests = 3\ntimeout = \"60s\"\n",
    ) else {
        return;
    };
    let out = run_scenario(d, &scenario);
    let config = std::fs::read_to_string(out.join("cell-0-llama-swap.yaml")).unwrap();
    assert!(config.contains("ttl: 1\n"), "{config}");
    let rows = request_rows(&out);
    // ttl 1 s with 3 s gaps: every request found the model gone from GET /running.
    let (id, mine) = cell_rows(&rows, "iu_1s");
    let (log, check) = log_and_check(&out, &id);
    assert_eq!(mine.len(), 3);
    assert_eq!(colds(&mine), 3, "{mine:?}");
    assert_eq!(kabench_loads(&check), 3, "{check}");
    for r in &mine {
        assert_eq!(r["resident_before"], "false", "{r:?}");
    }
    let loads = log.matches("Health check passed").count();
    assert_eq!(loads, colds(&mine), "{id}: loads in the log\n{log}");
    // Each cold after the first followed a TTL unload; one more may come after the
    // last request, before the cell's server stops.
    let ttl_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Unloading model, TTL of 1s reached"))
        .collect();
    let last_is_unload = log
        .lines()
        .rev()
        .find(|l| l.contains("Health check passed") || l.contains("TTL of 1s reached"))
        .is_some_and(|l| l.contains("TTL of 1s reached"));
    assert_eq!(
        ttl_lines.len() - usize::from(last_is_unload),
        colds(&mine) - 1,
        "{id}: TTL unloads in the log\n{log}"
    );
    // ttl off (0): one load, no unload.
    let (id_off, off) = cell_rows(&rows, "iu_-1");
    let (log_off, _) = log_and_check(&out, &id_off);
    assert_eq!(colds(&off), 1, "{off:?}");
    assert!(!log_off.contains("TTL of"), "{log_off}");
    // An unloaded model's upstream is gone: ttl 1 s holds less idle memory than off.
    let (unloaded, kept) = (idle_gb_s(&out, &id), idle_gb_s(&out, &id_off));
    assert!(unloaded < kept, "ttl 1 s {unloaded} GB·s, off {kept} GB·s");
    report_renders(&out, &[&id, &id_off]);
}

#[test]
fn a_request_sent_while_llama_swap_stops_its_model_is_a_timeout_that_names_the_stop() {
    let _turn = timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The upstream takes 6 s to stop (a shell traps llama-swap's SIGTERM and waits).
    // llama-swap checks the ttl once a second from the load's end, so the stop starts
    // about 2 s after the first request's load (0.3 s here, up to 3 s on a busy host)
    // and still runs when the second request goes at 5 s.
    let wrap = r#""bash", "-c", "trap 'sleep 6; exit 0' TERM; \"$0\" \"$@\" & wait $!", "#;
    let Some(scenario) = swap_scenario(
        "swap-stopping",
        wrap,
        r#"["1s"]"#,
        &stream(d, "small", SMALL, &[0.0, 5.0]),
        "requests = 2\ntimeout = \"6s\"\n",
    ) else {
        return;
    };
    let out = run_scenario(d, &scenario);
    let rows = request_rows(&out);
    let mut mine: Vec<_> = rows.iter().collect();
    mine.sort_by_key(|r| r["request"].parse::<u32>().unwrap_or(u32::MAX));
    let id = mine[0]["cell"].clone();
    let log = std::fs::read_to_string(out.join("servers").join(format!("{id}.log"))).unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!(mine[0]["error"], "", "{mine:?}");
    // The server's evidence: the ttl's stop began before the second request went, and
    // llama-swap sent no byte of an answer to it (it logs the request when the client
    // gave up, with 0 bytes).
    let after_ttl = log
        .split("Unloading model, TTL of 1s reached")
        .nth(1)
        .unwrap_or_else(|| panic!("no ttl unload in the log\n{log}"));
    let bytes: Vec<&str> = after_ttl
        .lines()
        .filter(|l| l.contains("\"POST /v1/chat/completions"))
        .filter_map(|l| l.split("HTTP/1.1\" ").nth(1)?.split(' ').nth(1))
        .collect();
    assert_eq!(bytes, ["0"], "no answer after the ttl's stop began\n{log}");
    let second = mine[1];
    assert_eq!(second["error"], "timeout", "{second:?}\n{log}");
    assert!(
        second["error_detail"].contains("showed the model stopping"),
        "{second:?}"
    );
    assert_eq!(second["resident_before"], "false", "{second:?}");
}

#[test]
fn an_idle_unload_a_llama_knob_refuses_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (kind, extra, knob) in [
        (
            "llama-server",
            "model_path = \"m.gguf\"\ncommand = [\"srv\", \"-m\", \"{model_path}\", \"--sleep-idle-seconds\", \"{sleep_idle_seconds}\", \"--port\", \"{port}\"]\n",
            "sleep-idle-seconds",
        ),
        (
            "llama-router",
            "command = [\"srv\", \"--models-preset\", \"{models_preset}\", \"--port\", \"{port}\"]\n",
            "sleep-idle-seconds",
        ),
        (
            "llama-swap",
            "command = [\"swap\", \"-config\", \"{swap_config}\", \"-listen\", \"127.0.0.1:{port}\"]\nmodel_command = [\"srv\", \"--port\", \"{port}\"]\n",
            "llama-swap's ttl",
        ),
    ] {
        let file = d.join(format!("{kind}.toml"));
        let text = format!(
            "[[stream]]\nmodel = \"tiny-50m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n[run]\nrequests = 1\n[target]\nkind = \"{kind}\"\n{extra}idle_unload = [\"5s\", 0]\n"
        );
        std::fs::write(&file, &text).unwrap();
        let line = text.lines().count();
        let out = d.join(format!("run-{kind}"));
        let done = kabench()
            .args([
                "run",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--quiet",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(2), "{kind}: {err}");
        assert!(
            err.contains(&format!("{}:{line}:", file.display()))
                && err.contains("target.idle_unload[1]")
                && err.contains(knob)
                && err.contains("at least 1"),
            "{kind}: {err}"
        );
        assert!(!out.exists(), "{kind}: nothing was started or written");
    }
}

#[test]
fn the_shipped_router_and_swap_scenario_renders_one_page_and_every_cell_agrees_with_its_log() {
    let (Some(_), Some(_)) = (
        shared_bin("llama-cpp/bin/llama-server"),
        shared_bin("llama-swap/bin/llama-swap"),
    ) else {
        return;
    };
    // The scenario reads the tiny models from target/llama-kinds/gguf.
    if gguf_dir().is_none() {
        return;
    }
    let _turn = timing_turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cache = dir.path().join("llama-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let scenario = root().join("scenarios/llama-router-and-swap.toml");
    let done = kabench()
        .env("LLAMA_CACHE", &cache)
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(read_json(&out.join("run.json"))["status"], "complete");
    let rows = request_rows(&out);
    for (part, want) in [
        ("srv_router-iu_1s", 3),
        ("srv_router-iu_-1", 1),
        ("srv_swap-iu_1s", 3),
        ("srv_swap-iu_-1", 1),
    ] {
        let (id, mine) = cell_rows(&rows, part);
        log_and_check(&out, &id);
        assert_eq!(mine.len(), 3, "{id}");
        assert_eq!(colds(&mine), want, "{id}: {mine:?}");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("Tradeoff across servers"),
        "index.html has one frontier across servers"
    );
    // One recommendation per server, each naming its per-model knob.
    for knob in [
        "set each model&#x27;s sleep-idle-seconds",
        "set each model&#x27;s ttl",
    ] {
        let plain = knob.replace("&#x27;", "'");
        assert!(
            html.contains(knob) || html.contains(&plain),
            "index.html recommends {plain}"
        );
    }
}
