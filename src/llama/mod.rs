//! llama.cpp's router mode and llama-swap, the two model-juggling servers kabench
//! measures beside Ollama: what each says about residency (`router`: the router's
//! `GET /models`; `swap`: llama-swap's `GET /running` and model list), what each logs
//! about loads, evictions, sleep and TTL unloads (`router_log`, `swap_log`), the
//! configuration kabench writes for a swept value (`preset`: the router's
//! `--models-preset` INI; `swap_config`: llama-swap's YAML), how the `idle_unload`
//! axis maps onto each knob (`knob`), model ids either server accepts (`id`), the
//! bounded status calls (`fetch`) and the one place a config file is written
//! (`write`).

pub mod fetch;
pub mod id;
pub mod knob;
pub mod preset;
pub mod router;
pub mod router_log;
pub mod swap;
pub mod swap_config;
pub mod swap_log;
pub mod write;
