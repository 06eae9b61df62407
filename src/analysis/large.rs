//! The figures of a run with more rows than the report holds whole
//! (`folder::MAX_REPORT_ROWS`): `requests.csv` is read once, row by row, and every row
//! is added to its stream's accumulator — counts, errors by kind, cold requests, the
//! latency histograms (the same HdrHistogram settings the summary's percentiles always
//! came from), a histogram of per-request decode rates, the model loads witnessed and
//! each host's share — while only the first rows of each cell are kept whole for what
//! needs the rows themselves (memory figures, reload causes, charts).
//!
//! Memory is then bounded by the number of streams (each holds a count per latency
//! bucket it saw: a few hundred KB at most), not of rows. The percentiles are
//! exactly what the whole rows give (they come from the same histograms); their
//! intervals and the median decode rate are read from histogram ranks, at the
//! histograms' precision (3 significant digits), instead of from the sorted values.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::intervals::{QuantileIntervals, StreamIntervals};
use super::stats::{self, Interval};
use super::{HostSummary, Split, StreamSummary, Summary, percentiles_of};
use crate::folder::histograms;
use crate::folder::{self, RequestRecord};

/// Most hosts (`requests.csv` `target`) given their own figures per stream past the
/// bound: the rows of further hosts count in the stream's figures only.
pub const MAX_HOSTS: usize = 64;

/// Load ends of the last cold rows remembered per stream and model, to tell one load
/// from the next (rows of one load are written close together, as their requests end).
const RECENT_LOADS: usize = 64;

/// A histogram of the summary's settings held sparse: a count per bucket that holds
/// any value (keyed by the bucket's lowest value), so a stream of a few hundred
/// requests holds a few hundred counts, not the buckets of the range up to an hour.
/// [`Sparse::dense`] gives the histogram that recording the values themselves gives.
#[derive(Debug, Clone, Default)]
struct Sparse {
    counts: HashMap<u32, u32>,
    len: u64,
}

/// The histogram whose buckets the sparse ones follow (never recorded into).
fn reference() -> &'static Histogram<u64> {
    static REFERENCE: OnceLock<Histogram<u64>> = OnceLock::new();
    REFERENCE.get_or_init(histograms::empty)
}

impl Sparse {
    /// Records whole microseconds (or thousandths), clamped into the summary's range.
    fn record(&mut self, value: u64) {
        let s = histograms::SETTINGS;
        let v = value.clamp(s.lowest_us, s.highest_us);
        let key = u32::try_from(reference().lowest_equivalent(v)).unwrap_or(u32::MAX);
        let n = self.counts.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        self.len += 1;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds another's counts (a repetition's, when the repetitions are pooled).
    fn absorb(&mut self, other: &Sparse) {
        for (&k, &n) in &other.counts {
            let c = self.counts.entry(k).or_insert(0);
            *c = c.saturating_add(n);
        }
        self.len += other.len;
    }

    /// The dense histogram of these counts (held only while one figure is read).
    fn dense(&self) -> Histogram<u64> {
        let mut h = histograms::empty();
        for (&k, &n) in &self.counts {
            // The key is a value of the range: recording cannot fail.
            let _ = h.record_n(u64::from(k), u64::from(n));
        }
        h
    }
}

impl Metrics {
    fn absorb(&mut self, other: &Metrics) {
        for (a, b) in self.ttft.iter_mut().zip(&other.ttft) {
            a.absorb(b);
        }
        for (a, b) in self.e2e.iter_mut().zip(&other.e2e) {
            a.absorb(b);
        }
        self.tpot.absorb(&other.tpot);
        self.load.absorb(&other.load);
    }
}

/// Records a value in ms as `histograms::record_ms` does (whole microseconds clamped
/// into the summary's range).
fn record_ms(hist: &mut Sparse, ms: f64) {
    let s = histograms::SETTINGS;
    let us = (ms * 1000.0)
        .round()
        .clamp(s.lowest_us as f64, s.highest_us as f64) as u64;
    hist.record(us);
}

