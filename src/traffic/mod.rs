//! Inputs of `kabench predict`: a user's real traffic, read as a stream of requests in
//! time order. One reader per format (`request_log`: a request-log CSV; `ollama_log`:
//! Ollama's own server log; `trace`: ServeGen windows and Mooncake JSON Lines, and the
//! `--slice`/`--client` cut of any input; `streams`: a scenario's streams run for a
//! horizon), each a [`Source`]. A reader first
//! scans its file once (row count, time span, order, models, SHA-256: memory stays flat)
//! and then streams the requests; only an input out of time order is held whole, to be
//! sorted, and the scan says so. Knows nothing of the scheduler or of policies.

pub mod ollama_log;
pub mod request_log;
pub mod streams;
pub mod trace;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::units::KeepAlive;

/// One request of the input, as the replay needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Seconds since the input's first request, after the time scale.
    pub t: f64,
    /// Index into [`Scan::models`].
    pub model: u32,
    /// Prompt tokens, when the input says.
    pub prompt_tokens: Option<u32>,
    /// Output tokens, when the input says.
    pub output_tokens: Option<u32>,
    /// `options.num_ctx` the client sent, when the input says.
    pub num_ctx: Option<u32>,
    /// Index into [`Scan::clients`], when the input names clients.
    pub client: Option<u32>,
    /// Index into [`Scan::keep_alives`]: what the client sent; `None` sent none.
    pub keep_alive: Option<u32>,
    /// Measured time from the model being ready to the response's end, seconds, when
    /// the input says (a server log: the latency less the load it waited for); the
    /// replay then serves the request in this time instead of the host model's.
    pub service_s: Option<f64>,
    /// A prompt to serve, or a control call with an empty prompt (a load, an unload).
    pub kind: Kind,
}

/// What a request asks of the server, by Ollama's rules for an empty prompt (M7, E6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// A prompt, chat or embedding to answer.
    #[default]
    Serve,
    /// An empty prompt (or no messages, or no input): load the model, then done.
    Load,
    /// An empty prompt or no messages with keep_alive 0: unload the model, load nothing.
    Unload,
}

impl Kind {
    /// How a log writes it: `serve`, `load`, `unload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Serve => "serve",
            Kind::Load => "load",
            Kind::Unload => "unload",
        }
    }

    /// Reads a log's value (case ignored; empty is `serve`).
    pub fn parse(text: &str) -> Option<Kind> {
        let t = text.trim();
        [Kind::Serve, Kind::Load, Kind::Unload]
            .into_iter()
            .find(|k| t.eq_ignore_ascii_case(k.as_str()))
            .or(t.is_empty().then_some(Kind::Serve))
    }
}

/// What one pass over an input found, before any request is replayed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Data rows read (requests).
    pub rows: u64,
    /// Whether the rows were already in time order.
    pub sorted: bool,
    /// Seconds between the first and the last request, after the time scale.
    pub span_s: f64,
    /// The first request's time as written (for `run.json`).
    pub first: String,
    /// The last request's time as written.
    pub last: String,
    /// Model names, in order of first appearance.
    pub models: Vec<String>,
    /// Per model, the `num_ctx` of its first request that sent one.
    pub model_ctx: Vec<Option<u32>>,
    /// Per model, its requests.
    pub model_rows: Vec<u64>,
    /// Client names, in order of first appearance.
    pub clients: Vec<String>,
    /// Distinct keep_alive values the clients sent, as written.
    pub keep_alives: Vec<KeepAlive>,
    /// Whether the input has a `keep_alive` column ("as sent today" can be replayed).
    pub has_keep_alive: bool,
    /// The header.
    pub columns: Vec<String>,
    /// Things a user should know about the input (sorted, duplicates, future times).
    pub notes: Vec<String>,
    /// The input's format, in words (`request-log CSV`, `Ollama server log`).
    pub format: String,
}

/// The requests of an input in time order, streamed.
pub type RequestIter = Box<dyn Iterator<Item = Result<Request, TrafficError>> + Send>;

/// An unload the server itself logged, on the replay's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedUnload {
    /// Seconds since the input's first request, after the time scale.
    pub t: f64,
    /// Index into [`Scan::models`].
    pub model: u32,
    /// Unloaded to make room for another model; otherwise its keep_alive expired.
    pub evicted: bool,
}

/// An input, scanned: what the replay reads.
pub trait Source: Sync {
    /// What the scan found.
    fn scan(&self) -> &Scan;
    /// The requests in time order.
    fn requests(&self) -> Result<RequestIter, TrafficError>;
    /// The unloads the server logged, when the input records them (a server log with
    /// debug lines), to check the predicted ones against.
    fn logged_unloads(&self) -> Option<&[LoggedUnload]> {
        None
    }
}

