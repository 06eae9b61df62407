//! A request-log CSV: a header with `timestamp` (RFC 3339, or epoch seconds or
//! milliseconds) and any of `model`, `prompt_tokens`, `output_tokens`, `num_ctx`,
//! `client`, `keep_alive` (what the client sent), `kind` (`serve`, or a control call
//! with an empty prompt: `load`, `unload`; empty is `serve`). Column names are matched without
//! case; the Azure LLM inference traces read as they are (`TIMESTAMP`, `ContextTokens`,
//! `GeneratedTokens`). [`RequestLog::open`] scans the file once; [`RequestLog::requests`]
//! then streams it, or sorts it in memory when the scan found it out of time order.
//! `parse` holds the column rules and their error messages; this file the scan and the stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Kind, Request, RequestIter, Scan, Source, TrafficError, intern};
use crate::units::KeepAlive;

mod parse;

pub use parse::parse_datetime;
use parse::*;

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
        let file = super::open_bounded(path)?;
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
        // The line of the latest new earliest or latest time (named if the span is too long).
        let mut extreme_line = 0u64;
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
            // Every time becomes a duration from the first: checked here, with its line.
            let from_first = (row.abs - first.unwrap_or(row.abs)).abs() * options.time_scale;
            super::checked_secs(
                path,
                rec.position().map_or(0, |p| p.line()),
                &format!(
                    "{} (its distance from the first request, after --time-scale)",
                    cols.names.get(cols.timestamp).map_or("timestamp", |n| n)
                ),
                row.written,
                from_first,
            )?;
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
            if row.abs < min || row.abs > max {
                extreme_line = rec.position().map_or(0, |p| p.line());
            }
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
        scan.span_s = super::checked_secs(
            path,
            extreme_line,
            "timestamp (the span from the earliest to the latest request, after --time-scale)",
            &format!("{}", (max - min) * scale),
            (max - min) * scale,
        )?;
        if !scan.sorted {
            crate::units::limits::check_count(
                scan.rows,
                super::MAX_SORTED_ROWS,
                "requests out of time order (sorted in memory)",
            )
            .map_err(|e| TrafficError::Read {
                path: path.to_path_buf(),
                message: format!(
                    "{}: sort the file by its timestamp column first (e.g. `sort -t, -k1,1`), then it streams",
                    e.message
                ),
            })?;
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
        let file = super::open_bounded(path)?;
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
    reader: csv::Reader<BufReader<crate::units::limits::LineBounded<File>>>,
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
mod tests;
