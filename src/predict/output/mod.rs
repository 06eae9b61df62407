//! A prediction as a table (stdout) and as a run folder that `kabench report` renders:
//! `summary.json` in the runner's schema with one cell per policy (`params.keep_alive`
//! as given for fixed values, the policy's name otherwise, `"predicted": true`),
//! `run.json` naming the input, its SHA-256, time scale, host figures and seed, a
//! `scenario.toml` holding the `[cost]` used, and header-only `requests.csv` and
//! `vram.csv` (a prediction replays requests, it does not record them).
//! Every output comes from one `Prediction`, so the figures agree; `table` holds the
//! terminal's table and verdict, this file the run folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Host, Policy, PolicyCost, Prediction};
use crate::analysis::vram::{MemoryPart, VramFigures};
use crate::analysis::{CellSummary, Split, StreamSummary, Summary};
use crate::folder::prediction::{
    GapDistribution, OptimumHold, OptimumMeta, OutOfSample, PolicyApply, PolicyCostMeta,
    PolicyKind, PolicyMeta, PreLoadBoundMeta, PredictInput, PredictRun, UnloadCheckMeta,
};
use crate::folder::{
    Api, CellMeta, CellParams, CostSettings, ModelFigures, RunFolder, RunHeader, RunMeta,
    RunStatus, SimHost, SimModel, SloSettings, StreamMeta, SweptKeepAlive, TargetKind, TargetMeta,
};
use crate::units::KeepAlive;

/// `target.kind` of a predicted run folder.
pub const TARGET_KIND: TargetKind = TargetKind::Predict;

/// What the folder records beside the prediction itself.
#[derive(Debug, Clone)]
pub struct FolderInfo {
    /// Multiplier applied to every gap of the input.
    pub time_scale: f64,
    /// Seed of the scheduler's random choices.
    pub seed: u64,
    /// The `[cost]` weights.
    pub cost: CostSettings,
    /// The cold rule's threshold, ms.
    pub cold_threshold_ms: f64,
    /// The command as run, for the record.
    pub command: String,
}

mod table;

pub use table::{table, thin_split, verdict};

/// What the pre-load bound is, for people.
pub const PRELOAD_BOUND: &str = "pre-load bound (a clairvoyant client pre-warming just in time): unload after each request and load again with an empty prompt to be ready as the next arrives, holding only when that does not pay; below what any keep_alive can reach, a yardstick for pre-warming, not the optimum";

/// A file-name-safe form of a policy name.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The cell id of policy `i`: `c01-ka_0`, like the runner's, or `c17-keep-alive-optimum`.
pub fn cell_id(i: usize, policy: &Policy) -> String {
    match policy {
        Policy::Fixed(k) => format!("c{:02}-ka_{}", i + 1, slug(k.written())),
        other => format!("c{:02}-{}", i + 1, other.name()),
    }
}

/// A policy as `params.keep_alive` holds it: the value, or the policy's name.
fn policy_param(policy: &Policy) -> SweptKeepAlive {
    match policy {
        Policy::Fixed(k) => SweptKeepAlive::Value(k.clone()),
        other => SweptKeepAlive::Policy(other.name()),
    }
}

/// The keep_alive a policy sends: a fixed value, or none for the policies that are not
/// one value (as sent, the optimum, the pre-load bound: their name is the cell's `params`).
fn keep_alive_of(policy: &Policy) -> Option<KeepAlive> {
    match policy {
        Policy::Fixed(k) => Some(k.clone()),
        _ => None,
    }
}

