//! The keep_alive optimum every policy of `predict` is read against ("×optimum").
//!
//! Per model, with hindsight, each idle gap (from a request's end, with nothing else of
//! the model in flight, to its next arrival) is decided alone: holding the model across
//! a gap of g seconds costs g × its hold cost per second, unloading it right after the
//! request costs one cold start; the two are equal at the break-even time T*
//! (`ModelFigures::break_even_s`). So the optimum holds across a gap iff it is at most
//! T* (at T* itself both cost the same, and holding saves the cold start), and unloads
//! right after the request otherwise.
//!
//! A fixed keep_alive k pays min(g, k) for a gap it holds through and k + T* for one it
//! does not, so per gap the optimum never costs more than any fixed value. It goes cold
//! on every gap longer than T*, though, where a fixed k > T* stays warm up to k; so that
//! the yardstick never counts more cold starts than the best fixed keep_alive k*, its
//! hold threshold is max(T*, k*): it then holds through every gap k* holds through
//! (paying the gap, as k* does) and pays T* < k* + T* on the others.
//!
//! The optimum is replayed through the same scheduler as every policy, so a model it
//! holds can still be evicted when another must load. Should that contention leave a
//! model with more cold starts, or a higher cost, than under the best fixed keep_alive,
//! that model's figures are the best fixed keep_alive's ([`guard`]): the guarantee then
//! holds by construction, and the models it applied to are named.

use crate::scenario::CostSettings;

use super::host::ModelFigures;
use super::replay::{ModelOutcome, PolicyOutcome};

/// Whether the optimum holds a model across an idle gap of `gap` seconds (`None`: no
/// next arrival, nothing to hold for) given its hold `threshold`: iff the gap is at
/// most the threshold.
pub fn holds(gap: Option<f64>, threshold: f64) -> bool {
    gap.is_some_and(|g| g <= threshold)
}

/// The hold threshold per model, seconds (`None`: hold forever, holding costs nothing
/// or the best fixed keep_alive is forever): max(T*, the best fixed keep_alive).
pub fn hold_thresholds(models: &[ModelFigures], best_fixed_s: Option<f64>) -> Vec<Option<f64>> {
    models
        .iter()
        .map(|f| {
            let t = f.break_even_s?.max(best_fixed_s.unwrap_or(0.0).max(0.0));
            t.is_finite().then_some(t)
        })
        .collect()
}

/// Cost of one model's outcome under `cost`, as `super::price` sums it.
pub fn model_cost(o: &ModelOutcome, f: &ModelFigures, cost: &CostSettings) -> f64 {
    o.cold_loads as f64 * f.penalty_s * cost.wait_second
        + o.idle_gpu_gb_s.max(0.0) / 3600.0 * cost.vram_gb_hour
        + o.idle_ram_gb_s.max(0.0) / 3600.0 * cost.ram_gb_hour
}

/// Holds the optimum to its guarantee against the best fixed keep_alive's replay: a
/// model that came out of the optimum's replay with more reloads, or a higher cost,
/// takes the best fixed keep_alive's figures. Returns the models it applied to.
pub fn guard(
    optimum: &mut PolicyOutcome,
    best_fixed: &PolicyOutcome,
    models: &[ModelFigures],
    cost: &CostSettings,
) -> Vec<usize> {
    let mut fell_back = Vec::new();
    for (m, f) in models.iter().enumerate() {
        let (Some(o), Some(b)) = (optimum.models.get(m), best_fixed.models.get(m)) else {
            continue;
        };
        let (co, cb) = (model_cost(o, f, cost), model_cost(b, f, cost));
        if o.cold_loads > b.cold_loads || co > cb + 1e-9 * cb.abs().max(1.0) {
            optimum.models[m] = b.clone();
            fell_back.push(m);
        }
    }
    fell_back
}

