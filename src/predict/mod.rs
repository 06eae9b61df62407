//! `kabench predict`: a user's real traffic (`traffic`) replayed through the same
//! model of Ollama's scheduler the simulator serves (`sched`), on a virtual clock, once
//! per keep_alive policy: fixed values (the user's, Ollama's default `5m`, the common
//! `10s` and a log-spaced grid from 0 to forever), "as sent today", the adaptive
//! policies, the keep_alive optimum every policy is measured against (`optimum`: hold
//! across a gap iff it is shorter than the break-even time T*), and the pre-load bound
//! (a clairvoyant client pre-warming just in time, below any keep_alive). Each policy
//! is priced with the cost model of `recommend`. The input is read in one pass, every
//! policy replaying it in lockstep, so memory stays flat in its length; the optimum,
//! whose threshold depends on the best fixed value, replays it in a second pass of its
//! own. The policies that look ahead do so only as far as their longest threshold.
//! `output` turns the outcome into a table and a run folder. Over 600 lines: the
//! passes and the pricing share the prediction's state.

pub mod check;
pub mod fast;
pub mod host;
pub mod input;
pub mod optimum;
pub mod output;
pub mod policies;
pub mod replay;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::scenario::CostSettings;
use crate::traffic::{Kind, Request, Scan, Source};
use crate::units::KeepAlive;

pub use host::{Host, ModelFigures};
pub use replay::{Lookahead, Policy, PolicyOutcome, ReplayModel, ReplaySettings};

/// Requests handed to the replays at a time (each batch is spread over the cores).
const BATCH: usize = 8192;

/// The most requests read ahead of the replays (about 72 bytes each): the look-ahead
/// window (the longest hold threshold) is cut here on dense traffic, so memory stays
/// bounded; a model with no arrival read ahead that far is treated as the input not
/// read to its next arrival yet (the optimum holds it as its keep_alive says).
pub const MAX_READ_AHEAD: usize = 1_000_000;

/// Fewer requests than this after the `--train` split, and the out-of-sample result is
/// reported as too little traffic rather than as costs.
pub const MIN_TEST_REQUESTS: u64 = 20;

/// A replay whose last request ends this share of the input's span (and at least
/// [`BACKLOG_MIN_S`]) after the span, under every fixed keep_alive, has a queue that
/// grew without bound.
pub const BACKLOG_SHARE: f64 = 0.05;
/// The least backlog that counts as unbounded, seconds.
pub const BACKLOG_MIN_S: f64 = 600.0;
/// Utilisation of the busiest model's slots at or above which a backlog is the host's
/// capacity, not a burst.
pub const OVERLOAD_UTILISATION: f64 = 0.95;

/// Ollama's default keep_alive and the common short one: always replayed.
pub const ALWAYS: [&str; 2] = ["5m", "10s"];

/// The log-spaced grid from 0 to forever (about three steps a decade).
pub const GRID: [&str; 15] = [
    "0", "1s", "3s", "10s", "30s", "1m", "3m", "5m", "10m", "30m", "1h", "3h", "10h", "24h", "-1",
];

/// The fixed keep_alive policies: `given` as written, then `ALWAYS` and (with `grid`)
/// `GRID`, each duration once (the first spelling wins), shortest first, forever last.
pub fn fixed_policies(given: &[KeepAlive], grid: bool) -> Vec<Policy> {
    let mut all: Vec<KeepAlive> = given.to_vec();
    let extra: Vec<&str> = if grid {
        ALWAYS.iter().chain(GRID.iter()).copied().collect()
    } else {
        ALWAYS.to_vec()
    };
    for text in extra {
        if let Ok(k) = KeepAlive::parse(text) {
            all.push(k);
        }
    }
    let mut out: Vec<KeepAlive> = Vec::new();
    for k in all {
        if !out
            .iter()
            .any(|o| o.seconds_or_infinity() == k.seconds_or_infinity())
        {
            out.push(k);
        }
    }
    out.sort_by(|a, b| a.seconds_or_infinity().total_cmp(&b.seconds_or_infinity()));
    out.into_iter().map(Policy::Fixed).collect()
}

