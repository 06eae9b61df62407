//! The run folder's schema and its one writer and readers: `requests.csv` (one row per
//! request, appended and flushed as it comes), `vram.csv` (memory samples), `run.json`
//! (metadata, typed in `meta`, rewritten atomically), a prediction's typed additions
//! (`prediction`), and the cold rule (M6). Every path writes through `RunFolder`
//! (`writer`). These files are the only interface between a run and its report; this
//! module knows nothing of how rows were made.
//! Over 500 lines: the writers and readers of one folder's files sit together so a format change is made once.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::units::KeepAlive;
use crate::units::limits::LineBounded;
use rows::{csv_error, short};

pub mod check;
mod fits;
pub mod histograms;
pub mod horizon;
mod host_load;
pub mod input;
mod kinds;
mod meta;
mod params;
pub mod prediction;
mod rows;
mod writer;

pub use fits::{FitModel, FitSection};
pub use horizon::{CellWindow, IdleHorizon};
pub use host_load::{BUSY_OTHER_SHARE, BUSY_STEAL_SHARE, HostLoad};
pub use kinds::{Api, KNOB_LABEL, TargetKind, knob_value, sleep_idle_seconds};
pub use meta::{
    CellMeta, CostSettings, DEFAULT_RAM_GB_HOUR, DEFAULT_VRAM_GB_HOUR, HistogramSettings,
    MergeMeta, ModelFigures, RunHeader, RunMeta, RunStatus, ShardMeta, SimHost, SimModel,
    SloSettings, StreamMeta, SweepAxis, TargetMeta,
};
pub use params::{CellParams, REPETITION, SweptKeepAlive};
pub use rows::{
    CheckedRow, MAX_REPORT_ROWS, MAX_REPORT_VRAM_ROWS, RowReader, for_each_row, report_row_limit,
};
pub use writer::{RunFolder, claim_run_folder};

/// File names inside a run folder.
pub const REQUESTS_CSV: &str = "requests.csv";
/// Memory samples.
pub const VRAM_CSV: &str = "vram.csv";
/// Run metadata.
pub const RUN_JSON: &str = "run.json";
/// Per-cell statistics.
pub const SUMMARY_JSON: &str = "summary.json";
/// Copy of the scenario as run.
pub const SCENARIO_TOML: &str = "scenario.toml";

/// `vram.csv`'s source of a server kabench started per cell (its process tree's RSS).
pub const SERVER_RSS: &str = "server_rss";
/// The memory sources of `vram.csv` (its `source` column), and the names
/// `[telemetry] sources` accepts: the one list every module checks against.
pub const TELEMETRY_SOURCES: [&str; 5] = ["nvml", "ollama_ps", "rss", "prometheus", "sim"];
/// The sources a scenario samples when `[telemetry] sources` is not given.
pub const DEFAULT_TELEMETRY_SOURCES: [&str; 3] = ["nvml", "ollama_ps", "rss"];

/// Default cold threshold on `load_duration` (M6): warm is milliseconds, real loads ≥ 0.3 s.
pub const DEFAULT_COLD_THRESHOLD: Duration = Duration::from_millis(100);

/// One request, success or failure: a row of `requests.csv`.
///
/// Times are milliseconds since the run start on one monotonic clock; latency is
/// measured from the *intended* send time, so a slow target cannot hide queueing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Cell id.
    pub cell: String,
    /// Sequence number within the stream and cell.
    pub request: u32,
    /// Stream name.
    pub stream: String,
    /// Model tag sent.
    pub model: String,
    /// keep_alive as written in the scenario (empty: not sent).
    #[serde(with = "crate::units::written_or_empty")]
    pub keep_alive: Option<KeepAlive>,
    /// Warm-up request, excluded from statistics.
    pub warmup: bool,
    /// When the workload said to send.
    pub intended_ms: f64,
    /// When it was sent (empty if never sent, e.g. saturated).
    pub sent_ms: Option<f64>,
    /// First response byte.
    pub first_byte_ms: Option<f64>,
    /// First chunk with any text, thinking included (M10).
    pub first_token_ms: Option<f64>,
    /// First answer text (after any thinking).
    pub first_answer_ms: Option<f64>,
    /// Response complete or failed.
    pub end_ms: f64,
    /// HTTP status (empty if none).
    pub status: Option<u16>,
    /// Error kind (`connect`, `timeout`, `http`, `stream_error`, `broken_stream`,
    /// `bad_json`, `saturated`, `cancelled`); empty when none.
    pub error: String,
    /// Error text from the target.
    pub error_detail: String,
    /// Whether `/api/ps` listed the model just before the send (empty: not checked).
    pub resident_before: Option<bool>,
    /// Server `load_duration`.
    pub load_duration_ms: Option<f64>,
    /// The cold verdict (M6).
    pub cold: bool,
    /// Why cold: `not_resident`, `load_duration`, `both`; empty when warm.
    pub cold_reason: String,
    /// Prompt tokens evaluated.
    pub prompt_eval_count: Option<u64>,
    /// Prompt evaluation time.
    pub prompt_eval_ms: Option<f64>,
    /// Tokens generated.
    pub eval_count: Option<u64>,
    /// Generation time.
    pub eval_ms: Option<f64>,
    /// Server total time.
    pub total_duration_ms: Option<f64>,
    /// Intended send → first token.
    pub ttft_ms: Option<f64>,
    /// Intended send → end (successful requests).
    pub e2e_ms: Option<f64>,
    /// Mean inter-token latency after the first token.
    pub itl_ms: Option<f64>,
    /// The host it went to, when the run has several targets (empty with one).
    #[serde(default)]
    pub target: String,
    /// The repetition of the cell (1, 2, …) with `[run] repeat` over 1; 0 otherwise
    /// (and in folders written before repetitions).
    #[serde(default)]
    pub repetition: u32,
}

