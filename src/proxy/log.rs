//! The proxy's request log (`proxy-requests.csv`, one row per request, flushed as each
//! ends), its Prometheus metrics, the per-model state that tells a reload from an
//! expiry, and the first-time warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::inspect::{Inspected, Pain};
use crate::ollama::name;

/// The log of model requests inside `--out` (readable by `kabench predict`).
pub const LOG_CSV: &str = "proxy-requests.csv";
/// The log of every other request (`/api/tags`, `/api/ps`, bodies without a model).
pub const OTHER_CSV: &str = "proxy-other.csv";
/// A `load_duration` this long is a cold start (M6).
pub const COLD_MS: f64 = 100.0;
/// The keep-alive a request without one gets, when the server's is unknown (KA5).
const DEFAULT_KEEP_ALIVE_S: f64 = 300.0;
/// The most models with their own `/metrics` series; requests naming others are
/// counted under [`OTHER_MODELS`] (a client can name any number of models).
pub const MAX_MODEL_SERIES: usize = 100;
/// The `model` label of the requests beyond [`MAX_MODEL_SERIES`].
pub const OTHER_MODELS: &str = "(other)";
/// The most models whose state (last end, keep-alive) the proxy remembers to tell a
/// reload from an expiry; the one idle longest is forgotten first.
pub const MAX_MODEL_STATES: usize = 4096;

/// One request as it passed: a row of `proxy-requests.csv` (model requests, in the
/// columns `kabench predict` reads: `timestamp`, `model`, `prompt_tokens`,
/// `output_tokens`, `num_ctx`, `client`, `keep_alive`, `kind`) or of `proxy-other.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyRow {
    /// UTC time the request arrived, RFC 3339.
    pub timestamp: String,
    /// Milliseconds since the proxy started.
    pub t_ms: f64,
    /// HTTP method.
    pub method: String,
    /// Path as requested.
    pub path: String,
    /// `generate`, `chat`, `embed`, `embeddings`, `v1_chat`, `v1_completions`,
    /// `v1_embeddings` or `other`.
    pub endpoint: String,
    /// Model named in the body.
    pub model: String,
    /// Client address.
    pub client: String,
    /// The keep_alive the server applies from this request, as Ollama writes it
    /// (`5m`, `300`, `-1`); empty when it applies none (absent, inside `options`, on
    /// `/v1`, or invalid): the server's own then holds.
    pub keep_alive: String,
    /// keep_alive exactly as sent (JSON text); empty when absent.
    pub keep_alive_sent: String,
    /// `top`, `options` (ignored), `v1_dropped` or `absent`.
    pub keep_alive_placement: String,
    /// `serve`, or a control call with an empty prompt: `load` or `unload` (empty in
    /// `proxy-other.csv`, and in logs of older versions).
    #[serde(default)]
    pub kind: String,
    /// `num_ctx` the server applies (empty: none, or dropped on `/v1`).
    pub num_ctx: Option<i64>,
    /// Prompt tokens evaluated (`prompt_eval_count`, or `/v1` `usage`).
    pub prompt_tokens: Option<u64>,
    /// Tokens generated (`eval_count`, or `/v1` `usage`).
    pub output_tokens: Option<u64>,
    /// Load options sent, as JSON (`num_ctx`, `num_batch`, …).
    pub load_options: String,
    /// HTTP status returned to the client.
    pub status: Option<u16>,
    /// Server `load_duration`, ms.
    pub load_duration_ms: Option<f64>,
    /// `load_duration` ≥ 100 ms (M6); empty when the reply carries none (`/v1`).
    pub cold: Option<bool>,
    /// Arrival → first chunk with text (or first byte of a non-streamed reply), ms.
    pub ttft_ms: Option<f64>,
    /// Arrival → last byte, ms.
    pub e2e_ms: Option<f64>,
    /// Response bytes passed.
    pub bytes: u64,
    /// `ok`, `http_error`, `stream_error`, `upstream_unreachable`, `upstream_error`
    /// (connected, no answer or a broken reply), `client_gone` (the client left; the
    /// upstream request was cancelled), `cut` (still open at shutdown after the grace
    /// period), `redirected` (a 3xx passed back), `proxy_busy` (503: the body budget was
    /// full), `bad_request`, `not_forwarded` (`OPTIONS *`, a target that is not a path).
    pub outcome: String,
    /// `malformed_body`, `rewritten`, the pains seen (`;`-separated).
    pub note: String,
}

