//! `kabench doctor`: probes a live Ollama (or the simulator) for what it really does
//! with keep_alive and the load options, one check per row: each keep_alive form on
//! `/api/generate`, `/api/chat` and `/api/embed` read back from `/api/ps`
//! `expires_at` (KA1–KA5), the OpenAI-compatible `/v1` endpoints against the server
//! default (H9), the effective `OLLAMA_KEEP_ALIVE` (a cold load without keep_alive),
//! the default context (L7), reloads on a `num_ctx` change (L5, L6) with their
//! duration, the resident size at two contexts, and cold loads from disk and page
//! cache. A check *holds* when the server does what `OLLAMA.md` documents for
//! v0.32.15; the run then restores what it found (models resident before are loaded
//! again with their context and remaining keep-alive, probe models it loaded are
//! unloaded).
//!
//! Long (about 1000 lines with its tests) because each probe's requests, its
//! read-back from `/api/ps` and its verdict are kept together, in the order the run
//! sends them, so a reader can follow one check from question to answer; the
//! keep_alive forms, the HTTP calls and the table are in their own files.

pub mod cli;
pub mod forms;
pub mod http;
mod table;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use forms::{Effect, FORMS, Form, Native, Verdict};
use http::{Reply, Req, Resident, Server};

use crate::ollama::name;

/// A load_duration at least this long is a load, not a warm hand-over (M6).
const LOAD_S: f64 = 0.1;

/// What to probe.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// `http://host:port` of the server.
    pub target: String,
    /// The model to probe (default: the smallest installed model that generates).
    pub model: Option<String>,
    /// An embedding model for `/api/embed` and `/v1/embeddings` (default: the probe
    /// model when it has embeddings, else those checks are n/a).
    pub embed_model: Option<String>,
}

/// The named model is not installed on the server (bad input).
#[derive(Debug, thiserror::Error)]
#[error("model {0:?} is not installed on the server ({1}); pull it or give another --model")]
pub struct ModelMissing(pub String, pub String);

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable id, e.g. `generate.in_options`, `v1.chat_completions`.
    pub id: String,
    /// The endpoint probed, or `server`.
    pub endpoint: String,
    /// What was sent or measured.
    pub check: String,
    /// What the server did.
    pub verdict: Verdict,
    /// What Ollama v0.32.15 does (`OLLAMA.md`).
    pub expected: Verdict,
    /// `verdict == expected` (an inconclusive probe holds, and says so).
    pub holds: bool,
    /// What was seen.
    pub evidence: String,
    /// What to do about it in an app or on the server; empty when nothing.
    pub fix: String,
    /// The `OLLAMA.md` rule IDs.
    pub rule: String,
    /// The measured figure, for machines (seconds, bytes, a context length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// What `kabench doctor` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The server probed.
    pub target: String,
    /// `/api/version`.
    pub version: String,
    /// The model probed.
    pub model: String,
    /// The embedding model probed, if any.
    pub embed_model: Option<String>,
    /// One row per check.
    pub checks: Vec<Check>,
    /// What was put back as it was.
    pub restored: Vec<String>,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Ctrl-C stopped the probes (what was found was still restored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Ctrl-C stopped `kabench doctor` (exit 130); what it had changed was put back first.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; {0}")]
pub struct Interrupted(pub String);

/// Ends the doctor: `stop` (the first Ctrl-C) ends the probes and starts the restore;
/// `abandon` (a second one) ends the restore too.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Ends the probes.
    pub stop: tokio_util::sync::CancellationToken,
    /// Ends the restore.
    pub abandon: tokio_util::sync::CancellationToken,
}

impl Report {
    /// The checks that do not hold.
    pub fn problems(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.holds).collect()
    }

    /// The check with `id`.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The table, as printed.
    pub fn to_text(&self) -> String {
        table::render(self)
    }
}

