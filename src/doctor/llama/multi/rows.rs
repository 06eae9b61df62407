//! The rows of the many-model probes: each measurement of [`Prober`] turned into a
//! [`Check`] with its verdict, evidence and value.

use serde_json::{Value, json};

use super::super::super::Check;
use super::super::super::forms::Verdict;
use super::super::super::http::Reply;
use super::super::super::probe::row;
use super::super::ms;
use super::probe::{POLL, Prober};
use crate::llama::{ModelResidency, ServerKind};

/// The middle of `v` (NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// An info row: holds, no verdict.
fn info(id: &str, endpoint: &str, check: &str, evidence: String, fix: &str, value: Value) -> Check {
    Check {
        value: Some(value),
        ..row(
            id,
            endpoint,
            check,
            Verdict::NotApplicable,
            Verdict::NotApplicable,
            evidence,
            fix,
            "",
        )
    }
}

/// How the stated idle timer is named on `kind`.
fn timer_name(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::LlamaSwap => "ttl",
        _ => "sleep-idle-seconds",
    }
}

/// A stated timer that unloads or sleeps (the router's -1 and llama-swap's 0 are off).
pub(super) fn active(stated: Option<i64>) -> Option<i64> {
    stated.filter(|&n| n > 0)
}

/// Bytes in MB, one decimal.
fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

impl Prober {
    /// The first row: the server and its models as found.
    pub(super) fn server_row(&self, version: &str, listed: &[String]) -> Check {
        let found = self.found();
        let cap = match self.stated_cap {
            Some(n) => format!("; /props states max_instances {n} (--models-max)"),
            None => String::new(),
        };
        info(
            "server.info",
            self.kind.residency_path(),
            "what the server says of itself and its models",
            format!(
                "{} {version}; {} model(s) listed ({}); running: {}; probed: {}{cap}",
                self.kind,
                listed.len(),
                listed.join(", "),
                found.describe(),
                self.model(),
            ),
            "",
            json!({
                "kind": self.kind.as_str(), "version": version, "models": listed,
                "running": found.with_process(), "model": self.model(),
                "stated_max_instances": self.stated_cap,
            }),
        )
    }

    /// The probes were skipped: a load may evict a model found running.
    pub(super) fn skipped_row(&self, others: &[String]) -> Check {
        Check {
            holds: true,
            ..row(
                "probe.skipped",
                self.kind.residency_path(),
                "the load, idle-timer and polling probes",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!(
                    "skipped: {} is not running and {} is: loading it may evict one (the router's --models-max, llama-swap's one model at a time); nothing was changed",
                    self.model(),
                    others.join(", ")
                ),
                "give --allow-evict (what is evicted is loaded again at the end), or probe a model that runs, or run it when no other model runs",
                "",
            )
        }
    }

    /// The first request to a model not in memory against warm ones.
    pub(super) fn cold_row(
        &self,
        cold: &Reply,
        before: ModelResidency,
        after: ModelResidency,
    ) -> Check {
        let warm = median(&self.warm_s);
        let cold_s = cold.elapsed.as_secs_f64();
        let how = if before == ModelResidency::Sleeping {
            "a wake (found sleeping)"
        } else if self.unloaded_first {
            "a cold load (found loaded: unloaded first, loaded again at the end)"
        } else {
            "a cold load"
        };
        let path = self.kind.residency_path();
        Check {
            value: Some(json!({
                "cold_s": ms(cold_s), "warm_s": ms(warm), "extra_s": ms(cold_s - warm),
                "state_before": before.as_str(), "state_after": after.as_str(),
                "unloaded_first": self.unloaded_first, "evicted": self.evicted_by_cold,
            })),
            holds: before != ModelResidency::Loaded && after == ModelResidency::Loaded,
            ..row(
                "load.cold",
                "/v1/completions",
                "the first request to a model not in memory against warm ones",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!(
                    "{how}: {:.0} ms against {:.0} ms warm (median of {}): {:.0} ms more; GET {path} showed {} just before, {} just after{}",
                    cold_s * 1000.0,
                    warm * 1000.0,
                    self.warm_s.len(),
                    (cold_s - warm) * 1000.0,
                    before.as_str(),
                    after.as_str(),
                    if self.evicted_by_cold.is_empty() {
                        String::new()
                    } else {
                        format!("; the load evicted {}", self.evicted_by_cold.join(", "))
                    },
                ),
                "",
                "",
            )
        }
    }

