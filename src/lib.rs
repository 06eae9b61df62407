//! kabench measures what Ollama's `keep_alive` costs and buys: cold starts against
//! idle VRAM. Data flows one way:
//!
//! ```text
//! scenario.toml -> scenario::load -> Plan{cells}
//!   per cell: workload::send_offsets -> runner::run_cell -> target (ollama::client -> Ollama | sim(sched))
//!                                          | RequestRecord         telemetry -> VramSample
//!                                          v                                  v
//!                               record::RunWriter (requests.csv, vram.csv, run.json)
//! ------------------------------- run folder on disk (the only interface) ------------------------
//! record::read -> analysis::summarize -> Summary -> recommend -> report::render
//! record::read -> calibrate -> catalogue overrides + [sim] host settings -> sim
//! ```

#![warn(missing_docs)]

pub mod analysis;
pub mod calibrate;
pub mod catalogue;
pub mod cli;
pub mod doctor;
pub mod ollama;
pub mod predict;
pub mod progress;
pub mod proxy;
pub mod recommend;
pub mod record;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sched;
pub mod session;
pub mod sim;
pub mod sim_settings;
pub mod swarm;
pub mod telemetry;
pub mod traffic;
pub mod units;
pub mod workload;
