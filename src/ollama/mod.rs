//! Ollama's HTTP API: the wire shapes (`api`), shared by the client and the simulator;
//! model names as Ollama compares them (`name`); and talking to a live Ollama or to
//! `kabench sim`: errors (`error`), the limits on a call (`bounds`), `OLLAMA_HOST` (`host`), the NDJSON decoder
//! (`ndjson`), the streamed-response reader (`stream`) and the client (`client`: its own HTTP/1 connections for `http://`
//! targets (`conn`), reqwest for `https://` targets and pulls).

pub mod api;
pub mod bounds;
pub mod client;
pub mod conn;
pub mod error;
pub mod host;
pub mod name;
pub mod ndjson;
pub mod stream;

pub use client::OllamaClient;
pub use error::{ClientError, ErrorKind};
pub use stream::Exchange;
