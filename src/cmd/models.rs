//! `kabench models`: the simulator's catalogue, listed, each line through
//! [`printable`] so no control character in a name reaches the terminal.

use std::io::Write;

use anyhow::Result;

use crate::cli::ModelsArgs;
use crate::units::limits::printable;

pub(super) fn models(args: ModelsArgs) -> Result<()> {
    let listing = crate::engine::sim_settings::catalogue_listing(args.num_ctx, args.sources)?;
    let mut out = std::io::stdout().lock();
    for line in listing.lines() {
        writeln!(out, "{}", printable(line))?;
    }
    Ok(())
}
