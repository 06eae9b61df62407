//! `kabench merge`: shard folders into one run folder, and its report.

use anyhow::Result;

use super::output;
use crate::cli::MergeArgs;

pub(super) fn merge(args: MergeArgs) -> Result<()> {
    let merged = crate::fleet::merge::merge(&args.out, &args.shards)?;
    for warning in &merged.warnings {
        eprintln!("warning: {warning}");
    }
    let rendered = output::render(&merged.dir)?;
    output::print(&merged.dir, &rendered, args.json)?;
    eprintln!(
        "merged {} shard folder(s) into {} ({} requests, {} errors): open {}",
        args.shards.len(),
        merged.dir.display(),
        merged.rows,
        merged.errors,
        rendered.index_html.display()
    );
    Ok(())
}
