//! The settings sections of a scenario (`[target]`, `[sim]`, `[run]`, `[telemetry]`,
//! `[cost]`, `[slo]`, `[swarm]`) and the value forms they share (durations, rates,
//! keep_alive): defaults applied, each value checked at its key. Knows nothing of
//! streams or the sweep.

use std::time::Duration;

use super::raw::{RawCost, RawRun, RawSlo, RawSwarm, RawTelemetry, Scalar};
use super::spans::Locator;
use super::{
    CostSettings, DEFAULT_RAM_GB_HOUR, DEFAULT_VRAM_GB_HOUR, RunSettings, ScenarioError, ShardBy,
    SloSettings, SwarmSettings, TELEMETRY_SOURCES, TargetSpec, TelemetrySettings, ThinkTime,
};
use crate::folder::DEFAULT_TELEMETRY_SOURCES;
use crate::scenario::engine_settings::SimSettings;
use crate::units::{self, KeepAlive, Rate};

type Result<T> = std::result::Result<T, ScenarioError>;

pub(super) fn target(
    kind: Option<String>,
    url: Option<String>,
    urls: Option<Vec<String>>,
    loc: &Locator<'_>,
) -> Result<TargetSpec> {
    if let Some(urls) = urls {
        if kind.as_deref() != Some("ollama") {
            return Err(loc.error_at(
                "target.urls",
                "`urls` applies only to kind = \"ollama\": write kind = \"ollama\" beside it",
            ));
        }
        if url.is_some() {
            return Err(loc.error_at(
                "target.urls",
                "both `url` and `urls`: keep one (`urls` lists every host of the fleet)",
            ));
        }
        if urls.is_empty() {
            return Err(loc.error_at(
                "target.urls",
                "empty `urls`: list at least one Ollama address, e.g. [\"http://10.0.0.1:11434\", \"http://10.0.0.2:11434\"]",
            ));
        }
        for (i, u) in urls.iter().enumerate() {
            if let Some(why) = url_problem(u) {
                return Err(loc.error_at(
                    &format!("target.urls[{i}]"),
                    format!("bad url {u:?}: {why}; write an Ollama address such as \"http://127.0.0.1:11434\" or \"host:11434\""),
                ));
            }
        }
        return Ok(TargetSpec::Fleet { urls });
    }
    match kind.as_deref() {
        Some("sim") => {
            if url.is_some() {
                return Err(loc.error_at(
                    "target.url",
                    "`url` applies only to kind = \"ollama\"; remove it for the simulator",
                ));
            }
            Ok(TargetSpec::Sim)
        }
        Some("ollama") => {
            // Checked as the client reads OLLAMA_HOST forms (H7), so a scenario that
            // validates also connects to the address it names.
            if let Some(u) = &url
                && let Some(why) = url_problem(u)
            {
                return Err(loc.error_at(
                    "target.url",
                    format!("bad url {u:?}: {why}; write an Ollama address such as \"http://127.0.0.1:11434\" or \"host:11434\""),
                ));
            }
            Ok(TargetSpec::Ollama { url })
        }
        Some(other) => Err(loc.error_at(
            "target.kind",
            format!("unknown target kind {other:?}: write \"sim\", \"ollama\" or \"llama-server\""),
        )),
        None => Err(loc.error_at(
            "target.kind",
            "missing key `kind`: write kind = \"sim\" or kind = \"ollama\"",
        )),
    }
}

/// What is wrong with an Ollama address in `OLLAMA_HOST` form (H7: optional
/// `http`/`https` scheme, host, optional port, optional path), `None` when usable.
pub(super) fn url_problem(raw: &str) -> Option<String> {
    let s = raw.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let rest = match s.split_once("://") {
        None => s,
        Some(("http" | "https", rest)) => rest,
        Some((other, _)) => return Some(format!("scheme {other:?} is not http or https")),
    };
    let hostport = rest.split('/').next().unwrap_or("");
    let host = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((h, _)) = inner.split_once(']') else {
            return Some("an IPv6 address opened with '[' is not closed with ']'".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("{h:?} is not an IPv6 address"));
        }
        return None;
    } else if hostport.matches(':').count() > 1 {
        if hostport.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("{hostport:?} is not an IPv6 address"));
        }
        return None;
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return None; // ":11434": the local host, as Ollama's clients read it
    }
    match reqwest::Url::parse(&format!("http://{host}/")) {
        Ok(u) if u.host_str().is_some() => None,
        Ok(_) => Some(format!("{host:?} is not a host name")),
        Err(e) => Some(format!("{host:?} is not a host name ({e})")),
    }
}

