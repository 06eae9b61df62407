//! The integration tests, one binary: each module drives the real `kabench` binary (or
//! the library) over real loopback HTTP, against the embedded simulator and, where
//! `../shared/ollama` is beside the checkout, against a real Ollama. One binary links
//! the crate once; run one module with `cargo test --test it <module>::`.

mod bad_input;
mod common;
mod compare;
mod compare_sig;
mod contract;
mod differential;
mod doctor;
mod doctor_llama;
mod doctor_safe;
mod fleet;
mod fleet_late;
mod fleet_manifest;
mod fleet_real;
mod fleet_slurm;
mod horizon;
mod host_state;
mod hostile;
mod hostile_doctor;
mod hostile_fleet;
mod hostile_merge;
mod hostile_predict;
mod hostile_proxy;
mod hostile_report;
mod layers;
mod llama_kinds;
mod llama_router;
mod llama_server;
mod plan;
mod plan_cap;
mod predict;
mod predict_v2;
mod prometheus_real;
mod proxy;
mod proxy_predict;
mod proxy_prod;
mod ps_adaptive;
mod real_ollama;
mod reload;
mod repeat;
mod report;
mod report_text;
mod run;
mod schema;
mod shard_schedule;
mod sim_cpu;
mod sim_http;
mod sim_openai;
mod sim_rules;
mod snapshot;
mod swarm;
mod telemetry;
mod uncertainty;
mod validate_fixtures;
