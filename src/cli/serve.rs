//! The arguments of the subcommands that serve or probe: `sim`, `models`, `doctor` and
//! `proxy`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{HostArgs, ServerArgs, parse};
use crate::units::KeepAlive;

/// `kabench sim`. Like Ollama's server, it reads the server settings from the
/// environment too (the flags win), and takes `--keep-alive` for OLLAMA_KEEP_ALIVE.
#[derive(Debug, Args)]
#[command(
    mut_arg("max_loaded_models", |a| a.env("OLLAMA_MAX_LOADED_MODELS")),
    mut_arg("num_parallel", |a| a.env("OLLAMA_NUM_PARALLEL")),
    mut_arg("server_keep_alive", |a| a.env("OLLAMA_KEEP_ALIVE").visible_alias("keep-alive")),
)]
pub struct SimArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:11434")]
    pub listen: SocketAddr,
    /// Take the simulated host from this scenario's [sim] section (flags override it).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// VRAM, GPUs, model cap.
    #[command(flatten)]
    pub host: HostArgs,
    /// Parallel slots, the server's keep_alive.
    #[command(flatten)]
    pub server: ServerArgs,
    /// OLLAMA_MAX_QUEUE.
    #[arg(long, env = "OLLAMA_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// OLLAMA_CONTEXT_LENGTH (0 = by VRAM).
    #[arg(long, env = "OLLAMA_CONTEXT_LENGTH")]
    pub context_length: Option<u32>,
    /// OLLAMA_LOAD_TIMEOUT.
    #[arg(long, env = "OLLAMA_LOAD_TIMEOUT", value_parser = parse::duration)]
    pub load_timeout: Option<Duration>,
    /// Every load reads at page-cache speed (models already in the OS cache).
    #[arg(long)]
    pub page_cache_warm: bool,
    /// Stand in for the host of this kabench run folder: its models' measured load
    /// times, speeds and resident sizes, and CPU-only when /api/ps showed no VRAM.
    #[arg(long, value_name = "RUN_DIR")]
    pub calibrate: Option<PathBuf>,
    /// Seed for jitter and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of requests answered 500 before the first byte (0–1).
    #[arg(long)]
    pub fault_500: Option<f64>,
    /// Share of streams ending with an {"error":…} line mid-stream.
    #[arg(long)]
    pub fault_midstream_error: Option<f64>,
    /// Share of connections dropped mid-stream.
    #[arg(long)]
    pub fault_drop_connection: Option<f64>,
    /// Share of streams decoding slower.
    #[arg(long)]
    pub fault_slow_stream: Option<f64>,
    /// Share of loads that stall (see --fault-stall).
    #[arg(long)]
    pub fault_stalled_load: Option<f64>,
    /// How long a stalled load stalls, e.g. 30s.
    #[arg(long, value_parser = parse::duration)]
    pub fault_stall: Option<Duration>,
    /// Share of loads that fail with 500.
    #[arg(long)]
    pub fault_failed_load: Option<f64>,
    /// Added before the first byte of every answer, e.g. 300ms (at most 60s): a slower
    /// server for `kabench compare` to catch.
    #[arg(long, value_parser = parse::duration)]
    pub fault_delay: Option<Duration>,
    /// How long after each reply the scheduler learns that the request ended, e.g. 2s
    /// (at most 10s): the model's new expiry is set that much later, as on a busy host.
    #[arg(long, value_parser = parse::duration)]
    pub fault_finish_lag: Option<Duration>,
}

/// `kabench models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Context per slot used for the resident size.
    #[arg(long, default_value_t = 4096)]
    pub num_ctx: u32,
    /// Also print where each figure comes from.
    #[arg(long)]
    pub sources: bool,
}

