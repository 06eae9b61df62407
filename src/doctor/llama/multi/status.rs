//! What the status endpoint of a many-model server says, read once per poll: the
//! router's `GET /models` (through [`crate::llama::router::parse_models`], plus each
//! model's child port and `--sleep-idle-seconds` from `status.args`) and llama-swap's
//! `GET /running` (through [`crate::llama::swap::parse_running`], plus each upstream's
//! port from its `proxy` URL and its `ttl`), in one shape for both.

use serde_json::Value;

use crate::llama::router::{ModelState, parse_models};
use crate::llama::swap::{SwapState, parse_running};
use crate::llama::{ModelResidency, ServerKind};

/// One model as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The model id requests name.
    pub id: String,
    /// Where it stands.
    pub state: ModelResidency,
    /// Whether a process of it exists (the router: a child, loaded or sleeping or
    /// loading; llama-swap: listed in `/running` as starting or ready, not stopping).
    pub process: bool,
    /// Whether its process is being stopped (llama-swap: `stopping` in `/running`).
    pub stopping: bool,
    /// The port its process listens on, when it runs and the server says.
    pub port: Option<u16>,
    /// The idle timer it states, seconds: the router's `--sleep-idle-seconds` of the
    /// child (from the preset or the command line), llama-swap's `ttl`.
    pub timer: Option<i64>,
}

/// One reading of the status endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The models listed, in the server's order.
    pub models: Vec<Entry>,
}

impl Status {
    /// `id`'s entry, if listed.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.models.iter().find(|m| m.id == id)
    }

    /// `id`'s state (not listed: unloaded, as llama-swap lists only running models).
    pub fn state(&self, id: &str) -> ModelResidency {
        self.entry(id).map_or(ModelResidency::Unloaded, |m| m.state)
    }

    /// Whether `id` has a process.
    pub fn has_process(&self, id: &str) -> bool {
        self.entry(id).is_some_and(|m| m.process)
    }

    /// Whether `id`'s process is being stopped.
    pub fn is_stopping(&self, id: &str) -> bool {
        self.entry(id).is_some_and(|m| m.stopping)
    }

    /// The models with a process, in order.
    pub fn with_process(&self) -> Vec<String> {
        self.models
            .iter()
            .filter(|m| m.process)
            .map(|m| m.id.clone())
            .collect()
    }

    /// The models with a process, in words.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self
            .models
            .iter()
            .filter(|m| m.process)
            .map(|m| format!("{} {}", m.id, m.state.as_str()))
            .collect();
        if shown.is_empty() {
            "none running".into()
        } else {
            shown.join(", ")
        }
    }
}

/// Reads a status reply of `kind` (`GET /models` or `GET /running`).
pub fn read(kind: ServerKind, text: &str) -> Result<Status, String> {
    match kind {
        ServerKind::LlamaSwap => read_swap(text),
        _ => read_router(text),
    }
}

/// The word after `flag` in an argument list.
fn arg_after<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a.as_str() == Some(flag))?;
    args.get(at + 1)?.as_str()
}

/// The router's `GET /models`.
fn read_router(text: &str) -> Result<Status, String> {
    let models = parse_models(text.as_bytes())?;
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let raw = json.get("data").and_then(Value::as_array);
    let models = models
        .into_iter()
        .map(|m| {
            let args: Vec<Value> = raw
                .and_then(|r| {
                    r.iter()
                        .find(|e| e.get("id").and_then(Value::as_str) == Some(m.id.as_str()))
                })
                .and_then(|e| e.pointer("/status/args"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let process = m.state.has_process();
            Entry {
                state: match m.state {
                    ModelState::Unloaded => ModelResidency::Unloaded,
                    ModelState::Loading => ModelResidency::Loading,
                    ModelState::Loaded => ModelResidency::Loaded,
                    ModelState::Sleeping => ModelResidency::Sleeping,
                },
                process,
                stopping: false,
                port: arg_after(&args, "--port")
                    .and_then(|p| p.parse().ok())
                    .filter(|&p| p != 0 && process),
                timer: arg_after(&args, "--sleep-idle-seconds").and_then(|s| s.parse().ok()),
                id: m.id,
            }
        })
        .collect();
    Ok(Status { models })
}

/// llama-swap's `GET /running`.
fn read_swap(text: &str) -> Result<Status, String> {
    let running = parse_running(text.as_bytes())?;
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let raw = json.get("running").and_then(Value::as_array);
    let models = running
        .into_iter()
        .map(|m| {
            let port = raw
                .and_then(|r| {
                    r.iter()
                        .find(|e| e.get("model").and_then(Value::as_str) == Some(m.model.as_str()))
                })
                .and_then(|e| e.get("proxy"))
                .and_then(Value::as_str)
                .and_then(|u| reqwest::Url::parse(u).ok())
                .and_then(|u| u.port_or_known_default());
            Entry {
                state: match m.state {
                    SwapState::Ready => ModelResidency::Loaded,
                    SwapState::Starting => ModelResidency::Loading,
                    _ => ModelResidency::Unloaded,
                },
                // A model stopping (its ttl, a swap, an unload) is on its way out.
                process: matches!(m.state, SwapState::Starting | SwapState::Ready),
                stopping: m.state == SwapState::Stopping,
                port,
                timer: Some(m.ttl as i64),
                id: m.model,
            }
        })
        .collect();
    Ok(Status { models })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_reply_gives_state_port_and_sleep() {
        let body = r#"{"data":[{"id":"b","status":{"value":"unloaded","args":["x","--port","0"]}},{"id":"a","status":{"value":"sleeping","args":["x","--port","38489","--sleep-idle-seconds","2"]}}]}"#;
        let s = read(ServerKind::LlamaRouter, body).unwrap();
        assert_eq!(s.models[0].id, "b");
        assert_eq!((s.models[0].port, s.models[0].timer), (None, None));
        let a = s.entry("a").unwrap();
        assert_eq!(
            (a.state, a.process, a.port, a.timer),
            (ModelResidency::Sleeping, true, Some(38489), Some(2))
        );
        assert_eq!(s.with_process(), ["a"]);
        assert_eq!(s.describe(), "a sleeping");
        assert!(read(ServerKind::LlamaRouter, "{}").is_err());
    }

    #[test]
    fn the_swap_reply_gives_state_port_and_ttl() {
        let body = r#"{"running":[{"model":"m","state":"ready","proxy":"http://localhost:18690","ttl":3}]}"#;
        let s = read(ServerKind::LlamaSwap, body).unwrap();
        let m = s.entry("m").unwrap();
        assert_eq!(
            (m.state, m.port, m.timer),
            (ModelResidency::Loaded, Some(18690), Some(3))
        );
        assert_eq!(s.state("other"), ModelResidency::Unloaded);
        let stopping = read(
            ServerKind::LlamaSwap,
            r#"{"running":[{"model":"m","state":"stopping","ttl":3}]}"#,
        )
        .unwrap();
        assert!(!stopping.has_process("m"));
        assert!(stopping.is_stopping("m"));
        assert!(!s.has_process("other"));
        assert_eq!(
            read(ServerKind::LlamaSwap, r#"{"running":[]}"#)
                .unwrap()
                .describe(),
            "none running"
        );
    }
}