/// The most requests of an input out of time order that are sorted in memory (about
/// 64 bytes each); a longer one is refused: sort it first.
pub const MAX_SORTED_ROWS: u64 = 4_000_000;

/// Checks seconds read from `path`'s `line`, `column` (after the time scale) as a
/// duration: finite, not negative, at most 100 years
/// ([`crate::units::limits::duration_from_secs`]); the error names the file, line and
/// field (exit 2).
pub(crate) fn checked_secs(
    path: &std::path::Path,
    line: u64,
    column: &str,
    written: &str,
    secs: f64,
) -> Result<f64, TrafficError> {
    crate::units::limits::duration_from_secs(secs, "as seconds")
        .map(|_| secs)
        .map_err(|e| TrafficError::Value {
            path: path.to_path_buf(),
            line,
            column: column.to_string(),
            value: written.to_string(),
            expected: format!("a time the replay can hold ({})", e.message),
        })
}

/// Opens `path` for a reader: every line bounded at
/// [`crate::units::limits::MAX_LINE_BYTES`].
pub(crate) fn open_bounded(
    path: &std::path::Path,
) -> Result<crate::units::limits::LineBounded<std::fs::File>, TrafficError> {
    std::fs::File::open(path)
        .map(crate::units::limits::LineBounded::new)
        .map_err(|e| TrafficError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// At most the first 20 of `names`, each cut to an excerpt, and how many more: what
/// an error lists of a file's clients or models, however many it has.
pub fn some_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut shown = Vec::new();
    let mut more = 0u64;
    for n in names {
        if shown.len() < 20 {
            shown.push(format!("\"{}\"", crate::units::limits::excerpt(n)));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    shown.join(", ")
}

/// Interns `name` into `list`, returning its index.
pub(crate) fn intern(map: &mut HashMap<String, u32>, list: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&i) = map.get(name) {
        return i;
    }
    let i = list.len() as u32;
    list.push(name.to_string());
    map.insert(name.to_string(), i);
    i
}

/// An input that cannot be replayed; every one is bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Nothing in it, or a header and no request.
    #[error("{path} is empty: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// No column holds the request times.
    #[error(
        "{path} has no timestamp column; its columns are: {columns}. Name the column of request times `timestamp` (RFC 3339, or epoch seconds or milliseconds)"
    )]
    NoTimestamp {
        /// The file.
        path: PathBuf,
        /// The header, comma-separated.
        columns: String,
    },
    /// No model column and no `--model`.
    #[error(
        "{path} names no model (no `model` column) and no --model was given: say which model served these requests, e.g. --model qwen2.5:7b-instruct-q4_K_M"
    )]
    NoModel {
        /// The file.
        path: PathBuf,
    },
    /// A server log whose access lines name no model (no debug lines before them) and no `--model`.
    #[error(
        "{path}:{line}: this access line names no model (Ollama's access lines never do, and no OLLAMA_DEBUG scheduler line before it named one) and no --model was given: say which model served these requests, e.g. --model qwen2.5:7b-instruct-q4_K_M"
    )]
    NoModelInLog {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
    },
    /// The input needs a choice the command line did not make (a client, a model).
    #[error("{path}: {what}")]
    Choose {
        /// The file.
        path: PathBuf,
        /// What to choose, and from what.
        what: String,
    },
    /// `--strict`: a line that starts as a known form and cannot be read.
    #[error(
        "{path}:{line}: cannot read this line: {why} (without --strict such lines are skipped and counted)"
    )]
    Unparsable {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// A cell that cannot be read as what its column holds.
    #[error("{path}:{line}: column `{column}`: \"{}\" is not {expected}", crate::units::limits::excerpt(.value))]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line of the file.
        line: u64,
        /// The column.
        column: String,
        /// The cell as written.
        value: String,
        /// What is allowed.
        expected: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_input_are_checked_with_their_place() {
        let p = std::path::Path::new("x.csv");
        assert_eq!(checked_secs(p, 3, "timestamp", "10", 10.0).unwrap(), 10.0);
        let err = checked_secs(p, 3, "timestamp", "1e300", 1e300)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.csv:3: column `timestamp`"), "{err}");
        assert!(err.contains("1e300 s is over the limit"), "{err}");
    }

    #[test]
    fn long_name_lists_are_cut() {
        let names: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        let shown = some_names(names.iter().map(String::as_str));
        assert!(shown.ends_with("and 10 more"), "{shown}");
        let long = "z".repeat(1000);
        assert!(some_names([long.as_str()]).len() < 120);
    }
}
