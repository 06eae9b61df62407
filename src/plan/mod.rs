//! `kabench plan`: which models stay loaded together, at which quantization, context
//! and parallelism. For every combination asked for it estimates what each model takes
//! resident (`estimate`, E1's arithmetic from `sched`, or a size a live server
//! measured), tests the set with the scheduler's own admission rule (`fit`), replays a
//! round-robin of requests through the scheduler on a virtual clock to say what gets
//! evicted in which order (`order`), finds the smallest change that makes a set fit
//! (`change`), and prints it all (`render`). `observe` reads a `--check` run folder back
//! into the same timeline, `live` asks a server for the sizes, `bounds` holds the
//! limits every input is checked against before the arithmetic. The arithmetic lives in
//! `sched` (`size_parts`, `SchedConfig::admits`); nothing here repeats it.

pub mod bounds;
pub mod change;
pub mod estimate;
pub mod fit;
pub mod fits;
pub mod live;
pub mod observe;
pub mod order;
pub mod render;
pub mod scenario;

use serde::Serialize;

use crate::engine::catalogue::{Catalogue, ModelSpec};
use crate::engine::sched::SchedConfig;
pub use estimate::{Estimate, Figure, MeasuredSize};
pub use fit::{Fit, Verdict};
pub use order::Step;

/// Rounds of the predicted round-robin (the first loads every model; the second shows
/// whether they stayed).
pub const ROUNDS: u32 = 2;

/// What the user asked to plan.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// Models, in the order they are requested round-robin.
    pub models: Vec<String>,
    /// num_ctx values; empty: the host's default context (L7).
    pub num_ctx: Vec<u32>,
    /// Parallel slots (`OLLAMA_NUM_PARALLEL`); empty: the host's.
    pub parallel: Vec<u32>,
    /// Quantizations in the tag form (`q4_K_M`); empty: as the models are named.
    pub quant: Vec<String>,
}

/// Why a plan cannot be made (bad input: exit 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// No models.
    #[error(
        "no models to plan: give --models a,b,c (names as `kabench models` lists them, or as installed on --target), or --scenario FILE"
    )]
    NoModels,
    /// A model neither the catalogue nor the server knows.
    #[error("unknown model {0:?}: {1}")]
    UnknownModel(String, String),
    /// A quantization a model does not come in.
    #[error(
        "{model} has no {quant} variant{known}: give --quant with one of them, or leave it out"
    )]
    NoQuant {
        /// The model as asked.
        model: String,
        /// The quantization asked.
        quant: String,
        /// The ones it has, as a clause.
        known: String,
    },
    /// A flag, a field a server reported, or a size over its limit (the arithmetic
    /// of the plan would overflow, or the value is absurd).
    #[error(
        "{what}: {value} is over the limit of {limit}; give a real value (a server reporting it is not answering as Ollama does)"
    )]
    OverLimit {
        /// The flag or field, e.g. `--vram`, `/api/show llama.block_count of m`.
        what: String,
        /// The value given.
        value: String,
        /// The limit.
        limit: String,
    },
    /// The VRAM holds none of the models alone.
    #[error(
        "{host} fits none of the models: the smallest, {model} at num_ctx {num_ctx}, takes {size}, more than the {usable} usable ({reserve} kept free); give a larger --vram or more --gpus, a smaller --num-ctx or --quant, or --gpus 0 for a CPU-only host"
    )]
    FitsNothing {
        /// The host in words.
        host: String,
        /// The smallest model.
        model: String,
        /// At this context.
        num_ctx: u32,
        /// Its size.
        size: String,
        /// Usable VRAM.
        usable: String,
        /// The reserve.
        reserve: String,
    },
}

/// The host the plan is for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    /// In words: `1 × 24 GiB GPU`, `a CPU-only host`.
    pub description: String,
    /// GPUs (0: CPU-only).
    pub gpus: u32,
    /// VRAM per GPU, bytes.
    pub vram_bytes: u64,
    /// Kept free for the driver and runtime, bytes.
    pub reserve_bytes: u64,
    /// GPUs × VRAM − reserve.
    pub usable_bytes: u64,
    /// E1's share of free VRAM a new model may take.
    pub fit_headroom: f64,
    /// E5's cap in force (`OLLAMA_MAX_LOADED_MODELS`, 0 → 3 per GPU).
    pub max_loaded_models: usize,
    /// L7's default context.
    pub default_context: u32,
}

