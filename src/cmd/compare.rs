//! `kabench compare`: two run folders side by side; exit 1 for a significant regression
//! past a threshold. With `--out`, also writes `compare.md` and `compare.html`.

use anyhow::{Context, Result};

use crate::cli::CompareArgs;
use crate::report::compare::{CompareThresholds, compare_runs};

pub(super) fn compare(args: CompareArgs) -> Result<()> {
    let thresholds = CompareThresholds {
        p99_pct: args.max_p99_increase,
        cold_ratio_abs: args.max_cold_ratio_increase,
        vram_pct: args.max_vram_increase,
        error_rate_abs: args.max_error_rate_increase,
        significance: args.significance_level,
        noise: args.noise_threshold,
        resamples: args.resamples,
    };
    let comparison = compare_runs(&args.base, &args.new, &thresholds, args.force)?;
    print!("{}", comparison.to_text());
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create the folder {}", out.display()))?;
        for (name, text) in [
            ("compare.md", comparison.to_markdown()),
            ("compare.html", comparison.to_html()),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
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
            "{} stream(s) regressed significantly past the thresholds",
            regressions.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_flags_default_to_the_statistics_defaults() {
        let cli = crate::cli::Cli::try_parse_from(["kabench", "compare", "a", "b"]).unwrap();
        let crate::cli::Command::Compare(args) = cli.command else {
            panic!("not compare");
        };
        assert_eq!(args.resamples, crate::analysis::stats::DEFAULT_RESAMPLES);
        assert_eq!(
            args.significance_level,
            crate::report::compare::DEFAULT_SIGNIFICANCE
        );
        assert_eq!(args.noise_threshold, crate::report::compare::DEFAULT_NOISE);
    }
}
