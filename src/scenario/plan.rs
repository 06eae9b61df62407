//! Expands a scenario's `[sweep]` into a `Plan`: one cell per point of the cartesian
//! product of the non-empty axes, each stream with the axis values applied and its own
//! derived seed. Knows nothing of how cells are run.

use std::time::Duration;

use super::{Api, Arrival, Prompt, Scenario, TargetSpec};
use crate::folder::{CellParams, SweepAxis, SweptKeepAlive};
use crate::rng::splitmix64 as mix;
use crate::units::{KeepAlive, Rate};

/// Every cell of a scenario, in run order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Cells; `cells[i].index == i`.
    pub cells: Vec<Cell>,
}

/// One point of the sweep: all streams run together with these values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// 0-based position in the plan.
    pub index: usize,
    /// Short, file-name safe id: `c<index+1>` then one `-<axis>_<value>` per swept axis,
    /// e.g. `c03-ka_2s-rate_0.2ps-quant_q8_0`.
    pub id: String,
    /// Every swept axis (`keep_alive`, `rate`, `quant`, `model`), typed, each as
    /// written in the scenario; empty when nothing is swept.
    pub params: CellParams,
    /// The streams with this cell's values applied.
    pub streams: Vec<CellStream>,
    /// The server this cell runs against, when the scenario lists servers (`None`: the
    /// run's one target).
    pub server: Option<CellServer>,
}

/// The server of a cell: which, and for one kabench starts, how.
#[derive(Debug, Clone, PartialEq)]
pub struct CellServer {
    /// Its name (the cell's `server` label).
    pub name: String,
    /// What it is (`run.json` kind).
    pub kind: crate::folder::TargetKind,
    /// A server kabench starts for this cell; `None`: the run's Ollama.
    pub managed: Option<ManagedCell>,
}

/// How to start a cell's server.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedCell {
    /// The command template as written.
    pub command: Vec<String>,
    /// Placeholder values known at plan time (`model_path`, `sleep_idle_seconds`);
    /// `port` is chosen at the start.
    pub values: Vec<(String, String)>,
    /// How long to wait for `GET /health`.
    pub health_timeout: Duration,
    /// Which llama.cpp server it is.
    pub kind: crate::llama::ServerKind,
    /// The cell's `idle_unload` value on the server's knob (the router's per-model
    /// `sleep-idle-seconds`, -1 = off; llama-swap's `ttl`, 0 = never), written into the
    /// config file kabench writes for the cell; unused for `llama-server`, whose
    /// `{sleep_idle_seconds}` is in `values`.
    pub knob: i64,
    /// The folder of `<model>.gguf` files (router and llama-swap).
    pub models_dir: Option<std::path::PathBuf>,
    /// llama-swap's per-model command template (empty otherwise).
    pub model_command: Vec<String>,
}

/// A stream as sent in one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStream {
    /// Stream name.
    pub name: String,
    /// Model tag: the `model` axis applied, `{quant}` filled.
    pub model: String,
    /// Endpoint.
    pub api: Api,
    /// `num_ctx` to send.
    pub num_ctx: u32,
    /// Prompt.
    pub prompt: Prompt,
    /// `options.num_predict`.
    pub max_tokens: u32,
    /// keep_alive to send (the axis value when swept); `None` sends none.
    pub keep_alive: Option<KeepAlive>,
    /// Arrival process, the `rate` axis applied.
    pub arrival: Arrival,
    /// Requests per stream (`[run] requests`), or
    pub requests: Option<u32>,
    /// how long to send (`[run] duration`).
    pub duration: Option<Duration>,
    /// Warm-up requests at the start, excluded from statistics.
    pub warmup: u32,
    /// Images per request.
    pub images: u32,
    /// `think` to send.
    pub think: Option<bool>,
    /// The repetition this cell is (1, 2, …) when `[run] repeat` is over 1; 0 otherwise.
    pub repetition: u32,
    /// Seed of this stream's arrivals and prompts in this cell.
    ///
    /// Derived from the scenario seed, the stream index and the cell's position on
    /// every axis except `keep_alive`, and the repetition: cells that differ only in
    /// keep_alive face the very same arrival sequence within a repetition (common
    /// random numbers), so their differences come from keep_alive alone; any other
    /// axis, every stream and every repetition gets its own seed.
    pub seed: u64,
}

/// One value of an axis, as the id, the params and the streams need it.
#[derive(Clone)]
enum AxisValue {
    KeepAlive(KeepAlive),
    Rate(Rate),
    Quant(String),
    Model(String),
}

impl AxisValue {
    fn axis(&self) -> SweepAxis {
        match self {
            AxisValue::KeepAlive(_) => SweepAxis::KeepAlive,
            AxisValue::Rate(_) => SweepAxis::Rate,
            AxisValue::Quant(_) => SweepAxis::Quant,
            AxisValue::Model(_) => SweepAxis::Model,
        }
    }