/// What the proxy remembers of a model to tell a reload from an expiry.
#[derive(Debug, Clone, Default)]
struct ModelState {
    last_end: Option<Instant>,
    keep_alive_s: f64,
    load_options: String,
    num_ctx: Option<i64>,
}

/// Counters and histograms behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (model, endpoint) → requests.
    pub requests: BTreeMap<(String, String), u64>,
    /// (model, endpoint) → cold starts.
    pub cold: BTreeMap<(String, String), u64>,
    /// load_duration of cold starts, seconds.
    pub load: Histogram,
    /// TTFT, seconds, warm and cold.
    pub ttft: BTreeMap<String, Histogram>,
    /// e2e, seconds, warm and cold.
    pub e2e: BTreeMap<String, Histogram>,
    /// cause → reloads.
    pub reloads: BTreeMap<String, u64>,
    /// model → resident bytes (from `/api/ps`, polled).
    pub resident: BTreeMap<String, u64>,
    /// Upstream unreachable answers (502).
    pub upstream_errors: u64,
    /// Models with their own series (at most [`MAX_MODEL_SERIES`]).
    series: BTreeSet<String>,
}

/// Bucket bounds, seconds.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A Prometheus histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    pub counts: [u64; BUCKETS.len()],
    /// Observations.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
}