/// The requests a run sends, in order, without contacting the server (`--dry-run`).
/// Values measured during the run (the default context, the server keep-alive) are
/// shown with their usual figures and said so.
pub fn dry_run(opts: &DoctorOptions) -> Vec<(String, Req)> {
    let model = opts
        .model
        .clone()
        .unwrap_or_else(|| "MODEL (the smallest installed model that generates)".into());
    let embed = opts.embed_model.clone();
    let mut out: Vec<(String, Req)> = vec![
        ("version".into(), Req::get("/api/version")),
        (
            "what is resident now (restored at the end)".into(),
            Req::get("/api/ps"),
        ),
        (
            "capabilities and context".into(),
            Req::post("/api/show", json!({"model": model})),
        ),
        (
            "server keep_alive: unload first".into(),
            Req::unload(&model),
        ),
        (
            "server keep_alive and default context: a cold load without keep_alive or num_ctx"
                .into(),
            Req::post("/api/generate", Native::Generate.body(&model, json!({}))),
        ),
    ];
    for (label, req) in num_ctx_requests(&model, 4096) {
        out.push((format!("{label} (for a default context of 4096)"), req));
    }
    for endpoint in [Native::Generate, Native::Chat] {
        for form in FORMS {
            out.push((
                format!("{} {}", endpoint.path(), form.label()),
                form.request(endpoint, &model),
            ));
        }
    }
    out.push((
        "/v1/chat/completions keep_alive, cold (19s unless that is the server default)".into(),
        v1_chat(&model, 19),
    ));
    if let Some(e) = &embed {
        for form in FORMS {
            out.push((
                format!("/api/embed {}", form.label()),
                form.request(Native::Embed, e),
            ));
        }
        out.push((
            "/v1/embeddings keep_alive, cold".into(),
            v1_embeddings(e, 19),
        ));
    }
    out.push((
        "restore: unload probe models not resident before; load the ones that were with their num_ctx and remaining keep_alive".into(),
        Req::unload(&model),
    ));
    out.push((
        "after every request that loads: /api/ps".into(),
        Req::get("/api/ps"),
    ));
    out
}

fn num_ctx_requests(model: &str, default_ctx: u64) -> [(String, Req); 2] {
    let half = half_context(default_ctx);
    [
        (
            format!("num_ctx change: num_ctx {half}"),
            Req::post(
                "/api/generate",
                with_keep_alive(
                    Native::Generate.body(model, json!({"num_ctx": half})),
                    "30s",
                ),
            ),
        ),
        (
            "num_ctx absent after an explicit one".into(),
            Req::post(
                "/api/generate",
                with_keep_alive(Native::Generate.body(model, json!({})), "30s"),
            ),
        ),
    ]
}

fn half_context(default_ctx: u64) -> u64 {
    (default_ctx / 2).max(256)
}

fn with_keep_alive(mut body: Value, ka: &str) -> Value {
    body["keep_alive"] = json!(ka);
    body
}

fn v1_chat(model: &str, keep_alive_s: u64) -> Req {
    Req::post(
        "/v1/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 1, "keep_alive": format!("{keep_alive_s}s")}),
    )
}

fn v1_embeddings(model: &str, keep_alive_s: u64) -> Req {
    Req::post(
        "/v1/embeddings",
        json!({"model": model, "input": "hi", "keep_alive": format!("{keep_alive_s}s")}),
    )
}

/// What `/api/show` says of a model.
#[derive(Debug, Clone, Default)]
struct Shown {
    capabilities: Vec<String>,
    training_ctx: Option<u64>,
    /// f16 K and V bytes per token per slot, from the geometry.
    kv_bytes_per_token: Option<u64>,
}

