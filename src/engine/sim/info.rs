//! The simulator's read-only and bookkeeping endpoints: `/`, `/api/version`, `/api/ps`
//! (P1–P4), `/api/tags`, `/api/show` (H5), `/api/pull` (H6), Prometheus `/metrics`,
//! and Ollama's plain-text 404/405 (H1). None of them loads a model.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::wire::{self, SimError};
use super::{SimState, lock};
use crate::engine::catalogue::ModelSpec;
use crate::engine::sched::Clock;
use crate::ollama::api;

/// The Ollama version the simulator follows (`OLLAMA.md`).
pub const VERSION: &str = "0.32.15";

/// `GET /`.
pub(super) async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`.
pub(super) async fn version() -> axum::Json<api::VersionResponse> {
    axum::Json(api::VersionResponse {
        version: VERSION.into(),
    })
}

/// Unknown path: Go's plain-text 404.
pub(super) async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "404 page not found")
}

/// Wrong method: Go's plain-text 405.
pub(super) async fn method_not_allowed() -> (StatusCode, &'static str) {
    (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed")
}

fn details(spec: &ModelSpec) -> api::ModelDetails {
    api::ModelDetails {
        parent_model: String::new(),
        format: "gguf".into(),
        family: spec.family.clone(),
        families: Some(vec![spec.family.clone()]),
        parameter_size: spec.parameter_size.clone(),
        quantization_level: spec.quantization.clone(),
    }
}

/// `GET /api/ps` (P1–P4): resident models, latest `expires_at` first, in local time.
pub(super) async fn ps(State(st): State<SimState>) -> axum::Json<api::PsResponse> {
    st.pump();
    let now = st.inner.clock.now();
    let resident = lock(&st.inner.sched).ps(now);
    let models = resident
        .into_iter()
        .map(|r| {
            let spec = st.catalogue().resolve(&r.name);
            let expires = match r.expires_at {
                Some(t) => st.wall(t),
                None => st.wall(r.forever_from) + wire::FOREVER,
            };
            api::PsModel {
                model: r.name.clone(),
                name: r.name,
                size: r.size,
                digest: spec.map(ModelSpec::digest).unwrap_or_default(),
                details: spec.map(details).unwrap_or_default(),
                expires_at: wire::rfc3339_trimmed(expires),
                size_vram: r.size_vram,
                context_length: Some(u64::from(r.context_length)),
            }
        })
        .collect();
    axum::Json(api::PsResponse { models })
}

/// `GET /api/tags`: every installed name (aliases included) with on-disk size.
pub(super) async fn tags(State(st): State<SimState>) -> axum::Json<api::TagsResponse> {
    let modified_at = wire::rfc3339_trimmed(st.wall(std::time::Duration::ZERO));
    let models = st
        .catalogue()
        .models
        .iter()
        .flat_map(|spec| {
            std::iter::once(&spec.name)
                .chain(spec.aliases.iter())
                .map(move |name| (name, spec))
        })
        .map(|(name, spec)| api::TagModel {
            name: name.clone(),
            model: name.clone(),
            modified_at: modified_at.clone(),
            size: spec.file_bytes,
            digest: spec.digest(),
            details: details(spec),
        })
        .collect();
    axum::Json(api::TagsResponse { models })
}

/// A parameter size such as `7.6B` or `137M` as a count.
fn parameter_count(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'B' | 'b' => (&t[..t.len() - 1], 1e9),
        'M' | 'm' => (&t[..t.len() - 1], 1e6),
        'K' | 'k' => (&t[..t.len() - 1], 1e3),
        _ => (t, 1.0),
    };
    num.parse::<f64>().ok().map(|n| (n * mult).round() as u64)
}

/// `POST /api/show` (H5): details, capabilities and `model_info` geometry.
pub(super) async fn show(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, SimError> {
    let req: api::ShowRequest = wire::parse_body(&body)?;
    let name = if req.model.is_empty() {
        req.name.unwrap_or_default()
    } else {
        req.model
    };
    if name.trim().is_empty() {
        return Err(SimError::bad_request("model is required"));
    }
    let spec = st
        .catalogue()
        .resolve(&name)
        .ok_or_else(|| SimError::model_not_found(&name))?;
    let arch = spec.family.as_str();
    let mut info = Map::new();
    info.insert("general.architecture".into(), Value::from(arch));
    if let Some(n) = parameter_count(&spec.parameter_size) {
        info.insert("general.parameter_count".into(), Value::from(n));
    }
    info.insert(
        format!("{arch}.context_length"),
        Value::from(spec.context_length),
    );
    info.insert(format!("{arch}.block_count"), Value::from(spec.block_count));
    info.insert(
        format!("{arch}.attention.head_count_kv"),
        Value::from(spec.kv_heads),
    );
    info.insert(
        format!("{arch}.attention.key_length"),
        Value::from(spec.head_dim),
    );
    info.insert(
        format!("{arch}.attention.value_length"),
        Value::from(spec.head_dim),
    );
    let embedding = super::generate::embedding_length(spec);
    info.insert(format!("{arch}.embedding_length"), Value::from(embedding));
    let capabilities = spec
        .capabilities
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let reply = api::ShowResponse {
        license: None,
        modelfile: format!(
            "# Modelfile generated by \"ollama show\"\nFROM {}\nTEMPLATE {{{{ .Prompt }}}}\n",
            spec.name
        ),
        parameters: String::new(),
        template: "{{ .Prompt }}".into(),
        details: details(spec),
        model_info: info,
        capabilities,
        modified_at: wire::rfc3339_trimmed(st.wall(std::time::Duration::ZERO)),
    };
    Ok(axum::Json(reply).into_response())
}

fn hex_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The progress lines of pulling `spec` (H6): manifest, each blob, verify, write, success.
fn pull_lines(spec: &ModelSpec) -> Vec<api::PullProgress> {
    let status = |s: &str| api::PullProgress {
        status: s.into(),
        ..Default::default()
    };
    let blobs = [
        (spec.digest(), spec.file_bytes),
        (hex_digest(&format!("{}/template", spec.name)), 1_429),
        (hex_digest(&format!("{}/params", spec.name)), 487),
    ];
    let mut lines = vec![status("pulling manifest")];
    for (hex, total) in blobs {
        for completed in [0, total / 2, total] {
            lines.push(api::PullProgress {
                status: format!("pulling {}", &hex[..12]),
                digest: Some(format!("sha256:{hex}")),
                total: Some(total),
                completed: Some(completed),
                error: None,
            });
        }
    }
    lines.extend([
        status("verifying sha256 digest"),
        status("writing manifest"),
        status("success"),
    ]);
    lines
}

const PULL_UNKNOWN: &str = "pull model manifest: file does not exist";

/// `POST /api/pull` (H6): fast progress for an installed model; an unknown one gets
/// 200 and an error line (500 with `"stream":false`).
pub(super) async fn pull(
    State(st): State<SimState>,
    wire::RawBody(body): wire::RawBody,
) -> Result<Response, SimError> {
    let req: api::PullRequest = wire::parse_body(&body)?;
    if req.model.trim().is_empty() {
        return Err(SimError::bad_request("model is required"));
    }
    let spec = st.catalogue().resolve(&req.model);
    if req.stream == Some(false) {
        return match spec {
            Some(_) => Ok(axum::Json(api::PullProgress {
                status: "success".into(),
                ..Default::default()
            })
            .into_response()),
            None => Err(SimError::internal(PULL_UNKNOWN)),
        };
    }
    let lines = match spec {
        Some(spec) => pull_lines(spec),
        None => vec![api::PullProgress {
            status: String::new(),
            error: Some(PULL_UNKNOWN.into()),
            ..Default::default()
        }],
    };
    let chunks = lines.into_iter().map(|p| {
        let mut line = if p.error.is_some() {
            serde_json::to_vec(&api::ErrorBody {
                error: p.error.unwrap_or_default(),
            })
        } else {
            serde_json::to_vec(&p)
        }
        .unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    let body = Body::from_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()));
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|e| SimError::internal(e.to_string()).into_response()))
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`: Prometheus text with VRAM used/total, per-model VRAM, loads, requests.
pub(super) async fn metrics(State(st): State<SimState>) -> Response {
    st.pump();
    let now = st.inner.clock.now();
    let (resident, stats) = {
        let sched = lock(&st.inner.sched);
        (sched.ps(now), sched.stats())
    };
    let used: u64 = resident.iter().map(|m| m.size_vram).sum();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    metric(
        "kabench_sim_vram_used_bytes",
        "gauge",
        "GPU memory held by resident models.",
        &[(String::new(), used)],
    );
    metric(
        "kabench_sim_vram_total_bytes",
        "gauge",
        "Simulated GPU memory (GPUs x VRAM).",
        &[(String::new(), st.vram_total())],
    );
    let per_model: Vec<(String, u64)> = resident
        .iter()
        .map(|m| {
            (
                format!("{{model=\"{}\"}}", escape_label(&m.name)),
                m.size_vram,
            )
        })
        .collect();
    metric(
        "kabench_sim_model_size_vram_bytes",
        "gauge",
        "GPU memory held by each resident model.",
        &per_model,
    );
    metric(
        "kabench_sim_loads_total",
        "counter",
        "Model loads completed.",
        &[(String::new(), stats.loads)],
    );
    metric(
        "kabench_sim_requests_total",
        "counter",
        "Generate, chat and embed requests received.",
        &[(String::new(), st.requests())],
    );
    metric(
        "kabench_sim_rejected_total",
        "counter",
        "Requests refused with 503.",
        &[(String::new(), stats.rejected)],
    );
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts() {
        assert_eq!(parameter_count("7.6B"), Some(7_600_000_000));
        assert_eq!(parameter_count("137M"), Some(137_000_000));
        assert_eq!(parameter_count("x"), None);
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
