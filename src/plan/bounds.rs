//! The limits on what a plan is computed from: the host (`--vram`, `--gpus`), the
//! contexts and slots asked (`--num-ctx`, `--parallel`), what a server reports of a
//! model (`/api/show` geometry, `/api/tags` and `/api/ps` sizes), and the size a model
//! would take. Each is checked where it enters, before any arithmetic, so the sums of
//! the plan cannot overflow; a value over its limit is bad input (exit 2) naming the
//! flag or field and the limit.

use crate::engine::catalogue::ModelSpec;

use super::PlanError;

/// The most VRAM per GPU a plan takes (1 PiB): far beyond any GPU, and room for the
/// sums of a plan.
pub const MAX_VRAM_BYTES: u64 = 1 << 50;

/// The most GPUs a plan takes.
pub const MAX_GPUS: u32 = 1024;

/// The largest `num_ctx` a plan takes (16 Mi tokens).
pub const MAX_NUM_CTX: u32 = 1 << 24;

/// The most parallel slots a plan takes.
pub const MAX_PARALLEL: u32 = 1024;

/// The largest size of one model (file, resident, estimated): 1 PiB.
pub const MAX_MODEL_BYTES: u64 = 1 << 50;

/// The largest layer count, head count, head or embedding dimension read from a
/// server's `/api/show` (65536; real models have at most a few hundred layers).
pub const MAX_GEOMETRY: u64 = 1 << 16;

/// Refuses `value` over `limit`, naming `what` (a flag or a field).
pub fn check(what: &str, value: u64, limit: u64) -> Result<u64, PlanError> {
    if value > limit {
        return Err(PlanError::OverLimit {
            what: crate::units::limits::excerpt(what),
            value: value.to_string(),
            limit: limit.to_string(),
        });
    }
    Ok(value)
}

/// Refuses a size over [`MAX_MODEL_BYTES`], naming `what`.
pub fn check_bytes(what: &str, bytes: u64) -> Result<u64, PlanError> {
    check(&format!("{what} (bytes)"), bytes, MAX_MODEL_BYTES)
}

/// Checks that E1's estimate of `spec` at `num_ctx` × `parallel` stays within
/// [`MAX_MODEL_BYTES`], computed without overflow, before `sched::size_parts` computes
/// it in 64 bits.
pub fn check_estimate(spec: &ModelSpec, num_ctx: u32, parallel: u32) -> Result<(), PlanError> {
    let kv_per_token =
        4 * u128::from(spec.block_count) * u128::from(spec.kv_heads) * u128::from(spec.head_dim);
    let total_ctx = u128::from(num_ctx) * u128::from(parallel.max(1));
    // Each factor is at most 32 bits wide (64 for the bytes): saturating past u128.
    let overhead = u128::from(spec.overhead_bytes.unwrap_or(3 << 30))
        .saturating_add(u128::from(spec.overhead_per_token.unwrap_or(0)).saturating_mul(total_ctx));
    let total = u128::from(spec.file_bytes)
        .saturating_add(kv_per_token.saturating_mul(total_ctx))
        .saturating_add(overhead);
    if total > u128::from(MAX_MODEL_BYTES) {
        return Err(PlanError::OverLimit {
            what: format!(
                "the estimated size of {} at num_ctx {num_ctx} × parallel {parallel} (bytes)",
                crate::units::limits::excerpt(&spec.name)
            ),
            value: total.to_string(),
            limit: MAX_MODEL_BYTES.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_over_a_limit_are_refused_naming_it() {
        assert!(check("--gpus", 1024, u64::from(MAX_GPUS)).is_ok());
        let e = check("--vram", u64::MAX, MAX_VRAM_BYTES).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--vram") && text.contains(&MAX_VRAM_BYTES.to_string()));
    }

    #[test]
    fn an_estimate_that_would_overflow_is_refused() {
        let mut spec = crate::engine::sim_settings::SimSettings::default()
            .catalogue()
            .models[0]
            .clone();
        assert!(check_estimate(&spec, 4096, 1).is_ok());
        spec.block_count = u32::MAX;
        spec.kv_heads = u32::MAX;
        spec.head_dim = u32::MAX;
        let e = check_estimate(&spec, MAX_NUM_CTX, MAX_PARALLEL).unwrap_err();
        assert!(e.to_string().contains("estimated size"), "{e}");
    }
}
