//! The keep_alive policies, and the arrivals read ahead that the clairvoyant ones look at.

use std::collections::VecDeque;

use crate::units::KeepAlive;

/// A keep_alive policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// The same keep_alive on every request, as written.
    Fixed(KeepAlive),
    /// What each client sent (the input's `keep_alive` column; none: the server default).
    AsSent,
    /// The keep_alive optimum, with hindsight, per model: hold it across an idle gap
    /// exactly when the gap is within its hold threshold (the break-even time T*, or the
    /// best fixed keep_alive when that is longer: [`super::optimum`]), unload it right
    /// after the request otherwise (E6); the scheduler's contention still applies.
    Optimum,
    /// The pre-load bound: a clairvoyant client that unloads after use and pre-warms
    /// just in time for the next arrival (or holds when that does not pay). Below what
    /// any keep_alive can reach; a yardstick, not the optimum.
    PreloadBound,
    /// A margin over a high percentile of the model's recent idle gaps (Shahrad et al.).
    Histogram,
    /// The keep_alive that would have cost least over the model's recent idle gaps.
    Adaptive,
    /// Unload after use and load with an empty prompt before the predicted arrival.
    PreWarm,
}

impl Policy {
    /// The name of its cell: the keep_alive as written, or the policy's name.
    pub fn name(&self) -> String {
        match self {
            Policy::Fixed(k) => k.written().to_string(),
            Policy::AsSent => "as-sent".to_string(),
            Policy::Optimum => "keep-alive-optimum".to_string(),
            Policy::PreloadBound => "pre-load-bound".to_string(),
            Policy::Histogram => "histogram".to_string(),
            Policy::Adaptive => "adaptive".to_string(),
            Policy::PreWarm => "pre-warm".to_string(),
        }
    }

    /// Whether a client can set it as one keep_alive value.
    pub fn is_fixed(&self) -> bool {
        matches!(self, Policy::Fixed(_))
    }
}

/// Future arrivals the replays may look at: per model, the arrival times read ahead
/// of the replays and not yet replayed by all of them (only the optimum and the
/// pre-load bound look).
#[derive(Debug, Clone, Default)]
pub struct Lookahead {
    per_model: Vec<VecDeque<f64>>,
    /// How far the input has been read: the latest arrival read ahead, or infinity once
    /// the input has ended. A model with no arrival read ahead up to some time may still
    /// get one later when this is short of that time.
    read_to: f64,
}

impl Lookahead {
    /// Room for `models` models.
    pub fn new(models: usize) -> Self {
        Lookahead {
            per_model: vec![VecDeque::new(); models],
            read_to: f64::NEG_INFINITY,
        }
    }

    /// Records a request read ahead.
    pub fn push(&mut self, model: usize, t: f64) {
        self.per_model[model].push_back(t);
        self.read_to = self.read_to.max(t);
    }

    /// Records that the input has ended: no arrival comes after those read ahead.
    pub fn close(&mut self) {
        self.read_to = f64::INFINITY;
    }

    /// Whether every arrival up to `t` has been read ahead.
    pub fn reaches(&self, t: f64) -> bool {
        self.read_to >= t
    }

    /// Forgets the oldest request of `model` (replayed by every policy).
    pub fn pop(&mut self, model: usize) {
        self.per_model[model].pop_front();
    }

    /// The first arrival of `model` at or after `t` among those read ahead.
    pub fn next_at_or_after(&self, model: usize, t: f64) -> Option<f64> {
        let q = &self.per_model[model];
        let i = q.partition_point(|&x| x < t);
        q.get(i).copied()
    }
}
