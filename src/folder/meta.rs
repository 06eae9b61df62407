//! `run.json`: what ran, against what, with which weights, and how it ended. Everything
//! the report needs beyond the rows is here, typed: the cells and their streams, the
//! `[cost]` and `[slo]` of the recommendation, the simulated host, and where other
//! tools' reports lie. Knows nothing of how these were made. Over 600 lines: every
//! field of `run.json`, each with its doc, in one place the schema is generated from.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fits::FitSection;
use super::kinds::{Api, TargetKind};
use super::params::CellParams;
use super::prediction::{PredictInput, PredictRun};
use crate::units::KeepAlive;

/// Default `[cost] vram_gb_hour`: with it, a 5 GB model whose reload costs 3 s of
/// waiting breaks even at Ollama's default keep_alive of 5 minutes
/// (3 s / (5 GB × 7.2 / 3600 s) = 300 s).
pub const DEFAULT_VRAM_GB_HOUR: f64 = 7.2;

/// Default `[cost] ram_gb_hour`: system memory is about a seventh of the price of GPU
/// memory per GB-hour on cloud machines, so a seventh-ish of `vram_gb_hour`.
pub const DEFAULT_RAM_GB_HOUR: f64 = 1.0;

/// `[cost]`: the weights of the recommendation's cost model (`run.json` `cost`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostSettings {
    /// `vram_gb_hour`: the cost of holding 1 GB of VRAM idle for an hour, in the same
    /// units as `wait_second` (default `DEFAULT_VRAM_GB_HOUR`).
    pub vram_gb_hour: f64,
    /// `ram_gb_hour`: the cost of holding 1 GB of system memory idle for an hour (a
    /// model on a CPU-only host, or the part of one offloaded to the CPU; default
    /// `DEFAULT_RAM_GB_HOUR`).
    pub ram_gb_hour: f64,
    /// `wait_second`: the cost of one second a user waits (default 1.0).
    pub wait_second: f64,
    /// `cold_penalty`: the wait a cold start adds; `None` uses the measured one.
    #[serde(rename = "cold_penalty_s", with = "opt_seconds", default)]
    #[schemars(with = "Option<f64>")]
    pub cold_penalty: Option<Duration>,
}

impl Default for CostSettings {
    fn default() -> Self {
        CostSettings {
            vram_gb_hour: DEFAULT_VRAM_GB_HOUR,
            ram_gb_hour: DEFAULT_RAM_GB_HOUR,
            wait_second: 1.0,
            cold_penalty: None,
        }
    }
}

/// `[slo]`: a service-level objective for the SLO form of the recommendation
/// (`run.json` `slo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SloSettings {
    /// `ttft_p99`: the p99 time to first token to meet.
    #[serde(rename = "ttft_p99_ms", with = "opt_millis", default)]
    #[schemars(with = "Option<f64>")]
    pub ttft_p99: Option<Duration>,
}

/// A swept axis of a scenario's `[sweep]`: the keys of each cell's `params` (run.json,
/// summary.json) and of a recommendation's `fixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SweepAxis {
    /// `keep_alive`: the axis the recommendation chooses along.
    KeepAlive,
    /// `rate`: the arrival rate.
    Rate,
    /// `quant`: the quantization (`{quant}` in the model tag).
    Quant,
    /// `model`: the model tag.
    Model,
}

impl SweepAxis {
    /// Every axis, in the order a plan expands them.
    pub const ALL: [SweepAxis; 4] = [
        SweepAxis::KeepAlive,
        SweepAxis::Rate,
        SweepAxis::Quant,
        SweepAxis::Model,
    ];

    /// The key in `params` and `[sweep]`.
    pub fn as_str(self) -> &'static str {
        match self {
            SweepAxis::KeepAlive => "keep_alive",
            SweepAxis::Rate => "rate",
            SweepAxis::Quant => "quant",
            SweepAxis::Model => "model",
        }
    }

    /// The short form in cell ids (`ka` for keep_alive).
    pub fn short(self) -> &'static str {
        match self {
            SweepAxis::KeepAlive => "ka",
            other => other.as_str(),
        }
    }

    /// The axis of a `params` key.
    pub fn parse(key: &str) -> Option<SweepAxis> {
        SweepAxis::ALL.into_iter().find(|a| a.as_str() == key)
    }
}