/// One stream's latency histograms, as `StreamHistograms` holds them.
#[derive(Debug, Clone, Default)]
struct Metrics {
    ttft: [Sparse; 3],
    e2e: [Sparse; 3],
    tpot: Sparse,
    load: Sparse,
}

/// Decode rates are recorded in thousandths of a token per second.
const RATE_SCALE: f64 = 1000.0;

/// One host's share of one stream.
#[derive(Debug, Clone)]
struct HostAcc {
    target: String,
    requests: u64,
    errors: u64,
    cold: u64,
    ttft: Sparse,
    e2e: Sparse,
}

/// Everything a stream's figures need, added row by row.
#[derive(Debug, Clone)]
pub struct StreamAcc {
    requests: u64,
    warmup: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    cold: u64,
    hists: Metrics,
    rates: Sparse,
    loads: u64,
    recent_loads: BTreeMap<String, VecDeque<f64>>,
    hosts: Vec<HostAcc>,
    hosts_left_out: u64,
}

impl StreamAcc {
    fn new() -> Self {
        StreamAcc {
            requests: 0,
            warmup: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            cold: 0,
            hists: Metrics::default(),
            rates: Sparse::default(),
            loads: 0,
            recent_loads: BTreeMap::new(),
            hosts: Vec::new(),
            hosts_left_out: 0,
        }
    }

    /// Adds one row (its cold verdict already re-applied); `tolerance_ms` tells the
    /// loads apart as `loads_witnessed` does.
    fn add(&mut self, r: &RequestRecord, tolerance_ms: f64) {
        if r.warmup {
            self.warmup += 1;
            return;
        }
        self.requests += 1;
        let host = self.host(&r.target);
        if let Some(h) = host {
            h.requests += 1;
        }
        if r.is_error() {
            self.errors += 1;
            if let Some(h) = self.host(&r.target) {
                h.errors += 1;
            }
            match self.errors_by_kind.get_mut(r.error.as_str()) {
                Some(n) => *n += 1,
                None => {
                    self.errors_by_kind.insert(r.error.clone(), 1);
                }
            }
            return;
        }
        if r.cold {
            self.cold += 1;
            if let Some(sent) = r.sent_ms {
                self.witness_load(
                    &r.model,
                    sent + r.load_duration_ms.unwrap_or(0.0),
                    tolerance_ms,
                );
            }
        }
        let group = if r.cold { 2 } else { 1 };
        if let Some(v) = r.ttft_ms {
            record_ms(&mut self.hists.ttft[0], v);
            record_ms(&mut self.hists.ttft[group], v);
        }
        if let Some(v) = r.e2e_ms {
            record_ms(&mut self.hists.e2e[0], v);
            record_ms(&mut self.hists.e2e[group], v);
        }
        if let Some(v) = r.itl_ms {
            record_ms(&mut self.hists.tpot, v);
        }
        if r.cold
            && let Some(v) = r.load_duration_ms
        {
            record_ms(&mut self.hists.load, v);
        }
        if let Some(h) = self.host(&r.target) {
            h.cold += r.cold as u64;
            if let Some(v) = r.ttft_ms {
                record_ms(&mut h.ttft, v);
            }
            if let Some(v) = r.e2e_ms {
                record_ms(&mut h.e2e, v);
            }
        }
        if let (Some(n), Some(ms)) = (r.eval_count, r.eval_ms)
            && n > 0
            && ms > 0.0
        {
            let rate = n as f64 / (ms / 1000.0);
            // Clamped into the histograms' range (up to 3.6 million tokens/s).
            let v = (rate * RATE_SCALE)
                .round()
                .clamp(1.0, histograms::SETTINGS.highest_us as f64) as u64;
            self.rates.record(v);
        }
    }

    /// The accumulator of `target` (`None` for no target, or one past [`MAX_HOSTS`]).
    fn host(&mut self, target: &str) -> Option<&mut HostAcc> {
        if target.is_empty() {
            return None;
        }
        if let Some(i) = self.hosts.iter().position(|h| h.target == target) {
            return self.hosts.get_mut(i);
        }
        if self.hosts.len() >= MAX_HOSTS {
            self.hosts_left_out += 1;
            return None;
        }
        self.hosts.push(HostAcc {
            target: target.to_string(),
            requests: 0,
            errors: 0,
            cold: 0,
            ttft: Sparse::default(),
            e2e: Sparse::default(),
        });
        self.hosts.last_mut()
    }

