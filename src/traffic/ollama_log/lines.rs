//! One line of the server log: what kind it is and what it says.

/// Paths of access lines that are inference requests (they reach the scheduler).
pub(super) const INFERENCE: [&str; 8] = [
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
pub(super) const REQUEST_MODEL: [&str; 4] = [
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

/// The longest latency an access line may report (24 h): a longer one is no real
/// request's (Go's largest duration, 2562047h47m16.854775807s, is a sentinel) and the
/// line is unparsable: skipped and counted, or refused with `--strict`.
pub const MAX_LATENCY_S: f64 = 24.0 * 3600.0;

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
pub(super) fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
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

pub(super) fn read_access(rest: &str) -> Result<Access, String> {
    let parts: Vec<&str> = rest.split('|').map(str::trim).collect();
    if parts.len() < 5 {
        return Err(format!(
            "an access line has 5 fields separated by |, this one {}",
            parts.len()
        ));
    }
    let (date, clock) = parts[0].split_once(" - ").ok_or_else(|| {
        format!(
            "time \"{}\" is not `YYYY/MM/DD - HH:MM:SS`",
            crate::units::limits::excerpt(parts[0])
        )
    })?;
    let end_local = local_seconds(date.trim(), clock.trim()).ok_or_else(|| {
        format!(
            "time \"{}\" is not `YYYY/MM/DD - HH:MM:SS`",
            crate::units::limits::excerpt(parts[0])
        )
    })?;
    let status: u16 = parts[1].parse().map_err(|_| {
        format!(
            "status \"{}\" is not a number",
            crate::units::limits::excerpt(parts[1])
        )
    })?;
    let latency_s = go_duration_seconds(parts[2]).ok_or_else(|| {
        format!(
            "latency \"{}\" is not a Go duration",
            crate::units::limits::excerpt(parts[2])
        )
    })?;
    if latency_s > MAX_LATENCY_S {
        return Err(format!(
            "latency {} is over the limit of {} h on one request's latency (not a latency Ollama can have written: a clock jump or a corrupt line)",
            crate::units::limits::excerpt(parts[2]),
            MAX_LATENCY_S / 3600.0
        ));
    }
    let mut words = parts[4].split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words
        .next()
        .map(|p| p.trim_matches('"').to_string())
        .ok_or_else(|| {
            format!(
                "\"{}\" names no method and path",
                crate::units::limits::excerpt(parts[4])
            )
        })?;
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
pub(super) fn local_seconds(date: &str, clock: &str) -> Option<f64> {
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
pub(super) enum Line {
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
pub(super) enum Slog {
    /// `llama-server started in X seconds`.
    Loaded(f64),
    /// The server's own unload of a model; `true`: to make room (evicted); `zero`: the
    /// request that left it idle sent keep_alive 0 (`runner with zero duration …`).
    Unload {
        model: String,
        evicted: bool,
        zero: bool,
    },
    /// `runner with non-zero duration has gone idle, adding timer`: the keep_alive in
    /// force when the model's last request in flight ended, seconds.
    Timer {
        model: String,
        seconds: f64,
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

pub(super) fn classify(line: &str) -> Result<Line, String> {
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
            .map_err(|_| {
                format!(
                    "time={} is not an RFC 3339 time",
                    crate::units::limits::excerpt(written)
                )
            })?;
    let utc = parsed.unix_timestamp_nanos() as f64 / 1e9;
    let event = if let Some(rest) = msg
        .strip_prefix("llama-server started in ")
        .or_else(|| msg.strip_prefix("llama runner started in "))
    {
        let secs = rest
            .strip_suffix(" seconds")
            .and_then(|n| n.trim().parse::<f64>().ok())
            .ok_or_else(|| {
                format!(
                    "load line \"{}\" has no number of seconds",
                    crate::units::limits::excerpt(msg)
                )
            })?;
        crate::units::limits::duration_from_secs(secs, "load time (seconds)")
            .map_err(|e| e.message)?;
        Slog::Loaded(secs)
    } else if msg == "timer expired, expiring to unload"
        || msg == "runner with zero duration has gone idle, expiring to unload"
        || msg == "found an idle runner to unload"
    {
        let model = field(line, "runner.name")
            .or_else(|| field(line, "runner.model"))
            .or_else(|| field(line, "model"))
            .ok_or_else(|| {
                format!(
                    "unload line \"{}\" names no runner.name",
                    crate::units::limits::excerpt(msg)
                )
            })?;
        Slog::Unload {
            model: short_model_name(model),
            evicted: msg.starts_with("found"),
            zero: msg.starts_with("runner with zero duration"),
        }
    } else if msg == "runner with non-zero duration has gone idle, adding timer" {
        let model = field(line, "runner.name")
            .or_else(|| field(line, "model"))
            .ok_or_else(|| {
                format!(
                    "timer line \"{}\" names no runner.name",
                    crate::units::limits::excerpt(msg)
                )
            })?;
        let text = field(line, "duration").unwrap_or("");
        let seconds = go_duration_seconds(text).ok_or_else(|| {
            format!(
                "timer line's duration \"{}\" is not a Go duration",
                crate::units::limits::excerpt(text)
            )
        })?;
        Slog::Timer {
            model: short_model_name(model),
            seconds,
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

/// Seconds on a timer line at or past this are forever (Ollama writes a negative
/// keep_alive as Go's largest duration, about 292 years).
pub const FOREVER_S: f64 = 1e9;

/// The keep_alive a timer line's duration stands for.
pub fn timer_keep_alive(seconds: f64) -> crate::units::KeepAlive {
    if seconds >= FOREVER_S || !seconds.is_finite() {
        crate::units::KeepAlive::forever()
    } else {
        crate::units::KeepAlive::from_duration(std::time::Duration::from_secs_f64(seconds.max(0.0)))
    }
}

/// One measured load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedLoad {
    /// The model (`None` when no `finished setting up` line followed).
    pub model: Option<String>,
    /// Seconds the runner took to start.
    pub seconds: f64,
}
