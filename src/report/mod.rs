//! `kabench report DIR` (and the end of `kabench run`): reads a run folder's files alone,
//! also an interrupted run's, summarizes, recommends, and writes `summary.json`,
//! `recommendation.json`, `charts/*.svg`, `index.html` and `summary.md`. Knows nothing
//! of the target: everything comes from the folder.
//! Over 500 lines: rendering, its warnings, notes and headline read the same data once.

pub mod charts;
pub mod compare;
pub mod figures;
pub mod html;
pub mod markdown;
pub mod noise;
pub mod predict_charts;
pub mod servers_chart;
pub mod table;
mod telemetry_notes;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::analysis::read::RunData;
use crate::analysis::{self, RowsByCell, Summary};
use crate::folder::{
    self, CostSettings, RunMeta, RunStatus, SimHost, SloSettings, SweepAxis, TargetKind, VramSample,
};
use crate::recommend::{self, Recommendation};
use crate::units::{cmp_keep_alive, display_keep_alive};

/// File name of the recommendation written beside `summary.json`.
pub const RECOMMENDATION_JSON: &str = "recommendation.json";
/// The HTML report.
pub const INDEX_HTML: &str = "index.html";
/// The Markdown summary.
pub const SUMMARY_MD: &str = "summary.md";
/// Folder of the SVG charts.
pub const CHARTS_DIR: &str = "charts";

/// How to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Re-apply the cold rule (M6) with this `load_duration` threshold instead of the
    /// recorded verdicts.
    pub cold_threshold: Option<Duration>,
}

/// What `render` wrote.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Path of `index.html`.
    pub index_html: PathBuf,
    /// Path of `summary.md`.
    pub summary_md: PathBuf,
    /// One line saying what to set (and, for the simulator, that it is a model).
    pub headline: String,
    /// The recommendations, also in `recommendation.json`.
    pub recommendations: Vec<Recommendation>,
}

/// One chart of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// Heading shown above it.
    pub title: String,
    /// File name under `charts/`.
    pub file: String,
    /// The SVG text.
    pub svg: String,
}

/// What the simulator stood for, from `run.json` `sim`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimNote {
    /// The simulated GPU in words.
    pub gpu: String,
    /// Other settings of the simulated host, `key = value`.
    pub facts: Vec<String>,
    /// The simulated models, one row each.
    pub models: Vec<SimModelRow>,
    /// The measured run folder the simulator was calibrated from, if any.
    pub calibrated_from: Option<String>,
}

/// One row of the simulated-models table, formatted for people.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimModelRow {
    /// Model tag.
    pub model: String,
    /// Quantization.
    pub quantization: String,
    /// File size.
    pub file: String,
    /// Resident size and the context it is for.
    pub resident: String,
    /// Load time from a cold disk.
    pub load_cold: String,
    /// Load time from the page cache.
    pub load_cached: String,
    /// Decode speed, tokens per second.
    pub decode: String,
    /// Where the figures come from.
    pub source: String,
    /// The source when it is a web address (linked).
    pub source_url: Option<String>,
}

/// Everything the HTML and Markdown writers show, computed once.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// `run.json`.
    pub meta: RunMeta,
    /// `summary.json`.
    pub summary: Summary,
    /// Per workload.
    pub recommendations: Vec<Recommendation>,
    /// The headline.
    pub headline: String,
    /// Present when the target was the simulator.
    pub sim: Option<SimNote>,
    /// Charts in page order.
    pub charts: Vec<Chart>,
    /// Everything a reader should distrust or fix.
    pub warnings: Vec<String>,
    /// "Fits together?": one section per set of several models run together.
    pub fits: Vec<folder::FitSection>,
    /// Facts worth a line but nothing to fix (a hardware source absent on a simulated run).
    pub notes: Vec<String>,
    /// Relative links to swarm mode's pages (`goose/<cell>/report.html`, or one
    /// `goose/report.html`), when the folder has them.
    pub goose_reports: Vec<String>,
    /// `[cost]` used.
    pub cost_vram_gb_hour: f64,
    /// `[cost]` used.
    pub cost_ram_gb_hour: f64,
    /// `[cost]` used.
    pub cost_wait_second: f64,
    /// `[slo] ttft_p99` used, ms.
    pub slo_ttft_p99_ms: Option<f64>,
}

