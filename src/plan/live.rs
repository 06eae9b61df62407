//! Model sizes from a live server instead of the catalogue: `/api/show` for the
//! geometry and quantization (`model_info`), `/api/tags` for the file size, and a load
//! at each num_ctx with `/api/ps` `size` and `size_vram` for the resident size, then an
//! unload. What was read becomes catalogue entries and measurements for the planner.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::estimate::MeasuredSize;
use super::{Asked, Planner};
use crate::engine::catalogue::{Capability, Catalogue, ModelSpec};
use crate::engine::sched::SchedConfig;
use crate::ollama::{ClientError, OllamaClient, api, name};
use crate::units::KeepAlive;

/// A model the server has, read into a catalogue entry (no speeds: the plan needs none).
pub fn spec_from_show(asked: &str, show: &api::ShowResponse, file_bytes: u64) -> ModelSpec {
    let info = &show.model_info;
    let arch = info
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("llama")
        .to_string();
    let num = |key: &str| {
        info.get(&format!("{arch}.{key}"))
            .and_then(Value::as_u64)
            .map(|n| n as u32)
    };
    let heads = num("attention.head_count").unwrap_or(0);
    let head_dim = num("attention.key_length")
        .or_else(|| Some(num("embedding_length")? / heads.max(1)))
        .unwrap_or(0);
    let capabilities = show
        .capabilities
        .iter()
        .filter_map(|c| serde_json::from_value(Value::from(c.as_str())).ok())
        .collect::<Vec<Capability>>();
    ModelSpec {
        name: asked.to_string(),
        aliases: Vec::new(),
        family: arch.clone(),
        parameter_size: show.details.parameter_size.clone(),
        quantization: show.details.quantization_level.clone(),
        file_bytes,
        block_count: num("block_count").unwrap_or(0),
        kv_heads: num("attention.head_count_kv").unwrap_or(heads),
        head_dim,
        context_length: num("context_length").unwrap_or(4096),
        prefill_tps: 0.0,
        decode_tps: 0.0,
        capabilities: if capabilities.is_empty() {
            vec![Capability::Completion]
        } else {
            capabilities
        },
        embedding_length: None,
        source: "the server's /api/show and /api/tags".into(),
        load_s: None,
        overhead_bytes: None,
        overhead_per_token: None,
    }
}

/// What `read_models` found.
pub struct LiveModels {
    /// The models the server has, as catalogue entries named as asked.
    pub specs: Vec<ModelSpec>,
    /// The names it lacks (`/api/show` 404).
    pub missing: Vec<String>,
}

/// Reads each asked model from the server.
pub async fn read_models(
    client: &OllamaClient,
    asked: &[String],
) -> Result<LiveModels, ClientError> {
    let tags = client.tags().await?;
    let mut specs = Vec::new();
    let mut missing = Vec::new();
    for m in asked {
        match client.show(m).await {
            Ok(show) => {
                let file = tags
                    .models
                    .iter()
                    .find(|t| name::same_model(&t.name, m))
                    .map_or(0, |t| t.size);
                specs.push(spec_from_show(m, &show, file));
            }
            Err(ClientError::Http { status: 404, .. }) => missing.push(m.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(LiveModels { specs, missing })
}

/// Loads `model` at `num_ctx`, reads its `/api/ps` entry, unloads it. `None` when the
/// server did not list it after the load.
pub async fn measure(
    client: &OllamaClient,
    model: &str,
    num_ctx: u32,
) -> Result<Option<MeasuredSize>, ClientError> {
    let keep = KeepAlive::from_duration(Duration::from_secs(60));
    let took = client.load(model, Some(&keep), Some(num_ctx)).await?;
    let ps = client.ps().await?;
    let found = ps
        .models
        .iter()
        .find(|p| name::same_model(&p.name, model))
        .map(|p| MeasuredSize {
            model: model.to_string(),
            num_ctx: p.context_length.map_or(num_ctx, |c| c as u32),
            size: p.size,
            size_vram: p.size_vram,
            load_s: took.as_secs_f64(),
        });
    let _ = client.unload(model).await;
    Ok(found)
}

/// A planner on the sizes of a live server: `found` (as `read_models` read them, none
/// missing), the same tags in each asked quantization where the server has them, and
/// each measured at every asked num_ctx (`config`'s default context when none). When
/// every model sat in system memory the host is CPU-only unless `gpus_given`; where
/// GPU memory cannot be known over HTTP the note says to give --vram.
pub async fn planner(
    client: &OllamaClient,
    mut found: LiveModels,
    asked: &Asked,
    config: &SchedConfig,
    gpus_given: bool,
    vram_given: bool,
) -> anyhow::Result<Planner> {
    let url = client.base_url().to_string();
    // --quant: the same tags with the quantization swapped, where the server has them
    // (the plan then names the ones it lacks).
    let variants: Vec<String> = found
        .specs
        .iter()
        .flat_map(|spec| {
            let own = spec.quant_tag();
            asked.quant.iter().filter_map(move |q| {
                let stem = spec.name.strip_suffix(own.as_str())?;
                (!own.is_empty() && !own.eq_ignore_ascii_case(q)).then(|| format!("{stem}{q}"))
            })
        })
        .collect();
    if !variants.is_empty() {
        let more = read_models(client, &variants)
            .await
            .with_context(|| format!("reading the models of {url}"))?;
        found.specs.extend(more.specs);
    }
    let ctxs = if asked.num_ctx.is_empty() {
        vec![config.default_context()]
    } else {
        asked.num_ctx.clone()
    };
    let mut measured: Vec<MeasuredSize> = Vec::new();
    for spec in &found.specs {
        for &ctx in &ctxs {
            eprintln!(
                "measuring {} at num_ctx {ctx} (a load, /api/ps, an unload)",
                spec.name
            );
            if let Some(m) = measure(client, &spec.name, ctx)
                .await
                .with_context(|| format!("loading {} at num_ctx {ctx} on {url}", spec.name))?
            {
                measured.push(m);
            }
        }
    }
    let mut config = config.clone();
    let cpu = !measured.is_empty() && measured.iter().all(|m| m.size_vram == 0);
    let mut note = String::new();
    if cpu && !gpus_given {
        config.gpus = 0;
        note = "; every /api/ps size_vram was 0: a CPU-only host (give --gpus to override)".into();
    } else if !cpu && !vram_given {
        note = format!(
            "; the server's GPU memory is not known over HTTP: planned for {} × {} (give --vram and --gpus)",
            config.gpus,
            crate::units::format_size_short(config.vram_bytes)
        );
    }
    let names: Vec<String> = measured
        .iter()
        .map(|m| format!("{} at {}", m.model, m.num_ctx))
        .collect();
    Ok(Planner {
        config,
        catalogue: Catalogue {
            models: found.specs,
        },
        sizes_from: format!(
            "measured on {url}: /api/ps size after a load ({}); file sizes from /api/tags, KV from /api/show geometry; the other figures estimated by E1{note}",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ),
        measured,
    })
}
