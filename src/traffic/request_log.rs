//! A request-log CSV: a header with `timestamp` (RFC 3339, or epoch seconds or
//! milliseconds) and any of `model`, `prompt_tokens`, `output_tokens`, `num_ctx`,
//! `client`, `keep_alive` (what the client sent), `kind` (`serve`, or a control call
//! with an empty prompt: `load`, `unload`; empty is `serve`). Column names are matched without
//! case; the Azure LLM inference traces read as they are (`TIMESTAMP`, `ContextTokens`,
//! `GeneratedTokens`). [`RequestLog::open`] scans the file once; [`RequestLog::requests`]
//! then streams it, or sorts it in memory when the scan found it out of time order.
//! Over 500 lines: one reader of a CSV format with its column rules and their error messages.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Kind, Request, RequestIter, Scan, Source, TrafficError, intern};
use crate::units::KeepAlive;

/// Epoch numbers at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms 1973).
const MS_THRESHOLD: f64 = 1e11;

/// How to read numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Seconds below 1e11, milliseconds from there (decided on the first row).
    #[default]
    Auto,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
}

/// How to read a log.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The model of rows that name none (and of every row when there is no `model` column).
    pub model: Option<String>,
    /// Multiplies every gap (2.0 = half the rate).
    pub time_scale: f64,
    /// Numeric timestamps' unit.
    pub unit: TimeUnit,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            model: None,
            time_scale: 1.0,
            unit: TimeUnit::Auto,
        }
    }
}

/// Where each field sits in a row.
#[derive(Debug, Clone, Default)]
struct Columns {
    timestamp: usize,
    model: Option<usize>,
    prompt_tokens: Option<usize>,
    output_tokens: Option<usize>,
    num_ctx: Option<usize>,
    client: Option<usize>,
    keep_alive: Option<usize>,
    kind: Option<usize>,
    names: Vec<String>,
}

impl Columns {
    fn find(path: &Path, header: &csv::StringRecord) -> Result<Columns, TrafficError> {
        let names: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
        let pos = |aliases: &[&str]| {
            names
                .iter()
                .position(|h| aliases.iter().any(|a| h.eq_ignore_ascii_case(a)))
        };
        let timestamp = pos(&["timestamp"]).ok_or_else(|| TrafficError::NoTimestamp {
            path: path.to_path_buf(),
            columns: names.join(", "),
        })?;
        Ok(Columns {
            timestamp,
            model: pos(&["model"]),
            prompt_tokens: pos(&["prompt_tokens", "contexttokens", "input_length"]),
            output_tokens: pos(&["output_tokens", "generatedtokens", "output_length"]),
            num_ctx: pos(&["num_ctx"]),
            client: pos(&["client", "client_id"]),
            keep_alive: pos(&["keep_alive"]),
            kind: pos(&["kind"]),
            names,
        })
    }
}

/// A fully parsed row, names not yet interned.
struct Row<'r> {
    /// Seconds since the Unix epoch (or since the log's own zero).
    abs: f64,
    written: &'r str,
    /// The model named in the row; `None`: the default model (`--model`).
    model: Option<&'r str>,
    prompt_tokens: Option<u32>,
    output_tokens: Option<u32>,
    num_ctx: Option<u32>,
    client: Option<&'r str>,
    keep_alive: Option<KeepAlive>,
    kind: Kind,
}

/// The parsing rules shared by the scan and the replay pass.
struct Parser {
    path: PathBuf,
    cols: Columns,
    default_model: Option<String>,
    unit: TimeUnit,
}

