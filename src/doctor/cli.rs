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
    /// `--target-kind llama-server`.
    pub llama_server: bool,
    /// `--target-kind llama-router` or `llama-swap`.
    pub many: Option<crate::llama::ServerKind>,
    /// `--pid` (llama-server).
    pub pid: Option<u32>,
    /// `--max-wait` in seconds (llama-server, llama-router, llama-swap).
    pub max_wait: Option<u64>,
}

/// A flag that does not apply to the target kind given (bad input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFlag(pub String);

/// A target address the client cannot use (bad input).
#[derive(Debug, thiserror::Error)]
#[error("--target {0:?}: {1}; write an Ollama address such as http://127.0.0.1:11434, or sim")]
pub struct BadTarget(pub String, pub String);

/// Runs `kabench doctor`: Ok when every check holds. `stop` is Ctrl-C (see
/// [`super::Stop`]): the table of what was checked is still printed, after the restore.
pub async fn command(args: Invocation, stop: &super::Stop) -> Result<()> {
    if args.llama_server {
        return llama(args, stop).await;
    }
    if let Some(kind) = args.many {
        return many(kind, args, stop).await;
    }
    if args.pid.is_some() {
        return Err(BadFlag(
            "--pid applies to --target-kind llama-server only; drop it or add --target-kind llama-server".into(),
        )
        .into());
    }
    if args.max_wait.is_some() {
        return Err(BadFlag(
            "--max-wait applies to --target-kind llama-server, llama-router and llama-swap only; drop it or add one of them".into(),
        )
        .into());
    }
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
        parse_target(&raw)?
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
    finish(report?, args.json)
}

/// Prints the report (table or JSON) and fails when a check does not hold.
fn finish(report: super::Report, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
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

/// `kabench doctor --target-kind llama-server`.
async fn llama(args: Invocation, stop: &super::Stop) -> Result<()> {
    let raw = args
        .target
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    if raw == "sim" || args.embed_model.is_some() || args.allow_evict {
        return Err(BadFlag(
            "--target sim, --embed-model and --allow-evict apply to --target-kind ollama only: the simulator is Ollama's, and a llama-server serves one model".into(),
        )
        .into());
    }
    let target = parse_target(&raw)?;
    let opts = super::llama::LlamaOptions {
        target,
        model: args.model.clone(),
        pid: args.pid,
        max_wait: args.max_wait.map_or(
            super::llama::DEFAULT_MAX_WAIT,
            std::time::Duration::from_secs,
        ),
        announce: true,
    };
    if args.dry_run {
        return print_plan(
            crate::llama::ServerKind::LlamaServer,
            &opts.target,
            &super::llama::dry_run(&opts),
            &super::llama::plan_lines(&opts),
            args.json,
        );
    }
    finish(super::llama::run(&opts, stop).await?, args.json)
}

/// `kabench doctor --target-kind llama-router` or `--target-kind llama-swap`.
async fn many(kind: crate::llama::ServerKind, args: Invocation, stop: &super::Stop) -> Result<()> {
    let raw = args
        .target
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    if raw == "sim" || args.embed_model.is_some() || args.pid.is_some() {
        return Err(BadFlag(format!(
            "--target sim, --embed-model and --pid do not apply to --target-kind {kind}: the simulator is Ollama's, there are no embedding checks, and the model processes are found from the server's status; drop them"
        ))
        .into());
    }
    let target = parse_target(&raw)?;
    let opts = super::llama::multi::ManyOptions {
        kind,
        target,
        model: args.model.clone(),
        max_wait: args.max_wait.map_or(
            super::llama::DEFAULT_MAX_WAIT,
            std::time::Duration::from_secs,
        ),
        allow_evict: args.allow_evict,
        announce: true,
    };
    if args.dry_run {
        return print_plan(
            kind,
            &opts.target,
            &super::llama::multi::dry_run(&opts),
            &super::llama::multi::plan_lines(&opts),
            args.json,
        );
    }
    finish(super::llama::multi::run(&opts, stop).await?, args.json)
}

/// The base URL (no trailing `/`) that `--target` names, or [`BadTarget`].
fn parse_target(raw: &str) -> Result<String> {
    Ok(crate::ollama::host::parse_ollama_host(raw)
        .map_err(|e| BadTarget(raw.to_string(), e.to_string()))?
        .as_str()
        .trim_end_matches('/')
        .to_string())
}

/// Prints the `--dry-run` plan of a llama target kind: the requests as JSON, or the
/// summary `lines` and each request.
fn print_plan(
    kind: crate::llama::ServerKind,
    target: &str,
    plan: &[(String, super::http::Req)],
    lines: &[String],
    json: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = plan
            .iter()
            .map(|(why, r)| serde_json::json!({"purpose": why, "method": r.method, "path": r.path, "body": r.body}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        writeln!(
            out,
            "kabench doctor --target-kind {kind} --dry-run: the requests it would send to {target} (nothing sent)"
        )?;
        writeln!(out, "what it does to the server:")?;
        for line in lines {
            writeln!(out, "  {line}")?;
        }
        for (why, r) in plan {
            writeln!(out, "# {why}\n{}", r.line())?;
        }
    }
    Ok(())
}
