//! Reading the send times of a trace CSV (`arrival = { kind = "trace", … }`): one
//! column of seconds, or of timestamps as the Azure LLM inference traces write them
//! (`2023-11-16 18:17:03.9799600`). Used by validation (so a bad file fails before
//! anything is sent) and by `workload`. Knows nothing of rates or scaling.

use std::path::{Path, PathBuf};

/// A trace file that cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read as CSV.
    #[error("cannot read trace {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The named column is not in the header.
    #[error("trace {path} has no column {column:?}; its columns are: {available}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header, comma-separated.
        available: String,
    },
    /// A cell is neither a number of seconds nor a timestamp.
    #[error(
        "trace {path} row {row}: {value:?} is not a time: write seconds (\"12.5\") or a timestamp (\"2023-11-16 18:17:03.97\")"
    )]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based data row (the header is row 0).
        row: usize,
        /// The cell as written.
        value: String,
    },
    /// The file has nothing in it, not even a header.
    #[error(
        "trace {path} is empty: write a header line (e.g. \"time_s\") and then one send time per row, in seconds or as timestamps"
    )]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// No data rows are left after skipping.
    #[error("trace {path} has no send times (after skipping {skip} rows)")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Rows skipped.
        skip: usize,
    },
}

/// Reads the send times of a trace, in seconds from its first kept row, sorted.
///
/// See [`read_times`] for the columns and rows read.
pub fn read_send_times(
    path: &Path,
    column: Option<&str>,
    skip: usize,
) -> Result<Vec<f64>, TraceError> {
    let mut times = read_times(path, column, skip)?;
    let first = times[0];
    for t in &mut times {
        *t -= first;
    }
    Ok(times)
}

/// A trace's `epoch` as written (seconds, or a timestamp like the rows'), in the time
/// base of [`read_times`].
pub fn parse_epoch(text: &str) -> Option<f64> {
    parse_time(text.trim())
}

/// Reads the send times of a trace as written (seconds, or timestamps as seconds since
/// the Unix epoch), sorted; never empty.
///
/// The file must have a header. `column` picks the column by name; by default it is
/// the first column whose name contains `time` (any case), else the first column.
/// `skip` data rows are dropped first. Rows out of order are sorted, since logs are
/// often written at completion rather than at arrival.
pub fn read_times(path: &Path, column: Option<&str>, skip: usize) -> Result<Vec<f64>, TraceError> {
    let read_err = |e: &dyn std::fmt::Display| TraceError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| read_err(&e))?;
    let headers = reader.headers().map_err(|e| read_err(&e))?.clone();
    if headers.iter().all(str::is_empty) {
        if reader.records().next().is_none() {
            return Err(TraceError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        return Err(read_err(
            &"its first line, the header naming the columns, is blank: write e.g. \"time_s\" there",
        ));
    }
    let index = match column {
        Some(name) => headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| TraceError::Column {
                path: path.to_path_buf(),
                column: name.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })?,
        None => headers
            .iter()
            .position(|h| h.to_ascii_lowercase().contains("time"))
            .unwrap_or(0),
    };
    let mut times = Vec::new();
    for (row, record) in reader.records().enumerate().skip(skip) {
        let record = record.map_err(|e| read_err(&e))?;
        let cell = record.get(index).unwrap_or("");
        let t = parse_time(cell).ok_or_else(|| TraceError::Value {
            path: path.to_path_buf(),
            row: row + 1,
            value: cell.to_string(),
        })?;
        times.push(t);
    }
    if times.is_empty() {
        return Err(TraceError::Empty {
            path: path.to_path_buf(),
            skip,
        });
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Seconds, or a `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z]` timestamp as seconds since
/// the Unix epoch (taken as UTC; only differences matter).
fn parse_time(text: &str) -> Option<f64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-');
    let year: i32 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let mut t = time.splitn(3, ':');
    let hour: u32 = t.next()?.parse().ok()?;
    let minute: u32 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    if hour > 23 || minute > 59 || !(0.0..61.0).contains(&second) {
        return None;
    }
    let days = f64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
    Some(days * 86_400.0 + f64::from(hour * 3600 + minute * 60) + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn azure_timestamps_become_seconds_from_the_first() {
        let f = file(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:17:03.9799600,4808,10\n\
             2023-11-16 18:17:04.0319600,3180,8\n\
             2023-11-16 18:18:03.9799600,110,27\n\
             2023-11-17 00:00:00.0000000,1,1\n",
        );
        let t = read_send_times(f.path(), None, 0).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], 0.0);
        assert!((t[1] - 0.052).abs() < 1e-6, "{}", t[1]);
        assert!((t[2] - 60.0).abs() < 1e-6);
        assert!((t[3] - (5.0 * 3600.0 + 42.0 * 60.0 + 56.02004)).abs() < 1e-4);
    }

    #[test]
    fn seconds_column_by_name_with_skip_and_sorting() {
        let f = file("id,at\na,10\nb,12.5\nc,11\nd,20\n");
        assert_eq!(
            read_send_times(f.path(), Some("at"), 1).unwrap(),
            vec![0.0, 1.5, 9.0]
        );
        // Default column: none contains "time", so the first, which is not a time.
        let e = read_send_times(f.path(), None, 0).unwrap_err();
        assert!(matches!(e, TraceError::Value { row: 1, .. }), "{e}");
    }

    #[test]
    fn missing_column_and_empty_file_are_errors() {
        let f = file("time\n1\n2\n");
        let e = read_send_times(f.path(), Some("when"), 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("no column \"when\"; its columns are: time"),
            "{e}"
        );
        assert!(matches!(
            read_send_times(f.path(), None, 2),
            Err(TraceError::Empty { .. })
        ));
        for text in ["", "\n", "  \n\n"] {
            let empty = file(text);
            for column in [None, Some("time")] {
                let e = read_send_times(empty.path(), column, 0).unwrap_err();
                assert!(matches!(e, TraceError::EmptyFile { .. }), "{text:?}: {e}");
                assert!(e.to_string().contains("is empty"), "{e}");
            }
        }
        let missing = read_send_times(Path::new("/nonexistent/trace.csv"), None, 0);
        assert!(matches!(missing, Err(TraceError::Read { .. })));
    }
}
