//! What a `--check` run folder shows: its rows (`requests.csv`) and `/api/ps` samples
//! (`vram.csv`) read back into the round-robin timeline the planner predicts (which
//! request loaded cold, which models left `/api/ps` while it loaded), and the two
//! compared request by request. Reads typed records only; knows nothing of how they
//! were made.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::Step;
use crate::folder::{RequestRecord, VramSample};
use crate::ollama::name;

/// The `/api/ps` listing at one poll: the models resident.
fn polls(samples: &[VramSample]) -> Vec<(f64, BTreeSet<String>)> {
    let mut out: Vec<(f64, BTreeSet<String>)> = Vec::new();
    for s in samples.iter().filter(|s| s.source == "ollama_ps") {
        if out.last().is_none_or(|(t, _)| *t != s.t_ms) {
            out.push((s.t_ms, BTreeSet::new()));
        }
        if !s.model.is_empty()
            && let Some((_, set)) = out.last_mut()
        {
            set.insert(name::key(&s.model));
        }
    }
    out
}

/// A load ends at least this long after the load a request waited on, when the
/// request made a load of its own (a load_duration of 100 ms is a load: M6).
const OWN_LOAD_MS: f64 = 100.0;

/// Which rows (in `rows`' order, sorted by send time) made a load: a cold row counts
/// unless it was sent while an earlier load was in progress and its own
/// `load_duration` ended within [`OWN_LOAD_MS`] of that load's end. Ollama counts
/// the time a request waits on another's load in its `load_duration`, so such a row
/// looks cold but loaded nothing (the server logged one load for both).
pub fn made_load(rows: &[&RequestRecord]) -> Vec<bool> {
    let mut loads: Vec<(f64, f64)> = Vec::new();
    rows.iter()
        .map(|r| {
            if !r.cold {
                return false;
            }
            let sent = r.sent_ms.unwrap_or(r.intended_ms);
            let Some(load) = r.load_duration_ms else {
                return true;
            };
            let end = sent + load;
            let waited = loads
                .iter()
                .any(|&(s, e)| s <= sent && sent < e && end - e < OWN_LOAD_MS);
            if waited {
                return false;
            }
            loads.push((sent, end));
            true
        })
        .collect()
}

/// The most models `/api/ps` listed at once in a run: with an eviction seen on a
/// CPU-only host, where only `OLLAMA_MAX_LOADED_MODELS` evicts, the cap itself (the
/// scheduler unloads the victim before the new model loads, so the listing never
/// holds one more).
pub fn most_resident(samples: &[VramSample]) -> usize {
    polls(samples)
        .iter()
        .map(|(_, set)| set.len())
        .max()
        .unwrap_or(0)
}

/// The observed timeline: one step per row of the check's round-robin (in send order,
/// `models.len()` rows per round), its name mapped back to the plan's; a model counts
/// as evicted by a cold request when `/api/ps` listed it at the last poll before the
/// send and not at the first poll after its load (send + `load_duration`).
pub fn observed(models: &[String], rows: &[RequestRecord], samples: &[VramSample]) -> Vec<Step> {
    let polls = polls(samples);
    let plan_name = |n: &str| {
        models
            .iter()
            .find(|m| name::same_model(m, n))
            .cloned()
            .unwrap_or_else(|| n.to_string())
    };
    let before = |t: f64| {
        polls
            .iter()
            .rev()
            .find(|(p, _)| *p <= t)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    let after = |t: f64| polls.iter().find(|(p, _)| *p >= t).map(|(_, s)| s.clone());
    let mut rows: Vec<&RequestRecord> = rows.iter().collect();
    rows.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    let per_round = models.len().max(1);
    let first = rows
        .first()
        .map_or(0.0, |r| r.sent_ms.unwrap_or(r.intended_ms));
    let made_load = made_load(&rows);
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let cold = made_load[i];
            let own = name::key(&r.model);
            // Victims leave /api/ps before the load ends (E4): read it once the model is
            // handed over, before a later request can change it.
            let sent = r.sent_ms.unwrap_or(r.intended_ms);
            let loaded = r
                .load_duration_ms
                .map(|l| sent + l)
                .or(r.first_byte_ms)
                .unwrap_or(r.end_ms);
            let evicted = match (cold, after(loaded)) {
                (true, Some(after)) => before(r.sent_ms.unwrap_or(r.intended_ms))
                    .difference(&after)
                    .filter(|k| **k != own)
                    .map(|k| plan_name(k))
                    .collect(),
                _ => Vec::new(),
            };
            Step {
                round: (i / per_round) as u32 + 1,
                model: plan_name(&r.model),
                cold,
                evicted,
                at_s: Some((r.sent_ms.unwrap_or(r.intended_ms) - first) / 1000.0),
                load_s: r.load_duration_ms.filter(|_| cold).map(|ms| ms / 1000.0),
            }
        })
        .collect()
}

/// Requests (1-based, in send order) still running when the next one was sent: the
/// round-robin assumes one at a time, so a longer gap is needed.
pub fn overlapping(rows: &[RequestRecord]) -> Vec<usize> {
    let mut rows: Vec<&RequestRecord> = rows.iter().collect();
    rows.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    rows.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0].end_ms > w[1].sent_ms.unwrap_or(w[1].intended_ms))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Predicted against observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The planner's timeline.
    pub predicted: Vec<Step>,
    /// The run's.
    pub observed: Vec<Step>,
    /// Requests where the two differ (cold/warm or the models evicted), by index.
    pub differences: Vec<usize>,
}

impl Comparison {
    /// Compares two timelines request by request (evicted models as sets).
    pub fn of(predicted: Vec<Step>, observed: Vec<Step>) -> Comparison {
        let n = predicted.len().max(observed.len());
        let differences = (0..n)
            .filter(|&i| match (predicted.get(i), observed.get(i)) {
                (Some(p), Some(o)) => {
                    let set = |s: &Step| s.evicted.iter().cloned().collect::<BTreeSet<_>>();
                    p.model != o.model || p.cold != o.cold || set(p) != set(o)
                }
                _ => true,
            })
            .collect();
        Comparison {
            predicted,
            observed,
            differences,
        }
    }

    /// Whether every request went as predicted.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }

    /// Predicted vs observed, round by round, for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let count = |s: &[Step]| {
            (
                s.iter().filter(|x| x.cold).count(),
                s.iter().map(|x| x.evicted.len()).sum::<usize>(),
            )
        };
        let (pc, pe) = count(&self.predicted);
        let (oc, oe) = count(&self.observed);
        let rounds = self
            .predicted
            .iter()
            .chain(&self.observed)
            .map(|s| s.round)
            .max()
            .unwrap_or(0);
        for round in 1..=rounds {
            let of = |s: &[Step]| -> String {
                let steps: Vec<&Step> = s.iter().filter(|x| x.round == round).collect();
                super::render::timeline(&steps)
            };
            let _ = writeln!(out, "round {round} predicted: {}", of(&self.predicted));
            let _ = writeln!(out, "round {round} observed:  {}", of(&self.observed));
        }
        let _ = writeln!(
            out,
            "predicted {pc} cold loads and {pe} evictions; observed {oc} cold loads and {oe} evictions: {}",
            if self.matches() {
                "every request as predicted".to_string()
            } else {
                format!(
                    "{} request(s) differ (#{})",
                    self.differences.len(),
                    self.differences
                        .iter()
                        .map(|i| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", #")
                )
            }
        );
        out
    }
}
