//! llama-swap's residency: `GET /running` lists the models whose upstream process
//! exists, each with its `state` (`starting` while the upstream loads, `ready`,
//! `stopping`); a model that is not running is absent. `GET /v1/models` lists the
//! configured models (not their state).

use serde::Deserialize;

use super::router::MAX_MODELS;
use crate::units::limits::{check_count, excerpt};

/// A running model's state as llama-swap reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapState {
    /// The upstream was started and has not passed its health check.
    Starting,
    /// The upstream answers; requests go straight through.
    Ready,
    /// The upstream is being stopped (TTL, swap or unload).
    Stopping,
    /// Stopped (listed only briefly, if at all).
    Stopped,
    /// llama-swap is shutting down.
    Shutdown,
}

impl SwapState {
    /// The state named `value`, or `None` for one this version does not know.
    pub fn parse(value: &str) -> Option<SwapState> {
        Some(match value {
            "starting" => SwapState::Starting,
            "ready" => SwapState::Ready,
            "stopping" => SwapState::Stopping,
            "stopped" => SwapState::Stopped,
            "shutdown" => SwapState::Shutdown,
            _ => return None,
        })
    }

    /// The word llama-swap uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapState::Starting => "starting",
            SwapState::Ready => "ready",
            SwapState::Stopping => "stopping",
            SwapState::Stopped => "stopped",
            SwapState::Shutdown => "shutdown",
        }
    }

    /// Whether a request now would go straight to a loaded upstream.
    pub fn is_warm(self) -> bool {
        self == SwapState::Ready
    }
}

/// One entry of `GET /running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningModel {
    /// The model id (the config key).
    pub model: String,
    /// Its state.
    pub state: SwapState,
    /// Its effective `ttl` in seconds (0 = never unloaded for idleness).
    pub ttl: u64,
}

#[derive(Deserialize)]
struct WireRunning {
    running: Vec<WireEntry>,
}

#[derive(Deserialize)]
struct WireEntry {
    model: String,
    state: String,
    #[serde(default)]
    ttl: u64,
}

#[derive(Deserialize)]
struct WireList {
    data: Vec<WireId>,
}

#[derive(Deserialize)]
struct WireId {
    id: String,
}

/// The JSON in `body` as `T`, or an error naming the call.
fn decode<T: for<'a> Deserialize<'a>>(body: &[u8], call: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "llama-swap's {call} reply is not the expected JSON ({e}): {}",
            excerpt(&String::from_utf8_lossy(body))
        )
    })
}

/// Reads a `GET /running` reply body.
pub fn parse_running(body: &[u8]) -> Result<Vec<RunningModel>, String> {
    let wire: WireRunning = decode(body, "GET /running")?;
    check_count(
        wire.running.len() as u64,
        MAX_MODELS,
        "models in GET /running",
    )
    .map_err(|e| e.to_string())?;
    wire.running
        .into_iter()
        .map(|e| {
            let state = SwapState::parse(&e.state).ok_or_else(|| {
                format!(
                    "llama-swap reports model '{}' as '{}', not one of starting, ready, \
                     stopping, stopped, shutdown (a newer llama-swap?)",
                    excerpt(&e.model),
                    excerpt(&e.state)
                )
            })?;
            Ok(RunningModel {
                model: e.model,
                state,
                ttl: e.ttl,
            })
        })
        .collect()
}

/// Reads a `GET /v1/models` reply body: the configured model ids.
pub fn parse_model_list(body: &[u8]) -> Result<Vec<String>, String> {
    let wire: WireList = decode(body, "GET /v1/models")?;
    check_count(
        wire.data.len() as u64,
        MAX_MODELS,
        "models in GET /v1/models",
    )
    .map_err(|e| e.to_string())?;
    Ok(wire.data.into_iter().map(|m| m.id).collect())
}

/// `id`'s state in `running`; `None` when it is not running.
pub fn state_of(running: &[RunningModel], id: &str) -> Option<SwapState> {
    running.iter().find(|m| m.model == id).map(|m| m.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_running_models_as_v235_wrote_them() {
        let body = r#"{"running":[{"model":"tiny-50m","state":"ready","cmd":"/x/llama-server --port 18491","proxy":"http://localhost:18491","ttl":1,"name":"","description":""},{"model":"b","state":"starting","ttl":0}]}"#;
        let running = parse_running(body.as_bytes()).unwrap();
        assert_eq!(
            running[0],
            RunningModel {
                model: "tiny-50m".into(),
                state: SwapState::Ready,
                ttl: 1
            }
        );
        assert_eq!(state_of(&running, "b"), Some(SwapState::Starting));
        assert_eq!(state_of(&running, "c"), None);
        assert!(parse_running(br#"{"running":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn states_round_trip_and_only_ready_is_warm() {
        for s in ["starting", "ready", "stopping", "stopped", "shutdown"] {
            let st = SwapState::parse(s).unwrap();
            assert_eq!(st.as_str(), s);
            assert_eq!(st.is_warm(), s == "ready");
        }
    }

    #[test]
    fn an_unknown_state_or_shape_is_named() {
        let e = parse_running(br#"{"running":[{"model":"m","state":"napping"}]}"#).unwrap_err();
        assert!(e.contains("'m'") && e.contains("'napping'"), "{e}");
        for body in ["OK", "{}", r#"{"running":{}}"#] {
            let e = parse_running(body.as_bytes()).unwrap_err();
            assert!(e.contains("GET /running"), "{e}");
        }
    }

    #[test]
    fn reads_the_model_list() {
        let body = r#"{"data":[{"id":"tiny-150m","object":"model","created":1,"owned_by":"llama-swap"},{"id":"tiny-50m"}],"object":"list"}"#;
        assert_eq!(
            parse_model_list(body.as_bytes()).unwrap(),
            ["tiny-150m", "tiny-50m"]
        );
        assert!(
            parse_model_list(b"[]")
                .unwrap_err()
                .contains("GET /v1/models")
        );
    }
}
