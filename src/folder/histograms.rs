//! The latency histograms of a run folder: one HdrHistogram per cell, stream and metric
//! (µs, 1 µs to 1 h, 3 significant digits, the same everywhere), built from the request
//! rows by one rule (warm-ups and failed requests left out) that `analysis` uses too,
//! and written as HdrHistogram's V2 compressed format in
//! `histograms/<cell>/<stream>/<metric>.hdr`, so shards merge by adding histograms,
//! never by averaging percentiles. Knows nothing of percentiles' use.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::{HistogramSettings, RequestRecord, input};
use crate::units::ParseError;

/// The folder of the histogram files inside a run folder.
pub const HISTOGRAMS_DIR: &str = "histograms";

/// Bounds and precision of every histogram kabench writes.
pub const SETTINGS: HistogramSettings = HistogramSettings {
    lowest_us: 1,
    highest_us: 3_600_000_000,
    significant_digits: 3,
};

/// The metrics written per stream, in file-name form.
pub const METRICS: [&str; 8] = [
    "ttft_ms",
    "ttft_ms_warm",
    "ttft_ms_cold",
    "e2e_ms",
    "e2e_ms_warm",
    "e2e_ms_cold",
    "tpot_ms",
    "load_ms",
];

/// An empty histogram with `SETTINGS`.
pub fn empty() -> Histogram<u64> {
    // The bounds are constants hdrhistogram accepts; failure would be a bug here.
    Histogram::new_with_bounds(
        SETTINGS.lowest_us,
        SETTINGS.highest_us,
        SETTINGS.significant_digits,
    )
    .unwrap_or_else(|_| unreachable!("constant histogram bounds"))
}

/// Records a value in milliseconds as whole microseconds, clamped into range.
pub fn record_ms(hist: &mut Histogram<u64>, ms: f64) {
    let us = (ms * 1000.0)
        .round()
        .clamp(SETTINGS.lowest_us as f64, SETTINGS.highest_us as f64) as u64;
    hist.saturating_record(us);
}

/// A histogram's settings as written in its file.
pub fn settings_of(hist: &Histogram<u64>) -> HistogramSettings {
    HistogramSettings {
        lowest_us: hist.low(),
        highest_us: hist.high(),
        significant_digits: hist.sigfig(),
    }
}

/// The histograms of one stream of one cell.
#[derive(Debug, Clone)]
pub struct StreamHistograms {
    /// TTFT of all, warm and cold requests.
    pub ttft: [Histogram<u64>; 3],
    /// End to end of all, warm and cold requests.
    pub e2e: [Histogram<u64>; 3],
    /// Mean inter-token latency.
    pub tpot: Histogram<u64>,
    /// `load_duration` of cold requests.
    pub load: Histogram<u64>,
}

impl Default for StreamHistograms {
    fn default() -> Self {
        StreamHistograms {
            ttft: [empty(), empty(), empty()],
            e2e: [empty(), empty(), empty()],
            tpot: empty(),
            load: empty(),
        }
    }
}

impl StreamHistograms {
    /// Whether a row enters the histograms: counted (not a warm-up) and answered.
    pub fn counts(row: &RequestRecord) -> bool {
        !row.warmup && !row.is_error()
    }

    /// Records one answered request (see `counts`).
    pub fn add(&mut self, r: &RequestRecord) {
        let group = if r.cold { 2 } else { 1 };
        if let Some(v) = r.ttft_ms {
            record_ms(&mut self.ttft[0], v);
            record_ms(&mut self.ttft[group], v);
        }
        if let Some(v) = r.e2e_ms {
            record_ms(&mut self.e2e[0], v);
            record_ms(&mut self.e2e[group], v);
        }
        if let Some(v) = r.itl_ms {
            record_ms(&mut self.tpot, v);
        }
        if r.cold
            && let Some(v) = r.load_duration_ms
        {
            record_ms(&mut self.load, v);
        }
    }