/// Checks `[sim]` with the simulator's own conversion, so a scenario that validates
/// also starts; its errors read `sim.<key>: <message>`, which we place at that key.
pub(super) fn sim_values(sim: &SimSettings, seed: u64, loc: &Locator<'_>) -> Result<()> {
    let place = |e: units::ParseError| {
        let (key, message) = match e.message.split_once(": ") {
            Some((key, rest)) if key.starts_with("sim") && !key.contains(' ') => {
                (key.to_string(), rest.to_string())
            }
            _ => ("sim".to_string(), e.message.clone()),
        };
        loc.error_at(&key, message)
    };
    sim.sched_config(seed).map_err(place)?;
    sim.faults().map_err(place)?;
    Ok(())
}

pub(super) fn keep_alive(v: &Scalar, key: &str, loc: &Locator<'_>) -> Result<KeepAlive> {
    KeepAlive::parse(&v.text()).map_err(|e| loc.error_at(key, e.message))
}

pub(super) fn rate(v: &Scalar, key: &str, loc: &Locator<'_>) -> Result<Rate> {
    Rate::parse(&v.text()).map_err(|e| loc.error_at(key, e.message))
}

/// One of our own durations: a string with units (`"100ms"`, `"30s"`, `"5m"`) or a
/// number of seconds.
pub(super) fn duration(v: &Scalar, key: &str, loc: &Locator<'_>) -> Result<Duration> {
    let bad = |why: String| {
        loc.error_at(
            key,
            format!("bad duration {:?}: {why}; write e.g. \"100ms\", \"30s\", \"5m\" or a number of seconds", v.text()),
        )
    };
    match v {
        Scalar::Str(s) => humantime::parse_duration(s.trim()).map_err(|e| bad(e.to_string())),
        _ => match v.as_number() {
            Some(n) if n.is_finite() && n >= 0.0 => {
                Duration::try_from_secs_f64(n).map_err(|_| bad("too long".into()))
            }
            _ => Err(bad("must be zero or more".into())),
        },
    }
}

pub(super) fn required_duration(
    v: Option<&Scalar>,
    key: &str,
    example: &str,
    loc: &Locator<'_>,
) -> Result<Duration> {
    match v {
        Some(v) => duration(v, key, loc),
        None => Err(loc.error_at(key, format!("missing key: write e.g. {example}"))),
    }
}

pub(super) fn opt_duration(
    v: &Option<Scalar>,
    key: &str,
    default: Duration,
    loc: &Locator<'_>,
) -> Result<Duration> {
    match v {
        Some(v) => duration(v, key, loc),
        None => Ok(default),
    }
}

pub(super) fn positive(d: Duration, key: &str, loc: &Locator<'_>) -> Result<Duration> {
    if d.is_zero() {
        Err(loc.error_at(key, "must be longer than 0: write e.g. \"30s\""))
    } else {
        Ok(d)
    }
}

