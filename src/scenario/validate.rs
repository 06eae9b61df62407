//! Turns the file as read (`raw`) into a typed `Scenario`: applies the documented
//! defaults and checks every value, reporting the first fault at its key with what is
//! allowed. Knows nothing of HTTP; trace files are read only to check them.
//! Over 500 lines: every key's check and message, in the order of the file format.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawArrival, RawScenario, RawStream, RawSweep};
use super::sections::{
    cost, keep_alive, rate, required_duration, run, sim_values, slo, swarm, telemetry,
};
use super::spans::Locator;
use super::tokens;
use super::{Api, Arrival, Prompt, RunSettings, Scenario, ScenarioError, StreamSpec, Sweep, trace};

type Result<T> = std::result::Result<T, ScenarioError>;

const ARRIVAL_EXAMPLE: &str = "arrival = { kind = \"poisson\", rate = \"0.5/s\" }";
const ARRIVAL_KINDS: &str = "\"constant\", \"poisson\", \"gamma\", \"onoff\" or \"trace\"";

/// Validates `raw`, read from `text` at `path`.
pub(crate) fn validate(
    raw: RawScenario,
    loc: &Locator<'_>,
    text: &str,
    path: &Path,
) -> Result<Scenario> {
    let name = match raw.name {
        Some(n) if n.trim().is_empty() => {
            return Err(loc.error_at("name", "empty name: write e.g. name = \"quickstart\""));
        }
        Some(n) => n,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into()),
    };
    let seed = raw.seed.unwrap_or(0);
    sim_values(&raw.sim, seed, loc)?;
    let mut sweep = sweep(&raw.sweep, loc)?;
    let (target, servers) = super::servers::targets(
        raw.target,
        raw.server,
        &mut sweep,
        path.parent().unwrap_or(Path::new("")),
        loc,
    )?;
    if raw.stream.is_empty() {
        return Err(loc.error_at(
            "stream",
            format!(
                "no streams: add at least one [[stream]] table with `model` and `{ARRIVAL_EXAMPLE}`"
            ),
        ));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let mut sim = raw.sim;
    if let Some(dir) = &sim.calibrate {
        // A run folder, relative to the scenario file; read when the simulator starts.
        let resolved = base.join(dir);
        if !resolved.join(crate::folder::REQUESTS_CSV).is_file() {
            return Err(loc.error_at(
                "sim.calibrate",
                format!(
                    "{} is not a kabench run folder (no {}): write the folder of a run measured on the host to simulate",
                    resolved.display(),
                    crate::folder::REQUESTS_CSV
                ),
            ));
        }
        sim.calibrate = Some(resolved.display().to_string());
    }
    let mut streams: Vec<StreamSpec> = Vec::with_capacity(raw.stream.len());
    for (i, s) in raw.stream.into_iter().enumerate() {
        let spec = stream(i, s, &sweep, base, loc)?;
        if streams.iter().any(|o| o.name == spec.name) {
            return Err(loc.error_at(
                &format!("stream[{i}].name"),
                format!(
                    "duplicate stream name {:?}: give each stream its own name",
                    spec.name
                ),
            ));
        }
        streams.push(spec);
    }
    shared_trace_epoch(&mut streams);
    sweep_fits_streams(&sweep, &streams, loc)?;
    super::servers::streams_fit_servers(&servers, &streams, loc)?;
    let run = run(&raw.run, loc)?;
    plan_bounds(&run, &sweep, &streams, loc)?;
    let telemetry = telemetry(&raw.telemetry, loc)?;
    let cost = cost(&raw.cost, loc)?;
    let slo = slo(&raw.slo, loc)?;
    let swarm = swarm(&raw.swarm, loc)?;
    Ok(Scenario {
        name,
        seed,
        target,
        servers,
        sim,
        streams,
        run,
        sweep,
        telemetry,
        cost,
        slo,
        swarm,
        source: text.to_string(),
        path: path.to_path_buf(),
    })
}

