//! One policy replayed through `sched` on a virtual clock: requests are submitted at
//! their arrival, dispatched when the scheduler says, and end after the host model's
//! prefill and decode time, exactly as the simulator times them (`sim::generate`);
//! timers fire in time order between them. Counts cold starts (the live path's rule:
//! the request waited for a load, or its `load_duration` reached the cold threshold),
//! TTFT and end-to-end latency, and integrates the memory each model holds, in total
//! and while no request of that model is in flight.
//! This file is the event loop; `policy` names the policies and what they may look ahead at,
//! `outcome` what a replay counts, `leave` what the optimum and the pre-load bound do after
//! a model's last request in flight, `events` what the scheduler's events do to the figures.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use crate::analysis::MsHistogram;
use crate::engine::catalogue::ModelSpec;
use crate::engine::sched::{RequestKind, SchedEvent, SchedRequest, Scheduler};
use crate::traffic::{Kind, Request};
use crate::units::KeepAlive;

use super::host::Host;
use super::policies;

/// The most requests one policy's replay holds in flight (waiting or served) at once:
/// an arrival beyond it is refused, as a server with that many connections open would
/// refuse it, so an overloaded replay's memory stays bounded (about 300 bytes each,
/// times the policies).
pub const MAX_IN_FLIGHT: usize = 20_000;

/// Ids at or above this are the replay's own unload requests (E6).
const UNLOAD_ID: u64 = 1 << 62;
/// Ids from this up to `UNLOAD_ID` are the pre-warm policy's empty-prompt loads.
const PREWARM_ID: u64 = 1 << 61;

mod events;
mod leave;
mod outcome;
mod policy;

pub use outcome::{ModelOutcome, PolicyOutcome, UnloadEvent, Window};
pub use policy::{Lookahead, Policy};

/// What the replay needs to know about one model.
#[derive(Debug, Clone)]
pub struct ReplayModel {
    /// The name submitted to the scheduler.
    pub name: String,
    /// Its catalogue entry (speeds).
    pub spec: ModelSpec,
    /// Break-even keep_alive, seconds (`None`: forever).
    pub break_even_s: Option<f64>,
    /// Its load time on the host, seconds (when to start a pre-warm load).
    pub load_s: f64,
}

/// Settings shared by every policy's replay.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// Prompt tokens of a request whose input says none.
    pub prompt_tokens: u32,
    /// Output tokens of a request whose input says none.
    pub output_tokens: u32,
    /// `load_duration` at or above this is cold (M6), as in the live path.
    pub cold_threshold: Duration,
    /// The keep_alive values the input sent (`Request::keep_alive` indexes it).
    pub sent: Vec<KeepAlive>,
    /// Where the training window ends, seconds from the first arrival.
    pub split_s: f64,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    model: usize,
    arrival: Duration,
    prompt: u32,
    output: u32,
    service: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// Requests of this model submitted and not yet ended.
    active: u32,
    /// Resident bytes on the GPU and in system memory, when resident.
    resident: Option<(u64, u64)>,
    /// Time integrated up to.
    since: Duration,
}

/// One policy's replay in progress.
pub struct Replay {
    policy: Policy,
    sched: Scheduler,
    models: Vec<ReplayModel>,
    /// keep_alive the optimum and the pre-load bound send per model: the hold
    /// threshold (T* unless set), or forever.
    optimum_ka: Vec<KeepAlive>,
    /// Per model, the optimum's hold threshold, seconds (`None`: hold forever).
    optimum_hold: Vec<Option<f64>>,
    settings: ReplaySettings,
    /// Scheduler names (`/api/ps` form) → model index.
    by_name: HashMap<String, usize>,
    finishes: BinaryHeap<Reverse<(Duration, u64)>>,
    flights: HashMap<u64, Flight>,
    held: Vec<Held>,
    out: Vec<ModelOutcome>,
    next_id: u64,
    next_unload: u64,
    last: Duration,
    total: (u64, u64),
    peak: (u64, u64),
    ttft: MsHistogram,
    unload_events: Option<Vec<UnloadEvent>>,
    /// Per model: recent idle gaps (the adaptive policies).
    gaps: Vec<policies::GapWindow>,
    /// Per model: when its last request ended with none left in flight.
    last_end: Vec<Option<Duration>>,
    /// Per model: the pre-warm load due, if any (a stale timer is ignored).
    prewarm_at: Vec<Option<Duration>>,
    /// Per model: a pre-warm load no request has used yet.
    prewarm_unused: Vec<bool>,
    /// Pre-warm timers.
    prewarms: BinaryHeap<Reverse<(Duration, usize)>>,
    /// Per model: how long the pre-warm load keeps it, when one is planned.
    prewarm_hold: Vec<Option<f64>>,
    next_prewarm: u64,
    /// The host's load-time jitter (share).
    load_jitter: f64,
    /// Per model: loads completed so far (each `Loaded` event is one).
    load_gen: Vec<u64>,
    /// Per model: the last load counted as a reload (a cold request waited on it).
    charged_gen: Vec<u64>,
}

