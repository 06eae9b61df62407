//! The recommendation: per workload (stream) and model, the keep_alive to set, from a
//! cost model, an SLO, the Pareto frontier and the ski-rental break-even. Pure: reads a
//! `Summary` and the scenario's `[cost]`/`[slo]`; knows nothing of files, HTTP or drawing.
//!
//! Cost of one candidate cell, in the unit of `[cost] wait_second` (default 1.0 per
//! second a user waits; `vram_gb_hour` default 7.2 per GB-hour of idle VRAM, GB = 10⁹ bytes):
//! `cold × cold_penalty_s × wait_second + idle_gpu_gb_s / 3600 × vram_gb_hour +
//! idle_ram_gb_s / 3600 × ram_gb_hour`: memory is priced where it sits (GPU memory,
//! or system memory on a CPU-only host and for the part of a model offloaded to the CPU).
//! `cold_penalty_s` is `[cost] cold_penalty` or, when unset, the measured median cold
//! TTFT minus median warm TTFT (falling back to the median cold `load_duration`).
//! Break-even keep_alive (ski rental: keep while holding costs less than one reload):
//! `t* = cold_penalty_s × wait_second / ((gpu_gb × vram_gb_hour + ram_gb × ram_gb_hour) / 3600)`
//! seconds.
//!
//! No memory figure that was not measured is taken as zero: with none, the
//! recommendation says so and ranks memory by keep_alive length; when a cell's memory
//! is missing where it should have been measured (`memory_missing`: a merged run whose
//! sampling shards stopped), nothing is recommended over its group, and the reason says
//! which cells and why.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::stats::Interval;
use crate::analysis::{CellSummary, StreamSummary, Summary};
use crate::folder::{CostSettings, SloSettings};
use crate::units::{KeepAlive, cmp_keep_alive};

mod choice;
mod frontier;
pub mod noise;
mod prose;
#[cfg(test)]
mod tests;

pub use prose::snippets;

/// Bytes in the GB of every VRAM figure here (decimal, as in `analysis::vram`).
pub use crate::analysis::vram::GB;

/// Which rule chose the recommended keep_alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Lowest total cost under `[cost]`.
    Cost,
    /// Least idle VRAM whose p99 TTFT meets `[slo] ttft_p99`.
    Slo,
    /// No VRAM data: the shortest keep_alive with the lowest cold ratio.
    ColdOnly,
    /// No candidate was valid (each had too many failed requests, or the memory of a
    /// cell was not measured): nothing is recommended and `reason` says why.
    NoCandidate,
}

/// Largest share of a cell's requests that may fail for the cell to stay a candidate:
/// past it (or with no request answered) its cold ratio and memory say nothing.
pub const MAX_ERROR_SHARE: f64 = 0.10;

/// Why a candidate cannot be recommended (too many failed requests, none answered, or
/// a shard of a merged run started its cell late),
/// or `None` when it can.
pub fn excluded(c: &Candidate) -> Option<String> {
    let ka = display_keep_alive(c.keep_alive.as_ref());
    if let Some(why) = &c.ran_late {
        return Some(format!("{ka}: ran late ({why})"));
    }
    if c.requests == 0 {
        return Some(format!("{ka}: no request counted"));
    }
    if c.errors >= c.requests {
        return Some(format!("{ka}: all {} requests failed", c.requests));
    }
    if c.errors as f64 > c.requests as f64 * MAX_ERROR_SHARE {
        return Some(format!(
            "{ka}: {} of {} requests failed",
            c.errors, c.requests
        ));
    }
    None
}

/// The cost of one candidate, split into its two terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// `cold × cold_penalty_s × wait_second`.
    pub cold: f64,
    /// `idle_gpu_gb_s / 3600 × vram_gb_hour`.
    pub vram: f64,
    /// `idle_ram_gb_s / 3600 × ram_gb_hour`.
    #[serde(default)]
    pub ram: f64,
    /// The sum.
    pub total: f64,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// One repetition's figures of a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepetitionFigures {
    /// Cold requests.
    pub cold: u64,
    /// Idle GPU GB·s.
    pub idle_gpu_gb_s: f64,
    /// Idle system-memory GB·s.
    pub idle_ram_gb_s: f64,
}

