//! The target of a run: the embedded simulator (started on a free loopback port and
//! stopped after) or a live Ollama, reached and checked (`/api/version`, every model of
//! the plan installed, or pulled with `--pull`) before the run folder is created.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::sim::{self, SimHandle};
use crate::folder::TargetKind;
use crate::ollama::{ClientError, OllamaClient};
use crate::run::ProgressEvent;
use crate::scenario::{Plan, Scenario, TargetSpec};

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded simulator, in-process on a free loopback port.
    Sim,
    /// A live Ollama (`OLLAMA_HOST` forms).
    Ollama(String),
    /// A fleet of live Ollama hosts: each cell's requests go round-robin over them.
    Fleet(Vec<String>),
    /// Only servers kabench starts per cell (`[target] kind = "llama-server"`): no
    /// Ollama is reached.
    Managed,
}

impl Target {
    /// `sim`, or an `OLLAMA_HOST`-style address.
    pub fn parse(text: &str) -> Target {
        if text.trim().eq_ignore_ascii_case("sim") {
            Target::Sim
        } else {
            Target::Ollama(text.trim().to_string())
        }
    }

    /// One target from every `--target` given: none, one, or a fleet of Ollama hosts.
    pub fn from_args(args: &[String]) -> Result<Option<Target>, String> {
        match args {
            [] => Ok(None),
            [one] => Ok(Some(Target::parse(one))),
            many => {
                if many.iter().any(|t| Target::parse(t) == Target::Sim) {
                    return Err(
                        "--target sim cannot be one host of a fleet: give only Ollama addresses when repeating --target".into(),
                    );
                }
                Ok(Some(Target::Fleet(
                    many.iter().map(|t| t.trim().to_string()).collect(),
                )))
            }
        }
    }

    /// The addresses of a live target (one, or every host of a fleet); empty for `sim`.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Target::Sim | Target::Managed => Vec::new(),
            Target::Ollama(u) => vec![u.clone()],
            Target::Fleet(us) => us.clone(),
        }
    }

    /// The CLI choice, else the scenario's `[target]`, else the simulator.
    pub fn resolve(cli: Option<&Target>, scenario: &Scenario) -> Target {
        if let Some(t) = cli {
            return t.clone();
        }
        match &scenario.target {
            Some(TargetSpec::Ollama { url }) => Target::Ollama(
                url.clone()
                    .or_else(|| std::env::var("OLLAMA_HOST").ok())
                    .unwrap_or_else(|| "127.0.0.1:11434".into()),
            ),
            Some(TargetSpec::Fleet { urls }) if urls.len() == 1 => Target::Ollama(urls[0].clone()),
            Some(TargetSpec::Fleet { urls }) => Target::Fleet(urls.clone()),
            Some(TargetSpec::LlamaServer(_)) => Target::Managed,
            _ => Target::Sim,
        }
    }
}

/// A model of the plan that the target does not have.
#[derive(Debug, thiserror::Error)]
#[error(
    "model{} not installed on {target}: {}; run {} first, or pass --pull",
    if models.len() > 1 { "s" } else { "" },
    models.join(", "),
    models.iter().map(|m| format!("`ollama pull {m}`")).collect::<Vec<_>>().join(" and ")
)]
pub struct MissingModels {
    /// The target's URL.
    pub target: String,
    /// Missing model tags.
    pub models: Vec<String>,
}

/// Starts the embedded simulator (on a free loopback port) when the target is `sim`.
pub async fn start_target(scenario: &Scenario, target: &Target) -> Result<Option<SimHandle>> {
    match target {
        Target::Sim => Ok(Some(
            sim::spawn(&scenario.sim, scenario.seed, "127.0.0.1:0".parse()?)
                .await
                .context("starting the embedded simulator")?,
        )),
        Target::Ollama(_) | Target::Fleet(_) | Target::Managed => Ok(None),
    }
}

/// Ctrl-C came before the first request (while reaching the target, checking or
/// pulling its models): nothing was recorded.
#[derive(Debug, thiserror::Error)]
#[error("interrupted while {0}; nothing was recorded")]
pub struct StoppedBeforeStart(pub String);

