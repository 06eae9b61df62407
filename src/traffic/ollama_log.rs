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
//! Long (about 950 lines before its tests) because the log is one state machine: a line's
//! meaning (which model a request used, whether a load was the server's own) depends
//! on the lines before it, so the line kinds, their readers and the running state are
//! kept in one file in the order the reader meets them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{LoggedUnload, Request, RequestIter, Scan, Source, TrafficError};

/// Paths of access lines that are inference requests (they reach the scheduler).
const INFERENCE: [&str; 8] = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
];

/// Scheduler messages that name the model a request is about to use.
const REQUEST_MODEL: [&str; 4] = [
    "loading first model",
    "evaluating already loaded",
    "finished setting up",
    "new model will fit in available VRAM, loading",
];

/// How to read a server log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The model of requests the log does not attribute to one (`--model`).
    pub model: Option<String>,
    /// UTC offset of the access lines' local time (`--tz`); `None`: from the log.
    pub tz: Option<time::UtcOffset>,
    /// Stop at the first line that starts as a known form and cannot be read.
    pub strict: bool,
    /// Multiplies every gap (2.0 = half the rate).
    pub time_scale: f64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            model: None,
            tz: None,
            strict: false,
            time_scale: 1.0,
        }
    }
}

/// `--tz`: `UTC`, `Z`, or an offset such as `+02:00`, `-0500`, `+5:30`, `+2`.
pub fn parse_tz(text: &str) -> Result<time::UtcOffset, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("gmt")
    {
        return Ok(time::UtcOffset::UTC);
    }
    let bad = || {
        format!(
            "--tz {text:?}: give the log's UTC offset, e.g. +02:00, -0500 or UTC (zone names are not read; in summer time give the summer offset)"
        )
    };
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1i8, &t[1..]),
        Some(b'-') => (-1i8, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = if let Some((h, m)) = rest.split_once(':') {
        (h, m)
    } else if rest.len() == 4 {
        (&rest[..2], &rest[2..])
    } else {
        (rest, "0")
    };
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
        return Err(bad());
    }
    time::UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}

/// A Go duration as Gin prints latencies (`72.508µs`, `842.3ms`, `2.843912s`,
/// `1m2.5s`, `1h0m3s`): seconds.
pub fn go_duration_seconds(text: &str) -> Option<f64> {
    let nanos = crate::units::parse_go_duration(text.trim()).ok()?;
    (nanos >= 0).then(|| nanos as f64 / 1e9)
}

/// One access line, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// End of the response as written: seconds since the epoch, read as if UTC.
    pub end_local: f64,
    /// HTTP status.
    pub status: u16,
    /// Latency, seconds.
    pub latency_s: f64,
    /// Client address.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
}

/// Removes terminal colour codes (`ESC [ … m`), which Gin writes to a terminal.
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\x1b') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Reads a Gin access line (anywhere in the line, so `journalctl` prefixes pass):
/// `None` when the line is not one, `Some(Err)` when it starts as one and is broken.
pub fn parse_access(line: &str) -> Option<Result<Access, String>> {
    let at = line.find("[GIN]")?;
    let clean = strip_ansi(&line[at + 5..]);
    Some(read_access(&clean))
}

fn read_access(rest: &str) -> Result<Access, String> {
    let parts: Vec<&str> = rest.split('|').map(str::trim).collect();
    if parts.len() < 5 {
        return Err(format!(
            "an access line has 5 fields separated by |, this one {}",
            parts.len()
        ));
    }
    let (date, clock) = parts[0]
        .split_once(" - ")
        .ok_or_else(|| format!("time {:?} is not `YYYY/MM/DD - HH:MM:SS`", parts[0]))?;
    let end_local = local_seconds(date.trim(), clock.trim())
        .ok_or_else(|| format!("time {:?} is not `YYYY/MM/DD - HH:MM:SS`", parts[0]))?;
    let status: u16 = parts[1]
        .parse()
        .map_err(|_| format!("status {:?} is not a number", parts[1]))?;
    let latency_s = go_duration_seconds(parts[2])
        .ok_or_else(|| format!("latency {:?} is not a Go duration", parts[2]))?;
    let mut words = parts[4].split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words
        .next()
        .map(|p| p.trim_matches('"').to_string())
        .ok_or_else(|| format!("{:?} names no method and path", parts[4]))?;
    Ok(Access {
        end_local,
        status,
        latency_s,
        client: parts[3].to_string(),
        method,
        path,
    })
}

