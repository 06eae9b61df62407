//! Aggregation of a run folder's records into per-cell, per-stream statistics
//! (`summary.json`): HdrHistogram percentiles of TTFT and end-to-end latency for all,
//! warm and cold requests, cold ratios, errors by kind, token rates, and the VRAM
//! figures of `vram`. Reads typed rows only; knows nothing of HTTP or drawing. Over
//! 600 lines: the cell, stream and host summaries share one reading of the rows.

pub mod intervals;
pub mod large;
pub mod read;
pub mod reload;
pub mod repeat;
pub mod schema;
pub mod stats;
pub mod vram;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::folder::histograms::{self, StreamHistograms};
use crate::folder::prediction::{
    GapDistribution, OptimumMeta, OutOfSample, PolicyMeta, PreLoadBoundMeta,
};
use crate::folder::{
    self, CellMeta, CellParams, RequestRecord, RunMeta, RunStatus, TargetMeta, VramSample,
};
use crate::units::KeepAlive;

/// `summary.json`: the whole run, cell by cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Target of the run.
    pub target: TargetMeta,
    /// `/api/version` of the target.
    pub ollama_version: Option<String>,
    /// How the run ended.
    pub status: RunStatus,
    /// Cold threshold applied (M6), ms.
    pub cold_threshold_ms: f64,
    /// Cells in run order.
    pub cells: Vec<CellSummary>,
    /// True when the figures are a prediction's (`kabench predict`), not a measurement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// A prediction's best fixed keep_alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_fixed: Option<String>,
    /// What a prediction's `×optimum` is read against: the keep_alive optimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimum: Option<OptimumMeta>,
    /// A prediction's pre-load bound, beside the optimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_load_bound: Option<PreLoadBoundMeta>,
    /// A prediction's gap distribution per model, with its break-even time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapDistribution>,
    /// A prediction's out-of-sample check (with `--train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_sample: Option<OutOfSample>,
}

impl Summary {
    /// True when the cells carry a policy table: figures a replay computed (there
    /// are no request rows to recompute them from).
    pub fn has_policies(&self) -> bool {
        self.cells.iter().any(|c| c.policy.is_some())
    }
}

/// One cell of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellSummary {
    /// Cell id.
    pub id: String,
    /// Swept axes, typed, each as written in the scenario.
    pub params: CellParams,
    /// One entry per stream.
    pub streams: Vec<StreamSummary>,
    /// Memory held over the cell, when any telemetry source recorded it.
    pub vram: Option<vram::VramFigures>,
    /// Why the cell's memory is missing where it should have been measured (a merged
    /// run whose sampling shards stopped during the cell): `vram` is then `null`, never
    /// zero, and no keep_alive is recommended over the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_missing: Option<String>,
    /// Which shards of a merged run started the cell past their tolerance after its
    /// fixed start, and how late: no keep_alive is recommended over the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_late: Option<String>,
    /// Things Ollama users trip over, seen in this cell.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Cold loads of models that had not expired, by cause.
    #[serde(default)]
    pub reloads: reload::Reloads,
    /// True in a prediction's cells.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// A prediction's policy of this cell: what it costs and how to apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyMeta>,
    /// The repetitions pooled into this cell (`[run] repeat` over 1): each one's own
    /// figures and the interval of the mean idle memory over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions: Option<repeat::Repetitions>,
}