/// The summary in the runner's schema (`Summary`): one cell per policy, one stream per model.
pub fn summary(p: &Prediction, info: &FolderInfo) -> Summary {
    let cells = p
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let ka = keep_alive_of(&o.policy);
            let span = o.horizon_s.max(1e-9);
            let streams = o
                .models
                .iter()
                .zip(&p.models)
                .map(|(m, f)| StreamSummary {
                    name: f.model.clone(),
                    model: f.model.clone(),
                    keep_alive: ka.clone(),
                    rate_per_s: Some(m.requests as f64 / span),
                    requests: m.requests,
                    warmup: 0,
                    errors: m.errors,
                    errors_by_kind: if m.errors > 0 {
                        BTreeMap::from([("http".to_string(), m.errors)])
                    } else {
                        BTreeMap::new()
                    },
                    answered: m.requests.saturating_sub(m.errors),
                    cold: m.cold,
                    loads: m.loads,
                    cold_ratio: if m.requests > m.errors {
                        m.cold as f64 / (m.requests - m.errors) as f64
                    } else {
                        0.0
                    },
                    ttft_ms: Split {
                        all: m.ttft[0].percentiles(),
                        warm: m.ttft[1].percentiles(),
                        cold: m.ttft[2].percentiles(),
                    },
                    e2e_ms: Split {
                        all: m.e2e[0].percentiles(),
                        warm: m.e2e[1].percentiles(),
                        cold: m.e2e[2].percentiles(),
                    },
                    tpot_ms: None,
                    load_ms: m.load.percentiles(),
                    // The penalty the prediction prices a cold start with, so the
                    // report's recommendation weighs cold starts as the table does.
                    cold_penalty_ms: Some(f.penalty_s * 1000.0),
                    tokens_per_s: Some(f.decode_tps),
                    intervals: None,
                    hosts: Vec::new(),
                })
                .collect();
            let part = |held: f64, idle: f64, peak: u64| MemoryPart {
                source: TARGET_KIND.as_str().into(),
                gb_seconds_held: held,
                idle_gb_seconds: idle,
                peak_bytes: peak,
                mean_bytes: held * 1e9 / span,
            };
            let held_gpu: f64 = o.models.iter().map(|m| m.held_gpu_gb_s).sum();
            let held_ram: f64 = o.models.iter().map(|m| m.held_ram_gb_s).sum();
            let idle_gpu: f64 = o.models.iter().map(|m| m.idle_gpu_gb_s).sum();
            let idle_ram: f64 = o.models.iter().map(|m| m.idle_ram_gb_s).sum();
            let any_gpu = p.models.iter().any(|f| f.gpu_bytes > 0);
            let any_ram = p.models.iter().any(|f| f.ram_bytes > 0);
            let vram = VramFigures {
                source: TARGET_KIND.as_str().into(),
                gb_seconds_held: held_gpu + held_ram,
                idle_gb_seconds: idle_gpu + idle_ram,
                peak_bytes: o.peak_bytes,
                mean_bytes: (held_gpu + held_ram) * 1e9 / span,
                release: Vec::new(),
                gpu: any_gpu.then(|| part(held_gpu, idle_gpu, o.peak_bytes - o.peak_ram_bytes)),
                ram: any_ram.then(|| part(held_ram, idle_ram, o.peak_ram_bytes)),
                counted: match (any_gpu, any_ram) {
                    (true, true) => "GPU + system RAM",
                    (false, true) => "system RAM",
                    _ => "GPU",
                }
                .into(),
            };
            CellSummary {
                id: cell_id(i, &o.policy),
                params: CellParams {
                    keep_alive: Some(policy_param(&o.policy)),
                    ..Default::default()
                },
                streams,
                vram: Some(vram),
                memory_missing: None,
                ran_late: None,
                warnings: Vec::new(),
                reloads: Default::default(),
                predicted: true,
                policy: Some(policy_meta(p, i)),
                repetitions: None,
            }
        })
        .collect();
    let name = |i: Option<usize>| i.map(|i| p.outcomes[i].policy.name());
    Summary {
        scenario: scenario_name(p),
        target: target(p),
        ollama_version: None,
        status: RunStatus::Complete,
        cold_threshold_ms: info.cold_threshold_ms,
        cells,
        predicted: true,
        // Nothing is recommended on a host that cannot serve the traffic.
        best_fixed: name(p.best_fixed().filter(|_| p.overload.is_none())),
        // What "×optimum" is read against, and the pre-load bound beside it.
        optimum: p.optimum.map(|o| OptimumMeta {
            policy: p.outcomes[o].policy.name(),
            hold_s: p
                .models
                .iter()
                .zip(&p.optimum_hold)
                .map(|(f, h)| OptimumHold {
                    model: f.model.clone(),
                    break_even_s: f.break_even_s,
                    hold_s: *h,
                })
                .collect(),
            fallback_models: p
                .optimum_fallback
                .iter()
                .map(|&m| p.models[m].model.clone())
                .collect(),
            best_fixed_times_optimum: p.best_fixed().and_then(|b| p.times_optimum(b)),
        }),
        pre_load_bound: p.preload_bound.map(|i| PreLoadBoundMeta {
            policy: p.outcomes[i].policy.name(),
            cost: p.costs[i].total,
            times_optimum: p.times_optimum(i),
        }),
        // What the report draws: each model's gap distribution with its T*.
        gaps: p
            .models
            .iter()
            .zip(&p.gap_counts)
            .map(|(f, counts)| GapDistribution {
                model: f.model.clone(),
                break_even_s: f.break_even_s,
                bins: counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(j, c)| (super::policies::lower_edge(j), super::policies::edge(j), *c))
                    .collect(),
            })
            .collect(),
        out_of_sample: p.has_split().then(|| OutOfSample {
            train_share: p.train,
            split_s: p.scan.span_s * p.train,
            recommended: name(p.recommended()),
            best_fixed_after_split: name(p.best_fixed_test()),
            test_requests: Some(p.test_requests()),
            too_little_traffic: p.too_little_after_split(),
        }),
    }
}

