//! The request rows of a merge, streamed: each shard's `requests.csv` is read once to
//! check every row's cell and stream (they name histogram files) and to rebuild the
//! histograms of a shard that left none, then once more to write the merged file in
//! intended-time order (ties: shard order). Up to [`MAX_SORTED_ROWS`] rows in all are
//! held and sorted; past them the shards' rows are merged one row at a time, each
//! shard's file taken in its own order, so memory does not grow with the rows.

use anyhow::{Context, Result};

use super::{NotMergeable, ShardFolder, add_histograms, knows, name_of};
use crate::folder::histograms::{self, HistogramFiles, RowHistograms};
use crate::folder::{self, RequestRecord, RowReader, RunFolder, input};
use crate::units::limits::excerpt;

/// Most rows in all that merge holds to sort them (about 0.6 KB each); past them the
/// shards' rows are merged as they are read.
pub const MAX_SORTED_ROWS: u64 = 250_000;

/// [`MAX_SORTED_ROWS`], or the hidden `KABENCH_MAX_MERGE_SORTED_ROWS` (for tests that
/// merge row by row without writing a quarter of a million rows).
fn sorted_row_limit() -> u64 {
    std::env::var("KABENCH_MAX_MERGE_SORTED_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_SORTED_ROWS)
}

/// What the first reading found: each shard's row count and whether its rows are in
/// intended-time order.
pub(super) struct ShardRows {
    counts: Vec<u64>,
    in_order: Vec<bool>,
}

impl ShardRows {
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Reads every shard's rows once: each row's cell and stream checked to be a name that
/// can become a file name and one of the shard's `run.json`, the rows counted, and the
/// shard's histograms read (rebuilt from its rows when it left none) and added bucket by
/// bucket. Nothing is held but the histograms.
pub(super) fn check_rows_and_histograms(
    folders: &[ShardFolder],
    warnings: &mut Vec<String>,
) -> Result<(ShardRows, HistogramFiles)> {
    let mut merged = HistogramFiles::new();
    let mut found = ShardRows {
        counts: Vec::with_capacity(folders.len()),
        in_order: Vec::with_capacity(folders.len()),
    };
    for f in folders {
        let mut notes = Vec::new();
        let mut rebuilt = RowHistograms::default();
        let (mut n, mut in_order, mut last) = (0u64, true, f64::NEG_INFINITY);
        let mut rows = RowReader::<RequestRecord>::open(&f.dir.join(folder::REQUESTS_CSV))
            .with_context(|| format!("reading the rows of {}", f.dir.display()))?;
        while let Some(r) = rows
            .next_row(&mut notes)
            .with_context(|| format!("reading the rows of {}", f.dir.display()))?
        {
            n += 1;
            check_name(f, n, &r)?;
            in_order &= r.intended_ms >= last;
            last = r.intended_ms;
            rebuilt.add(&r);
        }
        rows.finish(&mut notes);
        warnings.extend(notes.into_iter().map(|n| format!("{}: {n}", name_of(f))));
        let mut files = histograms::read_known(&f.dir, |c, s, metric| {
            knows(f, c, s) && histograms::METRICS.contains(&metric)
        })
        .with_context(|| format!("reading the histograms of {}", f.dir.display()))?;
        if files.is_empty() && n > 0 {
            warnings.push(format!(
                "{}: no histogram files (it did not finish): rebuilt from its requests.csv",
                name_of(f)
            ));
            files = rebuilt.finish();
        }
        add_histograms(&mut merged, files, &f.dir)?;
        found.counts.push(n);
        found.in_order.push(in_order);
    }
    Ok((found, merged))
}

/// Refuses a row whose `cell` or `stream` cannot be a file name (`../..`, `/etc`, a
/// control character: it would name a histogram file outside the merged folder) or is
/// none of the shard's `run.json` (each would add histograms to hold); `n` is the row's
/// number among the rows that parse.
fn check_name(f: &ShardFolder, n: u64, r: &RequestRecord) -> Result<()> {
    let refuse = |field: &str, why: String| {
        NotMergeable(format!(
            "{}/{} row {n}, field `{field}`{why}; a shard's rows name their cell and stream as kabench wrote them: merge only the shard folders of a kabench run",
            f.dir.display(),
            folder::REQUESTS_CSV,
        ))
    };
    for (field, value) in [("cell", &r.cell), ("stream", &r.stream)] {
        input::file_name(value, "").map_err(|e| refuse(field, e.message))?;
    }
    if !knows(f, &r.cell, &r.stream) {
        let field = if f.meta.cells.iter().any(|c| c.id == r.cell) {
            "stream"
        } else {
            "cell"
        };
        return Err(refuse(
            field,
            format!(
                ": cell \"{}\", stream \"{}\" is no cell and stream of its run.json",
                excerpt(&r.cell),
                excerpt(&r.stream)
            ),
        )
        .into());
    }
    Ok(())
}

/// Writes the merged `requests.csv` into `out` from the shards' files, in intended-time
/// order (ties: shard order); returns (rows, failed rows).
pub(super) fn write_rows(
    out: &RunFolder,
    folders: &[ShardFolder],
    found: &ShardRows,
    warnings: &mut Vec<String>,
) -> Result<(u64, u64)> {
    // The notes of the rows skipped were given by the first reading.
    let mut notes = Vec::new();
    let mut readers = folders
        .iter()
        .map(|f| {
            RowReader::<RequestRecord>::open(&f.dir.join(folder::REQUESTS_CSV))
                .with_context(|| format!("reading the rows of {}", f.dir.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let limit = sorted_row_limit();
    if found.total() <= limit {
        let mut rows = Vec::new();
        for r in &mut readers {
            while let Some(row) = r.next_row(&mut notes)? {
                rows.push(row);
            }
        }
        rows.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
        let errors = rows.iter().filter(|r| r.is_error()).count() as u64;
        let n = out.write_requests(&rows)?;
        return Ok((n, errors));
    }
    let unordered: Vec<String> = folders
        .iter()
        .zip(&found.in_order)
        .filter(|(_, ordered)| !**ordered)
        .map(|(f, _)| name_of(f))
        .collect();
    if !unordered.is_empty() {
        warnings.push(format!(
            "{}: rows not in intended-time order; with more than {limit} rows in all they are merged in the order each shard wrote them",
            unordered.join(", ")
        ));
    }
    let path = out.dir().join(folder::REQUESTS_CSV);
    folder::write_csv::<RequestRecord>(&path, std::iter::empty())?;
    let mut w = folder::append_to::<RequestRecord>(&path)?;
    let mut heads: Vec<Option<RequestRecord>> = Vec::with_capacity(readers.len());
    for r in &mut readers {
        heads.push(r.next_row(&mut notes)?);
    }
    let (mut n, mut errors) = (0u64, 0u64);
    loop {
        // The earliest head; ties go to the lowest shard, as a stable sort would.
        let mut next: Option<usize> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some(h) = h
                && next.is_none_or(|j| {
                    heads[j]
                        .as_ref()
                        .is_some_and(|b| h.intended_ms.total_cmp(&b.intended_ms).is_lt())
                })
            {
                next = Some(i);
            }
        }
        let Some(i) = next else { break };
        let row = std::mem::replace(&mut heads[i], readers[i].next_row(&mut notes)?);
        if let Some(row) = row {
            errors += row.is_error() as u64;
            w.write(&row)?;
            n += 1;
        }
    }
    w.flush()?;
    Ok((n, errors))
}