    /// Counts a load unless the wait of one of the model's last cold rows ended within
    /// `tolerance_ms` of this one (L2: concurrent first requests share one load; the
    /// ends chain as `loads_witnessed` chains them over the sorted ends).
    fn witness_load(&mut self, model: &str, end: f64, tolerance_ms: f64) {
        let recent = match self.recent_loads.get_mut(model) {
            Some(r) => r,
            None => self.recent_loads.entry(model.to_string()).or_default(),
        };
        if !recent.iter().any(|e| (e - end).abs() <= tolerance_ms) {
            self.loads += 1;
        }
        if recent.len() >= RECENT_LOADS {
            recent.pop_front();
        }
        recent.push_back(end);
    }

    /// Adds another repetition's figures of the same stream (loads are summed: the
    /// repetitions are apart in time).
    fn absorb(&mut self, other: &StreamAcc) {
        self.requests += other.requests;
        self.warmup += other.warmup;
        self.errors += other.errors;
        self.cold += other.cold;
        self.loads += other.loads;
        for (k, n) in &other.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_insert(0) += n;
        }
        self.hists.absorb(&other.hists);
        self.rates.absorb(&other.rates);
        self.hosts_left_out += other.hosts_left_out;
        for h in &other.hosts {
            if let Some(mine) = self.hosts.iter_mut().find(|m| m.target == h.target) {
                mine.requests += h.requests;
                mine.errors += h.errors;
                mine.cold += h.cold;
                mine.ttft.absorb(&h.ttft);
                mine.e2e.absorb(&h.e2e);
            } else if self.hosts.len() < MAX_HOSTS {
                self.hosts.push(h.clone());
            } else {
                self.hosts_left_out += h.requests;
            }
        }
    }

    /// Writes these figures over `s`'s (which were summarized from the kept rows).
    fn apply(&self, s: &mut StreamSummary) {
        let level = stats::DEFAULT_CONFIDENCE;
        let answered = self.requests - self.errors;
        let pct = |h: &Sparse| percentiles_of(&h.dense());
        let split = |h: &[Sparse; 3]| Split {
            all: pct(&h[0]),
            warm: pct(&h[1]),
            cold: pct(&h[2]),
        };
        s.requests = self.requests;
        s.warmup = self.warmup;
        s.errors = self.errors;
        s.errors_by_kind = self.errors_by_kind.clone();
        s.answered = answered;
        s.cold = self.cold;
        s.loads = self.loads;
        s.cold_ratio = if answered > 0 {
            self.cold as f64 / answered as f64
        } else {
            0.0
        };
        s.ttft_ms = split(&self.hists.ttft);
        s.e2e_ms = split(&self.hists.e2e);
        s.tpot_ms = pct(&self.hists.tpot);
        s.load_ms = pct(&self.hists.load);
        s.cold_penalty_ms = match (&s.ttft_ms.cold, &s.ttft_ms.warm) {
            (Some(c), Some(w)) => Some((c.p50 - w.p50).max(0.0)),
            _ => None,
        };
        // The rates are kept in thousandths: a histogram's value / 1000 is tokens/s.
        let rates = self.rates.dense();
        s.tokens_per_s = (!self.rates.is_empty())
            .then(|| rank_value(&rates, nearest_rank(rates.len(), 0.5)) as f64 / RATE_SCALE);
        let rates = histogram_interval(&rates, 0.5, level);
        s.intervals = Some(StreamIntervals {
            level,
            ttft_ms: quantile_intervals(&self.hists.ttft[0].dense(), level),
            e2e_ms: quantile_intervals(&self.hists.e2e[0].dense(), level),
            cold_ratio: stats::wilson(self.cold, answered, level),
            tokens_per_s: rates,
        });
        s.hosts = self
            .hosts
            .iter()
            .map(|h| {
                let answered = h.requests - h.errors;
                HostSummary {
                    target: h.target.clone(),
                    requests: h.requests,
                    errors: h.errors,
                    cold: h.cold,
                    cold_ratio: if answered > 0 {
                        h.cold as f64 / answered as f64
                    } else {
                        0.0
                    },
                    ttft_ms: pct(&h.ttft),
                    e2e_ms: pct(&h.e2e),
                }
            })
            .collect();
    }
}

