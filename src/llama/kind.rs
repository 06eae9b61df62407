//! The kinds of llama.cpp server kabench knows and how each tells whether a model is
//! resident: `llama-server` with one model (`GET /props` → `is_sleeping`), its router
//! mode (`GET /models` → `status.value` per model) and llama-swap (`GET /running` →
//! `state` per model). Each answer is read into one [`ModelResidency`].

use serde_json::Value;

/// Which llama.cpp server a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// `llama-server -m MODEL`: one model, `--sleep-idle-seconds` per server.
    LlamaServer,
    /// `llama-server` in router mode (`--models-dir`/`--models-preset`): many models,
    /// `--models-max` LRU eviction, per-model sleep from the preset.
    LlamaRouter,
    /// llama-swap in front of llama-server: per-model `ttl`.
    LlamaSwap,
}

impl ServerKind {
    /// The name scenarios and `run.json` write.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::LlamaServer => "llama-server",
            ServerKind::LlamaRouter => "llama-router",
            ServerKind::LlamaSwap => "llama-swap",
        }
    }

    /// The path that tells residency without waking the model or resetting its idle
    /// timer (`/metrics` and `/slots` reset llama-server's; these do not).
    pub fn residency_path(self) -> &'static str {
        match self {
            ServerKind::LlamaServer => "/props",
            ServerKind::LlamaRouter => "/models",
            ServerKind::LlamaSwap => "/running",
        }
    }

    /// The residency of `model` in the JSON answer of [`ServerKind::residency_path`];
    /// `None` when the answer does not say.
    pub fn residency_of(self, answer: &Value, model: &str) -> Option<ModelResidency> {
        match self {
            ServerKind::LlamaServer => match answer.get("is_sleeping") {
                Some(Value::Bool(true)) => Some(ModelResidency::Sleeping),
                Some(Value::Bool(false)) => Some(ModelResidency::Loaded),
                // A build without sleep support never sleeps: its model is loaded.
                None if answer.is_object() => Some(ModelResidency::Loaded),
                _ => None,
            },
            ServerKind::LlamaRouter => {
                let entry = answer
                    .get("data")?
                    .as_array()?
                    .iter()
                    .find(|m| m.get("id").and_then(Value::as_str) == Some(model))?;
                match entry.pointer("/status/value").and_then(Value::as_str)? {
                    "loaded" => Some(ModelResidency::Loaded),
                    "sleeping" => Some(ModelResidency::Sleeping),
                    "loading" => Some(ModelResidency::Loading),
                    "unloaded" => Some(ModelResidency::Unloaded),
                    _ => None,
                }
            }
            ServerKind::LlamaSwap => {
                let running = answer.get("running")?.as_array()?;
                let entry = running
                    .iter()
                    .find(|m| m.get("model").and_then(Value::as_str) == Some(model));
                match entry.and_then(|e| e.get("state")).and_then(Value::as_str) {
                    None => Some(ModelResidency::Unloaded),
                    Some("ready") => Some(ModelResidency::Loaded),
                    Some("starting") => Some(ModelResidency::Loading),
                    Some("stopping") => Some(ModelResidency::Stopping),
                    Some("stopped" | "shutdown") => Some(ModelResidency::Unloaded),
                    Some(_) => None,
                }
            }
        }
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a model stands on a llama.cpp server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelResidency {
    /// In memory, ready to answer.
    Loaded,
    /// Put to sleep after its idle time: the next request wakes (reloads) it.
    Sleeping,
    /// Not in memory (evicted, expired, never loaded).
    Unloaded,
    /// Being loaded.
    Loading,
    /// Being stopped (llama-swap's `stopping`, after its ttl, a swap or an unload): not
    /// resident. llama-swap v235 never answers a request that arrives then, nor any
    /// later one to that model until it is unloaded by hand
    /// (`POST /api/models/unload/<model>`).
    Stopping,
}

impl ModelResidency {
    /// True when a request sent now answers without a load.
    pub fn is_resident(self) -> bool {
        self == ModelResidency::Loaded
    }

    /// The name the cold evidence records.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelResidency::Loaded => "loaded",
            ModelResidency::Sleeping => "sleeping",
            ModelResidency::Unloaded => "unloaded",
            ModelResidency::Loading => "loading",
            ModelResidency::Stopping => "stopping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_reads_its_own_answer() {
        let k = ServerKind::LlamaServer;
        assert_eq!(
            k.residency_of(&json!({"is_sleeping": true}), "m"),
            Some(ModelResidency::Sleeping)
        );
        assert_eq!(
            k.residency_of(&json!({"is_sleeping": false}), "m"),
            Some(ModelResidency::Loaded)
        );
        assert_eq!(k.residency_of(&json!("x"), "m"), None);
        let r = ServerKind::LlamaRouter;
        let models = json!({"data": [
            {"id": "a", "status": {"value": "sleeping"}},
            {"id": "b", "status": {"value": "loading"}}
        ]});
        assert_eq!(r.residency_of(&models, "a"), Some(ModelResidency::Sleeping));
        assert_eq!(r.residency_of(&models, "b"), Some(ModelResidency::Loading));
        assert_eq!(r.residency_of(&models, "c"), None);
        let s = ServerKind::LlamaSwap;
        let running = json!({"running": [{"model": "a", "state": "ready"}]});
        assert_eq!(s.residency_of(&running, "a"), Some(ModelResidency::Loaded));
        assert_eq!(
            s.residency_of(&running, "b"),
            Some(ModelResidency::Unloaded)
        );
        let stopping = json!({"running": [{"model": "a", "state": "stopping"}]});
        assert_eq!(
            s.residency_of(&stopping, "a"),
            Some(ModelResidency::Stopping)
        );
        assert!(!ModelResidency::Stopping.is_resident());
        assert!(!ModelResidency::Sleeping.is_resident());
    }
}
