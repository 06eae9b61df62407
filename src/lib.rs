//! kabench measures what Ollama's `keep_alive` costs and buys: cold starts against
//! idle VRAM. Data flows one way:
//!
//! ```text
//! scenario.toml -> scenario::load -> Plan{cells}
//!   run::target (sim | live Ollama) -> run::CellLoop, per cell:
//!     unload all -> driver.run_cell -> count loads, cell times -> run.json
//!       open_loop: request::plan_sends (workload) -> request bodies -> ollama::client
//!       closed_loop: goose users -> ollama::stream (NDJSON read as it arrives)
//!         | request::fill_row (cold rule)          telemetry -> VramSample
//!         v                                                v
//!     run::recorder -> folder::RunFolder (requests.csv, vram.csv, run.json)
//! ------------------------------- run folder on disk (the only interface) ------------------------
//! analysis::read::read_run (rows summarized, or a prediction's policy table as written)
//!   -> Summary -> recommend -> report::render, compare
//!   (run.json carries [cost], [slo], the simulated host and fits together?: the report
//!   needs no scenario, planner or scheduler; schema/ holds run.json's and summary.json's)
//! folder::read -> calibrate -> catalogue overrides + [sim] host settings -> sim
//! traffic (request log) -> predict (sched on a virtual clock) -> folder::RunFolder -> report
//! catalogue | live sizes -> plan (sched's size and admission rules, sched replayed) -> table
//!   --check: a generated scenario -> run -> a run folder -> plan::observe (and report)
//! sharded: shard (i/N, barrier) -> request::plan_slice (one global schedule, sliced) -> run
//!   -> shard-<i>-of-<N>/ (+ histograms/*.hdr) -> fleet::merge -> one run folder -> report
//!   fleet::launch (N local shard processes, one shared target); fleet::manifest (k8s, Slurm)
//! ```

#![warn(missing_docs)]

pub mod analysis;
pub mod cli;
pub mod cmd;
pub mod doctor;
pub mod engine;
pub mod fleet;
pub mod folder;
pub mod llama;
pub mod ollama;
pub mod plan;
pub mod predict;
pub mod proxy;
pub mod recommend;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod shard;
pub mod telemetry;
pub mod traffic;
pub mod units;
pub mod workload;
