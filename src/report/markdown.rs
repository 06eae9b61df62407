//! `summary.md`: the headline, the settings to paste, warnings and the per-cell table,
//! fit for a CI job summary (`$GITHUB_STEP_SUMMARY`). Table cells are escaped so a
//! model name cannot break the table or inject HTML. Knows nothing of charts.

use super::ReportData;
use super::html::cell_rows;
use crate::recommend::{Form, display_keep_alive, format_seconds};
use crate::units::limits::printable;

/// Escapes text for a Markdown table cell or line: HTML specials, pipes and newlines.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let text = text.replace(['\n', '\r'], " ");
    // Control characters (ESC, NUL, U+2028…) shown as escapes, never passed through.
    for c in printable(&text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' => out.push_str("\\|"),
            '`' => out.push_str("\\`"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Renders `summary.md`.
pub fn render(data: &ReportData) -> String {
    let mut md = format!("# kabench: {}\n\n", escape(&data.meta.scenario));
    md.push_str(&format!("**{}**\n\n", escape(&data.headline)));
    for r in &data.recommendations {
        if r.form == Form::NoCandidate {
            md.push_str(&format!(
                "- **{} ({})**: no recommendation: {}.\n",
                escape(&r.workload),
                escape(&r.model),
                escape(&r.reason)
            ));
            continue;
        }
        md.push_str(&format!(
            "- **{} ({})**: keep_alive `{}`: {}. Break-even (ski rental): {}.\n",
            escape(&r.workload),
            escape(&r.model),
            escape(&display_keep_alive(r.chosen.as_ref())),
            escape(&r.reason),
            r.break_even_s.map_or("unknown".into(), format_seconds),
        ));
        md.push_str(&format!(
            "  - server: `{}`; per request (native API, top level): `{}`\n",
            escape(&r.snippets.server_env),
            escape(&r.snippets.keep_alive_field)
        ));
        for a in &r.advice {
            md.push_str(&format!("  - {}\n", escape(a)));
        }
    }
    if !data.warnings.is_empty() {
        md.push_str("\n## Warnings\n\n");
        for w in &data.warnings {
            md.push_str(&format!("- {}\n", escape(w)));
        }
    }
    if !data.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &data.notes {
            md.push_str(&format!("- {}\n", escape(n)));
        }
    }
    for f in &data.fits {
        md.push_str(&format!("\n## Fits together? ({})\n\n", escape(&f.cells)));
        md.push_str(&format!(
            "**{}** on {}\n\n",
            escape(&f.verdict),
            escape(&f.host)
        ));
        md.push_str("| model | num_ctx | resident | from |\n|---|--:|--:|---|\n");
        for m in &f.models {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                escape(&m.model),
                m.num_ctx.map_or(String::new(), |c| c.to_string()),
                escape(&m.size),
                escape(&m.source)
            ));
        }
        md.push('\n');
        for s in &f.steps {
            md.push_str(&format!("- load {}\n", escape(s)));
        }
        for w in &f.would_fit {
            md.push_str(&format!("- would have fit: {}\n", escape(w)));
        }
        if let Some(o) = &f.observed {
            md.push_str(&format!("- observed: {}\n", escape(o)));
        }
    }
    if let Some(points) = super::servers_chart::points(&data.recommendations) {
        md.push_str("\n## Across servers\n\n");
        md.push_str("Every server's cells on one frontier (the page draws it): less idle memory costs more cold starts.\n\n");
        md.push_str("| server | knob | cold % | idle GB·s | TTFT p99 ms | recommended |\n|---|---|--:|--:|--:|---|\n");
        for p in &points {
            md.push_str(&format!(
                "| {} | {} | {:.0} | {} | {} | {} |\n",
                escape(&p.server),
                escape(&p.knob),
                p.cold_pct,
                p.idle_gb_s.map_or("—".into(), |v| format!("{v:.1}")),
                p.p99_ttft_ms.map_or("—".into(), |v| format!("{v:.0}")),
                if p.chosen { "yes" } else { "" }
            ));
        }
    }
    md.push_str("\n## Cells\n\n");
    md.push_str("| cell | stream | model | keep_alive | requests | errors | cold % | cold % 95% CI | TTFT p50 ms | TTFT p99 ms | tokens/s | idle GB·s | peak GB | memory |\n");
    md.push_str("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for r in cell_rows(&data.summary) {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            escape(&r.cell),
            escape(&r.stream),
            escape(&r.model),
            escape(&r.keep_alive),
            r.requests,
            r.errors,
            r.cold_pct,
            r.cold_ci,
            r.ttft_p50,
            r.ttft_p99,
            r.tps,
            r.idle,
            r.peak,
            escape(&r.memory)
        ));
    }
    md.push_str(&format!(
        "\nTarget: {} {} · Ollama {} · GPU {} · status {:?}\n",
        escape(data.meta.target.kind.as_str()),
        escape(&data.meta.target.url),
        escape(data.meta.ollama_version.as_deref().unwrap_or("unknown")),
        escape(data.meta.gpu.as_deref().unwrap_or("unknown")),
        data.meta.status
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_table_breakers_and_html() {
        assert_eq!(escape("a|b<script>\n"), "a\\|b&lt;script&gt; ");
    }
}
