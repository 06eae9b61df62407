//! The proxy's request log (`proxy-requests.csv`, one row per request, flushed as each
//! ends), its `/metrics` counts (`metrics`), the per-model state that tells a reload from an
//! expiry, and the first-time warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::inspect::{Inspected, Pain};
use super::metrics::{KeepAliveSource, Metrics, Reload, has_first_token};
use crate::ollama::name;

/// The log of model requests inside `--out` (readable by `kabench predict`).
pub const LOG_CSV: &str = "proxy-requests.csv";
/// The log of every other request (`/api/tags`, `/api/ps`, bodies without a model).
pub const OTHER_CSV: &str = "proxy-other.csv";
/// A `load_duration` this long is a cold start (M6).
pub const COLD_MS: f64 = 100.0;
/// The keep-alive a request without one gets, when the server's is unknown (KA5).
const DEFAULT_KEEP_ALIVE_S: f64 = 300.0;
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
    /// The keep_alive the server received and applies from this request (the
    /// rewritten one under `--rewrite-keep-alive`), as Ollama writes it (`5m`, `300`,
    /// `-1`); empty when it applies none (absent, inside `options`, on `/v1`, or
    /// invalid): the server's own then holds.
    pub keep_alive: String,
    /// keep_alive exactly as the client sent it (JSON text); empty when absent.
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
    /// upstream request was cancelled), `cut_at_shutdown` (still open at shutdown after
    /// the grace period), `redirected` (a 3xx passed back), `proxy_busy` (503: the body
    /// budget was full), `bad_request`, `not_forwarded` (`OPTIONS *`, a target that is
    /// not a path), `loop` (508: the request had already passed this proxy).
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

