//! One server table of a llama.cpp server kabench starts itself (`kind =
//! "llama-server"`, `"llama-router"` or `"llama-swap"`): its command template with the
//! placeholders its kind fills, the model file or folder, llama-swap's per-model
//! command, and the health timeout; every key checked where it is written.

use std::path::{Path, PathBuf};

use super::raw::RawTarget;
use super::sections::duration;
use super::servers::{
    DEFAULT_HEALTH_TIMEOUT, MODEL_PLACEHOLDERS, PLACEHOLDERS, ROUTER_PLACEHOLDERS,
    SWAP_PLACEHOLDERS,
};
use super::spans::Locator;
use super::{ManagedSpec, ScenarioError, TargetSpec};
use crate::llama::ServerKind;

type Result<T> = std::result::Result<T, ScenarioError>;

/// The placeholders `kind`'s command may hold.
fn placeholders(kind: ServerKind) -> &'static [&'static str] {
    match kind {
        ServerKind::LlamaServer => &PLACEHOLDERS,
        ServerKind::LlamaRouter => &ROUTER_PLACEHOLDERS,
        ServerKind::LlamaSwap => &SWAP_PLACEHOLDERS,
    }
}

/// An example command for `kind`, for the error that says one is missing.
fn example(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::LlamaServer => {
            "command = [\"llama-server\", \"-m\", \"{model_path}\", \"--sleep-idle-seconds\", \"{sleep_idle_seconds}\", \"--port\", \"{port}\"]"
        }
        ServerKind::LlamaRouter => {
            "command = [\"llama-server\", \"--models-dir\", \"{models_dir}\", \"--models-preset\", \"{models_preset}\", \"--models-max\", \"1\", \"--host\", \"127.0.0.1\", \"--port\", \"{port}\"]"
        }
        ServerKind::LlamaSwap => {
            "command = [\"llama-swap\", \"-config\", \"{swap_config}\", \"-listen\", \"127.0.0.1:{port}\"]"
        }
    }
}

/// A relative program path found from the scenario file (a bare name: from PATH).
fn resolve_program(mut command: Vec<String>, base: &Path) -> Vec<String> {
    if command[0].contains('/') && Path::new(&command[0]).is_relative() {
        command[0] = base.join(&command[0]).display().to_string();
    }
    command
}

/// A path key: non-empty, resolved relative to the scenario file.
fn path_key(
    v: Option<String>,
    key: &str,
    what: &str,
    loc: &Locator<'_>,
) -> Result<Option<PathBuf>> {
    match v {
        Some(p) if p.trim().is_empty() => Err(loc.error_at(
            key,
            format!("empty {key}: write {what}, relative to the scenario file"),
        )),
        Some(p) => Ok(Some(PathBuf::from(p))),
        None => Ok(None),
    }
}

/// Checks a command template: a program first, only `known` placeholders.
fn check_command(
    command: Option<Vec<String>>,
    key: &str,
    known: &[&str],
    missing: &str,
    loc: &Locator<'_>,
) -> Result<Vec<String>> {
    let Some(command) = command else {
        return Err(loc.error_at(key, missing.to_string()));
    };
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(loc.error_at(
            key,
            "empty command: the first item is the program, e.g. \"../shared/llama-cpp/bin/llama-server\"",
        ));
    }
    let dummy: Vec<(&str, String)> = known.iter().map(|p| (*p, String::new())).collect();
    if let Err(e) = crate::llama::server::fill(&command, &dummy) {
        return Err(loc.error_at(key, e.to_string()));
    }
    Ok(command)
}

