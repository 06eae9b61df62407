//! The proxy's `/metrics`: counters, histograms and gauges in Prometheus's text format,
//! fit for a dashboard that watches a production Ollama.
//!
//! Every series is bounded: the `model` label names only models the server lists
//! (`/api/tags`, polled), any other name a client sends is counted as `model="other"`,
//! and a request without a model as `model="none"`; `endpoint` is one of a fixed set
//! and `code` an HTTP status. Only inference calls (a prompt, chat or embedding to
//! answer) are observed in the latency histograms, and only calls that stream tokens
//! in the time-to-first-token one. The names used are listed in [`METRIC_NAMES`]
//! (the docs' dashboard is tested against it).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use crate::ollama::name;

/// The `model` label of a request naming a model the server does not list.
pub const OTHER_MODELS: &str = "other";
/// The `model` label of a request without a model (`/api/tags`, `/api/ps`, …).
pub const NO_MODEL: &str = "none";
/// Ollama's own default keep_alive, shown until the server's is learnt from `/api/ps`.
pub const OLLAMA_DEFAULT_KEEP_ALIVE_S: f64 = 300.0;
/// The most models the listed set holds (a server lists a few hundred at most).
pub const MAX_LISTED: usize = 1000;

/// Every metric family the proxy exports.
pub const METRIC_NAMES: [&str; 15] = [
    "kabench_proxy_requests_total",
    "kabench_proxy_cold_starts_total",
    "kabench_proxy_load_duration_seconds",
    "kabench_proxy_ttft_seconds",
    "kabench_proxy_e2e_seconds",
    "kabench_proxy_reloads_total",
    "kabench_proxy_last_reload_timestamp_seconds",
    "kabench_proxy_keep_alive_seconds",
    "kabench_proxy_model_expires_in_seconds",
    "kabench_proxy_model_memory_bytes",
    "kabench_proxy_model_resident_bytes",
    "kabench_proxy_models_resident",
    "kabench_proxy_upstream_up",
    "kabench_proxy_upstream_errors_total",
    "kabench_proxy_loops_total",
];

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
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Where a request's keep_alive came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepAliveSource {
    /// The client's request set it.
    Request,
    /// `--rewrite-keep-alive` set it.
    Rewritten,
    /// The request set none: the server's own default (`OLLAMA_KEEP_ALIVE`) applied.
    ServerDefault,
}

impl KeepAliveSource {
    /// The `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepAliveSource::Request => "request",
            KeepAliveSource::Rewritten => "rewritten",
            KeepAliveSource::ServerDefault => "server_default",
        }
    }
}

/// The keep_alive a model was last left with.
#[derive(Debug, Clone)]
struct Applied {
    source: KeepAliveSource,
    seconds: f64,
    ended: Instant,
}

/// A model `/api/ps` lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resident {
    /// Its name, as `/api/ps` writes it.
    pub model: String,
    /// Bytes in GPU memory.
    pub vram: u64,
    /// Bytes in system memory (`size - size_vram`).
    pub ram: u64,
    /// Seconds until the server unloads it (`expires_at` - now); `None` when unreadable.
    pub expires_in: Option<f64>,
}

/// A reload's cause and the values involved (the last one per model is exported).
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// `evicted`, `num_ctx`, `load_options` or `unknown`.
    pub cause: &'static str,
    /// The value before (the previous `num_ctx` or load options; empty for evictions).
    pub from: String,
    /// The value after (the new `num_ctx` or options; the model that loaded in between
    /// for evictions).
    pub to: String,
    /// Unix time, seconds.
    pub at_unix_s: f64,
}