/// `[cost]` and `[slo]` as the run recorded them in `run.json`; defaults and a warning
/// for a folder written before they were recorded.
fn settings(meta: &RunMeta, warnings: &mut Vec<String>) -> (CostSettings, SloSettings) {
    match (&meta.cost, &meta.slo) {
        (Some(cost), slo) => (cost.clone(), slo.clone().unwrap_or_default()),
        (None, _) => {
            warnings.push(
                "run.json records no [cost] or [slo] (written by an older kabench): the recommendation uses default [cost] and no [slo]"
                    .into(),
            );
            (CostSettings::default(), SloSettings::default())
        }
    }
}

/// Goose's HTML reports that the swarm recorded in `run.json` and are in the folder,
/// in cell order.
fn goose_reports(dir: &Path, meta: &RunMeta) -> Vec<String> {
    let mut links = meta.goose_reports.clone();
    links.retain(|l| dir.join(l).is_file());
    links
}

/// Renders every output of a run folder from its files alone.
pub fn render(dir: &Path, opts: &RenderOptions) -> Result<Rendered> {
    // One reader for every path's folder: rows are read once; rows that do not parse
    // are skipped, each named by its line.
    let RunData {
        meta,
        requests,
        samples,
        summary,
        kept_summary,
        notes: mut warnings,
    } = analysis::read::read_run(dir, opts.cold_threshold)?;
    for w in &warnings {
        tracing::warn!("{}: {w}", dir.display());
    }
    // A summary its writer computed (there are no rows to summarize) is kept as written.
    if !kept_summary {
        analysis::write_summary(dir, &summary)?;
    }
    let (cost, slo) = settings(&meta, &mut warnings);
    let recs = recommend::recommend(&settable(&summary), &cost, &slo);
    folder::write_json_atomic(&dir.join(RECOMMENDATION_JSON), &recs)
        .with_context(|| format!("writing the recommendation of {}", dir.display()))?;
    // The page, summary.md and the charts show the workloads with the most requests;
    // recommendation.json above holds every one.
    let (recs, hidden) = shown_recommendations(recs);
    if hidden > 0 {
        warnings.push(format!(
            "{hidden} more workloads (stream × model) have a recommendation that is not shown here: the {MAX_SHOWN_RECOMMENDATIONS} with the most requests are; {RECOMMENDATION_JSON} lists every one"
        ));
    }

    // A policy table's own charts come first (cost by keep_alive with T*, the
    // keep_alive optimum and the pre-load bound, every policy on the frontier, the gap
    // distributions); then every run's.
    let mut charts = predict_charts::charts(&summary)?;
    charts.extend(build_charts(
        &meta,
        &table::shown(&summary),
        &recs,
        &requests,
        &samples,
    )?);
    // Names from the scenario or a server may hold control characters (a NUL in a
    // stream name) that XML forbids even escaped: the SVG must stay well-formed.
    for c in &mut charts {
        c.svg = xml_safe(&c.svg);
    }
    let charts_dir = dir.join(CHARTS_DIR);
    fs::create_dir_all(&charts_dir)
        .with_context(|| format!("creating {}", charts_dir.display()))?;
    // A re-render must not leave charts of an earlier render beside the new ones.
    if let Ok(old) = fs::read_dir(&charts_dir) {
        for entry in old.flatten() {
            if entry.path().extension().is_some_and(|e| e == "svg") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    for c in &charts {
        let path = charts_dir.join(&c.file);
        folder::write_atomic(&path, c.svg.as_bytes())?;
    }

    let gpu = gpu_expected(&meta, &samples);
    warnings.extend(run_warnings(&meta, &summary, &recs, gpu));
    warnings.extend(noise::warnings(&meta, &requests));
    let notes = run_notes(&meta, gpu);
    let sim = meta
        .target
        .kind
        .is_simulated()
        .then(|| sim_note(meta.sim.as_ref()));
    let headline = match meta.target.kind {
        TargetKind::Predict => format!(
            "Predicted: {} replayed through a model of Ollama's scheduler on a simulated {}, not a measurement. {}",
            meta.target.url,
            sim.as_ref().map_or("host", |s| s.gpu.as_str()),
            headline(&recs, None, meta.status)
        ),
        _ => headline(&recs, sim.as_ref(), meta.status),
    };
    let headline = match meta.merged.as_ref().and_then(|m| m.note()) {
        Some(note) => format!("{note} {headline}"),
        None => headline,
    };
    let goose_reports = goose_reports(dir, &meta);
    // Recorded by the path that wrote the folder, which knows the scheduler's rules.
    let fits = meta.fits.clone();
    let data = ReportData {
        meta,
        summary,
        recommendations: recs,
        headline,
        sim,
        charts,
        warnings,
        notes,
        fits,
        goose_reports,
        cost_vram_gb_hour: cost.vram_gb_hour,
        cost_ram_gb_hour: cost.ram_gb_hour,
        cost_wait_second: cost.wait_second,
        slo_ttft_p99_ms: slo.ttft_p99.map(folder::ms),
    };
    let index_html = dir.join(INDEX_HTML);
    // Each through a temporary file and a rename: a full disk or a Ctrl-C leaves the
    // previous file whole, never a partial page.
    // No raw control character (ESC, NUL) from a name reaches the page either.
    folder::write_atomic(
        &index_html,
        xml_safe(&html::render_index(&data)?).as_bytes(),
    )?;
    let summary_md = dir.join(SUMMARY_MD);
    folder::write_atomic(&summary_md, markdown::render(&data).as_bytes())?;
    Ok(Rendered {
        index_html,
        summary_md,
        headline: data.headline,
        recommendations: data.recommendations,
    })
}

/// Most recommendations (workload × model) the page, `summary.md` and the charts show.
pub const MAX_SHOWN_RECOMMENDATIONS: usize = 20;

/// The [`MAX_SHOWN_RECOMMENDATIONS`] recommendations over the most requests, in their
/// order, and how many were left out.
fn shown_recommendations(recs: Vec<Recommendation>) -> (Vec<Recommendation>, usize) {
    if recs.len() <= MAX_SHOWN_RECOMMENDATIONS {
        return (recs, 0);
    }
    let weight = |r: &Recommendation| r.candidates.iter().map(|c| c.requests).sum::<u64>();
    let mut order: Vec<usize> = (0..recs.len()).collect();
    order.sort_by(|a, b| weight(&recs[*b]).cmp(&weight(&recs[*a])).then(a.cmp(b)));
    let keep: std::collections::BTreeSet<usize> =
        order[..MAX_SHOWN_RECOMMENDATIONS].iter().copied().collect();
    let hidden = recs.len() - keep.len();
    let shown = recs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, r)| r)
        .collect();
    (shown, hidden)
}