impl Host {
    /// The host `config` describes.
    pub fn of(config: &SchedConfig) -> Host {
        let description = if config.cpu_only() {
            "a CPU-only host".to_string()
        } else {
            format!(
                "{} × {} GPU",
                config.gpus,
                crate::units::format_size_short(config.vram_bytes)
            )
        };
        Host {
            description,
            gpus: config.gpus,
            vram_bytes: config.vram_bytes,
            reserve_bytes: config.reserve_bytes,
            usable_bytes: config.usable_vram(),
            fit_headroom: config.fit_headroom,
            max_loaded_models: config.max_models(),
            default_context: config.default_context(),
        }
    }
}

/// One combination of num_ctx, parallel and quantization, and what it gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Combination {
    /// Per-slot context asked.
    pub num_ctx: u32,
    /// Slots per model (`OLLAMA_NUM_PARALLEL`).
    pub parallel: u32,
    /// Quantization asked, or `None` for the models as named.
    pub quant: Option<String>,
    /// `OLLAMA_MAX_LOADED_MODELS` in force (E5's cap).
    pub max_loaded_models: usize,
    /// Each model's resident size.
    pub estimates: Vec<Estimate>,
    /// Whether they stay resident together.
    pub fit: Fit,
    /// The predicted round-robin.
    pub timeline: Vec<Step>,
    /// Evictions in it.
    pub evictions: usize,
    /// For a set that does not fit: changes that make it fit, the smallest first.
    pub changes: Vec<change::Change>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The host.
    pub host: Host,
    /// Where the sizes come from, in words.
    pub sizes_from: String,
    /// Every combination, ranked: those where all stay resident first.
    pub combinations: Vec<Combination>,
}

/// What a plan is computed from.
#[derive(Debug, Clone)]
pub struct Planner {
    /// The host's scheduler settings (VRAM, GPUs, cap, parallel, headroom, reserve).
    pub config: SchedConfig,
    /// The models known (the catalogue, or models read from a live server).
    pub catalogue: Catalogue,
    /// Sizes a live server reported.
    pub measured: Vec<MeasuredSize>,
    /// Where the sizes come from, in words.
    pub sizes_from: String,
}