    fn written(&self) -> &str {
        match self {
            AxisValue::KeepAlive(k) => k.written(),
            AxisValue::Rate(r) => r.written(),
            AxisValue::Quant(s) | AxisValue::Model(s) => s,
        }
    }
}

/// Expands `scenario` into its cells: the cartesian product of the non-empty axes in
/// the order keep_alive, rate, quant, model (keep_alive varies slowest); one cell when
/// nothing is swept. With `[run] repeat = N` over 1 the whole sweep runs N times, see
/// [`repeat`].
pub fn plan(scenario: &Scenario) -> Plan {
    repeat(server_plan(scenario), scenario.run.repeat)
}

/// With servers, the sweep once per server and idle-unload value, servers in the
/// order written and each server's values in order (the slowest axes): the cell's
/// `keep_alive` and every stream's is its idle-unload value (sent to Ollama, a
/// start flag for llama-server, whose requests carry none), its `server` label names the server, and the arrivals are the same
/// for every server and value (the seeds leave both out).
fn server_plan(scenario: &Scenario) -> Plan {
    let base = sweep_plan(scenario);
    if scenario.servers.is_empty() {
        return base;
    }
    let mut cells = Vec::new();
    let points: usize = scenario
        .servers
        .iter()
        .map(|s| s.idle_unload.len().max(1))
        .sum::<usize>()
        * base.cells.len();
    let width = points.to_string().len().max(2);
    for server in &scenario.servers {
        let values: Vec<Option<&KeepAlive>> = if server.idle_unload.is_empty() {
            vec![None]
        } else {
            server.idle_unload.iter().map(Some).collect()
        };
        for value in values {
            for b in &base.cells {
                let mut c = b.clone();
                c.index = cells.len();
                let rest = b.id.split_once('-').map_or("", |(_, r)| r);
                c.id = format!("c{:0width$}-srv_{}", c.index + 1, file_safe(&server.name));
                if let Some(v) = value {
                    c.id.push_str(&format!("-iu_{}", file_safe(v.written())));
                    c.params.keep_alive = Some(SweptKeepAlive::Value(v.clone()));
                }
                if !rest.is_empty() {
                    c.id.push('-');
                    c.id.push_str(rest);
                }
                c.params.labels.insert("server".into(), server.name.clone());
                if let TargetSpec::LlamaServer(m) = &server.spec {
                    let knob = match m.kind {
                        crate::llama::ServerKind::LlamaServer => "--sleep-idle-seconds",
                        crate::llama::ServerKind::LlamaRouter => "sleep-idle-seconds",
                        crate::llama::ServerKind::LlamaSwap => "ttl",
                    };
                    c.params
                        .labels
                        .insert(super::KNOB_LABEL.into(), knob.into());
                }
                let managed = match &server.spec {
                    TargetSpec::LlamaServer(m) => {
                        let mut values = vec![(
                            "sleep_idle_seconds".to_string(),
                            crate::folder::sleep_idle_seconds(value),
                        )];
                        if let Some(p) = &m.model_path {
                            values.push(("model_path".into(), p.display().to_string()));
                        }
                        if let Some(d) = &m.models_dir {
                            values.push(("models_dir".into(), d.display().to_string()));
                        }
                        // Validated with the scenario: every value maps.
                        let off = crate::units::KeepAlive::forever();
                        let knob =
                            super::servers::knob_value(m.kind, value.unwrap_or(&off)).unwrap_or(-1);
                        Some(ManagedCell {
                            command: m.command.clone(),
                            values,
                            health_timeout: m.health_timeout,
                            kind: m.kind,
                            knob,
                            models_dir: m.models_dir.clone(),
                            model_command: m.model_command.clone(),
                        })
                    }
                    _ => None,
                };
                // Each stream's keep_alive is the knob: sent to Ollama; for
                // llama-server (whose requests carry none) the start flag it became,
                // so the release, horizon and recommendation read it alike.
                if let Some(v) = value {
                    for s in &mut c.streams {
                        s.keep_alive = Some(v.clone());
                    }
                }
                c.server = Some(CellServer {
                    name: server.name.clone(),
                    kind: server.kind(),
                    managed,
                });
                cells.push(c);
            }
        }
    }
    Plan { cells }
}

