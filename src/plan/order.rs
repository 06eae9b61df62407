//! What happens when the models are requested round-robin: the scheduler itself
//! (`sched::Scheduler`, the simulator's rules) replayed on a virtual clock, one request
//! at a time, each model with its own keep_alive (`keep_alives`), so that E3's victim
//! (the idle model with the shortest keep_alive) is the same on every server. The
//! result is the predicted timeline: which request loads cold and whom it evicts.

use std::time::Duration;

use serde::Serialize;

use crate::engine::catalogue::Catalogue;
use crate::engine::sched::{RequestKind, SchedConfig, SchedEvent, SchedRequest, Scheduler};
use crate::units::KeepAlive;

/// The keep_alive the round-robin gives the i-th model of the list: 10m, 11m, 12m, …
/// (distinct, so E3 picks the first listed idle model as the victim; long enough that
/// nothing expires during a check).
pub fn keep_alive_for(index: usize) -> KeepAlive {
    KeepAlive::from_duration(Duration::from_secs(600 + 60 * index as u64))
}

/// One request of the round-robin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Round, from 1.
    pub round: u32,
    /// The model requested (resolved name).
    pub model: String,
    /// Whether it had to be loaded.
    pub cold: bool,
    /// Models unloaded to make room for it (E3–E5), in order.
    pub evicted: Vec<String>,
    /// When it was sent, seconds from the first send (observed steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// Its `load_duration`, seconds (observed cold steps only): the reload time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_s: Option<f64>,
}

/// One model of the round-robin: its catalogue name and the num_ctx sent.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Catalogue name.
    pub model: String,
    /// `options.num_ctx` sent.
    pub num_ctx: u32,
}

/// Replays `rounds` rounds of one request per model in `turns` order, each sent after
/// the previous one ended (no two requests in flight), under `config` with the models
/// of `catalogue`; returns every request's outcome.
pub fn replay(
    config: &SchedConfig,
    catalogue: &Catalogue,
    turns: &[Turn],
    rounds: u32,
) -> Vec<Step> {
    let mut sched = Scheduler::new(config.clone(), catalogue.clone());
    let mut now = Duration::ZERO;
    let mut steps = Vec::new();
    let mut id = 0u64;
    for round in 1..=rounds {
        for (i, turn) in turns.iter().enumerate() {
            id += 1;
            let req = SchedRequest {
                id,
                model: turn.model.clone(),
                num_ctx: Some(turn.num_ctx),
                keep_alive: Some(keep_alive_for(i)),
                kind: RequestKind::Serve,
            };
            let mut step = Step {
                round,
                model: turn.model.clone(),
                cold: false,
                evicted: Vec::new(),
                at_s: None,
                load_s: None,
            };
            if sched.submit(now, req).is_err() {
                steps.push(step);
                continue;
            }
            // Advance until the request holds its model (a bounded number of wakeups).
            let mut dispatched = false;
            for _ in 0..10_000 {
                sched.advance(now);
                for ev in sched.drain_events() {
                    match ev {
                        SchedEvent::Dispatched { id: d, loaded, .. } if d == id => {
                            step.cold |= loaded;
                            dispatched = true;
                        }
                        SchedEvent::Unloaded {
                            model,
                            reason: "evicted",
                        } => step.evicted.push(
                            turns
                                .iter()
                                .find(|t| crate::ollama::name::same_model(&t.model, &model))
                                .map_or(model, |t| t.model.clone()),
                        ),
                        SchedEvent::Failed { id: d, .. } if d == id => dispatched = true,
                        _ => {}
                    }
                }
                if dispatched {
                    break;
                }
                match sched.next_wakeup() {
                    Some(t) => now = now.max(t),
                    None => break,
                }
            }
            sched.finish(now, id);
            now += Duration::from_secs(1);
            sched.advance(now);
            sched.drain_events();
            steps.push(step);
        }
    }
    steps
}

/// Evictions in a timeline.
pub fn evictions(steps: &[Step]) -> usize {
    steps.iter().map(|s| s.evicted.len()).sum()
}
