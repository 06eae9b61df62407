//! The doctor's table as text: one row per check (endpoint, check, verdict, whether it
//! holds, evidence), the fix under it, then what was restored and the outcome. Every
//! text that came from the server (names, versions, error texts) is shown through
//! [`printable`], so an escape sequence in a model name cannot reach the terminal.

use std::fmt::Write;

use super::Report;
use crate::units::limits::printable;

/// The report as the terminal shows it.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let embed = match &r.embed_model {
        Some(e) => format!(", embedding model {}", printable(e)),
        None if r.kind == "Ollama" => ", no embedding model".into(),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "kabench doctor: {} ({} {}), model {}{embed}",
        printable(&r.target),
        printable(&r.kind),
        printable(&r.version),
        printable(&r.model)
    );
    let _ = writeln!(
        out,
        "{:<22} {:<54} {:<9} {:<5} evidence",
        "endpoint", "check", "verdict", "holds"
    );
    for c in &r.checks {
        let _ = writeln!(
            out,
            "{:<22} {:<54} {:<9} {:<5} {}",
            printable(&c.endpoint),
            printable(&c.check),
            c.verdict.word(),
            if c.holds { "yes" } else { "NO" },
            printable(&c.evidence)
        );
        let measured = c.verdict != super::Verdict::NotApplicable || c.endpoint == "server";
        if !c.fix.is_empty() && (measured || !c.holds) {
            let _ = writeln!(out, "{:<22} fix ({}): {}", "", c.rule, printable(&c.fix));
        }
    }
    for line in &r.restored {
        let _ = writeln!(out, "restored: {}", printable(line));
    }
    let problems = r.problems();
    if problems.is_empty() {
        let _ = writeln!(
            out,
            "all {} checks hold ({:.1} s)",
            r.checks.len(),
            r.elapsed_s
        );
    } else {
        let ids: Vec<&str> = problems.iter().map(|c| c.id.as_str()).collect();
        let _ = writeln!(
            out,
            "{} of {} checks found a problem: {} ({:.1} s)",
            problems.len(),
            r.checks.len(),
            ids.join(", "),
            r.elapsed_s
        );
    }
    out
}
