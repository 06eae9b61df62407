//! The `kabench` binary: parse the arguments, run the command, and turn its error (if
//! any) into an exit code in one scan of the error chain (0 ok, 1 run failed, 2 bad
//! input, 130 interrupted; see `kabench::cmd::exit`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kabench::cli::Cli;
use kabench::cmd::{self, Exit};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match Exit::of(&e) {
            Exit::BrokenPipe => ExitCode::SUCCESS,
            exit => {
                eprintln!("error: {e:#}");
                ExitCode::from(exit.code())
            }
        },
    }
}

/// Logging to stderr, the runtime, the command.
fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KABENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = kabench::run::pacer::runtime().context("cannot start the async runtime")?;
    runtime.block_on(cmd::dispatch(cli))
}