/// The cells a client can set (a keep_alive value, or none swept), for the
/// recommendation: a predicted policy that is no one value (the keep_alive optimum,
/// the pre-load bound) stays in the table only.
fn settable(summary: &Summary) -> Summary {
    let mut out = summary.clone();
    out.cells.retain(|c| c.params.is_settable());
    out
}

/// A file-name-safe form of a label.
fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if s.is_empty() {
        "x".into()
    } else {
        s.chars().take(60).collect()
    }
}

/// Most cells drawn as VRAM timelines; past it only the recommended cells are.
const MAX_TIMELINES: usize = 12;

fn build_charts(
    meta: &RunMeta,
    summary: &Summary,
    recs: &[Recommendation],
    requests: &RowsByCell,
    samples: &[VramSample],
) -> Result<Vec<Chart>> {
    let mut out = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        out.push(Chart {
            title: format!("Tradeoff frontier: {} ({})", r.workload, r.model),
            file: format!("tradeoff-{i}-{}.svg", slug(&r.workload)),
            svg: charts::tradeoff(r)?,
        });
    }
    if let Some(svg) = servers_chart::across_servers(recs)? {
        out.push(Chart {
            title: "Tradeoff across servers: idle memory, cold ratio and p99 TTFT of every server and knob value".into(),
            file: "tradeoff-servers.svg".into(),
            svg,
        });
    }
    out.push(Chart {
        title: "p99 TTFT by keep_alive".into(),
        file: "p99-ttft-by-keep-alive.svg".into(),
        svg: charts::by_keep_alive(summary, charts::Metric::P99Ttft)?,
    });
    out.push(Chart {
        title: "Cold-start ratio by keep_alive".into(),
        file: "cold-ratio-by-keep-alive.svg".into(),
        svg: charts::by_keep_alive(summary, charts::Metric::ColdRatio)?,
    });
    out.push(Chart {
        title: "TTFT distribution, warm vs cold".into(),
        file: "ttft-cdf.svg".into(),
        svg: charts::ttft_cdf(requests.values().flatten())?,
    });
    // One heatmap per workload and every other swept value (quant, model): rates are its rows.
    let mut groups: Vec<(String, Vec<&Recommendation>)> = Vec::new();
    for r in recs {
        let others: Vec<String> = r
            .fixed
            .iter()
            .filter(|(k, _)| SweepAxis::parse(k) != Some(SweepAxis::Rate))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name = if others.is_empty() {
            r.workload.clone()
        } else {
            format!("{} ({})", r.workload, others.join(", "))
        };
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, members)) => members.push(r),
            None => groups.push((name, vec![r])),
        }
    }
    for (name, members) in groups {
        if let Some(svg) = charts::cost_heatmap(&name, &members)? {
            out.push(Chart {
                title: format!("Cost over keep_alive × rate: {name}"),
                file: format!("cost-heatmap-{}.svg", slug(&name)),
                svg,
            });
        }
    }
    // A repeated cell's repetitions (`c01-…-r2`) are pooled into one summary cell
    // (`c01-…`): each repetition keeps its own timeline.
    let pooled = |i: usize| {
        let c = &meta.cells[i];
        crate::analysis::repeat::pooled_id(&c.id, c.params.repetition)
    };
    let ran: Vec<usize> = (0..meta.cells.len())
        .filter(|i| summary.cells.iter().any(|c| c.id == pooled(*i)))
        .collect();
    let chosen: Vec<&str> = recs
        .iter()
        .filter_map(|r| r.chosen_candidate().map(|c| c.cell.as_str()))
        .collect();
    for &i in &ran {
        let cell = &meta.cells[i];
        if ran.len() > MAX_TIMELINES && !chosen.contains(&pooled(i)) {
            continue;
        }
        let next = meta.cells.get(i + 1).and_then(|c| c.started_ms);
        let mine = charts::cell_samples(cell, next, samples);
        if mine.is_empty() {
            continue;
        }
        out.push(Chart {
            title: format!("Memory over time: cell {}", cell.id),
            file: format!("vram-{}.svg", slug(&cell.id)),
            svg: charts::vram_timeline(
                cell,
                &mine,
                requests.get(&cell.id).map_or(&[][..], Vec::as_slice),
            )?,
        });
    }
    Ok(out)
}

