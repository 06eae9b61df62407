//! Reload-thrash detection: a cold request for a model that had not expired (no
//! expiry fell between the model's previous request and this one: KA6's last
//! dispatched keep_alive, counted from the end of the last request in flight, T1) is a
//! *reload*, a load the keep_alive setting did not cause and cannot prevent. Its cause
//! is named when the rows show it: the previous request asked another `num_ctx`
//! (L5, L6), another model was loaded in between (an eviction for memory or for
//! `OLLAMA_MAX_LOADED_MODELS`, E3–E5), or the model was resident and still reloaded
//! (another load option, L5). Counted per cause in `summary.json` and warned about,
//! with the fix, in the report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::folder::{CellMeta, RequestRecord};
use crate::ollama::name;

/// The keep-alive a request without one gets when the server's is unknown (KA5).
const DEFAULT_KEEP_ALIVE_MS: f64 = 300_000.0;
/// A request this close to the expiry may have met it: not counted as a reload.
const EXPIRY_MARGIN_MS: f64 = 500.0;
/// Cold requests whose waits ended this close together met one load (L2).
const SAME_LOAD_MS: f64 = 50.0;

/// The reloads of one cell (`summary.json` `cells[].reloads`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reloads {
    /// Cold requests whose model had not expired.
    pub total: u64,
    /// Per cause: `num_ctx`, `evicted`, `load_options`, `unknown`.
    pub by_cause: BTreeMap<String, u64>,
    /// One finding per model and cause, with what showed it and the fix.
    pub findings: Vec<Finding>,
}

/// Reloads of one model for one cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    /// The model reloaded.
    pub model: String,
    /// `num_ctx`, `evicted`, `load_options` or `unknown`.
    pub cause: String,
    /// How many times.
    pub count: u64,
    /// The evidence, e.g. the streams and contexts involved, or the other model.
    pub detail: String,
    /// What to do about it.
    pub fix: String,
}

impl Reloads {
    /// One report warning per finding.
    pub fn warnings(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{} reloaded {} time(s) before its keep_alive ran out ({}): {}; fix: {}",
                    f.model, f.count, f.cause, f.detail, f.fix
                )
            })
            .collect()
    }
}

/// What one request did to its model's keep-alive.
struct Seen<'a> {
    row: &'a RequestRecord,
    keep_alive_ms: f64,
    num_ctx: Option<u32>,
}

/// The reloads among a cell's rows.
pub fn detect(cell: &CellMeta, rows: &[RequestRecord]) -> Reloads {
    let stream = |name: &str| cell.streams.iter().find(|s| s.name == name);
    let mut by_model: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.sent_ms.is_some() && !r.is_error()) {
        let s = stream(&r.stream);
        let keep_alive_ms = match s.and_then(|s| s.keep_alive.as_ref()) {
            Some(k) if k.is_forever() => f64::INFINITY,
            Some(k) => k
                .duration()
                .map_or(DEFAULT_KEEP_ALIVE_MS, |d| d.as_secs_f64() * 1000.0),
            None => DEFAULT_KEEP_ALIVE_MS,
        };
        by_model.entry(name::key(&r.model)).or_default().push(Seen {
            row: r,
            keep_alive_ms,
            num_ctx: s.and_then(|s| s.num_ctx),
        });
    }
    for seen in by_model.values_mut() {
        seen.sort_by(|a, b| {
            a.row
                .sent_ms
                .unwrap_or(0.0)
                .total_cmp(&b.row.sent_ms.unwrap_or(0.0))
        });
    }
    // Loads of every model: (model key, sent), to find a load between two requests.
    let loads: Vec<(String, &RequestRecord)> = by_model
        .iter()
        .flat_map(|(k, v)| {
            v.iter()
                .filter(|s| s.row.cold)
                .map(move |s| (k.clone(), s.row))
        })
        .collect();
    let mut counts: BTreeMap<(String, String), (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for (key, seen) in &by_model {
        // Load ends already attributed: a cold row whose wait ended with an earlier
        // one's met the same load (L2).
        let mut load_ends: Vec<f64> = Vec::new();
        for (i, this) in seen.iter().enumerate() {
            if !this.row.cold {
                continue;
            }
            let sent = this.row.sent_ms.unwrap_or(0.0);
            let load_end = sent + this.row.load_duration_ms.unwrap_or(0.0);
            if load_ends
                .iter()
                .any(|e| (e - load_end).abs() <= SAME_LOAD_MS)
            {
                continue;
            }
            load_ends.push(load_end);
            if this.row.warmup || i == 0 {
                continue;
            }
            let before = &seen[..i];
            let last_end = before.iter().map(|s| s.row.end_ms).fold(f64::MIN, f64::max);
            // KA6: the last dispatched request's keep_alive is the one in force.
            let last = &before[before.len() - 1];
            if sent + EXPIRY_MARGIN_MS >= last_end + last.keep_alive_ms {
                continue; // it had expired: an ordinary cold start
            }
            // Another model requested before this one and loaded once the model was idle
            // (E3 evicts idle models only): an eviction, unless the model was still
            // resident when this request went out.
            let evictor = loads.iter().find(|(k, q)| {
                let from = q.sent_ms.unwrap_or(f64::MAX);
                let to = from + q.load_duration_ms.unwrap_or(0.0);
                k != key && to + SAME_LOAD_MS >= last_end && from <= sent
            });
            let num_ctx_changed =
                last.num_ctx.is_some() && this.num_ctx.is_some() && last.num_ctx != this.num_ctx;
            let (cause, detail) = match evictor {
                Some((_, other)) if this.row.resident_before != Some(true) => {
                    ("evicted", format!("for {}", other.model))
                }
                _ if num_ctx_changed => (
                    "num_ctx",
                    format!(
                        "{} (num_ctx {}) after {} (num_ctx {})",
                        this.row.stream,
                        this.num_ctx.unwrap_or(0),
                        last.row.stream,
                        last.num_ctx.unwrap_or(0)
                    ),
                ),
                _ if this.row.resident_before == Some(true) => (
                    "load_options",
                    "resident before the request, loaded again".to_string(),
                ),
                _ => ("unknown", "no other load seen in between".to_string()),
            };
            let entry = counts
                .entry((this.row.model.clone(), cause.to_string()))
                .or_default();
            entry.0 += 1;
            *entry.1.entry(detail).or_default() += 1;
        }
    }
    let mut out = Reloads::default();
    for ((model, cause), (count, details)) in counts {
        out.total += count;
        *out.by_cause.entry(cause.clone()).or_default() += count;
        let mut details: Vec<(String, u64)> = details.into_iter().collect();
        details.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let detail = details
            .iter()
            .take(3)
            .map(|(d, n)| format!("{d} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.findings.push(Finding {
            fix: fix(&cause, &model).to_string(),
            model,
            cause,
            count,
            detail,
        });
    }
    out
}