/// `2026/05/22`, `17:28:26` → seconds since the epoch, as if UTC.
fn local_seconds(date: &str, clock: &str) -> Option<f64> {
    let mut d = date.split('/').map(|x| x.parse::<i32>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|x| x.parse::<u8>().ok());
    let (h, mi, s) = (c.next()??, c.next()??, c.next()??);
    let date =
        time::Date::from_calendar_date(y, time::Month::try_from(mo as u8).ok()?, da as u8).ok()?;
    let t = time::Time::from_hms(h, mi, s).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp() as f64,
    )
}

/// The value of `key=` in a structured (slog) line: quoted or up to the next space.
pub fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        let starts_field = at == 0 || line.as_bytes()[at - 1] == b' ';
        let after = &line[at + key.len()..];
        if starts_field && let Some(v) = after.strip_prefix('=') {
            if let Some(q) = v.strip_prefix('"') {
                let mut end = 0;
                let bytes = q.as_bytes();
                while end < bytes.len() {
                    if bytes[end] == b'\\' {
                        end += 2;
                        continue;
                    }
                    if bytes[end] == b'"' {
                        break;
                    }
                    end += 1;
                }
                return Some(&q[..end.min(q.len())]);
            }
            return Some(v.split(' ').next().unwrap_or(""));
        }
        from = at + key.len();
    }
    None
}

/// A model name as the scheduler writes it (`registry.ollama.ai/library/tiny-50m:latest`)
/// in the form `/api/ps` and the catalogue use (`tiny-50m:latest`).
pub fn short_model_name(name: &str) -> String {
    let n = name.trim();
    n.strip_prefix("registry.ollama.ai/library/")
        .or_else(|| n.strip_prefix("registry.ollama.ai/"))
        .unwrap_or(n)
        .to_string()
}

/// What one line of the log says.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// An inference request (start and end as written, local, before the offset).
    Request {
        end_local: f64,
        latency_s: f64,
        status: u16,
        client: String,
    },
    /// An access line of anything else (`/api/tags`, `HEAD /`, …).
    OtherAccess,
    /// A structured line: its time (UTC), its offset, and what it says.
    Slog {
        utc: f64,
        offset: time::UtcOffset,
        event: Slog,
    },
    /// Anything else.
    Skipped,
}

#[derive(Debug, Clone, PartialEq)]
enum Slog {
    /// `llama-server started in X seconds`.
    Loaded(f64),
    /// The server's own unload of a model; `true`: to make room (evicted).
    Unload {
        model: String,
        evicted: bool,
    },
    /// A line naming the model a request is about to use (a name or a blob path), and
    /// for `finished setting up`, the blob path of that name.
    Uses {
        model: String,
        path: Option<String>,
    },
    /// `server config`: its `OLLAMA_*` settings.
    Config(Vec<(String, String)>),
    Other,
}

