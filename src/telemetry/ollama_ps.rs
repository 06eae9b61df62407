//! The `/api/ps` source: per resident model, `size_vram` (used), `size` (total) and
//! `expires_at`, plus one total row per poll (model empty) so an empty `/api/ps` reads
//! as 0. Works against a live Ollama, local or remote, and against the simulator. A run
//! reads `/api/ps` through the shared poller (`ps_feed`) and turns its answers into rows
//! here; [`OllamaPsSampler`] asks on its own (one sample per call).
//! Knows nothing of requests or of how the rows are analysed.

use crate::ollama::api::PsResponse;
use crate::ollama::{ClientError, ErrorKind, OllamaClient};

use super::{Reading, Sampler, SourceError};

/// Device name of `/api/ps` rows.
pub const DEVICE: &str = "ollama";

/// Polls `GET /api/ps`.
pub struct OllamaPsSampler {
    client: OllamaClient,
}

impl OllamaPsSampler {
    /// A poller for the Ollama at `base` (any `OLLAMA_HOST` form).
    pub fn new(base: &str) -> Result<Self, SourceError> {
        let client = OllamaClient::new(base)
            .map_err(|e| SourceError::Unavailable(format!("bad Ollama URL {base:?}: {e}")))?;
        Ok(OllamaPsSampler { client })
    }
}

/// Most model rows written per `/api/ps` answer (the total row counts them all): a
/// server listing 150 000 models must not write 150 000 rows per sample.
pub const MAX_MODELS_PER_SAMPLE: usize = crate::folder::MAX_MODEL_ROWS_PER_SAMPLE;

/// The rows of one `/api/ps` answer: one per model (the first
/// [`MAX_MODELS_PER_SAMPLE`]), then the total over all of them.
pub fn readings(ps: &PsResponse) -> Vec<Reading> {
    let mut out: Vec<Reading> = ps
        .models
        .iter()
        .take(MAX_MODELS_PER_SAMPLE)
        .map(|m| Reading {
            device: DEVICE.into(),
            model: if m.name.is_empty() {
                m.model.clone()
            } else {
                m.name.clone()
            },
            used_bytes: m.size_vram,
            total_bytes: Some(m.size),
            extra: m.expires_at.clone(),
        })
        .collect();
    out.push(Reading {
        device: DEVICE.into(),
        model: String::new(),
        used_bytes: ps.models.iter().map(|m| m.size_vram).sum(),
        total_bytes: Some(ps.models.iter().map(|m| m.size).sum()),
        extra: if ps.models.len() > MAX_MODELS_PER_SAMPLE {
            format!(
                "models={} (rows for the first {MAX_MODELS_PER_SAMPLE})",
                ps.models.len()
            )
        } else {
            format!("models={}", ps.models.len())
        },
    });
    out
}

/// The telemetry's reading of a failed `/api/ps` call: a 404 (a server without
/// `/api/ps`) makes the source unavailable; anything else fails one sample.
pub fn classify(e: ClientError) -> SourceError {
    match e.kind() {
        // A server without `/api/ps` will never have it.
        ErrorKind::Http if e.status() == Some(404) => {
            SourceError::Unavailable(format!("/api/ps: {e}"))
        }
        _ => SourceError::Failed(format!("/api/ps: {e}")),
    }
}

impl Sampler for OllamaPsSampler {
    fn name(&self) -> &str {
        "ollama_ps"
    }

    async fn sample(&mut self) -> Result<Vec<Reading>, SourceError> {
        let ps = self.client.ps().await.map_err(classify)?;
        Ok(readings(&ps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_offload_fixture_rows_keep_size_and_size_vram() {
        let ps: PsResponse = serde_json::from_str(
            r#"{"models":[{"name":"dolphin3:8b","model":"dolphin3:8b","size":8650752576,
            "digest":"d","details":{"parent_model":"","format":"gguf","family":"llama",
            "families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_K_M"},
            "expires_at":"2025-08-01T21:27:04.6179283+02:00","size_vram":7015958528,
            "context_length":16384}]}"#,
        )
        .unwrap();
        let rows = readings(&ps);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].model, "dolphin3:8b");
        assert_eq!(rows[0].used_bytes, 7015958528);
        assert_eq!(rows[0].total_bytes, Some(8650752576));
        assert_eq!(rows[0].extra, "2025-08-01T21:27:04.6179283+02:00");
        assert_eq!(rows[1].model, "");
        assert_eq!(rows[1].used_bytes, 7015958528);
    }

    #[test]
    fn empty_ps_reads_as_a_zero_total() {
        let rows = readings(&PsResponse { models: vec![] });
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].model.as_str(), rows[0].used_bytes), ("", 0));
    }

    #[test]
    fn a_listing_of_150_000_models_writes_a_bounded_sample() {
        let one = crate::ollama::api::PsModel {
            name: "m".into(),
            model: "m".into(),
            size: 10,
            size_vram: 4,
            ..Default::default()
        };
        let ps = PsResponse {
            models: vec![one; 150_000],
        };
        let rows = readings(&ps);
        assert_eq!(rows.len(), MAX_MODELS_PER_SAMPLE + 1);
        let total = rows.last().unwrap();
        assert_eq!(total.model, "");
        assert_eq!(total.used_bytes, 600_000);
        assert_eq!(total.total_bytes, Some(1_500_000));
        assert!(total.extra.starts_with("models=150000"), "{}", total.extra);
    }
}
