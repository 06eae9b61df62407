//! The charts of a summary that carries a policy table (a prediction's; none
//! without one): cost against keep_alive (log scale) with each model's break-even time T*
//! and the costs of the keep_alive optimum and of the pre-load bound (a clairvoyant
//! client pre-warming just in time); every policy on the cold-ratio-versus-idle-memory
//! plane; each model's gap distribution with T* marked. SVG text, as `charts`.

use anyhow::Result;
use plotters::prelude::*;

use super::Chart;
use super::charts::{HEIGHT, WIDTH, axis, tick};
use crate::analysis::Summary;
use crate::folder::prediction::PolicyKind;

const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(127, 127, 127);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// `policy.kind` of the keep_alive optimum.
const OPTIMUM: &str = "keep_alive_optimum";
/// `policy.kind` of the pre-load bound.
const PRELOAD: &str = "pre_load_bound";

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Seconds as people write keep_alive (`0`, `30s`, `5m`, `3h`).
fn secs_label(s: f64) -> String {
    if s <= 0.0 {
        return "0".into();
    }
    if s < 60.0 {
        return format!("{}s", tick(&((s * 10.0).round() / 10.0)));
    }
    if s < 3600.0 {
        return format!("{}m", tick(&((s / 60.0 * 10.0).round() / 10.0)));
    }
    if s < 86400.0 * 2.0 {
        return format!("{}h", tick(&((s / 3600.0 * 10.0).round() / 10.0)));
    }
    format!("{}d", tick(&((s / 86400.0 * 10.0).round() / 10.0)))
}

/// One policy's figures from a predicted `summary.json` cell.
#[derive(Debug, Clone)]
pub struct PolicyPoint {
    /// Its name (`5m`, `adaptive`, `keep-alive-optimum`).
    pub name: String,
    /// What it is (`summary.json` `policy.kind`: `fixed`, `keep_alive_optimum`,
    /// `pre_load_bound`, ...).
    pub kind: String,
    /// Its keep_alive in seconds, for a fixed value (infinity: forever).
    pub keep_alive_s: Option<f64>,
    /// Total cost.
    pub cost: f64,
    /// Cold requests ÷ requests, %.
    pub cold_pct: f64,
    /// Idle memory held, GB·h.
    pub idle_gb_h: f64,
}

/// The policies of a summary's policy table, in cell order.
pub fn points(summary: &Summary) -> Vec<PolicyPoint> {
    summary
        .cells
        .iter()
        .filter_map(|c| {
            let policy = c.policy.as_ref()?;
            let name = c.params.keep_alive.as_ref()?.written().to_string();
            let req: u64 = c.streams.iter().map(|s| s.requests).sum();
            let cold: u64 = c.streams.iter().map(|s| s.cold).sum();
            let keep_alive_s = (policy.kind == PolicyKind::Fixed).then(|| {
                c.params
                    .keep_alive
                    .as_ref()
                    .and_then(|k| k.value())
                    .map_or(f64::NAN, |k| k.seconds_or_infinity())
            });
            Some(PolicyPoint {
                name,
                // Folders of older versions called the pre-load bound
                // `offline_optimum`: it reads as `pre_load_bound`.
                kind: policy.kind.as_str().to_string(),
                keep_alive_s,
                cost: policy.cost.total,
                cold_pct: if req > 0 {
                    cold as f64 * 100.0 / req as f64
                } else {
                    0.0
                },
                idle_gb_h: c.vram.as_ref().map_or(0.0, |v| v.idle_gb_seconds) / 3600.0,
            })
        })
        .collect()
}

