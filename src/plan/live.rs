//! Model sizes from a live server instead of the catalogue: `/api/show` for the
//! geometry and quantization (`model_info`), `/api/tags` for the file size, and a load
//! at each num_ctx with `/api/ps` `size` and `size_vram` for the resident size, then an
//! unload. What was read becomes catalogue entries and measurements for the planner.
//! Every call is bounded by the plan's `--timeout` (a server that never answers is an
//! error naming the target and the limit), and every figure a server reports is
//! checked against its limit (`bounds`) before the plan computes with it.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::bounds::{self, MAX_GEOMETRY, MAX_NUM_CTX};
use super::estimate::MeasuredSize;
use super::{Asked, PlanError, Planner};
use crate::engine::catalogue::{Capability, Catalogue, ModelSpec};
use crate::engine::sched::SchedConfig;
use crate::ollama::{ClientError, OllamaClient, api, name};
use crate::units::KeepAlive;
use crate::units::limits::printable;

/// The server did not answer one of plan's calls within `--timeout`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{target} did not answer {what} within {limit:?} (plan --timeout): check that an Ollama is up and answering there, or give a longer --timeout for a slow load"
)]
pub struct NoAnswer {
    /// The server.
    pub target: String,
    /// The call, in words.
    pub what: String,
    /// The limit it ran past.
    pub limit: Duration,
}

/// `call` to `client`, bounded by `limit`.
async fn within<T>(
    client: &OllamaClient,
    what: String,
    limit: Duration,
    call: impl Future<Output = Result<T, ClientError>>,
) -> anyhow::Result<Result<T, ClientError>> {
    tokio::time::timeout(limit, call).await.map_err(|_| {
        NoAnswer {
            target: client.base_url().to_string(),
            what,
            limit,
        }
        .into()
    })
}

/// A model the server has, read into a catalogue entry (no speeds: the plan needs none).
/// A geometry figure, context length or file size over its limit is refused, naming
/// the field.
pub fn spec_from_show(
    asked: &str,
    show: &api::ShowResponse,
    file_bytes: u64,
) -> Result<ModelSpec, PlanError> {
    let info = &show.model_info;
    let arch = info
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("llama")
        .to_string();
    let field = |key: &str, limit: u64| -> Result<Option<u32>, PlanError> {
        let name = format!("{arch}.{key}");
        match info.get(&name).and_then(Value::as_u64) {
            None => Ok(None),
            Some(n) => {
                let what = format!("/api/show model_info {name} of {}", printable(asked));
                Ok(Some(bounds::check(&what, n, limit)? as u32))
            }
        }
    };
    bounds::check_bytes(
        &format!("/api/tags size of {}", printable(asked)),
        file_bytes,
    )?;
    let heads = field("attention.head_count", MAX_GEOMETRY)?.unwrap_or(0);
    let embedding = field("embedding_length", MAX_GEOMETRY)?;
    let head_dim = field("attention.key_length", MAX_GEOMETRY)?
        .or_else(|| Some(embedding? / heads.max(1)))
        .unwrap_or(0);
    let block_count = field("block_count", MAX_GEOMETRY)?.unwrap_or(0);
    let kv_heads = field("attention.head_count_kv", MAX_GEOMETRY)?.unwrap_or(heads);
    let context_length = field("context_length", u64::from(MAX_NUM_CTX))?.unwrap_or(4096);
    let capabilities = show
        .capabilities
        .iter()
        .filter_map(|c| serde_json::from_value(Value::from(c.as_str())).ok())
        .collect::<Vec<Capability>>();
    Ok(ModelSpec {
        name: asked.to_string(),
        aliases: Vec::new(),
        family: arch.clone(),
        parameter_size: show.details.parameter_size.clone(),
        quantization: show.details.quantization_level.clone(),
        file_bytes,
        block_count,
        kv_heads,
        head_dim,
        context_length,
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
    })
}

/// What `read_models` found.
pub struct LiveModels {
    /// The models the server has, as catalogue entries named as asked.
    pub specs: Vec<ModelSpec>,
    /// The names it lacks (`/api/show` 404).
    pub missing: Vec<String>,
}