impl RequestRecord {
    /// True when the request failed in any way.
    pub fn is_error(&self) -> bool {
        !self.error.is_empty()
    }
}

/// Why a request counts as cold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdReason {
    /// `/api/ps` did not list the model before the send.
    NotResident,
    /// `load_duration` reached the threshold.
    LoadDuration,
    /// Both facts.
    Both,
}

impl ColdReason {
    /// The `cold_reason` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdReason::NotResident => "not_resident",
            ColdReason::LoadDuration => "load_duration",
            ColdReason::Both => "both",
        }
    }
}

/// The cold rule (M6): cold when the model was missing from `/api/ps` just before the
/// send, or `load_duration` ≥ threshold; never on `load_duration > 0` alone.
pub fn classify_cold(
    resident_before: Option<bool>,
    load_duration: Option<Duration>,
    threshold: Duration,
) -> Option<ColdReason> {
    let missing = resident_before == Some(false);
    let slow = load_duration.is_some_and(|d| d >= threshold);
    match (missing, slow) {
        (true, true) => Some(ColdReason::Both),
        (true, false) => Some(ColdReason::NotResident),
        (false, true) => Some(ColdReason::LoadDuration),
        (false, false) => None,
    }
}

/// Re-applies the cold rule to a row with another threshold (no rerun needed).
pub fn reclassify(record: &mut RequestRecord, threshold: Duration) {
    let load = record
        .load_duration_ms
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    let reason = classify_cold(record.resident_before, load, threshold);
    record.cold = reason.is_some();
    record.cold_reason = reason.map(|r| r.as_str().to_string()).unwrap_or_default();
}

/// One memory sample: a row of `vram.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VramSample {
    /// Milliseconds since the run start.
    pub t_ms: f64,
    /// `nvml`, `ollama_ps`, `rss`, `prometheus` or `sim`.
    pub source: String,
    /// Device (`gpu0`, a host, `sim`) or empty.
    pub device: String,
    /// Model name (from `/api/ps`), process name, or empty for a device total.
    pub model: String,
    /// Bytes in use (`size_vram` for `/api/ps`).
    pub used_bytes: u64,
    /// Total bytes (device total, or `size` for `/api/ps`), if known.
    pub total_bytes: Option<u64>,
    /// Extra detail, e.g. `expires_at` for `/api/ps`.
    pub extra: String,
    /// The Ollama host sampled (`/api/ps` of a fleet's hosts); empty for the run's one
    /// target and for host-wide sources.
    #[serde(default)]
    pub host: String,
}

/// UTC now as RFC 3339.
pub fn utc_now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Appends CSV rows: [`Self::append`] flushes each so a crash or Ctrl-C loses nothing;
/// [`Self::write`] leaves the flush to the caller (a writer of many rows a second
/// flushes on a short timer instead, one write to the file per period).
pub struct CsvAppender<T> {
    writer: csv::Writer<BufWriter<File>>,
    _row: std::marker::PhantomData<T>,
}

