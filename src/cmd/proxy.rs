//! `kabench proxy`: the logging proxy served until Ctrl-C, then its log as a run folder
//! and a report.

use std::time::Duration;

use anyhow::Result;

use super::BadInput;
use super::signal::interrupt;
use crate::cli::ProxyArgs;
use crate::proxy::{self, ProxyConfig, log::LOG_CSV};
use crate::report::RenderOptions;

pub(super) async fn proxy(args: ProxyArgs) -> Result<()> {
    let upstream = match args.upstream {
        Some(url) => url,
        None => {
            let raw = std::env::var("OLLAMA_HOST").unwrap_or_default();
            crate::ollama::host::parse_ollama_host(&raw)
                .map_err(|e| BadInput(format!("OLLAMA_HOST {raw:?}: {e}")))?
        }
    };
    let upstream = upstream.as_str().trim_end_matches('/').to_string();
    let log = args.out.join(LOG_CSV);
    let config = ProxyConfig {
        listen: args.listen,
        upstream: upstream.clone(),
        out: args.out.clone(),
        rewrite_keep_alive: args.rewrite_keep_alive.as_ref().map(|ka| ka.to_json()),
        quiet: args.quiet,
    };
    let handle = proxy::spawn(config).await?;
    eprintln!(
        "kabench proxy: http://{} -> {upstream}, logging to {}; Ctrl-C stops it",
        handle.addr,
        log.display()
    );
    interrupt().await;
    let stats = handle.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "kabench proxy: stopped; {} request(s) logged to {}",
        stats.rows,
        log.display()
    );
    match stats.exported {
        Ok(n) if n > 0 => {
            let rendered = crate::report::render(&args.out, &RenderOptions::default())?;
            eprintln!("{}", rendered.headline);
            eprintln!(
                "wrote {} (observed, not swept)",
                rendered.index_html.display()
            );
        }
        Ok(_) => eprintln!("no model request passed: no report"),
        Err(e) => eprintln!("could not write the run folder for the report: {e}"),
    }
    Ok(())
}
