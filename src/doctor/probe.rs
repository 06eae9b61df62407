//! The server-wide probes of a doctor run: the effective `OLLAMA_KEEP_ALIVE` and
//! default context from a cold load without either (KA5, L7), reloads on a `num_ctx`
//! change and the resident size at two contexts (L5, L6, E1, L8), and the cold-load
//! rows (M4); with the run's state (`Doctor`) and the row builders every probe uses.

use std::time::Duration;

use serde_json::{Value, json};

use super::Check;
use super::dry::{half_context, num_ctx_requests, with_keep_alive};
use super::forms::{Effect, Native, Verdict};
use super::http::{Reply, Req, Resident, Server};
use super::show::Shown;

/// A load_duration at least this long is a load, not a warm hand-over (M6).
pub(super) const LOAD_S: f64 = 0.1;
/// How long a read-back waits for the server to set a new expiry after a reply.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a model with no time left is waited for to leave `/api/ps`.
const UNLOAD_WAIT: Duration = Duration::from_secs(10);

/// The probe run: the server, the rows so far, and what it measured along the way.
pub(super) struct Doctor {
    pub(super) server: Server,
    pub(super) checks: Vec<Check>,
    /// The model's keep-alive with no request asking (OLLAMA_KEEP_ALIVE).
    pub(super) default_ka: Option<Effect>,
    /// load_duration of each load seen, seconds, first first.
    pub(super) loads: Vec<f64>,
    /// The fraction of the model file in the page cache just before the first load
    /// (`mincore`); `None` when it could not be checked here.
    pub(super) cached_before: Option<f64>,
    /// `--allow-evict`: an eviction does not stop the probes.
    pub(super) allow_evict: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn row(
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
pub(super) fn info(
    id: &str,
    check: &str,
    evidence: String,
    fix: &str,
    rule: &str,
    value: Value,
) -> Check {
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
    /// The expiry `/api/ps` shows for `model` now (`None`: not resident), read just
    /// before a request whose effect [`Doctor::observe`] reads: until the server has
    /// processed that request's end, `/api/ps` still shows this one (P4).
    pub(super) async fn expiry_before(
        &mut self,
        model: &str,
    ) -> anyhow::Result<Option<time::OffsetDateTime>> {
        Ok(self.server.find(model).await?.map(|m| m.expires_at))
    }

    /// The model's keep-alive as `/api/ps` shows it after a reply that ended at `end`.
    /// The server sets the new expiry when it has processed the request's end, which
    /// can come a moment after the reply (seconds on a busy host): while `/api/ps` still
    /// shows the expiry it showed just before the request was sent (`before`, from
    /// [`Doctor::expiry_before`]), or one already past at the reply's end, it is read
    /// again (every 50 ms, up to [`SETTLE`]), and the keep-alive is timed from the last
    /// read that still showed the old one, not from the reply's end, so a server that is
    /// slow to set it does not read as a longer keep-alive, nor an expiry set by an
    /// earlier request as this one's. A model leaving at once is waited for up to
    /// [`UNLOAD_WAIT`].
    pub(super) async fn observe(
        &mut self,
        model: &str,
        before: Option<time::OffsetDateTime>,
        reply: &Reply,
    ) -> anyhow::Result<Effect> {
        let stale = |m: &Resident| Some(m.expires_at) == before || m.expires_at < reply.end;
        let deadline = std::time::Instant::now() + SETTLE;
        // The new expiry was set after this, in server time.
        let mut set_after = reply.end;
        let mut asked_at = self.server.now();
        let mut found = self.server.find(model).await?;
        while found.as_ref().is_some_and(stale) && std::time::Instant::now() < deadline {
            set_after = set_after.max(asked_at);
            tokio::time::sleep(Duration::from_millis(50)).await;
            asked_at = self.server.now();
            found = self.server.find(model).await?;
        }
        let Some(m) = found else {
            return Ok(Effect::Unload);
        };
        if m.forever(reply.end) {
            return Ok(Effect::Forever);
        }
        let left = (m.expires_at - set_after).as_seconds_f64();
        if left < 0.5 && self.server.wait_gone(model, UNLOAD_WAIT).await? {
            return Ok(Effect::Unload);
        }
        Ok(Effect::Seconds(left))
    }

    pub(super) fn note_load(&mut self, reply: &Reply) {
        if let Some(s) = reply.load_seconds().filter(|s| *s >= LOAD_S) {
            self.loads.push(s);
        }
    }

    /// Phase 1: a cold load without keep_alive or num_ctx.
    pub(super) async fn server_default(
        &mut self,
        model: &str,
        shown: &Shown,
    ) -> anyhow::Result<Resident> {
        self.server.unload(model).await?;
        if self.server.is_local() {
            self.cached_before = shown
                .blob
                .as_deref()
                .and_then(super::pagecache::cached_fraction);
        }
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
        // Unloaded above (`unload` waits until it left /api/ps): no expiry before.
        let effect = self.observe(model, None, &reply).await?;
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
            size_vram: 0,
        }))
    }

    /// Phase 2: num_ctx half the default, then none again; the resident sizes.
    pub(super) async fn num_ctx(
        &mut self,
        model: &str,
        base: &Resident,
        shown: &Shown,
    ) -> anyhow::Result<()> {
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

    /// The cold-load rows: first load against later ones.
    pub(super) fn page_cache(&mut self, was_resident: bool) {
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
        let later_text = match median {
            Some(m) => format!(", later loads {m:.2} s (median of {})", later.len()),
            None => String::new(),
        };
        let cached = self.cached_before.filter(|_| !was_resident);
        let evidence = match cached {
            Some(c) if c < 0.5 => format!(
                "first load {first:.2} s from disk (mincore: {:.0}% of the model file was in the page cache before it){later_text}",
                c * 100.0
            ),
            Some(c) => format!(
                "first load {first:.2} s with the model file already in the page cache (mincore: {:.0}% of it before the load){later_text}: a load from a cold disk shows only after the OS drops the file from the cache",
                c * 100.0
            ),
            None => format!(
                "first load {first:.2} s{later_text}; whether it came from disk was not checked (the model file is not readable on this machine: a remote server, or not Linux)"
            ),
        };
        self.checks.push(info(
            id,
            check,
            evidence,
            "a cold start costs this on every expiry; from a cold disk (boot, a container start, memory pressure) it costs more",
            "M4",
            json!({"first_s": first, "later_median_s": median, "file_cached_before": cached}),
        ));
    }
}

#[cfg(test)]
mod tests;
