//! Where a telemetry source could not sample: a warning where it should have (NVML on a
//! host whose models sat in GPU memory), a note where nothing was there to measure (a
//! simulated run, NVML on a CPU-only host).

use super::simulated;
use crate::folder::{self, RunMeta};

/// Telemetry sources that could not sample (`telemetry nvml unavailable: …`), NVML
/// (`true`) or not.
pub(super) fn telemetry_unavailable(meta: &RunMeta) -> Vec<(bool, String)> {
    meta.telemetry
        .iter()
        .filter(|(_, state)| state.starts_with("unavailable"))
        .map(|(source, state)| (source == "nvml", format!("telemetry {source} {state}")))
        .collect()
}

/// True when the run had a GPU to measure: NVML saw one, or `/api/ps` reported a model
/// in GPU memory (`size_vram` > 0). Without one, NVML missing is expected (a CPU host).
pub fn gpu_expected(meta: &RunMeta, samples: &[folder::VramSample]) -> bool {
    meta.gpu.is_some()
        || samples
            .iter()
            .any(|s| s.source == "ollama_ps" && s.used_bytes > 0)
}

/// Facts a reader may want but need not act on: on a simulated run, the hardware
/// sources (NVML, RSS) that had nothing to measure; on a CPU-only host (no GPU
/// expected), NVML's absence.
pub(super) fn run_notes(meta: &RunMeta, gpu_expected: bool) -> Vec<String> {
    if simulated(meta) {
        telemetry_unavailable(meta)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    } else if !gpu_expected {
        telemetry_unavailable(meta)
            .into_iter()
            .filter(|(nvml, _)| *nvml)
            .map(|(_, s)| {
                format!("{s} (expected on this host: /api/ps reported no model in GPU memory, so memory is counted in system RAM)")
            })
            .collect()
    } else {
        Vec::new()
    }
}