/// The spec of a `kind` server table at `prefix`.
pub(super) fn managed_spec(
    raw: RawTarget,
    kind: ServerKind,
    prefix: &str,
    base: &Path,
    loc: &Locator<'_>,
) -> Result<TargetSpec> {
    let key = |k: &str| format!("{prefix}.{k}");
    let name = kind.as_str();
    let mut not_here: Vec<(&str, bool)> =
        vec![("url", raw.url.is_some()), ("urls", raw.urls.is_some())];
    match kind {
        ServerKind::LlamaServer => {
            not_here.push(("models_dir", raw.models_dir.is_some()));
            not_here.push(("model_command", raw.model_command.is_some()));
        }
        ServerKind::LlamaRouter => {
            not_here.push(("model_path", raw.model_path.is_some()));
            not_here.push(("model_command", raw.model_command.is_some()));
        }
        ServerKind::LlamaSwap => not_here.push(("model_path", raw.model_path.is_some())),
    }
    for (k, given) in not_here {
        if given {
            let why = match k {
                "url" | "urls" => {
                    "kabench starts it from `command` on a free port ({port})".to_string()
                }
                "model_path" => "name the folder of <model>.gguf files in `models_dir`".into(),
                "models_dir" => "name the one model file in `model_path`".into(),
                _ => "only llama-swap runs a command per model".into(),
            };
            return Err(loc.error_at(
                &key(k),
                format!("`{k}` does not apply to kind = \"{name}\": {why}"),
            ));
        }
    }
    let command = check_command(
        raw.command,
        &key("command"),
        placeholders(kind),
        &format!(
            "missing key `command`: write the server's command line, e.g. {}",
            example(kind)
        ),
        loc,
    )
    .map_err(|e| {
        if e.message.starts_with("missing key") {
            loc.error_at(&key("kind"), e.message)
        } else {
            e
        }
    })?;
    if !command.iter().any(|a| a.contains("{port}")) {
        return Err(loc.error_at(
            &key("command"),
            format!(
                "the command has no {{port}}: kabench must choose where the server listens, e.g. {}",
                example(kind)
            ),
        ));
    }
    let command = resolve_program(command, base);
    let model_path =
        path_key(raw.model_path, &key("model_path"), "the GGUF file", loc)?.map(|p| base.join(p));
    let models_dir = path_key(
        raw.models_dir,
        &key("models_dir"),
        "the folder of <model>.gguf files",
        loc,
    )?
    .map(|p| base.join(p));
    let holds = |p: &str| command.iter().any(|a| a.contains(&format!("{{{p}}}")));
    match kind {
        ServerKind::LlamaServer if model_path.is_none() && holds("model_path") => {
            return Err(loc.error_at(
                &key("command"),
                "the command holds {model_path} but the table has no `model_path`: add model_path = \"path/to/model.gguf\"",
            ));
        }
        ServerKind::LlamaRouter if !holds("models_preset") => {
            return Err(loc.error_at(
                &key("command"),
                "the command has no {models_preset}: add \"--models-preset\", \"{models_preset}\" (the preset kabench writes per cell carries each model's sleep-idle-seconds)",
            ));
        }
        ServerKind::LlamaRouter if models_dir.is_none() && holds("models_dir") => {
            return Err(loc.error_at(
                &key("command"),
                "the command holds {models_dir} but the table has no `models_dir`: add models_dir = \"path/to/gguf-folder\"",
            ));
        }
        ServerKind::LlamaSwap if !holds("swap_config") => {
            return Err(loc.error_at(
                &key("command"),
                "the command has no {swap_config}: add \"-config\", \"{swap_config}\" (the config kabench writes per cell carries each model's ttl)",
            ));
        }
        _ => {}
    }
    let model_command = if kind == ServerKind::LlamaSwap {
        let missing = "missing key `model_command`: write the command llama-swap runs per model, e.g. model_command = [\"llama-server\", \"-m\", \"{model_path}\", \"--port\", \"{port}\", \"--alias\", \"{model_id}\", \"-t\", \"1\"]";
        if raw.model_command.is_none() {
            return Err(loc.error_at(&key("kind"), missing));
        }
        let mc = check_command(
            raw.model_command,
            &key("model_command"),
            &MODEL_PLACEHOLDERS,
            missing,
            loc,
        )?;
        for (i, a) in mc.iter().enumerate() {
            if (a.contains("{port}") && a != "{port}")
                || (a.contains("{model_id}") && a != "{model_id}")
            {
                return Err(loc.error_at(
                    &key("model_command"),
                    format!(
                        "argument {i} {a:?}: {{port}} and {{model_id}} must each be a whole argument (write \"--port\", \"{{port}}\")"
                    ),
                ));
            }
        }
        if !mc.iter().any(|a| a == "{port}") {
            return Err(loc.error_at(
                &key("model_command"),
                "the model command has no {port}: add \"--port\", \"{port}\" (llama-swap chooses each model's port)",
            ));
        }
        if models_dir.is_none() && mc.iter().any(|a| a.contains("{model_path}")) {
            return Err(loc.error_at(
                &key("model_command"),
                "the model command holds {model_path} but the table has no `models_dir`: add models_dir = \"path/to/gguf-folder\" (each model is <models_dir>/<model>.gguf)",
            ));
        }
        resolve_program(mc, base)
    } else {
        Vec::new()
    };
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
    Ok(TargetSpec::LlamaServer(ManagedSpec {
        command,
        model_path,
        health_timeout,
        kind,
        models_dir,
        model_command,
    }))
}
