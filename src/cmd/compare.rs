//! `kabench compare`: two run folders side by side; exit 1 past a threshold.

use anyhow::Result;

use crate::cli::CompareArgs;
use crate::report::compare::{CompareThresholds, compare_runs};

pub(super) fn compare(args: CompareArgs) -> Result<()> {
    let thresholds = CompareThresholds {
        p99_pct: args.max_p99_increase,
        cold_ratio_abs: args.max_cold_ratio_increase,
        vram_pct: args.max_vram_increase,
        error_rate_abs: args.max_error_rate_increase,
    };
    let comparison = compare_runs(&args.base, &args.new, &thresholds, args.force)?;
    print!("{}", comparison.to_text());
    let regressions = comparison.regressions();
    if comparison.changes.is_empty() {
        Err(anyhow::anyhow!(
            "nothing to compare: no cell and stream of {} matches {}",
            args.new.display(),
            args.base.display()
        ))
    } else if regressions.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} stream(s) past the thresholds",
            regressions.len()
        ))
    }
}