/// Reads each asked model from the server, each call bounded by `limit`.
pub async fn read_models(
    client: &OllamaClient,
    asked: &[String],
    limit: Duration,
) -> anyhow::Result<LiveModels> {
    let tags = within(client, "/api/tags".into(), limit, client.tags()).await??;
    let mut specs = Vec::new();
    let mut missing = Vec::new();
    for m in asked {
        let what = format!("/api/show for {}", printable(m));
        match within(client, what, limit, client.show(m)).await? {
            Ok(show) => {
                let file = tags
                    .models
                    .iter()
                    .find(|t| name::same_model(&t.name, m))
                    .map_or(0, |t| t.size);
                specs.push(spec_from_show(m, &show, file)?);
            }
            Err(ClientError::Http { status: 404, .. }) => missing.push(m.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(LiveModels { specs, missing })
}

/// Loads `model` at `num_ctx` (`None`: none sent, the server's default), reads its
/// `/api/ps` entry, unloads it, each call bounded by `limit`. `None` when the server
/// did not list it after the load, or listed no context for a load without num_ctx.
pub async fn measure(
    client: &OllamaClient,
    model: &str,
    num_ctx: Option<u32>,
    limit: Duration,
) -> anyhow::Result<Option<MeasuredSize>> {
    let keep = KeepAlive::from_duration(Duration::from_secs(60));
    let shown = printable(model);
    let at = num_ctx.map_or("the server's default context".to_string(), |n| {
        format!("num_ctx {n}")
    });
    let took = within(
        client,
        format!("a load of {shown} at {at}"),
        limit,
        client.load(model, Some(&keep), num_ctx),
    )
    .await??;
    let ps = within(client, "/api/ps".into(), limit, client.ps()).await??;
    let found = match ps.models.iter().find(|p| name::same_model(&p.name, model)) {
        Some(p) => {
            let what = |field: &str| format!("/api/ps {field} of {shown}");
            let ctx = match (p.context_length, num_ctx) {
                (Some(c), _) => {
                    Some(bounds::check(&what("context_length"), c, u64::from(MAX_NUM_CTX))? as u32)
                }
                (None, asked) => asked,
            };
            let size = bounds::check_bytes(&what("size"), p.size)?;
            let size_vram = bounds::check_bytes(&what("size_vram"), p.size_vram)?;
            ctx.map(|ctx| MeasuredSize {
                model: model.to_string(),
                num_ctx: ctx,
                size,
                size_vram,
                load_s: took.as_secs_f64(),
            })
        }
        None => None,
    };
    let _ = within(
        client,
        format!("an unload of {shown}"),
        limit,
        client.unload(model),
    )
    .await;
    Ok(found)
}

/// A planner on the sizes of a live server: `found` (as `read_models` read them, none
/// missing), the same tags in each asked quantization where the server has them, and
/// each measured at every asked num_ctx (`config`'s default context when none). When
/// every model sat in system memory the host is CPU-only unless `gpus_given`; where
/// GPU memory cannot be known over HTTP the note says to give --vram.
#[allow(clippy::too_many_arguments)]
pub async fn planner(
    client: &OllamaClient,
    mut found: LiveModels,
    asked: &Asked,
    config: &SchedConfig,
    gpus_given: bool,
    vram_given: bool,
    limit: Duration,
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
        let more = read_models(client, &variants, limit)
            .await
            .with_context(|| format!("reading the models of {url}"))?;
        found.specs.extend(more.specs);
    }
    // Each model at the asked num_ctx values clamped to its own context (as Ollama
    // clamps them, L5); with none asked, at the server's own default, read back from
    // /api/ps: never at a context nobody asked for.
    let mut measured: Vec<MeasuredSize> = Vec::new();
    for spec in &found.specs {
        let shown = printable(&spec.name);
        let mut ctxs: Vec<Option<u32>> = Vec::new();
        if asked.num_ctx.is_empty() {
            ctxs.push(None);
        }
        for &ctx in &asked.num_ctx {
            let at = ctx.min(spec.context_length.max(1));
            if !ctxs.contains(&Some(at)) {
                ctxs.push(Some(at));
            }
        }
        for ctx in ctxs {
            let at = match ctx {
                None => "the server's default context (no num_ctx sent)".to_string(),
                Some(c) if asked.num_ctx.iter().any(|a| *a > c) => format!(
                    "num_ctx {c} (its context_length: a larger num_ctx is clamped to it, L5)"
                ),
                Some(c) => format!("num_ctx {c}"),
            };
            eprintln!("measuring {shown} at {at} (a load, /api/ps, an unload)");
            if let Some(m) = measure(client, &spec.name, ctx, limit)
                .await
                .with_context(|| format!("loading {shown} at {at} on {url}"))?
            {
                measured.push(m);
            }
        }
    }
    let server_default = asked
        .num_ctx
        .is_empty()
        .then(|| measured.iter().map(|m| m.num_ctx).max())
        .flatten();
    let mut config = config.clone();
    let cpu = !measured.is_empty() && measured.iter().all(|m| m.size_vram == 0);
    let mut note = String::new();
    if let Some(d) = server_default {
        // The server's default, clamped per model as the server clamps it (L7).
        config.context_length = d;
        note = format!(
            "; no --num-ctx: planned at the server's default context, {d} (/api/ps context_length after a load without num_ctx)"
        );
    }
    if cpu && !gpus_given {
        config.gpus = 0;
        note += "; every /api/ps size_vram was 0: a CPU-only host (give --gpus to override)";
    } else if !cpu && !vram_given {
        note += &format!(
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