/// Counters, histograms and gauges behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (model, endpoint, code) → requests answered.
    pub requests: BTreeMap<(String, String, String), u64>,
    /// (model, endpoint) → cold starts.
    pub cold: BTreeMap<(String, String), u64>,
    /// model → load_duration of cold starts, seconds.
    pub load: BTreeMap<String, Histogram>,
    /// (model, endpoint, start) → time to first token, seconds.
    pub ttft: BTreeMap<(String, String, &'static str), Histogram>,
    /// (model, endpoint, start) → time to the last byte, seconds.
    pub e2e: BTreeMap<(String, String, &'static str), Histogram>,
    /// (model, cause) → reloads.
    pub reloads: BTreeMap<(String, String), u64>,
    /// model → its last reload.
    pub last_reload: BTreeMap<String, Reload>,
    keep_alive: BTreeMap<String, Applied>,
    /// The server's default keep_alive, once learnt from `/api/ps`.
    pub server_default_s: Option<f64>,
    /// Models `/api/ps` lists (polled).
    pub resident: Vec<Resident>,
    /// Whether the last `/api/ps` poll was answered.
    pub upstream_up: bool,
    /// Requests answered 502.
    pub upstream_errors: u64,
    /// Requests refused as a forwarding loop.
    pub loops: u64,
    /// Model keys the server lists → the name it lists them by.
    listed: BTreeMap<String, String>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as Prometheus writes it (`+Inf` for forever).
fn num(v: f64) -> String {
    if v.is_infinite() && v > 0.0 {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

/// Whether requests to `endpoint` return tokens one by one (a first token to time).
pub fn has_first_token(endpoint: &str) -> bool {
    matches!(endpoint, "generate" | "chat" | "v1_chat" | "v1_completions")
}

impl Metrics {
    /// Sets the models the server lists (`/api/tags` names), at most [`MAX_LISTED`].
    pub fn set_listed<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.listed = names
            .into_iter()
            .take(MAX_LISTED)
            .map(|n| (name::key(n), n.to_string()))
            .collect();
    }

    /// The `model` label for `model`: the name the server lists it by, [`NO_MODEL`]
    /// when empty, else [`OTHER_MODELS`].
    pub fn label(&self, model: &str) -> String {
        if model.is_empty() {
            return NO_MODEL.into();
        }
        self.listed
            .get(&name::key(model))
            .cloned()
            .unwrap_or_else(|| OTHER_MODELS.into())
    }

    /// Records the keep_alive a model was left with by a request that ended `ended`.
    pub fn keep_alive(
        &mut self,
        label: &str,
        source: KeepAliveSource,
        seconds: f64,
        ended: Instant,
    ) {
        self.keep_alive.insert(
            label.to_string(),
            Applied {
                source,
                seconds,
                ended,
            },
        );
    }

    /// Takes an `/api/ps` poll: the gauges, and the server's default keep_alive from
    /// the deadline of a model last used with it (idle since: `expires_in` + idle time).
    pub fn ps(&mut self, resident: Vec<Resident>, now: Instant) {
        for r in &resident {
            let label = self.label(&r.model);
            if let (Some(a), Some(left)) = (self.keep_alive.get(&label), r.expires_in)
                && a.source == KeepAliveSource::ServerDefault
                && left < 1.0e9
            {
                let idle = now.saturating_duration_since(a.ended).as_secs_f64();
                self.server_default_s = Some((left + idle).round().max(0.0));
            }
        }
        self.resident = resident;
        self.upstream_up = true;
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "kabench_proxy_requests_total",
            "counter",
            "Requests answered, per model (as the server lists it, else other or none), endpoint and HTTP status code.",
        );
        for ((model, endpoint, code), n) in &self.requests {
            let _ = writeln!(
                out,
                "kabench_proxy_requests_total{{model=\"{}\",endpoint=\"{endpoint}\",code=\"{code}\"}} {n}",
                esc(model)
            );
        }
        head(
            &mut out,
            "kabench_proxy_cold_starts_total",
            "counter",
            "Requests that waited for a model load (load_duration >= 100 ms).",
        );
        for ((model, endpoint), n) in &self.cold {
            let _ = writeln!(
                out,
                "kabench_proxy_cold_starts_total{{model=\"{}\",endpoint=\"{endpoint}\"}} {n}",
                esc(model)
            );
        }
        head(
            &mut out,
            "kabench_proxy_load_duration_seconds",
            "histogram",
            "Ollama's load_duration of cold starts.",
        );
        for (model, h) in &self.load {
            h.render(
                &mut out,
                "kabench_proxy_load_duration_seconds",
                &format!("model=\"{}\"", esc(model)),
            );
        }
        for (name, help, map) in [
            (
                "kabench_proxy_ttft_seconds",
                "Time from an inference request to its first token (generate, chat, /v1 chat and completions).",
                &self.ttft,
            ),
            (
                "kabench_proxy_e2e_seconds",
                "Time from an inference request (generate, chat, embeddings) to its last byte.",
                &self.e2e,
            ),
        ] {
            head(&mut out, name, "histogram", help);
            for ((model, endpoint, start), h) in map {
                let labels = format!(
                    "model=\"{}\",endpoint=\"{endpoint}\",start=\"{start}\"",
                    esc(model)
                );
                h.render(&mut out, name, &labels);
            }
        }
        head(
            &mut out,
            "kabench_proxy_reloads_total",
            "counter",
            "Loads of models that had not expired, by cause (evicted, num_ctx, load_options, unknown).",
        );
        for ((model, cause), n) in &self.reloads {
            let _ = writeln!(
                out,
                "kabench_proxy_reloads_total{{model=\"{}\",cause=\"{cause}\"}} {n}",
                esc(model)
            );
        }
        head(
            &mut out,
            "kabench_proxy_last_reload_timestamp_seconds",
            "gauge",
            "When each model last reloaded before its keep_alive ran out, with the cause and the values involved (from, to).",
        );
        for (model, r) in &self.last_reload {
            let _ = writeln!(
                out,
                "kabench_proxy_last_reload_timestamp_seconds{{model=\"{}\",cause=\"{}\",from=\"{}\",to=\"{}\"}} {}",
                esc(model),
                r.cause,
                esc(&r.from),
                esc(&r.to),
                r.at_unix_s
            );
        }
        head(
            &mut out,
            "kabench_proxy_keep_alive_seconds",
            "gauge",
            "The keep_alive the server applied to each model's last request, by where it was set (request, rewritten, server_default); +Inf is forever.",
        );
        for (model, a) in &self.keep_alive {
            let seconds = match a.source {
                KeepAliveSource::ServerDefault => {
                    self.server_default_s.unwrap_or(OLLAMA_DEFAULT_KEEP_ALIVE_S)
                }
                _ => a.seconds,
            };
            let _ = writeln!(
                out,
                "kabench_proxy_keep_alive_seconds{{model=\"{}\",source=\"{}\"}} {}",
                esc(model),
                a.source.as_str(),
                num(seconds)
            );
        }
        head(
            &mut out,
            "kabench_proxy_model_expires_in_seconds",
            "gauge",
            "Seconds until the server unloads each resident model (/api/ps expires_at, polled).",
        );
        for r in &self.resident {
            if let Some(left) = r.expires_in {
                let _ = writeln!(
                    out,
                    "kabench_proxy_model_expires_in_seconds{{model=\"{}\"}} {}",
                    esc(&r.model),
                    left.max(0.0)
                );
            }
        }
        head(
            &mut out,
            "kabench_proxy_model_memory_bytes",
            "gauge",
            "Memory each resident model holds, in GPU memory (vram) and system memory (ram) (/api/ps, polled).",
        );
        for r in &self.resident {
            for (memory, b) in [("vram", r.vram), ("ram", r.ram)] {
                let _ = writeln!(
                    out,
                    "kabench_proxy_model_memory_bytes{{model=\"{}\",memory=\"{memory}\"}} {b}",
                    esc(&r.model)
                );
            }
        }
        head(
            &mut out,
            "kabench_proxy_model_resident_bytes",
            "gauge",
            "Resident size of each loaded model (/api/ps size, polled).",
        );
        for r in &self.resident {
            let _ = writeln!(
                out,
                "kabench_proxy_model_resident_bytes{{model=\"{}\"}} {}",
                esc(&r.model),
                r.vram + r.ram
            );
        }
        head(
            &mut out,
            "kabench_proxy_models_resident",
            "gauge",
            "Models listed by /api/ps (polled).",
        );
        let _ = writeln!(out, "kabench_proxy_models_resident {}", self.resident.len());
        head(
            &mut out,
            "kabench_proxy_upstream_up",
            "gauge",
            "1 when the last /api/ps poll of the upstream Ollama was answered, else 0.",
        );
        let _ = writeln!(
            out,
            "kabench_proxy_upstream_up {}",
            u8::from(self.upstream_up)
        );
        head(
            &mut out,
            "kabench_proxy_upstream_errors_total",
            "counter",
            "Requests answered 502: Ollama could not be reached, or did not answer.",
        );
        let _ = writeln!(
            out,
            "kabench_proxy_upstream_errors_total {}",
            self.upstream_errors
        );
        head(
            &mut out,
            "kabench_proxy_loops_total",
            "counter",
            "Requests refused with 508 because they had already passed this proxy (a forwarding loop).",
        );
        let _ = writeln!(out, "kabench_proxy_loops_total {}", self.loops);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_models_are_bounded() {
        let mut m = Metrics::default();
        m.set_listed(["tiny-50m:latest"]);
        assert_eq!(m.label("TINY-50M"), "tiny-50m:latest");
        assert_eq!(m.label("made-up"), OTHER_MODELS);
        assert_eq!(m.label(""), NO_MODEL);
        m.requests
            .insert(("tiny-50m:latest".into(), "chat".into(), "404".into()), 3);
        m.load
            .entry("tiny-50m:latest".into())
            .or_default()
            .observe(0.3);
        m.keep_alive("x", KeepAliveSource::Request, f64::INFINITY, Instant::now());
        m.keep_alive("y", KeepAliveSource::ServerDefault, 0.0, Instant::now());
        let text = m.render();
        assert!(text.contains(
            "kabench_proxy_requests_total{model=\"tiny-50m:latest\",endpoint=\"chat\",code=\"404\"} 3"
        ));
        assert!(text.contains(
            "kabench_proxy_load_duration_seconds_bucket{model=\"tiny-50m:latest\",le=\"0.5\"} 1"
        ));
        assert!(
            text.contains("kabench_proxy_keep_alive_seconds{model=\"x\",source=\"request\"} +Inf")
        );
        assert!(text.contains(
            "kabench_proxy_keep_alive_seconds{model=\"y\",source=\"server_default\"} 300"
        ));
        for name in METRIC_NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert_eq!(text.matches("# TYPE").count(), METRIC_NAMES.len());
    }

    #[test]
    fn the_server_default_is_learnt_from_a_deadline() {
        let mut m = Metrics::default();
        m.set_listed(["a:latest"]);
        let t = Instant::now();
        m.keep_alive("a:latest", KeepAliveSource::ServerDefault, 0.0, t);
        let later = t + std::time::Duration::from_secs(10);
        m.ps(
            vec![Resident {
                model: "a:latest".into(),
                vram: 0,
                ram: 7,
                expires_in: Some(110.2),
            }],
            later,
        );
        assert_eq!(m.server_default_s, Some(120.0));
        assert!(
            m.render()
                .contains("kabench_proxy_model_memory_bytes{model=\"a:latest\",memory=\"ram\"} 7")
        );
    }
}
