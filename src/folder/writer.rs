//! `RunFolder`: the one writer of a run folder, whichever path fills it (a run, a
//! shard, a merge, a prediction, a proxy log, plan's check). It claims the folder
//! (so two writers never share one), writes the scenario text, `run.json` (atomically,
//! as often as the path likes), the header-only CSVs a report expects, and then what
//! the path has: request rows as they come or at once, memory samples, a summary.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    CsvAppender, REQUESTS_CSV, RUN_JSON, RequestRecord, RunFolderExists, RunFolderNotEmpty,
    RunFolderUnwritable, RunMeta, RunStatus, SCENARIO_TOML, SUMMARY_JSON, VRAM_CSV, VramSample,
    append_to, utc_now_rfc3339, write_csv, write_header, write_json_atomic,
};

/// A run folder being written: its `run.json` and its files.
pub struct RunFolder {
    dir: PathBuf,
    requests: Option<CsvAppender<RequestRecord>>,
    vram_path: PathBuf,
    /// `vram.csv` was made by this writer (not kept from before).
    made_vram: bool,
    meta: RunMeta,
}

impl RunFolder {
    /// Claims a new or empty folder, copies the scenario text, writes `run.json` and the
    /// CSV headers, so a bad `--out` fails before the first request.
    ///
    /// The folder is claimed by creating `run.json` with `create_new`, so of two runs
    /// started on one `--out` at once only one proceeds.
    pub fn create(dir: &Path, scenario_text: &str, meta: RunMeta) -> Result<RunFolder> {
        claim_run_folder(dir)?;
        RunFolder::fill(dir, scenario_text, meta)
    }

    /// As [`Self::create`] in a folder that may already hold other files but no run
    /// (a merge's shard folders, a proxy's own log and samples); a `vram.csv` already
    /// there is kept.
    pub fn create_in(dir: &Path, scenario_text: &str, meta: RunMeta) -> Result<RunFolder> {
        claim_beside_others(dir)?;
        RunFolder::fill(dir, scenario_text, meta)
    }

    /// Writes the folder's first files after the claim; when one cannot be written,
    /// what was written (the claim's empty `run.json` included) is removed again, so a
    /// failed start leaves no half-made run.
    fn fill(dir: &Path, scenario_text: &str, meta: RunMeta) -> Result<RunFolder> {
        let vram_path = dir.join(VRAM_CSV);
        let made_vram = !vram_path.exists();
        let folder = RunFolder {
            dir: dir.to_path_buf(),
            requests: None,
            vram_path,
            made_vram,
            meta,
        };
        let written = (|| -> Result<()> {
            fs::write(dir.join(SCENARIO_TOML), scenario_text).map_err(|e| RunFolderUnwritable {
                dir: dir.display().to_string(),
                why: e.to_string(),
            })?;
            write_header::<RequestRecord>(&dir.join(REQUESTS_CSV))?;
            if made_vram {
                write_header::<VramSample>(&folder.vram_path)?;
            }
            folder.write_meta()
        })();
        match written {
            Ok(()) => Ok(folder),
            Err(e) => {
                folder.remove_files();
                Err(e)
            }
        }
    }

    /// Removes the files this writer made (`run.json` last, so the folder stays
    /// claimed until the rest is gone).
    fn remove_files(&self) {
        let _ = fs::remove_file(self.dir.join(SCENARIO_TOML));
        let _ = fs::remove_file(self.dir.join(REQUESTS_CSV));
        if self.made_vram {
            let _ = fs::remove_file(&self.vram_path);
        }
        let _ = fs::remove_file(self.dir.join(RUN_JSON));
    }

    /// Ends a run that failed before its first request (`why`): `run.json` says
    /// `failed` with the reason; when even that cannot be written (a full disk), the
    /// files of the run are removed instead. Either way the folder is never left
    /// "running". Returns what became of it, for the error message.
    pub fn abandon(mut self, why: &str) -> String {
        self.requests = None;
        self.meta.status = RunStatus::Failed;
        self.meta.failure = Some(format!("the run could not start: {why}"));
        self.meta.ended_at = Some(utc_now_rfc3339());
        match self.write_meta() {
            Ok(()) => format!("{} is marked failed", self.dir.display()),
            Err(_) => {
                self.remove_files();
                format!(
                    "{} could not be marked failed; its run files were removed",
                    self.dir.display()
                )
            }
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `vram.csv` (for the telemetry writer, which appends on its own task).
    pub fn vram_path(&self) -> &Path {
        &self.vram_path
    }

    /// The metadata, to update before `write_meta`.
    pub fn meta_mut(&mut self) -> &mut RunMeta {
        &mut self.meta
    }

    /// The metadata.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Rewrites `run.json` atomically (temp file + rename).
    pub fn write_meta(&self) -> Result<()> {
        write_json_atomic(&self.dir.join(RUN_JSON), &self.meta)
    }

    /// Appends and flushes one request row.
    pub fn append_request(&mut self, record: &RequestRecord) -> Result<()> {
        if self.requests.is_none() {
            self.requests = Some(append_to::<RequestRecord>(&self.dir.join(REQUESTS_CSV))?);
        }
        match self.requests.as_mut() {
            Some(w) => w.append(record),
            None => Ok(()),
        }
    }

    /// Writes every request row at once (a merge's, a proxy log's); returns how many.
    pub fn write_requests<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a RequestRecord>,
    ) -> Result<u64> {
        write_csv(&self.dir.join(REQUESTS_CSV), rows)
    }

    /// Writes every memory sample at once; returns how many.
    pub fn write_vram<'a>(&self, rows: impl IntoIterator<Item = &'a VramSample>) -> Result<u64> {
        write_csv(&self.vram_path, rows)
    }

