//! Model sizes from a live server instead of the catalogue: `/api/show` for the
//! geometry and quantization (`model_info`), `/api/tags` for the file size, and a load
//! at each num_ctx with `/api/ps` `size` and `size_vram` for the resident size, then an
//! unload. What was read becomes catalogue entries and measurements for the planner.

use std::time::Duration;

use serde_json::Value;

use super::estimate::MeasuredSize;
use crate::engine::catalogue::{Capability, ModelSpec};
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