/// Seconds of the replay's clock as a `Duration`, never panicking: the input's times
/// were checked as it was read ([`crate::units::limits::duration_from_secs`]); what is
/// derived from them is held to the same range here (NaN and below 0 are 0).
pub(super) fn secs(s: f64) -> Duration {
    let s = if s.is_nan() { 0.0 } else { s };
    Duration::from_secs_f64(s.clamp(0.0, crate::units::limits::MAX_INPUT_SECS))
}

fn gb_s(bytes: u64, dt: Duration) -> f64 {
    bytes as f64 / 1e9 * dt.as_secs_f64()
}

impl Replay {
    /// A replay of `policy` on a fresh scheduler of `host`.
    pub fn new(
        policy: Policy,
        host: &Host,
        models: Vec<ReplayModel>,
        settings: ReplaySettings,
    ) -> Replay {
        let optimum_ka = models
            .iter()
            .map(|m| match m.break_even_s {
                Some(s) => KeepAlive::from_duration(secs(s.max(0.0))),
                None => KeepAlive::forever(),
            })
            .collect();
        let n = models.len();
        let optimum_hold = models.iter().map(|m| m.break_even_s).collect();
        Replay {
            policy,
            sched: Scheduler::new(host.config.clone(), host.catalogue.clone()),
            models,
            optimum_ka,
            optimum_hold,
            settings,
            by_name: HashMap::new(),
            finishes: BinaryHeap::new(),
            flights: HashMap::new(),
            held: vec![Held::default(); n],
            out: vec![ModelOutcome::default(); n],
            next_id: 1,
            next_unload: UNLOAD_ID,
            last: Duration::ZERO,
            total: (0, 0),
            peak: (0, 0),
            ttft: MsHistogram::new(),
            unload_events: None,
            gaps: vec![policies::GapWindow::new(policies::WINDOW); n],
            last_end: vec![None; n],
            prewarm_at: vec![None; n],
            prewarm_unused: vec![false; n],
            prewarms: BinaryHeap::new(),
            prewarm_hold: vec![None; n],
            next_prewarm: PREWARM_ID,
            load_jitter: host.config.load_jitter.max(0.0),
            load_gen: vec![0; n],
            charged_gen: vec![0; n],
        }
    }

    /// Sets the optimum's hold threshold per model, seconds (`None`: hold forever);
    /// T* unless set. The optimum sends it as each request's keep_alive.
    pub fn set_optimum_hold(&mut self, hold: &[Option<f64>]) {
        for (m, h) in hold.iter().enumerate().take(self.models.len()) {
            self.optimum_hold[m] = *h;
            self.optimum_ka[m] = match h {
                Some(s) => KeepAlive::from_duration(secs(s.clamp(0.0, 1e9))),
                None => KeepAlive::forever(),
            };
        }
    }

    fn adaptive(&self) -> bool {
        matches!(
            self.policy,
            Policy::Histogram | Policy::Adaptive | Policy::PreWarm
        )
    }

    /// The keep_alive the adaptive policies send with a request of `m` now.
    fn adaptive_keep_alive(&mut self, m: usize) -> KeepAlive {
        let w = &self.gaps[m];
        let t_star = self.models[m].break_even_s;
        let chosen = match self.policy {
            Policy::Histogram => Some(policies::histogram_keep_alive(w)),
            Policy::PreWarm => {
                let plan = policies::prewarm_plan(w, t_star, self.models[m].load_s);
                self.prewarm_hold[m] = plan.map(|p| p.1);
                match plan {
                    Some(_) => Some(0.0),
                    None => policies::adaptive_keep_alive(w, t_star),
                }
            }
            _ => policies::adaptive_keep_alive(w, t_star),
        };
        match chosen {
            Some(s) => KeepAlive::from_duration(secs(s.clamp(0.0, 1e9))),
            None => KeepAlive::forever(),
        }
    }

    /// Keeps every unload by expiry or eviction (one entry each: for a replay checked
    /// against a server log, not for weeks of traffic).
    pub fn record_unloads(&mut self) {
        self.unload_events = Some(Vec::new());
    }