/// One swept keep_alive value of a workload, with its measured figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Cell id.
    pub cell: String,
    /// keep_alive sent (`None`: not sent, the server default applied), as `keep_alive`
    /// (written), `keep_alive_s` (`null`: forever or not sent) and `keep_alive_forever`.
    #[serde(flatten, with = "crate::units::keep_alive_keys")]
    pub keep_alive: Option<KeepAlive>,
    /// Mean arrival rate, requests/s.
    pub rate_per_s: Option<f64>,
    /// Requests counted.
    pub requests: u64,
    /// Cold requests.
    pub cold: u64,
    /// Requests answered: what `cold_ratio` is over.
    pub answered: u64,
    /// cold / answered requests.
    pub cold_ratio: f64,
    /// Its confidence interval (Wilson; `null` without one).
    pub cold_ratio_interval: Option<Interval>,
    /// Failed requests.
    pub errors: u64,
    /// p99 time to first token, ms.
    pub p99_ttft_ms: Option<f64>,
    /// Its confidence interval (`null`: too few requests for one, the p99 of at most
    /// 99 requests being their maximum).
    pub p99_ttft_interval: Option<Interval>,
    /// Requests the p99 is over (0 for figures with no intervals, e.g. predicted).
    pub p99_ttft_count: u64,
    /// Median `load_duration` of the cold requests, ms.
    pub cold_load_ms: Option<f64>,
    /// Memory held while no request was in flight, GB·s (cell-wide, GPU + system).
    pub idle_gb_s: Option<f64>,
    /// Its GPU part, GB·s.
    pub idle_gpu_gb_s: Option<f64>,
    /// Its system-memory part, GB·s.
    pub idle_ram_gb_s: Option<f64>,
    /// Which memory was counted (`GPU`, `system RAM`, `GPU + system RAM`).
    pub memory: Option<String>,
    /// Peak memory of the cell (GPU + system), bytes.
    pub peak_bytes: Option<u64>,
    /// Peak system memory of the cell, bytes.
    pub peak_ram_bytes: Option<u64>,
    /// The cost model's figure, when VRAM data exists. With repetitions it is the
    /// cost of one repetition: its cold term over the mean cold starts per repetition.
    pub cost: Option<Cost>,
    /// Repetitions pooled into the candidate's figures (absent: 1, the cell ran once).
    #[serde(skip_serializing_if = "is_one")]
    pub repetitions: u32,
    /// Interval of the mean idle GB·s over the repetitions (absent with one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_gb_s_interval: Option<Interval>,
    /// Interval of the mean cost per repetition (absent with one repetition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_interval: Option<Interval>,
    /// Each repetition's cold starts and idle GPU and system-memory GB·s.
    #[serde(skip)]
    pub per_repetition: Vec<RepetitionFigures>,
    /// On the Pareto frontier of (`frontier_metric`, idle GB·s).
    pub on_frontier: bool,
    /// Whether p99 TTFT meets the SLO (`null`: no SLO, or no TTFT).
    pub meets_slo: Option<bool>,
    /// Whether the server released memory as keep_alive says (`null`: unknown).
    pub honoured: Option<bool>,
    /// Which shards started the cell late (a merged run): it cannot be recommended.
    #[serde(skip)]
    pub ran_late: Option<String>,
}

impl Candidate {
    /// Seconds the model is held for ordering by memory appetite: forever and not
    /// sent are infinite (`cmp_keep_alive` then puts forever first).
    pub(crate) fn hold_s(&self) -> f64 {
        self.keep_alive
            .as_ref()
            .and_then(|k| k.duration())
            .map_or(f64::INFINITY, |d| d.as_secs_f64())
    }

    /// The keep_alive in seconds (`None`: forever or not sent).
    pub fn hold_seconds(&self) -> Option<f64> {
        self.keep_alive
            .as_ref()
            .and_then(|k| k.duration())
            .map(|d| d.as_secs_f64())
    }

