//! Ollama's own server log (`journalctl -u ollama`, `~/.ollama/logs/server.log`): Gin's
//! access lines are the requests (`[GIN] 2026/05/22 - 17:28:26 | 200 | 2.843912s |
//! 10.0.0.192 | POST "/api/chat"`: the time is when the response ended, local time,
//! whole seconds, so a request started at that time minus its latency, a Go duration);
//! the scheduler's lines give measured loads (`llama-server started in 5.42 seconds`,
//! older `llama runner started in …`) and, with `OLLAMA_DEBUG=1`, the server's own
//! unloads (`timer expired, expiring to unload`, `runner with zero duration has gone
//! idle, expiring to unload`, `found an idle runner to unload`) and which model each
//! request used (the model the scheduler named since the previous access line). The
//! `server config` line gives OLLAMA_KEEP_ALIVE and the other settings the server ran
//! with. Every other line is skipped and counted; a line that starts as one of these
//! but cannot be read is unparsable (`--strict` stops there, naming its line).
//!
//! The access line's local time is turned into UTC with `--tz`, else with the offset of
//! the nearest structured (`time=…`) line before it, else the first one in the log,
//! else UTC (with a note). Requests leave the log in end order; they are replayed in
//! start order through a buffer as deep as the longest latency, so memory stays flat.
//!
//! The log is one state machine: a line's meaning (which model a request used, whether a
//! load was the server's own) depends on the lines before it. `lines` reads one line into
//! what it says; this file keeps the running state and the scan; `stream` replays the
//! requests in start order. Over 600 lines because the state and its scan read best
//! together.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{LoggedUnload, Request, RequestIter, Scan, Source, TrafficError};

mod lines;
mod stream;

use lines::*;
pub use lines::{
    Access, LogOptions, LoggedLoad, field, go_duration_seconds, parse_access, parse_tz,
    short_model_name,
};

/// The line-by-line state both passes share: offsets and model attribution.
struct Reader {
    path: PathBuf,
    options: LogOptions,
    /// Offset of the nearest structured line before.
    offset: Option<time::UtcOffset>,
    /// Offset when no structured line came before (the scan's first).
    first_offset: Option<time::UtcOffset>,
    /// Blob path → model name.
    names: HashMap<String, String>,
    /// The model the scheduler last named since the previous access line.
    using: Option<String>,
    /// A load read, waiting for its `finished setting up`.
    pending_load: Option<f64>,
    /// Seconds of load since the previous access line.
    loaded: f64,
    line: u64,
    skipped: u64,
    unparsable: u64,
    /// The first unparsable line and why, for the note.
    first_unparsable: Option<(u64, String)>,
    other_access: u64,
    refused: u64,
}

/// What a line means to the passes.
enum Event {
    Request {
        start: f64,
        end: f64,
        model: String,
        client: String,
        /// The latency less the load the request waited for.
        service: f64,
    },
    Unload {
        t: f64,
        model: String,
        evicted: bool,
        /// Also a timer of keep_alive 0 (the request that left it idle sent 0).
        zero: bool,
    },
    /// The keep_alive in force as the model went idle (a debug timer line), seconds.
    Timer {
        model: String,
        seconds: f64,
    },
    Load(LoggedLoad),
    Config(Vec<(String, String)>),
    None,
}

impl Reader {
    fn new(path: &Path, options: LogOptions, first_offset: Option<time::UtcOffset>) -> Reader {
        Reader {
            path: path.to_path_buf(),
            options,
            offset: None,
            first_offset,
            names: HashMap::new(),
            using: None,
            pending_load: None,
            loaded: 0.0,
            line: 0,
            skipped: 0,
            unparsable: 0,
            first_unparsable: None,
            other_access: 0,
            refused: 0,
        }
    }

    fn named(&self, model: &str) -> String {
        self.names
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }

    fn take_load(&mut self, model: Option<String>) -> Event {
        match self.pending_load.take() {
            Some(seconds) => Event::Load(LoggedLoad { model, seconds }),
            None => Event::None,
        }
    }