impl<T: Serialize> CsvAppender<T> {
    /// Creates (truncates) the file and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let writer = csv::WriterBuilder::new()
            .has_headers(true)
            .from_writer(BufWriter::new(file));
        Ok(CsvAppender {
            writer,
            _row: std::marker::PhantomData,
        })
    }

    /// Appends and flushes one row.
    pub fn append(&mut self, row: &T) -> Result<()> {
        self.write(row)?;
        self.flush()
    }

    /// Appends one row to the buffer; it reaches the file on [`Self::flush`] (or when
    /// the buffer fills).
    pub fn write(&mut self, row: &T) -> Result<()> {
        self.writer.serialize(row).context("writing a CSV row")
    }

    /// Writes every buffered row to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().context("flushing CSV rows")
    }
}

/// Writes a header-only CSV for `T` by serializing nothing: csv writes headers lazily,
/// so an empty run still gets a readable file.
fn write_header<T: Serialize + Default>(path: &Path) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    // Serialize a default row into a buffer to learn the header, then write only it.
    let mut probe = csv::Writer::from_writer(Vec::new());
    probe
        .serialize(T::default())
        .context("probing CSV header")?;
    let bytes = probe.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header);
    if let Some(rec) = r.records().next() {
        w.write_record(&rec?)?;
    }
    w.flush()?;
    Ok(())
}

/// `--out` names a folder that already holds a run: nothing is overwritten.
#[derive(Debug, thiserror::Error)]
#[error("{0} already holds a run (run.json); choose another --out or remove it first")]
pub struct RunFolderExists(pub String);

/// `--out` names a folder that holds other files and no run: nothing is overwritten.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is not empty and is not a kabench run folder (no run.json); choose a new or empty --out folder"
)]
pub struct RunFolderNotEmpty(pub String);

/// `--out` names a folder that cannot be created or written (read-only, not a folder,
/// no permission): bad input, nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the run folder {dir}: {why}; choose an --out folder you can write to")]
pub struct RunFolderUnwritable {
    /// The folder.
    pub dir: String,
    /// The system's reason.
    pub why: String,
}

/// Opens an existing CSV (with its header already written) for appending rows.
pub fn append_to<T: Serialize>(path: &Path) -> Result<CsvAppender<T>> {
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} for append", path.display()))?;
    let writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(BufWriter::new(file));
    Ok(CsvAppender {
        writer,
        _row: std::marker::PhantomData,
    })
}

/// Writes JSON to `path` through a temporary file and a rename, so readers never see half a
/// file; when either step fails (a full disk) the temporary file is removed and `path`
/// keeps its previous content.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// Writes `bytes` to `path` through a temporary file beside it (`NAME.tmp`) and a
/// rename: `path` is either its previous content or the new one, never half of it (a
/// full disk, Ctrl-C while rendering); on failure the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = write_synced(&tmp, bytes)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` to a new `path` and flushes them to the disk, so a full disk shows here.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// Space set aside in a run folder when it is created, given back before the last
/// `run.json` is written, so a run stopped by a full disk can still say so.
pub const RESERVE_FILE: &str = ".kabench-reserve";
/// How much space [`reserve_space`] sets aside (256 KiB).
pub const RESERVE_BYTES: usize = 256 * 1024;

/// Sets aside [`RESERVE_BYTES`] in `dir`. When it fails (the disk is nearly full) the
/// partial file is removed and the error returned: a run that starts anyway could not
/// record how it ended.
pub fn reserve_space(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(RESERVE_FILE);
    let written = write_synced(&path, &vec![0u8; RESERVE_BYTES]);
    if written.is_err() {
        let _ = fs::remove_file(&path);
    }
    written
}

/// Gives back the space of [`reserve_space`].
pub fn release_space(dir: &Path) {
    let _ = fs::remove_file(dir.join(RESERVE_FILE));
}

/// Reads `run.json`.
pub fn read_meta(dir: &Path) -> Result<RunMeta> {
    let path = dir.join(RUN_JSON);
    let text = input::read_text(&path).with_context(|| {
        format!(
            "reading {}: is {} a kabench run folder?",
            path.display(),
            dir.display()
        )
    })?;
    // The parser's message may quote a field whole: an excerpt of it.
    serde_json::from_str(&text).map_err(|e| {
        BadJson {
            path: path.display().to_string(),
            message: short(&e.to_string()),
        }
        .into()
    })
}

/// A JSON file of a run folder that does not parse: its path and the parser's message,
/// quoted short (the message may quote a field whole).
#[derive(Debug, thiserror::Error)]
#[error("parsing {path}: {message}")]
pub struct BadJson {
    /// The file.
    pub path: String,
    /// What the parser said, at most an excerpt of the field it quotes.
    pub message: String,
}

