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
//! recommendation says so and ranks memory by keep_alive length.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::{CellSummary, StreamSummary, Summary};
use crate::scenario::{CostSettings, SloSettings};
use crate::units::{KeepAlive, format_go_duration};

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
    /// No candidate was valid (each had too many failed requests): nothing is
    /// recommended and `reason` says why.
    NoCandidate,
}

/// Largest share of a cell's requests that may fail for the cell to stay a candidate:
/// past it (or with no request answered) its cold ratio and memory say nothing.
pub const MAX_ERROR_SHARE: f64 = 0.10;

/// Why a candidate cannot be recommended (too many failed requests, or none answered),
/// or `None` when it can.
pub fn excluded(c: &Candidate) -> Option<String> {
    let ka = display_keep_alive(&c.keep_alive);
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

/// One swept keep_alive value of a workload, with its measured figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Cell id.
    pub cell: String,
    /// keep_alive as written (empty: not sent, the server default applied).
    pub keep_alive: String,
    /// keep_alive in seconds (`null`: forever or not sent).
    pub keep_alive_s: Option<f64>,
    /// True for forever.
    pub keep_alive_forever: bool,
    /// Mean arrival rate, requests/s.
    pub rate_per_s: Option<f64>,
    /// Requests counted.
    pub requests: u64,
    /// Cold requests.
    pub cold: u64,
    /// cold / answered requests.
    pub cold_ratio: f64,
    /// Failed requests.
    pub errors: u64,
    /// p99 time to first token, ms.
    pub p99_ttft_ms: Option<f64>,
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
    /// The cost model's figure, when VRAM data exists.
    pub cost: Option<Cost>,
    /// On the Pareto frontier of (`frontier_metric`, idle GB·s).
    pub on_frontier: bool,
    /// Whether p99 TTFT meets the SLO (`null`: no SLO, or no TTFT).
    pub meets_slo: Option<bool>,
    /// Whether the server released memory as keep_alive says (`null`: unknown).
    pub honoured: Option<bool>,
}

impl Candidate {
    /// Seconds for ordering by memory appetite: forever is infinite, not sent is last.
    fn hold_s(&self) -> f64 {
        if self.keep_alive_forever || self.keep_alive.is_empty() {
            f64::INFINITY
        } else {
            self.keep_alive_s.unwrap_or(f64::INFINITY)
        }
    }