impl std::fmt::Display for SweepAxis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One simulated model as the simulator stood in for it (`run.json` `sim.models`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SimModel {
    /// The tag the scenario sent.
    pub model: String,
    /// Quantization, e.g. `Q4_K_M`.
    pub quantization: String,
    /// The model file's size.
    pub file_bytes: u64,
    /// Memory held once loaded at `num_ctx`.
    pub resident_bytes: u64,
    /// Context per slot the resident size is for.
    pub num_ctx: u32,
    /// Load time from the page cache, seconds.
    pub load_cached_s: f64,
    /// First load from a cold disk, seconds.
    pub load_cold_s: f64,
    /// Decode speed, tokens per second.
    pub decode_tps: f64,
    /// Prompt evaluation speed, tokens per second.
    pub prefill_tps: f64,
    /// Where the figures come from (a URL or a measured run).
    pub source: String,
    /// A prediction's figures for it (absent on a run): its memory on the GPU, in
    /// system memory, the wait a cold start costs and its break-even keep_alive.
    #[serde(flatten)]
    pub figures: ModelFigures,
}

/// What a prediction priced a model with (`run.json` `sim.models[]`, a prediction's only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ModelFigures {
    /// Bytes held on the GPU once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_bytes: Option<u64>,
    /// Bytes held in system memory once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_bytes: Option<u64>,
    /// The wait a cold start adds, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_s: Option<f64>,
    /// Where the penalty comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_source: Option<String>,
    /// What holding it idle costs per second, in `[cost]` units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_cost_per_s: Option<f64>,
    /// Its break-even keep_alive T*, seconds (absent: holding costs nothing, or not a
    /// prediction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_even_s: Option<f64>,
}

/// The simulated host of a run on the simulator (`run.json` `sim`): what it stood for,
/// and the simulator's own counters at the end. A folder written before it was typed
/// keeps its description (`gpu`, `calibrated_from`) and loses the rest; a field it lacks
/// reads as its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SimHost {
    /// The host in words: `1 × 24 GiB GPU`, or a CPU-only host.
    pub gpu: String,
    /// GPUs; 0 is a CPU-only host.
    pub gpus: u32,
    /// Memory per GPU (0 on a CPU-only host).
    pub vram_bytes: u64,
    /// Whose scheduler rules are modelled.
    pub rules: String,
    /// `OLLAMA_MAX_LOADED_MODELS` in force.
    pub max_loaded_models: u32,
    /// `OLLAMA_NUM_PARALLEL` in force.
    pub num_parallel: u32,
    /// `OLLAMA_KEEP_ALIVE` in force, as written.
    pub default_keep_alive: String,
    /// Page-cache read bandwidth, bytes per second.
    pub cached_bandwidth_bytes_per_s: f64,
    /// Cold-disk read bandwidth, bytes per second.
    pub cold_bandwidth_bytes_per_s: f64,
    /// Wait for freed VRAM (E8), milliseconds.
    pub vram_release_delay_ms: f64,
    /// Seed of jitter and faults.
    pub seed: u64,
    /// The models of the plan as simulated.
    pub models: Vec<SimModel>,
    /// The measured run folder the simulator was calibrated from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_from: Option<String>,
    /// What the calibration took from that run, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<String>,
    /// Loads over the whole run.
    #[serde(default)]
    pub loads: Option<u64>,
    /// Evictions over the whole run.
    #[serde(default)]
    pub evictions: Option<u64>,
    /// keep_alive expirations over the whole run.
    #[serde(default)]
    pub expirations: Option<u64>,
    /// Loads per cell: the server's own count to check the cold verdicts against.
    #[serde(default)]
    pub loads_per_cell: BTreeMap<String, u64>,
}

/// `run.json` `sim` in any version: the typed host, or from an older free-form one what
/// it described (`gpu`, `calibrated_from`).
fn lenient_sim<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SimHost>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if let Ok(host) = SimHost::deserialize(&v) {
        return Ok(Some(host));
    }
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(Some(SimHost {
        gpu: text("gpu").unwrap_or_default(),
        calibrated_from: text("calibrated_from"),
        ..Default::default()
    }))
}

