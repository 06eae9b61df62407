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
                let requests: u64 = plan
                    .cells
                    .iter()
                    .map(|c| run::request::planned_requests(c).unwrap_or(0))
                    .sum();
                println!(
                    "{}: ok: scenario {:?}, {} cell(s), {} stream(s), {} request(s)",
                    file.display(),
                    s.name,
                    plan.cells.len(),
                    s.streams.len(),
                    requests
                );
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
