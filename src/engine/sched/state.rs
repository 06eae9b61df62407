//! The scheduler's state machine: requests, resident and loading models, the FIFO
//! queue and the one phase the queue head is in (idle, loading, waiting for a victim,
//! waiting for freed VRAM). Time only moves through the `now` arguments; the only
//! randomness is `rng::SeededRng` (SplitMix64), so a seed and a call sequence fix the trace.
//! Over 500 lines: one state machine (Ollama's scheduler); its transitions read best together.

use crate::ollama::name;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{
    RequestKind, ResidentModel, SchedConfig, SchedEvent, SchedRequest, SchedStats, SchedTime,
    SubmitError, predicted_size,
};
use crate::engine::catalogue::Catalogue;
use crate::rng::SeededRng;
use crate::units::KeepAlive;

/// Error text of a failed load (L9), as Ollama's runner reports it.
const LOAD_FAILED: &str = "llama runner process has terminated: error loading model";
/// Error text of a load stalled past `load_timeout`.
const LOAD_TIMED_OUT: &str = "timed out waiting for llama runner to start - progress 0.00 - ";

/// A keep-alive as the scheduler uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ka {
    Forever,
    For(Duration),
}

impl Ka {
    fn of(k: &KeepAlive) -> Ka {
        k.duration().map_or(Ka::Forever, Ka::For)
    }

    fn is_zero(self) -> bool {
        self == Ka::For(Duration::ZERO)
    }

    /// E3 order: shorter first, forever last.
    fn rank(self) -> (bool, Duration) {
        match self {
            Ka::For(d) => (false, d),
            Ka::Forever => (true, Duration::ZERO),
        }
    }
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In the FIFO queue (Q2).
    Queued,
    /// Its client triggered the current load (L4).
    Loading,
    /// Attached, waiting for a slot (Q3).
    SlotWait,
    /// Holding a slot.
    Active,
    /// Attached without a slot (M7 load-only).
    Attached,
}

struct Req {
    receipt: SchedTime,
    spec: usize,
    num_ctx: u32,
    keep_alive: Option<Ka>,
    kind: RequestKind,
    name: String,
    stage: Stage,
    /// Set when attached: `load_duration` and `loaded` of its `Dispatched`.
    load_duration: Duration,
    loaded: bool,
}

enum Outcome {
    Ready,
    Fail(&'static str),
}

struct Load {
    until: SchedTime,
    outcome: Outcome,
    loader: u64,
}

struct Model {
    spec: usize,
    name: String,
    num_ctx: u32,
    size: u64,
    size_vram: u64,
    /// `Some` while loading (L3: absent from `ps`).
    load: Option<Load>,
    loaded_at: SchedTime,
    keep_alive: Ka,
    slots: u32,
    active: u32,
    attached: u32,
    slot_waiters: VecDeque<u64>,
    /// T1's deadline; kept (stale) while busy again (P4).
    deadline: SchedTime,
    /// Whether the countdown runs.
    armed: bool,
    /// Whether it has been idle since it loaded (P4).
    idled: bool,
    /// When it last went idle.
    idled_at: SchedTime,
    /// Whether it was kept forever when it last went idle: while busy again, `/api/ps`
    /// shows that expiry (forever), not `deadline` (P4).
    idle_forever: bool,
    /// Marked to unload once idle: `evicted` (E3) or `reload` (L5).
    evict: Option<&'static str>,
    /// E6 asked for an unload.
    unload_requested: bool,
}

impl Model {
    fn busy(&self) -> u32 {
        self.active + self.attached + self.slot_waiters.len() as u32
    }

    fn resident(&self) -> bool {
        self.load.is_none()
    }

    /// E3's victim order: marked first, then shortest keep-alive, forever last, by name.
    fn victim_key(&self) -> (bool, (bool, Duration), &str) {
        let marked = self.evict.is_some() || self.keep_alive.is_zero();
        (!marked, self.keep_alive.rank(), self.name.as_str())
    }
}

/// What the queue head is doing; only `Idle` lets the next head be looked at (L1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A load of this catalogue entry runs.
    Loading(usize),
    /// E8: waiting for freed VRAM until then.
    Release(SchedTime),
    /// E3: waiting for this busy, marked model to go idle.
    Victim(usize),
    /// E7: the victim was revived; the head hangs until its client leaves.
    Stuck,
}

