//! Every fixed keep_alive at once, without the scheduler, where nothing competes: one
//! model, and each request arriving after the previous one ended (no queue, no shared
//! slot, no eviction). Then a request is cold exactly when the model was never loaded
//! or its idle gap (from the previous request's end to this arrival) exceeded the
//! keep_alive k, and every figure follows from the gaps: idle memory min(gap, k) per
//! gap, a load of the host's load time before each cold request, the service after it.
//! One pass over the input keeps a few numbers per policy, so memory is flat in its
//! length and a month of traffic takes well under a second per policy.
//!
//! The input decides: the pass gives up (returns `None`) at the first request that
//! would arrive while another is in flight under some policy, at a second model or a
//! control call (an empty-prompt load or unload), and the full replay runs instead.
//! Loads take the host's mean load time (the scheduler's replay draws a jitter around
//! it), so the two agree to within that jitter.

use std::time::Duration;

use anyhow::Result;

use super::replay::{ModelOutcome, Policy, PolicyOutcome};
use super::{Host, ModelFigures};
use crate::analysis::MsHistogram;
use crate::traffic::{Kind, Source};

/// One fixed keep_alive's running state.
struct Lane {
    policy: Policy,
    /// keep_alive, seconds (infinity: forever).
    k: f64,
    out: ModelOutcome,
    ttft: MsHistogram,
    /// Loaded and held until this time (after the last request's end + k); `None`: not
    /// resident.
    until: Option<f64>,
    /// The last request's end.
    last_end: f64,
    loaded_once: bool,
}

/// What the pass needs about the model and the split.
pub struct FastModel<'a> {
    /// The model's figures (sizes, load times).
    pub figures: &'a ModelFigures,
    /// Its catalogue entry's prefill time per token count.
    pub prefill: &'a dyn Fn(u64) -> Duration,
    /// Its decode time per token count.
    pub decode: &'a dyn Fn(u64) -> Duration,
    /// Prompt tokens of a request whose input says none.
    pub prompt_tokens: u32,
    /// Output tokens of a request whose input says none.
    pub output_tokens: u32,
    /// Where the training window ends, seconds.
    pub split_s: f64,
}

impl Lane {
    fn new(policy: Policy) -> Lane {
        let k = match &policy {
            Policy::Fixed(k) => k.seconds_or_infinity(),
            _ => f64::INFINITY,
        };
        Lane {
            policy,
            k: if k < 0.0 { f64::INFINITY } else { k },
            out: ModelOutcome::default(),
            ttft: MsHistogram::new(),
            until: None,
            last_end: 0.0,
            loaded_once: false,
        }
    }

    /// Integrates `bytes` (GPU, RAM) held idle over [from, to), with its part before
    /// the split.
    fn idle(&mut self, from: f64, to: f64, gpu: f64, ram: f64, split: f64) {
        let dt = (to - from).max(0.0);
        if dt == 0.0 {
            return;
        }
        let o = &mut self.out;
        o.idle_gpu_gb_s += gpu * dt;
        o.idle_ram_gb_s += ram * dt;
        o.held_gpu_gb_s += gpu * dt;
        o.held_ram_gb_s += ram * dt;
        let before = (split.min(to) - from).max(0.0);
        o.train.idle_gpu_gb_s += gpu * before;
        o.train.idle_ram_gb_s += ram * before;
    }

