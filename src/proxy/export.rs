//! A proxy log as a run folder, so `kabench report DIR` renders it like a run: one cell
//! (`observed`), one stream per model, endpoint and `num_ctx` seen, every row of
//! `proxy-requests.csv` as a row of `requests.csv`, the `/api/ps` samples the proxy
//! polled in `vram.csv`, and a `run.json` whose warnings say the traffic was observed,
//! not swept. Streams are bounded: the [`MAX_STREAMS`] busiest get their own, the
//! rest share one (their rows keep their models), so a client naming 10,000 models
//! cannot make the export, or the report after it, do per-model work without bound.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::log::{COLD_MS, LOG_CSV, ProxyRow};

/// The stream that holds the models beyond the busiest ones.
const OTHER_MODELS: &str = "(other)";
use crate::folder::{
    self, Api, CellMeta, CellParams, CostSettings, RUN_JSON, RequestRecord, RunFolder, RunHeader,
    RunMeta, RunStatus, SloSettings, StreamMeta, TargetKind, TargetMeta,
};
use crate::units::KeepAlive;

/// The most streams an export writes; the rows of the rest share one more.
pub const MAX_STREAMS: usize = 64;

/// What the report says first about a proxy log.
pub const OBSERVED: &str = "observed traffic through kabench proxy, not a sweep: one cell of what the app sent, with the keep_alive it sent; nothing was varied, so the recommendation has no alternatives to compare";

/// The run's error kind for a proxy outcome.
fn error_kind(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "",
        "http_error" => "http",
        "stream_error" => "stream_error",
        "upstream_unreachable" => "connect",
        "upstream_error" => "broken_stream",
        "client_gone" | "cut" | "cut_at_shutdown" => "cancelled",
        "proxy_busy" => "saturated",
        _ => "http",
    }
}

/// The API of a proxy endpoint, as a stream's `api`.
fn api(endpoint: &str) -> Api {
    match endpoint {
        "chat" | "v1_chat" => Api::Chat,
        "embed" | "embeddings" | "v1_embeddings" => Api::Embed,
        _ => Api::Generate,
    }
}