impl Parser {
    fn bad(&self, line: u64, column: usize, value: &str, expected: &str) -> TrafficError {
        TrafficError::Value {
            path: self.path.clone(),
            line,
            column: self.cols.names.get(column).cloned().unwrap_or_default(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    fn parse<'r>(&mut self, rec: &'r csv::StringRecord) -> Result<Row<'r>, TrafficError> {
        let line = rec.position().map_or(0, |p| p.line());
        let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::trim);
        let written = cell(Some(self.cols.timestamp)).unwrap_or("");
        let abs = match written.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                if self.unit == TimeUnit::Auto {
                    self.unit = if n.abs() >= MS_THRESHOLD {
                        TimeUnit::Millis
                    } else {
                        TimeUnit::Seconds
                    };
                }
                if self.unit == TimeUnit::Millis {
                    n / 1000.0
                } else {
                    n
                }
            }
            _ => parse_datetime(written).ok_or_else(|| {
                self.bad(
                    line,
                    self.cols.timestamp,
                    written,
                    "a time: write RFC 3339 (2026-05-22T17:28:26Z, 2026-05-22T17:28:26.5+02:00) or epoch seconds or milliseconds",
                )
            })?,
        };
        let model = match cell(self.cols.model).filter(|m| !m.is_empty()) {
            Some(m) => Some(m),
            None => match &self.default_model {
                Some(_) => None,
                None if self.cols.model.is_some() => {
                    return Err(self.bad(
                        line,
                        self.cols.model.unwrap_or(0),
                        "",
                        "a model name (give --model for rows that name none)",
                    ));
                }
                None => {
                    return Err(TrafficError::NoModel {
                        path: self.path.clone(),
                    });
                }
            },
        };
        let count = |this: &Self, i: Option<usize>| -> Result<Option<u32>, TrafficError> {
            match cell(i).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0 && *n <= f64::from(u32::MAX))
                    .map(|n| Some(n.round() as u32))
                    .ok_or_else(|| {
                        this.bad(line, i.unwrap_or(0), v, "a count of tokens (0 or more)")
                    }),
            }
        };
        let prompt_tokens = count(self, self.cols.prompt_tokens)?;
        let output_tokens = count(self, self.cols.output_tokens)?;
        let num_ctx = count(self, self.cols.num_ctx)?.filter(|n| *n > 0);
        let keep_alive = match cell(self.cols.keep_alive).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(KeepAlive::parse(v).map_err(|e| {
                self.bad(
                    line,
                    self.cols.keep_alive.unwrap_or(0),
                    v,
                    &format!("a keep_alive as Ollama takes it (\"5m\", 300, -1): {e}"),
                )
            })?),
        };
        let kind = match cell(self.cols.kind) {
            None => Kind::Serve,
            Some(v) => Kind::parse(v).ok_or_else(|| {
                self.bad(
                    line,
                    self.cols.kind.unwrap_or(0),
                    v,
                    "a request kind: serve (or empty), load or unload",
                )
            })?,
        };
        Ok(Row {
            abs,
            written,
            model,
            prompt_tokens,
            output_tokens,
            num_ctx,
            client: cell(self.cols.client).filter(|c| !c.is_empty()),
            keep_alive,
            kind,
        })
    }
}

