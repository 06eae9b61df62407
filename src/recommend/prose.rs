//! The recommendation in words: why the pick won (`reason`), paste-ready settings
//! (`snippets`), and advice across swept quantizations, models and
//! OLLAMA_MAX_LOADED_MODELS (`advice`).

use std::collections::BTreeMap;

use crate::analysis::Summary;
use crate::folder::{CostSettings, SweepAxis};
use crate::recommend::{Candidate, Form, GB, Recommendation, Snippets, display_keep_alive};
use crate::units::{KeepAlive, format_go_duration};

#[allow(clippy::too_many_arguments)]
pub(crate) fn reason(
    form: Form,
    pick: &Candidate,
    cands: &[Candidate],
    slo_ms: Option<f64>,
    has_vram: bool,
    penalty_s: Option<f64>,
    cost: &CostSettings,
) -> String {
    let ka = display_keep_alive(pick.keep_alive.as_ref());
    let mut out = match form {
        Form::Slo => format!(
            "{ka} is the least memory-hungry swept keep_alive whose p99 TTFT ({:.0} ms) meets the SLO of {:.0} ms",
            pick.p99_ttft_ms.unwrap_or(f64::NAN),
            slo_ms.unwrap_or(f64::NAN)
        ),
        Form::Cost => {
            let k = pick.cost.map_or(0.0, |k| k.total);
            let mut memory = Vec::new();
            let (gpu, ram) = (
                pick.idle_gpu_gb_s.unwrap_or(0.0),
                pick.idle_ram_gb_s.unwrap_or(0.0),
            );
            if gpu > 0.0 || ram == 0.0 {
                memory.push(format!(
                    "{gpu:.1} idle GPU GB·s × {} per GB-hour",
                    cost.vram_gb_hour
                ));
            }
            if ram > 0.0 {
                memory.push(format!(
                    "{ram:.1} idle system-memory GB·s × {} per GB-hour",
                    cost.ram_gb_hour
                ));
            }
            format!(
                "{ka} has the lowest cost, {k:.3} ({} cold × {:.2} s × {} per wait-second + {})",
                pick.cold,
                penalty_s.unwrap_or(0.0),
                cost.wait_second,
                memory.join(" + ")
            )
        }
        Form::ColdOnly => format!(
            "no memory measured: {ka} is the shortest swept keep_alive with the lowest cold-start ratio ({:.1}%)",
            pick.cold_ratio * 100.0
        ),
        Form::NoCandidate => String::new(),
    };
    if slo_ms.is_some() && form != Form::Slo {
        out.push_str("; no swept keep_alive met the p99 TTFT SLO");
    }
    if !has_vram && form != Form::ColdOnly {
        out.push_str("; no memory measured, so memory is ranked by keep_alive length");
    }
    let frontier: Vec<String> = cands
        .iter()
        .filter(|c| c.on_frontier)
        .map(|c| display_keep_alive(c.keep_alive.as_ref()))
        .collect();
    if !frontier.is_empty() {
        out.push_str(&format!("; Pareto frontier: {}", frontier.join(", ")));
    }
    if pick.honoured == Some(false) {
        out.push_str("; warning: the server did not release memory as this keep_alive says");
    }
    out
}

/// Paste-ready settings for a keep_alive (`None`: not sent, so the server's default,
/// shown as Ollama's own `5m`).
pub fn snippets(model: &str, keep_alive: Option<&KeepAlive>) -> Snippets {
    let notes = vec![
        "keep_alive is a top-level field of /api/generate, /api/chat and /api/embed; inside \"options\" it is ignored.".to_string(),
        "Forever is the JSON number -1; the string \"-1\" (or any numeric string but \"0\") is rejected with 400.".to_string(),
        "OpenAI-compatible /v1 clients cannot set keep_alive per request: OLLAMA_KEEP_ALIVE on the server is their only lever.".to_string(),
    ];
    let (env, json) = match keep_alive {
        Some(ka) => {
            let env = match ka.duration() {
                None => "-1".to_string(),
                Some(d) => format_go_duration(d),
            };
            (env, ka.to_json())
        }
        None => ("5m".to_string(), serde_json::Value::String("5m".into())),
    };
    let field = format!("\"keep_alive\": {json}");
    let body = serde_json::json!({ "model": model, "prompt": "…", "keep_alive": json });
    Snippets {
        server_env: format!("OLLAMA_KEEP_ALIVE={env}"),
        native_request: body.to_string(),
        keep_alive_field: field,
        notes,
    }
}

/// Advice across groups of one workload where the scenario swept `quant` or `model`,
/// and on OLLAMA_MAX_LOADED_MODELS when several models run.
pub(crate) fn advice(
    summary: &Summary,
    recs: &[Recommendation],
    models: &[&str],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for axis in [SweepAxis::Quant, SweepAxis::Model] {
        let swept = summary
            .cells
            .iter()
            .any(|c| c.params.get(axis.as_str()).is_some());
        if !swept {
            continue;
        }
        let mut by_workload: BTreeMap<&str, Vec<&Recommendation>> = BTreeMap::new();
        for r in recs {
            by_workload.entry(r.workload.as_str()).or_default().push(r);
        }
        for (workload, rs) in by_workload {
            let mut lines = Vec::new();
            for r in &rs {
                let Some(c) = r.chosen_candidate() else {
                    continue;
                };
                let value = r.fixed.get(axis.as_str()).cloned().unwrap_or_default();
                lines.push(format!(
                    "{axis} {value} ({}): at keep_alive {}, peak memory {}, cold load {}, p99 TTFT {}, cold {:.1}%{}",
                    r.model,
                    display_keep_alive(r.chosen.as_ref()),
                    c.peak_bytes.map_or("unknown".into(), |b| format!("{:.2} GB", b as f64 / GB)),
                    c.cold_load_ms.map_or("n/a".into(), |p| format!("{p:.0} ms")),
                    c.p99_ttft_ms.map_or("n/a".into(), |p| format!("{p:.0} ms")),
                    c.cold_ratio * 100.0,
                    c.cost.map_or(String::new(), |k| format!(", cost {:.3}", k.total)),
                ));
            }
            let best = rs
                .iter()
                .filter_map(|r| {
                    r.chosen_candidate()
                        .and_then(|c| c.cost)
                        .map(|k| (r, k.total))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((r, _)) = best {
                lines.push(format!(
                    "Lowest cost across swept {axis}: {} with keep_alive {}.",
                    r.fixed
                        .get(axis.as_str())
                        .map_or(r.model.as_str(), String::as_str),
                    display_keep_alive(r.chosen.as_ref())
                ));
            }
            out.entry(workload.to_string()).or_default().extend(lines);
        }
    }
    if models.len() > 1 {
        let line = format!(
            "{} models ran: to keep them resident together set OLLAMA_MAX_LOADED_MODELS={} (default 3 per GPU) and check that they fit in VRAM; otherwise each switch evicts one and costs a cold load.",
            models.len(),
            models.len()
        );
        for r in recs {
            out.entry(r.workload.clone())
                .or_default()
                .push(line.clone());
        }
    }
    out
}
