//! llama.cpp's HTTP servers, as kabench drives them: which kind of server it is and
//! where it tells residency (`kind`: `llama-server` with one model, its router mode,
//! llama-swap in front of it), the HTTP client (`client`: `/health`, `/props`, the
//! streamed OpenAI-compatible `/v1/chat/completions`), and a server kabench starts
//! itself per swept value and stops after (`server`: command template, log file,
//! SIGTERM then SIGKILL). Knows nothing of scenarios or run folders.

pub mod client;
pub mod kind;
pub mod server;

pub use client::{ChatExchange, LlamaClient, Props};
pub use kind::{ModelResidency, ServerKind};
pub use server::{ManagedServer, ServerError};
