//! Calibration from a measured run: per model of a kabench run folder (its
//! `requests.csv`, the `/api/ps` rows of `vram.csv`, the `num_ctx` of each stream in
//! `scenario.toml`), the cold load time, the warm hand-over, the prompt-eval and decode
//! speeds and the resident size, and whether the host held its models on a GPU. They
//! become catalogue overrides and host settings, so the simulator stands in for the
//! measured host (`kabench sim --calibrate DIR`, `[sim] calibrate`); a trace predictor
//! can reuse them. Reads run folders only; knows nothing of HTTP or the scheduler.
//! Reading a measured folder and turning it into catalogue entries are one pass over the
//! same rows, kept in one file; its tests are in `calibrate/tests.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::catalogue::{Capability, Catalogue, ModelSpec};
use crate::engine::sim_settings::SimSettings;
use crate::folder::{self, RequestRecord, VramSample};
use crate::ollama::name;

/// What the run measured for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCalibration {
    /// The model as the scenario named it (`tiny-50m`).
    pub model: String,
    /// The name `/api/ps` gave it (`tiny-50m:latest`), if it was seen there.
    pub ps_name: Option<String>,
    /// Median `load_duration` of its successful cold requests, ms.
    pub cold_load_ms: Option<f64>,
    /// Cold requests behind `cold_load_ms`.
    pub cold_requests: usize,
    /// Median `load_duration` of its successful warm requests, ms.
    pub warm_load_ms: Option<f64>,
    /// Warm requests behind `warm_load_ms`.
    pub warm_requests: usize,
    /// Median `prompt_eval_count / prompt_eval_duration` of its cold requests (an empty
    /// prompt cache), or of all its requests when none was cold, tokens/s.
    pub prefill_tps: Option<f64>,
    /// Median `eval_count / eval_duration` of its requests, tokens/s.
    pub decode_tps: Option<f64>,
    /// Largest `/api/ps` `size` seen, bytes.
    pub resident_bytes: Option<u64>,
    /// `size_vram` of that same reading, bytes.
    pub resident_vram_bytes: Option<u64>,
    /// `num_ctx` its streams sent (the largest, when they differ).
    pub num_ctx: Option<u32>,
}

impl ModelCalibration {
    /// Whether it sat (partly) on a GPU: `Some(false)` when `/api/ps` showed it with
    /// `size_vram` 0, `None` when `/api/ps` never showed it.
    pub fn on_gpu(&self) -> Option<bool> {
        self.resident_vram_bytes.map(|v| v > 0)
    }
}

/// What a run folder says about the host it measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The run folder.
    pub run_dir: PathBuf,
    /// `/api/version` recorded in `run.json`, if readable.
    pub ollama_version: Option<String>,
    /// Whether `run.json` says the target was the simulator (a calibration from a
    /// simulated run only reproduces the simulator).
    pub simulated: bool,
    /// Per model, in the order the run first used them.
    pub models: Vec<ModelCalibration>,
    /// True when `/api/ps` listed models and every `size_vram` was 0: a CPU-only host.
    pub cpu_only: bool,
    /// 10th and 90th percentile of every warm `load_duration`, ms.
    pub warm_range_ms: Option<(f64, f64)>,
}

fn median(v: Vec<f64>) -> Option<f64> {
    percentile(v, 0.5)
}

/// The `q` quantile with linear interpolation between ranks; `None` when empty.
fn percentile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn ok(r: &RequestRecord) -> bool {
    r.error.is_empty() && r.status == Some(200)
}

fn rate(count: Option<u64>, ms: Option<f64>) -> Option<f64> {
    match (count, ms) {
        (Some(n), Some(ms)) if n > 0 && ms > 0.0 => Some(n as f64 * 1000.0 / ms),
        _ => None,
    }
}