    /// Writes `summary.json` (a path that computes its figures itself, as a prediction).
    pub fn write_summary<T: Serialize>(&self, summary: &T) -> Result<()> {
        write_json_atomic(&self.dir.join(SUMMARY_JSON), summary)
            .with_context(|| format!("writing {}/{SUMMARY_JSON}", self.dir.display()))
    }

    /// Rewrites `run.json` as it stands, for the last time; returns the metadata.
    pub fn close(self) -> Result<RunMeta> {
        self.write_meta()
            .with_context(|| format!("writing {}/{RUN_JSON}", self.dir.display()))?;
        Ok(self.meta)
    }

    /// Records how the run ended, now, and rewrites `run.json`; returns the metadata.
    pub fn finish(mut self, status: RunStatus, failure: Option<String>) -> Result<RunMeta> {
        self.meta.status = status;
        self.meta.failure = failure;
        self.meta.ended_at = Some(utc_now_rfc3339());
        self.write_meta()
            .with_context(|| format!("writing {}/{RUN_JSON}", self.dir.display()))?;
        Ok(self.meta)
    }
}

/// Creates `dir` (or takes an empty one) and claims it for one run by creating an empty
/// `run.json` with `create_new`: a folder holding a run, or anything else, is refused,
/// and of two claims racing for one folder exactly one wins.
pub fn claim_run_folder(dir: &Path) -> Result<()> {
    let shown = || dir.display().to_string();
    if dir.join(RUN_JSON).exists() {
        return Err(RunFolderExists(shown()).into());
    }
    let unwritable = |e: std::io::Error| RunFolderUnwritable {
        dir: shown(),
        why: e.to_string(),
    };
    fs::create_dir_all(dir).map_err(unwritable)?;
    let mut entries = fs::read_dir(dir).map_err(unwritable)?;
    if entries.next().is_some() {
        return Err(if dir.join(RUN_JSON).exists() {
            RunFolderExists(shown()).into()
        } else {
            RunFolderNotEmpty(shown()).into()
        });
    }
    claim_beside_others(dir)
}

/// Claims `dir` (created when missing) by creating its `run.json` with `create_new`,
/// whatever else it holds: a folder that already holds a run is refused.
fn claim_beside_others(dir: &Path) -> Result<()> {
    let shown = || dir.display().to_string();
    let unwritable = |e: std::io::Error| RunFolderUnwritable {
        dir: shown(),
        why: e.to_string(),
    };
    fs::create_dir_all(dir).map_err(unwritable)?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(RUN_JSON))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(RunFolderExists(shown()).into())
        }
        Err(e) => Err(unwritable(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_cannot_start_is_marked_failed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let folder = RunFolder::create(&run, "", RunMeta::default()).unwrap();
        assert!(folder.abandon("no space").ends_with("is marked failed"));
        let meta = super::super::read_meta(&run).unwrap();
        assert_eq!(meta.status, RunStatus::Failed);
        assert!(meta.failure.unwrap().contains("could not start: no space"));
        assert!(meta.ended_at.is_some());

        // Not even run.json can be rewritten: the run's files go.
        let stuck = dir.path().join("stuck");
        let folder = RunFolder::create(&stuck, "", RunMeta::default()).unwrap();
        fs::create_dir(stuck.join(format!("{RUN_JSON}.tmp"))).unwrap();
        assert!(folder.abandon("no space").contains("were removed"));
        for f in [RUN_JSON, SCENARIO_TOML, REQUESTS_CSV, VRAM_CSV] {
            assert!(!stuck.join(f).exists(), "{f}");
        }
    }

    #[test]
    fn a_folder_whose_first_files_cannot_be_written_keeps_no_claim() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VRAM_CSV), "kept\n").unwrap();
        fs::create_dir(dir.path().join(SCENARIO_TOML)).unwrap();
        assert!(RunFolder::create_in(dir.path(), "x", RunMeta::default()).is_err());
        assert!(!dir.path().join(RUN_JSON).exists());
        assert!(!dir.path().join(REQUESTS_CSV).exists());
        assert_eq!(
            fs::read_to_string(dir.path().join(VRAM_CSV)).unwrap(),
            "kept\n"
        );
    }
}
