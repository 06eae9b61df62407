//! What the doctor may disturb: a model it found loaded is never evicted unless
//! `--allow-evict`. A probe model that is not resident adds one model to the server
//! when it loads; beside other resident models that load can pass
//! `OLLAMA_MAX_LOADED_MODELS` (or the VRAM) and evict one of them, so by default the
//! checks that would load it are skipped, and the report says which and why. Probing a
//! model that is already resident adds none. An eviction seen anyway (a reload at a
//! larger context on a full GPU) stops the probes; with `--allow-evict` an eviction
//! is evidence: on a CPU-only host only the cap evicts, so a load that evicted one of
//! N resident models shows `OLLAMA_MAX_LOADED_MODELS=N`.

use serde_json::json;

use super::Check;
use super::forms::Verdict;
use super::http::{Resident, Server};
use super::probe::{Doctor, info, row};
use crate::ollama::name;

/// Which probes a run leaves out so as to evict nothing it found loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Guard {
    /// Resident at the start and not probed: what must stay loaded.
    pub(super) others: Vec<String>,
    /// The probe model is not resident and others are: its checks are skipped.
    pub(super) skip_model: bool,
    /// The same for the embedding model.
    pub(super) skip_embed: bool,
}

impl Guard {
    /// The guard for a run probing `model` (and `embed`) with `before` resident.
    pub(super) fn of(
        before: &[Resident],
        model: &str,
        embed: Option<&str>,
        allow_evict: bool,
    ) -> Guard {
        let was = |m: &str| before.iter().any(|b| name::same_model(&b.name, m));
        let probed =
            |n: &str| name::same_model(n, model) || embed.is_some_and(|e| name::same_model(n, e));
        let others: Vec<String> = before
            .iter()
            .filter(|b| !probed(&b.name))
            .map(|b| b.name.clone())
            .collect();
        let at_risk = !allow_evict && !others.is_empty();
        Guard {
            skip_model: at_risk && !was(model),
            skip_embed: at_risk && embed.is_some_and(|e| !was(e)),
            others,
        }
    }

    /// The row saying which checks were skipped for `probe` (`what` names them).
    pub(super) fn skipped_row(&self, id: &str, probe: &str, what: &str) -> Check {
        let others = self.others.join(", ");
        row(
            id,
            "server",
            &format!("checks that load {probe}"),
            Verdict::NotApplicable,
            Verdict::NotApplicable,
            format!(
                "skipped ({what}): {probe} is not loaded and {others} is; loading it beside them can pass OLLAMA_MAX_LOADED_MODELS or the VRAM and evict one of them"
            ),
            "rerun with --allow-evict to run them (what they evict is loaded again at the end, with its num_ctx and remaining keep_alive), or give --model one of the models already loaded (probing it adds no model), or run it when the server is idle",
            "E3, E5",
        )
    }
}

impl Doctor {
    /// Stops the probes after an eviction, unless `--allow-evict`.
    pub(super) fn no_eviction(&self) -> anyhow::Result<()> {
        if self.allow_evict {
            return Ok(());
        }
        match self.server.evictions.first() {
            Some(e) => anyhow::bail!(
                "{} left /api/ps with keep-alive left while the probes ran ({}): the probes stopped there so as to evict nothing more; it is loaded again below (--allow-evict lets the probes go on)",
                e.victim,
                e.by.as_ref().map_or("evicted".to_string(), |b| format!(
                    "evicted when {b} loaded"
                ))
            ),
            None => Ok(()),
        }
    }
}

/// The `OLLAMA_MAX_LOADED_MODELS` row: the value when a load evicted a model on a
/// host where only the cap evicts, else what the evictions or `/api/ps` bound it to.
pub(super) fn cap_row(server: &Server, resident_at_start: usize, skipped: bool) -> Check {
    let at_least = server.most_resident.max(resident_at_start).max(1);
    let fix = "every resident model counts, embedding models too (E5): a chat model and an embedder need a cap of 2 or more to stay loaded together";
    let by_load = server.evictions.iter().find(|e| e.by.is_some());
    match by_load {
        Some(e) if e.cpu_only => {
            let n = e.resident_before;
            info(
                "server.max_loaded_models",
                &format!("OLLAMA_MAX_LOADED_MODELS: {n}"),
                format!(
                    "loading {} evicted {} while {n} model(s) were loaded, on a CPU-only host (/api/ps size_vram 0), where only the cap evicts: the server runs with OLLAMA_MAX_LOADED_MODELS={n}",
                    e.by.as_deref().unwrap_or("?"),
                    e.victim
                ),
                fix,
                "E5",
                json!({"value": n, "at_least": n}),
            )
        }
        Some(e) => {
            let n = e.resident_before;
            info(
                "server.max_loaded_models",
                &format!("OLLAMA_MAX_LOADED_MODELS: {n}, or the VRAM is full"),
                format!(
                    "loading {} evicted {} while {n} model(s) were loaded: the cap is {n}, or the GPU memory held no more (over HTTP the two look alike)",
                    e.by.as_deref().unwrap_or("?"),
                    e.victim
                ),
                fix,
                "E1, E5",
                json!({"evicted_beside": n, "at_least": n}),
            )
        }
        None => info(
            "server.max_loaded_models",
            &format!("OLLAMA_MAX_LOADED_MODELS: at least {at_least}"),
            format!(
                "a lower bound, not the value: /api/ps listed up to {at_least} model(s) at once during the run ({resident_at_start} at the start), and no load evicted one; {}",
                if skipped {
                    "the checks that could have shown the cap were skipped so as to evict nothing (--allow-evict runs them, and an eviction then shows the cap)"
                } else {
                    "the cap shows only when a load evicts a model (with another model loaded and --allow-evict)"
                }
            ),
            fix,
            "E5",
            json!({"at_least": at_least}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(name: &str) -> Resident {
        Resident {
            name: name.into(),
            expires_at: time::OffsetDateTime::now_utc(),
            context_length: None,
            size: 1,
            size_vram: 0,
        }
    }

    #[test]
    fn a_probe_model_not_loaded_beside_another_is_skipped_unless_allowed() {
        let before = [resident("big:latest")];
        let g = Guard::of(&before, "tiny", Some("embed"), false);
        assert!(g.skip_model && g.skip_embed);
        assert_eq!(g.others, ["big:latest"]);
        assert!(!Guard::of(&before, "tiny", None, true).skip_model);
        // Probing the resident model adds none.
        let g = Guard::of(&before, "big", None, false);
        assert!(!g.skip_model && g.others.is_empty());
        // Nothing loaded: nothing to evict.
        assert_eq!(Guard::of(&[], "tiny", None, false), Guard::default());
        let both = [resident("big:latest"), resident("tiny:latest")];
        let g = Guard::of(&both, "tiny", Some("embed"), false);
        assert!(!g.skip_model && g.skip_embed);
    }
}
