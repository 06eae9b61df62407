//! `kabench merge`: shard folders into one run folder that `kabench report` renders.
//! Request rows concatenated in intended-time order (every shard counts from the same
//! start barrier; streamed, never all held, past `rows::MAX_SORTED_ROWS`), `vram.csv` kept once per host (the lowest shard that completed;
//! stitched from stopped shards when none did, the cells past their samples marked
//! memory not measured), histograms added bucket by bucket (never percentiles
//! averaged), counters summed. The shard folders are input: names that would be paths,
//! absurd counts, non-regular files and an `--out` holding a user's files are refused.
//! Shards of another scenario, seed, kabench version or histogram setting are refused;
//! missing, failed or crashed shards are merged with a warning naming them, and the
//! merged `run.json` (`merged`) says which. A shard that sent nothing (marked `late`,
//! or stopped before its barrier) counts as missing; cells a shard started late are
//! named so no keep_alive is recommended over them. Knows nothing of rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::folder::histograms::{self, HistogramFiles};
use crate::folder::{
    self, MergeMeta, RequestRecord, RunFolder, RunFolderExists, RunMeta, RunStatus, input,
};
use crate::plan;
use crate::shard::{MAX_SHARDS, parse_dir_name};
use crate::units::limits::{check_count, excerpt};

mod memory;
mod rows;

use memory::{memory_not_measured, merge_vram};

/// Shards that cannot be merged (bad input, exit 2): what differs, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotMergeable(pub String);

/// What a merge made.
#[derive(Debug)]
pub struct Merged {
    /// The merged folder.
    pub dir: PathBuf,
    /// Request rows merged.
    pub rows: u64,
    /// Failed rows among them.
    pub errors: u64,
    /// What the user should know (missing or incomplete shards, rebuilt histograms).
    pub warnings: Vec<String>,
}

/// One shard folder as read.
struct ShardFolder {
    dir: PathBuf,
    index: u32,
    meta: RunMeta,
}

/// Merges `shards` into the new run folder `out` (which may hold the shard folders
/// themselves, but no run of its own).
pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<Merged> {
    merge_shaped(out, shards, |_| {})
}