fn sweep(raw: &RawSweep, loc: &Locator<'_>) -> Result<Sweep> {
    let mut out = Sweep::default();
    for (i, v) in raw.keep_alive.iter().enumerate() {
        let key = format!("sweep.keep_alive[{i}]");
        let ka = keep_alive(v, &key, loc)?;
        // By meaning: "60s", "1m" and 60 are one value; "-1" and "-5m" are both forever.
        if let Some(o) = out
            .keep_alive
            .iter()
            .find(|o| o.duration() == ka.duration())
        {
            return Err(same_meaning(&key, ka.written(), o.written(), loc));
        }
        out.keep_alive.push(ka);
    }
    for (i, v) in raw.rate.iter().enumerate() {
        let key = format!("sweep.rate[{i}]");
        let r = rate(v, &key, loc)?;
        if let Some(o) = out.rate.iter().find(|o| o.value() == r.value()) {
            return Err(same_meaning(&key, r.written(), o.written(), loc));
        }
        out.rate.push(r);
    }
    for (axis, values, target) in [
        ("quant", &raw.quant, &mut out.quant),
        ("model", &raw.model, &mut out.model),
    ] {
        for (i, v) in values.iter().enumerate() {
            let key = format!("sweep.{axis}[{i}]");
            if v.trim().is_empty() {
                return Err(loc.error_at(&key, format!("empty {axis}: write e.g. \"q4_K_M\"")));
            }
            if target.contains(v) {
                return Err(duplicate(&key, v, loc));
            }
            target.push(v.clone());
        }
    }
    out.idle_unload = super::servers::sweep_idle_unload(&raw.idle_unload, loc)?;
    Ok(out)
}

fn same_meaning(key: &str, value: &str, earlier: &str, loc: &Locator<'_>) -> ScenarioError {
    if value == earlier {
        return duplicate(key, value, loc);
    }
    loc.error_at(
        key,
        format!("duplicate sweep value {value:?}: it means the same as {earlier:?}, listed before it; list each value once"),
    )
}

/// The most requests one stream may plan in one cell (`requests` + `warmup`, or
/// rate × `duration`): the plan is held in memory before the first send.
pub const MAX_REQUESTS_PER_CELL: u64 = 1_000_000;

/// The longest a cell may plan to send for: `duration`, or `requests` ÷ rate.
pub const MAX_CELL_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks the plan's size before anything is planned: every cell's sends must fit
/// [`MAX_REQUESTS_PER_CELL`] and [`MAX_CELL_SPAN`], whatever the rate.
fn plan_bounds(
    run: &RunSettings,
    sweep: &Sweep,
    streams: &[StreamSpec],
    loc: &Locator<'_>,
) -> Result<()> {
    let max_span = MAX_CELL_SPAN.as_secs_f64();
    let days = MAX_CELL_SPAN.as_secs() / 86400;
    if let Some(n) = run.requests {
        let total = u64::from(n) + u64::from(run.warmup);
        if total > MAX_REQUESTS_PER_CELL {
            let key = if u64::from(n) > MAX_REQUESTS_PER_CELL {
                "run.requests"
            } else {
                "run.warmup"
            };
            return Err(loc.error_at(
                key,
                format!("{total} requests per stream and cell is more than kabench plans ({MAX_REQUESTS_PER_CELL}): lower `requests` (and `warmup`), or split the run"),
            ));
        }
    }
    if let Some(d) = run.duration
        && d > MAX_CELL_SPAN
    {
        return Err(loc.error_at(
            "run.duration",
            format!("duration {} is longer than a cell may last ({days} days): write a shorter duration, e.g. \"1h\"", humantime::format_duration(d)),
        ));
    }
    // Each stream's rates: the swept ones when rate is swept, else its own.
    for (i, s) in streams.iter().enumerate() {
        let Some(own) = s.arrival.rate() else {
            continue;
        };
        let rates: Vec<(String, &crate::units::Rate)> = if sweep.rate.is_empty() {
            vec![(format!("stream[{i}].arrival.rate"), own)]
        } else {
            sweep
                .rate
                .iter()
                .enumerate()
                .map(|(j, r)| (format!("sweep.rate[{j}]"), r))
                .collect()
        };
        // Mean rate: an on/off source is silent for `off` after each `on`.
        let duty = match &s.arrival {
            Arrival::OnOff { on, off, .. } => {
                let (on, off) = (on.as_secs_f64(), off.as_secs_f64());
                if on + off > 0.0 { on / (on + off) } else { 1.0 }
            }
            _ => 1.0,
        };
        for (key, r) in rates {
            let mean = r.value() * duty;
            let gap = 1.0 / mean;
            if !(mean.is_finite() && mean > 0.0 && gap.is_finite()) || gap > max_span {
                return Err(loc.error_at(
                    &key,
                    format!("rate {:?} is too low: stream {:?} would wait more than {days} days between requests; write a rate of at least 1 per {days} days, e.g. \"1/h\"", r.written(), s.name),
                ));
            }
            match (run.requests, run.duration) {
                (Some(n), _) => {
                    let span = (f64::from(n) + f64::from(run.warmup)) * gap;
                    if span > max_span {
                        return Err(loc.error_at(
                            &key,
                            format!("rate {:?} is too low for {} requests: stream {:?} would send for about {:.0} days, more than a cell may last ({days} days); raise the rate or lower `requests`", r.written(), n, s.name, span / 86400.0),
                        ));
                    }
                }
                (None, Some(d)) => {
                    let expected = d.as_secs_f64() * mean;
                    if expected > MAX_REQUESTS_PER_CELL as f64 {
                        return Err(loc.error_at(
                            &key,
                            format!("rate {:?} for {} plans about {:.0} requests for stream {:?}, more than kabench plans per stream and cell ({MAX_REQUESTS_PER_CELL}): lower the rate or the duration", r.written(), humantime::format_duration(d), expected, s.name),
                        ));
                    }
                }
                (None, None) => {}
            }
        }
    }
    Ok(())
}