/// How to predict.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// The policies, in table order.
    pub policies: Vec<Policy>,
    /// `[cost]` weights.
    pub cost: CostSettings,
    /// Prompt tokens of requests whose input says none.
    pub prompt_tokens: u32,
    /// Output tokens of requests whose input says none.
    pub output_tokens: u32,
    /// The cold rule's `load_duration` threshold (M6).
    pub cold_threshold: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Share of the input's time span that trains (`--train`): the recommendation is
    /// chosen there and scored on the rest; 1 scores on the whole only.
    pub train: f64,
    /// Inputs of at least this many requests, of one model with no request arriving
    /// while another is in flight, price the fixed keep_alives from their gaps
    /// ([`fast`]) instead of through the scheduler ([`FAST_MIN_ROWS`] by default).
    pub fast_min_rows: u64,
}

/// The input size from which the fixed keep_alives of an uncontended single-model
/// input are priced from the gaps ([`fast`]); below it the scheduler's replay is quick
/// anyway, and its load-time jitter is kept.
pub const FAST_MIN_ROWS: u64 = 100_000;

/// A policy's cost, split as `recommend` splits it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PolicyCost {
    /// Reloads (the loads cold requests waited on, each once) × each model's penalty
    /// × `wait_second`.
    pub cold: f64,
    /// Idle GPU GB·h × `vram_gb_hour`.
    pub vram: f64,
    /// Idle system-memory GB·h × `ram_gb_hour`.
    pub ram: f64,
    /// The sum.
    pub total: f64,
}

/// A host that cannot serve the traffic: its queue grows without bound under every
/// fixed keep_alive, so every policy's costs are the queue's and none is recommended.
#[derive(Debug, Clone, PartialEq)]
pub struct Overload {
    /// The busiest model.
    pub model: String,
    /// Its service time demanded ÷ (the input's span × its parallel slots).
    pub utilisation: f64,
    /// Parallel slots per model on the host.
    pub slots: u32,
    /// Seconds the last request ends after the input's span, under the fixed
    /// keep_alive that ends soonest.
    pub backlog_s: f64,
}

impl Overload {
    /// The warning, for people.
    pub fn line(&self) -> String {
        format!(
            "warning: the host cannot serve this traffic: {} is busy {:.0}% of the time span with {} request(s) at a time, and its queue grows without bound (the last request ends {} after the last arrival, under every fixed keep_alive); every policy's cost is the queue's, so no keep_alive is recommended: give more parallel slots (--num-parallel), a faster host or less traffic",
            self.model,
            self.utilisation * 100.0,
            self.slots,
            crate::recommend::format_seconds(self.backlog_s)
        )
    }
}

/// Whether every fixed keep_alive's replay left an unbounded queue, and how busy the
/// busiest model was.
pub fn overload(
    outcomes: &[PolicyOutcome],
    models: &[ModelFigures],
    span_s: f64,
    slots: u32,
) -> Option<Overload> {
    let fixed: Vec<&PolicyOutcome> = outcomes.iter().filter(|o| o.policy.is_fixed()).collect();
    let best = fixed
        .iter()
        .min_by(|a, b| a.horizon_s.total_cmp(&b.horizon_s))?;
    let backlog_s = best.horizon_s - span_s;
    if backlog_s <= BACKLOG_MIN_S.max(BACKLOG_SHARE * span_s) {
        return None;
    }
    let capacity = span_s.max(1.0) * f64::from(slots.max(1));
    let (m, busy) = best
        .models
        .iter()
        .enumerate()
        .map(|(m, o)| (m, o.busy_s))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let refused = fixed
        .iter()
        .any(|o| o.models.iter().any(|m| m.backlog_refused > 0));
    let utilisation = busy / capacity;
    (utilisation >= OVERLOAD_UTILISATION || refused).then(|| Overload {
        model: models.get(m).map_or_else(String::new, |f| f.model.clone()),
        utilisation,
        slots,
        backlog_s,
    })
}

