//! One frontier across servers: when a run swept several servers (`[[server]]`), every
//! cell of every server on one chart, idle memory held (GB·s) against the cold-start
//! ratio, each point labelled with its server, knob value and p99 TTFT, one colour per
//! server, each server's recommended point ringed.

use anyhow::Result;
use plotters::prelude::*;

use super::charts::{COLD, FONT, HEIGHT, WIDTH, axis, colour, draw_err, legend, padded, tick};
use crate::recommend::{Recommendation, display_keep_alive};

/// The `server` label of a recommendation's group (`None`: a run of one target).
pub fn server_of(rec: &Recommendation) -> Option<&str> {
    rec.fixed.get("server").map(String::as_str)
}

/// One cell of one server on the frontier across servers.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerPoint {
    /// The server's label (`[[server]] name`).
    pub server: String,
    /// Its knob value as swept (`0`, `5s`, `-1`).
    pub knob: String,
    /// Cold-start ratio, %.
    pub cold_pct: f64,
    /// Idle memory held, GB·s; `None` where it was not measured.
    pub idle_gb_s: Option<f64>,
    /// p99 TTFT, ms, where there were enough requests.
    pub p99_ttft_ms: Option<f64>,
    /// The server's recommended value.
    pub chosen: bool,
}

/// Every candidate of every server, server by server, when `recs` hold at least two
/// servers: what the chart draws and the Markdown summary tabulates.
pub fn points(recs: &[Recommendation]) -> Option<Vec<ServerPoint>> {
    let mut servers: Vec<&str> = recs.iter().filter_map(server_of).collect();
    servers.sort_unstable();
    servers.dedup();
    if servers.len() < 2 {
        return None;
    }
    let mut out = Vec::new();
    for server in servers {
        for rec in recs.iter().filter(|r| server_of(r) == Some(server)) {
            out.extend(rec.candidates.iter().map(|c| ServerPoint {
                server: server.to_string(),
                knob: display_keep_alive(c.keep_alive.as_ref()),
                cold_pct: c.cold_ratio * 100.0,
                idle_gb_s: c.idle_gb_s,
                p99_ttft_ms: c.p99_ttft_ms,
                chosen: rec.is_chosen(c),
            }));
        }
    }
    Some(out)
}

/// The chart, when `recs` hold at least two servers. A cell whose idle memory was not
/// measured has no place on the memory axis and is left out (the table lists it).
pub fn across_servers(recs: &[Recommendation]) -> Result<Option<String>> {
    let Some(all) = points(recs) else {
        return Ok(None);
    };
    let mut servers: Vec<&str> = all.iter().map(|p| p.server.as_str()).collect();
    servers.dedup();
    // (x, y, label, server index, chosen)
    let pts: Vec<(f64, f64, String, usize, bool)> = all
        .iter()
        .filter_map(|p| {
            let si = servers.iter().position(|s| *s == p.server)?;
            let p99 = p
                .p99_ttft_ms
                .map_or(String::new(), |v| format!(" · p99 {v:.0} ms"));
            Some((
                p.idle_gb_s?,
                p.cold_pct,
                format!("{}{p99}", p.knob),
                si,
                p.chosen,
            ))
        })
        .collect();
    if pts.is_empty() {
        return Ok(None);
    }
    let (x0, x1) = padded(
        pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = padded(
        pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
    );
    let (x0, x1) = axis(x0, x1);
    let (y0, y1) = axis(y0, y1.min(100.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Tradeoff across servers", (FONT, 22))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("idle memory held (GB·s)")
            .y_desc("cold-start ratio (%)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (si, name) in servers.iter().enumerate() {
            let c = colour(si);
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.3 == si)
                        .map(|p| Circle::new((p.0, p.1), 5, c.filled())),
                )
                .map_err(draw_err)?
                .label(name.to_string())
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
        }
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.4)
                    .map(|p| Circle::new((p.0, p.1), 10, COLD.stroke_width(3))),
            )
            .map_err(draw_err)?
            .label("recommended (per server)")
            .legend(|(x, y)| Circle::new((x + 9, y), 6, COLD.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| {
                EmptyElement::at((p.0, p.1))
                    + Text::new(p.2.clone(), (10, -22), (FONT, 14).into_font().color(&BLACK))
            }))
            .map_err(draw_err)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Some(svg))
}
