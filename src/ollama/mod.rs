//! Ollama's HTTP API: the wire shapes (`api`), shared by the client and the simulator,
//! and the reqwest client (`client`) that talks to a live Ollama or to `kabench sim`.

pub mod api;
pub mod client;
pub mod name;

pub use client::{ClientError, ErrorKind, OllamaClient};
