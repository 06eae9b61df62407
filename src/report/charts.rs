//! The report's charts as SVG text (plotters, SVG backend only; text stays `<text>`, so
//! no fonts are needed and plotters escapes it). One function per chart, each from typed
//! data to a `String`; knows nothing of files, HTML or how the data were measured.
//! Over 500 lines: one function per chart, sharing axis, tick and legend helpers.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::IntoSegmentedCoord;
use plotters::prelude::*;

use crate::analysis::Summary;
use crate::folder::{CellMeta, RequestRecord, SweepAxis, VramSample};
use crate::recommend::{GB, Recommendation, display_keep_alive};
use crate::units::{KeepAlive, cmp_keep_alive};

/// Width of every chart, px.
pub const WIDTH: u32 = 800;
/// Height of every chart, px.
pub const HEIGHT: u32 = 440;

pub(crate) const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];
pub(crate) const COLD: RGBColor = RGBColor(214, 39, 40);

pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The legend box every chart uses, at `position`.
pub(crate) fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .position(position)
        .draw()
        .map_err(draw_err)
}

pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// An axis tick as people write it: `1200`, `0.5`, `2.25`, never `1200.0`.
pub fn tick(v: &f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Pads a data range so points do not sit on the frame.
pub(crate) fn padded(min: f64, max: f64) -> (f64, f64) {
    if !min.is_finite() || !max.is_finite() {
        return (0.0, 1.0);
    }
    let span = (max - min).abs();
    let pad = if span > 0.0 {
        span * 0.08
    } else {
        max.abs().max(1.0) * 0.1
    };
    (
        (min - pad).min(if min >= 0.0 { 0.0 } else { min - pad }),
        max + pad,
    )
}

/// The largest magnitude an axis reaches: far past any real latency, memory or cost,
/// small enough that plotters' tick arithmetic stays finite.
const AXIS_LIMIT: f64 = 1e15;

/// A finite, non-degenerate axis range from `lo..hi`, whatever the data held (`inf`,
/// `NaN`, one value, absurd magnitudes): plotters' mesh never ends on an infinite range.
pub fn axis(lo: f64, hi: f64) -> (f64, f64) {
    let clamp = |v: f64, or: f64| {
        if v.is_nan() {
            or
        } else {
            v.clamp(-AXIS_LIMIT, AXIS_LIMIT)
        }
    };
    let (lo, hi) = (clamp(lo, 0.0), clamp(hi, 1.0));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let min_span = lo.abs().max(hi.abs()) * 1e-6;
    if hi - lo > min_span && hi - lo > 1e-12 {
        (lo, hi)
    } else {
        let pad = (lo.abs() * 0.1).max(1.0);
        (lo - pad, hi + pad)
    }
}

/// A positive range for a logarithmic axis, at most 12 decades wide.
pub fn log_axis(lo: f64, hi: f64) -> (f64, f64) {
    let lo = if lo.is_finite() && lo > 0.0 {
        lo.max(1e-3)
    } else {
        1.0
    };
    let hi = if hi.is_finite() && hi > lo {
        hi.min(AXIS_LIMIT)
    } else {
        lo * 10.0
    };
    (lo.max(hi / 1e12), hi)
}

/// Most points one line of a chart holds: a series of a million values is thinned to
/// this many (the page stays small; a pixel column cannot show more anyway).
pub const MAX_POINTS: usize = 1_000;

/// `pts` (in x order) thinned to at most [`MAX_POINTS`]: evenly spaced picks, the
/// first and last kept.
pub fn thin<T: Copy>(pts: &[T]) -> Vec<T> {
    if pts.len() <= MAX_POINTS {
        return pts.to_vec();
    }
    let n = pts.len();
    (0..MAX_POINTS)
        .map(|k| pts[k * (n - 1) / (MAX_POINTS - 1)])
        .collect()
}

/// The tradeoff frontier of one recommendation: the latency metric (cold-start ratio %
/// or p99 TTFT ms) against idle VRAM GB·s, each point labelled with its keep_alive, the
/// frontier joined and the chosen point ringed.
pub fn tradeoff(rec: &Recommendation) -> Result<String> {
    let use_p99 = rec.frontier_metric == "p99_ttft_ms";
    // Without memory figures the x axis is the keep_alive itself; forever goes a step
    // right of the longest one, labelled so.
    let longest = rec
        .candidates
        .iter()
        .filter_map(|c| c.hold_seconds())
        .fold(0.0_f64, f64::max);
    let mut unmeasured: Vec<String> = Vec::new();
    let mut pts: Vec<(f64, f64, String, bool, bool)> = Vec::new();
    for c in &rec.candidates {
        let label = display_keep_alive(c.keep_alive.as_ref());
        let x = if rec.has_vram {
            c.idle_gb_s
        } else {
            Some(c.hold_seconds().unwrap_or(longest * 1.25 + 1.0))
        };
        let y = if use_p99 {
            c.p99_ttft_ms
        } else {
            Some(c.cold_ratio * 100.0)
        };
        // A figure that was not measured has no place on its axis: the point is left
        // out and named under the chart, never drawn at 0.
        let (Some(x), Some(y)) = (x, y) else {
            unmeasured.push(label);
            continue;
        };
        let label = if !rec.has_vram && c.hold_seconds().is_none() {
            format!("{label} (forever)")
        } else {
            label
        };
        pts.push((x, y, label, c.on_frontier, rec.is_chosen(c)));
    }
    let mut x_label = if rec.has_vram {
        "idle memory held (GB·s)".to_string()
    } else {
        "keep_alive (s) — no memory measured".to_string()
    };
    if !unmeasured.is_empty() {
        x_label.push_str(&format!(
            " — not measured, not drawn: {}",
            unmeasured.join(", ")
        ));
    }
    let y_label = if use_p99 {
        "p99 TTFT (ms)"
    } else {
        "cold-start ratio (%)"
    };
    let (x0, x1) = padded(
        pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = padded(
        pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
    );
    let (x0, x1) = axis(x0, x1);
    let (y0, y1) = axis(y0, if use_p99 { y1 } else { y1.min(100.0) });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Tradeoff: {} ({})", rec.workload, rec.model),
                (FONT, 22),
            )
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc(x_label.as_str())
            .y_desc(y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        let mut frontier: Vec<(f64, f64)> =
            pts.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
        frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(frontier, colour(0).stroke_width(2)))
            .map_err(draw_err)?
            .label("Pareto frontier")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour(0).stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| {
                let style = if p.3 {
                    colour(0).filled()
                } else {
                    colour(6).filled()
                };
                Circle::new((p.0, p.1), 5, style)
            }))
            .map_err(draw_err)?
            .label("swept keep_alive")
            .legend(|(x, y)| Circle::new((x + 9, y), 5, colour(6).filled()));
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.4)
                    .map(|p| Circle::new((p.0, p.1), 10, COLD.stroke_width(3))),
            )
            .map_err(draw_err)?
            .label("recommended")
            .legend(|(x, y)| Circle::new((x + 9, y), 6, COLD.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| {
                EmptyElement::at((p.0, p.1))
                    + Text::new(p.2.clone(), (10, -22), (FONT, 16).into_font().color(&BLACK))
            }))
            .map_err(draw_err)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Which per-stream figure a keep_alive chart plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// p99 time to first token, ms.
    P99Ttft,
    /// Cold-start ratio, %.
    ColdRatio,
}

