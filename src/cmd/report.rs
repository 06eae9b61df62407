//! `kabench report`: a run folder's summary, charts and pages rebuilt.

use anyhow::Result;

use super::output;
use crate::cli::ReportArgs;
use crate::report::RenderOptions;

pub(super) fn report(args: ReportArgs) -> Result<()> {
    let options = RenderOptions {
        cold_threshold: args.cold_threshold,
    };
    let rendered = crate::report::render(&args.dir, &options)?;
    output::print(&args.dir, &rendered, args.json)?;
    eprintln!("wrote {}", rendered.index_html.display());
    Ok(())
}
