//! The rows of the llama-server probes: each measurement of [`Prober`] turned into a
//! [`Check`] with its verdict, evidence and value.

use serde_json::json;

use super::super::super::Check;
use super::super::super::forms::Verdict;
use super::super::super::http::Reply;
use super::super::super::probe::row;
use super::super::ms;
use super::{MIN_LONG_S, MONITOR_EVERY, Monitored, POLL, Prober, Slept, timing};

impl Prober {
    /// The rows when the server never fell asleep.
    pub(super) fn never_slept(&mut self) {
        self.checks.push(self.memory_row());
        let wait = self.max_wait.as_secs();
        self.checks.push(Check {
            value: Some(json!({"seconds_after_end": null, "max_wait_s": wait})),
            holds: true,
            ..row(
                "sleep.timer",
                "/props",
                "sleep timer (--sleep-idle-seconds), from the end of the last request",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!("not asleep {wait} s after the last request (is_sleeping stayed false): sleep is off (--sleep-idle-seconds -1, the default), longer than --max-wait, or another client keeps it awake; nothing else can be measured"),
                "start llama-server with --sleep-idle-seconds N to free the model when idle, or give a longer --max-wait",
                "",
            )
        });
    }

    pub(super) fn wake_row(
        &self,
        wake: &Reply,
        before: bool,
        after: bool,
        found: Option<f64>,
    ) -> Check {
        let warm = median(&self.warm_s);
        let wake_s = wake.elapsed.as_secs_f64();
        let task_ms = timing(wake, "prompt_ms")
            .zip(timing(wake, "predicted_ms"))
            .map(|(a, b)| a + b);
        let outside = task_ms.map(|t| wake_s * 1000.0 - t);
        let found_text = found.map_or(String::new(), |f| {
            format!(
                "; the first request of the run, found asleep, took {:.0} ms",
                f * 1000.0
            )
        });
        let evidence = format!(
            "first request after sleep {:.0} ms against {:.0} ms warm (median of {}): waking costs {:.0} ms; /props is_sleeping {before} just before, {after} just after; {}{}",
            wake_s * 1000.0,
            warm * 1000.0,
            self.warm_s.len(),
            (wake_s - warm) * 1000.0,
            match (task_ms, outside) {
                (Some(t), Some(o)) => format!(
                    "the reply's own timings (prompt + generation) are {t:.0} ms, so {o:.0} ms went outside the task: the model's reload"
                ),
                _ => "the reply has no timings".into(),
            },
            found_text,
        );
        Check {
            value: Some(json!({
                "wake_s": ms(wake_s), "warm_s": ms(warm), "extra_s": ms(wake_s - warm),
                "task_ms": task_ms, "asleep_before": before, "asleep_after": after,
                "first_of_run_s": found.map(ms),
            })),
            holds: before && !after,
            ..row(
                "wake.cost",
                "/completion",
                "the first request after sleep against warm ones",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                if before && !after {
                    evidence
                } else {
                    format!(
                        "{evidence}; the server was not asleep before this request, or still asleep after it: not a wake (another client?)"
                    )
                },
                "",
                "",
            )
        }
    }

    pub(super) fn memory_row(&self) -> Check {
        let awake = self.awake_rss.iter().copied().max();
        let asleep = self.asleep_rss.iter().copied().min();
        let mb = |b: u64| b as f64 / 1e6;
        let (evidence, value, holds) = match (&self.pid, awake, asleep) {
            (Ok(pid), Some(a), Some(s)) => (
                format!(
                    "process RSS {:.1} MB awake, {:.1} MB asleep (pid {pid}, VmRSS): sleep frees {:.1} MB ({:.0} %)",
                    mb(a),
                    mb(s),
                    mb(a.saturating_sub(s)),
                    100.0 * a.saturating_sub(s) as f64 / a.max(1) as f64
                ),
                json!({"pid": pid, "awake_bytes": a, "asleep_bytes": s, "freed_bytes": a.saturating_sub(s)}),
                true,
            ),
            (Err(e), _, _) => (
                format!("unavailable: the server's process is not known ({e})"),
                json!({"pid": null, "awake_bytes": null, "asleep_bytes": null, "freed_bytes": null}),
                true,
            ),
            (Ok(pid), _, None) if self.sleeps_seen == 0 => (
                format!(
                    "unavailable: it never fell asleep, so there is no asleep reading (pid {pid})"
                ),
                json!({"pid": pid, "awake_bytes": awake, "asleep_bytes": null, "freed_bytes": null}),
                true,
            ),
            (Ok(pid), _, _) => (
                format!("unavailable: /proc/{pid}/status could not be read awake and asleep"),
                json!({"pid": pid, "awake_bytes": awake, "asleep_bytes": asleep, "freed_bytes": null}),
                true,
            ),
        };
        Check {
            value: Some(value),
            holds,
            ..row(
                "memory.freed",
                "server",
                "the memory sleep frees (process RSS awake against asleep)",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                evidence,
                "",
                "",
            )
        }
    }