/// The log writer, metrics, model states and warnings of one proxy run.
pub struct Recorder {
    csv: csv::Writer<File>,
    other: csv::Writer<File>,
    /// Metrics behind `/metrics`.
    pub metrics: Metrics,
    models: BTreeMap<String, ModelState>,
    /// The last loads seen, with the model's key and label.
    loads: Vec<(String, String, Instant)>,
    warned: BTreeSet<Pain>,
    /// Warnings printed, in order.
    pub warnings: Vec<String>,
    /// Rows written, to both files.
    pub rows: u64,
    /// Rows written to `proxy-requests.csv`.
    pub model_rows: u64,
    /// Rows written to `proxy-other.csv`.
    pub other_rows: u64,
    /// Requests still open at shutdown after the grace period (`cut_at_shutdown`).
    pub cut: u64,
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
            model_rows: 0,
            other_rows: 0,
            cut: 0,
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
        let label = self.metrics.label(&model);
        let code = row
            .status
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        *self
            .metrics
            .requests
            .entry((label.clone(), row.endpoint.clone(), code))
            .or_default() += 1;
        let ok = row.outcome == "ok";
        if ok && let Some(load) = row.load_duration_ms {
            let cold = load >= COLD_MS;
            row.cold = Some(cold);
            if cold {
                *self
                    .metrics
                    .cold
                    .entry((label.clone(), row.endpoint.clone()))
                    .or_default() += 1;
                self.metrics
                    .load
                    .entry(label.clone())
                    .or_default()
                    .observe(load / 1000.0);
            }
        }
        let start = match row.cold {
            Some(true) => "cold",
            Some(false) => "warm",
            None => "unknown",
        };
        // Only inference calls are timed: a listing, a load or an unload is not.
        let inference =
            ok && row.endpoint != "other" && (row.kind.is_empty() || row.kind == "serve");
        let series = (label.clone(), row.endpoint.clone(), start);
        if inference
            && has_first_token(&row.endpoint)
            && let Some(t) = row.ttft_ms
        {
            self.metrics
                .ttft
                .entry(series.clone())
                .or_default()
                .observe(t / 1000.0);
        }
        if inference && let Some(t) = row.e2e_ms {
            self.metrics
                .e2e
                .entry(series)
                .or_default()
                .observe(t / 1000.0);
        }
        if ok && !model.is_empty() && row.endpoint != "other" {
            self.track(&model, &label, &mut row, inspected, ended);
        }
        if row.outcome == "cut_at_shutdown" {
            self.cut += 1;
        }
        // A redirect is not a model request that ran: the client's next request is.
        let to_other = row.model.is_empty()
            || row.endpoint == "other"
            || row.outcome == "redirected"
            || row.outcome == "not_forwarded"
            || row.outcome == "loop";
        let writer = if to_other {
            &mut self.other
        } else {
            &mut self.csv
        };
        if writer.serialize(&row).is_ok() {
            let _ = writer.flush();
            self.rows += 1;
            if to_other {
                self.other_rows += 1;
            } else {
                self.model_rows += 1;
            }
        }
    }

    /// Tells a reload from an expiry and remembers the model's keep-alive.
    fn track(
        &mut self,
        model: &str,
        label: &str,
        row: &mut ProxyRow,
        inspected: &Inspected,
        ended: Instant,
    ) {
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
                let evictor = prev.last_end.and_then(|end| {
                    self.loads
                        .iter()
                        .find(|(k, _, at)| *k != key && *at >= end && *at <= started)
                        .map(|(_, l, _)| l.clone())
                });
                let ctx =
                    |c: Option<i64>| c.map_or_else(|| "default".to_string(), |c| c.to_string());
                let (cause, from, to) = if let Some(other) = evictor {
                    self.pain(Pain::Evicted);
                    ("evicted", String::new(), other)
                } else if prev.num_ctx != inspected.num_ctx {
                    self.pain(Pain::OptionReload);
                    ("num_ctx", ctx(prev.num_ctx), ctx(inspected.num_ctx))
                } else if prev.load_options != options {
                    self.pain(Pain::OptionReload);
                    let short = |s: &str| crate::units::limits::excerpt(s);
                    ("load_options", short(&prev.load_options), short(&options))
                } else {
                    ("unknown", String::new(), String::new())
                };
                *self
                    .metrics
                    .reloads
                    .entry((label.to_string(), cause.to_string()))
                    .or_default() += 1;
                let at_unix_s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                self.metrics.last_reload.insert(
                    label.to_string(),
                    Reload {
                        cause,
                        from,
                        to,
                        at_unix_s,
                    },
                );
                if !row.note.is_empty() {
                    row.note.push(';');
                }
                row.note.push_str(&format!("reload:{cause}"));
            }
        }
        if cold {
            self.loads.push((key.clone(), label.to_string(), ended));
            if self.loads.len() > 64 {
                self.loads.remove(0);
            }
        }
        // The keep_alive the server received (rewritten or the client's), else its own.
        let received = crate::units::KeepAlive::from_written(&row.keep_alive);
        let server_default = self
            .metrics
            .server_default_s
            .unwrap_or(DEFAULT_KEEP_ALIVE_S);
        let keep_alive_s = match &received {
            Some(k) => k.seconds_or_infinity(),
            None if cold => server_default,
            None => previous.as_ref().map_or(server_default, |p| p.keep_alive_s),
        };
        let source = match &received {
            Some(_) if row.note.split(';').any(|n| n.starts_with("rewritten:")) => {
                KeepAliveSource::Rewritten
            }
            Some(_) => KeepAliveSource::Request,
            None => KeepAliveSource::ServerDefault,
        };
        self.metrics.keep_alive(label, source, keep_alive_s, ended);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(endpoint: &str, model: &str) -> ProxyRow {
        ProxyRow {
            endpoint: endpoint.into(),
            model: model.into(),
            kind: if endpoint == "other" { "" } else { "serve" }.into(),
            status: Some(200),
            outcome: "ok".into(),
            ttft_ms: Some(5.0),
            e2e_ms: Some(9.0),
            ..Default::default()
        }
    }

    #[test]
    fn only_inference_is_timed_and_ttft_only_where_tokens_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), true).unwrap();
        r.metrics.set_listed(["tiny:latest"]);
        let none = super::super::inspect::inspect("", b"");
        r.finish(row("embed", "tiny"), &none, Instant::now());
        r.finish(row("other", ""), &none, Instant::now());
        r.finish(row("chat", "made-up"), &none, Instant::now());
        let ttft: Vec<_> = r.metrics.ttft.keys().cloned().collect();
        assert_eq!(
            ttft,
            vec![("other".to_string(), "chat".to_string(), "unknown")]
        );
        let e2e: Vec<_> = r.metrics.e2e.keys().map(|k| k.1.clone()).collect();
        assert_eq!(e2e, vec!["chat".to_string(), "embed".to_string()]);
        assert_eq!((r.model_rows, r.other_rows, r.rows), (2, 1, 3));
        let models: Vec<_> = r.metrics.requests.keys().map(|k| k.0.clone()).collect();
        assert_eq!(models, vec!["none", "other", "tiny:latest"]);
    }
}