/// `num_ctx` per stream name from the run folder's `scenario.toml`, read loosely (the
/// copy may name trace files that no longer resolve from here).
fn stream_contexts(dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join(folder::SCENARIO_TOML)) else {
        return out;
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return out;
    };
    let Some(streams) = doc.get("stream").and_then(|s| s.as_array()) else {
        return out;
    };
    for (i, s) in streams.iter().enumerate() {
        let name = s
            .get("name")
            .and_then(|n| n.as_str())
            .map_or_else(|| format!("stream{i}"), str::to_string);
        if let Some(n) = s.get("num_ctx").and_then(|n| n.as_integer())
            && let Ok(n) = u32::try_from(n)
        {
            out.insert(name, n);
        }
    }
    out
}

/// Reads the run folder `run_dir` and measures each model it used.
pub fn calibrate(run_dir: &Path) -> Result<Calibration> {
    let requests = folder::read_requests(run_dir).with_context(|| {
        format!(
            "calibrating from {}: is it a kabench run folder?",
            run_dir.display()
        )
    })?;
    check_durations(run_dir, &requests)?;
    let vram = folder::read_vram(run_dir)?;
    let meta = folder::read_meta(run_dir).ok();
    let contexts = stream_contexts(run_dir);
    Ok(from_records(
        run_dir,
        &requests,
        &vram,
        &contexts,
        meta.as_ref(),
    ))
}

/// Refuses a row whose measured durations cannot be times (NaN, negative, over 100
/// years): each becomes a load or service time of the simulated host, so it is checked
/// here, at load time, with the file, line and field named (exit 2).
fn check_durations(run_dir: &Path, requests: &[RequestRecord]) -> Result<()> {
    for (i, r) in requests.iter().enumerate() {
        for (field, value) in [
            ("load_duration_ms", r.load_duration_ms),
            ("prompt_eval_ms", r.prompt_eval_ms),
            ("eval_ms", r.eval_ms),
        ] {
            if let Some(ms) = value {
                crate::units::limits::duration_from_millis(
                    ms,
                    &format!(
                        "{}:{}: {field} (ms)",
                        run_dir.join(folder::REQUESTS_CSV).display(),
                        i + 2
                    ),
                )?;
            }
        }
    }
    Ok(())
}

fn from_records(
    run_dir: &Path,
    requests: &[RequestRecord],
    vram: &[VramSample],
    contexts: &BTreeMap<String, u32>,
    meta: Option<&folder::RunMeta>,
) -> Calibration {
    let mut order: Vec<String> = Vec::new();
    for r in requests {
        if !r.model.is_empty() && !order.iter().any(|m| name::same_model(m, &r.model)) {
            order.push(r.model.clone());
        }
    }
    let ps: Vec<&VramSample> = vram
        .iter()
        .filter(|s| s.source == "ollama_ps" && !s.model.is_empty())
        .collect();
    let mut models = Vec::new();
    let mut warm_all = Vec::new();
    for model in order {
        let rows: Vec<&RequestRecord> = requests
            .iter()
            .filter(|r| ok(r) && name::same_model(&r.model, &model))
            .collect();
        let cold: Vec<f64> = rows
            .iter()
            .filter(|r| r.cold)
            .filter_map(|r| r.load_duration_ms)
            .collect();
        let warm: Vec<f64> = rows
            .iter()
            .filter(|r| !r.cold)
            .filter_map(|r| r.load_duration_ms)
            .collect();
        warm_all.extend(warm.iter().copied());
        // After a load the prompt cache is empty, so cold requests evaluate their whole
        // prompt; a warm one may reuse a cached prefix and count tokens it never ran.
        let prefill_of = |cold_only: bool| -> Vec<f64> {
            rows.iter()
                .filter(|r| r.cold || !cold_only)
                .filter_map(|r| rate(r.prompt_eval_count, r.prompt_eval_ms))
                .collect()
        };
        let mut prefill = prefill_of(true);
        if prefill.is_empty() {
            prefill = prefill_of(false);
        }
        // One token says little about the decode rate.
        let decode: Vec<f64> = rows
            .iter()
            .filter(|r| r.eval_count.unwrap_or(0) >= 2)
            .filter_map(|r| rate(r.eval_count, r.eval_ms))
            .collect();
        let largest = ps
            .iter()
            .filter(|s| name::same_model(&s.model, &model))
            .max_by_key(|s| s.total_bytes.unwrap_or(s.used_bytes));
        let num_ctx = rows
            .iter()
            .filter_map(|r| contexts.get(&r.stream).copied())
            .max();
        models.push(ModelCalibration {
            ps_name: largest.map(|s| s.model.clone()),
            cold_requests: cold.len(),
            cold_load_ms: median(cold),
            warm_requests: warm.len(),
            warm_load_ms: median(warm),
            prefill_tps: median(prefill),
            decode_tps: median(decode),
            resident_bytes: largest.map(|s| s.total_bytes.unwrap_or(s.used_bytes)),
            resident_vram_bytes: largest.map(|s| s.used_bytes),
            num_ctx,
            model,
        });
    }
    let cpu_only = !ps.is_empty() && ps.iter().all(|s| s.used_bytes == 0);
    let warm_range_ms = percentile(warm_all.clone(), 0.1)
        .zip(percentile(warm_all, 0.9))
        .map(|(lo, hi)| (lo.max(0.001), hi.max(lo).max(0.001)));
    Calibration {
        run_dir: run_dir.to_path_buf(),
        ollama_version: meta.and_then(|m| m.ollama_version.clone()),
        simulated: meta.is_some_and(|m| m.sim.is_some()),
        models,
        cpu_only,
        warm_range_ms,
    }
}

