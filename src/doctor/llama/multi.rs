//! `kabench doctor --target-kind llama-router` and `--target-kind llama-swap`: what a
//! server that holds many models does with one of them, measured on the server, never
//! assumed. llama.cpp's router mode (`GET /models`: `unloaded`, `loading`, `loaded`,
//! `sleeping`; per-model `sleep-idle-seconds` from its preset; `--models-max` LRU
//! eviction) and llama-swap (`GET /running`; per-model `ttl`): the cost of the first
//! request to a model not in memory against warm ones, the delay from the end of the
//! last request to the model leaving memory (sleep or TTL unload), whether polling the
//! status endpoint keeps it in memory, the memory of its process where it can be read,
//! and (router) the `--models-max` cap as far as it shows. The rows are the other
//! doctors' ([`super::super::Check`]) in the same report.
//!
//! It leaves the server as found: a model found loaded is loaded again, one it loaded
//! is unloaded. A model found not running is loaded only when no other model runs
//! (a load beside them may evict one) or with `--allow-evict`, which also loads a
//! second model to see an eviction; what was evicted is loaded again at the end.
//! This file holds the options, the plan `--dry-run` lists and the run in order; the
//! status reading is in `status`, the probes in `probe`, their rows in `rows`.

mod probe;
mod rows;
mod status;

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::http::{Req, Server};
use super::super::{Interrupted, Report, Stop};
use crate::llama::ServerKind;
use probe::Prober;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ManyOptions {
    /// `LlamaRouter` or `LlamaSwap`.
    pub kind: ServerKind,
    /// `http://host:port` of the server.
    pub target: String,
    /// The model probed (default: the first the server lists).
    pub model: Option<String>,
    /// The longest it waits for the model to leave memory.
    pub max_wait: Duration,
    /// `--allow-evict`: load the model beside others found running (a load may evict
    /// one), and load a second model to see an eviction.
    pub allow_evict: bool,
    /// Print, on stderr before the probes, what the run will do to the server.
    pub announce: bool,
}

/// A four-token completion for `model`, no prompt cache (both servers route
/// `/v1/completions` by the body's `model`).
pub fn tiny(model: &str) -> Req {
    Req::post(
        "/v1/completions",
        json!({"model": model, "prompt": "Hello", "max_tokens": 4, "cache_prompt": false}),
    )
}

/// The request that unloads `model`.
pub fn unload(kind: ServerKind, model: &str) -> Req {
    match kind {
        ServerKind::LlamaSwap => Req::post_empty(format!("/api/models/unload/{}", segment(model))),
        _ => Req::post("/models/unload", json!({"model": model})),
    }
}

/// `text` as one URL path segment: every byte but `A-Z a-z 0-9 - . _ ~` percent-encoded
/// (a model id may hold `/`, `:` or spaces).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request that loads `model` without generating (llama-swap has none: a
/// completion loads it).
pub fn load(kind: ServerKind, model: &str) -> Req {
    match kind {
        ServerKind::LlamaSwap => tiny(model),
        _ => Req::post("/models/load", json!({"model": model})),
    }
}

/// The words for the model leaving memory on `kind`.
fn leaving(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::LlamaSwap => "unloaded (gone from /running) after its ttl",
        _ => "asleep (status sleeping) after its sleep-idle-seconds",
    }
}

/// The requests a run sends, in order, with why (`--dry-run`); nothing is sent.
pub fn dry_run(opts: &ManyOptions) -> Vec<(String, Req)> {
    let m = opts.model.as_deref().unwrap_or("<the first model listed>");
    let k = opts.kind;
    let status = Req::get(k.residency_path());
    let mut plan = vec![(
        "which models, and which run (also after every request below)".to_string(),
        status.clone(),
    )];
    match k {
        ServerKind::LlamaSwap => plan.push((
            "the configured models (to pick the default model)".into(),
            Req::get("/v1/models"),
        )),
        _ => plan.push((
            "the router's own props (max_instances: the --models-max it states)".into(),
            Req::get("/props"),
        )),
    }
    plan.extend([
        (
            format!("only when {m} is found loaded: unload it so the first request is a cold load (it is loaded again at the end)"),
            unload(k, m),
        ),
        (
            format!("cold: the first request to {m} (not in memory), timed, status before and after; skipped when another model runs and it is not, unless --allow-evict"),
            tiny(m),
        ),
        ("warm: 3 requests, timed (their median is the warm cost)".into(), tiny(m)),
        (
            format!(
                "idle timer, when the server states one for {m}: every 0.1 s, until it is {} (at most --max-wait from the end of the last request); that it still leaves while polled shows polling does not keep it in memory",
                leaving(k)
            ),
            status.clone(),
        ),
    ]);
    if k != ServerKind::LlamaSwap {
        plan.push((
            "wake cost: the first request after sleep, timed, status before and after, then one warm request".into(),
            tiny(m),
        ));
        if opts.allow_evict {
            plan.push((
                "--allow-evict: a second model not running is loaded with one request, to see whether the router evicts one (the --models-max cap)".into(),
                tiny("<another model, not running>"),
            ));
            plan.push((
                "the second model is unloaded again".into(),
                unload(k, "<another model>"),
            ));
        }
    }
    plan.push((
        format!("restore: {m} unloaded when found not running, loaded again when found running; models evicted during the run loaded again"),
        load(k, m),
    ));
    plan
}