    /// The delay from the end of the last request to the model leaving memory.
    pub(super) fn timer_row(
        &self,
        stated: Option<i64>,
        left: Option<(f64, ModelResidency)>,
    ) -> Check {
        let name = timer_name(self.kind);
        let wait = self.max_wait.as_secs_f64();
        let swap = self.kind == ServerKind::LlamaSwap;
        let (id, what) = if swap {
            ("ttl.timer", "unloaded (gone from /running)")
        } else {
            ("sleep.timer", "asleep")
        };
        let stated_text = match stated {
            Some(n) => format!("{name} {n} stated by the server"),
            None => format!("the server states no {name} for it (its child's args in GET /models)"),
        };
        let (holds, evidence) = match (active(stated), left) {
            (Some(n), Some((t, st))) => {
                let n = n as f64;
                let ok = t >= n - 0.25 && t <= n + 2.0;
                (
                    ok,
                    format!(
                        "{} {t:.2} s after the end of the last request (now {}); {stated_text}: the server checks once a second, so {n:.0}..{:.0} s is expected{}",
                        what,
                        st.as_str(),
                        n + 1.0,
                        if ok { "" } else { ": it is not" }
                    ),
                )
            }
            (Some(n), None) => (
                n as f64 >= wait,
                format!(
                    "not {what} {wait:.0} s after the last request; {stated_text}{}",
                    if n as f64 >= wait {
                        ": longer than --max-wait"
                    } else {
                        ": something keeps it in memory (another client's requests?)"
                    }
                ),
            ),
            (None, None) => (
                true,
                format!(
                    "{stated_text}{}: it is never {what} for idleness, only when evicted or unloaded (not waited for)",
                    if stated.is_some() { " (off)" } else { "" }
                ),
            ),
            (None, Some((t, st))) => (
                swap || st != ModelResidency::Sleeping,
                format!(
                    "left memory {t:.2} s after the last request (now {}) though {stated_text}: unloaded by another client, evicted, or the timer is set elsewhere",
                    st.as_str()
                ),
            ),
        };
        Check {
            value: Some(json!({
                "seconds_after_end": left.map(|(t, _)| ms(t)),
                "state_after": left.map(|(_, s)| s.as_str()),
                "stated_s": stated, "max_wait_s": wait,
            })),
            holds,
            ..row(
                id,
                self.kind.residency_path(),
                &format!("idle timer ({name}), from the end of the last request"),
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                evidence,
                if active(stated).is_none() {
                    if swap {
                        "set ttl: N on the model (or globalTTL) to unload it when idle"
                    } else {
                        "set sleep-idle-seconds = N in the model's preset section to free it when idle"
                    }
                } else {
                    ""
                },
                "",
            )
        }
    }

    /// Whether polling the status endpoint kept the model in memory (measured: the
    /// wait for it to leave polled every [`POLL`]).
    pub(super) fn polling_row(
        &self,
        stated: Option<i64>,
        left: Option<(f64, ModelResidency)>,
    ) -> Check {
        let path = self.kind.residency_path();
        let every = POLL.as_secs_f64();
        let (verdict, holds, evidence) = match (left, active(stated)) {
            (Some((t, st)), _) => (
                Verdict::No,
                true,
                format!(
                    "GET {path} was read every {every} s from the end of the last request and the model still left memory ({}) at {t:.2} s: polling it does not keep a model in memory",
                    st.as_str()
                ),
            ),
            (None, Some(n)) if (n as f64) < self.max_wait.as_secs_f64() => (
                Verdict::Yes,
                false,
                format!(
                    "GET {path} was read every {every} s and the model stayed loaded for {:.0} s though its timer is {n} s: the polling (or another client) keeps it in memory",
                    self.max_wait.as_secs_f64()
                ),
            ),
            _ => (
                Verdict::NotApplicable,
                true,
                "the model did not leave memory (no timer, or not within the wait): whether polling keeps it there cannot be told".into(),
            ),
        };
        Check {
            value: Some(json!({"polls": self.polls, "every_s": every})),
            holds,
            ..row(
                "poll.keeps_loaded",
                path,
                &format!("polling GET {path} keeps the model in memory"),
                verdict,
                Verdict::No,
                evidence,
                "",
                "",
            )
        }
    }