/// `text` without the characters XML 1.0 does not allow (C0 controls other than tab,
/// newline and carriage return, U+FFFE, U+FFFF): each becomes U+FFFD.
pub fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            _ => c,
        })
        .collect()
}

pub use telemetry_notes::gpu_expected;
use telemetry_notes::{run_notes, telemetry_unavailable};

/// True for a run on the simulator or a prediction: no real hardware was measured.
fn simulated(meta: &RunMeta) -> bool {
    meta.target.kind.is_simulated()
}

fn run_warnings(
    meta: &RunMeta,
    summary: &Summary,
    recs: &[Recommendation],
    gpu_expected: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    match meta.status {
        RunStatus::Complete => {}
        RunStatus::Interrupted => {
            out.push("the run was interrupted: this report covers only the cells that ran".into())
        }
        RunStatus::Running => out.push(
            "run.json still says running: the run was killed or is still going; this report covers what was recorded".into(),
        ),
        RunStatus::Failed => out.push(format!(
            "the run failed: {}",
            meta.failure.clone().unwrap_or_else(|| "no reason recorded".into())
        )),
        RunStatus::Late => out.push(format!(
            "this shard sent nothing ({}): merge counts it missing",
            meta.failure.clone().unwrap_or_else(|| "late".into())
        )),
    }
    if !simulated(meta) {
        // NVML missing is a warning only where a GPU was expected.
        out.extend(
            telemetry_unavailable(meta)
                .into_iter()
                .filter(|(nvml, _)| gpu_expected || !nvml)
                .map(|(_, s)| s),
        );
    }
    out.extend(meta.warnings.iter().cloned());
    for cell in &summary.cells {
        for w in &cell.warnings {
            out.push(format!("cell {}: {w}", cell.id));
        }
        if let Some(v) = &cell.vram {
            for r in v.release.iter().filter(|r| !r.honoured) {
                out.push(format!(
                    "cell {}: keep_alive {} for {} was not honoured (memory released after {})",
                    cell.id,
                    recommend::display_keep_alive(r.keep_alive.as_ref()),
                    r.model,
                    r.release_delay_s
                        .map_or("never".into(), |s| format!("{s:.1} s"))
                ));
            }
        }
        for s in cell.streams.iter().filter(|s| s.errors > 0) {
            let kinds: Vec<String> = s
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.push(format!(
                "cell {} stream {}: {} of {} requests failed ({})",
                cell.id,
                s.name,
                s.errors,
                s.requests,
                kinds.join(", ")
            ));
        }
    }
    if summary.cells.is_empty() {
        out.push("no cell ran: there is nothing to recommend from".into());
    }
    if recs.iter().any(|r| !r.has_vram) {
        out.push(
            "some cells have no memory measured: their recommendation ranks memory by keep_alive length"
                .into(),
        );
    }
    out
}

