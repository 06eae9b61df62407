//! What one model takes resident at a num_ctx and parallel: E1's prediction in parts
//! (weights, KV cache, overhead) from `sched::size_parts`, or the size a live server
//! reported (`/api/ps` `size`) when one was measured at that context. Knows nothing of
//! other models or of the host.

use serde::Serialize;

use crate::engine::catalogue::ModelSpec;
use crate::engine::sched::{self, SchedConfig};

/// Where a resident size comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Figure {
    /// E1's arithmetic on the model's file size and geometry.
    Estimated,
    /// `/api/ps` `size` after a load at this num_ctx.
    Measured,
}

impl Figure {
    /// `estimated` or `measured`.
    pub fn as_str(self) -> &'static str {
        match self {
            Figure::Estimated => "estimated",
            Figure::Measured => "measured",
        }
    }
}

/// A size a live server reported for a model loaded at a context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredSize {
    /// The model's name as the plan resolved it.
    pub model: String,
    /// The per-slot context it was loaded with (`/api/ps` `context_length`).
    pub num_ctx: u32,
    /// `/api/ps` `size`.
    pub size: u64,
    /// `/api/ps` `size_vram`.
    pub size_vram: u64,
    /// How long the load took, seconds (timed by the client).
    pub load_s: f64,
}

/// What one model takes resident in one combination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The name as asked (`qwen2.5:7b`).
    pub asked: String,
    /// The model it resolved to (`qwen2.5:7b-instruct-q4_K_M`).
    pub model: String,
    /// Its quantization (`Q4_K_M`).
    pub quantization: String,
    /// The per-slot context it gets (asked, clamped to the training context: L5).
    pub num_ctx: u32,
    /// Slots (L8).
    pub parallel: u32,
    /// The file (weights), bytes.
    pub weights: u64,
    /// KV cache bytes per token of context (E1: 2 × layers × KV heads × head dim × 2).
    pub kv_per_token: u64,
    /// KV cache for `num_ctx × parallel`, bytes.
    pub kv: u64,
    /// The rest: compute buffer and runtime (E1's `num_batch` term + 300 MiB), or what a
    /// measurement leaves after weights and KV.
    pub overhead: u64,
    /// The resident size: weights + KV + overhead, or the measured `size`.
    pub total: u64,
    /// Where `total` comes from.
    pub figure: Figure,
}

/// The estimate of `spec` asked as `asked` at `num_ctx` under `config` (its
/// `num_parallel` is the combination's), taking a matching measurement over E1's arithmetic.
pub fn estimate(
    asked: &str,
    spec: &ModelSpec,
    num_ctx: u32,
    config: &SchedConfig,
    measured: &[MeasuredSize],
) -> Estimate {
    let ctx = config.effective_ctx(spec, Some(num_ctx));
    let parallel = config.slots_for(spec);
    let parts = sched::size_parts(spec, ctx, parallel);
    let found = measured
        .iter()
        .find(|m| m.model == spec.name && m.num_ctx == ctx && parallel == config.slots());
    let (total, overhead, figure) = match found {
        Some(m) => (
            m.size,
            m.size.saturating_sub(parts.weights + parts.kv),
            Figure::Measured,
        ),
        None => (parts.total(), parts.overhead, Figure::Estimated),
    };
    Estimate {
        asked: asked.to_string(),
        model: spec.name.clone(),
        quantization: spec.quantization.clone(),
        num_ctx: ctx,
        parallel,
        weights: parts.weights,
        kv_per_token: spec.kv_bytes_per_token(),
        kv: parts.kv,
        overhead,
        total,
        figure,
    }
}