impl Calibration {
    /// Catalogue entries for the measured models: a model the catalogue knows keeps
    /// its geometry and takes the measured load time, speeds and resident size (as an
    /// overhead beyond file + KV at the run's `num_ctx`); an unknown one becomes an
    /// entry whose file is its measured resident size, without KV.
    pub fn overrides(&self, base: &Catalogue) -> Vec<ModelSpec> {
        let run = self.run_dir.display().to_string();
        let version = self
            .ollama_version
            .as_deref()
            .map_or_else(String::new, |v| format!(", Ollama {v}"));
        let mut out: Vec<ModelSpec> = Vec::new();
        for m in &self.models {
            let known = base.resolve(&m.model).cloned();
            let mut notes = Vec::new();
            let mut spec = known.clone().unwrap_or_else(|| ModelSpec {
                name: name::display(m.ps_name.as_deref().unwrap_or(&m.model)),
                aliases: Vec::new(),
                family: "unknown".into(),
                parameter_size: String::new(),
                quantization: String::new(),
                file_bytes: 0,
                block_count: 0,
                kv_heads: 0,
                head_dim: 0,
                context_length: m.num_ctx.unwrap_or(4096),
                prefill_tps: 900.0,
                decode_tps: 50.0,
                capabilities: vec![Capability::Completion],
                embedding_length: None,
                source: String::new(),
                load_s: None,
                overhead_bytes: None,
                overhead_per_token: None,
            });
            if let Some(ms) = m.cold_load_ms {
                spec.load_s = Some(ms / 1000.0);
                notes.push(format!(
                    "load {:.3} s = median load_duration of {} cold request(s)",
                    ms / 1000.0,
                    m.cold_requests
                ));
            }
            if let Some(tps) = m.prefill_tps {
                spec.prefill_tps = tps;
                notes.push(format!("prompt eval {tps:.0} t/s"));
            }
            if let Some(tps) = m.decode_tps {
                spec.decode_tps = tps;
                notes.push(format!("decode {tps:.1} t/s"));
            }
            if let Some(size) = m.resident_bytes {
                match (&known, m.num_ctx) {
                    (Some(k), Some(ctx)) if k.block_count > 0 => {
                        let per_token = k.kv_bytes_per_token() + k.overhead_per_token.unwrap_or(0);
                        let fixed = k.file_bytes + per_token * u64::from(ctx);
                        spec.overhead_bytes = Some(size.saturating_sub(fixed));
                        spec.overhead_per_token = k.overhead_per_token;
                        notes.push(format!(
                            "resident {size} B at num_ctx {ctx} (/api/ps size) = file + KV + {} B",
                            size.saturating_sub(fixed)
                        ));
                        if size < fixed {
                            notes.push(format!(
                                "the measured size is below file + KV ({fixed} B): the catalogue's geometry is not this model's"
                            ));
                        }
                    }
                    _ => {
                        // Without geometry or context: the measured size at any context.
                        spec.file_bytes = size;
                        spec.block_count = 0;
                        spec.overhead_bytes = Some(0);
                        spec.overhead_per_token = None;
                        notes.push(format!(
                            "resident {size} B (/api/ps size) at any context (no KV geometry{})",
                            if m.num_ctx.is_none() {
                                " or num_ctx known"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                if m.on_gpu() == Some(false) {
                    notes.push("held in system memory (size_vram 0)".into());
                }
            }
            let base_source = if spec.source.is_empty() {
                String::new()
            } else {
                format!("; catalogue: {}", spec.source)
            };
            spec.source = format!(
                "calibrated from run {run}{version}: {}{base_source}",
                notes.join("; ")
            );
            if let Some(prev) = out.iter_mut().find(|s| s.name == spec.name) {
                *prev = spec;
            } else {
                out.push(spec);
            }
        }
        out
    }

    /// Applies the calibration to `settings`: its models' entries go after `[[sim.models]]`
    /// (so they win), a CPU-only run makes a CPU-only host (`gpus = 0`), and the warm
    /// `load_duration` range becomes the run's. `calibrate` is cleared.
    pub fn apply(&self, settings: &mut SimSettings) {
        let base = settings.catalogue();
        let overrides = self.overrides(&base);
        settings.models.extend(overrides);
        if self.cpu_only {
            settings.gpus = Some(0);
            settings.vram = None;
        }
        if let Some((lo, hi)) = self.warm_range_ms {
            settings.warm_overhead = Some(vec![
                format!("{:.0}us", lo * 1000.0),
                format!("{:.0}us", (hi * 1000.0).max(1.0)),
            ]);
        }
        settings.calibrate = None;
    }

    /// What was taken and from where, one line each, for `kabench sim --calibrate`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!(
            "calibrated from {}{}: {}",
            self.run_dir.display(),
            self.ollama_version
                .as_deref()
                .map_or_else(String::new, |v| format!(" (Ollama {v})")),
            if self.cpu_only {
                "a CPU-only host (every /api/ps size_vram was 0): gpus = 0"
            } else if self.models.iter().any(|m| m.on_gpu() == Some(true)) {
                "models on a GPU (/api/ps size_vram > 0): GPU settings unchanged"
            } else {
                "no /api/ps readings: host settings unchanged"
            }
        )];
        if self.simulated {
            out.push(
                "note: that run's target was the simulator, so this reproduces the simulator"
                    .into(),
            );
        }
        let f = |v: Option<f64>, unit: &str, digits: usize| {
            v.map_or_else(|| "-".into(), |x| format!("{x:.digits$} {unit}"))
        };
        for m in &self.models {
            out.push(format!(
                "  {}: cold load {} (median of {} cold), warm load_duration {} (median of {} warm), prompt eval {}, decode {}, resident {}{}",
                m.model,
                f(m.cold_load_ms.map(|x| x / 1000.0), "s", 3),
                m.cold_requests,
                f(m.warm_load_ms, "ms", 2),
                m.warm_requests,
                f(m.prefill_tps, "t/s", 0),
                f(m.decode_tps, "t/s", 1),
                m.resident_bytes.map_or_else(
                    || "- (not in /api/ps)".into(),
                    |b| format!(
                        "{b} B{}",
                        m.num_ctx.map_or_else(String::new, |c| format!(" at num_ctx {c}"))
                    )
                ),
                match m.on_gpu() {
                    Some(true) => ", on the GPU",
                    Some(false) => ", in system memory",
                    None => "",
                }
            ));
        }
        if let Some((lo, hi)) = self.warm_range_ms {
            out.push(format!(
                "  warm load_duration range {lo:.2}–{hi:.2} ms (10th–90th percentile of every warm request)"
            ));
        }
        out.push(format!(
            "  from {}/requests.csv (load_duration, prompt_eval of cold requests, eval), vram.csv (/api/ps size and size_vram), scenario.toml (num_ctx)",
            self.run_dir.display()
        ));
        out
    }
}

#[cfg(test)]
mod tests;