/// Writes `run.json` and `requests.csv` into `dir` from its `proxy-requests.csv`.
/// Returns the rows written.
pub fn write_run_folder(
    dir: &Path,
    upstream: &str,
    version: Option<String>,
    started_at: &str,
    warnings: &[String],
) -> Result<usize> {
    let path = dir.join(LOG_CSV);
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<ProxyRow> = reader
        .deserialize()
        .filter_map(|r: Result<ProxyRow, _>| r.ok())
        .filter(|r| r.endpoint != "other" && !r.model.is_empty())
        // A run's requests.csv holds what was answered, not the loads and unloads.
        .filter(|r| r.kind.is_empty() || r.kind == "serve")
        // A request the server refused (a model it does not have, a bad body) loaded
        // nothing: its model need not fit.
        .filter(|r| !r.status.is_some_and(|s| (400..500).contains(&s)))
        .collect();
    // One stream per model and endpoint, in order of first appearance.
    type Key = (String, String, Option<i64>);
    let key_of = |r: &ProxyRow| (r.model.clone(), r.endpoint.clone(), r.num_ctx);
    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(key_of(r)).or_default() += 1;
    }
    let mut busiest: Vec<(&Key, &usize)> = counts.iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let own: std::collections::BTreeSet<&Key> =
        busiest.iter().take(MAX_STREAMS).map(|(k, _)| *k).collect();
    let others = counts.len().saturating_sub(own.len());
    let other_key: Key = (OTHER_MODELS.into(), String::new(), None);
    let mut order: Vec<Key> = Vec::new();
    let mut per: BTreeMap<Key, Vec<&ProxyRow>> = BTreeMap::new();
    for r in &rows {
        let mut key = key_of(r);
        if !own.contains(&key) {
            key = other_key.clone();
        }
        if !per.contains_key(&key) {
            order.push(key.clone());
        }
        per.entry(key).or_default().push(r);
    }
    let mut streams = Vec::new();
    let mut records = Vec::new();
    for key in &order {
        let list = &per[key];
        // Clients asking different contexts are different streams, so the reload
        // analysis can name num_ctx as the cause.
        let name = match key.2 {
            _ if *key == other_key => format!("{OTHER_MODELS} {others} more model streams"),
            Some(c) => format!("{} {} num_ctx {c}", key.0, key.1),
            None => format!("{} {}", key.0, key.1),
        };
        // The keep_alive most requests sent where the server reads it.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in list {
            let k = r.keep_alive.clone();
            *counts.entry(k).or_default() += 1;
        }
        let keep_alive = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let parsed = KeepAlive::parse(&keep_alive).ok();
        let span_s = list
            .last()
            .zip(list.first())
            .map_or(0.0, |(l, f)| (l.t_ms - f.t_ms) / 1000.0);
        let mut ctx: BTreeMap<i64, usize> = BTreeMap::new();
        for r in list {
            if let Some(c) = r.num_ctx {
                *ctx.entry(c).or_default() += 1;
            }
        }
        streams.push(StreamMeta {
            name: name.clone(),
            model: key.0.clone(),
            keep_alive: parsed.clone(),
            api: api(&key.1),
            arrival: "observed".into(),
            rate_per_s: (span_s > 0.0).then(|| (list.len() - 1) as f64 / span_s),
            planned: list.len() as u32,
            num_ctx: ctx
                .iter()
                .max_by_key(|(_, n)| **n)
                .and_then(|(c, _)| u32::try_from(*c).ok()),
        });
        for (i, r) in list.iter().enumerate() {
            let cold = r.cold == Some(true)
                || (r.cold.is_none() && r.load_duration_ms.is_some_and(|l| l >= COLD_MS));
            let error = error_kind(&r.outcome);
            records.push(RequestRecord {
                cell: "observed".into(),
                request: i as u32,
                stream: name.clone(),
                model: r.model.clone(),
                keep_alive: parsed.clone(),
                warmup: false,
                intended_ms: r.t_ms,
                sent_ms: Some(r.t_ms),
                first_byte_ms: None,
                first_token_ms: r.ttft_ms.map(|t| r.t_ms + t),
                first_answer_ms: r.ttft_ms.map(|t| r.t_ms + t),
                end_ms: r.t_ms + r.e2e_ms.unwrap_or(0.0),
                status: r.status,
                error: error.into(),
                prompt_eval_count: r.prompt_tokens,
                eval_count: r.output_tokens,
                error_detail: if error.is_empty() {
                    String::new()
                } else {
                    r.note.clone()
                },
                resident_before: None,
                load_duration_ms: r.load_duration_ms,
                cold,
                cold_reason: if cold {
                    "load_duration".into()
                } else {
                    String::new()
                },
                ttft_ms: r.ttft_ms,
                e2e_ms: r.e2e_ms,
                ..Default::default()
            });
        }
    }
    records.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    let started = records.first().map(|r| r.intended_ms);
    let ended = records
        .iter()
        .map(|r| r.end_ms)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    let mut all_warnings = vec![OBSERVED.to_string()];
    all_warnings.extend(warnings.iter().cloned());
    let mut meta = RunMeta::new(RunHeader {
        scenario: "proxy".into(),
        scenario_file: String::new(),
        scenario_sha256: String::new(),
        seed: 0,
        target: TargetMeta {
            kind: TargetKind::Proxy,
            url: upstream.into(),
            urls: Vec::new(),
        },
        ollama_version: version,
        cold_threshold_ms: COLD_MS,
        // Nothing was swept, so there is no [cost] or [slo] of the user's: the
        // defaults, recorded as such, weigh what was observed.
        cost: CostSettings::default(),
        slo: SloSettings::default(),
    });
    meta.started_at = started_at.into();
    meta.cells = vec![CellMeta {
        id: "observed".into(),
        params: CellParams::default().with("source", "kabench proxy"),
        streams,
        started_ms: started,
        ended_ms: ended,
        host: None,
    }];
    meta.warnings = all_warnings;
    // "Fits together?" from the /api/ps samples the proxy polled.
    let samples = folder::read_vram(dir).unwrap_or_default();
    meta.fits = crate::plan::fits::sections(&meta, &samples);
    let scenario = scenario_text(&meta.cells[0].streams);
    // An earlier session's run.json here describes a log this session overwrote.
    let _ = std::fs::remove_file(dir.join(RUN_JSON));
    let folder = RunFolder::create_in(dir, &scenario, meta)?;
    folder.write_requests(&records)?;
    folder.finish(RunStatus::Complete, None)?;
    Ok(records.len())
}

/// A scenario describing the observed traffic (each stream at its mean rate), so the
/// report reads default `[cost]` from it and a user can start a sweep from it.
fn scenario_text(streams: &[StreamMeta]) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "# What kabench proxy observed, one stream per model, endpoint and num_ctx at its mean rate.\n\
         # Not what ran: the traffic was the app's own. Add a [sweep] to study it.\n\n\
         name = \"proxy\"\n",
    );
    for s in streams {
        let _ = write!(
            out,
            "\n[[stream]]\nname = {}\nmodel = {}\napi = {}\n",
            toml_string(&s.name),
            toml_string(&s.model),
            toml_string(s.api.as_str())
        );
        if let Some(c) = s.num_ctx {
            let _ = writeln!(out, "num_ctx = {c}");
        }
        if let Some(k) = &s.keep_alive {
            let _ = writeln!(out, "keep_alive = {}", toml_string(k.written()));
        }
        let rate = s.rate_per_s.filter(|r| *r > 0.0).unwrap_or(1.0);
        let _ = writeln!(
            out,
            "arrival = {{ kind = \"poisson\", rate = \"{rate:.4}/s\" }}"
        );
    }
    let n = streams.iter().map(|s| s.planned).max().unwrap_or(1).max(1);
    let _ = write!(out, "\n[run]\nrequests = {n}\n");
    out
}

/// `text` as a TOML basic string, escaped by the TOML serializer (control
/// characters, quotes, backslashes), so any model name round-trips.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_round_trips_through_the_scenario() {
        let name = "\u{1b}[31mred\"\\\u{0}\n\u{2028}'''\"\"\"";
        let text = format!("model = {}\n", toml_string(name));
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["model"].as_str(), Some(name));
    }
}