    /// Replays one request (arrivals must come in time order).
    pub fn arrive(&mut self, r: &Request, ahead: &Lookahead) {
        let t = secs(r.t.max(0.0));
        self.advance_to(t, ahead);
        let m = r.model as usize;
        if r.kind != Kind::Serve {
            self.control(r, m, t, ahead);
            return;
        }
        let keep_alive = match &self.policy {
            Policy::Fixed(k) => Some(k.clone()),
            Policy::AsSent => r
                .keep_alive
                .and_then(|i| self.settings.sent.get(i as usize).cloned()),
            Policy::Optimum => Some(self.optimum_ka[m].clone()),
            Policy::PreloadBound => {
                self.prewarm_at[m] = None;
                self.prewarm_unused[m] = false;
                Some(self.optimum_ka[m].clone())
            }
            Policy::Histogram | Policy::Adaptive | Policy::PreWarm => {
                if self.held[m].active == 0
                    && let Some(end) = self.last_end[m]
                {
                    self.gaps[m].push(t.saturating_sub(end).as_secs_f64());
                }
                self.prewarm_at[m] = None;
                self.prewarm_unused[m] = false;
                Some(self.adaptive_keep_alive(m))
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.out[m].requests += 1;
        if r.t < self.settings.split_s {
            self.out[m].train.requests += 1;
        }
        if self.flights.len() >= MAX_IN_FLIGHT {
            self.out[m].errors += 1;
            self.out[m].backlog_refused += 1;
            return;
        }
        self.touch(m, t);
        self.held[m].active += 1;
        self.flights.insert(
            id,
            Flight {
                model: m,
                arrival: t,
                prompt: r.prompt_tokens.unwrap_or(self.settings.prompt_tokens),
                output: r.output_tokens.unwrap_or(self.settings.output_tokens),
                service: r.service_s.filter(|s| s.is_finite() && *s >= 0.0).map(secs),
            },
        );
        let submitted = self.sched.submit(
            t,
            SchedRequest {
                id,
                model: self.models[m].name.clone(),
                num_ctx: r.num_ctx,
                keep_alive,
                kind: RequestKind::Serve,
            },
        );
        if submitted.is_err() {
            self.flights.remove(&id);
            self.out[m].errors += 1;
            self.held[m].active -= 1;
        }
        self.handle_events(t, ahead);
    }

    /// A logged control call (an empty-prompt load or unload): "as sent" replays it as
    /// the server took it, neither a request nor a cold start; every other policy
    /// leaves it out, its own keep_alive deciding what stays loaded.
    fn control(&mut self, r: &Request, m: usize, t: Duration, ahead: &Lookahead) {
        if self.policy != Policy::AsSent {
            return;
        }
        let keep_alive = r
            .keep_alive
            .and_then(|i| self.settings.sent.get(i as usize).cloned());
        let (id, kind) = match r.kind {
            Kind::Unload => {
                self.next_unload += 1;
                (self.next_unload - 1, RequestKind::Unload)
            }
            _ => {
                // Done once dispatched, as the pre-warm loads (`handle_events`).
                self.next_prewarm += 1;
                (self.next_prewarm - 1, RequestKind::LoadOnly)
            }
        };
        let _ = self.sched.submit(
            t,
            SchedRequest {
                id,
                model: self.models[m].name.clone(),
                num_ctx: r.num_ctx,
                keep_alive,
                kind,
            },
        );
        self.handle_events(t, ahead);
    }

    /// Ends every request still in flight and closes the books at the end of the last.
    pub fn finish(mut self, ahead: &Lookahead) -> PolicyOutcome {
        self.advance_to(Duration::MAX, ahead);
        let horizon = self.last;
        for m in 0..self.held.len() {
            self.touch(m, horizon);
        }
        // The books are closed at the last request's end; a replay checked against a
        // server log still lets the timers left run out, as the server's did.
        if let Some(mut log) = self.unload_events.take() {
            for _ in 0..10_000 {
                let Some(w) = self.sched.next_wakeup() else {
                    break;
                };
                self.sched.advance(w);
                for event in self.sched.drain_events() {
                    if let SchedEvent::Unloaded { model, reason } = event
                        && matches!(reason, "evicted" | "expired")
                        && let Some(m) = self.model_of(&model)
                    {
                        log.push(UnloadEvent {
                            t: w.as_secs_f64(),
                            model: m,
                            evicted: reason == "evicted",
                        });
                    }
                }
            }
            self.unload_events = Some(log);
        }
        PolicyOutcome {
            policy: self.policy,
            models: self.out,
            horizon_s: horizon.as_secs_f64(),
            peak_bytes: self.peak.0 + self.peak.1,
            peak_ram_bytes: self.peak.1,
            ttft: self.ttft,
            unload_events: self.unload_events.unwrap_or_default(),
        }
    }

    /// Ends requests and fires timers due before `t` (a timer due exactly at `t` is left:
    /// a request arriving at that instant slips in first, T4); to the end with `MAX`.
    fn advance_to(&mut self, t: Duration, ahead: &Lookahead) {
        loop {
            let finish = self
                .finishes
                .peek()
                .map(|Reverse((e, _))| *e)
                .filter(|e| *e <= t);
            let draining = t == Duration::MAX;
            let wake = self
                .sched
                .next_wakeup()
                .filter(|w| *w < t)
                // Past the last request nothing more is counted: stop once every
                // request has ended.
                .filter(|_| !draining || !self.flights.is_empty());
            let prewarm = self
                .prewarms
                .peek()
                .map(|Reverse((p, _))| *p)
                .filter(|p| *p < t && !(draining && self.flights.is_empty()));
            if let Some(p) = prewarm
                && finish.is_none_or(|e| p < e)
                && wake.is_none_or(|w| p < w)
            {
                if let Some(Reverse((p, m))) = self.prewarms.pop() {
                    self.fire_prewarm(p, m, ahead);
                }
                continue;
            }
            match (finish, wake) {
                (None, None) => return,
                (Some(e), w) if w.is_none_or(|w| e <= w) => {
                    let Some(Reverse((e, id))) = self.finishes.pop() else {
                        return;
                    };
                    self.end(e, id, ahead);
                }
                (_, Some(w)) => {
                    self.sched.advance(w);
                    self.handle_events(w, ahead);
                }
                (Some(_), None) => unreachable!("covered above"),
            }
        }
    }

    /// A pre-warm timer: load `m` with an empty prompt, unless a request came since.
    fn fire_prewarm(&mut self, at: Duration, m: usize, ahead: &Lookahead) {
        if self.prewarm_at[m] != Some(at) {
            return;
        }
        self.prewarm_at[m] = None;
        if self.held[m].active > 0 || self.held[m].resident.is_some() {
            return;
        }
        self.sched.advance(at);
        self.handle_events(at, ahead);
        let hold = self.prewarm_hold[m].unwrap_or(0.0).max(1.0);
        let id = self.next_prewarm;
        self.next_prewarm += 1;
        let submitted = self.sched.submit(
            at,
            SchedRequest {
                id,
                model: self.models[m].name.clone(),
                num_ctx: None,
                keep_alive: Some(KeepAlive::from_duration(secs(hold))),
                kind: RequestKind::LoadOnly,
            },
        );
        if submitted.is_ok() {
            self.out[m].prewarm_loads += 1;
            self.prewarm_unused[m] = true;
        }
        self.handle_events(at, ahead);
    }

    fn end(&mut self, now: Duration, id: u64, ahead: &Lookahead) {
        self.sched.finish(now, id);
        self.last = self.last.max(now);
        if let Some(f) = self.flights.remove(&id) {
            self.handle_events(now, ahead);
            self.leave(f.model, now, ahead);
        } else {
            self.handle_events(now, ahead);
        }
    }

    /// Integrates model `m`'s memory up to `now` in its current state.
    fn touch(&mut self, m: usize, now: Duration) {
        let h = &mut self.held[m];
        let dt = now.saturating_sub(h.since);
        h.since = now;
        if let Some((gpu, ram)) = h.resident
            && !dt.is_zero()
        {
            let o = &mut self.out[m];
            o.held_gpu_gb_s += gb_s(gpu, dt);
            o.held_ram_gb_s += gb_s(ram, dt);
            if h.active == 0 {
                o.idle_gpu_gb_s += gb_s(gpu, dt);
                o.idle_ram_gb_s += gb_s(ram, dt);
                // The part of [now − dt, now) before the split.
                let split = secs(self.settings.split_s.max(0.0));
                let start = now - dt;
                if start < split {
                    let before = split.min(now) - start;
                    o.train.idle_gpu_gb_s += gb_s(gpu, before);
                    o.train.idle_ram_gb_s += gb_s(ram, before);
                }
            }
        }
    }

    fn model_of(&mut self, name: &str) -> Option<usize> {
        if let Some(&m) = self.by_name.get(name) {
            return Some(m);
        }
        let pos = self.sched.catalogue().position(name)?;
        let m = self
            .models
            .iter()
            .position(|rm| self.sched.catalogue().position(&rm.name) == Some(pos))?;
        self.by_name.insert(name.to_string(), m);
        Some(m)
    }
}