/// Ollama's scheduler as a state machine.
pub struct Scheduler {
    config: SchedConfig,
    catalogue: Catalogue,
    /// Names and aliases → catalogue index, so a submit is one hash lookup.
    index: HashMap<String, usize>,
    default_ka: Ka,
    /// Resident and loading models (a handful).
    models: Vec<Model>,
    reqs: HashMap<u64, Req>,
    /// FIFO of request ids; entries whose request left are skipped.
    queue: VecDeque<u64>,
    /// Requests in `queue` still waiting (Q2's count).
    queued: usize,
    phase: Phase,
    /// Per catalogue entry: loaded before, so the file is in the page cache.
    cached: Vec<bool>,
    events: Vec<SchedEvent>,
    stats: SchedStats,
    rng: SeededRng,
}

impl Scheduler {
    /// A scheduler with nothing resident.
    pub fn new(config: SchedConfig, catalogue: Catalogue) -> Self {
        let mut index = HashMap::new();
        // Later entries never shadow earlier ones, as `Catalogue::resolve` finds the first.
        for (i, m) in catalogue.models.iter().enumerate().rev() {
            for a in &m.aliases {
                index.insert(name::key(a), i);
            }
        }
        for (i, m) in catalogue.models.iter().enumerate().rev() {
            index.insert(name::key(&m.name), i);
        }
        Scheduler {
            default_ka: Ka::of(&config.default_keep_alive),
            rng: SeededRng::new(config.seed ^ 0x6b61_6265_6e63_6821),
            cached: vec![false; catalogue.models.len()],
            config,
            catalogue,
            index,
            models: Vec::new(),
            reqs: HashMap::new(),
            queue: VecDeque::new(),
            queued: 0,
            phase: Phase::Idle,
            events: Vec::new(),
            stats: SchedStats::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// The installed models.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// A request arrives at `now` (receipt time: `load_duration` counts from here).
    pub fn submit(&mut self, now: SchedTime, req: SchedRequest) -> Result<(), SubmitError> {
        self.run_due(now, true);
        let spec = self
            .lookup(&req.model)
            .ok_or_else(|| SubmitError::NotFound(req.model.clone()))?;
        let keep_alive = req.keep_alive.as_ref().map(Ka::of);
        if req.kind == RequestKind::Unload {
            self.unload_request(now, req.id, spec);
            return Ok(());
        }
        let num_ctx = self.effective_ctx(spec, req.num_ctx);
        let mut r = Req {
            receipt: now,
            spec,
            num_ctx,
            keep_alive,
            kind: req.kind,
            name: req.model,
            stage: Stage::Queued,
            load_duration: Duration::ZERO,
            loaded: false,
        };
        if let Some(pos) = self.model_pos(spec) {
            let m = &mut self.models[pos];
            if m.resident() && m.num_ctx == num_ctx {
                // Q1: attach at once. A model marked for eviction only takes it with the
                // E7 bug on and a non-zero keep_alive, which revives it.
                let revive = self.config.e7_revive_bug
                    && m.evict == Some("evicted")
                    && keep_alive.is_some_and(|k| !k.is_zero());
                if m.evict.is_none() || revive {
                    if revive {
                        m.evict = None;
                        if self.phase == Phase::Victim(spec) {
                            self.phase = Phase::Stuck;
                        }
                    }
                    r.loaded = false;
                    self.attach(now, req.id, r, pos);
                    return Ok(());
                }
            }
        }
        if self.queued >= self.config.max_queue {
            self.stats.rejected += 1;
            return Err(SubmitError::QueueFull);
        }
        self.reqs.insert(req.id, r);
        self.queue.push_back(req.id);
        self.queued += 1;
        self.process_queue(now);
        Ok(())
    }

    /// A dispatched request ended (response written) at `now` (T1).
    pub fn finish(&mut self, now: SchedTime, id: u64) {
        self.run_due(now, true);
        self.leave(now, id);
    }

    /// The client of a request went away at `now` (L4); same as `finish` once dispatched.
    pub fn cancel(&mut self, now: SchedTime, id: u64) {
        self.run_due(now, true);
        self.leave(now, id);
    }

    /// The next time `advance` has work (load done, expiry, E8 wait), if any.
    pub fn next_wakeup(&self) -> Option<SchedTime> {
        self.next_timer().map(|(t, _)| t)
    }

    /// Processes every timer due at or before `now`.
    pub fn advance(&mut self, now: SchedTime) {
        self.run_due(now, false);
    }

    /// Events since the last call, in order.
    pub fn drain_events(&mut self) -> Vec<SchedEvent> {
        std::mem::take(&mut self.events)
    }

    /// Resident models, latest `expires_at` first (P1).
    pub fn ps(&self, now: SchedTime) -> Vec<ResidentModel> {
        let mut out: Vec<ResidentModel> = self
            .models
            .iter()
            .filter(|m| m.resident())
            .map(|m| ResidentModel {
                name: m.name.clone(),
                size: m.size,
                size_vram: m.size_vram,
                expires_at: expires_at(m, now),
                forever_from: forever_from(m, now),
                context_length: m.num_ctx,
                busy: m.busy(),
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |r: &ResidentModel| r.expires_at.unwrap_or(Duration::MAX);
            key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name))
        });
        out
    }