/// What a run does to the server, in words (stderr before the probes, and `--dry-run`).
pub fn plan_lines(opts: &ManyOptions) -> Vec<String> {
    let mut lines = vec![
        format!(
            "it sends about 6 small completions (4 tokens each) to one model on {} and polls GET {} every 0.1 s",
            opts.target,
            opts.kind.residency_path()
        ),
        format!(
            "a model found loaded is unloaded first (for a cold load) and loaded again at the end; when the server states a timer for it, it waits once for the model to be {} (at most --max-wait: {} s)",
            leaving(opts.kind),
            opts.max_wait.as_secs()
        ),
    ];
    lines.push(if opts.allow_evict {
        "--allow-evict: it may load the model beside others (a load may evict one) and, on the router, load a second model to see an eviction; what was evicted is loaded again at the end".into()
    } else {
        "models found running are never evicted: when another model runs and the probed one does not, the load probes are skipped (and say so); give --allow-evict to run them".into()
    });
    lines.push(
        "another client's requests reset the same timers: run it when the server is idle".into(),
    );
    lines
}

/// Runs the checks against `opts.target`; `stop` (Ctrl-C) ends the probes early and
/// what was found is restored all the same.
pub async fn run(opts: &ManyOptions, stop: &Stop) -> anyhow::Result<Report> {
    let start = Instant::now();
    let server = Server::new(&opts.target)?;
    let mut prober = Prober::new(server, opts);
    let found = tokio::select! {
        r = prober.first_look(opts.model.as_deref()) => r?,
        _ = stop.stop.cancelled() => return Err(Interrupted("nothing was probed or changed yet".into()).into()),
    };
    if opts.announce {
        eprintln!(
            "kabench doctor: {} is a {} ({}), {}; model {}; what the run does:",
            opts.target,
            opts.kind,
            found.version,
            prober.found().describe(),
            prober.model()
        );
        for line in plan_lines(opts) {
            eprintln!("  {line}");
        }
    }
    let outcome = tokio::select! {
        r = prober.probe() => r,
        _ = stop.stop.cancelled() => Err(Interrupted(String::new()).into()),
    };
    let interrupted = stop.stop.is_cancelled();
    prober.finish_rows();
    let restored = tokio::select! {
        r = tokio::time::timeout(super::super::RESTORE_LIMIT, prober.restore()) => r.unwrap_or_else(|_| vec![format!("gave up restoring after {:?}", super::super::RESTORE_LIMIT)]),
        _ = stop.abandon.cancelled() => vec!["restore abandoned (a second Ctrl-C): models may be left as the probes left them".into()],
    };
    let done = prober.checks.len();
    let model = prober.model().to_string();
    let mut checks = std::mem::take(&mut prober.checks);
    checks.extend(super::super::ending_row(
        interrupted.then(|| {
            format!("interrupted (Ctrl-C) after {done} checks; what was found was restored")
        }),
        outcome.err(),
    ));
    Ok(Report {
        target: opts.target.clone(),
        kind: opts.kind.as_str().into(),
        version: found.version,
        model,
        embed_model: None,
        checks,
        restored,
        elapsed_s: start.elapsed().as_secs_f64(),
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_unload_names_the_model_in_one_path_segment() {
        let r = unload(ServerKind::LlamaSwap, "org/m:q4 x");
        assert_eq!(r.path, "/api/models/unload/org%2Fm%3Aq4%20x");
        assert_eq!(r.method, "POST");
        let r = unload(ServerKind::LlamaRouter, "org/m");
        assert_eq!(
            (r.path.as_ref(), r.body),
            ("/models/unload", Some(json!({"model": "org/m"})))
        );
    }

    #[test]
    fn the_dry_run_names_the_kind_s_own_endpoints() {
        let opts = |kind, allow_evict| ManyOptions {
            kind,
            target: "http://127.0.0.1:9".into(),
            model: Some("m".into()),
            max_wait: Duration::from_secs(5),
            allow_evict,
            announce: false,
        };
        let paths =
            |o: &ManyOptions| -> Vec<String> { dry_run(o).iter().map(|(_, r)| r.line()).collect() };
        let router = paths(&opts(ServerKind::LlamaRouter, true));
        assert!(router.iter().any(|l| l == "GET /models"));
        assert!(router.iter().any(|l| l.starts_with("POST /models/load")));
        assert!(
            router
                .iter()
                .any(|l| l.contains("<another model, not running>"))
        );
        assert!(
            !paths(&opts(ServerKind::LlamaRouter, false))
                .iter()
                .any(|l| l.contains("<another model"))
        );
        let swap = paths(&opts(ServerKind::LlamaSwap, true));
        assert!(swap.iter().any(|l| l == "GET /running"));
        assert!(
            !swap
                .iter()
                .any(|l| l.contains("/models/load") || l.contains("<another model"))
        );
    }
}
