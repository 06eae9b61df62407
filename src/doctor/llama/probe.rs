//! The llama-server probes in order: warm requests, the wait for sleep (polling
//! `/props` and `/health`, which do not reset the timer), the wake, a long request
//! (does the timer count from its start or its end?), and `/metrics` and `/slots`
//! polled for longer than the timer (do they keep it awake?); each result a row.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::Check;
use super::super::http::{Reply, Req, Server};
use super::{LlamaOptions, long, proc, tiny};
use rows::monitor_row;

mod rows;

/// How often the wait for sleep reads `/props` (and `/health` after it).
const POLL: Duration = Duration::from_millis(100);
/// How often `/metrics` or `/slots` is polled: a dashboard's pace.
const MONITOR_EVERY: Duration = Duration::from_millis(500);
/// How long past the measured timer the monitoring poll goes on.
const MONITOR_PAST: f64 = 2.0;
/// The tokens of the request that measures the generation pace.
const PACE_TOKENS: u64 = 32;
/// The long request's target duration at the measured pace, seconds (a longer
/// context makes each token slower, so it comes out longer).
const LONG_S: f64 = 1.5;
/// The shortest long request that tells a timer counted from the start of a request
/// from one counted from its end (sleep comes N..N+1 s after), seconds.
const MIN_LONG_S: f64 = 1.5;
/// The most tokens the long request asks for.
const MAX_LONG_TOKENS: u64 = 1024;

/// What `/props` says.
#[derive(Debug, Clone)]
pub struct Props {
    /// `is_sleeping`.
    pub sleeping: bool,
    /// `build_info`.
    pub build: String,
    /// `model_alias`.
    pub alias: String,
    /// `default_generation_settings.n_ctx`.
    pub n_ctx: Option<u64>,
    /// `total_slots`.
    pub slots: Option<u64>,
    /// `endpoint_metrics`.
    pub metrics: Option<bool>,
    /// `endpoint_slots`.
    pub slots_enabled: Option<bool>,
}

/// What one wait for sleep saw.
struct Slept {
    /// Seconds from the end of the last request to the first `is_sleeping` true.
    after: f64,
    /// A `/props` after it, with `/health` polled between, showed it awake again.
    woke_while_polled: bool,
}

/// What polling one monitoring endpoint saw.
struct Monitored {
    status: u16,
    polls: usize,
    woke_on_first: bool,
    /// Seconds into the polling when `/props` first showed it asleep (after a poll).
    asleep_at: Option<f64>,
    window: f64,
    /// Seconds from the end of the polling to sleep.
    slept_after: Option<f64>,
}

/// The probe run: the server, the rows, and what was measured along the way.
pub struct Prober {
    server: Server,
    model: Option<String>,
    max_wait: Duration,
    /// The server's process, or why it is not known.
    pid: Result<u32, String>,
    pub(super) checks: Vec<Check>,
    awake_rss: Vec<u64>,
    asleep_rss: Vec<u64>,
    warm_s: Vec<f64>,
    per_token_ms: Option<f64>,
    health_polls: usize,
    props_polls: usize,
    sleeps_seen: usize,
    wakes_seen: usize,
    /// The sleep delays measured after the last request, seconds.
    timer: Vec<f64>,
}

impl Prober {
    /// A prober of `server`; the process from `--pid`, else from the listening socket
    /// when the target is on this machine.
    pub fn new(server: Server, opts: &LlamaOptions) -> Prober {
        let pid = match opts.pid {
            Some(p) if std::path::Path::new(&format!("/proc/{p}")).exists() => Ok(p),
            Some(p) => Err(format!("--pid {p}: no such process here")),
            None if server.is_local() => reqwest::Url::parse(&opts.target)
                .ok()
                .and_then(|u| u.port_or_known_default())
                .ok_or_else(|| format!("{}: no port", opts.target))
                .and_then(proc::pid_listening_on),
            None => {
                Err("the server is on another machine: its memory cannot be read from here".into())
            }
        };
        Prober {
            server,
            model: opts.model.clone(),
            max_wait: opts.max_wait,
            pid,
            checks: Vec::new(),
            awake_rss: Vec::new(),
            asleep_rss: Vec::new(),
            warm_s: Vec::new(),
            per_token_ms: None,
            health_polls: 0,
            props_polls: 0,
            sleeps_seen: 0,
            wakes_seen: 0,
            timer: Vec::new(),
        }
    }

