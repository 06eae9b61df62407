//! The servers of a scenario: `[target] kind = "llama-server"` (one server kabench
//! starts per swept value) or several `[[server]]` tables swept on the same arrivals
//! (an Ollama and a llama-server side by side), with the `idle_unload` values each
//! sweeps; every value checked at its key. Knows nothing of HTTP or processes beyond
//! the command template's placeholders.

use std::path::Path;
use std::time::Duration;

use super::raw::{RawTarget, Scalar};
use super::sections::{self, duration, keep_alive, url_problem};
use super::spans::Locator;
use super::{ManagedSpec, ScenarioError, ServerSpec, Sweep, TargetSpec};
use crate::units::KeepAlive;

type Result<T> = std::result::Result<T, ScenarioError>;

/// The placeholders a server command may hold.
pub const PLACEHOLDERS: [&str; 3] = ["model_path", "sleep_idle_seconds", "port"];

/// How long kabench waits for a started server's `GET /health` unless told.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// One `idle_unload` value: a keep_alive form (`"5s"`, `0`, `"-1"`) or `"off"` (never).
pub(super) fn idle_unload(v: &Scalar, key: &str, loc: &Locator<'_>) -> Result<KeepAlive> {
    if v.text().trim().eq_ignore_ascii_case("off") {
        return Ok(KeepAlive::forever());
    }
    keep_alive(v, key, loc)
}

fn idle_unload_list(raw: &[Scalar], prefix: &str, loc: &Locator<'_>) -> Result<Vec<KeepAlive>> {
    let mut out: Vec<KeepAlive> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let key = format!("{prefix}[{i}]");
        let ka = idle_unload(v, &key, loc)?;
        if let Some(o) = out.iter().find(|o| o.duration() == ka.duration()) {
            return Err(loc.error_at(
                &key,
                format!(
                    "duplicate idle_unload value {:?}: it means the same as {:?}; list each value once",
                    v.text(),
                    o.written()
                ),
            ));
        }
        out.push(ka);
    }
    Ok(out)
}

/// `[sweep] idle_unload`.
pub(super) fn sweep_idle_unload(raw: &[Scalar], loc: &Locator<'_>) -> Result<Vec<KeepAlive>> {
    idle_unload_list(raw, "sweep.idle_unload", loc)
}