fn headline(recs: &[Recommendation], sim: Option<&SimNote>, status: RunStatus) -> String {
    let mut out = String::new();
    if let Some(s) = sim {
        let calibrated = s
            .calibrated_from
            .as_deref()
            .map_or_else(String::new, |d| format!(" calibrated from the run {d}"));
        out.push_str(&format!(
            "Simulated run: a model of Ollama on a simulated {}{calibrated}, not a measurement of this hardware. ",
            s.gpu
        ));
    }
    if status != RunStatus::Complete {
        out.push_str(&format!("Partial run ({status:?}). "));
    }
    if recs.is_empty() {
        out.push_str("No completed requests to recommend from.");
    } else {
        let lines: Vec<String> = recs.iter().map(Recommendation::headline).collect();
        out.push_str(&lines.join("; "));
        out.push('.');
        // OLLAMA_KEEP_ALIVE is one value per server: different picks of one Ollama go
        // per request. Groups of another server (a start flag) and of another
        // [[server]] are not that server's.
        let ollama: Vec<&Recommendation> = recs
            .iter()
            .filter(|r| r.form != recommend::Form::NoCandidate)
            .filter(|r| !r.fixed.contains_key(crate::folder::KNOB_LABEL))
            .collect();
        let mut servers: Vec<Option<&String>> =
            ollama.iter().map(|r| r.fixed.get("server")).collect();
        servers.sort();
        servers.dedup();
        for server in servers {
            let group: Vec<&&Recommendation> = ollama
                .iter()
                .filter(|r| r.fixed.get("server") == server)
                .collect();
            let mut picks: Vec<&str> = group
                .iter()
                .map(|r| r.chosen.as_ref().map_or("", |k| k.written()))
                .collect();
            picks.sort();
            picks.dedup();
            if picks.len() > 1 {
                // The longest sent value, in the one keep_alive ordering.
                let longest = group
                    .iter()
                    .map(|r| r.chosen.as_ref())
                    .filter(Option::is_some)
                    .max_by(|a, b| cmp_keep_alive(*a, *b))
                    .flatten();
                let longest = display_keep_alive(longest);
                out.push_str(&format!(
                    " The workloads want different values and OLLAMA_KEEP_ALIVE is one per server: send each as the per-request \"keep_alive\" of the native API; clients of /v1 can only share OLLAMA_KEEP_ALIVE ({longest} covers them all)."
                ));
            }
        }
    }
    out
}

/// The simulated host for people; a folder without a description says so.
fn sim_note(sim: Option<&SimHost>) -> SimNote {
    let Some(host) = sim.filter(|h| !h.gpu.is_empty()) else {
        return SimNote {
            gpu: "GPU (not described in run.json)".into(),
            ..Default::default()
        };
    };
    let mut facts = vec![
        format!("gpus = {}", host.gpus),
        format!("vram = {}", crate::units::format_bytes(host.vram_bytes)),
        format!("rules = {}", host.rules),
        format!("max_loaded_models = {}", host.max_loaded_models),
        format!("num_parallel = {}", host.num_parallel),
        format!("default_keep_alive = {}", host.default_keep_alive),
        format!(
            "cached_bandwidth = {:.1} GB/s",
            host.cached_bandwidth_bytes_per_s / 1e9
        ),
        format!(
            "cold_bandwidth = {:.1} GB/s",
            host.cold_bandwidth_bytes_per_s / 1e9
        ),
        format!("vram_release_delay = {} ms", host.vram_release_delay_ms),
        format!("seed = {}", host.seed),
    ];
    if host.gpus == 0 {
        facts.remove(1);
    }
    for (name, n) in [
        ("loads", host.loads),
        ("evictions", host.evictions),
        ("expirations", host.expirations),
    ] {
        if let Some(n) = n {
            facts.push(format!("{name} = {n}"));
        }
    }
    let models = host
        .models
        .iter()
        .map(|m| SimModelRow {
            model: m.model.clone(),
            quantization: m.quantization.clone(),
            file: crate::units::format_bytes(m.file_bytes),
            resident: format!(
                "{} at num_ctx {}",
                crate::units::format_bytes(m.resident_bytes),
                m.num_ctx
            ),
            load_cold: format!("{:.2} s", m.load_cold_s),
            load_cached: format!("{:.2} s", m.load_cached_s),
            decode: format!("{:.1}", m.decode_tps),
            source: m.source.clone(),
            source_url: (m.source.starts_with("https://") || m.source.starts_with("http://"))
                .then(|| m.source.clone()),
        })
        .collect();
    SimNote {
        gpu: host.gpu.clone(),
        facts,
        models,
        calibrated_from: host.calibrated_from.clone(),
    }
}

#[cfg(test)]
mod tests;