/// Cost against keep_alive on a log axis (0 at the left edge, forever at the right),
/// each model's T* as a vertical line, the costs of the keep_alive optimum and of the
/// pre-load bound as horizontal ones.
pub fn cost_vs_keep_alive(pts: &[PolicyPoint], t_stars: &[(String, f64)]) -> Result<String> {
    let fixed: Vec<(f64, f64, &str)> = pts
        .iter()
        .filter_map(|p| p.keep_alive_s.map(|s| (s, p.cost, p.name.as_str())))
        .filter(|p| !p.0.is_nan())
        .collect();
    let finite_max = fixed
        .iter()
        .map(|p| p.0)
        .chain(t_stars.iter().map(|t| t.1))
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(1.0f64, f64::max);
    let finite_min = fixed
        .iter()
        .map(|p| p.0)
        .filter(|s| *s > 0.0)
        .fold(finite_max, f64::min);
    let (lo, hi) = axis(finite_min.log10() - 0.6, finite_max.log10() + 0.6);
    let x_of = |s: f64| {
        if s <= 0.0 {
            lo
        } else if s.is_infinite() {
            hi
        } else {
            s.log10()
        }
    };
    let level = |kind: &str| pts.iter().find(|p| p.kind == kind).map(|p| p.cost);
    let optimum = level(OPTIMUM);
    let preload = level(PRELOAD);
    let ymax = fixed
        .iter()
        .map(|p| p.1)
        .chain(optimum)
        .chain(preload)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Predicted cost by keep_alive", (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(lo..hi, 0f64..axis(0.0, ymax).1)
            .map_err(draw_err)?;
        let label = |x: &f64| {
            if (*x - lo).abs() < 1e-9 {
                "0".to_string()
            } else if (*x - hi).abs() < 1e-9 {
                "forever".to_string()
            } else {
                secs_label(10f64.powf(*x))
            }
        };
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("keep_alive (log scale; 0 at the left, forever at the right)")
            .y_desc("cost")
            .x_label_formatter(&label)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        let mut line: Vec<(f64, f64)> = fixed.iter().map(|p| (x_of(p.0), p.1)).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))
            .map_err(draw_err)?
            .label("fixed keep_alive")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(line.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
            .map_err(draw_err)?;
        for p in &fixed {
            chart
                .draw_series(std::iter::once(Text::new(
                    p.2.to_string(),
                    (x_of(p.0), p.1),
                    (FONT, 12).into_font().color(&GREY),
                )))
                .map_err(draw_err)?;
        }
        for (cost, color, what) in [
            (optimum, GREEN, "keep_alive optimum"),
            (
                preload,
                PURPLE,
                "pre-load bound (a clairvoyant client pre-warming just in time)",
            ),
        ] {
            let Some(o) = cost else {
                continue;
            };
            chart
                .draw_series(LineSeries::new(
                    vec![(lo, o), (hi, o)],
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(format!("{what} ({})", tick(&o)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        for (i, (model, t)) in t_stars.iter().enumerate() {
            if !(t.is_finite() && *t > 0.0) {
                continue;
            }
            let c = if i == 0 { RED } else { ORANGE };
            chart
                .draw_series(LineSeries::new(
                    vec![(t.log10(), 0.0), (t.log10(), ymax)],
                    c.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(format!(
                    "T* {model} = {}",
                    crate::recommend::format_seconds(*t)
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Every policy on the cold-ratio (%) versus idle-memory (GB·h) plane, labelled.
pub fn policy_frontier(pts: &[PolicyPoint]) -> Result<String> {
    let xmax = pts
        .iter()
        .map(|p| p.idle_gb_h)
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.2;
    let ymax = (pts.iter().map(|p| p.cold_pct).fold(0.0f64, f64::max) * 1.2).clamp(1.0, 100.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Policies: cold starts against idle memory", (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..axis(0.0, xmax).1, 0f64..axis(0.0, ymax).1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("memory held idle (GB·h)")
            .y_desc("cold-start ratio (%)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for p in pts {
            let c = match (p.keep_alive_s.is_some(), p.kind.as_str()) {
                (true, _) => BLUE,
                (false, OPTIMUM) => GREEN,
                (false, PRELOAD) => PURPLE,
                _ => ORANGE,
            };
            chart
                .draw_series(std::iter::once(Circle::new(
                    (p.idle_gb_h, p.cold_pct),
                    5,
                    c.filled(),
                )))
                .map_err(draw_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    p.name.clone(),
                    (p.idle_gb_h, p.cold_pct),
                    (FONT, 13).into_font().color(&c),
                )))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// One model's gap distribution: requests per log-spaced bin (`[lower, upper, count]`),
/// with T* marked.
pub fn gap_distribution(
    model: &str,
    bins: &[(f64, f64, f64)],
    t_star: Option<f64>,
) -> Result<String> {
    let lo = bins
        .iter()
        .map(|b| b.1)
        .chain(t_star)
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold(f64::INFINITY, f64::min)
        .log10()
        - 0.3;
    let hi = bins
        .iter()
        .map(|b| b.1)
        .chain(t_star)
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold(0.01f64, f64::max)
        .log10()
        + 0.3;
    let lo = if lo.is_finite() { lo } else { -1.0 };
    let (lo, hi) = axis(lo, hi);
    let ymax = axis(0.0, bins.iter().map(|b| b.2).fold(1.0f64, f64::max) * 1.15).1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Gaps between requests: {model}"), (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("gap (log scale)")
            .y_desc("gaps")
            .x_label_formatter(&|x| secs_label(10f64.powf(*x)))
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(bins.iter().map(|(l, u, c)| {
                let left = if *l > 0.0 {
                    l.log10()
                } else {
                    u.log10() - 0.125
                };
                Rectangle::new([(left, 0.0), (u.log10(), *c)], BLUE.mix(0.7).filled())
            }))
            .map_err(draw_err)?;
        if let Some(t) = t_star.filter(|t| t.is_finite() && *t > 0.0) {
            chart
                .draw_series(LineSeries::new(
                    vec![(t.log10(), 0.0), (t.log10(), ymax)],
                    RED.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(format!(
                    "T* = {}: keep over shorter gaps, unload (or pre-load) over longer",
                    crate::recommend::format_seconds(t)
                ))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The policy table's charts, first in the report; none without a policy table.
pub fn charts(summary: &Summary) -> Result<Vec<Chart>> {
    if !summary.has_policies() {
        return Ok(Vec::new());
    }
    let pts = points(summary);
    let t_stars: Vec<(String, f64)> = summary
        .gaps
        .iter()
        .filter_map(|g| Some((g.model.clone(), g.break_even_s?)))
        .collect();
    let mut out = vec![
        Chart {
            title: "Predicted cost by keep_alive, with T*, the keep_alive optimum and the pre-load bound".into(),
            file: "predict-cost-by-keep-alive.svg".into(),
            svg: cost_vs_keep_alive(&pts, &t_stars)?,
        },
        Chart {
            title: "Every policy: cold-start ratio against idle memory".into(),
            file: "predict-policy-frontier.svg".into(),
            svg: policy_frontier(&pts)?,
        },
    ];
    for (i, g) in summary.gaps.iter().enumerate() {
        let bins: Vec<(f64, f64, f64)> = g
            .bins
            .iter()
            .map(|&(lower, upper, n)| (lower, upper, n as f64))
            .collect();
        if bins.is_empty() {
            continue;
        }
        out.push(Chart {
            title: format!("Gap distribution of {}, T* marked", g.model),
            file: format!("predict-gaps-{i}.svg"),
            svg: gap_distribution(&g.model, &bins, g.break_even_s)?,
        });
    }
    Ok(out)
}
