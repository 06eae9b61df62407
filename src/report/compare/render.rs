//! A [`Comparison`] as text for the terminal, as `compare.md` (a CI job summary) and as
//! a self-contained page (`compare.html`): one row per stream and figure, with the
//! change, its interval and the verdict, and the conclusion ("no change detected" where
//! that is the answer). Names are escaped for each medium.

use super::{Comparison, StreamChange};
use crate::report::markdown::escape;
use crate::units::limits::printable;

const HEADER: [&str; 6] = [
    "cell",
    "params",
    "stream",
    "figure",
    "base → new (change [interval])",
    "verdict",
];

/// The rows of the table, unescaped.
fn rows(c: &Comparison) -> Vec<[String; 6]> {
    let mut out = Vec::new();
    for s in &c.changes {
        for (name, ch, digits) in s.figures() {
            let verdict = match (ch.verdict.word(), ch.regression) {
                ("", _) => "no change".to_string(),
                (w, true) => format!("{w} !"),
                (w, false) => w.to_string(),
            };
            out.push([
                s.cell.clone(),
                s.params.clone(),
                s.stream.clone(),
                name.to_string(),
                ch.describe(digits),
                verdict,
            ]);
        }
    }
    out
}

fn method(c: &Comparison) -> String {
    let t = &c.thresholds;
    format!(
        "significance level {}, noise threshold ±{}%, {} bootstrap resamples; fail past: error rate +{:.3}, latency +{}%, cold ratio +{:.3}, VRAM +{}%",
        t.significance,
        t.noise * 100.0,
        t.resamples,
        t.error_rate_abs,
        t.p99_pct,
        t.cold_ratio_abs,
        t.vram_pct
    )
}

fn notes(c: &Comparison) -> Vec<String> {
    let mut out: Vec<String> = c.forced.iter().map(|f| format!("forced: {f}")).collect();
    out.extend(c.unmatched.iter().map(|u| format!("unmatched: {u}")));
    out.extend(c.changes.iter().filter(|s| s.no_answers).map(|s| {
        format!(
            "no answers: stream {} of cell {} has no successful request in the new run",
            s.stream, s.cell
        )
    }));
    out
}

fn stream_lines(c: &Comparison) -> Vec<(String, &StreamChange)> {
    c.changes
        .iter()
        .map(|s| {
            (
                format!("{} {} ({}): {}", s.cell, s.stream, s.params, s.verdict()),
                s,
            )
        })
        .collect()
}

impl Comparison {
    /// A plain-text table for stdout; regressions that fail are marked `!`.
    pub fn to_text(&self) -> String {
        let mut rows_: Vec<[String; 6]> = vec![HEADER.map(String::from)];
        rows_.extend(
            rows(self)
                .into_iter()
                .map(|r| r.map(|s| printable(&s).into_owned())),
        );
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                rows_
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!(
            "compare {} → {} ({})\n",
            printable(&self.base_scenario),
            printable(&self.new_scenario),
            method(self)
        );
        for r in &rows_ {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(s, w)| format!("{s}{}", " ".repeat(w - s.chars().count())))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for (line, _) in stream_lines(self) {
            out.push_str(&format!("{}\n", printable(&line)));
        }
        for n in notes(self) {
            out.push_str(&format!("{}\n", printable(&n)));
        }
        out.push_str(&self.conclusion());
        out.push('\n');
        out
    }

    /// The same in Markdown (`compare.md`, for a CI job summary).
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "## kabench compare: {} → {}\n\n**{}**\n\n{}.\n\n| {} |\n|---|---|---|---|---|---|\n",
            escape(&self.base_scenario),
            escape(&self.new_scenario),
            escape(&self.conclusion()),
            escape(&method(self)),
            HEADER.join(" | ")
        );
        for r in rows(self) {
            md.push_str(&format!("| {} |\n", r.map(|s| escape(&s)).join(" | ")));
        }
        md.push('\n');
        for (line, _) in stream_lines(self) {
            md.push_str(&format!("- {}\n", escape(&line)));
        }
        for n in notes(self) {
            md.push_str(&format!("- {}\n", escape(&n)));
        }
        md
    }

    /// A self-contained page (`compare.html`): the conclusion first, then the table.
    pub fn to_html(&self) -> String {
        let mut body = String::new();
        for r in rows(self) {
            let class = if r[5].ends_with('!') {
                " class=\"bad\""
            } else if r[5] == "improved" {
                " class=\"good\""
            } else {
                ""
            };
            body.push_str(&format!("<tr{class}>"));
            for cell in &r {
                body.push_str(&format!("<td>{}</td>", html(cell)));
            }
            body.push_str("</tr>\n");
        }
        let list: String = stream_lines(self)
            .into_iter()
            .map(|(l, _)| l)
            .chain(notes(self))
            .map(|l| format!("<li>{}</li>\n", html(&l)))
            .collect();
        let head: String = HEADER
            .iter()
            .map(|h| format!("<th>{}</th>", html(h)))
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kabench compare: {base} → {new}</title>\n<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:100%}}.wrap{{overflow-x:auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}tr.bad td{{background:#fde2e1}}tr.good td{{background:#e3f6e3}}</style></head>\n<body><h1>kabench compare: {base} → {new}</h1>\n<p class=\"conclusion\"><strong>{conclusion}</strong></p>\n<p>{method}. See docs/report.md for the method.</p>\n<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>\n<ul>\n{list}</ul></body></html>\n",
            base = html(&self.base_scenario),
            new = html(&self.new_scenario),
            conclusion = html(&self.conclusion()),
            method = html(&method(self)),
        )
    }
}

/// Escapes text for HTML, control characters shown as escapes.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in printable(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