    pub(super) fn timer_row(&self, short: &Slept, long: Option<&Slept>) -> Check {
        let mut delays = vec![short.after];
        delays.extend(long.map(|l| l.after));
        let lo = delays.iter().copied().fold(f64::INFINITY, f64::min);
        // Sleep comes N..N+1 s after the last task (checked once a second), never
        // before N, and the poll sees it up to POLL later: N is at most the whole
        // seconds of the shortest delay, and at least that less 1 s and a poll.
        let n = lo.floor();
        let n_min = (lo - 1.0 - POLL.as_secs_f64()).max(0.0).ceil().min(n);
        Check {
            value: Some(json!({
                "seconds_after_end": delays.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
                "idle_seconds": n, "idle_seconds_min": n_min, "props_states_timer": false,
            })),
            ..row(
                "sleep.timer",
                "/props",
                "sleep timer (--sleep-idle-seconds), from the end of the last request",
                Verdict::NotApplicable,
                Verdict::NotApplicable,
                format!(
                    "/props states no timer (is_sleeping only); asleep {} s after the end of the last request (polled /props every {:.1} s): --sleep-idle-seconds {} (sleep comes N to N+1 s after the last task)",
                    delays
                        .iter()
                        .map(|d| format!("{d:.2}"))
                        .collect::<Vec<_>>()
                        .join(" and "),
                    POLL.as_secs_f64(),
                    if n_min < n {
                        format!("{n} (or {n_min})")
                    } else {
                        format!("{n}")
                    },
                ),
                "",
                "",
            )
        }
    }

    pub(super) fn end_or_start_row(
        &self,
        short: f64,
        long: Option<&Slept>,
        took: f64,
        asked: u64,
        tokens: Option<u64>,
    ) -> Check {
        let check = "the sleep timer counts from the end of a request (not its start)";
        let Some(l) = long else {
            return row(
                "sleep.from_end",
                "/completion",
                check,
                Verdict::NotApplicable,
                Verdict::Yes,
                "not asleep within --max-wait after the long request".into(),
                "",
                "",
            );
        };
        let from_end = l.after;
        let from_start = l.after + took;
        let tokens = tokens.map_or("?".into(), |t| t.to_string());
        let (verdict, evidence) = if took < MIN_LONG_S {
            (
                Verdict::NotApplicable,
                format!(
                    "the long request ({tokens} tokens) took only {took:.2} s: too short to tell (sleep comes within a second of its time)"
                ),
            )
        } else if (from_end - short).abs() < (from_start - short).abs() {
            (
                Verdict::Yes,
                format!(
                    "a request of {took:.2} s ({tokens} of {asked} tokens): asleep {from_end:.2} s after its end ({from_start:.2} s after its start), as {short:.2} s after a short one: the timer starts when a request ends"
                ),
            )
        } else {
            (
                Verdict::No,
                format!(
                    "a request of {took:.2} s ({tokens} of {asked} tokens): asleep {from_start:.2} s after its start ({from_end:.2} s after its end), as {short:.2} s after a short one: the timer starts when a request starts, so a long request can be followed by sleep at once"
                ),
            )
        };
        Check {
            value: Some(
                json!({"request_s": ms(took), "after_end_s": ms(from_end), "after_start_s": ms(from_start), "after_short_s": ms(short)}),
            ),
            holds: verdict == Verdict::Yes || verdict == Verdict::NotApplicable,
            ..row(
                "sleep.from_end",
                "/completion",
                check,
                verdict,
                Verdict::Yes,
                evidence,
                "",
                "",
            )
        }
    }

    pub(super) fn quiet_row(&self, short: &Slept, long: Option<&Slept>) -> Check {
        let woke = short.woke_while_polled || long.is_some_and(|l| l.woke_while_polled);
        let verdict = if woke { Verdict::Yes } else { Verdict::No };
        Check {
            value: Some(
                json!({"health_polls": self.health_polls, "props_polls": self.props_polls, "woke_while_asleep": woke}),
            ),
            ..row(
                "poll.health_props",
                "/health, /props",
                &format!(
                    "polling GET /health and GET /props every {:.1} s keeps it awake",
                    POLL.as_secs_f64()
                ),
                verdict,
                Verdict::No,
                if woke {
                    "a /props read after /health showed it awake again while nothing else was sent by this run: /health or /props woke it (or another client did)".into()
                } else {
                    format!(
                        "polled {} times (/health) and {} times (/props) while waiting: it fell asleep all the same, and stayed asleep while they were polled after",
                        self.health_polls, self.props_polls
                    )
                },
                "",
                "",
            )
        }
    }