impl Histogram {
    /// Records `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The `model` label for `model`: its own while fewer than [`MAX_MODEL_SERIES`]
    /// models have one, else [`OTHER_MODELS`].
    pub fn label(&mut self, model: &str) -> String {
        if self.series.contains(model) {
            return model.to_string();
        }
        if self.series.len() < MAX_MODEL_SERIES {
            self.series.insert(model.to_string());
            return model.to_string();
        }
        OTHER_MODELS.to_string()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let per =
            |out: &mut String, name: &str, help: &str, m: &BTreeMap<(String, String), u64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for ((model, endpoint), n) in m {
                    let _ = writeln!(
                        out,
                        "{name}{{model=\"{}\",endpoint=\"{}\"}} {n}",
                        esc(model),
                        esc(endpoint)
                    );
                }
            };
        per(
            &mut out,
            "kabench_proxy_requests_total",
            "Requests passed to Ollama, per model and endpoint.",
            &self.requests,
        );
        per(
            &mut out,
            "kabench_proxy_cold_starts_total",
            "Requests that waited for a model load (load_duration >= 100 ms).",
            &self.cold,
        );
        let _ = writeln!(
            out,
            "# HELP kabench_proxy_load_duration_seconds Ollama's load_duration of cold starts.\n# TYPE kabench_proxy_load_duration_seconds histogram"
        );
        self.load
            .render(&mut out, "kabench_proxy_load_duration_seconds", "");
        for (name, help, map) in [
            (
                "kabench_proxy_ttft_seconds",
                "Time from the request to its first token, warm or cold.",
                &self.ttft,
            ),
            (
                "kabench_proxy_e2e_seconds",
                "Time from the request to its last byte, warm or cold.",
                &self.e2e,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (start, h) in map {
                h.render(&mut out, name, &format!("start=\"{start}\""));
            }
        }
        let _ = writeln!(
            out,
            "# HELP kabench_proxy_reloads_total Loads of models that had not expired, by cause.\n# TYPE kabench_proxy_reloads_total counter"
        );
        for (cause, n) in &self.reloads {
            let _ = writeln!(
                out,
                "kabench_proxy_reloads_total{{cause=\"{}\"}} {n}",
                esc(cause)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kabench_proxy_model_resident_bytes Resident size of each loaded model (/api/ps size, polled).\n# TYPE kabench_proxy_model_resident_bytes gauge"
        );
        for (model, b) in &self.resident {
            let _ = writeln!(
                out,
                "kabench_proxy_model_resident_bytes{{model=\"{}\"}} {b}",
                esc(model)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kabench_proxy_models_resident Models listed by /api/ps (polled).\n# TYPE kabench_proxy_models_resident gauge\nkabench_proxy_models_resident {}",
            self.resident.len()
        );
        let _ = writeln!(
            out,
            "# HELP kabench_proxy_upstream_errors_total Requests answered 502: Ollama could not be reached, or did not answer.\n# TYPE kabench_proxy_upstream_errors_total counter\nkabench_proxy_upstream_errors_total {}",
            self.upstream_errors
        );
        out
    }
}

/// The log writer, metrics, model states and warnings of one proxy run.
pub struct Recorder {
    csv: csv::Writer<File>,
    other: csv::Writer<File>,
    /// Metrics behind `/metrics`.
    pub metrics: Metrics,
    models: BTreeMap<String, ModelState>,
    /// Last load seen of any model, with its key.
    loads: Vec<(String, Instant)>,
    warned: BTreeSet<Pain>,
    /// Warnings printed, in order.
    pub warnings: Vec<String>,
    /// Rows written.
    pub rows: u64,
    quiet: bool,
}

impl Recorder {
    /// Creates `dir/proxy-requests.csv` (the folder too).
    pub fn create(dir: &Path, quiet: bool) -> anyhow::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| {
            let path = dir.join(name);
            File::create(&path)
                .map(csv::Writer::from_writer)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))
        };
        Ok(Recorder {
            csv: open(LOG_CSV)?,
            other: open(OTHER_CSV)?,
            metrics: Metrics::default(),
            models: BTreeMap::new(),
            loads: Vec::new(),
            warned: BTreeSet::new(),
            warnings: Vec::new(),
            rows: 0,
            quiet,
        })
    }

    /// Warns about `pain` the first time it is seen.
    pub fn pain(&mut self, pain: Pain) {
        if self.warned.insert(pain) {
            let text = format!("warning: {}", pain.warning());
            if !self.quiet {
                eprintln!("{text}");
            }
            self.warnings.push(text);
        }
    }

    /// Records one finished request: its row (flushed), metrics, model state and the
    /// reload pains it shows.
    pub fn finish(&mut self, mut row: ProxyRow, inspected: &Inspected, ended: Instant) {
        for p in &inspected.pains {
            self.pain(*p);
        }
        let model = row.model.clone();
        let label = if model.is_empty() {
            String::new()
        } else {
            self.metrics.label(&model)
        };
        let key = (label, row.endpoint.clone());
        if !model.is_empty() {
            *self.metrics.requests.entry(key.clone()).or_default() += 1;
        }
        let ok = row.outcome == "ok";
        if ok && let Some(load) = row.load_duration_ms {
            let cold = load >= COLD_MS;
            row.cold = Some(cold);
            if cold {
                *self.metrics.cold.entry(key).or_default() += 1;
                self.metrics.load.observe(load / 1000.0);
            }
        }
        let start = match row.cold {
            Some(true) => "cold",
            Some(false) => "warm",
            None => "unknown",
        };
        if ok {
            if let Some(t) = row.ttft_ms {
                self.metrics
                    .ttft
                    .entry(start.into())
                    .or_default()
                    .observe(t / 1000.0);
            }
            if let Some(t) = row.e2e_ms {
                self.metrics
                    .e2e
                    .entry(start.into())
                    .or_default()
                    .observe(t / 1000.0);
            }
        }
        if ok && !model.is_empty() {
            self.track(&model, &mut row, inspected, ended);
        }
        // A redirect is not a model request that ran: the client's next request is.
        let writer = if row.model.is_empty()
            || row.endpoint == "other"
            || row.outcome == "redirected"
            || row.outcome == "not_forwarded"
        {
            &mut self.other
        } else {
            &mut self.csv
        };
        if writer.serialize(&row).is_ok() {
            let _ = writer.flush();
            self.rows += 1;
        }
    }

    /// Tells a reload from an expiry and remembers the model's keep-alive.
    fn track(&mut self, model: &str, row: &mut ProxyRow, inspected: &Inspected, ended: Instant) {
        let key = name::key(model);
        let options = if inspected.endpoint.starts_with("v1_") {
            String::new()
        } else {
            row.load_options.clone()
        };
        let cold = row.cold == Some(true);
        let previous = self.models.get(&key).cloned();
        if cold && let Some(prev) = &previous {
            let started = ended
                .checked_sub(std::time::Duration::from_secs_f64(
                    row.e2e_ms.unwrap_or(0.0).max(0.0) / 1000.0,
                ))
                .unwrap_or(ended);
            let expired = prev.last_end.is_some_and(|end| {
                prev.keep_alive_s.is_finite()
                    && started.saturating_duration_since(end).as_secs_f64() > prev.keep_alive_s
            });
            if !expired {
                let other_loaded = prev.last_end.is_some_and(|end| {
                    self.loads
                        .iter()
                        .any(|(k, at)| *k != key && *at >= end && *at <= started)
                });
                let cause = if other_loaded {
                    self.pain(Pain::Evicted);
                    "evicted"
                } else if prev.num_ctx != inspected.num_ctx {
                    self.pain(Pain::OptionReload);
                    "num_ctx"
                } else if prev.load_options != options {
                    self.pain(Pain::OptionReload);
                    "load_options"
                } else {
                    "unknown"
                };
                *self.metrics.reloads.entry(cause.into()).or_default() += 1;
                if !row.note.is_empty() {
                    row.note.push(';');
                }
                row.note.push_str(&format!("reload:{cause}"));
            }
        }
        if cold {
            self.loads.push((key.clone(), ended));
            if self.loads.len() > 64 {
                self.loads.remove(0);
            }
        }
        let keep_alive_s = match inspected.placement {
            super::inspect::Placement::Top => keep_alive_seconds(&row.keep_alive_sent),
            _ if cold => DEFAULT_KEEP_ALIVE_S,
            _ => previous
                .as_ref()
                .map_or(DEFAULT_KEEP_ALIVE_S, |p| p.keep_alive_s),
        };
        if !self.models.contains_key(&key) && self.models.len() >= MAX_MODEL_STATES {
            let idlest = self
                .models
                .iter()
                .min_by_key(|(_, s)| s.last_end)
                .map(|(k, _)| k.clone());
            if let Some(k) = idlest {
                self.models.remove(&k);
            }
        }
        self.models.insert(
            key,
            ModelState {
                last_end: Some(ended),
                keep_alive_s,
                load_options: options,
                num_ctx: inspected.num_ctx,
            },
        );
    }
}