    /// Counters so far.
    pub fn stats(&self) -> SchedStats {
        self.stats
    }

    /// Requests waiting in the FIFO queue (Q2).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether a load is running now.
    pub fn loading(&self) -> bool {
        matches!(self.phase, Phase::Loading(_))
    }

    #[cfg(test)]
    pub(crate) fn debug_phase(&self) -> String {
        format!("{:?}", self.phase)
    }

    /// The installed name (its case as installed) that `asked` denotes, in the short
    /// form `/api/ps` prints: `tiny-50m` → `tiny-50m:latest`.
    fn installed_name(&self, spec: usize, asked: &str) -> String {
        let m = &self.catalogue.models[spec];
        std::iter::once(&m.name)
            .chain(&m.aliases)
            .find(|n| name::same_model(n, asked))
            .map_or_else(|| name::display(asked), |n| name::display(n))
    }

    /// The catalogue entry of a name in any form Ollama accepts (`m` ≡ `m:latest` ≡
    /// `library/m`, case aside).
    fn lookup(&self, model: &str) -> Option<usize> {
        self.index.get(&name::key(model)).copied()
    }

    fn effective_ctx(&self, spec: usize, asked: Option<u32>) -> u32 {
        self.config
            .effective_ctx(&self.catalogue.models[spec], asked)
    }

    fn slots_for(&self, spec: usize) -> u32 {
        self.config.slots_for(&self.catalogue.models[spec])
    }

    fn model_pos(&self, spec: usize) -> Option<usize> {
        self.models.iter().position(|m| m.spec == spec)
    }

    fn warm(&mut self) -> Duration {
        let (lo, hi) = self.config.warm_overhead;
        let span = hi.saturating_sub(lo).as_secs_f64();
        let d = lo + Duration::from_secs_f64(span * self.rng.unit());
        d.max(Duration::from_nanos(1))
    }

    /// E6: answered at once; the model unloads when idle.
    fn unload_request(&mut self, now: SchedTime, id: u64, spec: usize) {
        let load_duration = self.warm();
        self.events.push(SchedEvent::Dispatched {
            id,
            load_duration,
            loaded: false,
        });
        if let Some(pos) = self.model_pos(spec) {
            // A loading model takes the mark too: its loader is dispatched later, so its
            // own keep_alive, if any, still wins (KA6).
            let m = &mut self.models[pos];
            m.keep_alive = Ka::For(Duration::ZERO);
            m.unload_requested = true;
            if m.resident() && m.busy() == 0 {
                self.unload(now, pos, "unload");
            }
        }
    }

