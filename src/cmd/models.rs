//! `kabench models`: the simulator's catalogue, listed.

use std::io::Write;

use anyhow::Result;

use crate::cli::ModelsArgs;

pub(super) fn models(args: ModelsArgs) -> Result<()> {
    let listing = crate::engine::sim_settings::catalogue_listing(args.num_ctx, args.sources)?;
    std::io::stdout().lock().write_all(listing.as_bytes())?;
    Ok(())
}