/// RFC 3339, also with a space for the `T` and without an offset (taken as UTC), and
/// with any number of fraction digits (`2023-11-16 18:17:03.9799600`): seconds since
/// the Unix epoch.
pub fn parse_datetime(text: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    let of = |dt: time::OffsetDateTime| dt.unix_timestamp_nanos() as f64 / 1e9;
    if let Ok(dt) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(of(dt));
    }
    let mut s = text.replacen(' ', "T", 1);
    let has_offset = s.ends_with('Z')
        || s.ends_with('z')
        || s.get(19..)
            .is_some_and(|tail| tail.contains('+') || tail.contains('-'));
    if !has_offset {
        s.push('Z');
    }
    // The time crate reads at most nine fraction digits.
    if let Some(dot) = s.find('.') {
        let digits = s[dot + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        if digits > 9 {
            s.replace_range(dot + 10..dot + 1 + digits, "");
        }
    }
    time::OffsetDateTime::parse(&s, &Rfc3339).ok().map(of)
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A request-log CSV, scanned and ready to stream.
#[derive(Debug, Clone)]
pub struct RequestLog {
    scan: Scan,
    options: ReadOptions,
    /// The unit the scan settled on.
    unit: TimeUnit,
    /// The earliest request's time, seconds since the epoch.
    first_abs: f64,
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> TrafficError {
    TrafficError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn csv_reader<R: Read>(inner: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(inner)
}

impl RequestLog {
    /// Scans `path` once: header, every row checked, count, span, order, models,
    /// clients, keep_alive values sent, SHA-256. Memory stays flat.
    pub fn open(path: &Path, options: ReadOptions) -> Result<RequestLog, TrafficError> {
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let mut hashing = Hashing {
            inner: BufReader::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
        };
        let mut reader = csv_reader(&mut hashing);
        let header = reader.headers().map_err(|e| read_error(path, e))?.clone();
        if header.iter().all(|h| h.trim().is_empty()) {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "write a header line naming the columns (timestamp, and any of model, prompt_tokens, output_tokens, num_ctx, client, keep_alive, kind), then one request per row".into(),
            });
        }
        let cols = Columns::find(path, &header)?;
        if cols.model.is_none() && options.model.is_none() {
            return Err(TrafficError::NoModel {
                path: path.to_path_buf(),
            });
        }
        let mut parser = Parser {
            path: path.to_path_buf(),
            cols: cols.clone(),
            default_model: options.model.clone(),
            unit: options.unit,
        };
        let mut scan = Scan {
            path: path.to_path_buf(),
            sorted: true,
            has_keep_alive: cols.keep_alive.is_some(),
            columns: cols.names.clone(),
            format: "request-log CSV".into(),
            ..Scan::default()
        };
        let (mut models, mut clients) = (HashMap::new(), HashMap::new());
        let mut kas: Vec<String> = Vec::new();
        let (mut first, mut min, mut max, mut prev) = (
            None::<f64>,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        let (mut duplicates, mut future) = (0u64, 0u64);
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        let mut rec = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(read_error(path, e)),
            }
            if rec.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let row = parser.parse(&rec)?;
            scan.rows += 1;
            if first.is_none() {
                first = Some(row.abs);
                scan.first = row.written.to_string();
            }
            scan.last = row.written.to_string();
            if row.abs < prev {
                scan.sorted = false;
            } else if row.abs == prev {
                duplicates += 1;
            }
            if row.abs > now + 60.0 {
                future += 1;
            }
            prev = row.abs;
            min = min.min(row.abs);
            max = max.max(row.abs);
            let name = row.model.or(parser.default_model.as_deref()).unwrap_or("");
            let m = intern(&mut models, &mut scan.models, name) as usize;
            if m == scan.model_ctx.len() {
                scan.model_ctx.push(None);
                scan.model_rows.push(0);
            }
            scan.model_rows[m] += 1;
            if scan.model_ctx[m].is_none() {
                scan.model_ctx[m] = row.num_ctx;
            }
            if let Some(c) = row.client {
                intern(&mut clients, &mut scan.clients, c);
            }
            if let Some(ka) = &row.keep_alive
                && !kas.iter().any(|k| k == ka.written())
            {
                kas.push(ka.written().to_string());
                scan.keep_alives.push(ka.clone());
            }
        }
        drop(reader);
        scan.sha256 = format!("{:x}", hashing.hasher.finalize());
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "it has a header but no request rows".into(),
            });
        }
        let scale = options.time_scale;
        scan.span_s = (max - min) * scale;
        if !scan.sorted {
            scan.notes.push(format!(
                "{} is not in time order: its {} requests were sorted in memory before the replay",
                path.display(),
                scan.rows
            ));
        }
        if duplicates > 0 {
            scan.notes.push(format!(
                "{duplicates} request(s) share their timestamp with the previous one: replayed at the same instant, in file order"
            ));
        }
        if future > 0 {
            scan.notes.push(format!(
                "{future} request(s) are timestamped in the future (after now): replayed as written"
            ));
        }
        if parser.unit == TimeUnit::Millis && options.unit == TimeUnit::Auto {
            scan.notes.push(
                "numeric timestamps read as epoch milliseconds (at or above 1e11)".to_string(),
            );
        }
        Ok(RequestLog {
            scan,
            unit: parser.unit,
            options,
            first_abs: min,
        })
    }

    /// What the scan found.
    pub fn scan(&self) -> &Scan {
        &self.scan
    }

    /// The requests in time order: streamed from the file when it was in order, else
    /// read whole and sorted (stable: equal times keep file order).
    pub fn requests(&self) -> Result<RequestIter, TrafficError> {
        let path = &self.scan.path;
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let mut reader = csv_reader(BufReader::with_capacity(1 << 16, file));
        let header = reader.headers().map_err(|e| read_error(path, e))?.clone();
        let cols = Columns::find(path, &header)?;
        let index = |names: &[String]| -> HashMap<String, u32> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect()
        };
        let rows = Rows {
            reader,
            rec: csv::StringRecord::new(),
            parser: Parser {
                path: path.clone(),
                cols,
                default_model: self.options.model.clone(),
                unit: self.unit,
            },
            models: index(&self.scan.models),
            clients: index(&self.scan.clients),
            keep_alives: self
                .scan
                .keep_alives
                .iter()
                .enumerate()
                .map(|(i, k)| (k.written().to_string(), i as u32))
                .collect(),
            first_abs: self.first_abs,
            scale: self.options.time_scale,
            done: false,
        };
        if self.scan.sorted {
            return Ok(Box::new(rows));
        }
        let mut all = rows.collect::<Result<Vec<Request>, TrafficError>>()?;
        all.sort_by(|a, b| a.t.total_cmp(&b.t));
        Ok(Box::new(all.into_iter().map(Ok)))
    }
}

