//! The column rules of a request-log CSV: where each field sits, and how a cell is read.

use super::*;

/// Epoch numbers at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms 1973).
pub(super) const MS_THRESHOLD: f64 = 1e11;

/// Where each field sits in a row.
#[derive(Debug, Clone, Default)]
pub(super) struct Columns {
    pub(super) timestamp: usize,
    pub(super) model: Option<usize>,
    pub(super) prompt_tokens: Option<usize>,
    pub(super) output_tokens: Option<usize>,
    pub(super) num_ctx: Option<usize>,
    pub(super) client: Option<usize>,
    pub(super) keep_alive: Option<usize>,
    pub(super) kind: Option<usize>,
    pub(super) names: Vec<String>,
}

impl Columns {
    pub(super) fn find(path: &Path, header: &csv::StringRecord) -> Result<Columns, TrafficError> {
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
pub(super) struct Row<'r> {
    /// Seconds since the Unix epoch (or since the log's own zero).
    pub(super) abs: f64,
    pub(super) written: &'r str,
    /// The model named in the row; `None`: the default model (`--model`).
    pub(super) model: Option<&'r str>,
    pub(super) prompt_tokens: Option<u32>,
    pub(super) output_tokens: Option<u32>,
    pub(super) num_ctx: Option<u32>,
    pub(super) client: Option<&'r str>,
    pub(super) keep_alive: Option<KeepAlive>,
    pub(super) kind: Kind,
}

/// The parsing rules shared by the scan and the replay pass.
pub(super) struct Parser {
    pub(super) path: PathBuf,
    pub(super) cols: Columns,
    pub(super) default_model: Option<String>,
    pub(super) unit: TimeUnit,
}

impl Parser {
    pub(super) fn bad(
        &self,
        line: u64,
        column: usize,
        value: &str,
        expected: &str,
    ) -> TrafficError {
        TrafficError::Value {
            path: self.path.clone(),
            line,
            column: self.cols.names.get(column).cloned().unwrap_or_default(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    pub(super) fn parse<'r>(
        &mut self,
        rec: &'r csv::StringRecord,
    ) -> Result<Row<'r>, TrafficError> {
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
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
