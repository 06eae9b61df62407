//! The simulated Ollama, in one room: the scheduler model (`sched`, a pure state
//! machine over a clock), the model catalogue (`catalogue`), the host settings a
//! scenario's `[sim]` turns into (`sim_settings`), calibration of those from a measured
//! run folder (`calibrate`), and the HTTP server that serves it all on a real clock
//! (`sim`). `predict` and `plan` drive `sched` on a virtual clock; `run` starts `sim`
//! when a scenario names no target. Reads the scenario's typed settings and run
//! folders; knows nothing of runs, analysis or reports.

pub mod calibrate;
pub mod catalogue;
pub mod sched;
pub mod sim;
pub mod sim_settings;
