//! `kabench doctor` from the command line: resolve the target (an address, or `sim`
//! for an embedded simulator on a free loopback port), run or list the probes, print
//! the table or JSON, and fail (exit 1) when a check does not hold.

use std::io::Write;

use anyhow::Result;

use super::DoctorOptions;

/// `kabench doctor`'s arguments, as parsed.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// An address, `sim`, or none for $OLLAMA_HOST.
    pub target: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--embed-model`.
    pub embed_model: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--allow-evict`.
    pub allow_evict: bool,
}

/// A target address the client cannot use (bad input).
#[derive(Debug, thiserror::Error)]
#[error("--target {0:?}: {1}; write an Ollama address such as http://127.0.0.1:11434, or sim")]
pub struct BadTarget(pub String, pub String);

/// Runs `kabench doctor`: Ok when every check holds. `stop` is Ctrl-C (see
/// [`super::Stop`]): the table of what was checked is still printed, after the restore.
pub async fn command(args: Invocation, stop: &super::Stop) -> Result<()> {
    let raw = args
        .target
        .clone()
        .or_else(|| std::env::var("OLLAMA_HOST").ok())
        .unwrap_or_default();
    let mut sim = None;
    let target = if raw == "sim" {
        if !args.dry_run {
            let settings = crate::engine::sim_settings::SimSettings::default();
            let listen = "127.0.0.1:0".parse()?;
            let handle = crate::engine::sim::spawn(&settings, 1, listen).await?;
            sim = Some(handle);
        }
        sim.as_ref()
            .map_or("http://127.0.0.1:0".into(), |h| h.base_url())
    } else {
        crate::ollama::host::parse_ollama_host(&raw)
            .map_err(|e| BadTarget(raw.clone(), e.to_string()))?
            .as_str()
            .trim_end_matches('/')
            .to_string()
    };
    let opts = DoctorOptions {
        target,
        model: args.model.clone(),
        embed_model: args.embed_model.clone(),
        allow_evict: args.allow_evict,
        announce: true,
    };
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        let plan = super::dry_run(&opts);
        if args.json {
            let rows: Vec<serde_json::Value> = plan
                .iter()
                .map(|(why, r)| {
                    serde_json::json!({"purpose": why, "method": r.method, "path": r.path, "body": r.body,
                        "changes": super::change(r).map(|c| c.describe())})
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        } else {
            writeln!(
                out,
                "kabench doctor --dry-run: the requests it would send to {} (nothing sent)",
                opts.target
            )?;
            writeln!(
                out,
                "what it does to the loaded models (the model's own default context is assumed 4096 here; the run uses the server's):"
            )?;
            for line in super::changes_summary(&plan) {
                writeln!(out, "  {line}")?;
            }
            writeln!(
                out,
                "  models loaded before the run are never evicted without --allow-evict: the checks that would load a model beside them are skipped (and say so); what the probes moved is loaded again at the end"
            )?;
            for (why, r) in &plan {
                match super::change(r) {
                    Some(c) => writeln!(out, "# {why} [{}]\n{}", c.describe(), r.line())?,
                    None => writeln!(out, "# {why}\n{}", r.line())?,
                }
            }
        }
        return Ok(());
    }
    let report = super::run(&opts, stop).await;
    if let Some(h) = sim {
        h.shutdown().await;
    }
    let report = report?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    if report.interrupted {
        return Err(super::Interrupted(format!(
            "{} checks done before it; what was resident before was restored",
            report.checks.len() - 1
        ))
        .into());
    }
    let problems = report.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} check(s) found a problem: {}",
            problems.len(),
            problems
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}
