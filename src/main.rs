//! The `kabench` binary: parse arguments, start the runtime, dispatch, and turn the
//! outcome into an exit code (0 ok, 1 run failed, 2 bad input, 130 interrupted).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kabench::cli::{self, BadInput, Cli, Interrupted};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KABENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match kabench::run::pacer::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_code(&e),
    }
}

fn exit_code(e: &anyhow::Error) -> ExitCode {
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {e:#}");
    let bad_input = e.chain().any(|c| {
        c.is::<BadInput>()
            || c.is::<kabench::plan::PlanError>()
            || c.is::<kabench::scenario::ScenarioError>()
            || c.is::<kabench::units::ParseError>()
            || c.is::<kabench::run::MissingModels>()
            || c.is::<kabench::folder::RunFolderExists>()
            || c.is::<kabench::folder::RunFolderNotEmpty>()
            || c.is::<kabench::folder::RunFolderUnwritable>()
            || c.is::<kabench::report::compare::NotComparable>()
            || c.is::<kabench::fleet::merge::NotMergeable>()
    });
    if bad_input {
        ExitCode::from(2)
    } else if e.chain().any(|c| {
        c.is::<Interrupted>()
            || c.is::<kabench::run::StoppedBeforeStart>()
            || c.is::<kabench::doctor::Interrupted>()
    }) {
        ExitCode::from(130)
    } else {
        ExitCode::from(1)
    }
}