/// What a prediction found.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The input's scan.
    pub scan: Scan,
    /// Per replayed model (input names that denote one installed model are one).
    pub models: Vec<ModelFigures>,
    /// Per policy, in `PredictOptions::policies` order.
    pub outcomes: Vec<PolicyOutcome>,
    /// Their costs.
    pub costs: Vec<PolicyCost>,
    /// Their costs in the training window.
    pub train_costs: Vec<PolicyCost>,
    /// Their costs after it.
    pub test_costs: Vec<PolicyCost>,
    /// The training share.
    pub train: f64,
    /// Index of the keep_alive optimum in `outcomes`, when replayed.
    pub optimum: Option<usize>,
    /// Per model, the optimum's hold threshold, seconds (`None`: forever).
    pub optimum_hold: Vec<Option<f64>>,
    /// Models whose optimum figures are the best fixed keep_alive's: the scheduler's
    /// contention left them worse off under the optimum ([`optimum::guard`]).
    pub optimum_fallback: Vec<usize>,
    /// Index of the pre-load bound in `outcomes`, when replayed.
    pub preload_bound: Option<usize>,
    /// Wall time of the replay, seconds.
    pub wall_s: f64,
    /// Per replayed model: its inter-arrival gaps, counted in the log-spaced bins of
    /// [`policies::edge`].
    pub gap_counts: Vec<[u64; policies::BINS]>,
    /// The "as sent" replay's unloads against the input's logged unloads (an Ollama
    /// server log with debug lines).
    pub unload_check: Option<check::UnloadCheck>,
    /// Set when the host cannot serve the traffic (nothing is recommended then).
    pub overload: Option<Overload>,
}

impl Prediction {
    /// Cost ÷ the keep_alive optimum's cost (`None` without an optimum or when it
    /// costs nothing).
    pub fn times_optimum(&self, i: usize) -> Option<f64> {
        let best = self.costs[self.optimum?].total;
        (best > 0.0).then(|| self.costs[i].total / best)
    }

    /// The fixed policy of least cost (ties: the shorter keep_alive).
    pub fn best_fixed(&self) -> Option<usize> {
        best_of(&self.outcomes, &self.costs)
    }

    /// The fixed policy of least cost on the training window: the recommendation
    /// (none when the host cannot serve the traffic).
    pub fn recommended(&self) -> Option<usize> {
        if self.overload.is_some() {
            return None;
        }
        best_of(&self.outcomes, &self.train_costs)
    }

    /// The fixed policy of least cost after the training window, in hindsight (none
    /// when too little traffic came after it, or the host cannot serve it).
    pub fn best_fixed_test(&self) -> Option<usize> {
        if self.too_little_after_split() || self.overload.is_some() {
            return None;
        }
        best_of(&self.outcomes, &self.test_costs)
    }

    /// Requests that arrived after the training window.
    pub fn test_requests(&self) -> u64 {
        self.outcomes.first().map_or(0, |o| {
            o.models
                .iter()
                .map(|m| m.requests.saturating_sub(m.train.requests))
                .sum()
        })
    }

    /// Whether a split was asked for and fewer than [`MIN_TEST_REQUESTS`] came after it.
    pub fn too_little_after_split(&self) -> bool {
        self.has_split() && self.test_requests() < MIN_TEST_REQUESTS
    }

    /// Whether a training window was asked for (a share below 1).
    pub fn has_split(&self) -> bool {
        self.train < 1.0
    }
}

fn best_of(outcomes: &[PolicyOutcome], costs: &[PolicyCost]) -> Option<usize> {
    (0..outcomes.len())
        .filter(|&i| outcomes[i].policy.is_fixed())
        .min_by(|&a, &b| costs[a].total.total_cmp(&costs[b].total))
}

