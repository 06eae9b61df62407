//! Each subcommand's wiring, one short file each: take the parsed arguments (`cli`),
//! call the stages in order, print, and say how it ended. What a stage does is the
//! stage's own module; what an error means for the exit status is [`exit`]'s.

mod compare;
mod doctor;
pub mod exit;
mod fleet;
mod merge;
mod models;
mod output;
mod plan;
mod plan_check;
mod predict;
pub mod progress;
mod proxy;
mod report;
mod run;
mod signal;
mod sim;
mod swarm;
mod validate;

use anyhow::Result;

use crate::cli::{Cli, Command, HostArgs, ServerArgs};
use crate::engine::sim_settings::SimSettings;

pub use exit::{BadInput, Exit, Interrupted};

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Validate(args) => validate::validate(args),
        Command::Report(args) => report::report(args),
        Command::Compare(args) => compare::compare(args),
        Command::Sim(args) => sim::sim(*args).await,
        Command::Models(args) => models::models(args),
        Command::Swarm(args) => swarm::swarm(args).await,
        Command::Doctor(args) => doctor::doctor(args).await,
        Command::Proxy(args) => proxy::proxy(args).await,
        Command::Predict(args) => predict::predict(*args),
        Command::Plan(args) => plan::plan(*args).await,
        Command::Merge(args) => merge::merge(args),
        Command::Fleet(args) => fleet::fleet(args),
    }
}

/// The host flags as the settings they override (the scenario's `[sim]` keeps its
/// written form, so the typed values go back to text that reads the same).
fn host_settings(host: &HostArgs, server: &ServerArgs) -> SimSettings {
    SimSettings {
        vram: host.vram.map(size_text),
        gpus: host.gpus,
        max_loaded_models: host.max_loaded_models,
        num_parallel: server.num_parallel,
        keep_alive: server
            .server_keep_alive
            .as_ref()
            .map(|ka| ka.written().to_string()),
        ..SimSettings::default()
    }
}

/// A byte count as the largest binary unit it is a whole number of (`24GiB`, `1500B`).
fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(size, _)| bytes > 0 && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes}B"),
            |(size, unit)| format!("{}{unit}", bytes / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_back_as_given() {
        for (bytes, text) in [
            (24u64 << 30, "24GiB"),
            (1500, "1500B"),
            (0, "0B"),
            (3 << 19, "1536KiB"),
        ] {
            assert_eq!(size_text(bytes), text);
            assert_eq!(crate::units::parse_bytes(text).unwrap(), bytes);
        }
    }
}
