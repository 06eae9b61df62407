//! The closed sets `run.json` names by string: what a folder's figures were taken from
//! (`target.kind`) and which endpoint a stream calls (`api`), typed, written as
//! before (`"sim"`, `"generate"`), so every older folder reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a run folder's figures were taken from (`run.json` `target.kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// kabench's simulator of Ollama, on a real clock.
    #[default]
    Sim,
    /// A live Ollama server (or a fleet of them).
    Ollama,
    /// `kabench predict`: requests replayed through the scheduler on a virtual clock.
    Predict,
    /// `kabench proxy`: an app's own traffic, observed on its way to a live Ollama.
    Proxy,
    /// llama.cpp's `llama-server` with one model (idle sleep per server).
    #[serde(rename = "llama-server")]
    LlamaServer,
    /// llama.cpp's `llama-server` in router mode (many models, LRU, per-model sleep).
    #[serde(rename = "llama-router")]
    LlamaRouter,
    /// llama-swap in front of llama-server (per-model `ttl`).
    #[serde(rename = "llama-swap")]
    LlamaSwap,
}

impl TargetKind {
    /// The name `run.json` writes.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Sim => "sim",
            TargetKind::Ollama => "ollama",
            TargetKind::Predict => "predict",
            TargetKind::Proxy => "proxy",
            TargetKind::LlamaServer => "llama-server",
            TargetKind::LlamaRouter => "llama-router",
            TargetKind::LlamaSwap => "llama-swap",
        }
    }

    /// True when no real hardware was measured (the simulator, a prediction): the
    /// host's figures are the simulated host's.
    pub fn is_simulated(self) -> bool {
        matches!(self, TargetKind::Sim | TargetKind::Predict)
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which endpoint a stream calls (`run.json` `cells[].streams[].api`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/api/generate`.
    #[default]
    Generate,
    /// `/api/chat`.
    Chat,
    /// `/api/embed`.
    Embed,
}

impl Api {
    /// The name as written in scenarios and `run.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Generate => "generate",
            Api::Chat => "chat",
            Api::Embed => "embed",
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cell label naming the start flag a server's `idle_unload` value became
/// (`--sleep-idle-seconds` for llama-server); absent for Ollama, whose knob is the
/// request's keep_alive.
pub const KNOB_LABEL: &str = "knob";

/// llama-server's `--sleep-idle-seconds` for an `idle_unload` value: whole seconds,
/// `-1` (never) for `"off"`, negative values and no value.
pub fn sleep_idle_seconds(value: Option<&crate::units::KeepAlive>) -> String {
    match value.and_then(crate::units::KeepAlive::duration) {
        Some(d) => d.as_secs().to_string(),
        None => "-1".into(),
    }
}

/// The value a server's knob (`KNOB_LABEL`) is set to for an `idle_unload` value:
/// llama-swap's `ttl` in whole seconds, `0` (never) for `"off"`; otherwise
/// llama.cpp's `sleep-idle-seconds` ([`sleep_idle_seconds`], `-1` for off).
pub fn knob_value(knob: &str, value: Option<&crate::units::KeepAlive>) -> String {
    match (knob, value.and_then(crate::units::KeepAlive::duration)) {
        ("ttl", None) => "0".into(),
        _ => sleep_idle_seconds(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::KeepAlive;

    #[test]
    fn each_knob_writes_its_own_off() {
        let ka = KeepAlive::parse("3s").unwrap();
        assert_eq!(knob_value("ttl", Some(&ka)), "3");
        assert_eq!(knob_value("ttl", Some(&KeepAlive::forever())), "0");
        assert_eq!(knob_value("ttl", None), "0");
        assert_eq!(knob_value("--sleep-idle-seconds", None), "-1");
        assert_eq!(knob_value("sleep-idle-seconds", Some(&ka)), "3");
    }
}