fn duplicate(key: &str, value: &str, loc: &Locator<'_>) -> ScenarioError {
    loc.error_at(
        key,
        format!("duplicate sweep value {value:?}: list each value once"),
    )
}

/// Checks the axes against the streams: `{quant}` needs a quant axis and the other
/// way round; a rate axis needs every arrival to have a rate.
fn sweep_fits_streams(sweep: &Sweep, streams: &[StreamSpec], loc: &Locator<'_>) -> Result<()> {
    let filled = |m: &str| m.contains("{quant}");
    let any_quant =
        streams.iter().any(|s| filled(&s.model)) || sweep.model.iter().any(|m| filled(m));
    if !sweep.quant.is_empty() && !any_quant {
        return Err(loc.error_at(
            "sweep.quant",
            "no model contains `{quant}`: write the model tag with the placeholder, e.g. model = \"qwen2.5:7b-instruct-{quant}\", or remove the quant axis",
        ));
    }
    if !sweep.rate.is_empty()
        && let Some(i) = streams.iter().position(|s| s.arrival.rate().is_none())
    {
        let message = format!(
            "stream {:?} replays a trace, which has no rate to sweep: \
             sweep `time_scale` by hand or remove the rate axis",
            streams[i].name
        );
        return Err(loc.error_at("sweep.rate", message));
    }
    Ok(())
}

fn stream(
    i: usize,
    s: RawStream,
    sweep: &Sweep,
    base: &Path,
    loc: &Locator<'_>,
) -> Result<StreamSpec> {
    let key = |k: &str| format!("stream[{i}].{k}");
    let name = match s.name {
        Some(n) if n.trim().is_empty() => {
            return Err(loc.error_at(&key("name"), "empty name: write e.g. name = \"tagging\""));
        }
        Some(n) => n,
        None => format!("stream{}", i + 1),
    };
    // A stream's name names its histogram folder of a sharded run.
    if let Err(e) = crate::folder::input::file_name(&name, "the stream's name") {
        return Err(loc.error_at(&key("name"), &e.message));
    }
    let model = model(s.model, &key("model"), sweep, loc)?;
    let api = match s.api.as_deref() {
        None | Some("generate") => Api::Generate,
        Some("chat") => Api::Chat,
        Some("embed") => Api::Embed,
        Some(other) => {
            return Err(loc.error_at(
                &key("api"),
                format!("unknown api {other:?}: write \"generate\", \"chat\" or \"embed\""),
            ));
        }
    };
    let num_ctx = tokens::num_ctx(s.num_ctx.as_ref(), &key("num_ctx"), loc)?;
    let prompt = match (s.prompt_tokens, s.prompt) {
        (Some(_), Some(_)) => {
            return Err(loc.error_at(
                &key("prompt"),
                "both `prompt` and `prompt_tokens`: keep one (a text, or a synthetic prompt of N tokens)",
            ));
        }
        (Some(0), None) => {
            return Err(loc.error_at(&key("prompt_tokens"), "prompt_tokens must be at least 1"));
        }
        (Some(n), None) => Prompt::Tokens(n),
        (None, Some(text)) => Prompt::Text(text),
        (None, None) => Prompt::Tokens(200),
    };
    let max_tokens = tokens::max_tokens(
        s.max_tokens.as_ref(),
        api == Api::Embed,
        &key("max_tokens"),
        loc,
    )?;
    let keep_alive = match &s.keep_alive {
        Some(v) => Some(keep_alive(v, &key("keep_alive"), loc)?),
        None => None,
    };
    let images = s.images.unwrap_or(0);
    if images > 0 && api == Api::Embed {
        return Err(loc.error_at(
            &key("images"),
            "images apply to api = \"generate\" or \"chat\" with a vision model, not to embed",
        ));
    }
    if s.think.is_some() && api == Api::Embed {
        return Err(loc.error_at(
            &key("think"),
            "think applies to api = \"generate\" or \"chat\", not to embed",
        ));
    }
    let arrival = match s.arrival {
        Some(a) => arrival(i, a, sweep, base, loc)?,
        None => {
            return Err(loc.error_at(
                &key("arrival"),
                format!("missing key `arrival`: write e.g. {ARRIVAL_EXAMPLE}"),
            ));
        }
    };
    Ok(StreamSpec {
        name,
        model,
        api,
        num_ctx,
        prompt,
        max_tokens,
        keep_alive,
        arrival,
        images,
        think: s.think,
    })
}