/// Statistics of one stream in one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamSummary {
    /// Stream name.
    pub name: String,
    /// Model tag.
    pub model: String,
    /// keep_alive sent (`None`: not sent), as `keep_alive` (written), `keep_alive_s`
    /// (`null`: forever or not sent) and `keep_alive_forever`.
    #[serde(flatten, with = "crate::units::keep_alive_keys")]
    #[schemars(with = "crate::units::KeepAliveKeys")]
    pub keep_alive: Option<KeepAlive>,
    /// Mean arrival rate, requests/s.
    pub rate_per_s: Option<f64>,
    /// Requests counted (warm-up excluded).
    pub requests: u64,
    /// Warm-up requests left out of the statistics.
    pub warmup: u64,
    /// Failed requests (saturated, cancelled and every other error kind).
    pub errors: u64,
    /// Failed requests by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests sent and answered (`requests − errors`): what `cold_ratio` is over.
    #[serde(default)]
    pub answered: u64,
    /// Cold requests (M6) among the answered ones.
    pub cold: u64,
    /// Distinct model loads the cold requests waited for (concurrent first requests
    /// share one load, L2), to compare with the server's own count.
    #[serde(default)]
    pub loads: u64,
    /// cold / answered: requests never sent or never answered (saturated, failed,
    /// cancelled) are counted beside it in `errors`, not in it.
    pub cold_ratio: f64,
    /// Time to first token from the intended send, ms.
    pub ttft_ms: Split,
    /// End to end from the intended send, ms.
    pub e2e_ms: Split,
    /// Time per output token after the first, ms.
    pub tpot_ms: Option<Percentiles>,
    /// Server `load_duration` of cold requests, ms.
    pub load_ms: Option<Percentiles>,
    /// Median cold TTFT minus median warm TTFT, ms: what one cold start costs a user.
    pub cold_penalty_ms: Option<f64>,
    /// Decode speed, tokens/s: the median of the per-request rates the server reports
    /// (`eval_count / eval_duration`), so that one stalled request does not drag it.
    pub tokens_per_s: Option<f64>,
    /// Confidence intervals of the headline figures (absent in a prediction and in
    /// summaries written before they were computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<intervals::StreamIntervals>,
    /// The same figures per host of a fleet, in host order (absent with one target):
    /// the stream's own figures above are the merged ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSummary>,
}

/// One host's share of a stream in a run against a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostSummary {
    /// The host (`requests.csv` `target`).
    pub target: String,
    /// Requests counted (warm-up excluded).
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Cold requests among the answered ones.
    pub cold: u64,
    /// cold / answered.
    pub cold_ratio: f64,
    /// Time to first token of every answered request, ms.
    pub ttft_ms: Option<Percentiles>,
    /// End to end of every answered request, ms.
    pub e2e_ms: Option<Percentiles>,
}

/// Percentiles of all, warm and cold requests (`null` when a group is empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Split {
    /// Every successful request.
    pub all: Option<Percentiles>,
    /// Successful warm requests.
    pub warm: Option<Percentiles>,
    /// Successful cold requests.
    pub cold: Option<Percentiles>,
}

/// Percentiles of one group, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Values.
    pub count: u64,
}

/// A histogram of milliseconds, kept in microseconds (3 significant digits, 1 µs to 1 h).
#[derive(Debug, Clone)]
pub struct MsHistogram {
    hist: Histogram<u64>,
}