impl Shown {
    fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

fn parse_show(v: &Value) -> Shown {
    let caps = v
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let info = v.get("model_info").and_then(Value::as_object);
    let find = |suffix: &str| -> Option<u64> {
        info?
            .iter()
            .find(|(k, _)| k.ends_with(suffix))
            .and_then(|(_, v)| v.as_u64())
    };
    let layers = find(".block_count");
    let kv_heads = find(".attention.head_count_kv");
    let head_dim = find(".attention.key_length").or_else(|| {
        let heads = find(".attention.head_count")?;
        Some(find(".embedding_length")? / heads.max(1))
    });
    let kv = match (layers, kv_heads, head_dim) {
        (Some(l), Some(h), Some(d)) => Some(2 * l * h * d * 2),
        _ => None,
    };
    Shown {
        capabilities: caps,
        training_ctx: find(".context_length"),
        kv_bytes_per_token: kv,
    }
}

/// The probe run: the server, the rows so far, and what it measured along the way.
struct Doctor {
    server: Server,
    checks: Vec<Check>,
    /// The model's keep-alive with no request asking (OLLAMA_KEEP_ALIVE).
    default_ka: Option<Effect>,
    /// load_duration of each load seen, seconds, first first.
    loads: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    endpoint: &str,
    check: &str,
    verdict: Verdict,
    expected: Verdict,
    evidence: String,
    fix: &str,
    rule: &str,
) -> Check {
    Check {
        id: id.into(),
        endpoint: endpoint.into(),
        check: check.into(),
        verdict,
        expected,
        holds: verdict == expected,
        evidence,
        fix: fix.into(),
        rule: rule.into(),
        value: None,
    }
}

/// A measurement row: n/a, holds.
fn info(id: &str, check: &str, evidence: String, fix: &str, rule: &str, value: Value) -> Check {
    Check {
        value: Some(value),
        ..row(
            id,
            "server",
            check,
            Verdict::NotApplicable,
            Verdict::NotApplicable,
            evidence,
            fix,
            rule,
        )
    }
}

fn effect_json(e: Effect) -> Value {
    match e {
        Effect::Seconds(s) => json!((s * 10.0).round() / 10.0),
        Effect::Forever => json!(-1),
        Effect::Unload => json!(0),
    }
}

/// Slots from the KV growth ratio: whole slots, the compute buffers growing with the
/// context adding less than one slot's KV (1.06× for one slot, 2.57× for two on the
/// CPU build).
fn slots(ratio: f64) -> f64 {
    (ratio + 0.1).floor().max(1.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Doctor {
    /// The model's keep-alive as `/api/ps` shows it after a reply that ended at `end`.
    async fn observe(&mut self, model: &str, reply: &Reply) -> anyhow::Result<Effect> {
        let Some(m) = self.server.find(model).await? else {
            return Ok(Effect::Unload);
        };
        if m.forever(reply.end) {
            return Ok(Effect::Forever);
        }
        let left = (m.expires_at - reply.end).as_seconds_f64();
        if left < 0.5 && self.server.wait_gone(model, Duration::from_secs(3)).await? {
            return Ok(Effect::Unload);
        }
        Ok(Effect::Seconds(left))
    }

    fn note_load(&mut self, reply: &Reply) {
        if let Some(s) = reply.load_seconds().filter(|s| *s >= LOAD_S) {
            self.loads.push(s);
        }
    }

    /// Phase 1: a cold load without keep_alive or num_ctx.
    async fn server_default(&mut self, model: &str, shown: &Shown) -> anyhow::Result<Resident> {
        self.server.unload(model).await?;
        let req = Req::post("/api/generate", Native::Generate.body(model, json!({})));
        let reply = self.server.send(&req).await?;
        if reply.status != 200 {
            anyhow::bail!(
                "a plain request to {model} failed: HTTP {}: {}",
                reply.status,
                reply.error_text()
            );
        }
        self.note_load(&reply);
        let effect = self.observe(model, &reply).await?;
        self.default_ka = Some(effect);
        let setting = match effect {
            Effect::Seconds(s) => {
                crate::units::format_go_duration(Duration::from_secs_f64(s.round().max(0.0)))
            }
            Effect::Forever => "-1 (forever)".into(),
            Effect::Unload => "0".into(),
        };
        let mut fix = "a request without keep_alive that loads a model gets this; set OLLAMA_KEEP_ALIVE on the server to change it for every client (the /v1 endpoints can set nothing else)".to_string();
        if effect == Effect::Unload {
            fix = "OLLAMA_KEEP_ALIVE=0: every idle model unloads at once, so every request after a pause is a cold load; set a duration".into();
        }
        self.checks.push(info(
            "server.keep_alive",
            "effective OLLAMA_KEEP_ALIVE (cold load, no keep_alive)",
            format!("{}: OLLAMA_KEEP_ALIVE={setting}", effect.after_reply()),
            &fix,
            "KA5",
            effect_json(effect),
        ));
        let mut resident = self.server.find(model).await?;
        if resident.is_none() {
            // The default unloads at once: load again, still without num_ctx, to see
            // the context and size it picks.
            let req = Req::post(
                "/api/generate",
                with_keep_alive(Native::Generate.body(model, json!({})), "30s"),
            );
            let again = self.server.send(&req).await?;
            self.note_load(&again);
            resident = self.server.find(model).await?;
        }
        let (ctx, size) = match &resident {
            Some(r) => (r.context_length, r.size),
            None => (None, 0),
        };
        let training = shown
            .training_ctx
            .map(|t| format!("; training context {t}"))
            .unwrap_or_default();
        self.checks.push(info(
            "server.default_context",
            "default context length (no num_ctx)",
            match ctx {
                Some(c) => format!("/api/ps context_length {c} after a load without num_ctx{training}"),
                None => "the server does not list context_length in /api/ps (before v0.10.0)".into(),
            },
            "clients that send no num_ctx get this; a client that sends another makes the model reload on every switch (L6): send one num_ctx from every client, or set OLLAMA_CONTEXT_LENGTH",
            "L7, P1",
            json!(ctx),
        ));
        Ok(resident.unwrap_or(Resident {
            name: model.into(),
            expires_at: reply.end,
            context_length: ctx,
            size,
        }))
    }

    /// Phase 2: num_ctx half the default, then none again; the resident sizes.
    async fn num_ctx(&mut self, model: &str, base: &Resident, shown: &Shown) -> anyhow::Result<()> {
        let Some(c0) = base.context_length else {
            self.checks.push(row(
                "num_ctx.change",
                "/api/generate",
                "num_ctx change reloads",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                "/api/ps lists no context_length: not observable".into(),
                "",
                "L5",
            ));
            return Ok(());
        };
        let half = half_context(c0);
        let [(label_a, req_a), (label_b, req_b)] = num_ctx_requests(model, c0);
        let mut sizes = vec![(c0, base.size)];
        for (i, (label, req, want)) in [(label_a, req_a, half), (label_b, req_b, c0)]
            .into_iter()
            .enumerate()
        {
            let from = if i == 0 { c0 } else { half };
            let reply = self.server.send(&req).await?;
            let (id, rule, fix) = if i == 0 {
                (
                    "num_ctx.change",
                    "L5",
                    "a model reloads whenever num_ctx differs from the resident one: send the same num_ctx from every client (or set OLLAMA_CONTEXT_LENGTH and send none)",
                )
            } else {
                (
                    "num_ctx.absent",
                    "L6",
                    "a request without num_ctx asks for the default and reloads a model loaded with another: clients that mix the two thrash; send one num_ctx everywhere",
                )
            };
            if reply.status != 200 {
                self.checks.push(Check {
                    holds: false,
                    ..row(
                        id,
                        "/api/generate",
                        &label,
                        Verdict::NotApplicable,
                        Verdict::Honoured,
                        format!("HTTP {}: {}", reply.status, reply.error_text()),
                        fix,
                        rule,
                    )
                });
                continue;
            }
            self.note_load(&reply);
            let load = reply.load_seconds().unwrap_or(0.0);
            let now = self.server.find(model).await?;
            let ctx = now.as_ref().and_then(|m| m.context_length);
            if let Some(m) = &now {
                sizes.push((ctx.unwrap_or(want), m.size));
            }
            let verdict = if ctx == Some(want) && load >= LOAD_S {
                Verdict::Honoured
            } else if ctx == Some(from) {
                Verdict::Ignored
            } else {
                Verdict::NotApplicable
            };
            let mut c = row(
                id,
                "/api/generate",
                &label,
                verdict,
                Verdict::Honoured,
                format!(
                    "context_length {from} → {}, load_duration {load:.2} s ({})",
                    ctx.map_or("?".into(), |c| c.to_string()),
                    if load >= LOAD_S {
                        "a reload"
                    } else {
                        "no reload"
                    }
                ),
                fix,
                rule,
            );
            c.value = Some(json!({"reload_s": (load * 1000.0).round() / 1000.0}));
            self.checks.push(c);
        }
        let small = sizes.iter().find(|(c, _)| *c == half).copied();
        let (id, check) = ("memory.num_ctx", "resident size at two num_ctx values");
        match small {
            Some((_, s_half)) if base.size > s_half => {
                let per_token = (base.size - s_half) as f64 / (c0 - half) as f64;
                self.checks.push(info(
                    id,
                    check,
                    format!(
                        "{} at num_ctx {half}, {} at {c0}: +{:.1} KiB per token of context ({} per 1k tokens)",
                        mb(s_half),
                        mb(base.size),
                        per_token / 1024.0,
                        mb((per_token * 1024.0) as u64)
                    ),
                    "a larger num_ctx costs this much memory per model (× OLLAMA_NUM_PARALLEL slots); size num_ctx to the prompts the app really sends",
                    "E1, L8",
                    json!({"num_ctx": [half, c0], "size": [s_half, base.size], "bytes_per_token": per_token.round()}),
                ));
                let parallel = shown.kv_bytes_per_token.map(|kv| per_token / kv as f64);
                self.checks.push(info(
                    "server.num_parallel",
                    "OLLAMA_NUM_PARALLEL (from the KV growth)",
                    match parallel {
                        Some(p) if p >= 0.9 => format!(
                            "≈ {} slot(s): the size grows {p:.2}× the f16 KV of one slot per token of num_ctx (compute buffers add the fraction)",
                            slots(p)
                        ),
                        Some(p) => format!(
                            "unclear: the size grows {p:.2}× the f16 KV of one slot per token (a quantized KV cache?)"
                        ),
                        None => "not observable: /api/show gives no attention geometry".into(),
                    },
                    "every slot holds num_ctx of KV: OLLAMA_NUM_PARALLEL multiplies the context's memory",
                    "L8",
                    json!(parallel.filter(|p| *p >= 0.9).map(slots)),
                ));
            }
            _ => self.checks.push(info(
                id,
                check,
                "not observable: the sizes at the two contexts did not differ".into(),
                "",
                "E1",
                Value::Null,
            )),
        }
        Ok(())
    }

    /// Phase 3: every keep_alive form on one endpoint.
    async fn forms(&mut self, endpoint: Native, model: &str) -> anyhow::Result<()> {
        let mut prior = match self.server.find(model).await? {
            Some(m) if m.forever(self.server.now()) => Some(Effect::Forever),
            Some(m) => Some(Effect::Seconds(
                (m.expires_at - self.server.now()).as_seconds_f64(),
            )),
            None => None,
        };
        for form in FORMS {
            let req = form.request(endpoint, model);
            let reply = self.server.send(&req).await?;
            let id = format!("{}.{}", endpoint.key(), form.key());
            let label = form.label();
            let mut check = row(
                &id,
                endpoint.path(),
                &label,
                Verdict::NotApplicable,
                form.expected(),
                String::new(),
                form.fix(),
                form.rule(),
            );
            if reply.status == 400 {
                check.verdict = Verdict::Rejected;
                check.evidence = format!("HTTP 400: {}", reply.error_text());
            } else if reply.status != 200 {
                check.evidence = format!("HTTP {}: {}", reply.status, reply.error_text());
            } else {
                self.note_load(&reply);
                let observed = self.observe(model, &reply).await?;
                let if_ignored = match form {
                    Form::Absent => self.default_ka,
                    _ => prior.or(self.default_ka),
                };
                let asked = form.honoured_effect(prior);
                check.verdict = match asked {
                    Some(a) => forms::judge(a, observed, if_ignored),
                    None => Verdict::NotApplicable,
                };
                check.evidence = match (check.verdict, form) {
                    (_, Form::Absent) if asked.is_none() => {
                        "the model was not resident: nothing to keep".into()
                    }
                    (Verdict::NotApplicable, _) => format!(
                        "inconclusive: {}, which is also what ignoring it would leave",
                        observed.after_reply()
                    ),
                    (_, Form::Absent) => format!(
                        "{} (it had {})",
                        observed.after_reply(),
                        asked.map_or("-".into(), |a| a.describe())
                    ),
                    (_, _) if observed == Effect::Unload => "left /api/ps at once".into(),
                    (Verdict::Ignored, _) => format!(
                        "{}, not {}{}",
                        observed.after_reply(),
                        asked.map_or("-".into(), |a| a.describe()),
                        match if_ignored {
                            Some(i) if i.matches(observed) && prior.is_some() => {
                                " (the keep_alive it had)"
                            }
                            Some(i) if i.matches(observed) => " (the server default)",
                            _ => "",
                        }
                    ),
                    _ => observed.after_reply(),
                };
                prior = (observed != Effect::Unload).then_some(observed);
            }
            check.holds = check.verdict == check.expected
                || (check.verdict == Verdict::NotApplicable && reply.status == 200);
            self.checks.push(check);
        }
        Ok(())
    }

    /// Phase 4: a cold `/v1` request asking for a keep_alive other than the server's.
    async fn v1(&mut self, model: &str, embeddings: bool) -> anyhow::Result<()> {
        if self.server.find(model).await?.is_some() {
            self.server.unload(model).await?;
        }
        let ask = match self.default_ka {
            Some(d) if d.matches(Effect::Seconds(19.0)) => 31,
            _ => 19,
        };
        let (req, id, path) = if embeddings {
            (v1_embeddings(model, ask), "v1.embeddings", "/v1/embeddings")
        } else {
            (
                v1_chat(model, ask),
                "v1.chat_completions",
                "/v1/chat/completions",
            )
        };
        let reply = self.server.send(&req).await?;
        let mut check = row(
            id,
            path,
            &format!("keep_alive \"{ask}s\", cold load"),
            Verdict::NotApplicable,
            Verdict::Ignored,
            String::new(),
            "the OpenAI-compatible endpoints drop keep_alive and num_ctx: set OLLAMA_KEEP_ALIVE (and OLLAMA_CONTEXT_LENGTH) on the server, or warm the model with a native /api request carrying keep_alive (a resident model keeps it)",
            "H9",
        );
        if reply.status != 200 {
            check.evidence = format!("HTTP {}: {}", reply.status, reply.error_text());
        } else {
            let observed = self.observe(model, &reply).await?;
            check.verdict = forms::judge(Effect::Seconds(ask as f64), observed, self.default_ka);
            check.evidence = format!(
                "{}{} (a cold load took {:.2} s)",
                observed.after_reply(),
                match self.default_ka {
                    Some(d) if d.matches(observed) => ": the server default, not the request's",
                    _ if observed.matches(Effect::Seconds(ask as f64)) => ": the request's",
                    _ => "",
                },
                reply.elapsed.as_secs_f64()
            );
        }
        check.holds = check.verdict == check.expected;
        self.checks.push(check);
        Ok(())
    }

    /// The cold-load rows: first load against later ones.
    fn page_cache(&mut self, was_resident: bool) {
        let (id, check) = ("load.page_cache", "cold load: disk vs page cache");
        let Some((&first, later)) = self.loads.split_first() else {
            self.checks.push(info(
                id,
                check,
                "no load seen".into(),
                "",
                "M4",
                Value::Null,
            ));
            return;
        };
        let mut later = later.to_vec();
        later.sort_by(f64::total_cmp);
        let median = later.get(later.len() / 2).copied();
        let evidence = match median {
            Some(m) if !was_resident && first > 1.5 * m + 0.05 => format!(
                "first load {first:.2} s (from disk), later loads {m:.2} s (page cache, median of {})",
                later.len()
            ),
            Some(m) => format!(
                "first load {first:.2} s, later loads {m:.2} s (median of {}): alike, the file was already in the page cache (a load from disk shows only after the OS cache drops it)",
                later.len()
            ),
            None => format!("one load: {first:.2} s"),
        };
        self.checks.push(info(
            id,
            check,
            evidence,
            "a cold start costs this on every expiry; from a cold disk (boot, a container start, memory pressure) it costs more",
            "M4",
            json!({"first_s": first, "later_median_s": median}),
        ));
    }
}

/// Picks the smallest installed model that generates.
async fn pick_model(server: &mut Server) -> anyhow::Result<String> {
    let tags = server.send(&Req::get("/api/tags")).await?;
    let mut models: Vec<(u64, String)> = tags
        .json
        .as_ref()
        .and_then(|j| j.get("models"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m.get("size").and_then(Value::as_u64).unwrap_or(0),
                        m.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    models.sort();
    for (_, m) in models {
        if show(server, &m).await?.has("completion") {
            return Ok(m);
        }
    }
    Err(ModelMissing("(any)".into(), "no installed model generates text".into()).into())
}

async fn show(server: &mut Server, model: &str) -> anyhow::Result<Shown> {
    let reply = server
        .send(&Req::post("/api/show", json!({"model": model})))
        .await?;
    match reply.status {
        200 => Ok(parse_show(reply.json.as_ref().unwrap_or(&Value::Null))),
        404 => Err(ModelMissing(model.into(), reply.error_text()).into()),
        s => anyhow::bail!("/api/show {model}: HTTP {s}: {}", reply.error_text()),
    }
}

/// Longest the restore may take after the probes ended (each request of it is also
/// bounded by the request timeout).
const RESTORE_LIMIT: Duration = Duration::from_secs(120);

/// Runs `call` unless `stop` fires first (then `Interrupted`, nothing changed yet).
async fn before_probes<T>(
    stop: &Stop,
    call: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = call => r,
        _ = stop.stop.cancelled() => Err(Interrupted("nothing was probed or changed yet".into()).into()),
    }
}

/// Runs every check against `opts.target` and restores what it found. `stop` ends
/// the probes early (Ctrl-C): what was found is restored all the same and the report
/// says it was interrupted.
pub async fn run(opts: &DoctorOptions, stop: &Stop) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut server = Server::new(&opts.target)?;
    let version = before_probes(stop, async {
        server
            .send(&Req::get("/api/version"))
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach an Ollama at {}: {e:#}", opts.target))
    })
    .await?;
    let version = version
        .json
        .as_ref()
        .and_then(|j| j.get("version"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} answered /api/version with {:?}: not an Ollama",
                opts.target,
                version.text
            )
        })?
        .to_string();
    let before = before_probes(stop, server.ps()).await?;
    let model = match &opts.model {
        Some(m) => m.clone(),
        None => before_probes(stop, pick_model(&mut server)).await?,
    };
    let shown = before_probes(stop, show(&mut server, &model)).await?;
    let embed_model = match &opts.embed_model {
        Some(e) => {
            let s = before_probes(stop, show(&mut server, e)).await?;
            if !s.has("embedding") {
                anyhow::bail!(ModelMissing(
                    e.clone(),
                    "it is installed but has no embedding capability".into()
                ));
            }
            Some(e.clone())
        }
        None => shown.has("embedding").then(|| model.clone()),
    };
    let mut doctor = Doctor {
        server,
        checks: Vec::new(),
        default_ka: None,
        loads: Vec::new(),
    };
    doctor.checks.push(info(
        "server.version",
        "Ollama version",
        if version == "0.32.15" {
            format!("{version}: the version kabench's rules (OLLAMA.md) follow")
        } else {
            format!(
                "{version}: kabench's rules follow 0.32.15; a row that does not hold may be this version's behaviour (OLLAMA.md, V1–V4)"
            )
        },
        "",
        "H5",
        json!(version),
    ));
    let outcome = tokio::select! {
        r = probe(&mut doctor, &model, embed_model.as_deref(), &shown) => r,
        _ = stop.stop.cancelled() => Err(Interrupted(String::new()).into()),
    };
    let interrupted = stop.stop.is_cancelled();
    let was_resident = before.iter().any(|m| name::same_model(&m.name, &model));
    doctor.page_cache(was_resident);
    let at_least = doctor.server.most_resident.max(before.len()).max(1);
    doctor.checks.push(info(
        "server.max_loaded_models",
        &format!("OLLAMA_MAX_LOADED_MODELS: at least {at_least}"),
        format!(
            "a lower bound, not the value: /api/ps listed up to {at_least} model(s) at once during the run ({} at the start); the cap itself is not probed, since that takes loading one model more than it and evicting yours",
            before.len(),
        ),
        "every resident model counts, embedding models too (E5): a chat model and an embedder need a cap of 2 or more to stay loaded together",
        "E5",
        json!({"at_least": at_least}),
    ));
    let restored = tokio::select! {
        r = tokio::time::timeout(
            RESTORE_LIMIT,
            restore(&mut doctor.server, &before, &model, embed_model.as_deref()),
        ) => r.unwrap_or_else(|_| vec![format!("gave up restoring after {RESTORE_LIMIT:?}")]),
        _ = stop.abandon.cancelled() => vec!["restore abandoned (a second Ctrl-C): models may be left as the probes left them".into()],
    };
    if interrupted {
        let done = doctor.checks.len();
        doctor.checks.push(Check {
            holds: false,
            ..row(
                "probe.interrupted",
                "server",
                "the probes ran to the end",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!("interrupted (Ctrl-C) after {done} checks; what was resident before was restored"),
                "",
                "",
            )
        });
    } else if let Err(e) = outcome {
        doctor.checks.push(Check {
            holds: false,
            ..row(
                "probe.error",
                "server",
                "the probes ran to the end",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!("{e:#}"),
                "",
                "",
            )
        });
    }
    Ok(Report {
        target: opts.target.clone(),
        version,
        model,
        embed_model,
        checks: doctor.checks,
        restored,
        elapsed_s: start.elapsed().as_secs_f64(),
        interrupted,
    })
}

async fn probe(
    doctor: &mut Doctor,
    model: &str,
    embed: Option<&str>,
    shown: &Shown,
) -> anyhow::Result<()> {
    let base = doctor.server_default(model, shown).await?;
    doctor.num_ctx(model, &base, shown).await?;
    doctor.forms(Native::Generate, model).await?;
    doctor.forms(Native::Chat, model).await?;
    doctor.v1(model, false).await?;
    match embed {
        Some(e) => {
            doctor.forms(Native::Embed, e).await?;
            doctor.v1(e, true).await?;
        }
        None => {
            let why = format!("{model} has no embeddings (give --embed-model NAME)");
            for form in FORMS {
                doctor.checks.push(Check {
                    holds: true,
                    ..row(
                        &format!("embed.{}", form.key()),
                        "/api/embed",
                        &form.label(),
                        Verdict::NotApplicable,
                        form.expected(),
                        why.clone(),
                        form.fix(),
                        form.rule(),
                    )
                });
            }
            doctor.checks.push(Check {
                holds: true,
                ..row(
                    "v1.embeddings",
                    "/v1/embeddings",
                    "keep_alive, cold load",
                    Verdict::NotApplicable,
                    Verdict::Ignored,
                    why,
                    "",
                    "H9",
                )
            });
        }
    }
    Ok(())
}

/// Puts back what `before` showed: probe models that were not resident are unloaded,
/// models that were are loaded again with their context and remaining keep-alive
/// (an expiry within a second is left to lapse). Returns one line per action.
async fn restore(
    server: &mut Server,
    before: &[Resident],
    model: &str,
    embed: Option<&str>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let was = |m: &str| before.iter().any(|b| name::same_model(&b.name, m));
    for probe in std::iter::once(model).chain(embed) {
        if was(probe) {
            continue;
        }
        match server.find(probe).await {
            Ok(Some(_)) => match server.unload(probe).await {
                Ok(()) => lines.push(format!("unloaded {probe} (not loaded before)")),
                Err(e) => lines.push(format!("could not unload {probe}: {e:#}")),
            },
            Ok(None) => {}
            Err(e) => lines.push(format!("could not read /api/ps: {e:#}")),
        }
    }
    let now_resident = server.ps().await.unwrap_or_default();
    for b in before {
        let now = now_resident
            .iter()
            .find(|m| name::same_model(&m.name, &b.name));
        let untouched = now.is_some_and(|n| {
            n.context_length == b.context_length
                && (n.expires_at - b.expires_at).as_seconds_f64().abs() < 1.0
        });
        if untouched {
            continue;
        }
        let server_now = server.now();
        let keep = if b.forever(server_now) {
            Effect::Forever
        } else {
            let left = (b.expires_at - server_now).as_seconds_f64();
            if left < 1.0 {
                lines.push(format!(
                    "{}: its keep-alive ran out during the run; left unloaded",
                    b.name
                ));
                continue;
            }
            Effect::Seconds(left)
        };
        let mut body = json!({"model": b.name, "keep_alive": keep.to_json()});
        if let Some(c) = b.context_length {
            body["options"] = json!({"num_ctx": c});
        }
        let mut reply = server.send(&Req::post("/api/generate", body.clone())).await;
        if reply.as_ref().is_ok_and(|r| r.status == 400) {
            // An embedding model: an empty input only loads (M8).
            reply = server.send(&Req::post("/api/embed", body)).await;
        }
        match reply {
            Ok(r) if r.status == 200 => lines.push(format!(
                "{}: loaded again (num_ctx {}, keep_alive {})",
                b.name,
                b.context_length.map_or("default".into(), |c| c.to_string()),
                keep.describe()
            )),
            Ok(r) => lines.push(format!(
                "{}: could not load it again: HTTP {}: {}",
                b.name,
                r.status,
                r.error_text()
            )),
            Err(e) => lines.push(format!("{}: could not load it again: {e:#}", b.name)),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_gives_kv_bytes_from_either_geometry() {
        let real = json!({"capabilities": ["completion"], "model_info": {
            "llama.block_count": 8, "llama.attention.head_count_kv": 8,
            "llama.attention.head_count": 8, "llama.embedding_length": 512,
            "llama.context_length": 4096}});
        let s = parse_show(&real);
        assert_eq!(s.kv_bytes_per_token, Some(16384));
        assert_eq!(s.training_ctx, Some(4096));
        assert!(s.has("completion") && !s.has("embedding"));
        let sim = json!({"model_info": {"llama.block_count": 8,
            "llama.attention.head_count_kv": 8, "llama.attention.key_length": 64}});
        assert_eq!(parse_show(&sim).kv_bytes_per_token, Some(16384));
    }

    #[test]
    fn the_dry_run_lists_every_form_on_both_text_endpoints_and_sends_nothing() {
        let plan = dry_run(&DoctorOptions {
            target: "http://127.0.0.1:9".into(),
            model: Some("m".into()),
            embed_model: None,
        });
        let gen_forms = plan
            .iter()
            .filter(|(_, r)| {
                r.path == "/api/generate" && r.body.as_ref().unwrap()["prompt"] == "hi"
            })
            .count();
        assert!(gen_forms >= FORMS.len(), "{gen_forms}");
        assert!(plan.iter().any(|(_, r)| r.path == "/v1/chat/completions"));
        assert!(!plan.iter().any(|(_, r)| r.path == "/api/embed"));
        assert!(
            plan.iter()
                .any(|(_, r)| r.line().contains(r#""keep_alive":"-1""#))
        );
    }
}