    fn read(&mut self, text: &str) -> Result<Event, TrafficError> {
        self.line += 1;
        let line = match classify(text) {
            Ok(l) => l,
            Err(why) => {
                self.unparsable += 1;
                if self.first_unparsable.is_none() {
                    self.first_unparsable = Some((self.line, why.clone()));
                }
                if self.options.strict {
                    return Err(TrafficError::Unparsable {
                        path: self.path.clone(),
                        line: self.line,
                        why,
                    });
                }
                return Ok(Event::None);
            }
        };
        match line {
            Line::Skipped => {
                self.skipped += 1;
                Ok(Event::None)
            }
            Line::OtherAccess => {
                self.other_access += 1;
                Ok(Event::None)
            }
            Line::Request {
                end_local,
                latency_s,
                status,
                client,
            } => {
                let using = self.using.take();
                let loaded = std::mem::take(&mut self.loaded);
                // A request refused with 4xx never reached the scheduler.
                if (400..500).contains(&status) {
                    self.refused += 1;
                    return Ok(Event::None);
                }
                let offset = self
                    .options
                    .tz
                    .or(self.offset)
                    .or(self.first_offset)
                    .unwrap_or(time::UtcOffset::UTC);
                let end = end_local - f64::from(offset.whole_seconds());
                let model = match using.map(|m| self.named(&m)).or(self.options.model.clone()) {
                    Some(m) => m,
                    None => {
                        return Err(TrafficError::NoModelInLog {
                            path: self.path.clone(),
                            line: self.line,
                        });
                    }
                };
                Ok(Event::Request {
                    start: end - latency_s,
                    end,
                    model,
                    client,
                    service: (latency_s - loaded).max(0.0),
                })
            }
            Line::Slog { utc, offset, event } => {
                self.offset = Some(offset);
                Ok(match event {
                    Slog::Loaded(s) => {
                        // Two lines can report one start; the second is the same load.
                        if self.pending_load.is_none() {
                            self.pending_load = Some(s);
                            self.loaded += s;
                        }
                        Event::None
                    }
                    Slog::Uses { model, path } => {
                        if let Some(p) = path {
                            self.names.insert(p, model.clone());
                        }
                        let named = self.named(&model);
                        self.using = Some(named.clone());
                        self.take_load(Some(named))
                    }
                    Slog::Unload {
                        model,
                        evicted,
                        zero,
                    } => Event::Unload {
                        t: utc,
                        model: self.named(&model),
                        evicted,
                        zero,
                    },
                    Slog::Timer { model, seconds } => Event::Timer {
                        model: self.named(&model),
                        seconds,
                    },
                    Slog::Config(env) => Event::Config(env),
                    Slog::Other => Event::None,
                })
            }
        }
    }

    /// A load with no model line after it, at the end of the log.
    fn finish(&mut self) -> Event {
        let model = self.options.model.clone();
        self.take_load(model)
    }
}