macro_rules! opt_duration_as {
    ($name:ident, $to:expr, $from:expr, $unit:literal) => {
        #[doc = concat!("`Option<Duration>` as a number of ", $unit, ".")]
        mod $name {
            use super::*;

            pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
                d.map(|d| ($to)(d)).serialize(s)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Option<Duration>, D::Error> {
                let v = Option::<f64>::deserialize(d)?;
                v.map(|x| ($from)(x))
                    .transpose()
                    .map_err(|e: crate::units::ParseError| serde::de::Error::custom(e.message))
            }
        }
    };
}

opt_duration_as!(
    opt_seconds,
    |d: Duration| d.as_secs_f64(),
    |s: f64| crate::units::limits::duration_from_secs(s, "cost.cold_penalty_s"),
    "seconds"
);
opt_duration_as!(
    opt_millis,
    |d: Duration| d.as_secs_f64() * 1000.0,
    |ms: f64| crate::units::limits::duration_from_millis(ms, "slo.ttft_p99_ms"),
    "milliseconds"
);

/// How the run ended (`run.json` `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still running (or killed hard).
    #[default]
    Running,
    /// Every cell ran.
    Complete,
    /// Stopped by Ctrl-C; what ran is recorded.
    Interrupted,
    /// Stopped by an error.
    Failed,
    /// A shard that woke more than its tolerance after the start barrier: it sent
    /// nothing, and `merge` counts it missing (`shard.late_ms` says how late).
    Late,
}

/// The target of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetMeta {
    /// What the figures were taken from.
    pub kind: TargetKind,
    /// Base URL used (a fleet's, joined by ", ").
    pub url: String,
    /// Every host of a fleet, in order (absent with one target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// One stream of a cell, as planned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamMeta {
    /// Stream name.
    pub name: String,
    /// Model tag.
    pub model: String,
    /// keep_alive sent (`None`: not sent), as `keep_alive` (written), `keep_alive_s`
    /// (`null`: forever or not sent) and `keep_alive_forever`.
    #[serde(flatten, with = "crate::units::keep_alive_keys")]
    #[schemars(with = "crate::units::KeepAliveKeys")]
    pub keep_alive: Option<KeepAlive>,
    /// The endpoint called.
    pub api: Api,
    /// Arrival process, described.
    pub arrival: String,
    /// Mean rate in requests per second, if the arrival has one.
    pub rate_per_s: Option<f64>,
    /// Requests planned.
    pub planned: u32,
    /// `num_ctx` sent (absent in run folders written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
}

/// One cell: its swept parameters and when it ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CellMeta {
    /// Cell id.
    pub id: String,
    /// Swept axes → value as written.
    pub params: CellParams,
    /// Streams.
    pub streams: Vec<StreamMeta>,
    /// When sending started (ms since run start).
    pub started_ms: Option<f64>,
    /// When the last request ended.
    pub ended_ms: Option<f64>,
    /// The host's state during the cell (Linux; absent elsewhere and in folders written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<super::HostLoad>,
}

/// `run.json`: what ran, against what, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunMeta {
    /// `kabench`.
    pub tool: String,
    /// kabench version.
    pub tool_version: String,
    /// Scenario name.
    pub scenario: String,
    /// Scenario file path as given.
    pub scenario_file: String,
    /// SHA-256 of the scenario text.
    pub scenario_sha256: String,
    /// Scenario seed.
    pub seed: u64,
    /// Target.
    pub target: TargetMeta,
    /// `/api/version` of the target.
    pub ollama_version: Option<String>,
    /// The simulated host when the target is the simulator (a folder written before
    /// it was typed reads as none).
    #[serde(default, deserialize_with = "lenient_sim")]
    pub sim: Option<SimHost>,
    /// GPU description, when known (NVML).
    pub gpu: Option<String>,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339.
    pub ended_at: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Cold threshold used (M6), ms.
    pub cold_threshold_ms: f64,
    /// Cells.
    pub cells: Vec<CellMeta>,
    /// Telemetry source states, e.g. `nvml` → `unavailable: …`.
    #[serde(default)]
    pub telemetry: BTreeMap<String, String>,
    /// Run-level warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// `[cost]` the run was made with, for its recommendation (`None`: a folder written
    /// before it was recorded; the report then uses the defaults and says so).
    #[serde(default)]
    pub cost: Option<CostSettings>,
    /// `[slo]` the run was made with.
    #[serde(default)]
    pub slo: Option<SloSettings>,
    /// Reports of other tools in the folder, relative paths (goose's
    /// `goose/<cell>/report.html` of a swarm), in cell order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goose_reports: Vec<String>,
    /// This folder is one shard of a sharded run (`kabench run --shard i/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardMeta>,
    /// This folder was merged from shard folders (`kabench merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergeMeta>,
    /// This folder holds a prediction (`kabench predict`): the figures are in
    /// `summary.json`, there are no request rows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// The requests a prediction replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<PredictInput>,
    /// How a prediction was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict: Option<PredictRun>,
    /// "Fits together?": one verdict per set of several models run together, made by
    /// the path that wrote the folder (absent in folders written before it was).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fits: Vec<FitSection>,
    /// The span every cell's memory figures are counted over (`null`: a folder written
    /// before it was recorded; the report derives it from the cells the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_horizon: Option<super::IdleHorizon>,
}