/// Seconds of a keep_alive as sent (JSON text): infinity for forever.
fn keep_alive_seconds(json: &str) -> f64 {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return DEFAULT_KEEP_ALIVE_S;
    };
    match crate::units::KeepAlive::from_json(&v) {
        Ok(Some(k)) if k.is_forever() => f64::INFINITY,
        Ok(Some(k)) => k.seconds_or_infinity(),
        _ => DEFAULT_KEEP_ALIVE_S,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_base_units_and_total_suffixes() {
        let mut m = Metrics::default();
        m.requests.insert(("tiny".into(), "chat".into()), 3);
        m.load.observe(0.3);
        m.ttft.entry("cold".into()).or_default().observe(0.4);
        m.reloads.insert("load_options".into(), 1);
        let text = m.render();
        assert!(text.contains("kabench_proxy_requests_total{model=\"tiny\",endpoint=\"chat\"} 3"));
        assert!(text.contains("kabench_proxy_load_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("kabench_proxy_load_duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("kabench_proxy_ttft_seconds_count{start=\"cold\"} 1"));
        assert!(text.contains("kabench_proxy_reloads_total{cause=\"load_options\"} 1"));
        assert!(text.contains("# TYPE kabench_proxy_model_resident_bytes gauge"));
        for i in 0..MAX_MODEL_SERIES * 3 {
            let l = m.label(&format!("m{i}"));
            assert_eq!(l == OTHER_MODELS, i >= MAX_MODEL_SERIES, "{i}");
        }
        assert_eq!(keep_alive_seconds("\"5m\""), 300.0);
        assert_eq!(keep_alive_seconds("-1"), f64::INFINITY);
    }
}