pub(super) fn run(r: &RawRun, loc: &Locator<'_>) -> Result<RunSettings> {
    let requests = match r.requests {
        None => None,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Some(n as u32),
        Some(n) => {
            return Err(loc.error_at(
                "run.requests",
                format!("bad requests {n}: write how many requests each stream sends per cell, at least 1"),
            ));
        }
    };
    let duration = match &r.duration {
        None => None,
        Some(v) => Some(positive(
            duration(v, "run.duration", loc)?,
            "run.duration",
            loc,
        )?),
    };
    match (requests, duration) {
        (Some(_), Some(_)) => {
            return Err(loc.error_at(
                "run.duration",
                "both `requests` and `duration`: keep one (requests per stream and cell, or how long each cell sends)",
            ));
        }
        (None, None) => {
            return Err(loc.error_at(
                "run.requests",
                "missing key: write [run] requests = N (per stream and cell) or duration = \"5m\"",
            ));
        }
        _ => {}
    }
    let concurrency = match r.concurrency {
        None => 64,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            return Err(loc.error_at(
                "run.concurrency",
                format!(
                    "bad concurrency {n}: write the most requests in flight at once, at least 1"
                ),
            ));
        }
    };
    let timeout = positive(
        opt_duration(&r.timeout, "run.timeout", Duration::from_secs(120), loc)?,
        "run.timeout",
        loc,
    )?;
    let repeat = match r.repeat {
        None => 1,
        Some(n) if n >= 1 && n <= i64::from(super::MAX_REPEAT) => n as u32,
        Some(n) => {
            return Err(loc.error_at(
                "run.repeat",
                format!(
                    "bad repeat {n}: write how many times each cell runs, 1 to {}",
                    super::MAX_REPEAT
                ),
            ));
        }
    };
    Ok(RunSettings {
        repeat,
        requests,
        duration,
        concurrency,
        timeout,
        warmup: r.warmup.unwrap_or(0),
        cold_threshold: opt_duration(
            &r.cold_threshold,
            "run.cold_threshold",
            crate::folder::DEFAULT_COLD_THRESHOLD,
            loc,
        )?,
        unload_timeout: opt_duration(
            &r.unload_timeout,
            "run.unload_timeout",
            Duration::from_secs(30),
            loc,
        )?,
        grace: opt_duration(&r.grace, "run.grace", Duration::from_secs(5), loc)?,
        pause: opt_duration(&r.pause, "run.pause", Duration::ZERO, loc)?,
        shard_by: match r.shard_by.as_deref() {
            None | Some("request") => ShardBy::Request,
            Some("stream") => ShardBy::Stream,
            Some("target") => ShardBy::Target,
            Some(other) => {
                return Err(loc.error_at(
                    "run.shard_by",
                    format!(
                        "unknown shard_by {other:?}: write \"request\", \"stream\" or \"target\""
                    ),
                ));
            }
        },
    })
}

pub(super) fn telemetry(t: &RawTelemetry, loc: &Locator<'_>) -> Result<TelemetrySettings> {
    let sources = match &t.sources {
        None => DEFAULT_TELEMETRY_SOURCES.map(String::from).to_vec(),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                if !TELEMETRY_SOURCES.contains(&s.as_str()) {
                    return Err(loc.error_at(
                        &format!("telemetry.sources[{i}]"),
                        format!(
                            "unknown source {s:?}: write any of {}",
                            TELEMETRY_SOURCES.map(|s| format!("\"{s}\"")).join(", ")
                        ),
                    ));
                }
            }
            list.clone()
        }
    };
    let interval = positive(
        opt_duration(
            &t.interval,
            "telemetry.interval",
            Duration::from_millis(100),
            loc,
        )?,
        "telemetry.interval",
        loc,
    )?;
    let ps_interval = match &t.ps_interval {
        None => None,
        Some(_) => Some(positive(
            opt_duration(
                &t.ps_interval,
                "telemetry.ps_interval",
                Duration::from_millis(100),
                loc,
            )?,
            "telemetry.ps_interval",
            loc,
        )?),
    };
    if sources.iter().any(|s| s == "prometheus") && t.prometheus_url.is_none() {
        return Err(loc.error_at(
            "telemetry.prometheus_url",
            "source \"prometheus\" needs prometheus_url: a Prometheus server (e.g. \"http://prom:9090\") or a DCGM exporter (\"http://gpu-host:9400/metrics\")",
        ));
    }
    let release_tolerance = opt_duration(
        &t.release_tolerance,
        "telemetry.release_tolerance",
        interval + Duration::from_millis(250),
        loc,
    )?;
    Ok(TelemetrySettings {
        sources,
        interval,
        ps_interval,
        ps_adaptive: t.ps_adaptive.unwrap_or(true),
        process_names: t.process_names.clone().unwrap_or_else(|| {
            vec![
                "ollama".into(),
                "ollama_llama_server".into(),
                "llama-server".into(),
            ]
        }),
        prometheus_url: t.prometheus_url.clone(),
        prometheus_query: t.prometheus_query.clone().or_else(|| {
            t.prometheus_url
                .as_ref()
                .map(|_| "DCGM_FI_DEV_FB_USED".to_string())
        }),
        release_tolerance,
    })
}