    /// The first request after sleep against warm ones (router).
    pub(super) fn wake_row(
        &self,
        wake: &Reply,
        before: ModelResidency,
        after: ModelResidency,
    ) -> Check {
        let warm = median(&self.warm_s);
        let s = wake.elapsed.as_secs_f64();
        Check {
            value: Some(json!({
                "wake_s": ms(s), "warm_s": ms(warm), "extra_s": ms(s - warm),
                "state_before": before.as_str(), "state_after": after.as_str(),
            })),
            holds: before == ModelResidency::Sleeping && after == ModelResidency::Loaded,
            ..row(
                "wake.cost",
                "/v1/completions",
                "the first request after sleep against warm ones",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!(
                    "first request after sleep {:.0} ms against {:.0} ms warm (median of {}): waking costs {:.0} ms; GET /models showed {} just before, {} just after",
                    s * 1000.0,
                    warm * 1000.0,
                    self.warm_s.len(),
                    (s - warm) * 1000.0,
                    before.as_str(),
                    after.as_str()
                ),
                "",
                "",
            )
        }
    }

    /// The memory of the model's process, loaded and (router) asleep.
    pub(super) fn memory_row(&self) -> Check {
        let text = |r: &Option<Result<(u32, u64), String>>| match r {
            Some(Ok((pid, b))) => format!("{} (pid {pid})", mb(*b)),
            Some(Err(e)) => format!("unavailable ({e})"),
            None => "not measured (the model did not sleep)".into(),
        };
        let bytes = |r: &Option<Result<(u32, u64), String>>| match r {
            Some(Ok((_, b))) => json!(b),
            _ => Value::Null,
        };
        let proc_name = if self.kind == ServerKind::LlamaSwap {
            "upstream llama-server"
        } else {
            "child llama-server"
        };
        let mut evidence = format!(
            "the model's {proc_name} RSS loaded: {}",
            text(&self.rss_loaded)
        );
        if self.kind != ServerKind::LlamaSwap {
            evidence.push_str(&format!("; asleep: {}", text(&self.rss_idle)));
            if let (Some(Ok((_, a))), Some(Ok((_, s)))) = (&self.rss_loaded, &self.rss_idle) {
                evidence.push_str(&format!(
                    "; sleep frees {} (the process stays)",
                    mb(a.saturating_sub(*s))
                ));
            }
        } else {
            evidence.push_str("; after the ttl the process exits and frees it all");
        }
        info(
            "memory.process",
            "server",
            "the model process's resident memory",
            evidence,
            "",
            json!({"loaded_bytes": bytes(&self.rss_loaded), "asleep_bytes": bytes(&self.rss_idle)}),
        )
    }

    /// The rows pushed after the probes, whatever ended them: the router's cap.
    pub fn finish_rows(&mut self) {
        if self.kind == ServerKind::LlamaSwap {
            return;
        }
        let stated = self.stated_cap;
        let first = self.evictions.first();
        let (cap, exact, evidence) = match first {
            Some(e) => (
                e.running_before,
                true,
                format!(
                    "an eviction was seen: {} lost its process when a model was loaded beside {} running: --models-max is {}",
                    e.victim, e.running_before, e.running_before
                ),
            ),
            None => (
                self.most_at_once,
                false,
                format!(
                    "no eviction seen; at most {} model(s) ran at once: --models-max is at least {}{}",
                    self.most_at_once,
                    self.most_at_once,
                    if self.allow_evict {
                        if self.evict_probe_ran {
                            ""
                        } else {
                            " (every model listed already ran: no second model to load)"
                        }
                    } else {
                        " (give --allow-evict to load a second model and see an eviction)"
                    }
                ),
            ),
        };
        let stated_text = match stated {
            Some(n) => format!("; /props states max_instances {n}"),
            None => String::new(),
        };
        let holds = !exact || stated.is_none_or(|n| n == 0 || n as usize == cap);
        self.checks.push(Check {
            value: Some(json!({
                "cap": cap, "exact": exact, "most_at_once": self.most_at_once,
                "stated_max_instances": stated,
                "evictions": self.evictions.iter().map(|e| json!({"victim": e.victim, "running_before": e.running_before})).collect::<Vec<_>>(),
            })),
            holds,
            ..row(
                "cap.models_max",
                "/models",
                "--models-max: how many models run at once before the LRU one is evicted",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!("{evidence}{stated_text}"),
                "",
                "",
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_reading() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
        assert_eq!(active(Some(-1)), None);
        assert_eq!(active(Some(0)), None);
        assert_eq!(active(Some(3)), Some(3));
    }
}
