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

/// The chart, when `recs` hold at least two servers.
pub fn across_servers(recs: &[Recommendation]) -> Result<Option<String>> {
    let mut servers: Vec<&str> = recs.iter().filter_map(server_of).collect();
    servers.dedup();
    servers.sort_unstable();
    servers.dedup();
    if servers.len() < 2 {
        return Ok(None);
    }
    // (x, y, label, server index, chosen)
    let mut pts: Vec<(f64, f64, String, usize, bool)> = Vec::new();
    for rec in recs {
        let Some(si) = server_of(rec).and_then(|s| servers.iter().position(|x| *x == s)) else {
            continue;
        };
        for c in &rec.candidates {
            let p99 = c
                .p99_ttft_ms
                .map_or(String::new(), |p| format!(" · p99 {p:.0} ms"));
            pts.push((
                c.idle_gb_s.unwrap_or(0.0),
                c.cold_ratio * 100.0,
                format!("{}{p99}", display_keep_alive(c.keep_alive.as_ref())),
                si,
                rec.is_chosen(c),
            ));
        }
    }
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