/// Connects to the target and records its `/api/version`: (kind, client, version).
/// The call is bounded by `timeout` (the run's request timeout) and ended by `cancel`.
pub async fn connect(
    target: &Target,
    sim_handle: Option<&SimHandle>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(TargetKind, OllamaClient, String)> {
    let (kind, url) = match (target, sim_handle) {
        (Target::Sim, Some(h)) => (TargetKind::Sim, h.base_url()),
        (Target::Ollama(u), _) => (TargetKind::Ollama, u.clone()),
        (Target::Fleet(_), _) => anyhow::bail!(
            "this command takes one target; give --target once (a fleet of hosts is for `kabench run`)"
        ),
        (Target::Sim, None) => anyhow::bail!("the simulator did not start"),
        (Target::Managed, _) => anyhow::bail!(
            "this command needs an Ollama (or the simulator): a scenario of servers kabench starts itself runs with `kabench run`"
        ),
    };
    connect_url(kind, &url, timeout, cancel).await
}

/// Connects to every host of the target (one, or each of a fleet) and records their
/// `/api/version`: (kind, clients in the order given, version; the distinct versions
/// joined when the hosts differ).
pub async fn connect_all(
    target: &Target,
    sim_handle: Option<&SimHandle>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(TargetKind, Vec<OllamaClient>, String)> {
    let Target::Fleet(urls) = target else {
        let (kind, client, version) = connect(target, sim_handle, timeout, cancel).await?;
        return Ok((kind, vec![client], version));
    };
    let mut clients = Vec::new();
    let mut versions: Vec<String> = Vec::new();
    for url in urls {
        let (_, client, version) = connect_url(TargetKind::Ollama, url, timeout, cancel).await?;
        clients.push(client);
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    Ok((TargetKind::Ollama, clients, versions.join(", ")))
}

async fn connect_url(
    kind: TargetKind,
    url: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(TargetKind, OllamaClient, String)> {
    let url = url.to_string();
    let client = OllamaClient::new(&url).with_context(|| format!("bad target address {url:?}"))?;
    let version = client.version_until(timeout, cancel).await.map_err(|e| match e {
        ClientError::Cancelled(_) => {
            StoppedBeforeStart(format!("asking {} for /api/version", client.base_url())).into()
        }
        ClientError::Http { status, .. } if (300..400).contains(&status) => {
            anyhow::anyhow!("{} answered GET /api/version with {e}", client.base_url())
        }
        // It answered, but not as Ollama does: a different server on that address.
        ClientError::BadJson(_) | ClientError::Http { .. } => anyhow::anyhow!(
            "{} answered GET /api/version but is not Ollama ({e}); check the address (--target or OLLAMA_HOST: Ollama listens on port 11434 by default), or use --target sim",
            client.base_url()
        ),
        _ => anyhow::anyhow!(
            "cannot reach Ollama at {}: {e}; start it (`ollama serve`), set OLLAMA_HOST or --target, or use --target sim",
            client.base_url()
        ),
    })?;
    Ok((kind, client, version))
}

/// Runs `body` against the target, with the embedded simulator started before and
/// stopped after when the target is `sim`.
pub async fn with_target<T>(
    scenario: &Scenario,
    target: &Target,
    body: impl AsyncFnOnce(Option<&SimHandle>) -> Result<T>,
) -> Result<T> {
    let sim_handle = start_target(scenario, target).await?;
    let result = body(sim_handle.as_ref()).await;
    if let Some(h) = sim_handle {
        h.shutdown().await;
    }
    result
}

/// Every distinct model of the plan must be installed (`/api/show`), or pulled with
/// `--pull`. Each `/api/show` is bounded by `timeout` (the run's request timeout), a
/// pull fails when the server reports no progress for that long, and `cancel` ends
/// either at once.
pub async fn check_models(
    client: &OllamaClient,
    plan: &Plan,
    pull: bool,
    timeout: Duration,
    progress: &mpsc::UnboundedSender<ProgressEvent>,
    cancel: &CancellationToken,
) -> Result<()> {
    // The cells of a server kabench starts name its model by file, not by tag.
    let models: BTreeSet<&str> = plan
        .cells
        .iter()
        .filter(|c| c.server.as_ref().is_none_or(|s| s.managed.is_none()))
        .flat_map(|c| c.streams.iter().map(|s| s.model.as_str()))
        .collect();
    let mut missing = Vec::new();
    for m in models {
        match client.show_until(m, timeout, cancel).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => missing.push(m.to_string()),
            Err(ClientError::Cancelled(_)) => {
                return Err(StoppedBeforeStart(format!("asking about model {m}")).into());
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "asking {} about model {m}: {e}",
                    client.base_url()
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !pull {
        return Err(MissingModels {
            target: client.base_url().to_string(),
            models: missing,
        }
        .into());
    }
    for m in &missing {
        let _ = progress.send(ProgressEvent::Note(format!("pulling {m}")));
        let mut last = String::new();
        let pulled = client
            .pull_until(m, timeout, cancel, |p| {
                if p.status != last {
                    last = p.status.clone();
                    let _ = progress.send(ProgressEvent::Note(format!("{m}: {}", p.status)));
                }
            })
            .await;
        match pulled {
            Ok(()) => {}
            Err(ClientError::Cancelled(_)) => {
                return Err(StoppedBeforeStart(format!("pulling {m}")).into());
            }
            Err(e @ ClientError::Timeout(_)) => {
                return Err(anyhow::anyhow!(
                    "{e}: no progress from the server for {timeout:?} (the run's timeout); raise [run] timeout for a slow registry, or pull it first with `ollama pull {m}`"
                ));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("pulling {m}"))),
        }
    }
    Ok(())
}