/// `[target]` and `[[server]]`: the run's target (the Ollama server when there is one)
/// and the servers swept.
pub(super) fn targets(
    target: Option<RawTarget>,
    servers: Vec<RawTarget>,
    sweep: &mut Sweep,
    base: &Path,
    loc: &Locator<'_>,
) -> Result<(Option<TargetSpec>, Vec<ServerSpec>)> {
    if target.is_some() && !servers.is_empty() {
        return Err(loc.error_at(
            "server",
            "both [target] and [[server]]: list every server as a [[server]] table (one of them may be kind = \"ollama\") and remove [target]",
        ));
    }
    let from_target = target.is_some();
    let (spec, list) = match target {
        Some(t) if t.kind.as_deref() == Some("llama-server") => {
            let s = server(t, "target", base, loc)?;
            (Some(s.spec.clone()), vec![s])
        }
        Some(t) => {
            for (key, given) in [
                ("target.command", t.command.is_some()),
                ("target.model_path", t.model_path.is_some()),
                ("target.health_timeout", t.health_timeout.is_some()),
                ("target.name", t.name.is_some()),
                ("target.idle_unload", t.idle_unload.is_some()),
            ] {
                if given {
                    return Err(loc.error_at(
                        key,
                        "this key applies only to kind = \"llama-server\" (or a [[server]] table); remove it",
                    ));
                }
            }
            (
                Some(sections::target(t.kind, t.url, t.urls, loc)?),
                Vec::new(),
            )
        }
        None if servers.is_empty() => (None, Vec::new()),
        None => {
            let mut list: Vec<ServerSpec> = Vec::new();
            for (i, raw) in servers.into_iter().enumerate() {
                let prefix = format!("server[{i}]");
                let s = server(raw, &prefix, base, loc)?;
                if list.iter().any(|o| o.name == s.name) {
                    return Err(loc.error_at(
                        &format!("{prefix}.name"),
                        format!(
                            "duplicate server name {:?}: give each [[server]] its own `name`",
                            s.name
                        ),
                    ));
                }
                if matches!(s.spec, TargetSpec::Ollama { .. })
                    && list
                        .iter()
                        .any(|o| matches!(o.spec, TargetSpec::Ollama { .. }))
                {
                    return Err(loc.error_at(
                        &format!("{prefix}.kind"),
                        "a second kind = \"ollama\" server: a scenario sweeps one Ollama (list the hosts of a fleet in [target] urls instead)",
                    ));
                }
                list.push(s);
            }
            let spec = list
                .iter()
                .find(|s| matches!(s.spec, TargetSpec::Ollama { .. }))
                .unwrap_or(&list[0])
                .spec
                .clone();
            (Some(spec), list)
        }
    };
    if list.is_empty() {
        // An Ollama (or the simulator) alone: idle_unload is its keep_alive.
        if !sweep.idle_unload.is_empty() {
            if !sweep.keep_alive.is_empty() {
                return Err(loc.error_at(
                    "sweep.idle_unload",
                    "both keep_alive and idle_unload swept: for Ollama alone they are the same knob; keep one",
                ));
            }
            sweep.keep_alive = sweep.idle_unload.clone();
        }
        return Ok((spec, list));
    }
    if !sweep.keep_alive.is_empty() {
        return Err(loc.error_at(
            "sweep.keep_alive",
            "with servers, sweep `idle_unload` instead of keep_alive: it maps to each server's knob (Ollama's keep_alive, llama-server's --sleep-idle-seconds)",
        ));
    }
    // Each llama-server takes whole seconds.
    let mut list = list;
    for (i, s) in list.iter_mut().enumerate() {
        let own = !s.idle_unload.is_empty();
        if !own {
            s.idle_unload = sweep.idle_unload.clone();
        }
        if matches!(s.spec, TargetSpec::LlamaServer(_)) {
            for (j, v) in s.idle_unload.iter().enumerate() {
                if let Some(d) = v.duration()
                    && d.subsec_nanos() != 0
                {
                    let key = match (own, from_target) {
                        (true, true) => format!("target.idle_unload[{j}]"),
                        (true, false) => format!("server[{i}].idle_unload[{j}]"),
                        (false, _) => format!("sweep.idle_unload[{j}]"),
                    };
                    return Err(loc.error_at(
                        &key,
                        format!(
                            "idle_unload {:?} for llama-server {:?}: --sleep-idle-seconds takes whole seconds; write e.g. \"1s\" or \"5s\"",
                            v.written(),
                            s.name
                        ),
                    ));
                }
            }
        }
    }
    Ok((spec, list))
}