    /// Hands a request to the resident model at `pos` (KA6: its keep_alive applies now).
    fn attach(&mut self, now: SchedTime, id: u64, mut r: Req, pos: usize) {
        let warm = self.warm();
        let m = &mut self.models[pos];
        if let Some(ka) = r.keep_alive {
            m.keep_alive = ka;
            if !ka.is_zero() {
                m.unload_requested = false;
            }
        }
        m.armed = false;
        r.load_duration = now.saturating_sub(r.receipt) + warm;
        let dispatch = match r.kind {
            RequestKind::Serve if m.active >= m.slots => {
                r.stage = Stage::SlotWait;
                m.slot_waiters.push_back(id);
                false
            }
            RequestKind::Serve => {
                r.stage = Stage::Active;
                m.active += 1;
                true
            }
            RequestKind::LoadOnly | RequestKind::Unload => {
                r.stage = Stage::Attached;
                m.attached += 1;
                true
            }
        };
        if dispatch {
            self.events.push(SchedEvent::Dispatched {
                id,
                load_duration: r.load_duration,
                loaded: r.loaded,
            });
        }
        self.reqs.insert(id, r);
    }

    /// A request ends, whatever its stage.
    fn leave(&mut self, now: SchedTime, id: u64) {
        let Some(r) = self.reqs.remove(&id) else {
            return;
        };
        match r.stage {
            Stage::Queued => {
                self.queued -= 1;
                if self.phase == Phase::Stuck && self.queue.front() == Some(&id) {
                    self.phase = Phase::Idle;
                    self.process_queue(now);
                }
            }
            Stage::Loading => {
                // L4: the loader left, the load is abandoned and nothing stays.
                if let Some(pos) = self.model_pos(r.spec)
                    && !self.models[pos].resident()
                {
                    self.models.swap_remove(pos);
                }
                self.phase = Phase::Idle;
                self.process_queue(now);
            }
            Stage::SlotWait | Stage::Active | Stage::Attached => {
                let Some(pos) = self.model_pos(r.spec) else {
                    return;
                };
                let m = &mut self.models[pos];
                match r.stage {
                    Stage::SlotWait => m.slot_waiters.retain(|&w| w != id),
                    Stage::Attached => m.attached -= 1,
                    _ => {
                        m.active -= 1;
                        if let Some(next) = m.slot_waiters.pop_front() {
                            m.active += 1;
                            if let Some(n) = self.reqs.get_mut(&next) {
                                n.stage = Stage::Active;
                                self.events.push(SchedEvent::Dispatched {
                                    id: next,
                                    load_duration: n.load_duration,
                                    loaded: n.loaded,
                                });
                            }
                        }
                    }
                }
                if self.models[pos].busy() == 0 {
                    self.on_idle(now, pos);
                }
            }
        }
    }

    /// T1: the last request on the model ended.
    fn on_idle(&mut self, now: SchedTime, pos: usize) {
        let m = &mut self.models[pos];
        m.idled = true;
        m.idled_at = now;
        m.idle_forever = m.keep_alive == Ka::Forever;
        if let Some(reason) = m.evict {
            self.unload(now, pos, reason);
            return;
        }
        match m.keep_alive {
            Ka::For(d) if d.is_zero() => {
                let reason = if m.unload_requested {
                    "unload"
                } else {
                    "expired"
                };
                self.unload(now, pos, reason);
            }
            Ka::For(d) => {
                m.deadline = now.saturating_add(d);
                m.armed = true;
            }
            Ka::Forever => m.armed = false,
        }
    }

    fn unload(&mut self, now: SchedTime, pos: usize, reason: &'static str) {
        let m = self.models.swap_remove(pos);
        match reason {
            "evicted" => self.stats.evictions += 1,
            "expired" => self.stats.expirations += 1,
            _ => {}
        }
        self.events.push(SchedEvent::Unloaded {
            model: m.name,
            reason,
        });
        if self.phase == Phase::Victim(m.spec) {
            self.wait_for_release(now);
            if self.phase == Phase::Idle {
                self.process_queue(now);
            }
        }
    }

    /// E8: after an unload, the load waiting for that memory starts once the driver
    /// reports it free; a CPU-only host skips the wait (the phase goes back to idle).
    fn wait_for_release(&mut self, now: SchedTime) {
        self.phase = if self.config.cpu_only() {
            Phase::Idle
        } else {
            Phase::Release(now + self.config.release_delay())
        };
    }

