//! The "fits together?" verdict of a run with several models, recorded in `run.json`
//! `fits` by the path that writes the folder: the memory each model took (the largest
//! `/api/ps` `size` the run recorded, else the simulated host's figure in `run.json`),
//! the host from `run.json` (or the GPU total `nvml` sampled), and the planner's
//! verdict on the set (`plan::fit`), with what would have fit. Reads only the run
//! folder's records.

use crate::engine::catalogue::Catalogue;
use crate::engine::sched::SchedConfig;
use crate::folder::{FitModel, FitSection, RunMeta, VramSample};
use crate::ollama::name;
use crate::plan::{self, Asked, Planner, fit};
use crate::units::format_bytes;

/// The largest `/api/ps` `size` per model over the run.
fn ps_sizes(samples: &[VramSample]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.source == "ollama_ps" && !s.model.is_empty())
    {
        let size = s.total_bytes.unwrap_or(s.used_bytes);
        match out
            .iter_mut()
            .find(|(m, _, _)| name::same_model(m, &s.model))
        {
            Some(e) => {
                e.1 = e.1.max(size);
                e.2 = e.2.max(s.used_bytes);
            }
            None => out.push((s.model.clone(), size, s.used_bytes)),
        }
    }
    out
}

/// The host of the run as the scheduler's settings, and in words; `None` when the run
/// recorded no memory total to test against.
fn host(meta: &RunMeta, samples: &[VramSample], cpu: bool) -> Option<(SchedConfig, String)> {
    let mut config = SchedConfig::default();
    if let Some(sim) = meta.sim.as_ref().filter(|s| !s.gpu.is_empty()) {
        config.gpus = sim.gpus;
        config.vram_bytes = sim.vram_bytes.max(1);
        config.max_loaded_models = sim.max_loaded_models;
        config.num_parallel = sim.num_parallel;
        return Some((config, format!("the simulated {}", sim.gpu)));
    }
    if cpu {
        config.gpus = 0;
        return Some((
            config,
            "a CPU-only host (every /api/ps size_vram was 0; OLLAMA_MAX_LOADED_MODELS assumed the default)".into(),
        ));
    }
    let total = samples
        .iter()
        .filter(|s| s.source == "nvml" && s.model.is_empty())
        .filter_map(|s| s.total_bytes)
        .max()?;
    config.vram_bytes = total;
    Some((
        config,
        format!(
            "a {} GPU (nvml's total; OLLAMA_MAX_LOADED_MODELS assumed the default)",
            format_bytes(total)
        ),
    ))
}

/// A set of models with their num_ctx, as a cell's streams name them.
type ModelSet = Vec<(String, Option<u32>)>;