    /// One request arriving at `a` served in `service` seconds after a load (if cold);
    /// `false` when it would arrive while the previous one is in flight.
    fn arrive(&mut self, a: f64, prefill: f64, service: f64, m: &FastModel<'_>) -> bool {
        if self.out.requests > 0 && a < self.last_end {
            return false;
        }
        let f = m.figures;
        let (gpu, ram) = (f.gpu_bytes as f64 / 1e9, f.ram_bytes as f64 / 1e9);
        let warm = self.until.is_some_and(|u| a <= u);
        if let Some(u) = self.until {
            let idle_to = if warm { a } else { u };
            self.idle(self.last_end, idle_to, gpu, ram, m.split_s);
            if !warm {
                self.out.expirations += 1;
            }
        }
        let train = a < m.split_s;
        let o = &mut self.out;
        o.requests += 1;
        if train {
            o.train.requests += 1;
        }
        let load = if warm {
            0.0
        } else {
            let l = if self.loaded_once {
                f.load_s
            } else {
                f.load_first_s
            };
            self.loaded_once = true;
            o.loads += 1;
            o.cold += 1;
            o.cold_loads += 1;
            if train {
                o.train.cold += 1;
                o.train.cold_loads += 1;
            }
            o.load.record_ms(l * 1000.0);
            l
        };
        let dispatch = a + load;
        let end = dispatch + service;
        o.busy_s += service;
        o.held_gpu_gb_s += gpu * service;
        o.held_ram_gb_s += ram * service;
        let ttft = (load + prefill.min(service)) * 1000.0;
        let e2e = (load + service) * 1000.0;
        let group = if warm { 1 } else { 2 };
        self.ttft.record_ms(ttft);
        for g in [0, group] {
            o.ttft[g].record_ms(ttft);
            o.e2e[g].record_ms(e2e);
        }
        self.last_end = end;
        // keep_alive 0 unloads at the end; a finite k expires k after it.
        self.until = (self.k > 0.0).then_some(end + self.k);
        if self.k == 0.0 {
            self.out.expirations += 1;
        }
        true
    }

    fn finish(self, figures: &ModelFigures) -> PolicyOutcome {
        let loaded = self.out.loads > 0;
        PolicyOutcome {
            policy: self.policy,
            models: vec![self.out],
            horizon_s: self.last_end,
            peak_bytes: if loaded { figures.resident_bytes } else { 0 },
            peak_ram_bytes: if loaded { figures.ram_bytes } else { 0 },
            ttft: self.ttft,
            unload_events: Vec::new(),
        }
    }
}

/// The outcomes of the fixed `policies` over `log`, in their order, computed from the
/// gaps; `None` when the input has more than one model, a control call, or a request
/// that would queue behind another (the scheduler's replay is needed then).
pub fn fixed_outcomes(
    log: &dyn Source,
    policies: &[Policy],
    model: &FastModel<'_>,
) -> Result<Option<Vec<PolicyOutcome>>> {
    if log.scan().models.len() != 1 || policies.iter().any(|p| !p.is_fixed()) {
        return Ok(None);
    }
    let mut lanes: Vec<Lane> = policies.iter().cloned().map(Lane::new).collect();
    for r in log.requests()? {
        let r = r?;
        if r.kind != Kind::Serve || r.model != 0 {
            return Ok(None);
        }
        let prefill = (model.prefill)(u64::from(r.prompt_tokens.unwrap_or(model.prompt_tokens)))
            .as_secs_f64();
        let service = match r.service_s.filter(|s| s.is_finite() && *s >= 0.0) {
            Some(s) => s,
            None => {
                prefill
                    + (model.decode)(u64::from(r.output_tokens.unwrap_or(model.output_tokens)))
                        .as_secs_f64()
            }
        };
        let a = r.t.max(0.0);
        for lane in &mut lanes {
            if !lane.arrive(a, prefill, service, model) {
                return Ok(None);
            }
        }
    }
    Ok(Some(
        lanes.into_iter().map(|l| l.finish(model.figures)).collect(),
    ))
}

