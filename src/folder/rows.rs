//! Streaming the rows of a run folder's CSV files: every line bounded
//! ([`LineBounded`]), every row checked for non-finite numbers, rows that do not parse
//! or hold `inf`/`NaN` skipped and noted with their line and field, and the report's
//! bound on how many rows it holds whole ([`MAX_REPORT_ROWS`]; past it the report
//! reads the rows into per-stream accumulators, `analysis::large`).

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use super::{RequestRecord, VramSample};
use crate::units::ParseError;
use crate::units::limits::LineBounded;

/// Most rows of `requests.csv` the report and `compare` hold whole. Each row is kept
/// (about 0.6 KB in memory) for the memory figures, reload causes and timelines, so
/// 250 000 rows peak near 190 MB resident, and a report stays under 500 MiB of address
/// space with [`MAX_REPORT_VRAM_ROWS`] samples beside them. Past it every row is added to its stream's accumulator (histograms and
/// counts) and only the first rows of each cell (a quarter of this, shared between the
/// cells) are kept whole: memory no longer grows with the rows.
pub const MAX_REPORT_ROWS: u64 = 250_000;
/// Most rows of `vram.csv` the report holds (about 0.2 KB each).
pub const MAX_REPORT_VRAM_ROWS: u64 = 500_000;

/// [`MAX_REPORT_ROWS`], or the hidden `KABENCH_MAX_REPORT_ROWS` (for tests that pass
/// the bound without writing half a million rows).
pub fn report_row_limit() -> u64 {
    std::env::var("KABENCH_MAX_REPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_REPORT_ROWS)
}

/// Most garbage rows named one by one in the notes of one file; the rest are counted.
const NOTED_ROWS: usize = 10;

/// A row whose numbers must be finite: the first field holding `inf` or `NaN`, if any.
pub trait CheckedRow {
    /// The name of the first non-finite field.
    fn non_finite(&self) -> Option<&'static str>;
}

impl CheckedRow for RequestRecord {
    fn non_finite(&self) -> Option<&'static str> {
        let fields = [
            ("intended_ms", Some(self.intended_ms)),
            ("sent_ms", self.sent_ms),
            ("first_byte_ms", self.first_byte_ms),
            ("first_token_ms", self.first_token_ms),
            ("first_answer_ms", self.first_answer_ms),
            ("end_ms", Some(self.end_ms)),
            ("load_duration_ms", self.load_duration_ms),
            ("prompt_eval_ms", self.prompt_eval_ms),
            ("eval_ms", self.eval_ms),
            ("total_duration_ms", self.total_duration_ms),
            ("ttft_ms", self.ttft_ms),
            ("e2e_ms", self.e2e_ms),
            ("itl_ms", self.itl_ms),
        ];
        fields
            .into_iter()
            .find(|(_, v)| v.is_some_and(|x| !x.is_finite()))
            .map(|(name, _)| name)
    }
}

impl CheckedRow for VramSample {
    fn non_finite(&self) -> Option<&'static str> {
        (!self.t_ms.is_finite()).then_some("t_ms")
    }
}

/// Streams the rows of a CSV to `each`, one at a time, every line bounded at
/// [`crate::units::limits::MAX_LINE_BYTES`]; rows that do not parse, or hold a
/// non-finite number (`inf`, `NaN`), are skipped and noted with their line numbers
/// (and the field). An error from `each` stops the reading and is returned.
pub fn for_each_row<T: for<'de> Deserialize<'de> + CheckedRow>(
    path: &Path,
    notes: &mut Vec<String>,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut rows = RowReader::open(path)?;
    while let Some(row) = rows.next_row(notes)? {
        each(row)?;
    }
    rows.finish(notes);
    Ok(())
}

/// The rows of a CSV pulled one at a time, as [`for_each_row`] reads them (for a
/// reader that takes rows from several files in turn, as merge does).
pub struct RowReader<T> {
    path: std::path::PathBuf,
    name: String,
    reader: csv::Reader<LineBounded<std::fs::File>>,
    headers: csv::ByteRecord,
    record: csv::ByteRecord,
    bad: usize,
    _row: std::marker::PhantomData<T>,
}

impl<T: for<'de> Deserialize<'de> + CheckedRow> RowReader<T> {
    /// Opens `path` (a regular file) and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = super::input::open_regular(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(LineBounded::new(file));
        let headers = reader
            .byte_headers()
            .map_err(|e| bad_file(path, &e))?
            .clone();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(RowReader {
            path: path.to_path_buf(),
            name,
            reader,
            headers,
            record: csv::ByteRecord::new(),
            bad: 0,
            _row: std::marker::PhantomData,
        })
    }

    /// The next row that parses (`None` at the end of the file); the rows skipped on
    /// the way are noted in `notes`.
    pub fn next_row(&mut self, notes: &mut Vec<String>) -> Result<Option<T>> {
        loop {
            let next_line = self.reader.position().line();
            let parsed = match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {
                    let line = self.record.position().map_or(next_line, |p| p.line());
                    match self.record.deserialize::<T>(Some(&self.headers)) {
                        Ok(row) => match row.non_finite() {
                            None => Ok(row),
                            Some(field) => Err((line, format!("{field} is not a finite number"))),
                        },
                        Err(e) => Err((line, short(&e.to_string()))),
                    }
                }
                // A line over the limit ends the file: nothing after it can be trusted.
                Err(e) if e.is_io_error() => return Err(bad_file(&self.path, &e)),
                Err(e) => Err((
                    e.position().map_or(next_line, |p| p.line()),
                    short(&e.to_string()),
                )),
            };
            match parsed {
                Ok(row) => return Ok(Some(row)),
                Err((line, e)) => {
                    self.bad += 1;
                    if self.bad <= NOTED_ROWS {
                        notes.push(format!(
                            "{} line {line}: a row that does not parse was skipped ({e})",
                            self.name
                        ));
                    }
                }
            }
        }
    }

    /// Notes how many more rows were skipped than were named one by one.
    pub fn finish(self, notes: &mut Vec<String>) {
        if self.bad > NOTED_ROWS {
            notes.push(format!(
                "{}: {} more rows that do not parse were skipped",
                self.name,
                self.bad - NOTED_ROWS
            ));
        }
    }
}

/// A file that cannot be read as CSV at all (a line over the limit, an I/O error):
/// bad input, named with the file.
fn bad_file(path: &Path, e: &csv::Error) -> anyhow::Error {
    anyhow::Error::new(ParseError::new(format!("{}: {e}", path.display())))
}

/// A parser's message about a field, short enough to print whatever the field held.
pub(crate) fn short(message: &str) -> String {
    use crate::units::limits;
    if message.chars().count() > 3 * limits::EXCERPT_CHARS {
        limits::excerpt(message)
    } else {
        limits::printable(message).into_owned()
    }
}

/// A CSV reader's error as bad input naming the file when its content broke a limit
/// (a line too long), the system's error otherwise.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> anyhow::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => super::input::bad_read(path, io),
        kind => anyhow::anyhow!(
            "reading {}: {}",
            path.display(),
            short(&format!("{kind:?}"))
        ),
    }
}