fn model(raw: Option<String>, key: &str, sweep: &Sweep, loc: &Locator<'_>) -> Result<String> {
    let model = match raw {
        Some(m) => m,
        // The model axis names the model of every stream.
        None if !sweep.model.is_empty() => sweep.model[0].clone(),
        None => {
            return Err(loc.error_at(
                key,
                "missing key `model`: write the Ollama model tag, e.g. model = \"qwen2.5:7b-instruct-q4_K_M\" (or sweep it with [sweep] model = [...])",
            ));
        }
    };
    if model.trim().is_empty() {
        return Err(loc.error_at(
            key,
            "empty model: write an Ollama model tag such as \"llama3.1:8b\"",
        ));
    }
    let mut rest = model.as_str();
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}').map_or(after.len(), |c| c + 1);
        let placeholder = &after[..close];
        if placeholder != "{quant}" {
            return Err(loc.error_at(
                key,
                format!("unknown placeholder {placeholder:?} in {model:?}: only {{quant}} is filled (from [sweep] quant)"),
            ));
        }
        rest = &after[close..];
    }
    if model.contains("{quant}") && sweep.quant.is_empty() {
        return Err(loc.error_at(
            key,
            format!("{model:?} contains {{quant}} but [sweep] has no quant axis: add e.g. [sweep] quant = [\"q4_K_M\", \"q8_0\"], or write the tag in full"),
        ));
    }
    Ok(model)
}