    /// Less memory-hungry first: by `appetite`, ties in the one keep_alive ordering.
    pub(crate) fn cmp_appetite(&self, other: &Candidate) -> std::cmp::Ordering {
        self.appetite()
            .total_cmp(&other.appetite())
            .then(cmp_keep_alive(
                self.keep_alive.as_ref(),
                other.keep_alive.as_ref(),
            ))
    }

    /// How much memory this choice holds, for "least memory-hungry": idle GB·s when
    /// known, else the keep_alive itself.
    pub(crate) fn appetite(&self) -> f64 {
        self.idle_gb_s.unwrap_or(self.hold_s())
    }
}

/// Text a user can paste.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snippets {
    /// Server side: `OLLAMA_KEEP_ALIVE=…`.
    pub server_env: String,
    /// Native API request body with the top-level `keep_alive`.
    pub native_request: String,
    /// The `"keep_alive": …` line alone.
    pub keep_alive_field: String,
    /// What users get wrong (KA1, KA4, KA7, H9).
    pub notes: Vec<String>,
}

/// The recommendation for one workload and model (one group of cells that differ only
/// in keep_alive).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Stream name.
    pub workload: String,
    /// Model tag.
    pub model: String,
    /// The other swept parameters, fixed within the group.
    pub fixed: BTreeMap<String, String>,
    /// Candidates, keep_alive in the one ordering (`units::cmp_keep_alive`).
    pub candidates: Vec<Candidate>,
    /// `cold_ratio` or `p99_ttft_ms`: the frontier's latency axis.
    pub frontier_metric: String,
    /// False when no cell of the group had VRAM data.
    pub has_vram: bool,
    /// The wait one cold start costs, seconds, and where it came from.
    pub cold_penalty_s: Option<f64>,
    /// `scenario` or `measured`.
    pub cold_penalty_source: String,
    /// Size held by the model, GB (the group's peak memory, GPU + system).
    pub model_gb: Option<f64>,
    /// The system-memory part of `model_gb`, GB.
    pub model_ram_gb: Option<f64>,
    /// Cost-form pick (keep_alive as written, `""`: not sent).
    #[serde(with = "crate::units::optional_written_or_empty")]
    pub cost_choice: Option<Option<KeepAlive>>,
    /// SLO-form pick (keep_alive as written, `""`: not sent).
    #[serde(with = "crate::units::optional_written_or_empty")]
    pub slo_choice: Option<Option<KeepAlive>>,
    /// The recommended keep_alive as written (`""`: not sent).
    #[serde(with = "crate::units::written_or_empty")]
    pub chosen: Option<KeepAlive>,
    /// The rule that chose it.
    pub form: Form,
    /// Why, in words.
    pub reason: String,
    /// Ski-rental break-even keep_alive, seconds.
    pub break_even_s: Option<f64>,
    /// Paste-ready settings.
    pub snippets: Snippets,
    /// OLLAMA_MAX_LOADED_MODELS and quantization advice where the scenario swept them.
    pub advice: Vec<String>,
    /// How sure the choice is, against the noise of the measurement.
    pub noise: Option<noise::Noise>,
}

impl Recommendation {
    /// A one-line headline, e.g. `chat (llama3.2:3b): keep_alive 5m — …`.
    pub fn headline(&self) -> String {
        let mut fixed = String::new();
        let shown: Vec<String> = self
            .fixed
            .iter()
            .filter(|(k, _)| k.as_str() != crate::folder::KNOB_LABEL)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !shown.is_empty() {
            fixed = format!(" [{}]", shown.join(", "));
        }
        if self.form == Form::NoCandidate {
            return format!(
                "{} ({}){}: no recommendation: {}",
                self.workload, self.model, fixed, self.reason
            );
        }
        // A server whose knob is a start flag (llama-server): the flag to start it with.
        // The router's and llama-swap's knob is per model, in their config file.
        if let Some(knob) = self.fixed.get(crate::folder::KNOB_LABEL) {
            let how = if knob.starts_with("--") {
                "start the server with"
            } else {
                "set each model's"
            };
            return format!(
                "{} ({}){}: {how} {knob} {} (idle_unload {})",
                self.workload,
                self.model,
                fixed,
                crate::folder::knob_value(knob, self.chosen.as_ref()),
                display_keep_alive(self.chosen.as_ref()),
            );
        }
        if self.chosen.is_none() {
            return format!(
                "{} ({}){}: send no keep_alive (the server's OLLAMA_KEEP_ALIVE applies)",
                self.workload, self.model, fixed
            );
        }
        format!(
            "{} ({}){}: set keep_alive {} ({})",
            self.workload,
            self.model,
            fixed,
            display_keep_alive(self.chosen.as_ref()),
            self.snippets.server_env
        )
    }