/// One server table (`[target]` or `[[server]]` at `prefix`).
fn server(raw: RawTarget, prefix: &str, base: &Path, loc: &Locator<'_>) -> Result<ServerSpec> {
    let key = |k: &str| format!("{prefix}.{k}");
    let kind = match raw.kind.as_deref() {
        Some(k) => k.to_string(),
        None => {
            return Err(loc.error_at(
                &key("kind"),
                "missing key `kind`: write kind = \"ollama\" or kind = \"llama-server\"",
            ));
        }
    };
    let name = match &raw.name {
        Some(n) if n.trim().is_empty() || n.chars().any(|c| c.is_control()) => {
            return Err(loc.error_at(&key("name"), "empty name: write e.g. name = \"llama\""));
        }
        Some(n) => n.clone(),
        None => kind.clone(),
    };
    let idle = match &raw.idle_unload {
        Some(v) => idle_unload_list(v, &key("idle_unload"), loc)?,
        None => Vec::new(),
    };
    let spec = match kind.as_str() {
        "ollama" => {
            for (k, given) in [
                ("command", raw.command.is_some()),
                ("model_path", raw.model_path.is_some()),
                ("health_timeout", raw.health_timeout.is_some()),
                ("urls", raw.urls.is_some()),
            ] {
                if given {
                    return Err(loc.error_at(
                        &key(k),
                        format!("`{k}` does not apply to kind = \"ollama\" in a [[server]] table: kabench does not start Ollama; give its `url` (or --target)"),
                    ));
                }
            }
            if let Some(u) = &raw.url
                && let Some(why) = url_problem(u)
            {
                return Err(loc.error_at(
                    &key("url"),
                    format!("bad url {u:?}: {why}; write an Ollama address such as \"http://127.0.0.1:11434\""),
                ));
            }
            TargetSpec::Ollama { url: raw.url }
        }
        "llama-server" => {
            for (k, given) in [("url", raw.url.is_some()), ("urls", raw.urls.is_some())] {
                if given {
                    return Err(loc.error_at(
                        &key(k),
                        format!("`{k}` does not apply to kind = \"llama-server\": kabench starts it from `command` on a free port ({{port}})"),
                    ));
                }
            }
            let Some(command) = raw.command else {
                return Err(loc.error_at(
                    &key("kind"),
                    "missing key `command`: write the server's command line, e.g. command = [\"llama-server\", \"-m\", \"{model_path}\", \"--sleep-idle-seconds\", \"{sleep_idle_seconds}\", \"--port\", \"{port}\"]",
                ));
            };
            if command.is_empty() || command[0].trim().is_empty() {
                return Err(loc.error_at(
                    &key("command"),
                    "empty command: the first item is the program, e.g. \"../shared/ollama/lib/ollama/llama-server\"",
                ));
            }
            let dummy: Vec<(&str, String)> =
                PLACEHOLDERS.iter().map(|p| (*p, String::new())).collect();
            if let Err(e) = crate::llama::server::fill(&command, &dummy) {
                return Err(loc.error_at(&key("command"), e.to_string()));
            }
            if !command.iter().any(|a| a.contains("{port}")) {
                return Err(loc.error_at(
                    &key("command"),
                    "the command has no {port}: add \"--port\", \"{port}\" so kabench knows where the server listens",
                ));
            }
            // A program named by a relative path is found from the scenario file,
            // as model_path is; a bare name is looked up in PATH.
            let mut command = command;
            if command[0].contains('/') && Path::new(&command[0]).is_relative() {
                command[0] = base.join(&command[0]).display().to_string();
            }
            let model_path = match raw.model_path {
                Some(p) if p.trim().is_empty() => {
                    return Err(loc.error_at(
                        &key("model_path"),
                        "empty model_path: write the GGUF file, relative to the scenario file",
                    ));
                }
                Some(p) => Some(base.join(p)),
                None => None,
            };
            if model_path.is_none() && command.iter().any(|a| a.contains("{model_path}")) {
                return Err(loc.error_at(
                    &key("command"),
                    "the command holds {model_path} but the table has no `model_path`: add model_path = \"path/to/model.gguf\"",
                ));
            }
            let health_timeout = match &raw.health_timeout {
                Some(v) => {
                    let d = duration(v, &key("health_timeout"), loc)?;
                    if d.is_zero() {
                        return Err(loc.error_at(
                            &key("health_timeout"),
                            "health_timeout must be more than 0, e.g. \"60s\"",
                        ));
                    }
                    d
                }
                None => DEFAULT_HEALTH_TIMEOUT,
            };
            TargetSpec::LlamaServer(ManagedSpec {
                command,
                model_path,
                health_timeout,
            })
        }
        other => {
            return Err(loc.error_at(
                &key("kind"),
                format!("unknown server kind {other:?}: write \"ollama\" or \"llama-server\""),
            ));
        }
    };
    Ok(ServerSpec {
        name,
        spec,
        idle_unload: idle,
    })
}