/// The optimum's rule for people, with each model's threshold.
pub fn rule(models: &[ModelFigures], hold: &[Option<f64>], best_fixed: Option<&str>) -> String {
    let per: Vec<String> = models
        .iter()
        .zip(hold)
        .map(|(f, h)| {
            let th = h.map_or("forever".to_string(), crate::recommend::format_seconds);
            let why = match (f.break_even_s, h) {
                (None, _) => "holding costs nothing".to_string(),
                (Some(t), Some(h)) if *h > t => format!(
                    "the best fixed keep_alive {}, longer than T* = {}",
                    best_fixed.unwrap_or("?"),
                    crate::recommend::format_seconds(t)
                ),
                (Some(_), None) => format!(
                    "the best fixed keep_alive {}, longer than T*",
                    best_fixed.unwrap_or("?")
                ),
                _ => "T*".to_string(),
            };
            format!("{} {th} ({why})", f.model)
        })
        .collect();
    format!(
        "with hindsight, per model and idle gap: hold the model across the gap iff it is at most the threshold, unload right after the request otherwise; thresholds: {}. Not settable (needs the next arrival)",
        per.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::sim_settings::SimSettings;
    use crate::predict::replay::{Lookahead, Policy, Replay, ReplayModel, ReplaySettings};
    use crate::predict::{Host, PredictOptions, fixed_policies, predict, resolve_models};
    use crate::traffic::Request;

    const MODEL: &str = "qwen2.5:7b-instruct-q4_K_M";

    fn host() -> Host {
        let mut h = Host::new(&SimSettings::default(), 1, "test").unwrap();
        h.config.load_jitter = 0.0;
        h
    }

    /// A host whose GPU holds one of the 7B and the 14B at a time.
    fn small_host(seed: u64) -> Host {
        let settings = SimSettings {
            vram: Some("12GiB".into()),
            ..SimSettings::default()
        };
        Host::new(&settings, seed, "test").unwrap()
    }

    fn figures(host: &Host, name: &str) -> ModelFigures {
        host.figures(name, None, &CostSettings::default()).unwrap()
    }

    fn request(t: f64, model: u32, service_s: f64) -> Request {
        Request {
            t,
            model,
            prompt_tokens: Some(1),
            output_tokens: Some(1),
            num_ctx: None,
            client: None,
            keep_alive: None,
            service_s: Some(service_s),
            kind: crate::traffic::Kind::Serve,
        }
    }

    /// Replays `arrivals` of one model (each served in 1 s) under `policy` with the
    /// optimum's threshold `hold`.
    fn replay_one(arrivals: &[f64], policy: Policy, hold: Option<f64>) -> PolicyOutcome {
        let host = host();
        let f = figures(&host, MODEL);
        let model = ReplayModel {
            name: f.model.clone(),
            spec: host.catalogue.resolve(MODEL).unwrap().clone(),
            break_even_s: f.break_even_s,
            load_s: f.load_s,
        };
        let settings = ReplaySettings {
            prompt_tokens: 1,
            output_tokens: 1,
            cold_threshold: Duration::from_millis(500),
            sent: Vec::new(),
            split_s: 0.0,
        };
        let mut rep = Replay::new(policy, &host, vec![model], settings);
        rep.set_optimum_hold(&[hold]);
        let mut ahead = Lookahead::new(1);
        for &t in arrivals {
            ahead.push(0, t);
        }
        ahead.close();
        for &t in arrivals {
            rep.arrive(&request(t, 0, 1.0), &ahead);
        }
        rep.finish(&ahead)
    }

    /// Arrivals whose idle gaps (from a request's end to the next arrival) are `gaps`
    /// (to within the few ms of a warm `load_duration`): a request ends 1 s after its
    /// model is ready, the first load reads from a cold disk, a later one from the page
    /// cache.
    fn arrivals_for(gaps: &[f64], threshold: f64, f: &ModelFigures) -> Vec<f64> {
        let mut t = 0.0;
        let mut out = vec![t];
        let mut load = f.load_first_s;
        for g in gaps {
            t += load + 1.0 + g;
            out.push(t);
            load = if *g > threshold { f.load_s } else { 0.0 };
        }
        out
    }

    /// Cold starts, unloads, expirations + evictions, idle GB·s of model 0.
    fn brief(o: &PolicyOutcome) -> (u64, u64, u64, f64) {
        let m = &o.models[0];
        (
            m.cold,
            m.unloads,
            m.expirations + m.evictions,
            m.idle_gpu_gb_s + m.idle_ram_gb_s,
        )
    }

    #[test]
    fn a_gap_not_yet_read_ahead_is_held_not_unloaded() {
        // The first request ends before the input has been read as far as its end plus
        // the threshold: the next arrival is unknown, so the model stays as its
        // keep_alive keeps it, and the second request (well within the threshold) is
        // warm. Once the input has ended, an unknown next arrival means none: unload.
        let host = host();
        let f = figures(&host, MODEL);
        let model = ReplayModel {
            name: f.model.clone(),
            spec: host.catalogue.resolve(MODEL).unwrap().clone(),
            break_even_s: f.break_even_s,
            load_s: f.load_s,
        };
        let settings = ReplaySettings {
            prompt_tokens: 1,
            output_tokens: 1,
            cold_threshold: Duration::from_millis(500),
            sent: Vec::new(),
            split_s: 0.0,
        };
        let mut rep = Replay::new(Policy::Optimum, &host, vec![model], settings);
        rep.set_optimum_hold(&[Some(60.0)]);
        let second = f.load_first_s + 1.0 + 10.0;
        let mut ahead = Lookahead::new(1);
        ahead.push(0, 0.0);
        rep.arrive(&request(0.0, 0, 1.0), &ahead);
        // The first request ends while only its own arrival has been read.
        rep.arrive(&request(second, 0, 1.0), &ahead);
        ahead.push(0, second);
        ahead.close();
        let o = rep.finish(&ahead);
        let (cold, unloads, _, _) = brief(&o);
        assert_eq!(cold, 1, "the second request found the model held");
        assert_eq!(unloads, 1, "unloaded once, after the last request");
    }

    #[test]
    fn the_decision_holds_iff_the_gap_is_at_most_the_threshold() {
        assert!(holds(Some(10.0), 60.0));
        assert!(
            holds(Some(60.0), 60.0),
            "at T* holding costs the same, one cold fewer"
        );
        assert!(!holds(Some(60.001), 60.0));
        assert!(!holds(Some(600.0), 60.0));
        assert!(!holds(None, 60.0), "nothing comes: unload");
        assert!(holds(Some(0.0), 0.0));
    }

    #[test]
    fn thresholds_are_t_star_or_the_longer_best_fixed_value() {
        let host = host();
        let f = figures(&host, MODEL);
        let t = f.break_even_s.unwrap();
        let models = vec![f.clone()];
        assert_eq!(hold_thresholds(&models, None), vec![Some(t)]);
        assert_eq!(hold_thresholds(&models, Some(0.0)), vec![Some(t)]);
        assert_eq!(hold_thresholds(&models, Some(t / 2.0)), vec![Some(t)]);
        assert_eq!(hold_thresholds(&models, Some(t * 3.0)), vec![Some(t * 3.0)]);
        assert_eq!(hold_thresholds(&models, Some(f64::INFINITY)), vec![None]);
        let free = ModelFigures {
            break_even_s: None,
            ..f
        };
        assert_eq!(hold_thresholds(&[free], Some(0.0)), vec![None]);
    }

    #[test]
    fn the_optimum_holds_below_t_star_and_unloads_above() {
        let host = host();
        let f = figures(&host, MODEL);
        let t = f.break_even_s.unwrap();
        assert!((30.0..120.0).contains(&t), "{t}");
        // Two gaps well below T*, two well above, one below again.
        let gaps = [t * 0.2, t * 0.5, t * 3.0, t * 10.0, t * 0.3];
        let arrivals = arrivals_for(&gaps, t, &f);
        let (cold, unloads, dropped, idle) =
            brief(&replay_one(&arrivals, Policy::Optimum, Some(t)));
        // Cold: the first, and after each gap above T*.
        assert_eq!(cold, 3);
        // Unloaded right after the requests before a long gap, and after the last.
        assert_eq!(unloads, 3);
        assert_eq!(dropped, 0);
        // Idle memory: only the short gaps, held whole.
        let held = (t * 0.2 + t * 0.5 + t * 0.3) * f.resident_bytes as f64 / 1e9;
        assert!((idle - held).abs() < 1e-3 * held, "{idle} vs {held}");
    }

    #[test]
    fn gaps_just_inside_the_threshold_are_held_as_the_fixed_value_holds_them() {
        let host = host();
        let f = figures(&host, MODEL);
        // A threshold of 100 s: gaps of 99.5 s are held, as keep_alive 100s holds them.
        let arrivals = arrivals_for(&[99.5, 99.5, 99.5], 100.0, &f);
        assert_eq!(
            brief(&replay_one(&arrivals, Policy::Optimum, Some(100.0))).0,
            1
        );
        let fixed = Policy::Fixed(crate::units::KeepAlive::parse("100s").unwrap());
        assert_eq!(brief(&replay_one(&arrivals, fixed, None)).0, 1);
        // Gaps of 100.5 s: unloaded right after each request, cold after each gap.
        let arrivals = arrivals_for(&[100.5, 100.5, 100.5], 100.0, &f);
        let (cold, unloads, dropped, idle) =
            brief(&replay_one(&arrivals, Policy::Optimum, Some(100.0)));
        assert_eq!((cold, unloads, dropped), (4, 4, 0));
        assert!(idle < 1e-6, "{idle}");
    }

    #[test]
    fn per_gap_the_optimum_costs_no_more_than_any_fixed_value() {
        let host = host();
        let f = figures(&host, MODEL);
        let t = f.break_even_s.unwrap();
        let gaps = [
            t * 0.1,
            t * 0.9,
            t * 1.5,
            t * 0.4,
            t * 4.0,
            t * 0.7,
            t * 20.0,
        ];
        let arrivals = arrivals_for(&gaps, t, &f);
        let cost = CostSettings::default();
        let opt = replay_one(&arrivals, Policy::Optimum, Some(t));
        let c_opt = model_cost(&opt.models[0], &f, &cost);
        for ka in ["0", "10s", "30s", "1m", "2m", "5m", "-1"] {
            let k = crate::units::KeepAlive::parse(ka).unwrap();
            let o = replay_one(&arrivals, Policy::Fixed(k), None);
            let c = model_cost(&o.models[0], &f, &cost);
            assert!(c >= c_opt - 1e-9, "{ka}: {c} < optimum {c_opt}");
        }
    }

    /// Two models that do not fit together (a 24 GiB GPU: the 7B and the 14B), used in
    /// turns: the optimum, replayed through the scheduler, never has more cold starts
    /// than the best fixed keep_alive, in total and per model.
    #[test]
    fn with_two_models_the_optimum_never_has_more_cold_starts_than_the_best_fixed() {
        let cost = CostSettings::default();
        let mut evicted = 0;
        for (seed, spacing) in [(1u64, 20.0), (2, 45.0), (3, 90.0), (4, 200.0), (5, 8.0)] {
            let host = small_host(seed);
            // Bursts of each model, alternating, with gaps around T* and above.
            let mut text = String::from("timestamp,model\n");
            let mut t = 0.0;
            let mut x = seed;
            for i in 0..60 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = (x >> 33) as f64 / (1u64 << 31) as f64;
                t += spacing * (0.2 + 2.0 * jitter);
                let model = if (i / 3) % 2 == 0 {
                    MODEL
                } else {
                    "qwen2.5:14b-instruct-q4_K_M"
                };
                text.push_str(&format!("{t:.3},{model}\n"));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("two.csv");
            std::fs::write(&path, text).unwrap();
            let log = crate::traffic::request_log::RequestLog::open(
                &path,
                crate::traffic::request_log::ReadOptions::default(),
            )
            .unwrap();
            let (models, unit_of) = resolve_models(log.scan(), &host, &cost).unwrap();
            assert_eq!(models.len(), 2);
            let mut policies = fixed_policies(&[], true);
            policies.extend([Policy::Optimum, Policy::PreloadBound]);
            let opts = PredictOptions {
                policies,
                cost: cost.clone(),
                prompt_tokens: 100,
                output_tokens: 50,
                cold_threshold: Duration::from_millis(500),
                progress: false,
                train: 1.0,
                fast_min_rows: crate::predict::FAST_MIN_ROWS,
            };
            let p = predict(&log, &host, &models, &unit_of, &opts).unwrap();
            let (o, b) = (p.optimum.unwrap(), p.best_fixed().unwrap());
            let colds = |i: usize| -> Vec<u64> {
                p.outcomes[i].models.iter().map(|m| m.cold_loads).collect()
            };
            for (co, cb) in colds(o).iter().zip(colds(b)) {
                assert!(
                    *co <= cb,
                    "spacing {spacing}: {:?} vs {:?}",
                    colds(o),
                    colds(b)
                );
            }
            assert!(
                p.costs[o].total <= p.costs[b].total + 1e-9,
                "spacing {spacing}"
            );
            // Every fixed value reads at least 1× the optimum.
            for (i, out) in p.outcomes.iter().enumerate() {
                if out.policy.is_fixed() {
                    assert!(
                        p.times_optimum(i).unwrap() >= 1.0 - 1e-9,
                        "{}",
                        out.policy.name()
                    );
                }
            }
            assert!(p.preload_bound.is_some());
            evicted += p.outcomes[b]
                .models
                .iter()
                .map(|m| m.evictions)
                .sum::<u64>();
            evicted += p.outcomes[o]
                .models
                .iter()
                .map(|m| m.evictions)
                .sum::<u64>();
        }
        // The models did compete for the GPU.
        assert!(evicted > 0);
    }

    fn outcome(colds: &[u64], idle_gb_s: &[f64]) -> PolicyOutcome {
        PolicyOutcome {
            policy: Policy::Optimum,
            models: colds
                .iter()
                .zip(idle_gb_s)
                .map(|(&cold, &idle)| ModelOutcome {
                    cold,
                    cold_loads: cold,
                    idle_gpu_gb_s: idle,
                    ..ModelOutcome::default()
                })
                .collect(),
            horizon_s: 1.0,
            peak_bytes: 0,
            peak_ram_bytes: 0,
            ttft: crate::analysis::MsHistogram::new(),
            unload_events: Vec::new(),
        }
    }

    #[test]
    fn the_guard_takes_the_best_fixed_figures_of_a_model_contention_made_worse() {
        let host = host();
        let f = figures(&host, MODEL);
        let models = vec![f.clone(), f];
        let cost = CostSettings::default();
        // Model 0: fewer cold starts, less idle memory: kept. Model 1: one cold start
        // more than the fixed value (evicted by model 0's loads): the fixed value's.
        let mut opt = outcome(&[3, 5], &[10.0, 0.0]);
        let fixed = outcome(&[4, 4], &[50.0, 200.0]);
        assert_eq!(guard(&mut opt, &fixed, &models, &cost), vec![1]);
        assert_eq!(opt.models[0].cold, 3);
        assert_eq!(opt.models[1].cold, 4);
        assert_eq!(opt.models[1].idle_gpu_gb_s, 200.0);
        // Same cold starts but more idle memory: the fixed value's too.
        let mut opt = outcome(&[4, 4], &[60.0, 200.0]);
        assert_eq!(guard(&mut opt, &fixed, &models, &cost), vec![0]);
        assert_eq!(opt.models[0].idle_gpu_gb_s, 50.0);
    }
}