    /// Each metric's histogram, named as in `METRICS`.
    pub fn named(&self) -> [(&'static str, &Histogram<u64>); 8] {
        [
            (METRICS[0], &self.ttft[0]),
            (METRICS[1], &self.ttft[1]),
            (METRICS[2], &self.ttft[2]),
            (METRICS[3], &self.e2e[0]),
            (METRICS[4], &self.e2e[1]),
            (METRICS[5], &self.e2e[2]),
            (METRICS[6], &self.tpot),
            (METRICS[7], &self.load),
        ]
    }
}

/// (cell, stream, metric) → histogram: the files of a folder.
pub type HistogramFiles = BTreeMap<(String, String, String), Histogram<u64>>;

/// The histograms of `rows`, by (cell, stream, metric): every metric of every
/// (cell, stream) that has a row, empty ones included.
pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a RequestRecord>) -> HistogramFiles {
    let mut by = RowHistograms::default();
    for r in rows {
        by.add(r);
    }
    by.finish()
}

/// [`from_rows`] one row at a time, for rows streamed from a file.
#[derive(Debug, Clone, Default)]
pub struct RowHistograms(BTreeMap<(String, String), StreamHistograms>);

impl RowHistograms {
    /// Adds one row (a warm-up or failed row only names its cell and stream).
    pub fn add(&mut self, r: &RequestRecord) {
        let h = self
            .0
            .entry((r.cell.clone(), r.stream.clone()))
            .or_default();
        if StreamHistograms::counts(r) {
            h.add(r);
        }
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The histograms by (cell, stream, metric).
    pub fn finish(self) -> HistogramFiles {
        let mut out = HistogramFiles::new();
        for ((cell, stream), h) in self.0 {
            for (metric, hist) in h.named() {
                out.insert(
                    (cell.clone(), stream.clone(), metric.to_string()),
                    hist.clone(),
                );
            }
        }
        out
    }
}

/// `histograms/<cell>/<stream>/<metric>.hdr` inside `dir`, each name checked to stay
/// one path component ([`input::file_name`]): a name from a crafted `requests.csv`
/// (`../..`, `/etc`) never leaves the folder.
pub fn file_of(dir: &Path, cell: &str, stream: &str, metric: &str) -> Result<PathBuf, ParseError> {
    Ok(dir
        .join(HISTOGRAMS_DIR)
        .join(input::file_name(cell, "histogram cell")?)
        .join(input::file_name(stream, "histogram stream")?)
        .join(format!(
            "{}.hdr",
            input::file_name(metric, "histogram metric")?
        )))
}

/// Writes every histogram as `histograms/<cell>/<stream>/<metric>.hdr` (V2, deflated);
/// a name that cannot be a file name is refused before anything is written.
pub fn write(dir: &Path, files: &HistogramFiles) -> Result<()> {
    let mut ser = V2DeflateSerializer::new();
    for (cell, stream, metric) in files.keys() {
        file_of(dir, cell, stream, metric)?;
    }
    for ((cell, stream, metric), hist) in files {
        let path = file_of(dir, cell, stream, metric)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut bytes = Vec::new();
        ser.serialize(hist, &mut bytes)
            .map_err(|e| anyhow::anyhow!("serializing {}: {e:?}", path.display()))?;
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads every `histograms/<cell>/<stream>/<metric>.hdr` of a folder (empty when the
/// folder has none).
pub fn read(dir: &Path) -> Result<HistogramFiles> {
    read_known(dir, |_, _, _| true)
}

/// As [`read`], refusing (bad input, before reading it) a file whose cell, stream or
/// metric `known` does not accept: a folder's histograms are those of its own cells and
/// streams, so a crafted folder cannot make a reader hold any number of them.
pub fn read_known(dir: &Path, known: impl Fn(&str, &str, &str) -> bool) -> Result<HistogramFiles> {
    let root = dir.join(HISTOGRAMS_DIR);
    let mut out = HistogramFiles::new();
    if !root.is_dir() {
        return Ok(out);
    }
    let mut de = Deserializer::new();
    for cell in sorted_entries(&root)? {
        for stream in sorted_entries(&cell)? {
            for file in sorted_entries(&stream)? {
                let Some(metric) = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".hdr"))
                else {
                    continue;
                };
                let (c, st) = (name(&cell), name(&stream));
                if !known(&c, &st, metric) {
                    return Err(ParseError::new(format!(
                        "{}: no histogram kabench writes: its cell, stream or metric is none of the folder's run.json (metrics: {})",
                        file.display(),
                        METRICS.join(", ")
                    ))
                    .into());
                }
                let hist = read_file(&file, &mut de)?;
                out.insert((c, st, metric.to_string()), hist);
            }
        }
    }
    Ok(out)
}

/// The largest `.hdr` file read, and the largest payload one may unpack to (bytes):
/// a full histogram of [`SETTINGS`] is about 23,000 counters of at most 9 bytes each.
pub const MAX_HDR_BYTES: u64 = 1 << 20;

const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
const V2_HEADER_BYTES: usize = 40;

/// Reads one `.hdr` file (V2, deflated or not) with every length it claims checked
/// against [`MAX_HDR_BYTES`] and the bytes really there, and its bounds against
/// [`SETTINGS`], before anything is allocated for it.
fn read_file(path: &Path, de: &mut Deserializer) -> Result<Histogram<u64>> {
    let shown = path.display();
    let bad = |why: String| -> anyhow::Error {
        ParseError::new(format!(
            "{shown}: {why}; histogram files are at most {MAX_HDR_BYTES} bytes and unpack to at most {MAX_HDR_BYTES} (remove the file: merge rebuilds a shard's histograms from its requests.csv when it has none)"
        ))
        .into()
    };
    let file = input::open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_HDR_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_HDR_BYTES {
        return Err(bad("the file is over the limit".into()));
    }
    let (cookie, rest) = be_u32(&bytes).ok_or_else(|| bad("the file is too short".into()))?;
    let inner = match cookie {
        V2_COOKIE => bytes,
        V2_COMPRESSED_COOKIE => {
            let (claimed, packed) =
                be_u32(rest).ok_or_else(|| bad("the file is too short".into()))?;
            if claimed as usize > packed.len() {
                return Err(bad(format!(
                    "it claims a compressed payload of {claimed} bytes but holds {}",
                    packed.len()
                )));
            }
            let mut inner = Vec::new();
            flate2::read::ZlibDecoder::new(&packed[..claimed as usize])
                .take(MAX_HDR_BYTES + 1)
                .read_to_end(&mut inner)
                .map_err(|e| bad(format!("its payload does not unpack ({e})")))?;
            if inner.len() as u64 > MAX_HDR_BYTES {
                return Err(bad("its payload unpacks to more than the limit".into()));
            }
            inner
        }
        other => return Err(bad(format!("{other:#x} is not a V2 histogram's cookie"))),
    };
    if inner.len() < V2_HEADER_BYTES || be_u32(&inner).map(|c| c.0) != Some(V2_COOKIE) {
        return Err(bad("its payload is not a V2 histogram".into()));
    }
    let field = |at: usize, n: usize| {
        inner[at..at + n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let claimed = field(4, 4);
    let held = inner.len() - V2_HEADER_BYTES;
    if claimed > held as u64 {
        return Err(bad(format!(
            "it claims {claimed} bytes of counts but holds {held}"
        )));
    }
    let settings = (field(16, 8), field(24, 8), field(12, 4));
    let ours = (
        SETTINGS.lowest_us,
        SETTINGS.highest_us,
        u64::from(SETTINGS.significant_digits),
    );
    if settings != ours {
        return Err(ParseError::new(format!(
            "{shown}: the histogram's bounds and precision (lowest {} µs, highest {} µs, {} digits) are not those kabench writes ({:?}); shards must share bounds and precision",
            settings.0, settings.1, settings.2, SETTINGS
        ))
        .into());
    }
    de.deserialize(&mut &inner[..])
        .map_err(|e| bad(format!("it does not decode ({e:?})")))
}

fn be_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_v2_deflate_files() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<RequestRecord> = (0..50)
            .map(|i| RequestRecord {
                cell: "c01".into(),
                stream: "chat".into(),
                cold: i % 7 == 0,
                ttft_ms: Some(10.0 + i as f64 * 3.3),
                e2e_ms: Some(100.0 + i as f64),
                load_duration_ms: Some(300.0),
                ..Default::default()
            })
            .collect();
        let files = from_rows(&rows);
        write(dir.path(), &files).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back.len(), METRICS.len());
        for (k, h) in &files {
            assert_eq!(&back[k], h, "{k:?}");
            assert_eq!(settings_of(&back[k]), SETTINGS);
        }
        assert_eq!(
            back[&("c01".into(), "chat".into(), "ttft_ms_cold".into())].len(),
            8
        );
    }
}
