//! `index.html`: one self-contained page (inline CSS and SVG, no network, no script).
//! The template is `index.html`, so minijinja escapes every string from a server or a
//! scenario; the SVG charts go in as they are, their text already escaped by plotters.
//! Knows nothing of how the figures were measured.

use anyhow::{Context, Result};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::ReportData;
use super::figures::{self, Pct};
use crate::analysis::Summary;
use crate::folder::SweptKeepAlive;
use crate::recommend::{Form, GB, Recommendation, display_keep_alive, format_seconds};
use crate::units::limits::printable;

const TEMPLATE: &str = include_str!("index.html");

/// Turns serializable data into a template value through JSON (minijinja is built
/// without its `serde` feature here).
fn to_value<T: Serialize>(data: T) -> Value {
    json_value(serde_json::to_value(data).unwrap_or(serde_json::Value::Null))
}

fn json_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(items) => {
            Value::from(items.into_iter().map(json_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.into_iter().map(|(k, v)| (k, json_value(v))))
        }
    }
}

/// One row of the per-cell table, already formatted.
#[derive(Debug, Clone, Serialize)]
pub struct CellRow {
    /// Cell id.
    pub cell: String,
    /// `axis=value` pairs.
    pub params: String,
    /// Stream name.
    pub stream: String,
    /// Model tag.
    pub model: String,
    /// keep_alive as written.
    pub keep_alive: String,
    /// Requests counted.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Cold-start ratio, %.
    pub cold_pct: String,
    /// Its confidence interval, % (`lo–hi`; `–` without one).
    pub cold_ci: String,
    /// TTFT p50, ms, with its confidence interval.
    pub ttft_p50: String,
    /// TTFT p99, ms, with its confidence interval (or `max … (n=…)` when the sample
    /// is too small for one).
    pub ttft_p99: String,
    /// Cold TTFT p50, ms.
    pub cold_p50: String,
    /// End-to-end p99, ms, as `ttft_p99`.
    pub e2e_p99: String,
    /// Decode tokens/s: the median per-request rate, with its interval.
    pub tps: String,
    /// VRAM held, GB·s.
    pub held: String,
    /// Idle memory held, GB·s.
    pub idle: String,
    /// Peak VRAM, GB.
    pub peak: String,
    /// Which memory the figures count (GPU, system RAM, both).
    pub memory: String,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The per-cell table rows, one per stream of each cell (and under it one per host of
/// a fleet).
pub fn cell_rows(summary: &Summary) -> Vec<CellRow> {
    let mut rows = Vec::new();
    let summary = super::table::shown(summary);
    for (c, s) in super::table::rows_in_order(&summary) {
        let params: Vec<String> = c
            .params
            .written()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push(CellRow {
            cell: printable(&c.id).into_owned(),
            params: printable(&params.join(", ")).into_owned(),
            stream: printable(&s.name).into_owned(),
            model: printable(&s.model).into_owned(),
            // A predicted policy that is not one value (the keep_alive optimum) shows its name.
            keep_alive: match (&s.keep_alive, &c.params.keep_alive) {
                (None, Some(SweptKeepAlive::Policy(policy))) => policy.clone(),
                (ka, _) => display_keep_alive(ka.as_ref()),
            },
            requests: s.requests,
            errors: s.errors,
            cold_pct: format!("{:.1}", s.cold_ratio * 100.0),
            cold_ci: figures::cold_pct_interval(s),
            ttft_p50: figures::ttft(s, Pct::P50),
            ttft_p99: figures::ttft(s, Pct::P99),
            cold_p50: opt(s.ttft_ms.cold.map(|p| p.p50), 0),
            e2e_p99: figures::e2e(s, Pct::P99),
            tps: figures::tokens_per_s(s),
            held: opt(c.vram.as_ref().map(|v| v.gb_seconds_held), 1),
            idle: figures::idle_memory(c),
            peak: opt(c.vram.as_ref().map(|v| v.peak_bytes as f64 / GB), 2),
            memory: c
                .vram
                .as_ref()
                .map_or("not measured".into(), |v| v.counted.clone()),
        });
        // A fleet: each host's share of the stream under it.
        for h in &s.hosts {
            rows.push(CellRow {
                cell: printable(&format!("{} @ {}", c.id, h.target)).into_owned(),
                params: String::new(),
                stream: printable(&s.name).into_owned(),
                model: printable(&s.model).into_owned(),
                keep_alive: String::new(),
                requests: h.requests,
                errors: h.errors,
                cold_pct: format!("{:.1}", h.cold_ratio * 100.0),
                cold_ci: "–".into(),
                ttft_p50: opt(h.ttft_ms.map(|p| p.p50), 0),
                ttft_p99: opt(h.ttft_ms.map(|p| p.p99), 0),
                cold_p50: "–".into(),
                e2e_p99: opt(h.e2e_ms.map(|p| p.p99), 0),
                tps: "–".into(),
                held: "–".into(),
                idle: "–".into(),
                peak: "–".into(),
                memory: String::new(),
            });
        }
    }
    rows
}

#[derive(Serialize)]
struct CandidateRow {
    keep_alive: String,
    requests: u64,
    cold: u64,
    cold_pct: String,
    p99: String,
    idle: String,
    cost: String,
    frontier: &'static str,
    slo: &'static str,
    chosen: bool,
}

#[derive(Serialize)]
struct RecView<'a> {
    #[serde(flatten)]
    rec: &'a Recommendation,
    chosen_display: String,
    break_even: String,
    cold_penalty: Option<String>,
    rows: Vec<CandidateRow>,
}

fn rec_view(r: &Recommendation) -> RecView<'_> {
    let rows = r
        .candidates
        .iter()
        .map(|c| CandidateRow {
            keep_alive: display_keep_alive(c.keep_alive.as_ref()),
            requests: c.requests,
            cold: c.cold,
            cold_pct: figures::with_interval(
                c.cold_ratio * 100.0,
                c.cold_ratio_interval
                    .map(|i| crate::analysis::stats::Interval {
                        lo: i.lo * 100.0,
                        hi: i.hi * 100.0,
                        level: i.level,
                    })
                    .as_ref(),
                1,
            ),
            p99: figures::candidate_p99(c),
            idle: match c.idle_gb_s {
                Some(v) => figures::with_interval(v, c.idle_gb_s_interval.as_ref(), 1),
                None => "–".into(),
            },
            cost: match c.cost {
                Some(k) => figures::with_interval(k.total, c.cost_interval.as_ref(), 3),
                None => "–".into(),
            },
            frontier: if c.on_frontier { "yes" } else { "" },
            slo: match c.meets_slo {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            },
            chosen: r.is_chosen(c),
        })
        .collect();
    RecView {
        rec: r,
        chosen_display: if r.form == Form::NoCandidate {
            "none".into()
        } else {
            display_keep_alive(r.chosen.as_ref())
        },
        break_even: r.break_even_s.map_or(
            "unknown (no cold penalty or model size measured)".into(),
            format_seconds,
        ),
        cold_penalty: r.cold_penalty_s.map(|p| {
            format!(
                "{p:.2} s; model {}",
                r.model_gb
                    .map_or("size unknown".into(), |g| format!("{g:.2} GB"))
            )
        }),
        rows,
    }
}