fn classify(line: &str) -> Result<Line, String> {
    if let Some(access) = parse_access(line) {
        let a = access?;
        if !INFERENCE.iter().any(|p| a.path == *p) {
            return Ok(Line::OtherAccess);
        }
        return Ok(Line::Request {
            end_local: a.end_local,
            latency_s: a.latency_s,
            status: a.status,
            client: a.client,
        });
    }
    let Some(time_at) = line.find("time=") else {
        return Ok(Line::Skipped);
    };
    let Some(msg) = field(line, "msg") else {
        return Ok(Line::Skipped);
    };
    let written = line[time_at + 5..].split(' ').next().unwrap_or("");
    let parsed =
        time::OffsetDateTime::parse(written, &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("time={written} is not an RFC 3339 time"))?;
    let utc = parsed.unix_timestamp_nanos() as f64 / 1e9;
    let event = if let Some(rest) = msg
        .strip_prefix("llama-server started in ")
        .or_else(|| msg.strip_prefix("llama runner started in "))
    {
        let secs = rest
            .strip_suffix(" seconds")
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| format!("load line {msg:?} has no number of seconds"))?;
        Slog::Loaded(secs)
    } else if msg == "timer expired, expiring to unload"
        || msg == "runner with zero duration has gone idle, expiring to unload"
        || msg == "found an idle runner to unload"
    {
        let model = field(line, "runner.name")
            .or_else(|| field(line, "runner.model"))
            .or_else(|| field(line, "model"))
            .ok_or_else(|| format!("unload line {msg:?} names no runner.name"))?;
        Slog::Unload {
            model: short_model_name(model),
            evicted: msg.starts_with("found"),
        }
    } else if REQUEST_MODEL.contains(&msg) {
        match field(line, "runner.name") {
            Some(name) => Slog::Uses {
                model: short_model_name(name),
                path: field(line, "runner.model").map(str::to_string),
            },
            None => match field(line, "model") {
                Some(path) => Slog::Uses {
                    model: path.to_string(),
                    path: None,
                },
                None => Slog::Other,
            },
        }
    } else if msg == "server config" {
        let env = field(line, "env").unwrap_or("");
        let inner = env.trim_start_matches("map[").trim_end_matches(']');
        Slog::Config(
            inner
                .split(' ')
                .filter_map(|kv| kv.split_once(':'))
                .filter(|(k, _)| k.starts_with("OLLAMA_"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    } else {
        Slog::Other
    };
    Ok(Line::Slog {
        utc,
        offset: parsed.offset(),
        event,
    })
}

/// One measured load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedLoad {
    /// The model (`None` when no `finished setting up` line followed).
    pub model: Option<String>,
    /// Seconds the runner took to start.
    pub seconds: f64,
}

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
                    Slog::Unload { model, evicted } => Event::Unload {
                        t: utc,
                        model: self.named(&model),
                        evicted,
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
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(path, e))?;
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
    /// settings, SHA-256. Memory holds only the loads and unloads.
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
        let mut loads = Vec::new();
        let mut config = Vec::new();
        let mut debug = false;
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
                    if first_line.is_none() {
                        first_line = Some(start);
                    }
                    last_line = start;
                    if start > now + 60.0 {
                        future += 1;
                    }
                }
                Event::Unload { t, model, evicted } => unloads_abs.push((t, model, evicted)),
                Event::Load(l) => loads.push(l),
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
        scan.span_s = (max_start - min) * scale;
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
        if !scan.sorted {
            scan.notes.push(format!(
                "{}: its access lines go back in time (logs joined out of order?): its {} requests were sorted in memory before the replay",
                path.display(),
                scan.rows
            ));
        }
        if !debug {
            scan.notes.push(
                "no level=DEBUG lines: the server's unloads are not in this log (run it with OLLAMA_DEBUG=1 to check the predicted unloads against them)".into(),
            );
        }
        if future > 0 {
            scan.notes.push(format!(
                "{future} request(s) are timestamped in the future (after now): replayed as written"
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

impl Source for OllamaLog {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn logged_unloads(&self) -> Option<&[LoggedUnload]> {
        self.debug.then_some(self.unloads.as_slice())
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Request, TrafficError>>(4096);
        let path = self.scan.path.clone();
        let mut options = self.options.clone();
        options.strict = false;
        let first_offset = self.first_offset;
        let models: HashMap<String, u32> = self
            .scan
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        let clients: HashMap<String, u32> = self
            .scan
            .clients
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        // In order, a request can start at most the longest latency before one read
        // earlier; out of order, everything is held and sorted at the end.
        let depth = if self.scan.sorted {
            self.max_latency_s
        } else {
            f64::INFINITY
        };
        let (first_abs, scale) = (self.first_abs, self.options.time_scale);
        std::thread::spawn(move || {
            let mut reader = Reader::new(&path, options, first_offset);
            // Requests by start time; one is released once a request has ended later
            // than its start plus the longest latency (none can start before it then).
            let mut heap: BinaryHeap<Reverse<(OrdF64, u64)>> = BinaryHeap::new();
            let mut held: HashMap<u64, Request> = HashMap::new();
            let mut seq = 0u64;
            let send = |r: Request| tx.send(Ok(r)).is_ok();
            let result = for_each_line(&path, None, |text| {
                if let Event::Request {
                    start,
                    end,
                    model,
                    client,
                    service,
                } = reader.read(text)?
                {
                    let Some(&m) = models.get(&model) else {
                        return Err(read_error(
                            &path,
                            "the file changed between its scan and its replay",
                        ));
                    };
                    seq += 1;
                    held.insert(
                        seq,
                        Request {
                            t: (start - first_abs) * scale,
                            model: m,
                            prompt_tokens: None,
                            output_tokens: None,
                            num_ctx: None,
                            client: clients.get(&client).copied(),
                            keep_alive: None,
                            service_s: Some(service),
                            kind: super::Kind::Serve,
                        },
                    );
                    heap.push(Reverse((OrdF64(start), seq)));
                    while let Some(Reverse((OrdF64(s), id))) = heap.peek().copied() {
                        if s + depth > end {
                            break;
                        }
                        heap.pop();
                        if let Some(r) = held.remove(&id)
                            && !send(r)
                        {
                            return Err(read_error(&path, "the replay stopped"));
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                return;
            }
            while let Some(Reverse((_, id))) = heap.pop() {
                if let Some(r) = held.remove(&id)
                    && !send(r)
                {
                    return;
                }
            }
        });
        Ok(Box::new(rx.into_iter()))
    }
}

/// An `f64` with a total order (for the start-time heap).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ollama_log")
            .join(name)
    }

    fn all(log: &OllamaLog) -> Vec<Request> {
        log.requests()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn go_durations_as_gin_prints_them() {
        let close = |text: &str, want: f64| {
            let got = go_duration_seconds(text).unwrap_or(f64::NAN);
            assert!((got - want).abs() < 1e-9, "{text}: {got} != {want}");
        };
        close("385ns", 385e-9);
        close("72.508µs", 72.508e-6);
        close("12.1μs", 12.1e-6);
        close("184.975us", 184.975e-6);
        close("842.3005ms", 0.8423005);
        close("2.843912s", 2.843912);
        close("1m2.500000001s", 62.500000001);
        close("1h0m0.5s", 3600.5);
        close("0s", 0.0);
        assert_eq!(go_duration_seconds("soon"), None);
        assert_eq!(go_duration_seconds("-1s"), None);
    }

    #[test]
    fn an_access_line_is_read_and_others_are_not() {
        let a = parse_access(
            r#"[GIN] 2026/05/22 - 17:28:26 | 200 |     2.843912s |      10.0.0.192 | POST     "/api/chat""#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.client, "10.0.0.192");
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/api/chat"));
        assert!((a.latency_s - 2.843912).abs() < 1e-12);
        // 2026-05-22 is day 20595 since the epoch.
        assert_eq!(
            a.end_local,
            20595.0 * 86400.0 + 17.0 * 3600.0 + 28.0 * 60.0 + 26.0
        );
        assert!(parse_access("llama_model_loader: - kv 0").is_none());
        assert!(parse_access("[GIN] 2026/05/22 | 200").unwrap().is_err());
    }

    #[test]
    fn tz_offsets() {
        assert_eq!(parse_tz("UTC").unwrap(), time::UtcOffset::UTC);
        assert_eq!(parse_tz("+02:00").unwrap().whole_seconds(), 7200);
        assert_eq!(parse_tz("-0500").unwrap().whole_seconds(), -18000);
        assert_eq!(parse_tz("+5:30").unwrap().whole_seconds(), 19800);
        assert_eq!(parse_tz("+2").unwrap().whole_seconds(), 7200);
        let e = parse_tz("Europe/Paris").unwrap_err();
        assert!(e.contains("+02:00"), "{e}");
        assert!(parse_tz("+25:00").is_err());
    }

    #[test]
    fn every_documented_access_form_is_read() {
        let opts = LogOptions {
            model: Some("m".into()),
            ..LogOptions::default()
        };
        let log = OllamaLog::open(&fixture("access-forms.log"), opts).unwrap();
        let scan = log.scan();
        // 2xx of each inference API, the 5xx (it reached the runner); not the 4xx, the
        // 3xx, /api/tags or HEAD /.
        assert_eq!(scan.rows, 7, "{:?}", scan.notes);
        assert_eq!(scan.models, ["m".to_string()]);
        assert_eq!(
            scan.clients,
            ["10.0.0.192", "127.0.0.1", "10.0.0.5"].map(String::from)
        );
        let note = &scan.notes[0];
        assert!(
            note.contains("3 other access lines, 2 refused with 4xx"),
            "{note}"
        );
        assert!(note.contains("skipped: 1 lines"), "{note}");
        assert!(note.contains("unparsable: 0"), "{note}");
        // The start is the end (local +02:00, from the time= line) minus the latency;
        // the hour-long request ends last but started before the one above it.
        let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
        let want = [
            0.0,
            6.0016115,
            14.343911999,
            162.743912,
            275.343912,
            306.343912,
            334.843911,
        ];
        assert_eq!(t.len(), want.len());
        for (got, want) in t.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{t:?}");
        }
        assert_eq!(scan.first, "2026-05-22T15:28:23.156088Z");
        // Without debug lines there are no unloads to check against.
        assert!(log.logged_unloads().is_none());
        // --tz moves every access line; the gaps stay.
        let opts = LogOptions {
            model: Some("m".into()),
            tz: Some(parse_tz("UTC").unwrap()),
            ..LogOptions::default()
        };
        let utc = OllamaLog::open(&fixture("access-forms.log"), opts).unwrap();
        assert_eq!(utc.scan().first, "2026-05-22T17:28:23.156088Z");
    }

    #[test]
    fn a_log_without_model_names_needs_model() {
        let e = OllamaLog::open(&fixture("access-forms.log"), LogOptions::default()).unwrap_err();
        assert!(
            matches!(e, TrafficError::NoModelInLog { line: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("--model"), "{e}");
    }

    #[test]
    fn a_log_joined_out_of_order_is_sorted_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("joined.log");
        std::fs::write(
            &p,
            "[GIN] 2026/05/22 - 17:30:00 | 200 | 1s | 127.0.0.1 | POST \"/api/chat\"\n\
             [GIN] 2026/05/22 - 17:30:00 | 200 | 1s | 127.0.0.1 | POST \"/api/chat\"\n\
             [GIN] 2026/05/22 - 17:20:00 | 200 | 2s | 127.0.0.1 | POST \"/api/chat\"\n",
        )
        .unwrap();
        let opts = LogOptions {
            model: Some("m".into()),
            ..LogOptions::default()
        };
        let log = OllamaLog::open(&p, opts).unwrap();
        assert!(!log.scan().sorted);
        assert!(
            log.scan()
                .notes
                .iter()
                .any(|n| n.contains("sorted in memory"))
        );
        let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
        // Duplicate times stay, in file order.
        assert_eq!(t, [0.0, 601.0, 601.0]);
    }

    #[test]
    fn strict_names_the_unparsable_line() {
        let opts = |strict| LogOptions {
            model: Some("m".into()),
            strict,
            ..LogOptions::default()
        };
        let log = OllamaLog::open(&fixture("broken.log"), opts(false)).unwrap();
        assert_eq!(log.scan().rows, 2);
        assert!(
            log.scan().notes[0].contains("unparsable: 1"),
            "{:?}",
            log.scan().notes
        );
        let e = OllamaLog::open(&fixture("broken.log"), opts(true)).unwrap_err();
        assert!(matches!(e, TrafficError::Unparsable { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("broken.log:3:"), "{e}");
        assert!(e.to_string().contains("\"soon\""), "{e}");
    }

    #[test]
    fn the_real_debug_log_names_models_loads_unloads_and_settings() {
        let log = OllamaLog::open(&fixture("real-debug.log"), LogOptions::default()).unwrap();
        let scan = log.scan();
        assert_eq!(scan.rows, 7);
        assert_eq!(
            scan.models,
            ["tiny-50m:latest", "tiny-50m:q8_0"].map(String::from)
        );
        assert_eq!(scan.model_rows, [5, 2]);
        assert_eq!(log.setting("OLLAMA_KEEP_ALIVE"), Some("3s"));
        assert_eq!(log.setting("OLLAMA_MAX_LOADED_MODELS"), Some("1"));
        let loads: Vec<(Option<&str>, f64)> = log
            .loads()
            .iter()
            .map(|l| (l.model.as_deref(), l.seconds))
            .collect();
        assert_eq!(
            loads,
            [
                (Some("tiny-50m:latest"), 0.52),
                (Some("tiny-50m:latest"), 1.53),
                (Some("tiny-50m:q8_0"), 2.55),
                (Some("tiny-50m:latest"), 2.64)
            ]
        );
        let u = log.logged_unloads().unwrap();
        let kinds: Vec<(u32, bool)> = u.iter().map(|u| (u.model, u.evicted)).collect();
        assert_eq!(kinds, [(0, false), (0, true), (1, false), (0, false)]);
        // Each expiry 3 s after its model's last request ended.
        let r = all(&log);
        assert_eq!(
            r.iter().map(|r| r.model).collect::<Vec<_>>(),
            [0, 0, 0, 1, 1, 0, 0]
        );
        assert!(r.windows(2).all(|w| w[0].t <= w[1].t));
        // The cold request waited for its load: its service time is the rest.
        let s = r[0].service_s.unwrap();
        assert!((s - (3.559307733 - 0.52)).abs() < 1e-9, "{s}");
    }
}
