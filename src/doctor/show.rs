//! What `/api/show` says of a model (capabilities, training context, the KV bytes per
//! token from its geometry), and the pick of the smallest installed model that
//! generates when no `--model` is given.

use serde_json::{Value, json};

use super::ModelMissing;
use super::http::{Req, Server};

/// What `/api/show` says of a model.
#[derive(Debug, Clone, Default)]
pub(super) struct Shown {
    pub(super) capabilities: Vec<String>,
    pub(super) training_ctx: Option<u64>,
    /// f16 K and V bytes per token per slot, from the geometry.
    pub(super) kv_bytes_per_token: Option<u64>,
    /// The weights file on the server's disk (`modelfile`'s `FROM` blob).
    pub(super) blob: Option<std::path::PathBuf>,
}

impl Shown {
    pub(super) fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

fn parse_show(v: &Value) -> Shown {
    let caps = v
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let info = v.get("model_info").and_then(Value::as_object);
    let find = |suffix: &str| -> Option<u64> {
        info?
            .iter()
            .find(|(k, _)| k.ends_with(suffix))
            .and_then(|(_, v)| v.as_u64())
    };
    let layers = find(".block_count");
    let kv_heads = find(".attention.head_count_kv");
    let head_dim = find(".attention.key_length").or_else(|| {
        let heads = find(".attention.head_count")?;
        Some(find(".embedding_length")? / heads.max(1))
    });
    let kv = match (layers, kv_heads, head_dim) {
        (Some(l), Some(h), Some(d)) => Some(2 * l * h * d * 2),
        _ => None,
    };
    Shown {
        capabilities: caps,
        training_ctx: find(".context_length"),
        kv_bytes_per_token: kv,
        blob: v
            .get("modelfile")
            .and_then(Value::as_str)
            .and_then(super::pagecache::blob_path),
    }
}

/// Picks the smallest installed model that generates.
pub(super) async fn pick_model(server: &mut Server) -> anyhow::Result<String> {
    let tags = server.send(&Req::get("/api/tags")).await?;
    let mut models: Vec<(u64, String)> = tags
        .json
        .as_ref()
        .and_then(|j| j.get("models"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m.get("size").and_then(Value::as_u64).unwrap_or(0),
                        m.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    models.sort();
    for (_, m) in models {
        if show(server, &m).await?.has("completion") {
            return Ok(m);
        }
    }
    Err(ModelMissing("(any)".into(), "no installed model generates text".into()).into())
}

pub(super) async fn show(server: &mut Server, model: &str) -> anyhow::Result<Shown> {
    let reply = server
        .send(&Req::post("/api/show", json!({"model": model})))
        .await?;
    match reply.status {
        200 => Ok(parse_show(reply.json.as_ref().unwrap_or(&Value::Null))),
        404 => Err(ModelMissing(model.into(), reply.error_text()).into()),
        s => anyhow::bail!(
            "/api/show {}: HTTP {s}: {}",
            crate::units::limits::printable(model),
            crate::units::limits::excerpt(&reply.error_text())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_gives_kv_bytes_from_either_geometry() {
        let real = json!({"capabilities": ["completion"], "model_info": {
            "llama.block_count": 8, "llama.attention.head_count_kv": 8,
            "llama.attention.head_count": 8, "llama.embedding_length": 512,
            "llama.context_length": 4096}});
        let s = parse_show(&real);
        assert_eq!(s.kv_bytes_per_token, Some(16384));
        assert_eq!(s.training_ctx, Some(4096));
        assert!(s.has("completion") && !s.has("embedding"));
        let sim = json!({"model_info": {"llama.block_count": 8,
            "llama.attention.head_count_kv": 8, "llama.attention.key_length": 64}});
        assert_eq!(parse_show(&sim).kv_bytes_per_token, Some(16384));
    }
}