/// Lines of a file, invalid UTF-8 replaced, with the bytes hashed.
fn for_each_line(
    path: &Path,
    mut hasher: Option<&mut Sha256>,
    mut f: impl FnMut(&str) -> Result<(), TrafficError>,
) -> Result<(), TrafficError> {
    let file = super::open_bounded(path)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        line += 1;
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(path, format!("line {line}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&buf);
        }
        let text = String::from_utf8_lossy(&buf);
        f(text.trim_end_matches(['\n', '\r']))?;
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> TrafficError {
    TrafficError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The most load lines, and the most unload lines, a scan keeps (each a few dozen
/// bytes and a model name); more are counted.
pub const MAX_LOGGED_EVENTS: usize = 1_000_000;

/// An Ollama server log, scanned and ready to stream.
#[derive(Debug, Clone)]
pub struct OllamaLog {
    scan: Scan,
    options: LogOptions,
    first_offset: Option<time::UtcOffset>,
    /// The earliest request start, seconds since the epoch.
    first_abs: f64,
    /// The longest latency: how far a request can start before one already read.
    max_latency_s: f64,
    /// The server's unloads, on the replay's clock.
    unloads: Vec<LoggedUnload>,
    /// Measured loads.
    loads: Vec<LoggedLoad>,
    /// The `server config` line's `OLLAMA_*` settings (the last one).
    config: Vec<(String, String)>,
    /// Debug lines were present (unloads can be checked).
    debug: bool,
}

impl OllamaLog {
    /// Scans `path` once: requests, their models, loads, unloads, the server's
    /// settings, SHA-256. Memory holds only the loads and unloads (at most
    /// [`MAX_LOGGED_EVENTS`] of each).
    pub fn open(path: &Path, options: LogOptions) -> Result<OllamaLog, TrafficError> {
        // The first structured line's offset, for access lines before any.
        let mut first_offset = None;
        let mut hasher = Sha256::new();
        let mut bytes_seen = false;
        for_each_line(path, Some(&mut hasher), |text| {
            bytes_seen = true;
            if first_offset.is_none()
                && !text.contains("[GIN]")
                && let Ok(Line::Slog { offset, .. }) = classify(text)
            {
                first_offset = Some(offset);
            }
            Ok(())
        })?;
        if !bytes_seen {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "no lines: give the server log (journalctl -u ollama --no-pager > server.log, or ~/.ollama/logs/server.log)".into(),
            });
        }
        let mut scan = Scan {
            path: path.to_path_buf(),
            sha256: format!("{:x}", hasher.finalize()),
            sorted: true,
            format: "Ollama server log".into(),
            // Every request sent what the server applied: its OLLAMA_KEEP_ALIVE.
            has_keep_alive: true,
            columns: vec!["[GIN] access lines".into()],
            ..Scan::default()
        };
        let mut reader = Reader::new(path, options.clone(), first_offset);
        let (mut models, mut clients) = (HashMap::new(), HashMap::new());
        let (mut min, mut max_start, mut max_end, mut max_latency) =
            (f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0f64);
        let (mut first_line, mut last_line) = (None::<f64>, 0.0);
        let mut unloads_abs = Vec::new();
        // Loads and unloads past the limit are counted, not kept.
        let mut dropped = 0u64;
        let mut loads = Vec::new();
        let mut config = Vec::new();
        let mut debug = false;
        // Timer lines read, per keep_alive value (in `scan.keep_alives` order).
        let mut timer_counts: Vec<u64> = Vec::new();
        let mut timer = |values: &mut Vec<crate::units::KeepAlive>, seconds: f64| {
            let k = lines::timer_keep_alive(seconds);
            let at = match values
                .iter()
                .position(|v| v.seconds_or_infinity() == k.seconds_or_infinity())
            {
                Some(i) => i,
                None => {
                    values.push(k);
                    timer_counts.push(0);
                    values.len() - 1
                }
            };
            timer_counts[at] += 1;
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        let mut future = 0u64;
        let mut prev_end = f64::NEG_INFINITY;
        for_each_line(path, None, |text| {
            if text.contains("level=DEBUG") {
                debug = true;
            }
            match reader.read(text)? {
                Event::Request {
                    start,
                    end,
                    model,
                    client,
                    ..
                } => {
                    scan.rows += 1;
                    // Access lines are written as responses end; a log whose times go
                    // back (logs joined out of order) is sorted whole.
                    if end < prev_end {
                        scan.sorted = false;
                    }
                    prev_end = prev_end.max(end);
                    let m = super::intern(&mut models, &mut scan.models, &model) as usize;
                    if m == scan.model_rows.len() {
                        scan.model_rows.push(0);
                        scan.model_ctx.push(None);
                    }
                    scan.model_rows[m] += 1;
                    super::intern(&mut clients, &mut scan.clients, &client);
                    min = min.min(start);
                    max_start = max_start.max(start);
                    max_end = max_end.max(end);
                    max_latency = max_latency.max(end - start);
                    let first = *first_line.get_or_insert(start);
                    super::checked_secs(
                        path,
                        reader.line,
                        "time (seconds from the first request, after --time-scale)",
                        &format!("{}", (start - first) * options.time_scale),
                        (start - first).abs() * options.time_scale,
                    )?;
                    last_line = start;
                    if start > now + 60.0 {
                        future += 1;
                    }
                }
                Event::Timer { seconds, .. } => timer(&mut scan.keep_alives, seconds),
                Event::Unload {
                    t,
                    model,
                    evicted,
                    zero,
                } => {
                    if zero {
                        timer(&mut scan.keep_alives, 0.0);
                    }
                    if unloads_abs.len() < MAX_LOGGED_EVENTS {
                        unloads_abs.push((t, model, evicted));
                    } else {
                        dropped += 1;
                    }
                }
                Event::Load(l) => {
                    if loads.len() < MAX_LOGGED_EVENTS {
                        loads.push(l);
                    } else {
                        dropped += 1;
                    }
                }
                Event::Config(env) => config = env,
                Event::None => {}
            }
            Ok(())
        })?;
        if let Event::Load(l) = reader.finish() {
            loads.push(l);
        }
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: format!(
                    "none of its {} lines is an access line of an inference request ([GIN] … POST \"/api/generate\", \"/api/chat\", …); {} other access lines, {} refused with 4xx",
                    reader.line, reader.other_access, reader.refused
                ),
            });
        }
        let scale = options.time_scale;
        scan.span_s = super::checked_secs(
            path,
            reader.line,
            "time span (first to last request, after --time-scale)",
            &format!("{}", (max_start - min) * scale),
            (max_start - min) * scale,
        )?;
        let fmt = |t: f64| {
            // Microseconds: Gin's latencies print no finer, and floats hold no more.
            time::OffsetDateTime::from_unix_timestamp_nanos((t * 1e6).round() as i128 * 1000)
                .ok()
                .and_then(|d| {
                    d.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default()
        };
        scan.first = fmt(first_line.unwrap_or(min));
        scan.last = fmt(last_line);
        let offset_note = match (options.tz, first_offset) {
            (Some(tz), _) => format!("access times read at UTC{tz} (--tz)"),
            (None, Some(_)) => {
                "access times read at the UTC offset of the log's own time= lines".to_string()
            }
            (None, None) => {
                "the log has no time= lines to tell its UTC offset: access times read as UTC (give --tz if the server ran in another zone)".to_string()
            }
        };
        scan.notes.push(format!(
            "{}: {} inference requests from access lines; not replayed: {} other access lines, {} refused with 4xx; skipped: {} lines that are neither access, load, unload nor model lines; unparsable: {}; {offset_note}",
            path.display(),
            scan.rows,
            reader.other_access,
            reader.refused,
            reader.skipped,
            reader.unparsable
        ));
        if let Some((line, why)) = &reader.first_unparsable {
            scan.notes.push(format!(
                "warning: {} unparsable line(s) skipped, not replayed (the first, line {line}: {why}); --strict stops at the first instead",
                reader.unparsable
            ));
        }
        if !scan.sorted {
            crate::units::limits::check_count(
                scan.rows,
                super::MAX_SORTED_ROWS,
                "requests of a log out of time order (sorted in memory)",
            )
            .map_err(|e| TrafficError::Read {
                path: path.to_path_buf(),
                message: format!(
                    "{}: join the logs in time order first (e.g. one file after the other, oldest first), then it streams",
                    e.message
                ),
            })?;
            scan.notes.push(format!(
                "{}: its access lines go back in time (logs joined out of order?): its {} requests were sorted in memory before the replay",
                path.display(),
                scan.rows
            ));
        }
        let timers: u64 = timer_counts.iter().sum();
        if !debug {
            scan.notes.push(
                "no level=DEBUG lines: the server's unloads are not in this log (run it with OLLAMA_DEBUG=1 to check the predicted unloads against them), nor what keep_alive each request sent: as-sent replays every request at the server's OLLAMA_KEEP_ALIVE (for per-request values run the server with OLLAMA_DEBUG=1, or put `kabench proxy` in front: its log has a keep_alive column)".into(),
            );
        } else if timers == 0 {
            scan.notes.push(
                "the log's debug lines hold no scheduler timer line (`… has gone idle …`): what keep_alive each request sent is unknown, and as-sent replays every request at the server's OLLAMA_KEEP_ALIVE".into(),
            );
        } else {
            let values: Vec<String> = scan
                .keep_alives
                .iter()
                .zip(&timer_counts)
                .map(|(k, n)| format!("{} ×{n}", k.written()))
                .collect();
            scan.notes.push(format!(
                "per-request keep_alive from {timers} scheduler timer line(s) (each gives the keep_alive of the model's request that left it idle: {}); a request another of its model outlasted has none and is replayed at the server's OLLAMA_KEEP_ALIVE",
                values.join(", ")
            ));
        }
        if future > 0 {
            scan.notes.push(format!(
                "{future} request(s) are timestamped in the future (after now): replayed as written"
            ));
        }
        if dropped > 0 {
            scan.notes.push(format!(
                "warning: {dropped} load and unload lines past the first {MAX_LOGGED_EVENTS} of each were counted, not kept: the load times and the unload check use the first {MAX_LOGGED_EVENTS}"
            ));
        }
        let index: HashMap<&str, u32> = scan
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i as u32))
            .collect();
        let mut elsewhere = 0;
        let mut unloads = Vec::new();
        for (t, model, evicted) in unloads_abs {
            match index.get(model.as_str()) {
                Some(&m) => unloads.push(LoggedUnload {
                    t: (t - min) * scale,
                    model: m,
                    evicted,
                }),
                None => elsewhere += 1,
            }
        }
        if elsewhere > 0 {
            scan.notes.push(format!(
                "{elsewhere} unload line(s) name a model no access line was attributed to: not compared"
            ));
        }
        Ok(OllamaLog {
            scan,
            options,
            first_offset,
            first_abs: min,
            max_latency_s: max_latency,
            unloads,
            loads,
            config,
            debug,
        })
    }

    /// Measured loads, in log order.
    pub fn loads(&self) -> &[LoggedLoad] {
        &self.loads
    }

    /// The last `server config` line's `OLLAMA_*` settings, as written.
    pub fn server_config(&self) -> &[(String, String)] {
        &self.config
    }

    /// One setting of the server config (`OLLAMA_KEEP_ALIVE`), when written and not empty.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Whether the log has debug lines (so its unloads are complete).
    pub fn has_debug(&self) -> bool {
        self.debug
    }

    /// The median measured load per model (seconds, count), for calibration.
    pub fn load_medians(&self) -> Vec<(String, f64, usize)> {
        let mut by: Vec<(String, Vec<f64>)> = Vec::new();
        for l in &self.loads {
            let Some(m) = &l.model else { continue };
            match by.iter_mut().find(|(n, _)| n == m) {
                Some((_, v)) => v.push(l.seconds),
                None => by.push((m.clone(), vec![l.seconds])),
            }
        }
        by.into_iter()
            .map(|(m, mut v)| {
                v.sort_by(f64::total_cmp);
                let med = if v.len() % 2 == 1 {
                    v[v.len() / 2]
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
                };
                (m, med, v.len())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