/// What every `run.json` starts from, whichever path writes it (a run, a shard, a
/// prediction, a proxy log, plan's check): what it answers, against what, and the
/// `[cost]` and `[slo]` its recommendation weighs by.
#[derive(Debug, Clone)]
pub struct RunHeader {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file (or input) as given.
    pub scenario_file: String,
    /// SHA-256 of the scenario text (or input).
    pub scenario_sha256: String,
    /// Seed.
    pub seed: u64,
    /// Target.
    pub target: TargetMeta,
    /// `/api/version` of the target, when there is one.
    pub ollama_version: Option<String>,
    /// Cold threshold (M6), ms.
    pub cold_threshold_ms: f64,
    /// `[cost]`.
    pub cost: CostSettings,
    /// `[slo]`.
    pub slo: SloSettings,
}

/// `run.json` `shard`: which shard of how many, and how it kept in step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardMeta {
    /// 0-based index.
    pub index: u32,
    /// Shards of the run.
    pub count: u32,
    /// `request`, `stream` or `target`: how the global schedule was split.
    pub by: String,
    /// The common start barrier (RFC 3339, UTC); every row's time counts from it.
    pub start_at: String,
    /// This shard's wall clock when it woke at the barrier, less the barrier (ms):
    /// how late it started by its own clock (`null` until it woke).
    pub clock_offset_ms: Option<f64>,
    /// Each cell's fixed start, ms after the barrier.
    pub cell_starts_ms: Vec<f64>,
    /// The histogram files' settings (`histograms/<cell>/<stream>/<metric>.hdr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<HistogramSettings>,
    /// How late after the barrier (or a cell's fixed start) this shard may start and
    /// still count, ms (`--late-tolerance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_tolerance_ms: Option<f64>,
    /// How late the shard woke after the barrier, ms, when it was over the tolerance
    /// (status `late`: it sent nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<f64>,
    /// Cells this shard started more than the tolerance after their fixed start, with
    /// how late (ms): a merged run recommends no keep_alive over them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub late_cells: BTreeMap<String, f64>,
}

/// Bounds and precision of the histogram files; merging needs them equal everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistogramSettings {
    /// Lowest discernible value (µs).
    pub lowest_us: u64,
    /// Highest trackable value (µs).
    pub highest_us: u64,
    /// Significant decimal digits.
    pub significant_digits: u8,
}

/// `run.json` `merged`: the shards a merged folder was made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MergeMeta {
    /// Shards the run had.
    pub count: u32,
    /// Shard folders merged, as given, in shard order.
    pub shards: Vec<String>,
    /// Indices of the shards whose folder was missing.
    pub missing: Vec<u32>,
    /// Shards merged that did not complete: `shard-<i>-of-<N>: <status>`.
    pub incomplete: Vec<String>,
    /// Each merged shard's clock offset at the barrier (ms), by index.
    pub clock_offsets_ms: BTreeMap<u32, Option<f64>>,
    /// Cells whose memory was not measured to their end, with why (the shards that
    /// sampled a host stopped during them): their memory figures are missing, never
    /// zero, and no keep_alive is recommended over them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memory_not_measured: BTreeMap<String, String>,
    /// Shards whose folder is there but which sent nothing (they are in `missing`
    /// too), by index, with why: late (woke past their tolerance after the barrier) or
    /// stopped before the barrier (cancelled, killed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sent_nothing: BTreeMap<u32, String>,
    /// Cells that some shard started past the tolerance after their fixed start, with
    /// which and how late: no keep_alive is recommended over them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub late_cells: BTreeMap<String, String>,
}

