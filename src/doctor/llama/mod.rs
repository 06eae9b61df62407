//! `kabench doctor --target-kind llama-server`: what a llama.cpp `llama-server`
//! started with `--sleep-idle-seconds N` really does, measured on the server, never
//! assumed: what waking costs (the first request after sleep against warm ones, with
//! the evidence of the reload), how much memory sleep frees (the process's RSS awake
//! and asleep, where the process can be read), its sleep timer (`/props` says only
//! `is_sleeping`; the delay from the end of the last request to sleep is measured, and
//! whether it counts from the end or the start of a request), and whether polling
//! `/metrics` or `/slots` keeps it awake while polling `/health` and `/props` does not.
//! The rows are the Ollama doctor's ([`super::Check`]) in the same report.
//!
//! It is built to be safe on a server in use: it sends small completions (at most one
//! of about 2 s of generation), polls read-only endpoints, and leaves the server
//! awake or asleep as it found it. Another client's requests reset the same timer, so
//! run it when the server is idle. This file holds the options, the plan `--dry-run`
//! lists and the run in order; the probes are in `probe` (their rows in `probe::rows`), the process in `proc`.
//! The doctors of the servers that hold many models (llama.cpp's router mode, llama-swap)
//! are in `multi`.

pub mod multi;
mod probe;
pub mod proc;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::forms::Verdict;
use super::http::{Req, Server};
use super::probe::row;
use super::{Check, Interrupted, Report, Stop};
use probe::{Prober, Props};

/// What to probe.
#[derive(Debug, Clone)]
pub struct LlamaOptions {
    /// `http://host:port` of the llama-server.
    pub target: String,
    /// The model named in the requests and the report (a single-model llama-server
    /// serves its `-m` whatever a request names); default: `/props` `model_alias`.
    pub model: Option<String>,
    /// The server's process, when it cannot be found from its listening socket.
    pub pid: Option<u32>,
    /// The longest it waits for the server to fall asleep.
    pub max_wait: Duration,
    /// Print, on stderr before the probes, what the run will do to the server.
    pub announce: bool,
}

/// The default of `--max-wait`: covers `--sleep-idle-seconds 300`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(330);

/// A smallest completion: four tokens, no prompt cache (so every request does the same
/// work), the model named when one was given.
pub fn tiny(model: Option<&str>) -> Req {
    completion(model, 4, false)
}

/// A completion of `n` tokens whatever the model would stop at (`ignore_eos`): a
/// request long enough to tell a timer that counts from its start from one that
/// counts from its end.
pub fn long(model: Option<&str>, n: u64) -> Req {
    completion(model, n, true)
}

fn completion(model: Option<&str>, n: u64, ignore_eos: bool) -> Req {
    let mut body = json!({"prompt": "Hello", "n_predict": n, "cache_prompt": false});
    if ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    if let Some(m) = model {
        body["model"] = json!(m);
    }
    Req::post("/completion", body)
}

/// The requests a run sends, in order, with why (`--dry-run`); nothing is sent.
pub fn dry_run(opts: &LlamaOptions) -> Vec<(String, Req)> {
    let m = opts.model.as_deref();
    let each = "poll: every 0.1 s, GET /props then GET /health, until is_sleeping (at most --max-wait), then 3 more of each to see they do not wake it";
    vec![
        ("is it a llama-server, is it asleep, which endpoints are on (also after each request below)".into(), Req::get("/props")),
        ("health".into(), Req::get("/health")),
        ("warm-up: wakes the server if asleep (the wake is timed), then 3 warm requests, timed; RSS awake".into(), tiny(m)),
        ("the generation pace, to size the long request".into(), long(m, 32)),
        (format!("sleep timer from the end of a short request: {each}; RSS asleep"), Req::get("/props")),
        ("wake cost: the first request after sleep, timed, /props before and after, then one warm request".into(), tiny(m)),
        ("timer start or end: one request of 1.5 s or more of generation (n_predict from the measured pace, 32 to 1024; sent again with twice the tokens while shorter)".into(), long(m, 1024)),
        (format!("sleep timer from the end of the long request: {each}"), Req::get("/props")),
        ("polling /metrics: every 0.5 s (with GET /props) for the measured timer + 2 s, from asleep; then wait for sleep".into(), Req::get("/metrics")),
        ("polling /slots: every 0.5 s (with GET /props) for the measured timer + 2 s, from asleep; then wait for sleep".into(), Req::get("/slots")),
        ("restore: when the server was found awake, one request wakes it again (found asleep: it is left asleep)".into(), tiny(m)),
    ]
}