/// The replayed models of `scan` on `host`: input names that resolve to one catalogue
/// entry are one model (the first name stands for it). Returns the figures and, per
/// input model, its replayed model. An error names every model the host lacks.
pub fn resolve_models(
    scan: &Scan,
    host: &Host,
    cost: &CostSettings,
) -> std::result::Result<(Vec<ModelFigures>, Vec<u32>), String> {
    let mut figures: Vec<ModelFigures> = Vec::new();
    let mut positions: Vec<usize> = Vec::new();
    let mut unit_of = Vec::new();
    let mut missing = Vec::new();
    for (i, name) in scan.models.iter().enumerate() {
        let Some(pos) = host.catalogue.position(name) else {
            missing.push(name.clone());
            unit_of.push(0);
            continue;
        };
        match positions.iter().position(|&p| p == pos) {
            Some(u) => unit_of.push(u as u32),
            None => {
                let ctx = scan.model_ctx.get(i).copied().flatten();
                let Some(f) = host.figures(name, ctx, cost) else {
                    missing.push(name.clone());
                    unit_of.push(0);
                    continue;
                };
                positions.push(pos);
                unit_of.push(figures.len() as u32);
                figures.push(f);
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the host does not have {}: use models of `kabench models`, or --calibrate from a run folder that measured them",
            crate::traffic::some_names(missing.iter().map(String::as_str))
        ));
    }
    Ok((figures, unit_of))
}

/// Which part of a replay to price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it.
    Whole,
    /// The training window.
    Train,
    /// After the training window.
    Test,
}

/// Cost of one outcome (or a part of it) under `cost`, with each model's penalty.
pub fn price(
    outcome: &PolicyOutcome,
    models: &[ModelFigures],
    cost: &CostSettings,
    part: Part,
) -> PolicyCost {
    let mut c = PolicyCost::default();
    // `optimum::model_cost` is the same sum for one model.
    for (o, f) in outcome.models.iter().zip(models) {
        let (cold, gpu, ram) = match part {
            Part::Whole => (o.cold_loads, o.idle_gpu_gb_s, o.idle_ram_gb_s),
            Part::Train => (
                o.train.cold_loads,
                o.train.idle_gpu_gb_s,
                o.train.idle_ram_gb_s,
            ),
            Part::Test => (
                o.cold_loads - o.train.cold_loads,
                o.idle_gpu_gb_s - o.train.idle_gpu_gb_s,
                o.idle_ram_gb_s - o.train.idle_ram_gb_s,
            ),
        };
        c.cold += cold as f64 * f.penalty_s * cost.wait_second;
        c.vram += gpu.max(0.0) / 3600.0 * cost.vram_gb_hour;
        c.ram += ram.max(0.0) / 3600.0 * cost.ram_gb_hour;
    }
    c.total = c.cold + c.vram + c.ram;
    c
}