/// The kind of server `kabench doctor` probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DoctorKind {
    /// Ollama: keep_alive and the load options.
    #[default]
    Ollama,
    /// llama.cpp's llama-server with --sleep-idle-seconds: wake cost, memory freed,
    /// the sleep timer, and which polling keeps it awake.
    LlamaServer,
    /// llama.cpp's router mode (many models): load and wake cost, per-model sleep,
    /// whether polling /models keeps a model awake, the --models-max cap.
    LlamaRouter,
    /// llama-swap: cold start, the per-model ttl, whether polling /running keeps a
    /// model loaded.
    LlamaSwap,
}

/// `kabench doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The server to probe (`host:port`, `http://…`), or `sim` for the embedded
    /// simulator (Ollama only). Default: $OLLAMA_HOST, else 127.0.0.1:11434 (Ollama);
    /// 127.0.0.1:8080 (llama-server, llama-router, llama-swap).
    #[arg(long)]
    pub target: Option<String>,
    /// What the target is: `ollama`, `llama-server` (llama.cpp, one model, started
    /// with --sleep-idle-seconds), `llama-router` (llama.cpp's router mode) or
    /// `llama-swap`.
    #[arg(long, value_enum, default_value_t = DoctorKind::Ollama)]
    pub target_kind: DoctorKind,
    /// llama-server: its process id, for the memory sleep frees (default: the process
    /// listening on the target's port, when the target is on this machine).
    #[arg(long)]
    pub pid: Option<u32>,
    /// llama-server, llama-router, llama-swap: the longest to wait for the model to
    /// fall asleep or be unloaded, seconds (1 to 86400).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub max_wait: Option<u64>,
    /// The model to probe (default: Ollama's smallest installed model that generates;
    /// the router's and llama-swap's first model listed).
    #[arg(long)]
    pub model: Option<String>,
    /// An embedding model for the /api/embed and /v1/embeddings checks.
    #[arg(long)]
    pub embed_model: Option<String>,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the requests it would send and the loads, unloads and num_ctx changes
    /// they make, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the checks that may evict a model found loaded (a probe model loaded beside
    /// it can pass OLLAMA_MAX_LOADED_MODELS); what they evict is loaded again at the
    /// end. Without it those checks are skipped, and the report says which. On
    /// llama-router and llama-swap: load the model beside others found running, and
    /// (router) load a second model to see the --models-max eviction.
    #[arg(long)]
    pub allow_evict: bool,
}

/// `kabench proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on; point the app's OLLAMA_HOST here.
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: SocketAddr,
    /// The Ollama to forward to. Default: $OLLAMA_HOST, else 127.0.0.1:11434.
    #[arg(long, value_parser = parse::ollama_host)]
    pub upstream: Option<reqwest::Url>,
    /// Folder for the request log (proxy-requests.csv).
    #[arg(long)]
    pub out: PathBuf,
    /// Set this keep_alive on every native request that passes (e.g. 10m, -1), to try
    /// a policy on the real app.
    #[arg(long, value_parser = parse::keep_alive, allow_hyphen_values = true)]
    pub rewrite_keep_alive: Option<KeepAlive>,
    /// No warnings on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write into an --out folder that is not empty, replacing the proxy's log and run
    /// files there (without it, a non-empty --out is refused: it may hold a run).
    #[arg(long)]
    pub force: bool,
    /// The most client connections open at once; one more waits until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (an idle connection
    /// included) or the next part of its body before the proxy closes it.
    #[arg(long, value_parser = parse::duration, default_value = "30s")]
    pub read_timeout: Duration,
    /// The most request-body bytes buffered by all requests at once (each body is read
    /// whole before it is forwarded; one that does not fit waits, then gets a 503).
    #[arg(long, value_parser = parse::bytes, default_value = "256MiB")]
    pub max_buffered: u64,
    /// How long open requests may run on after Ctrl-C or SIGTERM before they are cut
    /// (logged `cut_at_shutdown`).
    #[arg(long, value_parser = parse::duration, default_value = "5s")]
    pub grace: Duration,
}