/// One section per distinct set of two or more models run together.
pub fn sections(meta: &RunMeta, samples: &[VramSample]) -> Vec<FitSection> {
    let sizes = ps_sizes(samples);
    let mut groups: Vec<(ModelSet, Vec<String>)> = Vec::new();
    for cell in &meta.cells {
        let mut set: ModelSet = Vec::new();
        for s in &cell.streams {
            if !set.iter().any(|(m, _)| name::same_model(m, &s.model)) {
                set.push((s.model.clone(), s.num_ctx));
            }
        }
        if set.len() < 2 {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == set) {
            Some((_, cells)) => cells.push(cell.id.clone()),
            None => groups.push((set, vec![cell.id.clone()])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(set, cells)| section(meta, samples, &sizes, &set, &cells))
        .collect()
}

fn section(
    meta: &RunMeta,
    samples: &[VramSample],
    sizes: &[(String, u64, u64)],
    set: &[(String, Option<u32>)],
    cells: &[String],
) -> Option<FitSection> {
    let mut models = Vec::new();
    let mut pairs = Vec::new();
    let mut cpu = true;
    for (model, ctx) in set {
        let measured = sizes.iter().find(|(m, _, _)| name::same_model(m, model));
        let simulated = meta
            .sim
            .as_ref()
            .and_then(|h| h.models.iter().find(|m| name::same_model(&m.model, model)));
        let (size, source) = match (measured, simulated) {
            (Some((_, size, vram)), _) => {
                cpu &= *vram == 0;
                (*size, "largest /api/ps size in the run".to_string())
            }
            (None, Some(m)) if m.resident_bytes > 0 => {
                (m.resident_bytes, "the simulated host's figure".to_string())
            }
            _ => return None,
        };
        models.push(FitModel {
            model: model.clone(),
            num_ctx: *ctx,
            size: format_bytes(size),
            source,
        });
        pairs.push((model.clone(), size));
    }
    let (config, host) = host(meta, samples, cpu)?;
    let result = fit::fit_sizes(&config, &pairs);
    let verdict = if result.fits {
        format!(
            "yes: all {} stay resident together{}",
            pairs.len(),
            result
                .headroom
                .map_or(String::new(), |h| format!(", {} of VRAM left", signed(h)))
        )
    } else {
        format!(
            "no: requested in turn, they evict each other ({} of {} models load beside the ones before)",
            result.steps.iter().filter(|s| s.verdict.joins()).count(),
            pairs.len()
        )
    };
    let steps = result
        .steps
        .iter()
        .map(|s| format!("{}: {}", s.model, plan::render::test(s)))
        .collect();
    let would_fit = if result.fits {
        Vec::new()
    } else {
        would_fit(meta, &config, &pairs, set)
    };
    let assumed_cap = meta.sim.is_none();
    let observed = together(samples, set).map(|n| {
        let hint = if assumed_cap && result.fits && n > 0 && n < set.len() {
            format!(
                " (fewer than the default cap allows: the server may run OLLAMA_MAX_LOADED_MODELS={n}, or its memory held no more)"
            )
        } else {
            String::new()
        };
        format!(
            "/api/ps listed at most {n} of the {} together during the run{hint}",
            set.len()
        )
    });
    Some(FitSection {
        observed,
        cells: cells.join(", "),
        host,
        models,
        verdict,
        steps,
        would_fit,
    })
}

/// The most models of `set` one `/api/ps` poll listed.
fn together(samples: &[VramSample], set: &[(String, Option<u32>)]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut i = 0;
    let ps: Vec<&VramSample> = samples.iter().filter(|s| s.source == "ollama_ps").collect();
    while i < ps.len() {
        let t = ps[i].t_ms;
        let mut n = 0;
        while i < ps.len() && ps[i].t_ms == t {
            if set.iter().any(|(m, _)| name::same_model(m, &ps[i].model)) {
                n += 1;
            }
            i += 1;
        }
        best = Some(best.map_or(n, |b| b.max(n)));
    }
    best
}

fn signed(b: i64) -> String {
    if b < 0 {
        format!("−{}", format_bytes(b.unsigned_abs()))
    } else {
        format_bytes(b as u64)
    }
}

/// What would have fit: the longest run of the first models that does, a raised model
/// cap, and for catalogue models on the simulator the planner's smallest changes.
fn would_fit(
    meta: &RunMeta,
    config: &SchedConfig,
    pairs: &[(String, u64)],
    set: &[(String, Option<u32>)],
) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = (1..pairs.len())
        .rev()
        .find(|&k| fit::fit_sizes(config, &pairs[..k]).fits);
    if let Some(k) = prefix {
        let names: Vec<&str> = pairs[..k].iter().map(|(m, _)| m.as_str()).collect();
        out.push(format!("{} together", names.join(" and ")));
    }
    let mut raised = config.clone();
    raised.max_loaded_models = pairs.len() as u32;
    if config.max_models() < pairs.len() && fit::fit_sizes(&raised, pairs).fits {
        out.push(format!(
            "all of them with OLLAMA_MAX_LOADED_MODELS={}",
            pairs.len()
        ));
    }
    let ctx = set.first().and_then(|(_, c)| *c);
    let same_ctx = set.iter().all(|(_, c)| *c == ctx);
    let catalogue = Catalogue::builtin();
    let known = set.iter().all(|(m, _)| catalogue.resolve(m).is_some());
    if meta.sim.is_some() && known && same_ctx {
        let planner = Planner {
            config: config.clone(),
            catalogue,
            measured: Vec::new(),
            sizes_from: String::new(),
        };
        let asked = Asked {
            models: set.iter().map(|(m, _)| m.clone()).collect(),
            num_ctx: ctx.into_iter().collect(),
            ..Asked::default()
        };
        if let Ok(p) = planner.plan(&asked) {
            for c in p.combinations.iter().flat_map(|c| c.changes.iter()) {
                out.push(format!("all of them with {}", c.what));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::{CellMeta, StreamMeta};

    fn stream(model: &str, num_ctx: u32) -> StreamMeta {
        StreamMeta {
            name: model.into(),
            model: model.into(),
            num_ctx: Some(num_ctx),
            ..Default::default()
        }
    }

    fn ps_sample(t: f64, model: &str, size: u64) -> VramSample {
        VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            model: model.into(),
            used_bytes: 0,
            total_bytes: Some(size),
            ..Default::default()
        }
    }

    #[test]
    fn fits_together_on_a_live_cpu_host_uses_the_api_ps_sizes_and_the_default_cap_e5() {
        // A live run of four models on a CPU-only server (every size_vram 0): no VRAM test
        // (E2), the default cap of 3 (E5) evicts the fourth.
        let mut meta = RunMeta::default();
        meta.cells.push(CellMeta {
            id: "c01".into(),
            streams: ["a", "b", "c", "d"]
                .iter()
                .map(|m| stream(m, 2048))
                .collect(),
            ..Default::default()
        });
        meta.cells.push(CellMeta {
            id: "c02".into(),
            streams: vec![stream("a", 2048)],
            ..Default::default()
        });
        let samples: Vec<VramSample> = ["a:latest", "b:latest", "c:latest", "d:latest"]
            .iter()
            .enumerate()
            .map(|(i, m)| ps_sample(i as f64, m, 100 << 20))
            .collect();
        let s = sections(&meta, &samples);
        assert_eq!(s.len(), 1, "one cell runs several models");
        assert_eq!(s[0].cells, "c01");
        assert!(s[0].host.starts_with("a CPU-only host"), "{}", s[0].host);
        assert!(s[0].verdict.starts_with("no:"), "{}", s[0].verdict);
        assert!(
            s[0].steps[3].contains("3 loaded = the cap"),
            "{:?}",
            s[0].steps
        );
        assert_eq!(s[0].models[0].size, "100.0 MiB");
        assert_eq!(
            s[0].observed.as_deref(),
            Some("/api/ps listed at most 1 of the 4 together during the run")
        );
        assert_eq!(
            s[0].would_fit,
            [
                "a and b and c together",
                "all of them with OLLAMA_MAX_LOADED_MODELS=4"
            ]
        );
    }

    #[test]
    fn fits_together_on_a_gpu_run_without_a_memory_total_is_not_judged() {
        // /api/ps shows GPU memory, but neither run.json nor nvml says how much there was.
        let mut meta = RunMeta::default();
        meta.cells.push(CellMeta {
            id: "c01".into(),
            streams: vec![stream("a", 4096), stream("b", 4096)],
            ..Default::default()
        });
        let mut samples = vec![ps_sample(0.0, "a", 5 << 30), ps_sample(0.0, "b", 5 << 30)];
        for s in &mut samples {
            s.used_bytes = 5 << 30;
        }
        assert!(sections(&meta, &samples).is_empty());
    }
}
