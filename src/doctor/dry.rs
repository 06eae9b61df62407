//! The requests a doctor run sends, in order, as `--dry-run` lists them, and the
//! request bodies the probes share with it (the `num_ctx` pair, the `/v1` requests).

use serde_json::{Value, json};

use super::DoctorOptions;
use super::forms::{FORMS, Native};
use super::http::Req;

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

/// What one request does to the loaded models.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Unloads the model (an empty request with keep_alive 0).
    Unload(String),
    /// Loads the model if it is not loaded, or reloads it when loaded at another
    /// num_ctx (`None`: the server's default); `then_unload` for keep_alive 0.
    Load {
        /// The model.
        model: String,
        /// The num_ctx sent.
        num_ctx: Option<u64>,
        /// keep_alive 0: unloaded again once the reply ends.
        then_unload: bool,
    },
}

impl Change {
    /// The model it changes.
    pub fn model(&self) -> &str {
        match self {
            Change::Unload(m) | Change::Load { model: m, .. } => m,
        }
    }

    /// In words.
    pub fn describe(&self) -> String {
        match self {
            Change::Unload(m) => format!("unloads {m}"),
            Change::Load {
                model,
                num_ctx,
                then_unload,
            } => format!(
                "loads {model} unless loaded{}{}",
                match num_ctx {
                    Some(n) => format!(", at num_ctx {n} (a reload if loaded at another)"),
                    None => " (at the default num_ctx: a reload if loaded at another)".into(),
                },
                if *then_unload {
                    ", then unloads it (keep_alive 0)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// What `req` does to the loaded models; `None` for one that changes nothing (a read,
/// or the string keep_alive `"-1"`, which v0.32.15 rejects with 400 before loading).
pub fn change(req: &Req) -> Option<Change> {
    let body = req.body.as_ref()?;
    let model = body.get("model")?.as_str()?.to_string();
    if !matches!(
        req.path.as_ref(),
        "/api/generate" | "/api/chat" | "/api/embed" | "/v1/chat/completions" | "/v1/embeddings"
    ) {
        return None;
    }
    let ka = body.get("keep_alive");
    let zero = ka == Some(&json!(0)) || ka == Some(&json!("0"));
    let has_input = ["prompt", "messages", "input"]
        .iter()
        .any(|k| body.get(*k).is_some());
    if zero && !has_input {
        return Some(Change::Unload(model));
    }
    if ka == Some(&json!("-1")) {
        return None;
    }
    Some(Change::Load {
        model,
        num_ctx: body.pointer("/options/num_ctx").and_then(Value::as_u64),
        then_unload: zero,
    })
}

/// Per model, in words: how many unloads and loads the requests make, and the
/// num_ctx values sent.
pub fn changes_summary(plan: &[(String, Req)]) -> Vec<String> {
    let mut models: Vec<String> = Vec::new();
    let changes: Vec<Change> = plan.iter().filter_map(|(_, r)| change(r)).collect();
    for c in &changes {
        if !models.iter().any(|m| m == c.model()) {
            models.push(c.model().to_string());
        }
    }
    models
        .iter()
        .map(|m| {
            let of: Vec<&Change> = changes.iter().filter(|c| c.model() == m).collect();
            let unloads = of
                .iter()
                .filter(|c| matches!(c, Change::Unload(_) | Change::Load { then_unload: true, .. }))
                .count();
            let loads = of.iter().filter(|c| matches!(c, Change::Load { .. })).count();
            let mut ctxs: Vec<String> = Vec::new();
            for c in &of {
                if let Change::Load { num_ctx, .. } = c {
                    let s = num_ctx.map_or("none (the server default)".to_string(), |n| n.to_string());
                    if !ctxs.contains(&s) {
                        ctxs.push(s);
                    }
                }
            }
            format!(
                "{m}: unloaded {unloads} time(s), loaded or reloaded up to {loads} time(s) (a request to a loaded model at the same num_ctx loads nothing), num_ctx sent: {}; keep_alives of seconds (and -1 until the next request)",
                ctxs.join(", ")
            )
        })
        .collect()
}

/// What a run is about to do to the loaded models, for stderr before the probes.
pub(super) fn preamble(
    target: &str,
    model: &str,
    embed: Option<&str>,
    before: &[super::http::Resident],
    guard: &super::evict::Guard,
) -> String {
    use crate::units::limits::printable;
    let mut out = format!(
        "kabench doctor on {}: it unloads and reloads models to probe them\n",
        printable(target)
    );
    let loaded: Vec<String> = before
        .iter()
        .map(|b| {
            format!(
                "{} (num_ctx {})",
                printable(&b.name),
                b.context_length.map_or("?".into(), |c| c.to_string())
            )
        })
        .collect();
    out += &format!(
        "  loaded now: {}\n",
        if loaded.is_empty() {
            "none".to_string()
        } else {
            loaded.join(", ")
        }
    );
    let opts = DoctorOptions {
        target: target.into(),
        model: (!guard.skip_model).then(|| model.to_string()),
        embed_model: embed.filter(|_| !guard.skip_embed).map(str::to_string),
        allow_evict: false,
        announce: false,
    };
    let plan: Vec<(String, Req)> = dry_run(&opts)
        .into_iter()
        .filter(|(_, r)| {
            change(r).is_some_and(|c| {
                (!guard.skip_model && crate::ollama::name::same_model(c.model(), model))
                    || opts.embed_model.as_deref() == Some(c.model())
            })
        })
        .collect();
    for line in changes_summary(&plan) {
        out += &format!("  {}\n", printable(&line));
    }
    if guard.skip_model || guard.skip_embed {
        let skipped: Vec<&str> = std::iter::once(model)
            .filter(|_| guard.skip_model)
            .chain(embed.filter(|_| guard.skip_embed))
            .collect();
        out += &format!(
            "  skipped: the checks that load {} (not loaded; beside {} they could evict one): --allow-evict runs them\n",
            printable(&skipped.join(", ")),
            printable(&guard.others.join(", "))
        );
    }
    out += "  at the end: models loaded now are loaded again as they were if the probes moved them, probe models that were not are unloaded; Ctrl-C stops the probes and restores (--dry-run lists every request)\n";
    out
}

pub(super) fn num_ctx_requests(model: &str, default_ctx: u64) -> [(String, Req); 2] {
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

pub(super) fn half_context(default_ctx: u64) -> u64 {
    (default_ctx / 2).max(256)
}

pub(super) fn with_keep_alive(mut body: Value, ka: &str) -> Value {
    body["keep_alive"] = json!(ka);
    body
}

pub(super) fn v1_chat(model: &str, keep_alive_s: u64) -> Req {
    Req::post(
        "/v1/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 1, "keep_alive": format!("{keep_alive_s}s")}),
    )
}

pub(super) fn v1_embeddings(model: &str, keep_alive_s: u64) -> Req {
    Req::post(
        "/v1/embeddings",
        json!({"model": model, "input": "hi", "keep_alive": format!("{keep_alive_s}s")}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_lists_every_form_on_both_text_endpoints_and_sends_nothing() {
        let plan = dry_run(&DoctorOptions {
            target: "http://127.0.0.1:9".into(),
            model: Some("m".into()),
            embed_model: None,
            allow_evict: false,
            announce: false,
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
