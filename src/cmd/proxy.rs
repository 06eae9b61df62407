//! `kabench proxy`: the logging proxy served until Ctrl-C, then its log as a run folder
//! and a report. A second Ctrl-C ends the process at once.

use std::path::Path;

use anyhow::Result;

use super::BadInput;
use super::signal::interrupt;
use crate::cli::ProxyArgs;
use crate::proxy::body::BodyLimits;
use crate::proxy::log::{LOG_CSV, OTHER_CSV};
use crate::proxy::server::ConnLimits;
use crate::proxy::{self, MAX_BODY, ProxyConfig, ProxyLimits};
use crate::report::RenderOptions;
use crate::units::limits::printable;

/// Refuses an --out that is a file, or a folder that is not empty (it may hold a run
/// or another session's log), unless `force`.
fn check_out(out: &Path, force: bool) -> Result<()> {
    let shown = printable(&out.display().to_string()).into_owned();
    match std::fs::metadata(out) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => {
            Err(BadInput(format!("--out {shown} exists and is not a folder")).into())
        }
        Ok(_) => {
            let first = std::fs::read_dir(out)
                .map_err(|e| BadInput(format!("--out {shown}: cannot read it: {e}")))?
                .next();
            match first {
                Some(Ok(entry)) if !force => Err(BadInput(format!(
                    "--out {shown} is not empty (it holds {}): choose a new folder, or pass --force to replace the proxy's log and run files in it",
                    printable(&entry.file_name().to_string_lossy())
                ))
                .into()),
                _ => Ok(()),
            }
        }
    }
}