pub(super) fn cost(c: &RawCost, loc: &Locator<'_>) -> Result<CostSettings> {
    let vram_gb_hour = c.vram_gb_hour.unwrap_or(DEFAULT_VRAM_GB_HOUR);
    if !(vram_gb_hour.is_finite() && vram_gb_hour >= 0.0) {
        return Err(loc.error_at(
            "cost.vram_gb_hour",
            format!("bad vram_gb_hour {vram_gb_hour}: write what holding 1 GB of VRAM for an hour costs, in wait-seconds (zero or more, default {DEFAULT_VRAM_GB_HOUR})"),
        ));
    }
    let ram_gb_hour = c.ram_gb_hour.unwrap_or(DEFAULT_RAM_GB_HOUR);
    if !(ram_gb_hour.is_finite() && ram_gb_hour >= 0.0) {
        return Err(loc.error_at(
            "cost.ram_gb_hour",
            format!("bad ram_gb_hour {ram_gb_hour}: write what holding 1 GB of system memory for an hour costs, in wait-seconds (zero or more, default {DEFAULT_RAM_GB_HOUR})"),
        ));
    }
    let wait_second = c.wait_second.unwrap_or(1.0);
    if !(wait_second.is_finite() && wait_second > 0.0) {
        return Err(loc.error_at(
            "cost.wait_second",
            format!("bad wait_second {wait_second}: write what one second of waiting costs, above 0 (default 1.0)"),
        ));
    }
    let cold_penalty = match &c.cold_penalty {
        Some(v) => Some(duration(v, "cost.cold_penalty", loc)?),
        None => None,
    };
    Ok(CostSettings {
        vram_gb_hour,
        ram_gb_hour,
        wait_second,
        cold_penalty,
    })
}

pub(super) fn slo(s: &RawSlo, loc: &Locator<'_>) -> Result<SloSettings> {
    let ttft_p99 = match &s.ttft_p99 {
        Some(v) => Some(positive(
            duration(v, "slo.ttft_p99", loc)?,
            "slo.ttft_p99",
            loc,
        )?),
        None => None,
    };
    Ok(SloSettings { ttft_p99 })
}

pub(super) fn swarm(s: &RawSwarm, loc: &Locator<'_>) -> Result<SwarmSettings> {
    let users = s.users.unwrap_or(10);
    if users == 0 {
        return Err(loc.error_at("swarm.users", "users must be at least 1"));
    }
    let hatch_rate = s.hatch_rate.unwrap_or(f64::from(users));
    if !(hatch_rate.is_finite() && hatch_rate > 0.0) {
        return Err(loc.error_at(
            "swarm.hatch_rate",
            format!("bad hatch_rate {hatch_rate}: write users started per second, above 0"),
        ));
    }
    let think_time = match &s.think_time {
        None => ThinkTime {
            min: Duration::from_secs(1),
            max: Duration::from_secs(5),
        },
        Some(t) => {
            let min = opt_duration(&t.min, "swarm.think_time.min", Duration::ZERO, loc)?;
            let max = opt_duration(&t.max, "swarm.think_time.max", min, loc)?;
            if max < min {
                return Err(loc.error_at(
                    "swarm.think_time.max",
                    "max is shorter than min: write think_time = { min = \"1s\", max = \"5s\" }",
                ));
            }
            ThinkTime { min, max }
        }
    };
    let run_time = positive(
        opt_duration(&s.run_time, "swarm.run_time", Duration::from_secs(30), loc)?,
        "swarm.run_time",
        loc,
    )?;
    Ok(SwarmSettings {
        users,
        hatch_rate,
        think_time,
        run_time,
    })
}
