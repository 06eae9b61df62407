//! `kabench swarm`: closed-loop users against the target, once per cell.

use anyhow::Result;

use super::output::{self, check_target};
use super::signal::watch;
use crate::cli::SwarmArgs;
use crate::run::{self, Target};
use crate::scenario;

pub(super) async fn swarm(args: SwarmArgs) -> Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    let plan = scenario::plan(&scenario);
    let target = Target::resolve(
        args.target.as_deref().map(Target::parse).as_ref(),
        &scenario,
    );
    check_target(&target)?;
    let options = run::closed_loop::SwarmOptions {
        target,
        out: args.out,
        users: args.users,
        run_time: args.run_time,
    };
    let w = watch(args.summary.quiet);
    let outcome =
        run::closed_loop::run(&scenario, &plan, &options, w.events, w.cancel.clone()).await;
    let _ = w.progress.await;
    output::finish(outcome?, args.summary.json, w.cancel.is_cancelled())
}