fn scenario_name(p: &Prediction) -> String {
    let stem = p
        .scan
        .path
        .file_stem()
        .map_or_else(|| "input".into(), |s| s.to_string_lossy().to_string());
    format!("predict-{stem}")
}

fn target(p: &Prediction) -> TargetMeta {
    TargetMeta {
        kind: TARGET_KIND,
        url: p.scan.path.display().to_string(),
        urls: Vec::new(),
    }
}

/// A policy's cost as the folder records it.
fn cost_meta(c: PolicyCost) -> PolicyCostMeta {
    PolicyCostMeta {
        cold: c.cold,
        vram: c.vram,
        ram: c.ram,
        total: c.total,
    }
}

/// What each policy means and how to apply it, for `summary.json`.
fn policy_meta(p: &Prediction, i: usize) -> PolicyMeta {
    let o = &p.outcomes[i];
    let (kind, apply) = match &o.policy {
        Policy::Fixed(k) => (
            PolicyKind::Fixed,
            PolicyApply::Setting {
                server_env: format!("OLLAMA_KEEP_ALIVE={}", k.written()),
                keep_alive_field: format!("\"keep_alive\": {}", k.to_json()),
            },
        ),
        Policy::AsSent => (
            PolicyKind::AsSent,
            PolicyApply::Words(
                "what each client sent (the input's keep_alive column); none: the server's OLLAMA_KEEP_ALIVE".into(),
            ),
        ),
        Policy::Optimum => (
            PolicyKind::KeepAliveOptimum,
            PolicyApply::Words(super::optimum::rule(
                &p.models,
                &p.optimum_hold,
                p.best_fixed()
                    .map(|b| p.outcomes[b].policy.name())
                    .as_deref(),
            )),
        ),
        Policy::PreloadBound => (
            PolicyKind::PreLoadBound,
            PolicyApply::Words(PRELOAD_BOUND.into()),
        ),
        other => (
            PolicyKind::PerRequestRule,
            PolicyApply::Words(
                super::policies::rule(&other.name())
                    .unwrap_or_default()
                    .to_string(),
            ),
        ),
    };
    let sum = |f: fn(&super::replay::ModelOutcome) -> u64| o.models.iter().map(f).sum::<u64>();
    PolicyMeta {
        name: o.policy.name(),
        kind,
        apply,
        cost: cost_meta(p.costs[i]),
        cost_train: p.has_split().then(|| cost_meta(p.train_costs[i])),
        cost_test: p.has_split().then(|| cost_meta(p.test_costs[i])),
        times_optimum: p.times_optimum(i),
        horizon_s: o.horizon_s,
        evictions: sum(|m| m.evictions),
        expirations: sum(|m| m.expirations),
        unloads: sum(|m| m.unloads),
        loads: sum(|m| m.loads),
        cold_loads: sum(|m| m.cold_loads),
        prewarm_loads: sum(|m| m.prewarm_loads),
        wasted_loads: sum(|m| m.wasted_loads),
    }
}