/// One line per workload and fixed parameters (rate, quant…), against keep_alive on a
/// categorical axis in the one keep_alive ordering (`units::cmp_keep_alive`).
pub fn by_keep_alive(summary: &Summary, metric: Metric) -> Result<String> {
    let mut values: Vec<Option<&KeepAlive>> = Vec::new();
    let mut lines: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for cell in &summary.cells {
        let fixed: Vec<String> = cell
            .params
            .fixed()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for s in &cell.streams {
            let ka = display_keep_alive(s.keep_alive.as_ref());
            if !values.iter().any(|v| display_keep_alive(*v) == ka) {
                values.push(s.keep_alive.as_ref());
            }
            let value = match metric {
                Metric::P99Ttft => s.ttft_ms.all.map(|p| p.p99),
                Metric::ColdRatio => Some(s.cold_ratio * 100.0),
            };
            if let Some(v) = value {
                let mut name = s.name.clone();
                if !fixed.is_empty() {
                    name.push_str(&format!(" ({})", fixed.join(", ")));
                }
                lines.entry(name).or_default().push((ka, v));
            }
        }
    }
    values.sort_by(|a, b| cmp_keep_alive(*a, *b));
    let order: Vec<String> = values.into_iter().map(display_keep_alive).collect();
    let (title, y_label) = match metric {
        Metric::P99Ttft => ("p99 TTFT by keep_alive", "p99 TTFT (ms)"),
        Metric::ColdRatio => ("Cold-start ratio by keep_alive", "cold-start ratio (%)"),
    };
    let ymax = lines
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let n = order.len().max(1);
    // Room above the lines for the legend; a share never goes past 100%.
    let y_top = match metric {
        Metric::ColdRatio => (ymax * 1.45).min(100.0),
        Metric::P99Ttft => ymax * 1.45,
    };
    let y_top = axis(0.0, y_top).1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(categories(n), 0f64..y_top)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("keep_alive (shortest first)")
            .y_desc(y_label)
            .x_label_formatter(&|v| seg_label(v, &order))
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let c = colour(i);
            let mut at: Vec<(i32, f64)> = pts
                .iter()
                .map(|(ka, v)| (order.iter().position(|o| o == ka).unwrap_or(0) as i32, *v))
                .collect();
            at.sort_by_key(|p| p.0);
            let xy: Vec<(SegmentValue<i32>, f64)> = at
                .into_iter()
                .map(|(i, v)| (SegmentValue::CenterOf(i), v))
                .collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))
                .map_err(draw_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(xy.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(draw_err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The samples that belong to a cell's time span, from one source: the first source
/// with per-model rows (`ollama_ps`, whose `size` counts a model wherever it is held,
/// then `sim`), all its rows kept so polls where no model was resident still count; else
/// the first source with device totals.
pub fn cell_samples<'a>(
    cell: &CellMeta,
    next_start_ms: Option<f64>,
    samples: &'a [VramSample],
) -> Vec<&'a VramSample> {
    let start = cell.started_ms.unwrap_or(0.0);
    let end = next_start_ms.unwrap_or(f64::INFINITY);
    let inside: Vec<&VramSample> = samples
        .iter()
        .filter(|s| s.t_ms >= start && s.t_ms < end)
        .collect();
    let preferred = ["ollama_ps", "sim", "nvml", "prometheus", "rss"];
    let per_model = preferred.iter().find(|src| {
        inside
            .iter()
            .any(|s| s.source == **src && !s.model.is_empty())
    });
    let source = per_model.or_else(|| {
        preferred
            .iter()
            .find(|src| inside.iter().any(|s| s.source == **src))
    });
    match source {
        Some(src) => inside.into_iter().filter(|s| s.source == *src).collect(),
        None => inside,
    }
}

/// Most lines of one memory timeline: past it, the models that held the least are
/// summed into one "other N models" line.
pub const MAX_SERIES: usize = 8;

/// Lines of (seconds since `t0`, GB): one per model when any row names a model, with 0
/// at polls where the model was absent; else one per device; at most [`MAX_SERIES`].
fn vram_series(samples: &[&VramSample], t0: f64) -> BTreeMap<String, Vec<(f64, f64)>> {
    let per_model = samples.iter().any(|s| !s.model.is_empty());
    let mut polls: Vec<f64> = samples.iter().map(|s| s.t_ms).collect();
    polls.sort_by(f64::total_cmp);
    polls.dedup();
    let mut series: BTreeMap<String, BTreeMap<usize, f64>> = BTreeMap::new();
    for s in samples {
        if per_model && s.model.is_empty() {
            continue;
        }
        let name = if s.model.is_empty() {
            format!("{} {}", s.source, s.device)
        } else {
            s.model.clone()
        };
        let i = polls.partition_point(|t| *t < s.t_ms);
        // `/api/ps` rows: `size`, the memory held in GPU and system memory together (on a
        // CPU-only host `size_vram` is 0 while the model holds all of `size`).
        let bytes = match (s.source.as_str(), s.total_bytes) {
            ("ollama_ps", Some(size)) => size,
            _ => s.used_bytes,
        };
        *series.entry(name).or_default().entry(i).or_insert(0.0) += bytes as f64 / GB;
    }
    // At most MAX_SERIES lines: the models that held the most, the rest summed as one.
    if series.len() > MAX_SERIES {
        let peak = |at: &BTreeMap<usize, f64>| at.values().copied().fold(0.0f64, f64::max);
        let mut ranked: Vec<(String, BTreeMap<usize, f64>)> = series.into_iter().collect();
        ranked.sort_by(|a, b| peak(&b.1).total_cmp(&peak(&a.1)).then(a.0.cmp(&b.0)));
        let rest = ranked.split_off(MAX_SERIES - 1);
        let mut other: BTreeMap<usize, f64> = BTreeMap::new();
        for (_, at) in &rest {
            for (i, v) in at {
                *other.entry(*i).or_insert(0.0) += v;
            }
        }
        series = ranked.into_iter().collect();
        series.insert(format!("other {} models", rest.len()), other);
    }
    series
        .into_iter()
        .map(|(name, at)| {
            let pts = polls
                .iter()
                .enumerate()
                .map(|(i, t)| ((t - t0) / 1000.0, at.get(&i).copied().unwrap_or(0.0)))
                .collect();
            (name, pts)
        })
        .collect()
}

/// VRAM over a cell's time, one line per model (or device), with every request's start
/// marked below the lines and cold starts in red.
pub fn vram_timeline(
    cell: &CellMeta,
    samples: &[&VramSample],
    requests: &[RequestRecord],
) -> Result<String> {
    let t0 = cell.started_ms.unwrap_or(0.0);
    let series = vram_series(samples, t0);
    let mine: Vec<&RequestRecord> = requests.iter().filter(|r| r.cell == cell.id).collect();
    let tmax = samples
        .iter()
        .map(|s| (s.t_ms - t0) / 1000.0)
        .chain(mine.iter().map(|r| (r.end_ms - t0) / 1000.0))
        .filter(|t| t.is_finite())
        .fold(1.0f64, f64::max);
    let ymax = series
        .values()
        .flatten()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.1);
    let tmax = axis(0.0, tmax * 1.02).1;
    let ymax = axis(0.0, ymax).1;
    // One mark per pixel column and kind: a million requests draw as at most
    // WIDTH marks each.
    let column = |r: &RequestRecord| {
        let t = (r.sent_ms.unwrap_or(r.intended_ms) - t0) / 1000.0;
        (t / tmax * f64::from(WIDTH)).clamp(0.0, f64::from(WIDTH)) as u32
    };
    let mut seen = std::collections::HashSet::new();
    let mine: Vec<&RequestRecord> = mine
        .into_iter()
        .filter(|r| seen.insert((column(r), r.cold)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Memory over time: cell {}", cell.id), (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..tmax, -(ymax * 0.12)..ymax * 1.4)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("time since cell start (s)")
            .y_desc("memory held (GB)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(thin(pts), c.stroke_width(2)))
                .map_err(draw_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        let mark = |r: &&RequestRecord| {
            let t = (r.sent_ms.unwrap_or(r.intended_ms) - t0) / 1000.0;
            PathElement::new(
                vec![(t, -(ymax * 0.1)), (t, -(ymax * 0.02))],
                if r.cold {
                    COLD.stroke_width(2)
                } else {
                    colour(6).stroke_width(1)
                },
            )
        };
        chart
            .draw_series(mine.iter().filter(|r| !r.cold).map(mark))
            .map_err(draw_err)?
            .label("request start")
            .legend(|(x, y)| PathElement::new(vec![(x + 9, y - 6), (x + 9, y + 6)], colour(6)));
        chart
            .draw_series(mine.iter().filter(|r| r.cold).map(mark))
            .map_err(draw_err)?
            .label("cold start")
            .legend(|(x, y)| {
                PathElement::new(vec![(x + 9, y - 6), (x + 9, y + 6)], COLD.stroke_width(2))
            });
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Empirical CDFs of TTFT for warm and cold requests (warm-up and failures left out),
/// on a logarithmic time axis.
pub fn ttft_cdf<'a>(requests: impl IntoIterator<Item = &'a RequestRecord>) -> Result<String> {
    let mut warm: Vec<f64> = Vec::new();
    let mut cold: Vec<f64> = Vec::new();
    for r in requests.into_iter().filter(|r| !r.warmup && !r.is_error()) {
        if let Some(t) = r.ttft_ms.filter(|t| *t > 0.0 && t.is_finite()) {
            if r.cold { cold.push(t) } else { warm.push(t) }
        }
    }
    warm.sort_by(f64::total_cmp);
    cold.sort_by(f64::total_cmp);
    let all = warm.iter().chain(cold.iter());
    let lo = all.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = all.copied().fold(0.0f64, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        log_axis(lo * 0.8, hi * 1.25)
    } else {
        (1.0, 10_000.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("TTFT distribution: warm vs cold", (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("time to first token (ms, log scale)")
            .x_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("requests at or below (%)")
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (name, data, c) in [("warm", &warm, colour(0)), ("cold", &cold, COLD)] {
            let n = data.len() as f64;
            // A step per request (up from the previous share at each value), or, past
            // MAX_POINTS / 2 requests, a step at evenly spaced ranks.
            let (m, k) = (data.len(), MAX_POINTS / 2);
            let ranks: Vec<usize> = if m <= k {
                (0..m).collect()
            } else {
                (0..k).map(|j| j * (m - 1) / (k - 1)).collect()
            };
            let mut pts: Vec<(f64, f64)> = Vec::with_capacity(ranks.len() * 2);
            let mut below = 0usize;
            for i in ranks {
                let v = data[i].clamp(lo, hi);
                pts.push((v, below as f64 / n * 100.0));
                pts.push((v, (i + 1) as f64 / n * 100.0));
                below = i + 1;
            }
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(draw_err)?
                .label(format!("{name} (n = {})", data.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// A heatmap of the cost model's total over keep_alive × rate for one workload, each
/// cell labelled with its cost (`None` when the rate was not swept or no cost exists).
pub fn cost_heatmap(workload: &str, recs: &[&Recommendation]) -> Result<Option<String>> {
    let mut values: Vec<Option<&KeepAlive>> = Vec::new();
    let mut rates: Vec<String> = Vec::new();
    let mut cells: Vec<(String, String, f64)> = Vec::new();
    for r in recs {
        let Some(rate) = r.fixed.get(SweepAxis::Rate.as_str()) else {
            continue;
        };
        if !rates.contains(rate) {
            rates.push(rate.clone());
        }
        for c in &r.candidates {
            let ka = display_keep_alive(c.keep_alive.as_ref());
            if !values.iter().any(|v| display_keep_alive(*v) == ka) {
                values.push(c.keep_alive.as_ref());
            }
            if let Some(k) = c.cost {
                cells.push((ka, rate.clone(), k.total));
            }
        }
    }
    if rates.len() < 2 || cells.is_empty() {
        return Ok(None);
    }
    values.sort_by(|a, b| cmp_keep_alive(*a, *b));
    let kas: Vec<String> = values.into_iter().map(display_keep_alive).collect();
    let (cmin, cmax) = cells
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), c| {
            (a.min(c.2), b.max(c.2))
        });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Cost by keep_alive × rate: {workload}"), (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(80)
            .build_cartesian_2d(categories(kas.len()), categories(rates.len()))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .disable_mesh()
            .x_desc("keep_alive (shortest first)")
            .y_desc("arrival rate (requests/s)")
            .x_label_formatter(&|v| seg_label(v, &kas))
            .y_label_formatter(&|v| seg_label(v, &rates))
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        let pos = |list: &[String], v: &str| list.iter().position(|x| x == v).unwrap_or(0) as i32;
        chart
            .draw_series(cells.iter().map(|(ka, rate, cost)| {
                let (x, y) = (pos(&kas, ka), pos(&rates, rate));
                let t = if cmax > cmin {
                    (cost - cmin) / (cmax - cmin)
                } else {
                    0.0
                };
                // From pale (cheapest) to deep red (dearest); the cheapest stays visible.
                let shade = RGBColor(
                    (250.0 - t * 36.0) as u8,
                    (225.0 - t * 186.0) as u8,
                    (225.0 - t * 185.0) as u8,
                );
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    shade.filled(),
                )
            }))
            .map_err(draw_err)?;
        chart
            .draw_series(cells.iter().map(|(ka, rate, cost)| {
                let (x, y) = (pos(&kas, ka), pos(&rates, rate));
                Text::new(
                    format!("{cost:.3}"),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    (FONT, 16).into_font().color(&BLACK),
                )
            }))
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Some(svg))
}

/// `n` categorical positions, one segment each (a plain `0..n` range would add an
/// empty segment after the last).
fn categories(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32> {
    (0..(n.max(1) as i32 - 1)).into_segmented()
}

fn seg_label(v: &SegmentValue<i32>, list: &[String]) -> String {
    match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            list.get(*i as usize).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}