fn arrival(
    i: usize,
    a: RawArrival,
    sweep: &Sweep,
    base: &Path,
    loc: &Locator<'_>,
) -> Result<Arrival> {
    let key = |k: &str| format!("stream[{i}].arrival.{k}");
    let kind = match a.kind.as_deref() {
        Some(k) => k,
        None => {
            return Err(loc.error_at(
                &key("kind"),
                format!("missing key `kind`: write one of {ARRIVAL_KINDS}"),
            ));
        }
    };
    let allowed: &[&str] = match kind {
        "constant" | "poisson" => &["rate"],
        "gamma" => &["rate", "cv"],
        "onoff" => &["rate", "on", "off"],
        "trace" => &["file", "column", "time_scale", "skip", "epoch"],
        other => {
            return Err(loc.error_at(
                &key("kind"),
                format!("unknown arrival kind {other:?}: write one of {ARRIVAL_KINDS}"),
            ));
        }
    };
    let present = [
        ("rate", a.rate.is_some()),
        ("cv", a.cv.is_some()),
        ("on", a.on.is_some()),
        ("off", a.off.is_some()),
        ("file", a.file.is_some()),
        ("column", a.column.is_some()),
        ("time_scale", a.time_scale.is_some()),
        ("skip", a.skip.is_some()),
        ("epoch", a.epoch.is_some()),
    ];
    for (k, here) in present {
        if here && !allowed.contains(&k) {
            return Err(loc.error_at(
                &key(k),
                format!(
                    "`{k}` does not apply to kind = {kind:?}, whose keys are: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    if kind == "trace" {
        return trace_arrival(i, a, base, loc);
    }
    let rate = match (&a.rate, sweep.rate.first()) {
        (Some(r), _) => rate(r, &key("rate"), loc)?,
        // The rate axis supplies it in every cell.
        (None, Some(r)) => r.clone(),
        (None, None) => {
            return Err(loc.error_at(
                &key("rate"),
                "missing key `rate`: write requests per unit of time, e.g. rate = \"0.5/s\" (or sweep it with [sweep] rate = [...])",
            ));
        }
    };
    Ok(match kind {
        "constant" => Arrival::Constant { rate },
        "poisson" => Arrival::Poisson { rate },
        "gamma" => {
            let cv = a.cv.unwrap_or(1.0);
            if !(cv.is_finite() && cv > 0.0) {
                return Err(loc.error_at(
                    &key("cv"),
                    format!("bad cv {cv}: write a positive coefficient of variation (1 = Poisson, above 1 = bursty), e.g. cv = 2.0"),
                ));
            }
            Arrival::Gamma { rate, cv }
        }
        _ => {
            let on = required_duration(a.on.as_ref(), &key("on"), "on = \"30s\"", loc)?;
            let off = required_duration(a.off.as_ref(), &key("off"), "off = \"10m\"", loc)?;
            if on.is_zero() {
                return Err(loc.error_at(
                    &key("on"),
                    "`on` must be longer than 0: write e.g. on = \"30s\"",
                ));
            }
            Arrival::OnOff { rate, on, off }
        }
    })
}

fn trace_arrival(i: usize, a: RawArrival, base: &Path, loc: &Locator<'_>) -> Result<Arrival> {
    let key = |k: &str| format!("stream[{i}].arrival.{k}");
    let Some(file) = a.file else {
        return Err(loc.error_at(
            &key("file"),
            "missing key `file`: write the CSV of send times, relative to this scenario, e.g. file = \"traces/azure-code-slice.csv\"",
        ));
    };
    let resolved: PathBuf = base.join(&file);
    let time_scale = a.time_scale.unwrap_or(1.0);
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(loc.error_at(
            &key("time_scale"),
            format!("bad time_scale {time_scale}: write a positive factor for the gaps (2.0 = twice as slow)"),
        ));
    }
    let skip = usize::try_from(a.skip.unwrap_or(0)).unwrap_or(usize::MAX);
    let first = match trace::read_times(&resolved, a.column.as_deref(), skip) {
        Ok(times) => times[0],
        Err(e @ trace::TraceError::Column { .. }) => {
            return Err(loc.error_at(&key("column"), e.to_string()));
        }
        Err(e) => return Err(loc.error_at(&key("file"), e.to_string())),
    };
    let epoch = match &a.epoch {
        None => None,
        Some(v) => {
            let written = v.text();
            let Some(epoch) = trace::parse_epoch(&written) else {
                return Err(loc.error_at(
                    &key("epoch"),
                    format!("bad epoch {written:?}: write the trace time that starts the replay, in the rows' form: seconds (epoch = 0) or a timestamp (epoch = \"2023-11-16 18:17:00\")"),
                ));
            };
            if first < epoch {
                return Err(loc.error_at(
                    &key("epoch"),
                    format!("epoch {written:?} is after the first send time of {} ({first} s in its time base): write an epoch at or before it, or skip the earlier rows", resolved.display()),
                ));
            }
            Some(epoch)
        }
    };
    Ok(Arrival::Trace {
        file: resolved,
        column: a.column,
        time_scale,
        skip,
        epoch,
    })
}

/// Gives every trace stream without an `epoch` the earliest kept row across them all,
/// so streams replaying two logs (or two clients of one) keep their interleaving.
fn shared_trace_epoch(streams: &mut [StreamSpec]) {
    let first = |a: &Arrival| match a {
        Arrival::Trace {
            file,
            column,
            skip,
            epoch: None,
            ..
        } => trace::read_times(file, column.as_deref(), *skip)
            .ok()
            .map(|t| t[0]),
        _ => None,
    };
    let Some(earliest) = streams
        .iter()
        .filter_map(|s| first(&s.arrival))
        .min_by(f64::total_cmp)
    else {
        return;
    };
    for s in streams {
        if let Arrival::Trace {
            epoch: e @ None, ..
        } = &mut s.arrival
        {
            *e = Some(earliest);
        }
    }
}
