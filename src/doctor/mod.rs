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
//! This file holds the report's types and the run in order; each job is in its own
//! file: the requests of a `--dry-run` (`dry`), what `/api/show` says (`show`), the
//! server-wide probes (`probe`), the keep_alive forms per endpoint (`endpoints`), the
//! restore (`restore`), what may be evicted and the cap an eviction shows (`evict`),
//! the page-cache check of the model file (`pagecache`), the keep_alive forms
//! themselves (`forms`), the HTTP calls (`http`) and the table (`table`).

pub mod cli;
mod dry;
mod endpoints;
mod evict;
pub mod forms;
pub mod http;
pub mod llama;
mod pagecache;
mod probe;
mod restore;
mod show;
mod table;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use forms::{FORMS, Native, Verdict};
use http::{Req, Server};
use probe::{Doctor, info, row};
use restore::restore;
use show::{Shown, pick_model, show};

use crate::ollama::name;

pub use dry::{Change, change, changes_summary, dry_run};

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
    /// `--allow-evict`: run the checks that may evict a model found loaded (it is
    /// loaded again at the end); without it they are skipped.
    pub allow_evict: bool,
    /// Print, on stderr before the probes, what the run will load, unload and reload.
    pub announce: bool,
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
    /// What kind of server: `Ollama`, `llama-server`, `llama-router` or `llama-swap`.
    #[serde(default = "ollama_kind")]
    pub kind: String,
    /// `/api/version` (Ollama, llama-swap), `/props` `build_info` (llama-server, the
    /// router).
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

fn ollama_kind() -> String {
    "Ollama".into()
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
/// Longest the restore may take after the probes ended (each request of it is also
/// bounded by the request timeout).
const RESTORE_LIMIT: Duration = Duration::from_secs(120);

/// The message of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

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
        server.send(&Req::get("/api/version")).await.map_err(|e| {
            if e.is::<http::Redirected>() || e.is::<http::BodyTooLong>() {
                e
            } else {
                anyhow::anyhow!("cannot reach an Ollama at {}: {e:#}", opts.target)
            }
        })
    })
    .await?;
    let version = version.version().ok_or_else(|| {
        anyhow::anyhow!(
            "{} answered /api/version with {:?}: not an Ollama",
            opts.target,
            version.text
        )
    })?;
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
    let guard = evict::Guard::of(&before, &model, embed_model.as_deref(), opts.allow_evict);
    server.probes = std::iter::once(model.clone())
        .chain(embed_model.clone())
        .collect();
    if opts.announce {
        eprint!(
            "{}",
            dry::preamble(
                &opts.target,
                &model,
                embed_model.as_deref(),
                &before,
                &guard
            )
        );
    }
    let mut doctor = Doctor {
        server,
        checks: Vec::new(),
        default_ka: None,
        loads: Vec::new(),
        cached_before: None,
        allow_evict: opts.allow_evict,
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
    // From here on the server is changed: whatever ends the probes (an error, a
    // panic, Ctrl-C), the restore below runs.
    let probes = std::panic::AssertUnwindSafe(probe(
        &mut doctor,
        &model,
        embed_model.as_deref(),
        &shown,
        &guard,
    ));
    let outcome = tokio::select! {
        r = futures_util::FutureExt::catch_unwind(probes) => r.unwrap_or_else(|panic| {
            Err(anyhow::anyhow!("the probes stopped on an internal error: {}", panic_text(&*panic)))
        }),
        _ = stop.stop.cancelled() => Err(Interrupted(String::new()).into()),
    };
    let interrupted = stop.stop.is_cancelled();
    let was_resident = before.iter().any(|m| name::same_model(&m.name, &model));
    doctor.page_cache(was_resident);
    let cap = evict::cap_row(
        &doctor.server,
        before.len(),
        guard.skip_model || guard.skip_embed,
    );
    doctor.checks.push(cap);
    let restored = tokio::select! {
        r = tokio::time::timeout(
            RESTORE_LIMIT,
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(restore(
                &mut doctor.server,
                &before,
                &model,
                embed_model.as_deref(),
            ))),
        ) => match r {
            Ok(Ok(lines)) => lines,
            Ok(Err(panic)) => vec![format!(
                "the restore stopped on an internal error: {}; models may be left as the probes left them",
                panic_text(&*panic)
            )],
            Err(_) => vec![format!("gave up restoring after {RESTORE_LIMIT:?}")],
        },
        _ = stop.abandon.cancelled() => vec!["restore abandoned (a second Ctrl-C): models may be left as the probes left them".into()],
    };
    let done = doctor.checks.len();
    doctor.checks.extend(ending_row(
        interrupted.then(|| {
            format!(
                "interrupted (Ctrl-C) after {done} checks; what was resident before was restored"
            )
        }),
        outcome.err(),
    ));
    Ok(Report {
        target: opts.target.clone(),
        kind: ollama_kind(),
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
    guard: &evict::Guard,
) -> anyhow::Result<()> {
    if guard.skip_model {
        doctor.checks.push(guard.skipped_row(
            "probe.skipped",
            model,
            "the server keep_alive, the default context, the num_ctx reloads and sizes, the keep_alive forms on /api/generate and /api/chat, /v1/chat/completions, the cold loads",
        ));
    } else {
        let base = doctor.server_default(model, shown).await?;
        doctor.no_eviction()?;
        doctor.num_ctx(model, &base, shown).await?;
        doctor.no_eviction()?;
        doctor.forms(Native::Generate, model).await?;
        doctor.no_eviction()?;
        doctor.forms(Native::Chat, model).await?;
        doctor.no_eviction()?;
        doctor.v1(model, false).await?;
        doctor.no_eviction()?;
    }
    match embed {
        Some(e) if guard.skip_embed && !name::same_model(e, model) => {
            doctor.checks.push(guard.skipped_row(
                "probe.skipped_embed",
                e,
                "the keep_alive forms on /api/embed, /v1/embeddings",
            ));
        }
        Some(_) if guard.skip_embed => {}
        Some(e) => {
            doctor.forms(Native::Embed, e).await?;
            doctor.no_eviction()?;
            doctor.v1(e, true).await?;
            doctor.no_eviction()?;
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

/// The row that says the probes did not run to the end: interrupted (`interrupted`
/// says how) or stopped on `error`; none when they ended.
pub(crate) fn ending_row(
    interrupted: Option<String>,
    error: Option<anyhow::Error>,
) -> Option<Check> {
    let evidence = match (interrupted, error) {
        (Some(how), _) => ("probe.interrupted", how),
        (None, Some(e)) => ("probe.error", format!("{e:#}")),
        (None, None) => return None,
    };
    Some(Check {
        holds: false,
        ..row(
            evidence.0,
            "server",
            "the probes ran to the end",
            Verdict::NotApplicable,
            Verdict::NotApplicable,
            evidence.1,
            "",
            "",
        )
    })
}