impl Source for RequestLog {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        RequestLog::requests(self)
    }
}

/// The replay pass over a log in order.
struct Rows {
    reader: csv::Reader<BufReader<File>>,
    rec: csv::StringRecord,
    parser: Parser,
    models: HashMap<String, u32>,
    clients: HashMap<String, u32>,
    keep_alives: HashMap<String, u32>,
    first_abs: f64,
    scale: f64,
    done: bool,
}

impl Iterator for Rows {
    type Item = Result<Request, TrafficError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.reader.read_record(&mut self.rec) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(read_error(&self.parser.path, e)));
                }
            }
            if self.rec.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let row = match self.parser.parse(&self.rec) {
                Ok(r) => r,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let name = row
                .model
                .or(self.parser.default_model.as_deref())
                .unwrap_or("");
            let Some(&model) = self.models.get(name) else {
                self.done = true;
                return Some(Err(read_error(
                    &self.parser.path,
                    "the file changed between its scan and its replay",
                )));
            };
            return Some(Ok(Request {
                t: (row.abs - self.first_abs) * self.scale,
                model,
                prompt_tokens: row.prompt_tokens,
                output_tokens: row.output_tokens,
                num_ctx: row.num_ctx,
                client: row.client.and_then(|c| self.clients.get(c).copied()),
                keep_alive: row
                    .keep_alive
                    .as_ref()
                    .and_then(|k| self.keep_alives.get(k.written()).copied()),
                service_s: None,
                kind: row.kind,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/predict")
            .join(name)
    }

    fn all(log: &RequestLog) -> Vec<Request> {
        log.requests()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn every_column_of_the_fixture_is_read() {
        let log = RequestLog::open(&fixture("requests.csv"), ReadOptions::default()).unwrap();
        let scan = log.scan();
        assert_eq!(scan.rows, 5);
        assert!(scan.sorted);
        assert!(scan.has_keep_alive);
        assert_eq!(
            scan.models,
            ["qwen2.5:7b-instruct-q4_K_M", "llama3.2:3b"].map(String::from)
        );
        assert_eq!(scan.model_rows, [3, 2]);
        assert_eq!(scan.model_ctx, [Some(4096), Some(2048)]);
        assert_eq!(scan.clients, ["app", "cli"].map(String::from));
        let kas: Vec<&str> = scan.keep_alives.iter().map(KeepAlive::written).collect();
        assert_eq!(kas, ["5m", "-1", "300"]);
        assert!((scan.span_s - 694.25).abs() < 1e-6, "{}", scan.span_s);
        assert_eq!(scan.sha256.len(), 64);
        let r = all(&log);
        let t: Vec<f64> = r.iter().map(|r| r.t).collect();
        for (got, want) in t.iter().zip([0.0, 4.5, 5.0, 694.0, 694.25]) {
            assert!((got - want).abs() < 1e-6, "{t:?}");
        }
        assert_eq!(r[0].prompt_tokens, Some(300));
        assert_eq!(r[0].output_tokens, Some(32));
        assert_eq!(r[0].keep_alive, Some(0));
        assert_eq!(r[2].model, 1);
        assert_eq!(r[2].num_ctx, None);
        assert_eq!(r[2].keep_alive, None);
        assert_eq!(r[2].client, Some(1));
        assert_eq!(r[3].prompt_tokens, None);
        assert_eq!(r[3].keep_alive, Some(1));
        assert_eq!(r[4].keep_alive, Some(2));
    }

    #[test]
    fn epoch_milliseconds_are_recognised_and_scaled() {
        let opts = ReadOptions {
            time_scale: 2.0,
            ..ReadOptions::default()
        };
        let log = RequestLog::open(&fixture("epoch_ms.csv"), opts).unwrap();
        let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
        assert_eq!(t, [0.0, 0.5, 20.5]);
        assert!(log.scan().notes.iter().any(|n| n.contains("milliseconds")));
        assert!(!log.scan().has_keep_alive);
    }

    #[test]
    fn unsorted_input_is_sorted_with_a_note_and_duplicates_noted() {
        let log = RequestLog::open(&fixture("unsorted.csv"), ReadOptions::default()).unwrap();
        assert!(!log.scan().sorted);
        assert!(
            log.scan()
                .notes
                .iter()
                .any(|n| n.contains("not in time order")),
            "{:?}",
            log.scan().notes
        );
        let t: Vec<f64> = all(&log).iter().map(|r| r.t).collect();
        assert_eq!(t, [0.0, 0.0, 30.0, 60.0]);
        assert!((log.scan().span_s - 60.0).abs() < 1e-9);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let open = |name: &str| RequestLog::open(&fixture(name), ReadOptions::default());
        for name in ["empty.csv", "header_only.csv"] {
            let e = open(name).unwrap_err();
            assert!(matches!(e, TrafficError::Empty { .. }), "{name}: {e}");
            assert!(e.to_string().contains("is empty"), "{e}");
        }
        let e = open("no_timestamp.csv").unwrap_err();
        assert!(matches!(e, TrafficError::NoTimestamp { .. }), "{e}");
        assert!(
            e.to_string().contains("its columns are: time_s, model"),
            "{e}"
        );
        let e = open("bad_time.csv").unwrap_err();
        assert!(
            e.to_string().contains("bad_time.csv:3: column `timestamp`"),
            "{e}"
        );
        let e = open("missing.csv").unwrap_err();
        assert!(matches!(e, TrafficError::Read { .. }), "{e}");
        // No model column: --model names it, else a clear error.
        let e = RequestLog::open(&fixture("no_timestamp.csv"), ReadOptions::default());
        assert!(e.is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("times.csv");
        std::fs::write(&p, "timestamp\n1\n2\n").unwrap();
        let e = RequestLog::open(&p, ReadOptions::default()).unwrap_err();
        assert!(matches!(e, TrafficError::NoModel { .. }), "{e}");
        let opts = ReadOptions {
            model: Some("tiny-50m".into()),
            ..ReadOptions::default()
        };
        let log = RequestLog::open(&p, opts).unwrap();
        assert_eq!(log.scan().models, ["tiny-50m".to_string()]);
        assert_eq!(all(&log).len(), 2);
    }

    #[test]
    fn the_kind_column_marks_loads_and_unloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kinds.csv");
        std::fs::write(
            &p,
            "timestamp,model,keep_alive,kind\n0,m,-1,serve\n1,m,0,unload\n2,m,,Load\n3,m,-1,\n",
        )
        .unwrap();
        let log = RequestLog::open(&p, ReadOptions::default()).unwrap();
        let kinds: Vec<Kind> = all(&log).iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Serve, Kind::Unload, Kind::Load, Kind::Serve]);
        std::fs::write(&p, "timestamp,model,kind\n0,m,reload\n").unwrap();
        let e = RequestLog::open(&p, ReadOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("column `kind`: \"reload\" is not a request kind"),
            "{e}"
        );
    }

    #[test]
    fn datetimes_in_the_forms_logs_write() {
        let z = parse_datetime("2026-05-22T17:28:26Z").unwrap();
        assert_eq!(parse_datetime("2026-05-22T19:28:26+02:00"), Some(z));
        assert_eq!(parse_datetime("2026-05-22 17:28:26"), Some(z));
        let azure = parse_datetime("2023-11-16 18:17:03.9799600").unwrap();
        let azure2 = parse_datetime("2023-11-16 18:17:04.0319600").unwrap();
        assert!((azure2 - azure - 0.052).abs() < 1e-6);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn a_future_timestamp_is_noted_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("future.csv");
        std::fs::write(
            &p,
            "timestamp,model\n2999-01-01T00:00:00Z,m\n2999-01-01T00:00:01Z,m\n",
        )
        .unwrap();
        let log = RequestLog::open(&p, ReadOptions::default()).unwrap();
        assert!(log.scan().notes.iter().any(|n| n.contains("future")));
        assert_eq!(all(&log).len(), 2);
    }
}
