//! The keep_alive probes per endpoint: every form on `/api/generate`, `/api/chat` and
//! `/api/embed` read back from `/api/ps` (KA1–KA5), and a cold `/v1` request asking
//! for a keep_alive other than the server's (H9).

use super::dry::{v1_chat, v1_embeddings};
use super::forms::{self, Effect, FORMS, Form, Native, Verdict};
use super::probe::{Doctor, row};

impl Doctor {
    /// Phase 3: every keep_alive form on one endpoint.
    pub(super) async fn forms(&mut self, endpoint: Native, model: &str) -> anyhow::Result<()> {
        let mut prior = match self.server.find(model).await? {
            Some(m) if m.forever(self.server.now()) => Some(Effect::Forever),
            Some(m) => Some(Effect::Seconds(
                (m.expires_at - self.server.now()).as_seconds_f64(),
            )),
            None => None,
        };
        for form in FORMS {
            let req = form.request(endpoint, model);
            let before = self.expiry_before(model).await?;
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
                let observed = self.observe(model, before, &reply).await?;
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
    pub(super) async fn v1(&mut self, model: &str, embeddings: bool) -> anyhow::Result<()> {
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
            // Not resident before (unloaded above): no expiry before.
            let observed = self.observe(model, None, &reply).await?;
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
}
