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