pub(super) async fn proxy(args: ProxyArgs) -> Result<()> {
    let upstream = match args.upstream {
        Some(url) => url,
        None => {
            let raw = std::env::var("OLLAMA_HOST").unwrap_or_default();
            crate::ollama::host::parse_ollama_host(&raw).map_err(|e| {
                BadInput(format!(
                    "OLLAMA_HOST {}: {e}",
                    crate::units::limits::excerpt(&raw)
                ))
            })?
        }
    };
    if args.max_connections == 0 {
        return Err(BadInput("--max-connections must be at least 1".into()).into());
    }
    if args.grace > std::time::Duration::from_secs(3600) {
        return Err(BadInput("--grace must be at most 1h".into()).into());
    }
    if args.read_timeout.is_zero() {
        return Err(BadInput("--read-timeout must be over 0 s".into()).into());
    }
    check_out(&args.out, args.force)?;
    let upstream = upstream.as_str().trim_end_matches('/').to_string();
    let log = args.out.join(LOG_CSV);
    let config = ProxyConfig {
        listen: args.listen,
        upstream: upstream.clone(),
        out: args.out.clone(),
        rewrite_keep_alive: args.rewrite_keep_alive.as_ref().map(|ka| ka.to_json()),
        quiet: args.quiet,
    };
    let limits = ProxyLimits {
        conn: ConnLimits {
            max_connections: args.max_connections,
            header_timeout: args.read_timeout,
        },
        body: BodyLimits {
            max_body: MAX_BODY,
            budget_bytes: usize::try_from(args.max_buffered).unwrap_or(usize::MAX),
            read_timeout: args.read_timeout,
        },
    };
    // Ctrl-C and SIGTERM are caught from here on, start-up included.
    let mut stop = Box::pin(interrupt());
    let started = tokio::select! {
        h = proxy::spawn_with(config, limits) => h,
        _ = &mut stop => {
            eprintln!("kabench proxy: interrupted while starting; nothing was served");
            return Ok(());
        }
    };
    let handle = match started {
        Ok(h) => h,
        Err(e) => {
            return Err(match e.downcast::<proxy::SelfUpstream>() {
                Ok(s) => BadInput(s.0).into(),
                Err(e) => e,
            });
        }
    };
    if !handle.addr.ip().is_loopback() {
        eprintln!(
            "warning: the proxy listens on {}, beyond this host: anyone who can reach it can use the Ollama behind it (it has no authentication), read /metrics, and have their address logged; listen on 127.0.0.1 unless other hosts must reach it",
            handle.addr
        );
    }
    let shown_log = printable(&log.display().to_string()).into_owned();
    eprintln!(
        "kabench proxy: http://{} -> {}, logging to {shown_log}; Ctrl-C stops it",
        handle.addr,
        printable(&upstream)
    );
    stop.await;
    // A second Ctrl-C (or SIGTERM) ends the process at once: the log is flushed per
    // row, so only the run folder and the report are skipped.
    tokio::spawn(async {
        if interrupt().await {
            eprintln!("\ninterrupted again: exiting now, without the run folder and the report");
            std::process::exit(130);
        }
    });
    eprintln!(
        "kabench proxy: stopping; open requests have {} to end (Ctrl-C again to exit now)",
        humantime_like(args.grace)
    );
    let stats = handle.shutdown(args.grace).await;
    let other = printable(&args.out.join(OTHER_CSV).display().to_string()).into_owned();
    eprintln!(
        "kabench proxy: stopped; {} model request(s) logged to {shown_log}, {} other request(s) to {other}{}",
        stats.model_rows,
        stats.other_rows,
        if stats.cut > 0 {
            format!(
                "; {} cut at shutdown (still open after the grace period, logged cut_at_shutdown)",
                stats.cut
            )
        } else {
            String::new()
        }
    );
    match stats.exported {
        Ok(n) if n > 0 => {
            let out = args.out.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                crate::report::render(&out, &RenderOptions::default())
            })
            .await??;
            // What the app sends, and what its traffic says (kabench predict on the
            // log): the observed run's own headline would echo what the app sends.
            eprintln!("{}", printable(&app_sends(&log)));
            let (log2, out2) = (log.clone(), args.out.clone());
            let advice = tokio::task::spawn_blocking(move || {
                super::predict::advice(&log2, Some(&out2))
                    .or_else(|_| super::predict::advice(&log2, None))
            })
            .await?;
            match advice {
                Ok(lines) => {
                    eprintln!("what the traffic says (kabench predict --requests {shown_log}):");
                    // The models and the recommendation; the other policies are in
                    // predict's own table.
                    let end = lines
                        .iter()
                        .position(|l| l.starts_with("best fixed keep_alive"))
                        .map_or(lines.len(), |i| i + 1);
                    for line in &lines[..end] {
                        eprintln!("  {}", printable(line));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "kabench predict could not replay the log ({}); the observed run says:",
                        printable(&format!("{e:#}"))
                    );
                    // The headline names the models the clients sent: escaped.
                    for line in rendered.headline.lines() {
                        eprintln!("  {}", printable(line));
                    }
                }
            }
            eprintln!(
                "wrote {} (observed, not swept)",
                printable(&rendered.index_html.display().to_string())
            );
        }
        Ok(_) => eprintln!("no model request passed: no report"),
        Err(e) => eprintln!(
            "could not write the run folder for the report: {}",
            printable(&e)
        ),
    }
    Ok(())
}

/// `5 s`, `250 ms`.
fn humantime_like(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// What the app sends where the server reads it, over the model requests of `log`:
/// `the app sends keep_alive 10m on 12 of 12 model requests`.
fn app_sends(log: &Path) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut total = 0;
    if let Ok(mut r) = csv::Reader::from_path(log) {
        for row in r.deserialize::<proxy::log::ProxyRow>().flatten() {
            if row.kind.is_empty() || row.kind == "serve" {
                total += 1;
                let sent = if row.keep_alive_placement == "top" {
                    row.keep_alive_sent
                } else {
                    String::new()
                };
                *counts.entry(sent).or_default() += 1;
            }
        }
    }
    let mut parts: Vec<(usize, String)> = counts
        .into_iter()
        .map(|(k, n)| {
            let what = if k.is_empty() {
                "no keep_alive (the server's default applies)".to_string()
            } else {
                format!("keep_alive {k}")
            };
            (n, what)
        })
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let list: Vec<String> = parts
        .iter()
        .take(3)
        .map(|(n, w)| format!("{w} on {n} of {total}"))
        .collect();
    format!("the app sends {} model request(s)", list.join(", "))
}
