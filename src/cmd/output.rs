//! The end of every subcommand that leaves a run folder: render its report, print the
//! table (or summary.json) on stdout and the headline on stderr, and decide the exit.

use std::path::Path;

use anyhow::{Context, Result};

use super::{BadInput, Interrupted};
use crate::analysis::Summary;
use crate::folder::RunStatus;
use crate::report::{RenderOptions, Rendered};
use crate::run::{RunOutcome, Target};

/// Renders the report of `dir` with the default options.
pub(super) fn render(dir: &Path) -> Result<Rendered> {
    crate::report::render(dir, &RenderOptions::default())
        .with_context(|| format!("rendering the report of {}", dir.display()))
}

/// Prints the rendered run's table (or summary.json) on stdout and its headline on
/// stderr.
pub(super) fn print(dir: &Path, rendered: &Rendered, json: bool) -> Result<()> {
    print_result(&read_summary(dir)?, json)?;
    eprintln!("{}", crate::units::limits::printable(&rendered.headline));
    Ok(())
}

/// Renders the finished run, prints its table and decides the outcome; a Ctrl-C that
/// came after the last request (while rendering) still ends it with exit 130.
pub(super) fn finish(outcome: RunOutcome, json: bool, interrupted: bool) -> Result<()> {
    let rendered = render(&outcome.dir)?;
    print(&outcome.dir, &rendered, json)?;
    eprintln!(
        "wrote {} ({} requests, {} errors): open {}",
        outcome.dir.display(),
        outcome.requests,
        outcome.errors,
        rendered.index_html.display()
    );
    decide(&outcome, interrupted)
}

/// The exit of a finished run: interrupted (by its status, or by a Ctrl-C seen after
/// the run, while rendering), failed, every request failed, or ok.
fn decide(outcome: &RunOutcome, interrupted: bool) -> Result<()> {
    if interrupted && outcome.status != RunStatus::Failed {
        return Err(Interrupted(outcome.dir.display().to_string()).into());
    }
    match outcome.status {
        RunStatus::Interrupted => Err(Interrupted(outcome.dir.display().to_string()).into()),
        RunStatus::Failed => {
            // Why, as run.json records it (a server that did not start names its command).
            let why = std::fs::read_to_string(outcome.dir.join(crate::folder::RUN_JSON))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    v.get("failure")
                        .and_then(|f| f.as_str())
                        .map(str::to_string)
                })
                .map_or_else(String::new, |f| {
                    format!(": {}", crate::units::limits::printable(&f))
                });
            Err(anyhow::anyhow!(
                "the run failed{why}; see {}/run.json",
                outcome.dir.display()
            ))
        }
        _ if outcome.requests > 0 && outcome.errors == outcome.requests => Err(anyhow::anyhow!(
            "every request failed; see {}/requests.csv",
            outcome.dir.display()
        )),
        _ => Ok(()),
    }
}

/// The `summary.json` that `report::render` just wrote.
fn read_summary(dir: &Path) -> Result<Summary> {
    let path = dir.join(crate::folder::SUMMARY_JSON);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Prints the per-cell table (or the JSON document) on stdout.
fn print_result(summary: &Summary, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(summary)?)?;
    } else {
        out.write_all(crate::report::table::result_table(summary).as_bytes())?;
    }
    Ok(())
}

/// An Ollama address the client cannot use is bad input (exit 2), before anything runs.
pub(super) fn check_target(target: &Target) -> Result<()> {
    for url in &target.urls() {
        crate::ollama::OllamaClient::new(url).map_err(|e| {
            BadInput(format!(
                "target {url:?}: {e}; write an Ollama address such as http://127.0.0.1:11434 or host:11434, or use --target sim"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_ctrl_c_while_rendering_exits_130_not_0() {
        let outcome = |status| RunOutcome {
            dir: PathBuf::from("reports/x"),
            status,
            requests: 4,
            errors: 0,
        };
        let interrupted = |r: Result<()>| r.is_err_and(|e| e.is::<Interrupted>());
        assert!(decide(&outcome(RunStatus::Complete), false).is_ok());
        assert!(interrupted(decide(&outcome(RunStatus::Complete), true)));
        assert!(interrupted(decide(&outcome(RunStatus::Interrupted), false)));
        let failed = decide(&outcome(RunStatus::Failed), true).unwrap_err();
        assert!(!failed.is::<Interrupted>());
    }
}
