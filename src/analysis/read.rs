//! The one reader of a run folder, for the report and `compare` alike: `run.json`, the
//! request rows, the memory samples and every cell's figures. The figures are
//! summarized from the rows; where the path that wrote the folder computed them itself
//! and left no rows (a prediction's policy table), they are its `summary.json` as
//! written. Whichever path wrote the folder, the caller gets the same typed parts, and
//! a part a path does not have is simply empty.
//!
//! Everything read is bounded and checked first: `run.json` must parse against its
//! schema and pass `folder::check` (prices, unique cells and streams), rows are
//! streamed into their cells, held whole up to `folder::MAX_REPORT_ROWS` of them and
//! past it added to each stream's accumulator (`analysis::large`) with only the first rows of
//! each cell kept, and a row holding `inf` or `NaN` is skipped and noted with its line
//! and field.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::large::LargeRun;
use super::{RowsByCell, Summary, summarize_by_cell};
use crate::folder::{self, RequestRecord, RunMeta, VramSample};

/// A run folder as read.
#[derive(Debug, Clone)]
pub struct RunData {
    /// `run.json`.
    pub meta: RunMeta,
    /// `requests.csv` by cell (rows that do not parse are skipped and noted): every
    /// row up to [`folder::MAX_REPORT_ROWS`] in all, past it the first rows of each
    /// cell (the figures are then over every row all the same, see
    /// [`super::large`]).
    pub requests: RowsByCell,
    /// `vram.csv`.
    pub samples: Vec<VramSample>,
    /// Every cell's figures.
    pub summary: Summary,
    /// True when `summary` is the folder's own `summary.json` (figures its writer
    /// computed, with no rows to recompute them from): it is not to be rewritten.
    pub kept_summary: bool,
    /// What did not read cleanly (rows skipped, with their lines).
    pub notes: Vec<String>,
}

/// Reads the run folder `dir`; `cold_threshold` re-applies the cold rule (M6) to the
/// rows with another `load_duration` threshold.
pub fn read_run(dir: &Path, cold_threshold: Option<Duration>) -> Result<RunData> {
    let meta = read_checked_meta(dir)?;
    folder::check::check_meta(&meta)
        .with_context(|| format!("{} fails validation", dir.join(folder::RUN_JSON).display()))?;
    let mut notes = Vec::new();
    let cells: Vec<&str> = meta.cells.iter().map(|c| c.id.as_str()).collect();
    let threshold = cold_threshold.unwrap_or_else(|| {
        crate::units::limits::duration_from_millis(
            meta.cold_threshold_ms.max(0.0),
            "cold_threshold_ms",
        )
        .unwrap_or_default()
    });
    let (requests, large) = read_requests(
        dir,
        &cells,
        cold_threshold,
        threshold,
        folder::report_row_limit(),
        &mut notes,
    )?;
    if let Some(l) = &large {
        notes.push(l.note());
    }
    let samples = folder::read_vram_limited(dir, folder::MAX_REPORT_VRAM_ROWS, &mut notes)?;
    let stored = read_summary(dir, &mut notes).filter(Summary::has_policies);
    let kept_summary = stored.is_some();
    let summary = stored.unwrap_or_else(|| {
        let mut s = summarize_by_cell(&meta, &requests, &samples, cold_threshold);
        if let Some(l) = &large {
            l.apply(&mut s);
        }
        s
    });
    Ok(RunData {
        meta,
        requests,
        samples,
        summary,
        kept_summary,
        notes,
    })
}