/// What a run does to the server, in words (stderr before the probes, and `--dry-run`).
pub fn plan_lines(opts: &LlamaOptions) -> Vec<String> {
    vec![
        format!(
            "it sends small completions to {} (4 tokens each, about 8 in all, one of 32 tokens to time the generation, and one of up to 1024 tokens sized to take 1.5 s or more, sent again with twice the tokens while shorter), and polls GET /props, /health, /metrics and /slots",
            opts.target
        ),
        "it waits for the server to fall asleep four times (once after each measurement) and wakes it three or four times: about 5 x the sleep timer in all, at most --max-wait per wait".into(),
        "each wake reloads the model (the reload --sleep-idle-seconds costs any client); the server is left awake or asleep as found".into(),
        "another client's requests reset the same timer: run it when the server is idle".into(),
    ]
}

/// Runs the llama-server checks against `opts.target`; `stop` (Ctrl-C) ends the probes
/// early and the server is still put back awake if it was found awake.
pub async fn run(opts: &LlamaOptions, stop: &Stop) -> anyhow::Result<Report> {
    let start = Instant::now();
    let server = Server::new(&opts.target)?;
    let mut prober = Prober::new(server, opts);
    let props = tokio::select! {
        r = prober.props() => r.map_err(|e| anyhow::anyhow!("cannot read a llama-server's /props at {}: {e:#}", opts.target))?,
        _ = stop.stop.cancelled() => return Err(Interrupted("nothing was probed or changed yet".into()).into()),
    };
    let model = opts.model.clone().unwrap_or_else(|| props.alias.clone());
    if opts.announce {
        eprintln!(
            "kabench doctor: {} is a llama-server ({}), found {}; what the run does:",
            opts.target,
            props.build,
            if props.sleeping { "asleep" } else { "awake" }
        );
        for line in plan_lines(opts) {
            eprintln!("  {line}");
        }
    }
    prober.checks.push(server_row(&props, &prober.pid_text()));
    let outcome = tokio::select! {
        r = prober.probe(&props) => r,
        _ = stop.stop.cancelled() => Err(Interrupted(String::new()).into()),
    };
    let interrupted = stop.stop.is_cancelled();
    let restored = tokio::select! {
        r = prober.restore(props.sleeping) => r,
        _ = stop.abandon.cancelled() => vec!["restore abandoned (a second Ctrl-C): the server may be left awake".into()],
    };
    prober.push_counts();
    let done = prober.checks.len();
    let mut checks = prober.checks;
    checks.extend(super::ending_row(
        interrupted.then(|| format!("interrupted (Ctrl-C) after {done} checks")),
        outcome.err(),
    ));
    Ok(Report {
        target: opts.target.clone(),
        kind: "llama-server".into(),
        version: props.build.clone(),
        model,
        embed_model: None,
        checks,
        restored,
        elapsed_s: start.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// The first row: what `/props` says of the server.
fn server_row(p: &Props, pid: &str) -> Check {
    let on = |b: Option<bool>| match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "not stated",
    };
    Check {
        value: Some(json!({
            "build_info": p.build, "model_alias": p.alias, "n_ctx": p.n_ctx,
            "total_slots": p.slots, "is_sleeping": p.sleeping,
            "endpoint_metrics": p.metrics, "endpoint_slots": p.slots_enabled,
        })),
        ..row(
            "server.props",
            "/props",
            "what the server says of itself",
            Verdict::NotApplicable,
            Verdict::NotApplicable,
            format!(
                "build {}, model {}, n_ctx {}, {} slot(s), found {}; /metrics {} (--metrics), /slots {}; /props states no sleep timer (is_sleeping only): it is measured below; process: {pid}",
                p.build,
                p.alias,
                p.n_ctx.map_or("?".into(), |n| n.to_string()),
                p.slots.map_or("?".into(), |n| n.to_string()),
                if p.sleeping {
                    "asleep (is_sleeping true)"
                } else {
                    "awake (is_sleeping false)"
                },
                on(p.metrics),
                on(p.slots_enabled),
            ),
            "",
            "",
        )
    }
}

/// A measured figure rounded to milliseconds, for the JSON.
fn ms(s: f64) -> Value {
    json!((s * 1000.0).round() / 1000.0)
}