    /// The process, in words.
    pub fn pid_text(&self) -> String {
        match &self.pid {
            Ok(p) => format!("pid {p} ({})", proc::comm(*p)),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// `GET /props`, read.
    pub async fn props(&mut self) -> anyhow::Result<Props> {
        self.props_polls += 1;
        let r = self.server.send(&Req::get("/props")).await?;
        let j = match (&r.json, r.status) {
            (Some(j), 200) if j.get("is_sleeping").is_some() => j,
            _ => anyhow::bail!(
                "GET /props answered HTTP {} without is_sleeping ({}): not a llama-server with --sleep-idle-seconds support (build b10488 or later)",
                r.status,
                crate::units::limits::excerpt(&r.text)
            ),
        };
        let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        Ok(Props {
            sleeping: j
                .get("is_sleeping")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            build: s("build_info"),
            alias: s("model_alias"),
            n_ctx: j
                .pointer("/default_generation_settings/n_ctx")
                .and_then(Value::as_u64),
            slots: j.get("total_slots").and_then(Value::as_u64),
            metrics: j.get("endpoint_metrics").and_then(Value::as_bool),
            slots_enabled: j.get("endpoint_slots").and_then(Value::as_bool),
        })
    }

    async fn sleeping(&mut self) -> anyhow::Result<bool> {
        Ok(self.props().await?.sleeping)
    }

    fn sample(&mut self, awake: bool) {
        if let Ok(pid) = self.pid
            && let Ok(b) = proc::rss_bytes(pid)
        {
            if awake {
                self.awake_rss.push(b);
            } else {
                self.asleep_rss.push(b);
            }
        }
    }

    /// Polls `/props` then `/health` every [`POLL`] until `/props` says asleep (at most
    /// `max_wait` after `from`), then three more of each to see they do not wake it.
    async fn wait_asleep(&mut self, from: Instant) -> anyhow::Result<Option<Slept>> {
        loop {
            if self.sleeping().await? {
                break;
            }
            self.health().await?;
            if from.elapsed() > self.max_wait {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
        let after = from.elapsed().as_secs_f64();
        self.sleeps_seen += 1;
        self.sample(false);
        let mut woke_while_polled = false;
        for _ in 0..3 {
            tokio::time::sleep(POLL).await;
            self.health().await?;
            woke_while_polled |= !self.sleeping().await?;
        }
        if !woke_while_polled {
            // What is freed can take a moment to leave the RSS: the lower reading counts.
            self.sample(false);
        }
        Ok(Some(Slept {
            after,
            woke_while_polled,
        }))
    }

    async fn health(&mut self) -> anyhow::Result<()> {
        self.health_polls += 1;
        self.server.send(&Req::get("/health")).await?;
        Ok(())
    }

    /// Every probe in order; rows are pushed as they are measured.
    pub async fn probe(&mut self, found: &Props) -> anyhow::Result<()> {
        let m = self.model.clone();
        let first = self.server.send_ok(&tiny(m.as_deref())).await?;
        let found_wake = found.sleeping.then_some(first.elapsed.as_secs_f64());
        if found.sleeping {
            self.wakes_seen += 1;
        }
        for _ in 0..3 {
            let r = self.server.send_ok(&tiny(m.as_deref())).await?;
            self.warm_s.push(r.elapsed.as_secs_f64());
        }
        // The pace of a longer generation, to size the long request below.
        let pace = self
            .server
            .send_ok(&long(m.as_deref(), PACE_TOKENS))
            .await?;
        self.per_token_ms = Some(pace.elapsed.as_secs_f64() * 1000.0 / PACE_TOKENS as f64);
        self.sample(true);
        let Some(short) = self.wait_asleep(Instant::now()).await? else {
            self.never_slept();
            return Ok(());
        };
        self.timer.push(short.after);
        // The wake.
        let before = self.sleeping().await?;
        let wake = self.server.send_ok(&tiny(m.as_deref())).await?;
        let after = self.sleeping().await?;
        if before && !after {
            self.wakes_seen += 1;
        }
        self.sample(true);
        let warm = self.server.send_ok(&tiny(m.as_deref())).await?;
        self.warm_s.push(warm.elapsed.as_secs_f64());
        self.checks
            .push(self.wake_row(&wake, before, after, found_wake));
        // The long request: the timer from its start or its end.
        let n_ctx = found.n_ctx.unwrap_or(2048);
        let cap = (n_ctx / 2).clamp(8, MAX_LONG_TOKENS);
        let mut n = long_tokens(self.per_token_ms, n_ctx);
        // Too short to tell (the pace grows with the context): twice the tokens, at
        // once, up to the cap; the timer then counts from the last one.
        let (r, took) = loop {
            let long_start = Instant::now();
            let r = self.server.send_ok(&long(m.as_deref(), n)).await?;
            let took = long_start.elapsed().as_secs_f64();
            if took >= MIN_LONG_S || n >= cap {
                break (r, took);
            }
            n = (n * 2).min(cap);
        };
        let tokens = r
            .json
            .as_ref()
            .and_then(|j| j.pointer("/timings/predicted_n"))
            .and_then(Value::as_u64);
        let slept = self.wait_asleep(Instant::now()).await?;
        self.checks.push(self.memory_row());
        self.checks.push(self.timer_row(&short, slept.as_ref()));
        self.checks
            .push(self.end_or_start_row(short.after, slept.as_ref(), took, n, tokens));
        self.checks.push(self.quiet_row(&short, slept.as_ref()));
        self.timer.extend(slept.as_ref().map(|s| s.after));
        let timer = self.timer.iter().copied().fold(short.after, f64::max);
        for (path, enabled) in [("/metrics", found.metrics), ("/slots", found.slots_enabled)] {
            let seen = self.monitor(path, timer).await?;
            self.checks.push(monitor_row(path, enabled, &seen));
        }
        Ok(())
    }

    /// Polls `path` every [`MONITOR_EVERY`] for the timer plus [`MONITOR_PAST`] s,
    /// reading `/props` after each; then stops and waits for sleep. Starts asleep.
    async fn monitor(&mut self, path: &'static str, timer: f64) -> anyhow::Result<Monitored> {
        let window = timer + MONITOR_PAST;
        let asleep_before = self.sleeping().await?;
        let start = Instant::now();
        let mut seen = Monitored {
            status: 0,
            polls: 0,
            woke_on_first: false,
            asleep_at: None,
            window,
            slept_after: None,
        };
        let mut prev = asleep_before;
        while start.elapsed().as_secs_f64() < window {
            let tick = Instant::now();
            let r = self.server.send(&Req::get(path)).await?;
            seen.status = r.status;
            seen.polls += 1;
            let asleep = self.sleeping().await?;
            if prev && !asleep {
                self.wakes_seen += 1;
                seen.woke_on_first |= seen.polls == 1;
            }
            if !prev && asleep {
                self.sleeps_seen += 1;
            }
            if asleep && seen.asleep_at.is_none() {
                seen.asleep_at = Some(start.elapsed().as_secs_f64());
            }
            prev = asleep;
            tokio::time::sleep(MONITOR_EVERY.saturating_sub(tick.elapsed())).await;
        }
        if !prev {
            seen.slept_after = self.wait_asleep(Instant::now()).await?.map(|s| s.after);
        }
        Ok(seen)
    }

    /// Puts the server back awake when it was found awake (found asleep, the run ends
    /// with it asleep).
    pub async fn restore(&mut self, found_asleep: bool) -> Vec<String> {
        let now_asleep = match self.sleeping().await {
            Ok(s) => s,
            Err(e) => return vec![format!("could not read /props to restore: {e:#}")],
        };
        match (found_asleep, now_asleep) {
            (true, true) => vec!["found asleep, left asleep".into()],
            (false, false) => vec!["found awake, left awake".into()],
            (true, false) => {
                vec!["found asleep, left awake: it falls asleep again after its timer".into()]
            }
            (false, true) => {
                let m = self.model.clone();
                match self.server.send_ok(&tiny(m.as_deref())).await {
                    Ok(_) => {
                        self.wakes_seen += 1;
                        vec!["found awake: one request woke it again (its model reloaded)".into()]
                    }
                    Err(e) => vec![format!(
                        "found awake, left asleep: the waking request failed: {e:#}"
                    )],
                }
            }
        }
    }
}

/// A field of the reply's `timings`, milliseconds.
fn timing(r: &Reply, key: &str) -> Option<f64> {
    r.json.as_ref()?.get("timings")?.get(key)?.as_f64()
}

/// Tokens for a request of about [`LONG_S`] at the measured pace: 32 to 1024, and at
/// most half the context.
fn long_tokens(per_token_ms: Option<f64>, n_ctx: u64) -> u64 {
    let pace = per_token_ms
        .filter(|p| p.is_finite() && *p > 0.0)
        .unwrap_or(10.0);
    let n = (LONG_S * 1000.0 / pace).ceil() as u64;
    n.clamp(32, MAX_LONG_TOKENS).min((n_ctx / 2).max(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_request_is_sized_to_the_pace_and_the_context() {
        assert_eq!(long_tokens(Some(10.0), 4096), 150);
        assert_eq!(long_tokens(Some(0.5), 4096), 1024);
        assert_eq!(long_tokens(Some(500.0), 4096), 32);
        assert_eq!(long_tokens(None, 4096), 150);
        assert_eq!(long_tokens(Some(f64::NAN), 100), 50);
    }
}
