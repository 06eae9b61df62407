//! The traffic `kabench predict` replays, opened: a request log, Ollama's server log,
//! a public trace, or a scenario's streams over a horizon; cut to a slice of its time
//! and to some clients. A server log also says how the server ran, and that is laid
//! under the flags. Every error here is the user's input, in words that say what to
//! give instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::sim_settings::SimSettings;
use crate::traffic::Source;
use crate::traffic::ollama_log::{LogOptions, OllamaLog};
use crate::traffic::request_log::{ReadOptions, RequestLog, TimeUnit};
use crate::traffic::{streams, trace};
use crate::units::KeepAlive;

/// What to replay and how to read it (`kabench predict`'s input flags).
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// A request log CSV.
    pub requests: Option<PathBuf>,
    /// Ollama's server log.
    pub ollama_log: Option<PathBuf>,
    /// A public trace (ServeGen, Mooncake, or per-request CSV).
    pub trace: Option<PathBuf>,
    /// Replay the scenario's streams for this long.
    pub horizon: Option<Duration>,
    /// The scenario whose streams `horizon` replays.
    pub scenario: Option<PathBuf>,
    /// Only this part of the input's time, in seconds from its start.
    pub slice: Option<(f64, f64)>,
    /// Only these clients.
    pub clients: Vec<String>,
    /// The server log's UTC offset.
    pub tz: Option<time::UtcOffset>,
    /// Stop at the first server-log line that cannot be read.
    pub strict: bool,
    /// The model of rows that name none (for a trace: comma-separated, per client).
    pub model: Option<String>,
    /// Multiplies every gap.
    pub time_scale: f64,
    /// Unit of numeric timestamps.
    pub unit: TimeUnit,
    /// Seed of a trace's generated arrivals.
    pub seed: u64,
}

/// An opened input, and what its server log told of the server (in words).
pub struct Opened {
    /// The requests, in time order.
    pub source: Box<dyn Source + Send>,
    /// The server settings taken from a server log, for the host's description.
    pub taken: Vec<String>,
}

/// Opens the input; a server log's settings go into `settings` (and its measured load
/// times too, unless `log_loads` is false because a run folder calibrates the host).
pub fn open(input: &Input, settings: &mut SimSettings, log_loads: bool) -> Result<Opened, String> {
    let mut taken = Vec::new();
    let mut native_clients = false;
    let source: Box<dyn Source + Send> = match (&input.requests, &input.ollama_log, &input.trace) {
        (Some(path), _, _) => Box::new(request_log(input, path)?),
        (None, Some(path), _) => {
            let log = OllamaLog::open(
                path,
                LogOptions {
                    model: input.model.clone(),
                    tz: input.tz,
                    strict: input.strict,
                    time_scale: input.time_scale,
                },
            )
            .map_err(|e| e.to_string())?;
            taken = apply_log_settings(&log, settings, log_loads);
            Box::new(log)
        }
        (None, None, Some(path)) => {
            let (source, native) = open_trace(input, path)?;
            native_clients = native;
            source
        }
        (None, None, None) => open_streams(input)?,
    };
    let clients: &[String] = if native_clients { &[] } else { &input.clients };
    let source: Box<dyn Source + Send> = if input.slice.is_some() || !clients.is_empty() {
        Box::new(
            trace::Filtered::new(source, input.slice, input.time_scale, clients)
                .map_err(|e| e.to_string())?,
        )
    } else {
        source
    };
    Ok(Opened { source, taken })
}

/// A per-request CSV (kabench's request log, or a trace in its columns).
fn request_log(input: &Input, path: &Path) -> Result<RequestLog, String> {
    let options = ReadOptions {
        model: input.model.clone(),
        time_scale: input.time_scale,
        unit: input.unit,
    };
    RequestLog::open(path, options).map_err(|e| e.to_string())
}

/// A public trace, by its form; true when it names its own clients (ServeGen).
fn open_trace(input: &Input, path: &Path) -> Result<(Box<dyn Source + Send>, bool), String> {
    let options = trace::TraceOptions {
        models: input
            .model
            .iter()
            .flat_map(|m| m.split(','))
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        clients: input.clients.clone(),
        time_scale: input.time_scale,
        seed: input.seed,
    };
    Ok(match trace::detect(path).map_err(|e| e.to_string())? {
        "servegen" => (
            Box::new(trace::ServeGen::open(path, options).map_err(|e| e.to_string())?),
            true,
        ),
        "mooncake" => (
            Box::new(trace::Mooncake::open(path, options).map_err(|e| e.to_string())?),
            false,
        ),
        _ => (Box::new(request_log(input, path)?), false),
    })
}

/// The scenario's streams over the horizon.
fn open_streams(input: &Input) -> Result<Box<dyn Source + Send>, String> {
    let (Some(path), Some(horizon)) = (&input.scenario, input.horizon) else {
        return Err(match input.horizon {
            Some(_) => "--horizon replays the streams of --scenario FILE: give both".into(),
            None => {
                "give the traffic: --requests FILE.csv, --ollama-log FILE or --trace FILE".into()
            }
        });
    };
    if horizon.is_zero() {
        return Err("--horizon 0: give how long the streams send, e.g. 7d".into());
    }
    Ok(Box::new(
        streams::Streams::open(path, horizon, input.time_scale).map_err(|e| e.to_string())?,
    ))
}

/// Lays a server log's settings under the flags: its `server config` line's
/// OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS and OLLAMA_NUM_PARALLEL, and (when
/// `loads`) each model's median measured load time. Returns what was taken, in words.
fn apply_log_settings(log: &OllamaLog, settings: &mut SimSettings, loads: bool) -> Vec<String> {
    let mut taken = Vec::new();
    if let Some(ka) = log.setting("OLLAMA_KEEP_ALIVE")
        && KeepAlive::parse(ka).is_ok()
    {
        settings.keep_alive = Some(ka.to_string());
        taken.push(format!("OLLAMA_KEEP_ALIVE={ka}"));
    }
    if let Some(n) = log
        .setting("OLLAMA_MAX_LOADED_MODELS")
        .and_then(|v| v.parse::<u32>().ok())
    {
        settings.max_loaded_models = Some(n);
        taken.push(format!("OLLAMA_MAX_LOADED_MODELS={n}"));
    }
    if let Some(n) = log
        .setting("OLLAMA_NUM_PARALLEL")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
    {
        settings.num_parallel = Some(n);
        taken.push(format!("OLLAMA_NUM_PARALLEL={n}"));
    }
    if !taken.is_empty() {
        taken = vec![format!(
            "{} from the log's server config line",
            taken.join(" ")
        )];
    }
    if loads {
        let catalogue = settings.catalogue();
        for (model, median, n) in log.load_medians() {
            if !log.scan().models.contains(&model) {
                continue;
            }
            if let Some(spec) = catalogue.resolve(&model) {
                let mut spec = spec.clone();
                spec.load_s = Some(median);
                spec.source = format!(
                    "load time: the median of {n} `llama-server started in … seconds` lines of {}; the rest: {}",
                    log.scan().path.display(),
                    spec.source
                );
                taken.push(format!(
                    "{model} loading in {median:.2} s (median of {n} `llama-server started` lines)"
                ));
                settings.models.push(spec);
            }
        }
    }
    taken
}