/// The rows of `requests.csv` by cell, read once, row by row: only the cells in
/// `cells` are kept (the others are counted in a note), `cold_threshold` re-applies
/// the cold rule to each row as it is read, and the free text no figure reads
/// (`error_detail`, `cold_reason`) is dropped. Up to `bound` rows are held whole; past
/// it every row goes to its stream's accumulator and each cell keeps its first rows
/// only (a quarter of `bound` shared between the cells): the [`LargeRun`] returned.
/// `threshold` is the cold threshold in force (the loads are told apart with it).
pub fn read_requests(
    dir: &Path,
    cells: &[&str],
    cold_threshold: Option<Duration>,
    threshold: Duration,
    bound: u64,
    notes: &mut Vec<String>,
) -> Result<(RowsByCell, Option<LargeRun>)> {
    let path = dir.join(folder::REQUESTS_CSV);
    let mut by_cell: RowsByCell = cells.iter().map(|c| (c.to_string(), Vec::new())).collect();
    let kept_per_cell = usize::try_from(bound / 4 / cells.len().max(1) as u64)
        .unwrap_or(usize::MAX)
        .max(1);
    let (mut rows, mut strays) = (0u64, 0u64);
    let mut large: Option<LargeRun> = None;
    folder::for_each_row(&path, notes, |mut r: RequestRecord| {
        let Some(mine) = by_cell.get_mut(r.cell.as_str()) else {
            strays += 1;
            return Ok(());
        };
        if let Some(t) = cold_threshold {
            folder::reclassify(&mut r, t);
        }
        r.error_detail = String::new();
        r.cold_reason = String::new();
        rows += 1;
        match large.as_mut() {
            Some(l) => {
                l.add(&r);
                if mine.len() < kept_per_cell {
                    mine.push(r);
                }
            }
            None if rows <= bound => mine.push(r),
            None => {
                // Past the bound: every row held so far goes to the accumulators, and
                // each cell keeps its first rows only.
                mine.push(r);
                let mut l = LargeRun::new(bound, kept_per_cell, threshold);
                for held in by_cell.values_mut() {
                    for h in held.iter() {
                        l.add(h);
                    }
                    held.truncate(kept_per_cell);
                    held.shrink_to_fit();
                }
                large = Some(l);
            }
        }
        Ok(())
    })?;
    if strays > 0 {
        notes.push(format!(
            "{}: {strays} rows of cells that run.json does not list were left out",
            folder::REQUESTS_CSV
        ));
    }
    Ok((by_cell, large))
}

/// The folder's `summary.json`, if it has one that reads; one that does not (written
/// by an older kabench) is noted and left to be summarized again.
pub fn read_summary(dir: &Path, notes: &mut Vec<String>) -> Option<Summary> {
    let path = dir.join(folder::SUMMARY_JSON);
    if let Err(e) = check_size(&path) {
        notes.push(format!(
            "{e}; the figures are summarized from the rows again"
        ));
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(format!(
                "{}: does not read ({e}); the figures are summarized from the rows again",
                folder::SUMMARY_JSON
            ));
            None
        }
    }
}

/// `run.json`, parsed against its schema (the typed fields): one that does not parse is
/// bad input (exit 2), its field named by the parser.
/// Its size is bounded where every run-folder text file is read (`folder::input`).
fn read_checked_meta(dir: &Path) -> Result<RunMeta> {
    folder::read_meta(dir).map_err(|e| {
        if e.chain().any(|c| c.is::<folder::BadJson>()) {
            anyhow::Error::new(crate::units::ParseError {
                message: format!(
                    "{} fails validation: {e:#}; it must match schema/run.schema.json",
                    dir.join(folder::RUN_JSON).display()
                ),
            })
        } else {
            e
        }
    })
}

/// The largest `summary.json` the report reads (256 MiB: 100 000 streams
/// of figures are a few tens of MB).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

/// Refuses a `summary.json` over [`MAX_JSON_BYTES`] before reading it (exit 2).
fn check_size(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    if len > MAX_JSON_BYTES {
        return Err(crate::units::ParseError {
            message: format!(
                "{} is {len} bytes, over the limit of {MAX_JSON_BYTES} bytes",
                path.display()
            ),
        }
        .into());
    }
    Ok(())
}