    /// The chosen candidate (`None` when nothing is recommended).
    pub fn chosen_candidate(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| self.is_chosen(c))
    }

    /// Whether `c` is the recommended candidate (never, when nothing is recommended).
    pub fn is_chosen(&self, c: &Candidate) -> bool {
        self.form != Form::NoCandidate && c.keep_alive == self.chosen
    }
}

pub use crate::units::display_keep_alive;

/// Formats seconds as a short duration (`4m12s`, `forever`).
pub fn format_seconds(s: f64) -> String {
    if !s.is_finite() {
        return "forever".into();
    }
    let whole = s.max(0.0).round() as u64;
    if whole == 0 {
        return format!("{:.0}ms", s.max(0.0) * 1000.0);
    }
    let (h, m, sec) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// Recommends a keep_alive per workload and model from a run's summary.
pub fn recommend(summary: &Summary, cost: &CostSettings, slo: &SloSettings) -> Vec<Recommendation> {
    let groups = group_cells(summary);
    let distinct_models: Vec<&str> = {
        let mut m: Vec<&str> = summary
            .cells
            .iter()
            .flat_map(|c| c.streams.iter().map(|s| s.model.as_str()))
            .collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    let mut recs: Vec<Recommendation> = groups
        .into_iter()
        .map(|(key, members)| choice::recommend_group(key, &members, cost, slo))
        .collect();
    let advice = prose::advice(summary, &recs, &distinct_models);
    for rec in &mut recs {
        if let Some(lines) = advice.get(&rec.workload) {
            rec.advice = lines.clone();
        }
        if let Some(knob) = rec.fixed.get(crate::folder::KNOB_LABEL) {
            rec.snippets = start_flag_snippets(knob, rec.chosen.as_ref());
        }
    }
    recs
}

/// Paste-ready settings for a server whose knob is a start flag (llama-server's
/// `--sleep-idle-seconds`): the flag; its requests carry no keep_alive.
fn start_flag_snippets(knob: &str, chosen: Option<&KeepAlive>) -> Snippets {
    Snippets {
        server_env: format!("{knob} {}", crate::folder::knob_value(knob, chosen)),
        native_request: String::new(),
        keep_alive_field: String::new(),
        notes: if knob.starts_with("--") {
            vec![
                format!("{knob} is given when the server starts (whole seconds; -1 never sleeps): requests carry no keep_alive."),
                "Polling GET /metrics or /slots resets llama-server's idle timer; /health and /props do not.".to_string(),
            ]
        } else {
            vec![format!(
                "{knob} is set per model in the server's config file (whole seconds; {} is off): requests carry no keep_alive.",
                crate::folder::knob_value(knob, None)
            )]
        },
    }
}

pub(crate) type GroupKey = (String, String, BTreeMap<String, String>);

/// Cells grouped by (stream, model, every swept param but keep_alive), in run order.
fn group_cells(summary: &Summary) -> Vec<(GroupKey, Vec<(&CellSummary, &StreamSummary)>)> {
    let mut groups: Vec<(GroupKey, Vec<(&CellSummary, &StreamSummary)>)> = Vec::new();
    for cell in &summary.cells {
        let fixed: BTreeMap<String, String> = cell.params.fixed();
        for stream in &cell.streams {
            let key = (stream.name.clone(), stream.model.clone(), fixed.clone());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push((cell, stream)),
                None => groups.push((key, vec![(cell, stream)])),
            }
        }
    }
    groups
}