fn fix(cause: &str, _model: &str) -> &'static str {
    match cause {
        "num_ctx" => {
            "send one num_ctx from every client of the model (or set OLLAMA_CONTEXT_LENGTH and send none): any other value reloads it (L5, L6)"
        }
        "evicted" => {
            "make room for both: raise OLLAMA_MAX_LOADED_MODELS (embedding models count, E5), or a smaller quantization or num_ctx so both fit (E1); a longer keep_alive does not help"
        }
        "load_options" => {
            "send the same load options (num_ctx, num_batch, num_gpu, num_thread, use_mmap) from every client (L5)"
        }
        _ => "look for an unload (keep_alive 0) or a server restart between the requests",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::StreamMeta;

    fn stream(name: &str, model: &str, ka_s: f64, num_ctx: u32) -> StreamMeta {
        StreamMeta {
            name: name.into(),
            model: model.into(),
            keep_alive: Some(crate::units::KeepAlive::from_seconds(ka_s)),
            num_ctx: Some(num_ctx),
            ..Default::default()
        }
    }

    fn row(stream: &str, model: &str, sent: f64, end: f64, cold: bool) -> RequestRecord {
        RequestRecord {
            stream: stream.into(),
            model: model.into(),
            sent_ms: Some(sent),
            end_ms: end,
            cold,
            resident_before: Some(!cold),
            ..Default::default()
        }
    }

    #[test]
    fn two_clients_with_different_num_ctx_thrash_and_are_named() {
        let cell = CellMeta {
            streams: vec![
                stream("short", "m", 300.0, 2048),
                stream("long", "m", 300.0, 8192),
            ],
            ..Default::default()
        };
        let rows = vec![
            row("short", "m", 0.0, 1000.0, true),
            row("long", "m", 2000.0, 3000.0, true),
            row("short", "m", 4000.0, 5000.0, true),
            row("short", "m", 6000.0, 6100.0, false),
        ];
        let r = detect(&cell, &rows);
        assert_eq!(r.total, 2, "the first load is no reload");
        assert_eq!(r.by_cause["num_ctx"], 2);
        assert!(r.findings[0].detail.contains("num_ctx 8192"), "{r:?}");
        assert!(r.warnings()[0].contains("send one num_ctx"));
    }

    #[test]
    fn an_embedder_loading_between_two_chats_is_an_eviction_and_an_expiry_is_not() {
        let cell = CellMeta {
            streams: vec![
                stream("chat", "c", 60.0, 4096),
                stream("emb", "e", 60.0, 2048),
            ],
            ..Default::default()
        };
        let rows = vec![
            row("chat", "c", 0.0, 1000.0, true),
            row("emb", "e", 2000.0, 2500.0, true),
            row("chat", "c", 3000.0, 4000.0, true),
            // 70 s later: past the 60 s keep_alive, an ordinary cold start.
            row("chat", "c", 74_100.0, 75_000.0, true),
        ];
        let r = detect(&cell, &rows);
        assert_eq!(r.total, 1);
        assert_eq!(r.by_cause["evicted"], 1);
        assert_eq!(r.findings[0].detail, "for e ×1");
        assert!(r.findings[0].fix.contains("OLLAMA_MAX_LOADED_MODELS"));
    }

    #[test]
    fn keep_alive_0_and_forever_decide_whether_a_cold_start_is_a_reload() {
        let cell = CellMeta {
            streams: vec![stream("a", "m", 0.0, 4096)],
            ..Default::default()
        };
        let rows = vec![
            row("a", "m", 0.0, 1000.0, true),
            row("a", "m", 2000.0, 3000.0, true),
        ];
        assert_eq!(
            detect(&cell, &rows).total,
            0,
            "keep_alive 0 expires at once"
        );
        let mut forever = stream("a", "m", 0.0, 4096);
        forever.keep_alive = Some(crate::units::KeepAlive::forever());
        let cell = CellMeta {
            streams: vec![forever],
            ..Default::default()
        };
        let r = detect(&cell, &rows);
        assert_eq!(r.by_cause.get("unknown"), Some(&1), "{r:?}");
    }
}