/// An RFC 3339 time as `2026-12-06 13:53:13 UTC`, to the second; text that does not
/// parse is shown as written.
pub fn to_second(text: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => text.to_string(),
    }
}

/// Renders `index.html`.
pub fn render_index(data: &ReportData) -> Result<String> {
    let mut env = Environment::new();
    env.add_template("index.html", TEMPLATE)
        .context("loading the index.html template")?;
    let tmpl = env
        .get_template("index.html")
        .context("index.html template")?;
    let recs: Vec<RecView<'_>> = data.recommendations.iter().map(rec_view).collect();
    tmpl.render(context! {
        meta => to_value(&data.meta),
        started => to_value(to_second(&data.meta.started_at)),
        ended => to_value(data.meta.ended_at.as_deref().map(to_second)),
        summary => to_value(&data.summary),
        status => to_value(format!("{:?}", data.meta.status).to_lowercase()),
        headline => to_value(&data.headline),
        sim => to_value(&data.sim),
        recommendations => to_value(recs),
        warnings => to_value(&data.warnings),
        notes => to_value(&data.notes),
        fits => to_value(&data.fits),
        charts => to_value(&data.charts),
        cell_rows => to_value(cell_rows(&data.summary)),
        goose_reports => to_value(&data.goose_reports),
        cost_vram_gb_hour => to_value(data.cost_vram_gb_hour),
        cost_ram_gb_hour => to_value(data.cost_ram_gb_hour),
        cost_wait_second => to_value(data.cost_wait_second),
        slo_ttft_p99_ms => to_value(data.slo_ttft_p99_ms),
    })
    .context("rendering index.html")
}
