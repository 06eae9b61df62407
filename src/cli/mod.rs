//! The command line as clap types, and nothing else: the help text is their doc
//! comments, and every value is parsed into its type here (`parse`), so what leaves
//! `cli` is typed. Flags that several subcommands share are one group, flattened where
//! they are taken (`HostArgs`, `ServerArgs`, `SummaryArgs`). The wiring of each
//! subcommand is `cmd`'s.

mod parse;
mod plan;
mod predict;
mod run;
mod serve;

use clap::{Args, Parser, Subcommand};

use crate::units::KeepAlive;

pub use plan::PlanArgs;
pub use predict::{PredictArgs, TimestampUnit};
pub use run::{
    CompareArgs, FleetArgs, FleetCommon, FleetEngine, K8sArgs, MergeArgs, ReportArgs, RunArgs,
    SlurmArgs, SwarmArgs, ValidateArgs,
};
pub use serve::{DoctorArgs, DoctorKind, ModelsArgs, ProxyArgs, SimArgs};

/// Measure what Ollama's keep_alive costs (idle VRAM) and buys (no cold starts), and
/// say what to set.
///
/// Exit codes: 0 ok (failed requests are recorded data); 1 the run failed; 2 bad input
/// (scenario, arguments, missing model, an --out folder that already holds a run); 130
/// interrupted by Ctrl-C or SIGTERM (the run folder is complete and reportable).
#[derive(Debug, Parser)]
#[command(name = "kabench", version, about, long_about, help_expected = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario (every cell of its sweep) and write a run folder with a report.
    Run(RunArgs),
    /// Check scenario files without sending anything.
    Validate(ValidateArgs),
    /// Rebuild summary.json, charts, index.html and summary.md from a run folder.
    Report(ReportArgs),
    /// Compare two run folders; exit 1 when a change passes a threshold.
    Compare(CompareArgs),
    /// Serve the embedded Ollama simulator (an Ollama-compatible API over a model of
    /// Ollama's scheduler).
    Sim(Box<SimArgs>),
    /// Run closed-loop users (goose) against the target, once per cell of the sweep.
    Swarm(SwarmArgs),
    /// List the simulator's model catalogue: sizes, load times and speeds, with sources.
    Models(ModelsArgs),
    /// Probe a live Ollama (or the simulator) for what it does with keep_alive and the
    /// load options: one row per check, honoured / ignored / rejected / n/a, with the
    /// evidence and the fix. Exit 1 when a check does not hold.
    Doctor(DoctorArgs),
    /// A transparent Ollama proxy for an app's real traffic: passes everything through
    /// unchanged, logs each request to DIR/proxy-requests.csv, warns about keep_alive
    /// pains, and serves GET /metrics (Prometheus). Ctrl-C closes the log.
    Proxy(ProxyArgs),
    /// Replay a request log through the scheduler model on a virtual clock under every
    /// keep_alive policy, priced against the keep_alive optimum.
    Predict(Box<PredictArgs>),
    /// Which models stay loaded together: what each takes resident (weights, KV cache,
    /// overhead), whether the set fits, what a round-robin of requests evicts, the
    /// smallest change that makes it fit, and the settings to paste. --check replays it
    /// on the target and compares. Exit 2 for an unknown model, an empty list or a VRAM
    /// that fits none of them; exit 1 when --check observes other evictions.
    Plan(Box<PlanArgs>),
    /// Print what runs a scenario as N shards on a cluster, with the merge: a
    /// Kubernetes Indexed Job (`k8s`) or a Slurm job array (`slurm`).
    Fleet(FleetArgs),
    /// Merge the shard folders of a sharded run (`kabench run --shard`) into one run
    /// folder and render its report: rows in intended-time order, histograms added.
    Merge(MergeArgs),
}

/// The host's size, as Ollama's server sees it: `kabench sim`, `predict` and `plan`.
#[derive(Debug, Clone, Default, Args)]
pub struct HostArgs {
    /// VRAM per GPU, e.g. 24GiB (default 24GiB).
    #[arg(long, value_parser = parse::bytes)]
    pub vram: Option<u64>,
    /// GPUs (default 1); 0 = a CPU-only host (models held in system memory, /api/ps
    /// size_vram 0; only the model cap limits).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// OLLAMA_MAX_LOADED_MODELS (0 or absent: 3 per GPU).
    #[arg(long)]
    pub max_loaded_models: Option<u32>,
}

/// How Ollama's server serves requests: `kabench sim` and `predict` (`sim` also reads
/// them from the environment and takes `--keep-alive` for `--server-keep-alive`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// OLLAMA_NUM_PARALLEL.
    #[arg(long)]
    pub num_parallel: Option<u32>,
    /// OLLAMA_KEEP_ALIVE: the keep_alive the server applies to requests that send none
    /// (default 5m).
    #[arg(long, value_parser = parse::keep_alive, allow_hyphen_values = true)]
    pub server_keep_alive: Option<KeepAlive>,
}

/// How a run's result is printed: `kabench run`, `swarm` and `predict`.
#[derive(Debug, Clone, Default, Args)]
pub struct SummaryArgs {
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sim_takes_the_old_spelling_and_the_environment() {
        let cli = Cli::try_parse_from(["kabench", "sim", "--keep-alive", "-1"]).unwrap();
        let Command::Sim(sim) = cli.command else {
            panic!("not sim")
        };
        assert!(sim.server.server_keep_alive.unwrap().is_forever());
        let cli = Cli::try_parse_from([
            "kabench",
            "predict",
            "--requests",
            "x.csv",
            "--server-keep-alive",
            "10m",
            "--keep-alive",
            "0,5m",
            "--vram",
            "8GiB",
        ])
        .unwrap();
        let Command::Predict(p) = cli.command else {
            panic!("not predict")
        };
        assert_eq!(p.server.server_keep_alive.unwrap().written(), "10m");
        assert_eq!(p.keep_alive.len(), 2);
        assert_eq!(p.host.vram, Some(8 << 30));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["kabench", "predict", "--requests", "x", "--train", "1.5"][..],
            &["kabench", "predict", "--requests", "x", "--time-scale", "0"],
            &[
                "kabench",
                "predict",
                "--requests",
                "x",
                "--keep-alive",
                "soon",
            ],
            &[
                "kabench",
                "predict",
                "--requests",
                "x",
                "--timestamp-unit",
                "h",
            ],
            &["kabench", "plan", "--vram", "lots"],
            &["kabench", "compare", "a", "b", "--max-vram-increase", "nan"],
            &["kabench", "swarm", "s.toml", "--users", "0"],
            &["kabench", "run", "s.toml", "--shards", "0"],
            &[
                "kabench",
                "proxy",
                "--out",
                "o",
                "--rewrite-keep-alive",
                "x",
            ],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