impl MergeMeta {
    /// The headline's note when some shards are missing or did not complete, e.g.
    /// `Merged from 3 of 4 shards (missing: shard 3).`
    pub fn note(&self) -> Option<String> {
        if self.missing.is_empty() && self.incomplete.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            let list: Vec<String> = self
                .missing
                .iter()
                .map(|i| match self.sent_nothing.get(i) {
                    Some(why) => format!("shard {i} ({why})"),
                    None => format!("shard {i}"),
                })
                .collect();
            parts.push(format!("missing: {}", list.join(", ")));
        }
        if !self.incomplete.is_empty() {
            parts.push(format!("did not complete: {}", self.incomplete.join(", ")));
        }
        Some(format!(
            "Merged from {} of {} shards ({}).",
            self.shards.len(),
            self.count,
            parts.join("; ")
        ))
    }
}

impl RunMeta {
    /// The one way a `run.json` is begun: `running`, started now, by this kabench,
    /// with the header's `[cost]` and `[slo]` recorded (a folder kabench writes always
    /// carries them). Each path then adds what it has (cells, the simulated host, a
    /// shard, a prediction's input).
    pub fn new(header: RunHeader) -> RunMeta {
        RunMeta {
            tool: "kabench".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            scenario: header.scenario,
            scenario_file: header.scenario_file,
            scenario_sha256: header.scenario_sha256,
            seed: header.seed,
            target: header.target,
            ollama_version: header.ollama_version,
            started_at: super::utc_now_rfc3339(),
            status: RunStatus::Running,
            cold_threshold_ms: header.cold_threshold_ms,
            cost: Some(header.cost),
            slo: Some(header.slo),
            ..Default::default()
        }
    }

    /// The idle-memory horizon of the run: as recorded, else derived from its cells by
    /// the same rule.
    pub fn idle_horizon(&self) -> super::IdleHorizon {
        self.idle_horizon
            .clone()
            .unwrap_or_else(|| super::IdleHorizon::of_cells(&self.cells))
    }

    /// Loads the simulator counted per cell (`sim.loads_per_cell`), empty for a live target.
    pub fn sim_loads_per_cell(&self) -> BTreeMap<String, u64> {
        self.sim
            .as_ref()
            .map(|s| s.loads_per_cell.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_slo_and_sim_are_typed_and_an_older_sim_keeps_its_description() {
        let meta = RunMeta {
            cost: Some(CostSettings {
                cold_penalty: Some(Duration::from_millis(2500)),
                ..Default::default()
            }),
            slo: Some(SloSettings {
                ttft_p99: Some(Duration::from_millis(1500)),
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&meta).unwrap();
        assert_eq!(v["cost"]["cold_penalty_s"], 2.5);
        assert_eq!(v["cost"]["ram_gb_hour"], DEFAULT_RAM_GB_HOUR);
        assert_eq!(v["slo"]["ttft_p99_ms"], 1500.0);
        let back: RunMeta = serde_json::from_value(v).unwrap();
        assert_eq!(back, meta);

        let old = serde_json::json!({
            "tool": "kabench", "tool_version": "0.1.0", "scenario": "s", "scenario_file": "s.toml",
            "scenario_sha256": "", "seed": 1, "target": {"kind": "sim", "url": "u"},
            "ollama_version": null, "gpu": null, "started_at": "", "ended_at": null,
            "status": "complete", "failure": null, "cold_threshold_ms": 100.0, "cells": [],
            "sim": {"gpu": "1 × 24 GiB GPU", "calibrated_from": "reports/x",
                    "models": [{"model": "m", "file": "4.7 GB", "load_cached_s": "0.91"}]}
        });
        let meta: RunMeta = serde_json::from_value(old).unwrap();
        let sim = meta.sim.unwrap();
        assert_eq!(sim.gpu, "1 × 24 GiB GPU");
        assert_eq!(sim.calibrated_from.as_deref(), Some("reports/x"));
        assert!(meta.cost.is_none() && meta.slo.is_none());
    }
}