/// The 0-based nearest rank of the `q`-quantile of `n` values (`stats::quantile_sorted`).
fn nearest_rank(n: u64, q: f64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n.max(1)) - 1
}

/// The value of 0-based rank `rank` in a histogram (the highest value equivalent to
/// its bucket, as the histogram's percentiles give).
fn rank_value(hist: &Histogram<u64>, rank: u64) -> u64 {
    let mut seen = 0u64;
    for v in hist.iter_recorded() {
        seen += v.count_at_value();
        if seen > rank {
            return hist.highest_equivalent(v.value_iterated_to());
        }
    }
    hist.max()
}

/// The order-statistic interval of the `q`-quantile of a histogram of microseconds,
/// in ms, its ranks as `stats::quantile_rank_interval` gives them for the count.
fn histogram_interval(hist: &Histogram<u64>, q: f64, level: f64) -> Option<Interval> {
    let n = usize::try_from(hist.len()).ok()?;
    let (l, h) = stats::quantile_rank_interval(n, q, level)?;
    Some(Interval {
        lo: rank_value(hist, l as u64) as f64 / 1000.0,
        hi: rank_value(hist, h as u64) as f64 / 1000.0,
        level,
    })
}

fn quantile_intervals(hist: &Histogram<u64>, level: f64) -> QuantileIntervals {
    QuantileIntervals {
        count: hist.len(),
        p50: histogram_interval(hist, 0.5, level),
        p90: histogram_interval(hist, 0.9, level),
        p99: histogram_interval(hist, 0.99, level),
    }
}

/// A run read past the bound: each stream's accumulator and how many rows each cell
/// had and kept.
#[derive(Debug, Clone)]
pub struct LargeRun {
    /// The bound passed (rows held whole before the reading turned to accumulators).
    pub bound: u64,
    /// Rows kept whole per cell from then on.
    pub kept_per_cell: usize,
    /// Rows read per cell.
    pub cell_rows: BTreeMap<String, u64>,
    streams: BTreeMap<String, BTreeMap<String, StreamAcc>>,
    tolerance_ms: f64,
}

impl LargeRun {
    /// Starts accumulating past `bound` rows, over `cells`, keeping `kept_per_cell`
    /// rows of each; `threshold` is the cold threshold applied.
    pub fn new(bound: u64, kept_per_cell: usize, threshold: Duration) -> Self {
        LargeRun {
            bound,
            kept_per_cell,
            cell_rows: BTreeMap::new(),
            streams: BTreeMap::new(),
            tolerance_ms: folder::ms(threshold) / 2.0,
        }
    }

