//! The servers of a scenario: `[target] kind = "llama-server"` (one server kabench
//! starts per swept value) or several `[[server]]` tables swept on the same arrivals
//! (an Ollama and a llama-server side by side), with the `idle_unload` values each
//! sweeps; every value checked at its key. Knows nothing of HTTP or processes beyond
//! the command template's placeholders.

use std::path::Path;
use std::time::Duration;

use super::raw::{RawTarget, Scalar};
use super::sections::{self, keep_alive, url_problem};
use super::spans::Locator;
use super::{ScenarioError, ServerSpec, Sweep, TargetSpec};
use crate::llama::ServerKind;
use crate::units::KeepAlive;

type Result<T> = std::result::Result<T, ScenarioError>;

/// The placeholders a `llama-server` command may hold.
pub const PLACEHOLDERS: [&str; 3] = ["model_path", "sleep_idle_seconds", "port"];

/// The placeholders a `llama-router` command may hold (`{models_preset}`: the preset
/// INI kabench writes per cell in the run folder).
pub const ROUTER_PLACEHOLDERS: [&str; 3] = ["models_dir", "models_preset", "port"];

/// The placeholders a `llama-swap` command may hold (`{swap_config}`: the YAML kabench
/// writes per cell in the run folder).
pub const SWAP_PLACEHOLDERS: [&str; 2] = ["swap_config", "port"];

/// The placeholders a `llama-swap` `model_command` may hold (`{port}` and
/// `{model_id}` each a whole argument: llama-swap's `${PORT}` and `${MODEL_ID}`).
pub const MODEL_PLACEHOLDERS: [&str; 3] = ["model_path", "model_id", "port"];

/// The managed kinds by their scenario name.
fn managed_kind(kind: &str) -> Option<ServerKind> {
    [
        ServerKind::LlamaServer,
        ServerKind::LlamaRouter,
        ServerKind::LlamaSwap,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind)
}

/// The knob value an `idle_unload` value becomes on `kind`, or why it cannot.
pub(super) fn knob_value(kind: ServerKind, v: &KeepAlive) -> std::result::Result<i64, String> {
    match kind {
        ServerKind::LlamaServer | ServerKind::LlamaRouter => crate::llama::knob::router_sleep(v),
        ServerKind::LlamaSwap => crate::llama::knob::swap_ttl_of(v).map(|t| t as i64),
    }
}

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
        Some(t) if t.kind.as_deref().and_then(managed_kind).is_some() => {
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
                ("target.models_dir", t.models_dir.is_some()),
                ("target.model_command", t.model_command.is_some()),
            ] {
                if given {
                    return Err(loc.error_at(
                        key,
                        "this key applies only to kind = \"llama-server\", \"llama-router\" or \"llama-swap\" (or a [[server]] table); remove it",
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
    // Each llama.cpp knob takes whole seconds of at least 1 (or off): a value it
    // would refuse or round is an error at its key.
    let mut list = list;
    for (i, s) in list.iter_mut().enumerate() {
        let own = !s.idle_unload.is_empty();
        if !own {
            s.idle_unload = sweep.idle_unload.clone();
        }
        let TargetSpec::LlamaServer(m) = &s.spec else {
            continue;
        };
        for (j, v) in s.idle_unload.iter().enumerate() {
            if let Err(why) = knob_value(m.kind, v) {
                let key = match (own, from_target) {
                    (true, true) => format!("target.idle_unload[{j}]"),
                    (true, false) => format!("server[{i}].idle_unload[{j}]"),
                    (false, _) => format!("sweep.idle_unload[{j}]"),
                };
                return Err(loc.error_at(
                    &key,
                    format!(
                        "idle_unload {:?} for {} {:?}: {why}",
                        v.written(),
                        m.kind,
                        s.name
                    ),
                ));
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
                ("models_dir", raw.models_dir.is_some()),
                ("model_command", raw.model_command.is_some()),
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
        managed if managed_kind(managed).is_some() => {
            let kind = managed_kind(managed).unwrap_or(ServerKind::LlamaServer);
            super::managed::managed_spec(raw, kind, prefix, base, loc)?
        }
        other => {
            return Err(loc.error_at(
                &key("kind"),
                format!("unknown server kind {other:?}: write \"ollama\", \"llama-server\", \"llama-router\" or \"llama-swap\""),
            ));
        }
    };
    Ok(ServerSpec {
        name,
        spec,
        idle_unload: idle,
    })
}

/// Checks each stream against the servers that serve it: the llama.cpp kinds answer
/// `api = "chat"` (`/v1/chat/completions`) and `"generate"` (the native
/// `/completion`); an embedding stream has no counterpart kabench measures there.
pub(super) fn streams_fit_servers(
    servers: &[ServerSpec],
    streams: &[super::StreamSpec],
    loc: &Locator<'_>,
) -> Result<()> {
    let Some(llama) = servers
        .iter()
        .find(|s| matches!(s.spec, TargetSpec::LlamaServer(_)))
    else {
        return Ok(());
    };
    if let Some(i) = streams.iter().position(|s| s.api == super::Api::Embed) {
        return Err(loc.error_at(
            &format!("stream[{i}].api"),
            format!(
                "api = \"embed\" is not measured against the llama.cpp server {:?}: write api = \"chat\" (/v1/chat/completions) or \"generate\" (its native /completion), or move the embedding stream to a scenario of Ollama alone",
                llama.name
            ),
        ));
    }
    Ok(())
}