/// The sweep `times` times over, interleaved: repetition K (from 1) runs every cell of
/// `once` with the order rotated by K−1 (so drift on the host does not favour one
/// keep_alive), each cell's id suffixed `-rK`, its `params` holding `repetition = K`
/// and every stream's seed mixed with K (cells that differ only in keep_alive still
/// share a seed within a repetition). `times` ≤ 1 leaves the plan as it is.
pub fn repeat(once: Plan, times: u32) -> Plan {
    if times <= 1 || once.cells.is_empty() {
        return once;
    }
    let n = once.cells.len();
    let mut cells = Vec::with_capacity(n * times as usize);
    for k in 1..=times {
        let shift = (k as usize - 1) % n;
        for j in 0..n {
            let base = &once.cells[(j + shift) % n];
            let mut c = base.clone();
            c.index = cells.len();
            c.id = format!("{}-r{k}", base.id);
            c.params.repetition = Some(k);
            for s in &mut c.streams {
                s.repetition = k;
                s.seed = mix(s.seed ^ mix(u64::from(k)));
            }
            cells.push(c);
        }
    }
    Plan { cells }
}

fn sweep_plan(scenario: &Scenario) -> Plan {
    let sweep = &scenario.sweep;
    let axes: Vec<Vec<AxisValue>> = [
        sweep
            .keep_alive
            .iter()
            .cloned()
            .map(AxisValue::KeepAlive)
            .collect(),
        sweep.rate.iter().cloned().map(AxisValue::Rate).collect(),
        sweep.quant.iter().cloned().map(AxisValue::Quant).collect(),
        sweep
            .model
            .iter()
            .cloned()
            .map(AxisValue::Model)
            .collect::<Vec<_>>(),
    ]
    .into_iter()
    .filter(|a| !a.is_empty())
    .collect();
    let total: usize = axes.iter().map(Vec::len).product();
    let width = total.to_string().len().max(2);
    let mut cells = Vec::with_capacity(total);
    for index in 0..total {
        // Mixed-radix digits of `index`, the last axis varying fastest.
        let mut rest = index;
        let mut coords = vec![0usize; axes.len()];
        for (a, axis) in axes.iter().enumerate().rev() {
            coords[a] = rest % axis.len();
            rest /= axis.len();
        }
        let values: Vec<&AxisValue> = axes.iter().zip(&coords).map(|(a, &c)| &a[c]).collect();
        cells.push(cell(scenario, index, width, &values, &coords));
    }
    Plan { cells }
}

fn cell(
    scenario: &Scenario,
    index: usize,
    width: usize,
    values: &[&AxisValue],
    coords: &[usize],
) -> Cell {
    let mut id = format!("c{:0width$}", index + 1);
    let mut params = CellParams::default();
    // Position on the axes that change what is sent, keep_alive excluded (see `seed`).
    let mut arrival_key: u64 = 0;
    for (value, &coord) in values.iter().zip(coords) {
        id.push('-');
        id.push_str(value.axis().short());
        id.push('_');
        id.push_str(&file_safe(value.written()));
        match value {
            AxisValue::KeepAlive(k) => params.keep_alive = Some(SweptKeepAlive::Value(k.clone())),
            AxisValue::Rate(r) => params.rate = Some(r.clone()),
            AxisValue::Quant(q) => params.quant = Some(q.clone()),
            AxisValue::Model(m) => params.model = Some(m.clone()),
        }
        if !matches!(value, AxisValue::KeepAlive(_)) {
            arrival_key = mix(arrival_key ^ (coord as u64 + 1));
        }
    }
    let streams = scenario
        .streams
        .iter()
        .enumerate()
        .map(|(s, spec)| {
            let mut model = spec.model.clone();
            let mut keep_alive = spec.keep_alive.clone();
            let mut arrival = spec.arrival.clone();
            for value in values {
                match value {
                    AxisValue::KeepAlive(k) => keep_alive = Some(k.clone()),
                    AxisValue::Rate(r) => arrival = arrival.with_rate(r.clone()),
                    AxisValue::Model(m) => model = m.clone(),
                    AxisValue::Quant(_) => {}
                }
            }
            for value in values {
                if let AxisValue::Quant(q) = value {
                    model = model.replace("{quant}", q);
                }
            }
            CellStream {
                name: spec.name.clone(),
                model,
                api: spec.api,
                num_ctx: spec.num_ctx,
                prompt: spec.prompt.clone(),
                max_tokens: spec.max_tokens,
                keep_alive,
                arrival,
                requests: scenario.run.requests,
                duration: scenario.run.duration,
                warmup: scenario.run.warmup,
                images: spec.images,
                think: spec.think,
                repetition: 0,
                seed: mix(mix(scenario.seed ^ mix(s as u64 + 1)) ^ arrival_key),
            }
        })
        .collect();
    Cell {
        index,
        id,
        params,
        streams,
        server: None,
    }
}

/// Keeps letters, digits, `.` and `_` (and `-` inside a value, as in `-1`); writes `/`
/// as `p` (`0.2/s` → `0.2ps`) and anything else as `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => c,
            '/' => 'p',
            _ => '_',
        })
        .collect()
}