impl Planner {
    /// The resolved models of `asked` (in the quantization `quant` when given).
    pub fn resolve<'a>(
        &'a self,
        asked: &'a [String],
        quant: Option<&str>,
    ) -> Result<Vec<(&'a str, &'a ModelSpec)>, PlanError> {
        asked
            .iter()
            .map(|name| {
                let spec = self.catalogue.resolve(name).ok_or_else(|| {
                    PlanError::UnknownModel(
                        name.clone(),
                        "`kabench models` lists the models it knows; add --target URL to plan the models a server has".into(),
                    )
                })?;
                let Some(q) = quant else {
                    return Ok((name.as_str(), spec));
                };
                let variant = self.catalogue.with_quant(spec, q).ok_or_else(|| {
                    let known: Vec<String> = ["q4_0", "q4_K_M", "q8_0", "fp16"]
                        .iter()
                        .filter(|k| self.catalogue.with_quant(spec, k).is_some())
                        .map(|k| k.to_string())
                        .collect();
                    PlanError::NoQuant {
                        model: name.clone(),
                        quant: q.to_string(),
                        known: if known.is_empty() {
                            String::new()
                        } else {
                            format!(" (it has {})", known.join(", "))
                        },
                    }
                })?;
                Ok((name.as_str(), variant))
            })
            .collect()
    }

    /// One combination, without the changes.
    pub fn evaluate(
        &self,
        asked: &[String],
        num_ctx: u32,
        parallel: u32,
        quant: Option<&str>,
        max_loaded_models: u32,
    ) -> Result<Combination, PlanError> {
        let mut config = self.config.clone();
        config.num_parallel = parallel;
        config.max_loaded_models = max_loaded_models;
        let models = self.resolve(asked, quant)?;
        for (_, spec) in &models {
            bounds::check_estimate(spec, num_ctx, config.slots_for(spec))?;
        }
        let estimates: Vec<Estimate> = models
            .iter()
            .map(|(a, spec)| estimate::estimate(a, spec, num_ctx, &config, &self.measured))
            .collect();
        let fit = fit::fit(&config, &estimates);
        let turns: Vec<order::Turn> = models
            .iter()
            .map(|(_, spec)| order::Turn {
                model: spec.name.clone(),
                num_ctx,
            })
            .collect();
        let catalogue = self.sized_catalogue(&estimates);
        let timeline = order::replay(&config, &catalogue, &turns, ROUNDS);
        Ok(Combination {
            num_ctx,
            parallel,
            quant: quant.map(str::to_string),
            max_loaded_models: config.max_models(),
            evictions: order::evictions(&timeline),
            estimates,
            fit,
            timeline,
            changes: Vec::new(),
        })
    }

    /// The catalogue the replay runs on: a measured size replaces E1's overhead term so
    /// that the scheduler predicts the measured size.
    fn sized_catalogue(&self, estimates: &[Estimate]) -> Catalogue {
        let mut cat = self.catalogue.clone();
        for e in estimates.iter().filter(|e| e.figure == Figure::Measured) {
            if let Some(m) = cat.models.iter_mut().find(|m| m.name == e.model) {
                m.overhead_bytes = Some(e.overhead);
                m.overhead_per_token = None;
            }
        }
        cat
    }

    /// Every combination of `asked`, ranked, each non-fitting one with its changes.
    pub fn plan(&self, asked: &Asked) -> Result<Plan, PlanError> {
        if asked.models.is_empty() {
            return Err(PlanError::NoModels);
        }
        let ctxs = if asked.num_ctx.is_empty() {
            vec![self.config.default_context()]
        } else {
            asked.num_ctx.clone()
        };
        let pars = if asked.parallel.is_empty() {
            vec![self.config.slots()]
        } else {
            asked.parallel.clone()
        };
        let quants: Vec<Option<&str>> = if asked.quant.is_empty() {
            vec![None]
        } else {
            asked.quant.iter().map(|q| Some(q.as_str())).collect()
        };
        let mut combos = Vec::new();
        for &c in &ctxs {
            for &p in &pars {
                for &q in &quants {
                    combos.push(self.evaluate(
                        &asked.models,
                        c,
                        p,
                        q,
                        self.config.max_loaded_models,
                    )?);
                }
            }
        }
        self.check_fits_something(&combos)?;
        for combo in combos.iter_mut().filter(|c| !c.fit.fits) {
            combo.changes = change::changes(self, &asked.models, combo);
        }
        rank(&mut combos);
        Ok(Plan {
            host: Host::of(&self.config),
            sizes_from: self.sizes_from.clone(),
            combinations: combos,
        })
    }

    /// A VRAM that holds none of the models alone in any combination is bad input.
    fn check_fits_something(&self, combos: &[Combination]) -> Result<(), PlanError> {
        if self.config.cpu_only() {
            return Ok(());
        }
        let usable = self.config.usable_vram();
        let smallest = combos
            .iter()
            .flat_map(|c| c.estimates.iter())
            .min_by_key(|e| e.total);
        match smallest {
            Some(e) if e.total > usable => {
                let host = Host::of(&self.config);
                Err(PlanError::FitsNothing {
                    host: host.description,
                    model: e.model.clone(),
                    num_ctx: e.num_ctx,
                    size: crate::units::format_bytes(e.total),
                    usable: crate::units::format_bytes(usable),
                    reserve: crate::units::format_bytes(self.config.reserve_bytes),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Those where all stay resident first (the largest context, then parallel, then
/// weights first), then the others by fewest evictions.
fn rank(combos: &mut [Combination]) {
    let weights = |c: &Combination| {
        c.estimates
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.weights))
    };
    combos.sort_by(|a, b| {
        b.fit
            .fits
            .cmp(&a.fit.fits)
            .then(if a.fit.fits {
                std::cmp::Ordering::Equal
            } else {
                a.evictions.cmp(&b.evictions)
            })
            .then(b.num_ctx.cmp(&a.num_ctx))
            .then(b.parallel.cmp(&a.parallel))
            .then(weights(b).cmp(&weights(a)))
    });
}

#[cfg(test)]
mod tests;