/// As [`merge`], with `shape` adding what the caller knows to the merged `run.json`
/// before it is written (the simulator the shards shared).
pub fn merge_shaped(
    out: &Path,
    shards: &[PathBuf],
    shape: impl FnOnce(&mut RunMeta),
) -> Result<Merged> {
    check_out(out)?;
    let mut warnings = Vec::new();
    let folders = read_shards(shards, &mut warnings)?;
    let first = folders.first().ok_or_else(|| {
        NotMergeable(format!(
            "none of the {} folder(s) given is a readable shard folder ({}); give the shard-<i>-of-<N> folders of one run",
            shards.len(),
            warnings.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ))
    })?;
    check_alike(&folders)?;
    let count = first.meta.shard.as_ref().map_or(1, |s| s.count);
    // A shard that woke past its tolerance, or stopped before its barrier (cancelled,
    // killed) with no row, sent nothing: it counts as missing.
    let (late_folders, folders): (Vec<ShardFolder>, Vec<ShardFolder>) = folders
        .into_iter()
        .partition(|f| f.meta.status == RunStatus::Late || stopped_before_barrier(f));
    let late: BTreeMap<u32, String> = late_folders
        .iter()
        .map(|f| (f.index, late_why(f)))
        .collect();
    if folders.is_empty() {
        return Err(NotMergeable(format!(
            "no shard folder given sent a request ({}: late, or stopped before the start barrier): start the shards again with a later --start-at",
            late_folders.iter().map(name_of).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let first = &folders[0];
    let present: BTreeSet<u32> = folders.iter().map(|f| f.index).collect();
    let missing: Vec<u32> = (0..count).filter(|i| !present.contains(i)).collect();
    for i in &missing {
        match late.get(i) {
            Some(why) => warnings.push(format!(
                "shard {i} of {count} is missing: it sent nothing ({why}); the merged run lacks its requests"
            )),
            None => warnings.push(format!(
                "shard {i} of {count} is missing: the merged run lacks its requests"
            )),
        }
    }
    let incomplete = incomplete(&folders);
    for s in &incomplete {
        warnings.push(format!("{s}: merged with what it recorded"));
    }

    if out.join(folder::RUN_JSON).exists() {
        return Err(RunFolderExists(out.display().to_string()).into());
    }
    let scenario = input::read_text(&first.dir.join(folder::SCENARIO_TOML))
        .with_context(|| format!("reading {}/scenario.toml", first.dir.display()))?;
    // Every row is read and checked before the merged folder is claimed: a shard that
    // cannot be merged leaves no half-written folder behind.
    let (found, merged_histograms) = rows::check_rows_and_histograms(&folders, &mut warnings)?;
    let mut meta = merged_meta(&folders, count, missing, incomplete);
    let late_cells = late_cells(&folders);
    for (cell, why) in &late_cells {
        warnings.push(format!(
            "cell {cell}: {why}; no keep_alive is recommended over it"
        ));
    }
    if let Some(m) = meta.merged.as_mut() {
        m.sent_nothing = late;
        m.late_cells = late_cells;
    }
    meta.status = RunStatus::Running;
    let mut run = RunFolder::create_in(out, &scenario, meta)?;

    let (n, errors) = rows::write_rows(&run, &folders, &found, &mut warnings)?;
    histograms::write(run.dir(), &merged_histograms)?;
    let (samples, ends) = merge_vram(&run, &folders)?;
    let lost = memory_not_measured(&run.meta().cells, &ends);
    for (cell, why) in &lost {
        warnings.push(format!("cell {cell}: memory not measured: {why}"));
    }

    let meta = run.meta_mut();
    if let Some(m) = meta.merged.as_mut() {
        m.memory_not_measured = lost;
    }
    meta.warnings.extend(warnings.iter().cloned());
    meta.status = RunStatus::Complete;
    shape(meta);
    meta.fits = plan::fits::sections(meta, &samples);
    run.close()?;
    Ok(Merged {
        dir: out.to_path_buf(),
        rows: n,
        errors,
        warnings,
    })
}

/// Whether the shard's `run.json` has `cell` with a stream named `stream`.
fn knows(f: &ShardFolder, cell: &str, stream: &str) -> bool {
    f.meta
        .cells
        .iter()
        .any(|c| c.id == cell && c.streams.iter().any(|s| s.name == stream))
}

/// Refuses an `--out` that holds anything but shard folders and their logs (what a
/// sharded run leaves there): merge writes `run.json`, `requests.csv`, `vram.csv`,
/// `histograms/`, the report… into it and must not overwrite a user's files.
pub fn check_out(out: &Path) -> Result<()> {
    if out.join(folder::RUN_JSON).exists() {
        return Err(RunFolderExists(out.display().to_string()).into());
    }
    let Ok(entries) = std::fs::read_dir(out) else {
        // Missing: created by the merge. Not a folder: refused when it is created.
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let shard_dir = is_dir && parse_dir_name(&name).is_some();
        let shard_log = !is_dir
            && name.ends_with(".log")
            && (name.starts_with("shard-") || name.starts_with("slurm-"));
        let scenario_copy = !is_dir && name == super::manifest::SLURM_SCENARIO;
        if !shard_dir && !shard_log && !scenario_copy {
            return Err(NotMergeable(format!(
                "--out {} is not empty and not a kabench run folder: it holds {:?}, which is no shard folder (shard-<i>-of-<N>) or shard log; merge writes run.json, requests.csv, vram.csv, histograms/ and the report there and would overwrite it: choose a new or empty --out folder (or the folder holding only the shard folders)",
                out.display(),
                excerpt(&name)
            ))
            .into());
        }
    }
    Ok(())
}

/// Whether a shard folder that did not complete ended before its barrier: it never
/// woke (`clock_offset_ms` unset) and holds no request row.
fn stopped_before_barrier(f: &ShardFolder) -> bool {
    f.meta.status != RunStatus::Complete
        && f.meta.status != RunStatus::Late
        && f.meta
            .shard
            .as_ref()
            .is_some_and(|s| s.clock_offset_ms.is_none())
        && folder::RowReader::<RequestRecord>::open(&f.dir.join(folder::REQUESTS_CSV))
            .and_then(|mut rows| rows.next_row(&mut Vec::new()))
            .is_ok_and(|first| first.is_none())
}

/// Why a shard that sent nothing is missing: how late it woke, or how it stopped
/// before its barrier, as its `run.json` says.
fn late_why(f: &ShardFolder) -> String {
    if f.meta.status != RunStatus::Late {
        let how = match f.meta.status {
            RunStatus::Running => "killed".to_string(),
            s => format!("{s:?}").to_lowercase(),
        };
        return format!("{how} before the start barrier");
    }
    let shard = f.meta.shard.as_ref();
    match (
        shard.and_then(|s| s.late_ms),
        shard.and_then(|s| s.late_tolerance_ms),
    ) {
        (Some(late), Some(tol)) => format!(
            "late: woke {:.1} s after the start barrier, over its tolerance of {:.1} s",
            late / 1000.0,
            tol / 1000.0
        ),
        (Some(late), None) => format!("late: woke {:.1} s after the start barrier", late / 1000.0),
        _ => "late: woke after the start barrier".into(),
    }
}

/// Every cell some shard started past its tolerance, with which shards and how late.
fn late_cells(folders: &[ShardFolder]) -> BTreeMap<String, String> {
    let mut by_cell: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in folders {
        for (cell, ms) in f.meta.shard.iter().flat_map(|s| &s.late_cells) {
            by_cell.entry(cell.clone()).or_default().push(format!(
                "{} started it {:.1} s late",
                name_of(f),
                ms / 1000.0
            ));
        }
    }
    by_cell
        .into_iter()
        .map(|(cell, list)| (cell, list.join(", ")))
        .collect()
}

/// `shard-<i>-of-<N>: <status>` of every shard that did not complete.
fn incomplete(folders: &[ShardFolder]) -> Vec<String> {
    folders
        .iter()
        .filter(|f| f.meta.status != RunStatus::Complete)
        .map(|f| {
            let status = match f.meta.status {
                RunStatus::Running => "running (it crashed or was killed)".to_string(),
                s => format!("{s:?}").to_lowercase(),
            };
            format!("{}: {status}", name_of(f))
        })
        .collect()
}

/// Adds one shard's histograms into `merged`; refuses other bounds or precision.
fn add_histograms(merged: &mut HistogramFiles, files: HistogramFiles, dir: &Path) -> Result<()> {
    for (key, hist) in files {
        if histograms::settings_of(&hist) != histograms::SETTINGS {
            return Err(NotMergeable(format!(
                "{}: histogram {}/{}/{} has other settings ({:?}) than kabench writes ({:?}); shards must share bounds and precision",
                dir.display(),
                excerpt(&key.0),
                excerpt(&key.1),
                excerpt(&key.2),
                histograms::settings_of(&hist),
                histograms::SETTINGS
            ))
            .into());
        }
        let into = merged.entry(key).or_insert_with(histograms::empty);
        into.add(&hist)
            .map_err(|e| anyhow::anyhow!("adding histograms: {e:?}"))?;
    }
    Ok(())
}

fn name_of(f: &ShardFolder) -> String {
    f.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| f.dir.display().to_string())
}

/// Reads each folder's `run.json`; a folder that is gone or unreadable is warned about
/// and left out (it counts as missing).
fn read_shards(dirs: &[PathBuf], warnings: &mut Vec<String>) -> Result<Vec<ShardFolder>> {
    let mut out: Vec<ShardFolder> = Vec::new();
    for dir in dirs {
        let meta = match folder::read_meta(dir) {
            Ok(m) => m,
            // A file that is there but breaks a limit (a FIFO, a line too long) is
            // refused, not taken for a missing shard.
            Err(e) if e.chain().any(|c| c.is::<crate::units::ParseError>()) => {
                return Err(e.context(format!("reading the shard folder {}", dir.display())));
            }
            Err(e) => {
                warnings.push(format!("{}: left out: {e:#}", dir.display()));
                continue;
            }
        };
        let Some(shard) = meta.shard.as_ref() else {
            return Err(NotMergeable(format!(
                "{} is not a shard folder (its run.json has no `shard`); merge the shard-<i>-of-<N> folders of a `kabench run --shard` run",
                dir.display()
            ))
            .into());
        };
        let index = shard.index;
        check_count(u64::from(shard.count), u64::from(MAX_SHARDS), "shard.count").map_err(|e| {
            NotMergeable(format!(
                "{}/run.json: {e}; a sharded run has at most {MAX_SHARDS} shards",
                dir.display()
            ))
        })?;
        if index >= shard.count {
            return Err(NotMergeable(format!(
                "{}/run.json: shard.index {index} is not below shard.count {}; merge only the shard folders of a kabench run",
                dir.display(),
                shard.count
            ))
            .into());
        }
        if let Some(named) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_dir_name)
            && (named.index != index || named.count != shard.count)
        {
            warnings.push(format!(
                "{}: the folder's name says shard {} of {}, its run.json shard {} of {}; run.json wins",
                dir.display(),
                named.index,
                named.count,
                index,
                shard.count
            ));
        }
        if let Some(other) = out.iter().find(|f| f.index == index) {
            return Err(NotMergeable(format!(
                "{} and {} are both shard {index}; give each shard once",
                other.dir.display(),
                dir.display()
            ))
            .into());
        }
        out.push(ShardFolder {
            dir: dir.clone(),
            index,
            meta,
        });
    }
    out.sort_by_key(|f| f.index);
    Ok(out)
}

/// Refuses shards that are not of one run: the scenario (its hash), the seed, the
/// kabench version, the shard count and split, the start barrier, the histograms'
/// settings.
fn check_alike(folders: &[ShardFolder]) -> Result<()> {
    let Some(first) = folders.first() else {
        return Ok(());
    };
    let shard_of = |f: &ShardFolder| f.meta.shard.clone().unwrap_or_default();
    let a = shard_of(first);
    for f in &folders[1..] {
        let b = shard_of(f);
        let differ = |what: &str, x: String, y: String| -> Result<()> {
            if x == y {
                return Ok(());
            }
            Err(NotMergeable(format!(
                "{} and {} are not shards of one run: {what} differs ({} vs {}); merge only the shards of one `kabench run --shard` run",
                first.dir.display(),
                f.dir.display(),
                excerpt(&x),
                excerpt(&y)
            ))
            .into())
        };
        differ(
            "the scenario (sha256)",
            first.meta.scenario_sha256.clone(),
            f.meta.scenario_sha256.clone(),
        )?;
        differ(
            "the seed",
            first.meta.seed.to_string(),
            f.meta.seed.to_string(),
        )?;
        differ(
            "the kabench version",
            first.meta.tool_version.clone(),
            f.meta.tool_version.clone(),
        )?;
        differ("the shard count", a.count.to_string(), b.count.to_string())?;
        differ("shard_by", a.by.clone(), b.by.clone())?;
        differ(
            "the start barrier (--start-at)",
            a.start_at.clone(),
            b.start_at.clone(),
        )?;
        differ(
            "the histogram settings",
            format!("{:?}", a.histograms.unwrap_or(histograms::SETTINGS)),
            format!("{:?}", b.histograms.unwrap_or(histograms::SETTINGS)),
        )?;
    }
    Ok(())
}

/// The merged `run.json`: the first shard's, with each cell's span over all shards,
/// the simulator's counters summed, every shard's warnings, and `merged`.
fn merged_meta(
    folders: &[ShardFolder],
    count: u32,
    missing: Vec<u32>,
    incomplete: Vec<String>,
) -> RunMeta {
    let mut meta = folders[0].meta.clone();
    meta.shard = None;
    meta.status = RunStatus::Complete;
    meta.failure = None;
    meta.warnings = Vec::new();
    meta.telemetry = BTreeMap::new();
    for cell in &mut meta.cells {
        cell.started_ms = None;
        cell.ended_ms = None;
    }
    for f in folders {
        let name = name_of(f);
        for (i, cell) in f.meta.cells.iter().enumerate() {
            if let Some(into) = meta.cells.get_mut(i) {
                into.started_ms = min_opt(into.started_ms, cell.started_ms);
                into.ended_ms = max_opt(into.ended_ms, cell.ended_ms);
            }
        }
        meta.warnings
            .extend(f.meta.warnings.iter().map(|w| format!("{name}: {w}")));
        for (k, v) in &f.meta.telemetry {
            meta.telemetry.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(ended) = &f.meta.ended_at
            && meta.ended_at.as_ref().is_none_or(|e| ended > e)
        {
            meta.ended_at = Some(ended.clone());
        }
        if f.index != folders[0].index
            && let (Some(into), Some(sim)) = (meta.sim.as_mut(), f.meta.sim.as_ref())
        {
            into.loads = sum_opt(into.loads, sim.loads);
            into.evictions = sum_opt(into.evictions, sim.evictions);
            into.expirations = sum_opt(into.expirations, sim.expirations);
            for (cell, n) in &sim.loads_per_cell {
                *into.loads_per_cell.entry(cell.clone()).or_insert(0) += n;
            }
        }
    }
    meta.merged = Some(MergeMeta {
        count,
        shards: folders
            .iter()
            .map(|f| f.dir.display().to_string())
            .collect(),
        missing,
        incomplete,
        clock_offsets_ms: folders
            .iter()
            .map(|f| {
                (
                    f.index,
                    f.meta.shard.as_ref().and_then(|s| s.clock_offset_ms),
                )
            })
            .collect(),
        memory_not_measured: BTreeMap::new(),
        sent_nothing: BTreeMap::new(),
        late_cells: BTreeMap::new(),
    });
    meta
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn sum_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    }
}