/// [`fixed_outcomes`] for the one model of `log` on `host`.
pub fn fixed_outcomes_on(
    log: &dyn Source,
    host: &Host,
    figures: &ModelFigures,
    policies: &[Policy],
    prompt_tokens: u32,
    output_tokens: u32,
    split_s: f64,
) -> Result<Option<Vec<PolicyOutcome>>> {
    let Some(spec) = host.catalogue.resolve(&figures.model) else {
        return Ok(None);
    };
    let prefill = |n: u64| spec.prefill_time(n);
    let decode = |n: u64| spec.decode_time(n);
    let model = FastModel {
        figures,
        prefill: &prefill,
        decode: &decode,
        prompt_tokens,
        output_tokens,
        split_s,
    };
    fixed_outcomes(log, policies, &model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim_settings::SimSettings;
    use crate::predict::{PredictOptions, fixed_policies, predict, resolve_models};
    use crate::scenario::CostSettings;
    use crate::traffic::request_log::{ReadOptions, RequestLog};

    const MODEL: &str = "qwen2.5:7b-instruct-q4_K_M";

    fn host() -> Host {
        let settings = SimSettings {
            load_jitter: Some(0.0),
            ..SimSettings::default()
        };
        Host::new(&settings, 1, "test").unwrap()
    }

    fn log(dir: &std::path::Path, arrivals: &[f64]) -> RequestLog {
        let mut text = String::from("timestamp,model,prompt_tokens,output_tokens\n");
        for t in arrivals {
            text.push_str(&format!("{t:.3},{MODEL},100,20\n"));
        }
        let path = dir.join("in.csv");
        std::fs::write(&path, text).unwrap();
        RequestLog::open(&path, ReadOptions::default()).unwrap()
    }

    fn opts(fast_min_rows: u64) -> PredictOptions {
        PredictOptions {
            policies: fixed_policies(&[], true),
            cost: CostSettings::default(),
            prompt_tokens: 100,
            output_tokens: 20,
            cold_threshold: Duration::from_millis(500),
            progress: false,
            train: 0.5,
            fast_min_rows,
        }
    }

    /// Gaps from seconds to hours, none shorter than a cold load and its answer: every
    /// fixed keep_alive's cold starts are the scheduler's, and its costs agree with it
    /// to within the few ms a warm request's hand-over takes there.
    #[test]
    fn from_the_gaps_agrees_with_the_scheduler_where_nothing_competes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = 0.0;
        let mut x = 7u64;
        let mut arrivals = Vec::new();
        for _ in 0..400 {
            arrivals.push(t);
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // Log-uniform from 20 s to about 3 h.
            t += 20.0 * 500f64.powf(u);
        }
        let host = host();
        let log = log(dir.path(), &arrivals);
        let cost = CostSettings::default();
        let (models, unit_of) = resolve_models(log.scan(), &host, &cost).unwrap();
        let fast = predict(&log, &host, &models, &unit_of, &opts(0)).unwrap();
        let slow = predict(&log, &host, &models, &unit_of, &opts(u64::MAX)).unwrap();
        assert_eq!(fast.outcomes.len(), slow.outcomes.len());
        let mut differs = 0;
        for i in 0..fast.outcomes.len() {
            let (f, s) = (&fast.outcomes[i].models[0], &slow.outcomes[i].models[0]);
            let name = fast.outcomes[i].policy.name();
            assert_eq!(name, slow.outcomes[i].policy.name());
            assert_eq!((f.requests, f.cold), (s.requests, s.cold), "{name}");
            assert_eq!(f.cold_loads, s.cold_loads, "{name}");
            assert_eq!(f.train.cold_loads, s.train.cold_loads, "{name}");
            let (cf, cs) = (fast.costs[i].total, slow.costs[i].total);
            assert!(
                (cf - cs).abs() <= 0.005 * cs.max(1e-9),
                "{name}: {cf} vs {cs}"
            );
            let (tf, ts) = (fast.test_costs[i].total, slow.test_costs[i].total);
            assert!(
                (tf - ts).abs() <= 0.005 * ts.max(1e-9),
                "{name}: {tf} vs {ts}"
            );
            differs += usize::from(f.cold != fast.outcomes[0].models[0].cold);
        }
        // The thresholds did make a difference.
        assert!(differs > 5, "{differs}");
        assert_eq!(
            fast.best_fixed().map(|b| fast.outcomes[b].policy.name()),
            slow.best_fixed().map(|b| slow.outcomes[b].policy.name())
        );
    }

    /// A request arriving while the previous one is in flight: the pass gives up and
    /// the scheduler replays the input.
    #[test]
    fn overlapping_requests_are_left_to_the_scheduler() {
        let dir = tempfile::tempdir().unwrap();
        let host = host();
        let log = log(dir.path(), &[0.0, 100.0, 100.5, 300.0]);
        let cost = CostSettings::default();
        let (models, _) = resolve_models(log.scan(), &host, &cost).unwrap();
        let fixed = fixed_policies(&[], false);
        let got = fixed_outcomes_on(&log, &host, &models[0], &fixed, 100, 20, 0.0).unwrap();
        assert!(got.is_none());
        let log = log_apart(dir.path());
        let got = fixed_outcomes_on(&log, &host, &models[0], &fixed, 100, 20, 0.0).unwrap();
        assert_eq!(got.unwrap().len(), fixed.len());
    }

    fn log_apart(dir: &std::path::Path) -> RequestLog {
        log(dir, &[0.0, 100.0, 200.0, 300.0])
    }
}