impl Default for MsHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl MsHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        MsHistogram {
            hist: histograms::empty(),
        }
    }

    /// A histogram of microseconds as the run folder's files hold it.
    pub fn from_us(hist: Histogram<u64>) -> Self {
        MsHistogram { hist }
    }

    /// Records one value in milliseconds (clamped into range).
    pub fn record_ms(&mut self, ms: f64) {
        histograms::record_ms(&mut self.hist, ms);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Percentiles, or `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        percentiles_of(&self.hist)
    }
}

/// Percentiles in ms of a histogram of microseconds, or `None` when it is empty.
pub fn percentiles_of(hist: &Histogram<u64>) -> Option<Percentiles> {
    if hist.is_empty() {
        return None;
    }
    // One pass over the counts for the four quantiles (each exactly what
    // `value_at_quantile` gives): a run of thousands of streams summarizes quickly.
    let mut q = [0f64; 4];
    for (slot, v) in q
        .iter_mut()
        .zip(hist.value_at_quantiles([0.50, 0.90, 0.99, 0.999]))
    {
        *slot = v as f64 / 1000.0;
    }
    Some(Percentiles {
        p50: q[0],
        p90: q[1],
        p99: q[2],
        p999: q[3],
        max: hist.max() as f64 / 1000.0,
        mean: hist.mean() / 1000.0,
        count: hist.len(),
    })
}

/// Builds the summary of a run from its metadata and rows. `cold_threshold` re-applies
/// the cold rule to every row (M6) when given; otherwise the recorded verdicts stand.
pub fn summarize(
    meta: &RunMeta,
    requests: &[RequestRecord],
    samples: &[VramSample],
    cold_threshold: Option<Duration>,
) -> Summary {
    let mut by_cell: RowsByCell = BTreeMap::new();
    for r in requests {
        let mut row = r.clone();
        if let Some(t) = cold_threshold {
            folder::reclassify(&mut row, t);
        }
        by_cell.entry(r.cell.clone()).or_default().push(row);
    }
    summarize_by_cell(meta, &by_cell, samples, cold_threshold)
}

/// A run's rows grouped by cell id, in file order within each cell.
pub type RowsByCell = BTreeMap<String, Vec<RequestRecord>>;

/// [`summarize`] of rows already grouped by cell, with `cold_threshold` (when given)
/// already applied to them: nothing is copied.
pub fn summarize_by_cell(
    meta: &RunMeta,
    by_cell: &RowsByCell,
    samples: &[VramSample],
    cold_threshold: Option<Duration>,
) -> Summary {
    let threshold_ms = cold_threshold
        .map(folder::ms)
        .unwrap_or(meta.cold_threshold_ms);
    let (samples, memory_note) = one_host(meta, samples);
    let samples = samples.as_ref();
    let tolerance = release_tolerance(meta);
    let horizon = meta.idle_horizon();
    let threshold = Duration::from_secs_f64(threshold_ms.max(0.0) / 1000.0);
    let cells = meta
        .cells
        .iter()
        .filter(|c| c.started_ms.is_some() || by_cell.get(&c.id).is_some_and(|r| !r.is_empty()))
        .map(|cell| {
            let rows = by_cell.get(&cell.id).map(Vec::as_slice).unwrap_or(&[]);
            // Each cell's samples are its own (up to the next cell's start); its memory
            // figures are counted over the run's one idle horizon.
            let mine = vram::cell_samples(samples, &meta.cells, &cell.id);
            let window = horizon.window(rows, cell);
            let mut c = summarize_cell(cell, rows, &mine, window, tolerance, threshold);
            if let Some(why) = meta
                .merged
                .as_ref()
                .and_then(|m| m.memory_not_measured.get(&cell.id))
            {
                c.vram = None;
                c.memory_missing = Some(why.clone());
                c.warnings.push(format!("memory not measured: {why}"));
            }
            if let Some(why) = meta
                .merged
                .as_ref()
                .and_then(|m| m.late_cells.get(&cell.id))
            {
                c.ran_late = Some(why.clone());
                c.warnings
                    .push(format!("ran late ({why}): left out of the recommendation"));
            }
            if let Some(note) = &memory_note
                && c.vram.is_some()
            {
                c.warnings.push(note.clone());
            }
            c
        })
        .collect::<Vec<_>>();
    let cells = if meta.cells.iter().any(|c| c.params.repetition.is_some()) {
        repeat::pool(meta, by_cell, cells, threshold)
    } else {
        cells
    };
    Summary {
        scenario: meta.scenario.clone(),
        target: meta.target.clone(),
        ollama_version: meta.ollama_version.clone(),
        status: meta.status,
        cold_threshold_ms: threshold_ms,
        cells,
        predicted: false,
        best_fixed: None,
        optimum: None,
        pre_load_bound: None,
        gaps: Vec::new(),
        out_of_sample: None,
    }
}

/// The samples the memory figures read: with a fleet's `/api/ps` series (several
/// `host`s), only the first host's series and the host-wide sources, with a note that
/// says so; every sample otherwise.
fn one_host<'a>(
    meta: &RunMeta,
    samples: &'a [VramSample],
) -> (std::borrow::Cow<'a, [VramSample]>, Option<String>) {
    let mut hosts: Vec<&str> = Vec::new();
    for s in samples {
        if !s.host.is_empty() && !hosts.contains(&s.host.as_str()) {
            hosts.push(&s.host);
        }
    }
    if hosts.len() < 2 {
        return (std::borrow::Cow::Borrowed(samples), None);
    }
    let first = meta
        .target
        .urls
        .iter()
        .find(|u| hosts.contains(&u.as_str()))
        .map_or(hosts[0], String::as_str)
        .to_string();
    let kept = samples
        .iter()
        .filter(|s| s.host.is_empty() || s.host == first)
        .cloned()
        .collect();
    (
        std::borrow::Cow::Owned(kept),
        Some(format!(
            "memory figures are those of {first}, the first of {} hosts; vram.csv holds every host's /api/ps (column host)",
            hosts.len()
        )),
    )
}

fn release_tolerance(meta: &RunMeta) -> Duration {
    meta.telemetry
        .get("release_tolerance_ms")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .unwrap_or(Duration::from_millis(350))
}

fn summarize_cell(
    cell: &CellMeta,
    rows: &[RequestRecord],
    samples: &[VramSample],
    window: Option<folder::CellWindow>,
    tolerance: Duration,
    threshold: Duration,
) -> CellSummary {
    // Rows by stream, once: a cell of thousands of streams is not scanned per stream.
    let mut by_stream: BTreeMap<&str, Vec<&RequestRecord>> = BTreeMap::new();
    for r in rows {
        by_stream.entry(r.stream.as_str()).or_default().push(r);
    }
    let streams = cell
        .streams
        .iter()
        .map(|s| {
            let mine = by_stream
                .get(s.name.as_str())
                .map_or(&[][..], Vec::as_slice);
            summarize_stream(s, mine, threshold)
        })
        .collect();
    let vram = vram::vram_figures_over(samples, rows, cell, tolerance, window);
    let mut warnings = match &vram {
        Some(f) => vram::vram_warnings(samples, rows, cell, f, tolerance),
        None => Vec::new(),
    };
    let reloads = reload::detect(cell, rows);
    warnings.extend(reloads.warnings());
    CellSummary {
        id: cell.id.clone(),
        params: cell.params.clone(),
        streams,
        vram,
        memory_missing: None,
        ran_late: None,
        warnings,
        reloads,
        predicted: false,
        policy: None,
        repetitions: None,
    }
}

fn summarize_stream(
    meta: &folder::StreamMeta,
    rows: &[&RequestRecord],
    threshold: Duration,
) -> StreamSummary {
    let mut hists = StreamHistograms::default();
    let mut errors_by_kind = BTreeMap::new();
    let (mut requests, mut warmup, mut errors, mut cold) = (0u64, 0u64, 0u64, 0u64);
    let mut values = intervals::StreamValues::default();
    for r in rows {
        if r.warmup {
            warmup += 1;
            continue;
        }
        requests += 1;
        if r.is_error() {
            errors += 1;
            *errors_by_kind.entry(r.error.clone()).or_insert(0) += 1;
            continue;
        }
        if r.cold {
            cold += 1;
        }
        hists.add(r);
        values.ttft_ms.extend(r.ttft_ms);
        values.e2e_ms.extend(r.e2e_ms);
        if let (Some(n), Some(ms)) = (r.eval_count, r.eval_ms)
            && n > 0
            && ms > 0.0
        {
            values.tokens_per_s.push(n as f64 / (ms / 1000.0));
        }
    }
    let (intervals, tokens_per_s) =
        values.intervals(cold, requests - errors, stats::DEFAULT_CONFIDENCE);
    let pct = percentiles_of;
    let split = |h: &[Histogram<u64>; 3]| Split {
        all: pct(&h[0]),
        warm: pct(&h[1]),
        cold: pct(&h[2]),
    };
    let ttft_split = split(&hists.ttft);
    let cold_penalty_ms = match (&ttft_split.cold, &ttft_split.warm) {
        (Some(c), Some(w)) => Some((c.p50 - w.p50).max(0.0)),
        _ => None,
    };
    StreamSummary {
        name: meta.name.clone(),
        model: meta.model.clone(),
        keep_alive: meta.keep_alive.clone(),
        rate_per_s: meta.rate_per_s,
        requests,
        warmup,
        errors,
        errors_by_kind,
        answered: requests - errors,
        cold,
        loads: loads_witnessed(rows.iter().copied().filter(|r| !r.warmup), threshold),
        cold_ratio: if requests > errors {
            cold as f64 / (requests - errors) as f64
        } else {
            0.0
        },
        ttft_ms: ttft_split,
        e2e_ms: split(&hists.e2e),
        tpot_ms: pct(&hists.tpot),
        load_ms: pct(&hists.load),
        cold_penalty_ms,
        tokens_per_s,
        intervals: Some(intervals),
        hosts: per_host(rows),
    }
}

/// Each host's figures when the rows went to several hosts (empty otherwise), in the
/// order the hosts first appear.
fn per_host(rows: &[&RequestRecord]) -> Vec<HostSummary> {
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        if !r.target.is_empty() && !order.contains(&r.target.as_str()) {
            order.push(&r.target);
        }
    }
    if order.is_empty() {
        return Vec::new();
    }
    order
        .into_iter()
        .map(|host| {
            let mut h = StreamHistograms::default();
            let (mut requests, mut errors, mut cold) = (0u64, 0u64, 0u64);
            for r in rows.iter().filter(|r| r.target == host && !r.warmup) {
                requests += 1;
                if r.is_error() {
                    errors += 1;
                    continue;
                }
                cold += r.cold as u64;
                h.add(r);
            }
            let answered = requests - errors;
            HostSummary {
                target: host.to_string(),
                requests,
                errors,
                cold,
                cold_ratio: if answered > 0 {
                    cold as f64 / answered as f64
                } else {
                    0.0
                },
                ttft_ms: percentiles_of(&h.ttft[0]),
                e2e_ms: percentiles_of(&h.e2e[0]),
            }
        })
        .collect()
}

/// Distinct loads the rows of one cell witnessed: cold rows of one model whose waits
/// ended together (sent + `load_duration`, within half the cold threshold) met the same
/// load (L2: concurrent first requests share one); loads of one model are at least a
/// threshold apart (L1), so this counts each once.
pub fn loads_witnessed<'a>(
    rows: impl IntoIterator<Item = &'a RequestRecord>,
    threshold: Duration,
) -> u64 {
    let tolerance = folder::ms(threshold) / 2.0;
    let mut ends: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.cold && !r.is_error()) {
        if let Some(sent) = r.sent_ms {
            ends.entry(r.model.as_str())
                .or_default()
                .push(sent + r.load_duration_ms.unwrap_or(0.0));
        }
    }
    ends.into_values()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            let mut n = 0u64;
            let mut last = f64::NEG_INFINITY;
            for t in v {
                if t - last > tolerance {
                    n += 1;
                }
                last = t;
            }
            n
        })
        .sum()
}

/// Reads a run folder and summarizes it (the first half of `kabench report`), as
/// [`read::read_run`] does.
pub fn summarize_dir(dir: &Path, cold_threshold: Option<Duration>) -> Result<(RunMeta, Summary)> {
    let run = read::read_run(dir, cold_threshold)?;
    Ok((run.meta, run.summary))
}

/// Writes `summary.json` into a run folder.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<()> {
    folder::write_json_atomic(&dir.join(folder::SUMMARY_JSON), summary)
        .with_context(|| format!("writing the summary of {}", dir.display()))
}

#[cfg(test)]
mod tests;