/// Replays `log` through every policy of `opts` on `host`; `models` and `unit_of`
/// come from [`resolve_models`].
pub fn predict(
    log: &dyn Source,
    host: &Host,
    models: &[ModelFigures],
    unit_of: &[u32],
    opts: &PredictOptions,
) -> Result<Prediction> {
    let started = Instant::now();
    let scan = log.scan().clone();
    let replay_models: Vec<ReplayModel> = models
        .iter()
        .filter_map(|f| {
            let spec = host.catalogue.resolve(&f.model)?.clone();
            Some(ReplayModel {
                name: f.model.clone(),
                spec,
                break_even_s: f.break_even_s,
                load_s: f.load_s,
            })
        })
        .collect();
    let settings = ReplaySettings {
        prompt_tokens: opts.prompt_tokens,
        output_tokens: opts.output_tokens,
        cold_threshold: opts.cold_threshold,
        sent: scan.keep_alives.clone(),
        split_s: scan.span_s * opts.train.clamp(0.0, 1.0),
    };
    let new_replay =
        |p: &Policy| replay::Replay::new(p.clone(), host, replay_models.clone(), settings.clone());
    // First pass: every policy but the optimum.
    let first: Vec<Policy> = opts
        .policies
        .iter()
        .filter(|p| **p != Policy::Optimum)
        .cloned()
        .collect();
    // The fixed keep_alives from the gaps, where nothing competes (one model, no
    // request queued behind another); the scheduler replays the rest.
    let fast_fixed = if models.len() == 1 && scan.rows >= opts.fast_min_rows {
        let fixed: Vec<Policy> = first.iter().filter(|p| p.is_fixed()).cloned().collect();
        fast::fixed_outcomes_on(
            log,
            host,
            &models[0],
            &fixed,
            opts.prompt_tokens,
            opts.output_tokens,
            settings.split_s,
        )?
    } else {
        None
    };
    let slow: Vec<&Policy> = first
        .iter()
        .filter(|p| fast_fixed.is_none() || !p.is_fixed())
        .collect();
    let mut replays: Vec<replay::Replay> = slow.iter().map(|p| new_replay(p)).collect();
    let logged = log.logged_unloads();
    let checked = logged.and_then(|_| first.iter().position(|p| *p == Policy::AsSent));
    if logged.is_some()
        && let Some(i) = slow.iter().position(|p| **p == Policy::AsSent)
    {
        replays[i].record_unloads();
    }
    // The pre-load bound looks ahead as far as the longest finite break-even time.
    let t_stars = models.iter().map(|f| f.break_even_s);
    let window = if first.contains(&Policy::PreloadBound) {
        t_stars.flatten().fold(0.0, f64::max)
    } else {
        0.0
    };
    let pass = Pass {
        log,
        unit_of,
        models: models.len(),
        progress: opts.progress,
    };
    let (slow_outcomes, gap_counts) = pass.run(replays, window, slow.len())?;
    // Back in the policies' order.
    let mut fast_iter = fast_fixed.iter().flatten().cloned();
    let mut slow_iter = slow_outcomes.into_iter();
    let mut outcomes: Vec<PolicyOutcome> = Vec::with_capacity(first.len());
    for p in &first {
        let next = if fast_fixed.is_some() && p.is_fixed() {
            fast_iter.next()
        } else {
            slow_iter.next()
        };
        outcomes.extend(next);
    }
    let costs_of = |outcomes: &[PolicyOutcome], part| -> Vec<PolicyCost> {
        outcomes
            .iter()
            .map(|o| price(o, models, &opts.cost, part))
            .collect()
    };
    // Second pass: the optimum, its thresholds set by the best fixed value of the first.
    let optimum = opts.policies.iter().position(|p| *p == Policy::Optimum);
    let mut optimum_hold = Vec::new();
    let mut optimum_fallback = Vec::new();
    if let Some(at) = optimum {
        let best = best_of(&outcomes, &costs_of(&outcomes, Part::Whole));
        let best_s = best.and_then(|b| match &outcomes[b].policy {
            Policy::Fixed(k) => Some(k.seconds_or_infinity()),
            _ => None,
        });
        optimum_hold = optimum::hold_thresholds(models, best_s);
        let mut rep = new_replay(&Policy::Optimum);
        rep.set_optimum_hold(&optimum_hold);
        let window = optimum_hold
            .iter()
            .flatten()
            .fold(0.0, |a: f64, b| a.max(*b));
        let (mut o, _) = pass.run(vec![rep], window, 1)?;
        let mut opt = o.remove(0);
        if let Some(b) = best {
            optimum_fallback = optimum::guard(&mut opt, &outcomes[b], models, &opts.cost);
        }
        outcomes.insert(at.min(outcomes.len()), opt);
    }
    let (costs, train_costs, test_costs) = (
        costs_of(&outcomes, Part::Whole),
        costs_of(&outcomes, Part::Train),
        costs_of(&outcomes, Part::Test),
    );
    let preload_bound = opts
        .policies
        .iter()
        .position(|p| *p == Policy::PreloadBound);
    // The checked replay's index among all the outcomes.
    let checked = checked.map(|i| match optimum {
        Some(at) if at <= i => i + 1,
        _ => i,
    });
    let names: Vec<String> = models.iter().map(|f| f.model.clone()).collect();
    let unload_check = checked.zip(logged).map(|(i, logged)| {
        let mut c = check::check(
            &outcomes[i].policy.name(),
            &outcomes[i].unload_events,
            logged,
            unit_of,
            &names,
            check::TOLERANCE_S,
        );
        if !c.agrees() && scan.keep_alives.is_empty() {
            c.hint = Some("what keep_alive each request sent is not in this log (no scheduler timer lines), so every request was replayed at the server's OLLAMA_KEEP_ALIVE: clients that send their own keep_alive need OLLAMA_DEBUG=1 on the server, or `kabench proxy` in front".into());
        }
        c
    });
    let overload = overload(&outcomes, models, scan.span_s, host.config.slots());
    Ok(Prediction {
        scan,
        models: models.to_vec(),
        outcomes,
        costs,
        train_costs,
        test_costs,
        train: opts.train.clamp(0.0, 1.0),
        optimum,
        optimum_hold,
        optimum_fallback,
        preload_bound,
        wall_s: started.elapsed().as_secs_f64(),
        gap_counts,
        unload_check,
        overload,
    })
}