/// `summary.json` as written (and as `--json` prints it): the runner's schema with
/// the prediction's own parts, the policy of each cell among them.
pub fn summary_json(p: &Prediction, info: &FolderInfo) -> Result<Value> {
    Ok(serde_json::to_value(summary(p, info))?)
}

/// The simulated host the replay stood on, for `run.json` `sim`.
fn host_meta(p: &Prediction, host: &Host) -> SimHost {
    let c = &host.config;
    SimHost {
        gpu: host.describe(),
        gpus: c.gpus,
        vram_bytes: if c.cpu_only() { 0 } else { c.vram_bytes },
        rules: format!(
            "Ollama 0.32.15 scheduler rules (OLLAMA.md), replayed on a virtual clock; {}",
            host.source
        ),
        max_loaded_models: c.max_models() as u32,
        num_parallel: c.slots(),
        default_keep_alive: c.default_keep_alive.written().to_string(),
        cached_bandwidth_bytes_per_s: c.cached_bandwidth,
        cold_bandwidth_bytes_per_s: c.cold_bandwidth,
        vram_release_delay_ms: c.vram_release_delay.as_secs_f64() * 1000.0,
        seed: c.seed,
        models: p
            .models
            .iter()
            .map(|m| SimModel {
                model: m.model.clone(),
                quantization: String::new(),
                file_bytes: 0,
                resident_bytes: m.resident_bytes,
                num_ctx: m.num_ctx,
                load_cached_s: m.load_s,
                load_cold_s: m.load_first_s,
                decode_tps: m.decode_tps,
                prefill_tps: m.prefill_tps,
                source: m.source.clone(),
                // The prediction's figures (penalty, hold cost, break-even) beside the
                // host description.
                figures: ModelFigures {
                    gpu_bytes: Some(m.gpu_bytes),
                    ram_bytes: Some(m.ram_bytes),
                    penalty_s: Some(m.penalty_s),
                    penalty_source: Some(m.penalty_source.clone()),
                    hold_cost_per_s: Some(m.hold_cost_per_s),
                    break_even_s: m.break_even_s,
                },
            })
            .collect(),
        calibrated_from: host.calibrated_from.clone(),
        calibration: if host.calibrated_from.is_some() {
            host.calibration.clone()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// The `scenario.toml` of the folder: the `[cost]` the prediction priced with, so the
/// report weighs the same way. Parses as a scenario; it is a record, not meant to be run.
fn scenario_text(p: &Prediction, info: &FolderInfo) -> String {
    let model = p.models.first().map_or("unknown", |f| f.model.as_str());
    let mut s = format!(
        "# Written by `kabench predict`: the [cost] this prediction priced with.\n\
         # The requests came from {} (sha256 {}); this file is a record, not a workload.\n\
         name = {}\nseed = {}\n\n[[stream]]\nname = \"predicted\"\nmodel = {}\n\
         arrival = {{ kind = \"constant\", rate = \"1/s\" }}\n\n[run]\nrequests = 1\n\n\
         [cost]\nwait_second = {}\nvram_gb_hour = {}\nram_gb_hour = {}\n",
        crate::units::limits::printable(&p.scan.path.display().to_string()),
        p.scan.sha256,
        toml::Value::String(scenario_name(p)),
        info.seed,
        toml::Value::String(model.to_string()),
        info.cost.wait_second,
        info.cost.vram_gb_hour,
        info.cost.ram_gb_hour,
    );
    if let Some(d) = info.cost.cold_penalty {
        let _ = writeln!(s, "cold_penalty = \"{}ms\"", d.as_millis());
    }
    s
}

/// Writes the run folder `dir` (refused when it already holds a run).
pub fn write_folder(dir: &Path, p: &Prediction, host: &Host, info: &FolderInfo) -> Result<()> {
    let summary = summary(p, info);
    let mut meta = RunMeta::new(RunHeader {
        scenario: scenario_name(p),
        scenario_file: p.scan.path.display().to_string(),
        scenario_sha256: p.scan.sha256.clone(),
        seed: info.seed,
        target: target(p),
        ollama_version: None,
        cold_threshold_ms: info.cold_threshold_ms,
        cost: info.cost.clone(),
        slo: SloSettings::default(),
    });
    meta.sim = Some(host_meta(p, host));
    meta.cells = summary
        .cells
        .iter()
        .map(|c| CellMeta {
            id: c.id.clone(),
            params: c.params.clone(),
            streams: c
                .streams
                .iter()
                .map(|s| StreamMeta {
                    name: s.name.clone(),
                    model: s.model.clone(),
                    keep_alive: s.keep_alive.clone(),
                    api: Api::Generate,
                    arrival: format!("replayed from {}", p.scan.path.display()),
                    rate_per_s: s.rate_per_s,
                    planned: s.requests.min(u64::from(u32::MAX)) as u32,
                    num_ctx: None,
                })
                .collect(),
            started_ms: Some(0.0),
            ended_ms: None,
            host: None,
        })
        .collect();
    meta.warnings = p.scan.notes.clone();
    // What makes the figures less than a recommendation, first.
    let caveats = p.overload.iter().map(|o| o.line()).chain(thin_split(p));
    meta.warnings.splice(0..0, caveats);
    meta.predicted = true;
    meta.input = Some(PredictInput {
        path: p.scan.path.display().to_string(),
        sha256: p.scan.sha256.clone(),
        format: p.scan.format.clone(),
        rows: p.scan.rows,
        first: p.scan.first.clone(),
        last: p.scan.last.clone(),
        span_s: p.scan.span_s,
        sorted: p.scan.sorted,
        columns: p.scan.columns.clone(),
        models: p.scan.models.clone(),
        slice: "all rows".into(),
        time_scale: info.time_scale,
    });
    meta.predict = Some(PredictRun {
        command: info.command.clone(),
        policies: p.outcomes.iter().map(|o| o.policy.name()).collect(),
        cost: info.cost.clone(),
        wall_s: p.wall_s,
        unload_check: p.unload_check.as_ref().map(|c| UnloadCheckMeta {
            policy: c.policy.clone(),
            predicted: c.predicted,
            predicted_evicted: c.predicted_evicted,
            logged: c.logged,
            logged_evicted: c.logged_evicted,
            matched: c.matched,
            tolerance_s: c.tolerance_s,
        }),
    });
    // "Fits together?" from the simulated host's figures (a replay samples no memory).
    meta.fits = crate::plan::fits::sections(&meta, &[]);
    let folder = RunFolder::create(dir, &scenario_text(p, info), meta)?;
    folder.write_summary(&summary)?;
    folder
        .finish(RunStatus::Complete, None)
        .with_context(|| format!("writing {}/run.json", dir.display()))?;
    Ok(())
}

/// Whether a run folder's `run.json` says it holds a prediction.
pub fn is_predicted(meta: &RunMeta) -> bool {
    meta.target.kind == TargetKind::Predict
}
