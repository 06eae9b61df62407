//! `kabench validate`: each scenario file loaded and planned, nothing sent.

use anyhow::Result;

use super::BadInput;
use crate::cli::ValidateArgs;
use crate::run;
use crate::scenario;

pub(super) fn validate(args: ValidateArgs) -> Result<()> {
    let mut failed = None;
    for file in &args.files {
        match scenario::load(file) {
            Ok(s) => {
                let plan = scenario::plan(&s);
                let requests = planned_total(&plan);
                println!(
                    "{}: ok: scenario {:?}, {} cell(s), {} stream(s), {} request(s)",
                    file.display(),
                    s.name,
                    plan.cells.len(),
                    s.streams.len(),
                    requests
                );
                if let Some(warning) = over_report_limit(requests) {
                    eprintln!("warning: {}: {warning}", file.display());
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(BadInput(format!("{} is not a valid scenario", e.path.display())).into()),
        None => Ok(()),
    }
}

/// Every request a plan sends, warm-ups included.
pub(super) fn planned_total(plan: &scenario::Plan) -> u64 {
    plan.cells
        .iter()
        .map(|c| run::request::planned_requests(c).unwrap_or(0))
        .sum()
}

/// A note when a run of `requests` would record more rows than one report holds whole
/// (`folder::MAX_REPORT_ROWS`): every row is recorded and counted in the figures, but
/// the memory figures, reload causes and charts are over the first rows of each cell,
/// so the user hears it before the run, not after.
pub(super) fn over_report_limit(requests: u64) -> Option<String> {
    let limit = crate::folder::report_row_limit();
    (requests > limit).then(|| {
        format!(
            "it plans {requests} requests, more than the {limit} rows one report holds whole; every row is recorded and counted in the summary's counts and percentiles, but the memory figures, reload causes and charts will be over the first rows of each cell. Split it into several runs (fewer cells or requests per scenario) to have them over every row"
        )
    })
}
