//! The scenario file exactly as serde reads it: every section with unknown keys
//! rejected, values still as written (strings or numbers). `validate` turns this into
//! the typed `Scenario`. Knows nothing of defaults or meaning.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

use crate::scenario::engine_settings::SimSettings;

/// A value users may write as a string or a number (`keep_alive = "5m"` or `300`),
/// kept in its textual form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    /// A TOML string.
    Str(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
}

impl Scalar {
    /// The value as written (numbers in their shortest decimal form).
    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
        }
    }

    /// The value as a number of seconds, when it is a number.
    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            Scalar::Str(_) => None,
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: Option<String>,
    pub seed: Option<u64>,
    pub target: Option<RawTarget>,
    /// `[[server]]`: several servers swept on the same arrivals.
    #[serde(default)]
    pub server: Vec<RawTarget>,
    #[serde(default)]
    pub sim: SimSettings,
    #[serde(default)]
    pub stream: Vec<RawStream>,
    #[serde(default)]
    pub run: RawRun,
    #[serde(default)]
    pub sweep: RawSweep,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub cost: RawCost,
    #[serde(default)]
    pub slo: RawSlo,
    #[serde(default)]
    pub swarm: RawSwarm,
}

/// `[target]`, or one `[[server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub urls: Option<Vec<String>>,
    pub name: Option<String>,
    pub command: Option<Vec<String>>,
    pub model_path: Option<String>,
    pub idle_unload: Option<Vec<Scalar>>,
    pub health_timeout: Option<Scalar>,
    pub models_dir: Option<String>,
    pub model_command: Option<Vec<String>>,
}

/// `[[stream]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    pub name: Option<String>,
    pub model: Option<String>,
    pub api: Option<String>,
    pub num_ctx: Option<Scalar>,
    pub prompt_tokens: Option<u32>,
    pub prompt: Option<String>,
    pub max_tokens: Option<Scalar>,
    pub keep_alive: Option<Scalar>,
    pub arrival: Option<RawArrival>,
    pub images: Option<u32>,
    pub think: Option<bool>,
}

/// `arrival = { kind = …, … }`: one flat table; which keys apply depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArrival {
    pub kind: Option<String>,
    pub rate: Option<Scalar>,
    pub cv: Option<f64>,
    pub on: Option<Scalar>,
    pub off: Option<Scalar>,
    pub file: Option<String>,
    pub column: Option<String>,
    pub time_scale: Option<f64>,
    pub skip: Option<u64>,
    pub epoch: Option<Scalar>,
}

/// `[run]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRun {
    pub requests: Option<i64>,
    pub duration: Option<Scalar>,
    pub concurrency: Option<i64>,
    pub timeout: Option<Scalar>,
    pub warmup: Option<u32>,
    pub cold_threshold: Option<Scalar>,
    pub unload_timeout: Option<Scalar>,
    pub grace: Option<Scalar>,
    pub pause: Option<Scalar>,
    pub shard_by: Option<String>,
    pub repeat: Option<i64>,
}

/// `[sweep]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSweep {
    #[serde(default)]
    pub keep_alive: Vec<Scalar>,
    #[serde(default)]
    pub rate: Vec<Scalar>,
    #[serde(default)]
    pub quant: Vec<String>,
    #[serde(default)]
    pub model: Vec<String>,
    #[serde(default)]
    pub idle_unload: Vec<Scalar>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub sources: Option<Vec<String>>,
    pub interval: Option<Scalar>,
    pub ps_interval: Option<Scalar>,
    pub ps_adaptive: Option<bool>,
    pub process_names: Option<Vec<String>>,
    pub prometheus_url: Option<String>,
    pub prometheus_query: Option<String>,
    pub release_tolerance: Option<Scalar>,
}

/// `[cost]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCost {
    pub vram_gb_hour: Option<f64>,
    pub ram_gb_hour: Option<f64>,
    pub wait_second: Option<f64>,
    pub cold_penalty: Option<Scalar>,
}

/// `[slo]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlo {
    pub ttft_p99: Option<Scalar>,
}

/// `[swarm]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSwarm {
    pub users: Option<u32>,
    pub hatch_rate: Option<f64>,
    pub think_time: Option<RawThinkTime>,
    pub run_time: Option<Scalar>,
}

/// `think_time = { min = "1s", max = "5s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThinkTime {
    pub min: Option<Scalar>,
    pub max: Option<Scalar>,
}