/// Writes `rows` to a new CSV file at `path` (the header even when there are none),
/// buffered and flushed once: for whole files made at once, such as a merge's.
pub fn write_csv<'a, T: Serialize + Default + 'a>(
    path: &Path,
    rows: impl IntoIterator<Item = &'a T>,
) -> Result<u64> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        write_header::<T>(path)?;
        return Ok(0);
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    let mut n = 0;
    for row in rows {
        w.serialize(row)
            .with_context(|| format!("writing {}", path.display()))?;
        n += 1;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// Reads every row of `requests.csv`; a torn last line (hard kill mid-write) is skipped.
pub fn read_requests(dir: &Path) -> Result<Vec<RequestRecord>> {
    read_csv(&dir.join(REQUESTS_CSV))
}

/// Reads the rows of `vram.csv` (empty if the file is missing), at most
/// [`MAX_MODEL_ROWS_PER_SAMPLE`] model rows per sample; see [`read_vram_noting`].
pub fn read_vram(dir: &Path) -> Result<Vec<VramSample>> {
    read_vram_noting(dir, &mut Vec::new())
}

/// Reads `requests.csv`, skipping rows that do not parse; each is noted in `notes` with
/// its line number (a torn last line after a hard kill included).
pub fn read_requests_noting(dir: &Path, notes: &mut Vec<String>) -> Result<Vec<RequestRecord>> {
    let mut rows = Vec::new();
    for_each_row(&dir.join(REQUESTS_CSV), notes, |r| {
        rows.push(r);
        Ok(())
    })?;
    Ok(rows)
}

/// Most per-model rows of one sample (one source and device at one time) that are
/// written or read; device totals (rows without a model) are always kept.
pub const MAX_MODEL_ROWS_PER_SAMPLE: usize = 64;

/// Reads `vram.csv` (empty if missing) as `read_requests_noting` reads `requests.csv`,
/// streaming it and keeping at most [`MAX_MODEL_ROWS_PER_SAMPLE`] model rows per
/// sample, so a file written against a server listing 150 000 models stays small in
/// memory; the rows left out are noted.
pub fn read_vram_noting(dir: &Path, notes: &mut Vec<String>) -> Result<Vec<VramSample>> {
    read_vram_limited(dir, u64::MAX, notes)
}

/// [`read_vram_noting`] holding at most `max_rows` rows: more is refused, naming the
/// file and the limit (exit 2).
pub fn read_vram_limited(
    dir: &Path,
    max_rows: u64,
    notes: &mut Vec<String>,
) -> Result<Vec<VramSample>> {
    let path = dir.join(VRAM_CSV);
    let mut rows = Vec::new();
    if !path.exists() {
        return Ok(rows);
    }
    // Per source: the sample being read (device, time) and its model rows so far.
    let mut current: BTreeMap<String, (String, u64, usize)> = BTreeMap::new();
    let mut dropped = 0u64;
    for_each_row(&path, notes, |r: VramSample| {
        if rows.len() as u64 >= max_rows {
            return Err(crate::units::ParseError::new(format!(
                "{}: more than {max_rows} memory samples, the limit of one report; \
                 sample less often ([telemetry] interval) or run a shorter run",
                path.display()
            ))
            .into());
        }
        if r.model.is_empty() {
            rows.push(r);
            return Ok(());
        }
        let at = r.t_ms.to_bits();
        let slot = current
            .entry(r.source.clone())
            .or_insert_with(|| (String::new(), u64::MAX, 0));
        if slot.0 != r.device || slot.1 != at {
            *slot = (r.device.clone(), at, 0);
        }
        slot.2 += 1;
        if slot.2 <= MAX_MODEL_ROWS_PER_SAMPLE {
            rows.push(r);
        } else {
            dropped += 1;
        }
        Ok(())
    })?;
    if dropped > 0 {
        notes.push(format!(
            "{VRAM_CSV}: {dropped} model rows past {MAX_MODEL_ROWS_PER_SAMPLE} per sample were left out (the totals count every model)"
        ));
    }
    Ok(rows)
}

fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(LineBounded::new(input::open_regular(path)?));
    let mut rows = Vec::new();
    let mut bad = 0usize;
    for (i, row) in reader.deserialize::<T>().enumerate() {
        match row {
            Ok(r) => rows.push(r),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(csv_error(path, e)),
            Err(e) => {
                bad += 1;
                if bad > 1 {
                    return Err(anyhow::anyhow!(
                        "{} row {}: {}",
                        path.display(),
                        i + 2,
                        short(&e.to_string())
                    ));
                }
            }
        }
    }
    Ok(rows)
}

/// Milliseconds as f64 from a Duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