/// One pass over the input.
struct Pass<'a> {
    log: &'a dyn Source,
    unit_of: &'a [u32],
    models: usize,
    progress: bool,
}

impl Pass<'_> {
    /// Replays every request through every one of `replays` in lockstep, reading ahead
    /// `window` seconds past each batch; returns their outcomes and, per replayed
    /// model, its inter-arrival gaps binned.
    fn run(
        &self,
        mut replays: Vec<replay::Replay>,
        window: f64,
        count: usize,
    ) -> Result<(Vec<PolicyOutcome>, Vec<[u64; policies::BINS]>)> {
        let scan = self.log.scan();
        let bar = progress_bar(self.progress, scan.rows, count);
        let mut input = self.log.requests()?;
        let mut ahead = Lookahead::new(self.models);
        let mut gap_counts = vec![[0u64; policies::BINS]; self.models];
        let mut last_arrival: Vec<Option<f64>> = vec![None; self.models];
        let mut buffer: VecDeque<Request> = VecDeque::new();
        let mut eof = false;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(replays.len())
            .max(1);
        loop {
            // Read a batch, and ahead of it as far as the window reaches.
            while !eof
                && buffer.len() < MAX_READ_AHEAD
                && (buffer.len() < BATCH
                    || buffer
                        .back()
                        .zip(buffer.get(BATCH - 1))
                        .is_some_and(|(last, edge)| last.t <= edge.t + window))
            {
                match input.next() {
                    Some(r) => {
                        let mut r = r?;
                        r.model = self.unit_of[r.model as usize];
                        let m = r.model as usize;
                        // A control call (an empty-prompt load or unload) is no arrival.
                        if r.kind == Kind::Serve {
                            ahead.push(m, r.t);
                            if let Some(prev) = last_arrival[m].replace(r.t) {
                                gap_counts[m][policies::bin_of(r.t - prev)] += 1;
                            }
                        }
                        buffer.push_back(r);
                    }
                    None => {
                        eof = true;
                        ahead.close();
                    }
                }
            }
            if buffer.is_empty() {
                break;
            }
            let n = buffer.len().min(BATCH);
            let batch: Vec<Request> = buffer.drain(..n).collect();
            run_batch(&mut replays, &batch, &ahead, threads);
            for r in batch.iter().filter(|r| r.kind == Kind::Serve) {
                ahead.pop(r.model as usize);
            }
            bar.inc(batch.len() as u64);
        }
        let outcomes = replays.into_iter().map(|r| r.finish(&ahead)).collect();
        bar.finish_and_clear();
        Ok((outcomes, gap_counts))
    }
}

/// Every replay takes the whole batch; the replays are spread over `threads`.
fn run_batch(replays: &mut [replay::Replay], batch: &[Request], ahead: &Lookahead, threads: usize) {
    if threads <= 1 {
        for rep in replays.iter_mut() {
            for r in batch {
                rep.arrive(r, ahead);
            }
        }
        return;
    }
    let per = replays.len().div_ceil(threads);
    std::thread::scope(|s| {
        for group in replays.chunks_mut(per) {
            s.spawn(move || {
                for rep in group {
                    for r in batch {
                        rep.arrive(r, ahead);
                    }
                }
            });
        }
    });
}

fn progress_bar(show: bool, rows: u64, policies: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(rows);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "replaying {{bar:30}} {{pos}}/{{len}} requests × {policies} policies ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
