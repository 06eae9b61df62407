//! The llama.cpp router's `GET /models` (also `GET /v1/models`): one entry per model
//! it can serve, each with `status.value` (`unloaded`, `loading`, `loaded`,
//! `sleeping`) and, after a failed load, `failed` and `exit_code`. A sleeping model's
//! process stays (and still counts toward `--models-max`) but its weights are freed.

use serde::Deserialize;

use crate::units::limits::{check_count, excerpt};

/// The most models one `/models` reply may list.
pub const MAX_MODELS: u64 = 10_000;

/// A model's state as the router reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// No child process.
    Unloaded,
    /// A child is starting or (re)loading the weights.
    Loading,
    /// The weights are in memory.
    Loaded,
    /// The child sleeps: its process stays, the weights and KV cache are freed.
    Sleeping,
}

impl ModelState {
    /// The state named `value`, or `None` for a value this build does not know.
    pub fn parse(value: &str) -> Option<ModelState> {
        Some(match value {
            "unloaded" => ModelState::Unloaded,
            "loading" => ModelState::Loading,
            "loaded" => ModelState::Loaded,
            "sleeping" => ModelState::Sleeping,
            _ => return None,
        })
    }

    /// The word the router uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Unloaded => "unloaded",
            ModelState::Loading => "loading",
            ModelState::Loaded => "loaded",
            ModelState::Sleeping => "sleeping",
        }
    }

    /// Whether a request now would find the weights in memory (no load, no wake).
    pub fn is_warm(self) -> bool {
        self == ModelState::Loaded
    }

    /// Whether a child process exists (it holds a `--models-max` slot).
    pub fn has_process(self) -> bool {
        self != ModelState::Unloaded
    }
}

/// One model of a `/models` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterModel {
    /// The model id requests name (`"model"` in the body).
    pub id: String,
    /// Its state.
    pub state: ModelState,
    /// Whether its last load failed (`status.failed`).
    pub failed: bool,
    /// The failed child's exit code, when given.
    pub exit_code: Option<i64>,
}

#[derive(Deserialize)]
struct Wire {
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    status: WireStatus,
}

#[derive(Deserialize)]
struct WireStatus {
    value: String,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    exit_code: Option<i64>,
}

/// Reads a `/models` reply body. An unknown `status.value`, a missing field or more
/// than [`MAX_MODELS`] entries is an error naming what was found.
pub fn parse_models(body: &[u8]) -> Result<Vec<RouterModel>, String> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the router's GET /models reply is not the expected JSON ({e}): {}",
            excerpt(&String::from_utf8_lossy(body))
        )
    })?;
    check_count(wire.data.len() as u64, MAX_MODELS, "models in GET /models")
        .map_err(|e| e.to_string())?;
    wire.data
        .into_iter()
        .map(|m| {
            let state = ModelState::parse(&m.status.value).ok_or_else(|| {
                format!(
                    "the router reports model '{}' as '{}', not one of unloaded, loading, \
                     loaded, sleeping (a newer llama.cpp?)",
                    excerpt(&m.id),
                    excerpt(&m.status.value)
                )
            })?;
            Ok(RouterModel {
                id: m.id,
                state,
                failed: m.status.failed,
                exit_code: m.status.exit_code,
            })
        })
        .collect()
}

/// The state of `id` in `models`, if listed.
pub fn state_of(models: &[RouterModel], id: &str) -> Option<ModelState> {
    models.iter().find(|m| m.id == id).map(|m| m.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the b10488 router wrote it (args and preset shortened).
    const REPLY: &str = r#"{"data":[{"id":"tiny-150m","aliases":[],"tags":[],"object":"model","owned_by":"llamacpp","created":1796577206,"status":{"value":"loaded","args":["llama-server","--port","0"],"preset":"[tiny-150m]\n"},"architecture":{"input_modalities":["text"]},"source":"models_dir","can_remove":false},{"id":"tiny-50m","status":{"value":"sleeping","args":[]},"meta":{"n_params":27542016,"size":55101440},"source":"preset"},{"id":"broken","status":{"value":"unloaded","failed":true,"exit_code":1}}],"object":"list"}"#;

    #[test]
    fn reads_each_models_state() {
        let models = parse_models(REPLY.as_bytes()).unwrap();
        assert_eq!(models.len(), 3);
        assert_eq!(state_of(&models, "tiny-150m"), Some(ModelState::Loaded));
        assert_eq!(state_of(&models, "tiny-50m"), Some(ModelState::Sleeping));
        assert_eq!(state_of(&models, "nope"), None);
        let broken = &models[2];
        assert_eq!(
            (broken.state, broken.failed, broken.exit_code),
            (ModelState::Unloaded, true, Some(1))
        );
        assert!(!models[0].failed && models[0].exit_code.is_none());
    }

    #[test]
    fn states_say_warm_and_slot() {
        for s in ["unloaded", "loading", "loaded", "sleeping"] {
            assert_eq!(ModelState::parse(s).unwrap().as_str(), s);
        }
        assert!(ModelState::Loaded.is_warm());
        assert!(!ModelState::Sleeping.is_warm() && ModelState::Sleeping.has_process());
        assert!(!ModelState::Loading.is_warm() && ModelState::Loading.has_process());
        assert!(!ModelState::Unloaded.has_process());
    }

    #[test]
    fn an_unknown_state_is_named() {
        let body = r#"{"data":[{"id":"m","status":{"value":"hibernating"}}]}"#;
        let e = parse_models(body.as_bytes()).unwrap_err();
        assert!(e.contains("'m'") && e.contains("'hibernating'"), "{e}");
    }

    #[test]
    fn a_wrong_shape_is_an_error_with_an_excerpt() {
        for body in [
            "",
            "{}",
            r#"{"data":[{"id":"m"}]}"#,
            "<html>\u{1b}[2J",
            "[1,2]",
        ] {
            let e = parse_models(body.as_bytes()).unwrap_err();
            assert!(e.contains("GET /models"), "{e}");
            assert!(!e.contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn too_many_models_is_refused_before_use() {
        let one = r#"{"id":"m","status":{"value":"unloaded"}}"#;
        let body = format!(
            r#"{{"data":[{}]}}"#,
            vec![one; MAX_MODELS as usize + 1].join(",")
        );
        let e = parse_models(body.as_bytes()).unwrap_err();
        assert!(e.contains("models in GET /models"), "{e}");
    }
}