    /// Moves the queue head on while nothing else holds the scheduler (L1, Q2).
    fn process_queue(&mut self, now: SchedTime) {
        while self.phase == Phase::Idle {
            let Some(&id) = self.queue.front() else {
                return;
            };
            let Some(r) = self.reqs.get(&id).filter(|r| r.stage == Stage::Queued) else {
                self.queue.pop_front();
                continue;
            };
            let (spec, num_ctx, receipt) = (r.spec, r.num_ctx, r.receipt);
            if let Some(pos) = self.model_pos(spec) {
                let m = &mut self.models[pos];
                if m.num_ctx == num_ctx {
                    // Nobody waits on a mark while the phase is idle: it is stale.
                    m.evict = None;
                    let loaded = m.loaded_at >= receipt;
                    self.queue.pop_front();
                    self.queued -= 1;
                    if let Some(mut r) = self.reqs.remove(&id) {
                        r.loaded = loaded;
                        self.attach(now, id, r, pos);
                    }
                    continue;
                }
                // L5/L6: another context; wait for its requests, then reload.
                if m.busy() == 0 {
                    self.unload(now, pos, "reload");
                    self.wait_for_release(now);
                } else {
                    m.evict = Some("reload");
                    self.phase = Phase::Victim(spec);
                }
                if self.phase == Phase::Idle {
                    continue;
                }
                return;
            }
            let size = predicted_size(&self.catalogue.models[spec], num_ctx, self.slots_for(spec));
            if self.config.cpu_only() {
                // E2: with no GPU the VRAM test is skipped; only E5's cap evicts.
                if self.config.admits(size, self.models.len(), 0) {
                    self.start_load(now, id, num_ctx, size, 0);
                    continue;
                }
                self.evict_one(now);
                if self.phase == Phase::Idle {
                    continue;
                }
                return;
            }
            let usable = self.config.usable_vram();
            if self.models.is_empty() {
                // E2: alone, it always loads, spilling what does not fit.
                self.start_load(now, id, num_ctx, size, size.min(usable));
                continue;
            }
            let used: u64 = self.models.iter().map(|m| m.size_vram).sum();
            if self.config.admits(size, self.models.len(), used) {
                self.start_load(now, id, num_ctx, size, size);
                continue;
            }
            self.evict_one(now);
            return;
        }
    }

    /// E3/E4: unload the first idle victim, or mark the first of all and wait for it.
    fn evict_one(&mut self, now: SchedTime) {
        let idle = (0..self.models.len())
            .filter(|&i| self.models[i].busy() == 0)
            .min_by(|&a, &b| {
                self.models[a]
                    .victim_key()
                    .cmp(&self.models[b].victim_key())
            });
        if let Some(pos) = idle {
            self.unload(now, pos, "evicted");
            self.wait_for_release(now);
            return;
        }
        let first = (0..self.models.len()).min_by(|&a, &b| {
            self.models[a]
                .victim_key()
                .cmp(&self.models[b].victim_key())
        });
        if let Some(pos) = first {
            let m = &mut self.models[pos];
            if m.evict.is_none() {
                m.evict = Some("evicted");
            }
            self.phase = Phase::Victim(m.spec);
        }
    }

    fn start_load(&mut self, now: SchedTime, id: u64, num_ctx: u32, size: u64, size_vram: u64) {
        self.queue.pop_front();
        self.queued -= 1;
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        r.stage = Stage::Loading;
        let (spec, asked) = (r.spec, r.name.clone());
        // `/api/ps` names a model by the short form of the name that loaded it (P1).
        let name = self.installed_name(spec, &asked);
        let mut secs = self
            .config
            .load_secs(&self.catalogue.models[spec], self.cached[spec]);
        if self.config.load_jitter > 0.0 {
            secs *= 1.0 + self.config.load_jitter * (2.0 * self.rng.unit() - 1.0);
        }
        let mut took = Duration::from_secs_f64(secs.max(0.0));
        let mut outcome = Outcome::Ready;
        if self.config.load_stall_share > 0.0 && self.rng.unit() < self.config.load_stall_share {
            if self.config.load_stall > self.config.load_timeout {
                took = self.config.load_timeout;
                outcome = Outcome::Fail(LOAD_TIMED_OUT);
            } else {
                took += self.config.load_stall;
            }
        }
        if self.config.load_failure_share > 0.0 && self.rng.unit() < self.config.load_failure_share
        {
            outcome = Outcome::Fail(LOAD_FAILED);
        }
        let until = now + took;
        self.models.push(Model {
            spec,
            name: name.clone(),
            num_ctx,
            size,
            size_vram,
            load: Some(Load {
                until,
                outcome,
                loader: id,
            }),
            loaded_at: until,
            keep_alive: self.default_ka,
            slots: self.slots_for(spec),
            active: 0,
            attached: 0,
            slot_waiters: VecDeque::new(),
            deadline: until,
            armed: false,
            idled: false,
            idled_at: until,
            idle_forever: false,
            evict: None,
            unload_requested: false,
        });
        self.phase = Phase::Loading(spec);
        self.events
            .push(SchedEvent::LoadStarted { model: name, until });
    }