    /// How much memory this choice holds, for "least memory-hungry": idle GB·s when
    /// known, else the keep_alive itself.
    fn appetite(&self) -> f64 {
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
    /// Candidates in sweep order.
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
    /// Cost-form pick (keep_alive as written).
    pub cost_choice: Option<String>,
    /// SLO-form pick (keep_alive as written).
    pub slo_choice: Option<String>,
    /// The recommended keep_alive as written.
    pub chosen: String,
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
}

impl Recommendation {
    /// A one-line headline, e.g. `chat (llama3.2:3b): keep_alive 5m — …`.
    pub fn headline(&self) -> String {
        let mut fixed = String::new();
        if !self.fixed.is_empty() {
            let parts: Vec<String> = self.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            fixed = format!(" [{}]", parts.join(", "));
        }
        if self.form == Form::NoCandidate {
            let why: Vec<String> = self.candidates.iter().filter_map(excluded).collect();
            return format!(
                "{} ({}){}: no recommendation: no swept keep_alive had at most {:.0}% of its requests failed and one answered ({})",
                self.workload,
                self.model,
                fixed,
                MAX_ERROR_SHARE * 100.0,
                why.join("; ")
            );
        }
        if self.chosen.is_empty() {
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
            display_keep_alive(&self.chosen),
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

/// keep_alive as a reader sees it (`not sent` for empty).
pub fn display_keep_alive(written: &str) -> String {
    if written.is_empty() {
        "not sent (server default)".into()
    } else {
        written.to_string()
    }
}

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
        .map(|(key, members)| recommend_group(key, &members, cost, slo))
        .collect();
    let advice = advice(summary, &recs, &distinct_models);
    for rec in &mut recs {
        if let Some(lines) = advice.get(&rec.workload) {
            rec.advice = lines.clone();
        }
    }
    recs
}

type GroupKey = (String, String, BTreeMap<String, String>);

/// Cells grouped by (stream, model, every swept param but keep_alive), in run order.
fn group_cells(summary: &Summary) -> Vec<(GroupKey, Vec<(&CellSummary, &StreamSummary)>)> {
    let mut groups: Vec<(GroupKey, Vec<(&CellSummary, &StreamSummary)>)> = Vec::new();
    for cell in &summary.cells {
        let fixed: BTreeMap<String, String> = cell
            .params
            .iter()
            .filter(|(k, _)| !k.contains("keep_alive"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
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

fn candidate(cell: &CellSummary, s: &StreamSummary) -> Candidate {
    let vram = cell.vram.as_ref();
    let honoured = vram.and_then(|v| {
        let mine: Vec<bool> = v
            .release
            .iter()
            .filter(|r| r.model == s.model)
            .map(|r| r.honoured)
            .collect();
        (!mine.is_empty()).then(|| mine.iter().all(|h| *h))
    });
    Candidate {
        cell: cell.id.clone(),
        keep_alive: s.keep_alive.clone(),
        keep_alive_s: s.keep_alive_s,
        keep_alive_forever: s.keep_alive_forever,
        rate_per_s: s.rate_per_s,
        requests: s.requests,
        cold: s.cold,
        cold_ratio: s.cold_ratio,
        errors: s.errors,
        p99_ttft_ms: s.ttft_ms.all.map(|p| p.p99),
        cold_load_ms: s.load_ms.map(|p| p.p50),
        idle_gb_s: vram.map(|v| v.idle_gb_seconds),
        idle_gpu_gb_s: vram.map(|v| v.idle_split().0),
        idle_ram_gb_s: vram.map(|v| v.idle_split().1),
        memory: vram.map(|v| v.counted.clone()),
        peak_bytes: vram.map(|v| v.peak_bytes),
        peak_ram_bytes: vram.map(|v| v.peak_split().1),
        cost: None,
        on_frontier: false,
        meets_slo: None,
        honoured,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The wait one cold start costs, seconds: the scenario's, else measured.
fn cold_penalty(
    members: &[(&CellSummary, &StreamSummary)],
    cost: &CostSettings,
) -> (Option<f64>, String) {
    if let Some(d) = cost.cold_penalty {
        return (Some(d.as_secs_f64()), "scenario".into());
    }
    let measured = median(
        members
            .iter()
            .filter_map(|(_, s)| s.cold_penalty_ms)
            .collect(),
    );
    if let Some(ms) = measured {
        return (
            Some(ms / 1000.0),
            "measured (median cold TTFT − median warm TTFT)".into(),
        );
    }
    let load = median(
        members
            .iter()
            .filter_map(|(_, s)| s.load_ms.map(|p| p.p50))
            .collect(),
    );
    match load {
        Some(ms) => (
            Some(ms / 1000.0),
            "measured (median cold load_duration)".into(),
        ),
        None => (None, "no cold start measured".into()),
    }
}

/// Marks the candidates on the Pareto frontier of (latency metric, idle GB·s): none
/// other is at least as good on both and better on one.
fn mark_frontier(cands: &mut [Candidate], use_p99: bool) {
    // A cell left out for its failed requests is neither on the frontier nor beats one.
    let pts: Vec<(f64, f64)> = cands
        .iter()
        .map(|c| {
            if excluded(c).is_some() {
                return (f64::INFINITY, f64::INFINITY);
            }
            let y = if use_p99 {
                c.p99_ttft_ms.unwrap_or(f64::INFINITY)
            } else {
                c.cold_ratio
            };
            (c.appetite(), y)
        })
        .collect();
    for (i, c) in cands.iter_mut().enumerate() {
        let (xi, yi) = pts[i];
        c.on_frontier = excluded(c).is_none()
            && !pts
                .iter()
                .enumerate()
                .any(|(j, &(xj, yj))| j != i && xj <= xi && yj <= yi && (xj < xi || yj < yi));
    }
}

fn min_by<F: Fn(&Candidate) -> f64>(cands: &[Candidate], f: F) -> Option<&Candidate> {
    // Ties go to the less memory-hungry candidate.
    cands.iter().min_by(|a, b| {
        f(a).total_cmp(&f(b))
            .then(a.appetite().total_cmp(&b.appetite()))
    })
}

fn recommend_group(
    (workload, model, fixed): GroupKey,
    members: &[(&CellSummary, &StreamSummary)],
    cost: &CostSettings,
    slo: &SloSettings,
) -> Recommendation {
    let mut cands: Vec<Candidate> = members.iter().map(|(c, s)| candidate(c, s)).collect();
    let has_vram = !cands.is_empty() && cands.iter().all(|c| c.idle_gb_s.is_some());
    let (penalty_s, penalty_source) = cold_penalty(members, cost);
    let peak = cands
        .iter()
        .filter_map(|c| c.peak_bytes.map(|b| (b, c.peak_ram_bytes.unwrap_or(0))))
        .max();
    let model_gb = peak.map(|(b, _)| b as f64 / GB);
    let model_ram_gb = peak.map(|(_, r)| r as f64 / GB);
    if has_vram {
        for c in &mut cands {
            let cold = c.cold as f64 * penalty_s.unwrap_or(0.0) * cost.wait_second;
            let vram = c.idle_gpu_gb_s.unwrap_or(0.0) / 3600.0 * cost.vram_gb_hour;
            let ram = c.idle_ram_gb_s.unwrap_or(0.0) / 3600.0 * cost.ram_gb_hour;
            c.cost = Some(Cost {
                cold,
                vram,
                ram,
                total: cold + vram + ram,
            });
        }
    }
    let slo_ms = slo.ttft_p99.map(|d| d.as_secs_f64() * 1000.0);
    if let Some(limit) = slo_ms {
        for c in &mut cands {
            c.meets_slo = c.p99_ttft_ms.map(|p| p <= limit);
        }
    }
    mark_frontier(&mut cands, slo_ms.is_some());

    // Only cells whose requests mostly succeeded can be picked.
    let left_out: Vec<String> = cands.iter().filter_map(excluded).collect();
    let valid: Vec<Candidate> = cands
        .iter()
        .filter(|c| excluded(c).is_none())
        .cloned()
        .collect();
    if valid.is_empty() {
        return no_candidate(
            (workload, model, fixed),
            cands,
            &left_out,
            has_vram,
            (penalty_s, penalty_source),
            (model_gb, model_ram_gb),
            slo_ms.is_some(),
        );
    }
    let cost_pick = has_vram
        .then(|| min_by(&valid, |c| c.cost.map_or(f64::INFINITY, |k| k.total)))
        .flatten()
        .cloned();
    let slo_pick = slo_ms.and_then(|_| {
        valid
            .iter()
            .filter(|c| c.meets_slo == Some(true))
            .min_by(|a, b| a.appetite().total_cmp(&b.appetite()))
            .cloned()
    });
    let cold_only_pick = min_by(&valid, |c| (c.cold_ratio * 100.0).round()).cloned();

    let (form, pick) = match (&slo_pick, &cost_pick) {
        (Some(p), _) => (Form::Slo, p.clone()),
        (None, Some(p)) => (Form::Cost, p.clone()),
        (None, None) => (
            Form::ColdOnly,
            cold_only_pick.clone().unwrap_or_else(|| valid[0].clone()),
        ),
    };
    let hold_rate = match (model_gb, model_ram_gb) {
        (Some(gb), Some(ram)) => {
            Some(((gb - ram).max(0.0) * cost.vram_gb_hour + ram * cost.ram_gb_hour) / 3600.0)
        }
        _ => None,
    };
    let break_even_s = match (penalty_s, hold_rate) {
        (Some(p), Some(rate)) if rate > 0.0 => Some(p * cost.wait_second / rate),
        _ => None,
    };
    let mut reason = reason(form, &pick, &cands, slo_ms, has_vram, penalty_s, cost);
    if !left_out.is_empty() {
        reason.push_str(&format!(
            "; not candidates (more than {:.0}% of requests failed, or none answered): {}",
            MAX_ERROR_SHARE * 100.0,
            left_out.join(", ")
        ));
    }
    let snippets = snippets(&model, &pick.keep_alive);
    Recommendation {
        workload,
        model,
        fixed,
        frontier_metric: if slo_ms.is_some() {
            "p99_ttft_ms"
        } else {
            "cold_ratio"
        }
        .into(),
        has_vram,
        cold_penalty_s: penalty_s,
        cold_penalty_source: penalty_source,
        model_gb,
        model_ram_gb,
        cost_choice: cost_pick.map(|c| c.keep_alive),
        slo_choice: slo_pick.map(|c| c.keep_alive),
        chosen: pick.keep_alive.clone(),
        form,
        reason,
        break_even_s,
        snippets,
        advice: Vec::new(),
        candidates: cands,
    }
}

/// The recommendation of a group none of whose cells can be picked.
fn no_candidate(
    (workload, model, fixed): GroupKey,
    candidates: Vec<Candidate>,
    left_out: &[String],
    has_vram: bool,
    (cold_penalty_s, cold_penalty_source): (Option<f64>, String),
    (model_gb, model_ram_gb): (Option<f64>, Option<f64>),
    use_p99: bool,
) -> Recommendation {
    let reason = format!(
        "no swept keep_alive is a valid candidate: a cell counts only when at most {:.0}% of its requests failed and at least one was answered ({})",
        MAX_ERROR_SHARE * 100.0,
        left_out.join("; ")
    );
    let snippets = snippets(&model, "");
    Recommendation {
        workload,
        model,
        fixed,
        candidates,
        frontier_metric: if use_p99 { "p99_ttft_ms" } else { "cold_ratio" }.into(),
        has_vram,
        cold_penalty_s,
        cold_penalty_source,
        model_gb,
        model_ram_gb,
        cost_choice: None,
        slo_choice: None,
        chosen: String::new(),
        form: Form::NoCandidate,
        reason,
        break_even_s: None,
        snippets,
        advice: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn reason(
    form: Form,
    pick: &Candidate,
    cands: &[Candidate],
    slo_ms: Option<f64>,
    has_vram: bool,
    penalty_s: Option<f64>,
    cost: &CostSettings,
) -> String {
    let ka = display_keep_alive(&pick.keep_alive);
    let mut out = match form {
        Form::Slo => format!(
            "{ka} is the least memory-hungry swept keep_alive whose p99 TTFT ({:.0} ms) meets the SLO of {:.0} ms",
            pick.p99_ttft_ms.unwrap_or(f64::NAN),
            slo_ms.unwrap_or(f64::NAN)
        ),
        Form::Cost => {
            let k = pick.cost.map_or(0.0, |k| k.total);
            let mut memory = Vec::new();
            let (gpu, ram) = (
                pick.idle_gpu_gb_s.unwrap_or(0.0),
                pick.idle_ram_gb_s.unwrap_or(0.0),
            );
            if gpu > 0.0 || ram == 0.0 {
                memory.push(format!(
                    "{gpu:.1} idle GPU GB·s × {} per GB-hour",
                    cost.vram_gb_hour
                ));
            }
            if ram > 0.0 {
                memory.push(format!(
                    "{ram:.1} idle system-memory GB·s × {} per GB-hour",
                    cost.ram_gb_hour
                ));
            }
            format!(
                "{ka} has the lowest cost, {k:.3} ({} cold × {:.2} s × {} per wait-second + {})",
                pick.cold,
                penalty_s.unwrap_or(0.0),
                cost.wait_second,
                memory.join(" + ")
            )
        }
        Form::ColdOnly => format!(
            "no memory measured: {ka} is the shortest swept keep_alive with the lowest cold-start ratio ({:.1}%)",
            pick.cold_ratio * 100.0
        ),
        Form::NoCandidate => String::new(),
    };
    if slo_ms.is_some() && form != Form::Slo {
        out.push_str("; no swept keep_alive met the p99 TTFT SLO");
    }
    if !has_vram && form != Form::ColdOnly {
        out.push_str("; no memory measured, so memory is ranked by keep_alive length");
    }
    let frontier: Vec<String> = cands
        .iter()
        .filter(|c| c.on_frontier)
        .map(|c| display_keep_alive(&c.keep_alive))
        .collect();
    if !frontier.is_empty() {
        out.push_str(&format!("; Pareto frontier: {}", frontier.join(", ")));
    }
    if pick.honoured == Some(false) {
        out.push_str("; warning: the server did not release memory as this keep_alive says");
    }
    out
}

/// Paste-ready settings for a keep_alive as written.
pub fn snippets(model: &str, written: &str) -> Snippets {
    let notes = vec![
        "keep_alive is a top-level field of /api/generate, /api/chat and /api/embed; inside \"options\" it is ignored.".to_string(),
        "Forever is the JSON number -1; the string \"-1\" (or any numeric string but \"0\") is rejected with 400.".to_string(),
        "OpenAI-compatible /v1 clients cannot set keep_alive per request: OLLAMA_KEEP_ALIVE on the server is their only lever.".to_string(),
    ];
    let parsed = KeepAlive::parse(written)
        .ok()
        .filter(|_| !written.is_empty());
    let (env, json) = match &parsed {
        Some(ka) => {
            let env = match ka.duration() {
                None => "-1".to_string(),
                Some(d) => format_go_duration(d),
            };
            (env, ka.to_json())
        }
        None => ("5m".to_string(), serde_json::Value::String("5m".into())),
    };
    let field = format!("\"keep_alive\": {json}");
    let body = serde_json::json!({ "model": model, "prompt": "…", "keep_alive": json });
    Snippets {
        server_env: format!("OLLAMA_KEEP_ALIVE={env}"),
        native_request: body.to_string(),
        keep_alive_field: field,
        notes,
    }
}

/// Advice across groups of one workload where the scenario swept `quant` or `model`,
/// and on OLLAMA_MAX_LOADED_MODELS when several models run.
fn advice(
    summary: &Summary,
    recs: &[Recommendation],
    models: &[&str],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for axis in ["quant", "model"] {
        let swept = summary.cells.iter().any(|c| c.params.contains_key(axis));
        if !swept {
            continue;
        }
        let mut by_workload: BTreeMap<&str, Vec<&Recommendation>> = BTreeMap::new();
        for r in recs {
            by_workload.entry(r.workload.as_str()).or_default().push(r);
        }
        for (workload, rs) in by_workload {
            let mut lines = Vec::new();
            for r in &rs {
                let Some(c) = r.chosen_candidate() else {
                    continue;
                };
                let value = r.fixed.get(axis).cloned().unwrap_or_default();
                lines.push(format!(
                    "{axis} {value} ({}): at keep_alive {}, peak memory {}, cold load {}, p99 TTFT {}, cold {:.1}%{}",
                    r.model,
                    display_keep_alive(&r.chosen),
                    c.peak_bytes.map_or("unknown".into(), |b| format!("{:.2} GB", b as f64 / GB)),
                    c.cold_load_ms.map_or("n/a".into(), |p| format!("{p:.0} ms")),
                    c.p99_ttft_ms.map_or("n/a".into(), |p| format!("{p:.0} ms")),
                    c.cold_ratio * 100.0,
                    c.cost.map_or(String::new(), |k| format!(", cost {:.3}", k.total)),
                ));
            }
            let best = rs
                .iter()
                .filter_map(|r| {
                    r.chosen_candidate()
                        .and_then(|c| c.cost)
                        .map(|k| (r, k.total))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((r, _)) = best {
                lines.push(format!(
                    "Lowest cost across swept {axis}: {} with keep_alive {}.",
                    r.fixed.get(axis).map_or(r.model.as_str(), String::as_str),
                    display_keep_alive(&r.chosen)
                ));
            }
            out.entry(workload.to_string()).or_default().extend(lines);
        }
    }
    if models.len() > 1 {
        let line = format!(
            "{} models ran: to keep them resident together set OLLAMA_MAX_LOADED_MODELS={} (default 3 per GPU) and check that they fit in VRAM; otherwise each switch evicts one and costs a cold load.",
            models.len(),
            models.len()
        );
        for r in recs {
            out.entry(r.workload.clone())
                .or_default()
                .push(line.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::vram::VramFigures;
    use crate::analysis::{Percentiles, Split};
    use std::time::Duration;

    fn pct(p99: f64) -> Percentiles {
        Percentiles {
            p50: p99 / 2.0,
            p90: p99,
            p99,
            p999: p99,
            max: p99,
            mean: p99 / 2.0,
            count: 100,
        }
    }

    fn cell(id: &str, ka: &str, ka_s: f64, cold: u64, p99: f64, idle: f64) -> CellSummary {
        CellSummary {
            id: id.into(),
            params: BTreeMap::from([("keep_alive".into(), ka.into())]),
            streams: vec![StreamSummary {
                name: "chat".into(),
                model: "m:7b".into(),
                keep_alive: ka.into(),
                keep_alive_s: Some(ka_s),
                keep_alive_forever: false,
                rate_per_s: Some(0.1),
                requests: 100,
                warmup: 0,
                errors: 0,
                errors_by_kind: BTreeMap::new(),
                answered: 100,
                cold,
                loads: 0,
                cold_ratio: cold as f64 / 100.0,
                ttft_ms: Split {
                    all: Some(pct(p99)),
                    warm: None,
                    cold: None,
                },
                e2e_ms: Split::default(),
                tpot_ms: None,
                load_ms: None,
                cold_penalty_ms: Some(2000.0),
                tokens_per_s: None,
            }],
            vram: Some(VramFigures {
                source: "sim".into(),
                gb_seconds_held: idle + 100.0,
                idle_gb_seconds: idle,
                peak_bytes: 5_000_000_000,
                mean_bytes: 4e9,
                release: Vec::new(),
                gpu: None,
                ram: None,
                counted: "GPU".into(),
            }),
            warnings: Vec::new(),
            reloads: Default::default(),
        }
    }

    fn summary() -> Summary {
        Summary {
            scenario: "t".into(),
            target: Default::default(),
            ollama_version: None,
            status: Default::default(),
            cold_threshold_ms: 100.0,
            cells: vec![
                cell("c0", "10s", 10.0, 60, 2500.0, 500.0),
                cell("c1", "1m", 60.0, 20, 2300.0, 3000.0),
                cell("c2", "10m", 600.0, 2, 80.0, 20000.0),
            ],
        }
    }

    fn cost(vram_gb_hour: f64) -> CostSettings {
        CostSettings {
            vram_gb_hour,
            ram_gb_hour: 1.0,
            wait_second: 1.0,
            cold_penalty: None,
        }
    }

    #[test]
    fn cost_form_picks_the_hand_computed_minimum() {
        // Penalty 2 s × 1: cold costs 120, 40, 4. VRAM at 7.2/GB-h = 0.002/GB-s:
        // 1, 6, 40. Totals 121, 46, 44 → 10m.
        let recs = recommend(&summary(), &cost(7.2), &SloSettings::default());
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.form, Form::Cost);
        assert_eq!(r.chosen, "10m");
        let totals: Vec<f64> = r.candidates.iter().map(|c| c.cost.unwrap().total).collect();
        for (got, want) in totals.iter().zip([121.0, 46.0, 44.0]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        // Dearer memory (72/GB-h: 10, 60, 400) → totals 130, 100, 404 → 1m.
        let r = &recommend(&summary(), &cost(72.0), &SloSettings::default())[0];
        assert_eq!(r.chosen, "1m");
        assert!(r.candidates.iter().all(|c| c.on_frontier));
    }

    #[test]
    fn system_memory_is_priced_at_ram_gb_hour() {
        // The same cells held in system memory (a CPU-only host): memory at 1.0/GB-h
        // = 1/3600 per GB-s: 0.139, 0.833, 5.556; totals 120.139, 40.833, 9.556 → 10m.
        let mut s = summary();
        for c in &mut s.cells {
            let v = c.vram.as_mut().unwrap();
            let part = |idle: f64| crate::analysis::vram::MemoryPart {
                source: "ollama_ps".into(),
                gb_seconds_held: idle,
                idle_gb_seconds: idle,
                peak_bytes: if idle > 0.0 { 5_000_000_000 } else { 0 },
                mean_bytes: 0.0,
            };
            v.gpu = Some(part(0.0));
            v.ram = Some(part(v.idle_gb_seconds));
            v.counted = "system RAM".into();
        }
        let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
        let costs: Vec<Cost> = r.candidates.iter().map(|c| c.cost.unwrap()).collect();
        for (got, idle) in costs.iter().zip([500.0, 3000.0, 20000.0]) {
            assert_eq!(got.vram, 0.0);
            assert!((got.ram - idle / 3600.0).abs() < 1e-9, "{got:?}");
        }
        assert_eq!(r.chosen, "10m");
        assert!(r.reason.contains("idle system-memory GB·s"), "{}", r.reason);
        // Break-even: 2 s ÷ (5 GB × 1.0 / 3600 s) = 1440 s.
        assert!((r.break_even_s.unwrap() - 1440.0).abs() < 1e-6);
    }

    #[test]
    fn slo_form_picks_the_least_memory_meeting_the_slo() {
        let slo = SloSettings {
            ttft_p99: Some(Duration::from_millis(2400)),
        };
        let r = &recommend(&summary(), &cost(7.2), &slo)[0];
        assert_eq!(r.form, Form::Slo);
        assert_eq!(r.slo_choice.as_deref(), Some("1m"));
        assert_eq!(r.cost_choice.as_deref(), Some("10m"));
        assert_eq!(r.chosen, "1m");
        assert_eq!(r.candidates[0].meets_slo, Some(false));
        let strict = SloSettings {
            ttft_p99: Some(Duration::from_millis(50)),
        };
        let r = &recommend(&summary(), &cost(7.2), &strict)[0];
        assert_eq!(r.form, Form::Cost);
        assert!(r.reason.contains("no swept keep_alive met"));
    }

    #[test]
    fn break_even_follows_the_ski_rental_rule() {
        // 2 s × 1 / (5 GB × 7.2 / 3600) = 2 / 0.01 = 200 s.
        let r = &recommend(&summary(), &cost(7.2), &SloSettings::default())[0];
        assert!((r.break_even_s.unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(r.model_gb, Some(5.0));
        let fixed = CostSettings {
            cold_penalty: Some(Duration::from_secs(3)),
            ..cost(7.2)
        };
        let r = &recommend(&summary(), &fixed, &SloSettings::default())[0];
        assert!((r.break_even_s.unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(format_seconds(252.0), "4m12s");
    }

    #[test]
    fn without_vram_the_cold_only_form_says_so() {
        let mut s = summary();
        for c in &mut s.cells {
            c.vram = None;
        }
        let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
        assert_eq!(r.form, Form::ColdOnly);
        assert_eq!(r.chosen, "10m");
        assert!(r.reason.contains("no memory measured"));
        assert!(r.break_even_s.is_none());
    }

    #[test]
    fn snippets_carry_the_wire_forms() {
        let s = snippets("m", "-1");
        assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=-1");
        assert_eq!(s.keep_alive_field, "\"keep_alive\": -1");
        let s = snippets("m", "300");
        assert_eq!(s.keep_alive_field, "\"keep_alive\": 300");
        assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=5m");
        let s = snippets("m", "0.5");
        assert_eq!(s.server_env, "OLLAMA_KEEP_ALIVE=500ms");
        let s = snippets("m", "10m");
        assert_eq!(s.keep_alive_field, "\"keep_alive\": \"10m\"");
        assert!(s.native_request.contains("\"keep_alive\":\"10m\""));
        assert!(s.notes.iter().any(|n| n.contains("/v1")));
    }

    fn with_errors(mut s: Summary, cell: usize, errors: u64) -> Summary {
        s.cells[cell].streams[0].errors = errors;
        s.cells[cell].streams[0].errors_by_kind = BTreeMap::from([("connect".into(), errors)]);
        s
    }

    #[test]
    fn a_cell_with_too_many_failed_requests_is_not_a_candidate() {
        // 10m is the cost pick (44); at 10 of 100 failed it stays one, at 11 it is out
        // and 1m (46) wins.
        let r = &recommend(
            &with_errors(summary(), 2, 10),
            &cost(7.2),
            &SloSettings::default(),
        )[0];
        assert_eq!(r.chosen, "10m");
        let r = &recommend(
            &with_errors(summary(), 2, 11),
            &cost(7.2),
            &SloSettings::default(),
        )[0];
        assert_eq!(r.chosen, "1m");
        assert!(
            r.reason.contains("10m: 11 of 100 requests failed"),
            "{}",
            r.reason
        );
        assert!(!r.candidates[2].on_frontier);
        // Also for the SLO and cold-only forms.
        let slo = SloSettings {
            ttft_p99: Some(Duration::from_millis(100)),
        };
        let r = &recommend(&with_errors(summary(), 2, 100), &cost(7.2), &slo)[0];
        assert_ne!(r.chosen, "10m");
        let mut s = with_errors(summary(), 2, 100);
        for c in &mut s.cells {
            c.vram = None;
        }
        let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
        assert_eq!(r.form, Form::ColdOnly);
        assert_eq!(r.chosen, "1m");
    }

    #[test]
    fn with_no_valid_candidate_nothing_is_recommended() {
        let mut s = summary();
        for i in 0..3 {
            s = with_errors(s, i, 100);
        }
        let r = &recommend(&s, &cost(7.2), &SloSettings::default())[0];
        assert_eq!(r.form, Form::NoCandidate);
        assert!(r.chosen_candidate().is_none());
        assert!(r.cost_choice.is_none());
        assert!(r.candidates.iter().all(|c| !c.on_frontier));
        let h = r.headline();
        assert!(h.starts_with("chat (m:7b): no recommendation"), "{h}");
        assert!(h.contains("10s: all 100 requests failed"), "{h}");
        assert!(!h.contains("OLLAMA_KEEP_ALIVE"), "{h}");
    }
}
