//! The host a prediction stands on: the simulator's scheduler settings and catalogue
//! (defaults, a scenario's `[sim]`, flags) or a calibration from a measured run folder;
//! per model of the input, the figures the replay and the cost use (resident size and
//! where it sits, load time, speeds), each with where it came from, and the break-even
//! keep_alive that follows from them and the `[cost]` weights.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::engine::calibrate;
use crate::engine::catalogue::Catalogue;
use crate::engine::sched::{SchedConfig, predicted_size};
use crate::engine::sim_settings::SimSettings;
use crate::scenario::CostSettings;

/// Bytes in a GB (decimal, as every memory figure of kabench).
const GB: f64 = 1e9;

/// The simulated host of a prediction.
#[derive(Debug, Clone)]
pub struct Host {
    /// Scheduler settings (seed included).
    pub config: SchedConfig,
    /// Installed models.
    pub catalogue: Catalogue,
    /// Where the settings came from, in words.
    pub source: String,
    /// The run folder it was calibrated from, if any.
    pub calibrated_from: Option<String>,
    /// What the calibration took, one line each.
    pub calibration: Vec<String>,
}

impl Host {
    /// The host of `settings` (its `calibrate` folder applied, as the simulator does).
    pub fn new(settings: &SimSettings, seed: u64, source: &str) -> Result<Host> {
        let mut settings = settings.clone();
        let mut calibration = Vec::new();
        let mut calibrated_from = None;
        if let Some(dir) = settings.calibrate.clone() {
            let c = calibrate::calibrate(Path::new(&dir))?;
            calibration = c.describe();
            c.apply(&mut settings);
            calibrated_from = Some(dir);
        }
        let config = settings.sched_config(seed)?;
        Ok(Host {
            catalogue: settings.catalogue(),
            config,
            source: match &calibrated_from {
                Some(d) => format!("{source}, calibrated from the run folder {d}"),
                None => source.to_string(),
            },
            calibrated_from,
            calibration,
        })
    }

    /// The host in words (`1 × 24 GiB GPU`, `CPU-only host`).
    pub fn describe(&self) -> String {
        if self.config.cpu_only() {
            "CPU-only host (no GPU: models in system memory)".to_string()
        } else {
            format!(
                "{} × {} GPU",
                self.config.gpus,
                crate::units::format_size_short(self.config.vram_bytes)
            )
        }
    }

    /// The figures of `model` as served with `num_ctx` (the client's, else the host's
    /// default), priced with `cost`. `None` when the catalogue does not have the model.
    pub fn figures(
        &self,
        model: &str,
        num_ctx: Option<u32>,
        cost: &CostSettings,
    ) -> Option<ModelFigures> {
        let spec = self.catalogue.resolve(model)?;
        let training = spec.context_length.max(1);
        let ctx = match num_ctx {
            Some(n) if n > 0 => n.min(training),
            _ => self.config.default_context().min(training),
        };
        let size = predicted_size(spec, ctx, self.config.slots());
        let gpu = if self.config.cpu_only() {
            0
        } else {
            size.min(self.config.usable_vram())
        };
        let ram = size - gpu;
        let load_s = self.config.load_secs(spec, true);
        let (penalty_s, penalty_source) = match cost.cold_penalty {
            Some(d) => (d.as_secs_f64(), "[cost] cold_penalty".to_string()),
            None => (load_s, "the host's load time (page cache warm)".to_string()),
        };
        let hold_per_s =
            (gpu as f64 / GB * cost.vram_gb_hour + ram as f64 / GB * cost.ram_gb_hour) / 3600.0;
        let break_even_s = (hold_per_s > 0.0).then(|| penalty_s * cost.wait_second / hold_per_s);
        Some(ModelFigures {
            model: model.to_string(),
            num_ctx: ctx,
            resident_bytes: size,
            gpu_bytes: gpu,
            ram_bytes: ram,
            load_s,
            load_first_s: self.config.load_secs(spec, false),
            prefill_tps: spec.prefill_tps,
            decode_tps: spec.decode_tps,
            source: spec.source.clone(),
            penalty_s,
            penalty_source,
            hold_cost_per_s: hold_per_s,
            break_even_s,
        })
    }
}

/// What the replay and the cost take for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFigures {
    /// The model as the input names it.
    pub model: String,
    /// Context per slot it is served with.
    pub num_ctx: u32,
    /// Resident size (E1's prediction), bytes.
    pub resident_bytes: u64,
    /// Its GPU part, bytes.
    pub gpu_bytes: u64,
    /// Its system-memory part, bytes.
    pub ram_bytes: u64,
    /// A load with the file in the page cache, seconds.
    pub load_s: f64,
    /// The first load, from a cold disk, seconds.
    pub load_first_s: f64,
    /// Prompt evaluation, tokens/s.
    pub prefill_tps: f64,
    /// Decode, tokens/s.
    pub decode_tps: f64,
    /// Where the catalogue's figures come from.
    pub source: String,
    /// The wait one cold start costs, seconds.
    pub penalty_s: f64,
    /// Where `penalty_s` comes from.
    pub penalty_source: String,
    /// Cost of holding the model one second (`[cost]` units).
    pub hold_cost_per_s: f64,
    /// Break-even keep_alive T* = penalty × wait_second ÷ hold cost per second;
    /// `None` (forever) when holding costs nothing.
    pub break_even_s: Option<f64>,
}