    /// A last row: the sleeps and wakes this run saw (`/props`), to set beside the
    /// server's log ("entering sleeping state", "exiting sleeping state").
    pub fn push_counts(&mut self) {
        self.checks.push(super::super::super::probe::info(
            "sleep.count",
            "sleeps and wakes this run caused",
            format!(
                "/props showed {} fall(s) asleep and {} wake(s) caused by this run's requests; the server's log has one \"entering sleeping state\" and one \"exiting sleeping state\" line each",
                self.sleeps_seen, self.wakes_seen
            ),
            "",
            "",
            json!({"sleeps": self.sleeps_seen, "wakes": self.wakes_seen}),
        ));
    }
}

/// The row of one monitoring endpoint.
pub(super) fn monitor_row(path: &str, enabled: Option<bool>, s: &Monitored) -> Check {
    let kept = s.asleep_at.is_none();
    let measured = if kept { Verdict::Yes } else { Verdict::No };
    let disabled = enabled == Some(false) || s.status == 501;
    let verdict = if disabled {
        Verdict::Disabled
    } else {
        measured
    };
    let flag = if path == "/metrics" {
        "--metrics"
    } else {
        "--slots"
    };
    let mut evidence = format!(
        "GET {path} (HTTP {}) every {:.1} s, {} times over {:.1} s (longer than the timer): {}; {}",
        s.status,
        MONITOR_EVERY.as_secs_f64(),
        s.polls,
        s.window,
        if s.woke_on_first {
            "the first poll woke it from sleep (a reload)"
        } else {
            "it was not asleep at the first poll"
        },
        match (s.asleep_at, s.slept_after) {
            (Some(t), _) => format!("it was asleep {t:.1} s into the polling all the same"),
            (None, Some(a)) =>
                format!("it stayed awake, and fell asleep {a:.1} s after the polling stopped"),
            (None, None) =>
                "it stayed awake, and was still awake --max-wait after the polling stopped".into(),
        }
    );
    if disabled {
        evidence = format!(
            "{path} is disabled (HTTP 501; start llama-server with {flag} to enable it), yet polling it {} keep it awake: {evidence}",
            if kept { "does" } else { "does not" }
        );
    }
    Check {
        value: Some(
            json!({"status": s.status, "polls": s.polls, "keeps_awake": kept, "wakes_from_sleep": s.woke_on_first, "asleep_after_s": s.asleep_at.map(ms), "slept_after_stop_s": s.slept_after.map(ms)}),
        ),
        holds: verdict == Verdict::Yes || verdict == Verdict::Disabled,
        ..row(
            &format!("poll.{}", path.trim_start_matches('/')),
            path,
            &format!(
                "polling GET {path} every {:.1} s keeps it awake",
                MONITOR_EVERY.as_secs_f64()
            ),
            verdict,
            Verdict::Yes,
            evidence,
            if kept {
                "a monitor that polls this endpoint keeps the model loaded: poll /health or /props (is_sleeping) instead, or poll less often than the timer"
            } else {
                ""
            },
            "llama-server",
        )
    }
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: u16, asleep_at: Option<f64>) -> Monitored {
        Monitored {
            status,
            polls: 9,
            woke_on_first: true,
            asleep_at,
            window: 4.0,
            slept_after: asleep_at.is_none().then_some(1.5),
        }
    }

    #[test]
    fn a_poll_that_keeps_it_awake_is_yes_and_a_disabled_endpoint_says_so() {
        let kept = monitor_row("/metrics", Some(true), &seen(200, None));
        assert_eq!((kept.verdict, kept.holds), (Verdict::Yes, true));
        assert_eq!(kept.id, "poll.metrics");
        let not = monitor_row("/slots", Some(true), &seen(200, Some(2.5)));
        assert_eq!((not.verdict, not.holds), (Verdict::No, false));
        assert!(not.evidence.contains("asleep 2.5 s into the polling"));
        // Without --metrics: 501, the verdict says disabled, the evidence what it did.
        let off = monitor_row("/metrics", Some(false), &seen(501, None));
        assert_eq!((off.verdict, off.holds), (Verdict::Disabled, true));
        assert!(off.evidence.contains("start llama-server with --metrics"));
        assert!(off.evidence.contains("does keep it awake"));
        assert_eq!(off.value.unwrap()["keeps_awake"], true);
    }
}
