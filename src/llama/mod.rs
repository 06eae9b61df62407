//! llama.cpp's HTTP servers, as kabench drives them: which kind of server it is and
//! where it tells residency (`kind`: `llama-server` with one model, its router mode,
//! llama-swap in front of it), the HTTP client (`client`: `/health`, `/props`, the
//! streamed OpenAI-compatible `/v1/chat/completions`), and a server kabench starts
//! itself per swept value and stops after (`server`: command template, log file,
//! SIGTERM then SIGKILL). Knows nothing of scenarios or run folders.
//!
//! For the router and llama-swap: one cell's config file and cold check (`cell`), the
//! typed readers of their residency (`router`: the router's `GET /models`; `swap`: llama-swap's `GET /running` and model list), what
//! each logs about loads, evictions, sleep and TTL unloads (`router_log`, `swap_log`),
//! the configuration kabench writes for a swept value (`preset`: the router's
//! `--models-preset` INI; `swap_config`: llama-swap's YAML), how the `idle_unload`
//! axis maps onto each knob (`knob`), model ids either server accepts (`id`), the
//! bounded status calls (`fetch`) and the one way a config file is written (`write`).

pub mod cell;
pub mod client;
pub mod fetch;
pub mod id;
pub mod kind;
pub mod knob;
pub mod preset;
pub mod router;
pub mod router_log;
pub mod server;
pub mod swap;
pub mod swap_config;
pub mod swap_log;
pub mod write;

pub use client::{ChatExchange, Endpoint, LlamaClient, Props};
pub use kind::{ModelResidency, ServerKind};
pub use server::{ManagedServer, ServerError};