    fn complete_load(&mut self, t: SchedTime, spec: usize) {
        self.phase = Phase::Idle;
        let Some(pos) = self.model_pos(spec) else {
            self.process_queue(t);
            return;
        };
        let Some(load) = self.models[pos].load.take() else {
            self.process_queue(t);
            return;
        };
        match load.outcome {
            Outcome::Ready => {
                let m = &mut self.models[pos];
                m.loaded_at = t;
                self.cached[spec] = true;
                self.stats.loads += 1;
                self.events.push(SchedEvent::Loaded {
                    model: m.name.clone(),
                    size: m.size,
                });
                if let Some(mut r) = self.reqs.remove(&load.loader) {
                    r.loaded = true;
                    self.attach(t, load.loader, r, pos);
                } else if self.models[pos].busy() == 0 {
                    self.on_idle(t, pos);
                }
            }
            Outcome::Fail(error) => {
                // L9: only its request fails, nothing stays.
                self.models.swap_remove(pos);
                self.reqs.remove(&load.loader);
                self.events.push(SchedEvent::Failed {
                    id: load.loader,
                    error: error.to_string(),
                });
            }
        }
        self.process_queue(t);
    }

    /// Earliest timer: `(time, Some(model pos))` for an expiry, `None` for the phase.
    fn next_timer(&self) -> Option<(SchedTime, Option<usize>)> {
        let mut best = match self.phase {
            Phase::Loading(spec) => self
                .model_pos(spec)
                .and_then(|p| self.models[p].load.as_ref())
                .map(|l| (l.until, None)),
            Phase::Release(t) => Some((t, None)),
            _ => None,
        };
        for (i, m) in self.models.iter().enumerate() {
            // Expiries first on ties: they free memory the head may be waiting for.
            if m.armed && best.is_none_or(|(t, _)| m.deadline <= t) {
                best = Some((m.deadline, Some(i)));
            }
        }
        best
    }

    /// Fires timers in time order; `strict` leaves those due exactly at `now` (T4: a
    /// request arriving at that instant slips in first).
    fn run_due(&mut self, now: SchedTime, strict: bool) {
        while let Some((t, which)) = self.next_timer() {
            if t > now || (strict && t == now) {
                return;
            }
            match which {
                Some(pos) => self.unload(t, pos, "expired"),
                None => match self.phase {
                    Phase::Loading(spec) => self.complete_load(t, spec),
                    Phase::Release(_) => {
                        self.phase = Phase::Idle;
                        self.process_queue(t);
                    }
                    _ => return,
                },
            }
        }
    }
}

/// P4: the deadline when idle; now + keep-alive during the first request; when busy
/// after idling, the expiry set when it last went idle (stale, maybe past), whatever the
/// new request asks; `None` for forever (idle forever, or busy after idling forever).
fn expires_at(m: &Model, now: SchedTime) -> Option<SchedTime> {
    if m.idled && m.busy() > 0 {
        return (!m.idle_forever).then_some(m.deadline);
    }
    match m.keep_alive {
        Ka::Forever => None,
        Ka::For(d) if !m.idled => Some(now.saturating_add(d)),
        Ka::For(_) => Some(m.deadline),
    }
}

/// P4: when a forever expiry was set: when the model went idle (it stays fixed while
/// idle and while busy again), or now during the first request (recomputed per call).
fn forever_from(m: &Model, now: SchedTime) -> SchedTime {
    if m.idled { m.idled_at } else { now }
}