    /// Adds one row of a cell the run lists.
    pub fn add(&mut self, r: &RequestRecord) {
        match self.cell_rows.get_mut(r.cell.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.cell_rows.insert(r.cell.clone(), 1);
            }
        }
        let cell = match self.streams.get_mut(r.cell.as_str()) {
            Some(c) => c,
            None => self.streams.entry(r.cell.clone()).or_default(),
        };
        let acc = match cell.get_mut(r.stream.as_str()) {
            Some(a) => a,
            None => cell.entry(r.stream.clone()).or_insert_with(StreamAcc::new),
        };
        acc.add(r, self.tolerance_ms);
    }

    /// Rows read in all.
    pub fn rows(&self) -> u64 {
        self.cell_rows.values().sum()
    }

    /// Writes every stream's figures over the summary's (summarized from the kept
    /// rows), and says in each cell cut short what its row-level figures are over.
    pub fn apply(&self, summary: &mut Summary) {
        for c in &mut summary.cells {
            // A pooled cell's figures are over every repetition's rows together.
            let ids: Vec<String> = match &c.repetitions {
                Some(r) => r.runs.iter().map(|run| run.id.clone()).collect(),
                None => vec![c.id.clone()],
            };
            if let Some(r) = c.repetitions.as_mut() {
                for run in &mut r.runs {
                    for rs in &mut run.streams {
                        if let Some(acc) = self.streams.get(&run.id).and_then(|a| a.get(&rs.name)) {
                            rs.requests = acc.requests;
                            rs.answered = acc.requests - acc.errors;
                            rs.cold = acc.cold;
                        }
                    }
                }
            }
            let mut left_out = 0;
            for s in &mut c.streams {
                let mut pooled: Option<StreamAcc> = None;
                for acc in ids
                    .iter()
                    .filter_map(|id| self.streams.get(id).and_then(|a| a.get(&s.name)))
                {
                    match pooled.as_mut() {
                        Some(p) => p.absorb(acc),
                        None => pooled = Some(acc.clone()),
                    }
                }
                if let Some(acc) = pooled {
                    acc.apply(s);
                    left_out += acc.hosts_left_out;
                }
            }
            let rows: u64 = ids
                .iter()
                .map(|id| self.cell_rows.get(id).copied().unwrap_or(0))
                .sum();
            let cut = ids
                .iter()
                .any(|id| self.cell_rows.get(id).copied().unwrap_or(0) > self.kept_per_cell as u64);
            if cut {
                c.warnings.push(format!(
                    "{rows} rows, more than the report holds whole: the counts and latency percentiles are over every row; the memory figures, reload causes and charts are over the first {} rows of each cell (repetition)",
                    self.kept_per_cell
                ));
            }
            if left_out > 0 {
                c.warnings.push(format!(
                    "rows of more than {MAX_HOSTS} hosts: {left_out} rows count in their stream's figures but in no host's"
                ));
            }
        }
    }

    /// The note of the reading, for the page and the terminal.
    pub fn note(&self) -> String {
        format!(
            "{}: {} rows, more than the {} the report holds whole: every stream's counts and percentiles are over every row, their confidence intervals and the median tokens/s at the histograms' precision (3 significant digits); memory figures, reload causes and charts are over the first {} rows of each cell",
            folder::REQUESTS_CSV,
            self.rows(),
            self.bound,
            self.kept_per_cell
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_ranks_match_the_sorted_values_within_precision() {
        let mut rng = crate::rng::SeededRng::new(7);
        let values: Vec<f64> = (0..5000).map(|_| 50.0 + 400.0 * rng.unit()).collect();
        let mut sparse = Sparse::default();
        for v in &values {
            record_ms(&mut sparse, *v);
        }
        let h = sparse.dense();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let exact = stats::quantile_interval(&sorted, q, 0.95).unwrap();
            let approx = histogram_interval(&h, q, 0.95).unwrap();
            assert!(
                (exact.lo - approx.lo).abs() <= exact.lo * 1e-3 + 1e-3,
                "{q}"
            );
            assert!(
                (exact.hi - approx.hi).abs() <= exact.hi * 1e-3 + 1e-3,
                "{q}"
            );
        }
        let p50 = rank_value(&h, nearest_rank(h.len(), 0.5)) as f64 / 1000.0;
        assert_eq!(p50, percentiles_of(&h).unwrap().p50);
    }

    #[test]
    fn a_sparse_histogram_gives_the_dense_ones_percentiles() {
        let (mut a, mut b) = (Sparse::default(), histograms::empty());
        let mut rng = crate::rng::SeededRng::new(11);
        let mut values = vec![0.2, 3.0, 15.5, 1200.0, 3_000_000.0, 9e12];
        values.extend((0..3000).map(|_| 10.0 + 3000.0 * rng.unit()));
        for ms in values {
            record_ms(&mut a, ms);
            histograms::record_ms(&mut b, ms);
        }
        assert_eq!(percentiles_of(&a.dense()), percentiles_of(&b));
    }
}
