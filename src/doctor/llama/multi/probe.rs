//! The probes of a many-model server in order: the first look (which server, which
//! models run), the cold load against warm requests, the wait for the model to leave
//! memory while the status endpoint is polled, the wake (router), the process's
//! memory, the eviction probe (`--allow-evict`), and the restore of what was found.
//! Every status reading also watches for evictions: a model whose process went away
//! without an unload from here.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::super::http::{Reply, Req, Server};
use super::super::super::{Check, ModelMissing};
use super::super::proc;
use super::status::{self, Status};
use super::{ManyOptions, load, tiny, unload};
use crate::llama::swap::parse_model_list;
use crate::llama::{ModelResidency, ServerKind};

/// How often the status endpoint is read while waiting.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// The longest a load or an unload may take before the run gives up on it.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// Warm requests timed.
const WARM: usize = 3;

/// What the first look found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The router's `build_info`, llama-swap's `version`.
    pub version: String,
}

/// An eviction seen: the model whose process went away, and how many processes ran
/// just before.
#[derive(Debug, Clone)]
pub(super) struct Evicted {
    pub victim: String,
    pub running_before: usize,
}

/// The probe run: the server, the rows, and what was measured along the way.
pub struct Prober {
    pub(super) server: Server,
    pub(super) kind: ServerKind,
    model: String,
    pub(super) max_wait: Duration,
    pub(super) allow_evict: bool,
    pub(super) checks: Vec<Check>,
    /// The status as found.
    found: Status,
    /// The last status read.
    last: Status,
    /// Models unloaded from here (or expected to leave), not evictions when they go.
    expected_gone: Vec<String>,
    pub(super) evictions: Vec<Evicted>,
    /// The most models with a process seen at once.
    pub(super) most_at_once: usize,
    /// The router's `/props` `max_instances`.
    pub(super) stated_cap: Option<u64>,
    pub(super) warm_s: Vec<f64>,
    /// Status readings sent.
    pub(super) polls: usize,
    /// The process's RSS loaded, and after it left memory (sleeping).
    pub(super) rss_loaded: Option<Result<(u32, u64), String>>,
    pub(super) rss_idle: Option<Result<(u32, u64), String>>,
    /// The model was found loaded and unloaded for the cold load.
    pub(super) unloaded_first: bool,
    /// The second model loaded by the eviction probe.
    second: Option<String>,
    /// Whether the eviction probe ran.
    pub(super) evict_probe_ran: bool,
    /// The models evicted up to the end of the cold load and the warm requests.
    pub(super) evicted_by_cold: Vec<String>,
}

impl Prober {
    /// A prober of `server`.
    pub fn new(server: Server, opts: &ManyOptions) -> Prober {
        Prober {
            server,
            kind: opts.kind,
            model: opts.model.clone().unwrap_or_default(),
            max_wait: opts.max_wait,
            allow_evict: opts.allow_evict,
            checks: Vec::new(),
            found: Status::default(),
            last: Status::default(),
            expected_gone: Vec::new(),
            evictions: Vec::new(),
            most_at_once: 0,
            stated_cap: None,
            warm_s: Vec::new(),
            polls: 0,
            rss_loaded: None,
            rss_idle: None,
            unloaded_first: false,
            second: None,
            evict_probe_ran: false,
            evicted_by_cold: Vec::new(),
        }
    }

    /// The model probed.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The status as found.
    pub fn found(&self) -> &Status {
        &self.found
    }

    /// Reads the status endpoint; notes the models that went away without an unload
    /// from here (evictions) and the most running at once.
    pub(super) async fn status(&mut self) -> anyhow::Result<Status> {
        self.polls += 1;
        let path = self.kind.residency_path();
        let r = self.server.send(&Req::get(path)).await?;
        if r.status != 200 {
            anyhow::bail!(
                "GET {path} answered HTTP {}: {}: not a {}",
                r.status,
                crate::units::limits::excerpt(&r.text),
                self.kind
            );
        }
        let s = status::read(self.kind, &r.text).map_err(anyhow::Error::msg)?;
        let before = self.last.with_process();
        for id in &before {
            if !s.has_process(id) && !self.expected_gone.contains(id) {
                self.evictions.push(Evicted {
                    victim: id.clone(),
                    running_before: before.len(),
                });
            }
        }
        self.expected_gone.retain(|id| s.has_process(id));
        self.most_at_once = self.most_at_once.max(s.with_process().len());
        self.last = s.clone();
        Ok(s)
    }

    /// Which server, which models; picks the model (`--model`, else the first listed).
    pub async fn first_look(&mut self, model: Option<&str>) -> anyhow::Result<Found> {
        let target = self.server_name();
        let (version, listed) = match self.kind {
            ServerKind::LlamaSwap => {
                let v = self
                    .server
                    .send(&Req::get("/api/version"))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot reach a llama-swap at {target}: {e:#}"))?;
                let version = v.version().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{target} answered GET /api/version with {:?}: not a llama-swap (check --target and --target-kind)",
                        crate::units::limits::excerpt(&v.text)
                    )
                })?;
                let list = self.server.send_ok(&Req::get("/v1/models")).await?;
                let listed = parse_model_list(list.text.as_bytes()).map_err(anyhow::Error::msg)?;
                (version, listed)
            }
            _ => {
                let p = self.server.send(&Req::get("/props")).await.map_err(|e| {
                    anyhow::anyhow!("cannot reach a llama.cpp router at {target}: {e:#}")
                })?;
                let j = p.json.clone().unwrap_or(Value::Null);
                if j.get("role").and_then(Value::as_str) != Some("router") {
                    anyhow::bail!(
                        "{target} answered GET /props without \"role\":\"router\" ({}): not a llama-server in router mode (started without -m, with --models-dir or --models-preset); for one model use --target-kind llama-server",
                        crate::units::limits::excerpt(&p.text)
                    );
                }
                self.stated_cap = j.get("max_instances").and_then(Value::as_u64);
                let version = j
                    .get("build_info")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                (version, Vec::new())
            }
        };
        let found = self.status().await?;
        let listed = if listed.is_empty() {
            found.models.iter().map(|m| m.id.clone()).collect()
        } else {
            listed
        };
        self.model = match model {
            Some(m) if listed.iter().any(|l| l == m) => m.to_string(),
            Some(m) => {
                return Err(ModelMissing(
                    m.to_string(),
                    format!("the server lists {}", listed.join(", ")),
                )
                .into());
            }
            None => listed.first().cloned().ok_or_else(|| {
                anyhow::anyhow!("{target} lists no model: give it a model to serve")
            })?,
        };
        self.found = found;
        self.checks.push(self.server_row(&version, &listed));
        Ok(Found { version })
    }

    fn server_name(&self) -> String {
        self.server.base().to_string()
    }

    /// Reads the status until `id` is in a state `want` accepts (at most `limit`).
    async fn wait_for(
        &mut self,
        id: &str,
        want: impl Fn(ModelResidency) -> bool,
        limit: Duration,
    ) -> anyhow::Result<Status> {
        let start = Instant::now();
        loop {
            let s = self.status().await?;
            if want(s.state(id)) {
                return Ok(s);
            }
            if start.elapsed() > limit {
                anyhow::bail!(
                    "{id} stayed {} for {limit:?} (GET {})",
                    s.state(id).as_str(),
                    self.kind.residency_path()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Unloads `id` and waits until it has no process.
    async fn unload_and_wait(&mut self, id: &str) -> anyhow::Result<()> {
        self.expected_gone.push(id.to_string());
        self.server.send_ok(&unload(self.kind, id)).await?;
        self.wait_for(id, |s| s == ModelResidency::Unloaded, LOAD_LIMIT)
            .await?;
        self.settle(id).await
    }

    /// Waits until `id` is no longer stopping (at most [`LOAD_LIMIT`]). llama-swap
    /// (v235) never answers a request to a model that arrives while its `/running`
    /// shows it `stopping` (after its ttl, a swap or an unload), nor any later request
    /// to it until the model is unloaded by hand; so no request goes to a model that
    /// is stopping. The router shows no such state.
    async fn settle(&mut self, id: &str) -> anyhow::Result<()> {
        if self.kind != ServerKind::LlamaSwap {
            return Ok(());
        }
        let start = Instant::now();
        while self.status().await?.is_stopping(id) {
            if start.elapsed() > LOAD_LIMIT {
                anyhow::bail!(
                    "{id} stayed stopping for {LOAD_LIMIT:?} (GET {}); nothing was sent to it, as llama-swap never answers a request that arrives while its model stops",
                    self.kind.residency_path()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// `req` to the model `id` once it is not stopping ([`Self::settle`]).
    async fn send_to(&mut self, id: &str, req: &Req) -> anyhow::Result<Reply> {
        self.settle(id).await?;
        self.server.send_ok(req).await
    }

    /// Every probe in order; rows are pushed as they are measured.
    pub async fn probe(&mut self) -> anyhow::Result<()> {
        let m = self.model.clone();
        let mut s = self.last.clone();
        if s.state(&m) == ModelResidency::Loading {
            s = self
                .wait_for(&m, |st| st != ModelResidency::Loading, LOAD_LIMIT)
                .await?;
        }
        let others: Vec<String> = self
            .found
            .with_process()
            .into_iter()
            .filter(|x| *x != m)
            .collect();
        if !s.has_process(&m) && !others.is_empty() && !self.allow_evict {
            self.checks.push(self.skipped_row(&others));
            return Ok(());
        }
        if s.state(&m) == ModelResidency::Loaded {
            self.unload_and_wait(&m).await?;
            self.unloaded_first = true;
            s = self.last.clone();
        }
        // The first request to a model not in memory: a cold load, or a wake.
        let before = s.state(&m);
        let cold = self.send_to(&m, &tiny(&m)).await?;
        let after = self.status().await?.state(&m);
        let mut end = Instant::now();
        for _ in 0..WARM {
            let r = self.send_to(&m, &tiny(&m)).await?;
            end = Instant::now();
            self.warm_s.push(r.elapsed.as_secs_f64());
        }
        let loaded = self.status().await?;
        self.rss_loaded = Some(self.rss_of(&loaded));
        self.evicted_by_cold = self.evictions.iter().map(|e| e.victim.clone()).collect();
        self.checks.push(self.cold_row(&cold, before, after));
        // The idle timer, while the status endpoint is polled.
        let stated = loaded.entry(&m).and_then(|e| e.timer);
        if self.kind == ServerKind::LlamaSwap {
            self.expected_gone.push(m.clone());
        }
        // No timer stated (the router's child args, llama-swap's ttl): no wait.
        let left = match super::rows::active(stated) {
            Some(_) => self.wait_leave(end).await?,
            None => None,
        };
        if let Some((_, ModelResidency::Sleeping)) = left {
            let now = self.last.clone();
            self.rss_idle = Some(self.rss_of(&now));
        }
        self.checks.push(self.timer_row(stated, left));
        self.checks.push(self.polling_row(stated, left));
        if self.kind != ServerKind::LlamaSwap && matches!(left, Some((_, ModelResidency::Sleeping)))
        {
            let before = self.status().await?.state(&m);
            let wake = self.send_to(&m, &tiny(&m)).await?;
            let after = self.status().await?.state(&m);
            let warm = self.send_to(&m, &tiny(&m)).await?;
            self.warm_s.push(warm.elapsed.as_secs_f64());
            self.checks.push(self.wake_row(&wake, before, after));
        }
        self.checks.push(self.memory_row());
        if self.kind != ServerKind::LlamaSwap && self.allow_evict {
            self.evict_probe().await?;
        }
        Ok(())
    }

    /// Reads the status every [`POLL`] until the model is no longer loaded (at most
    /// `max_wait` after `from`, the end of the last request): the seconds from `from`
    /// and the state it left to.
    async fn wait_leave(&mut self, from: Instant) -> anyhow::Result<Option<(f64, ModelResidency)>> {
        let m = self.model.clone();
        loop {
            let st = self.status().await?.state(&m);
            if st != ModelResidency::Loaded {
                return Ok(Some((from.elapsed().as_secs_f64(), st)));
            }
            if from.elapsed() > self.max_wait {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `--allow-evict` on the router: one request to a model not running, to see
    /// whether the router evicts one; then that model is unloaded again.
    async fn evict_probe(&mut self) -> anyhow::Result<()> {
        let s = self.status().await?;
        let Some(other) = s
            .models
            .iter()
            .find(|e| !e.process && e.id != self.model)
            .map(|e| e.id.clone())
        else {
            return Ok(());
        };
        self.evict_probe_ran = true;
        self.second = Some(other.clone());
        self.send_to(&other, &tiny(&other)).await?;
        self.wait_for(&other, |st| st == ModelResidency::Loaded, LOAD_LIMIT)
            .await?;
        self.unload_and_wait(&other).await?;
        Ok(())
    }

    /// The resident memory of `s`'s process of the probed model: its pid and bytes,
    /// or why it cannot be read.
    fn rss_of(&self, s: &Status) -> Result<(u32, u64), String> {
        if !self.server.is_local() {
            return Err(
                "the server is on another machine: its processes cannot be read from here".into(),
            );
        }
        let port = s.entry(&self.model).and_then(|e| e.port).ok_or_else(|| {
            format!(
                "GET {} does not name the model's process port",
                self.kind.residency_path()
            )
        })?;
        let pid = proc::pid_listening_on(port)?;
        proc::rss_bytes(pid).map(|b| (pid, b))
    }

    /// Puts back what was found: the models loaded from here unloaded, the ones found
    /// running and gone (evicted, or unloaded for the cold load) loaded again.
    pub async fn restore(&mut self) -> Vec<String> {
        let path = self.kind.residency_path();
        let mut lines = Vec::new();
        let now = match self.status().await {
            Ok(s) => s,
            Err(e) => return vec![format!("could not read GET {path} to restore: {e:#}")],
        };
        let ours: Vec<String> = std::iter::once(self.model.clone())
            .chain(self.second.clone())
            .collect();
        for id in ours {
            if self.found.has_process(&id) {
                continue;
            }
            if now.has_process(&id) {
                match self.unload_and_wait(&id).await {
                    Ok(()) => lines.push(format!("{id}: found not running, unloaded again")),
                    Err(e) => {
                        lines.push(format!("{id}: found not running, the unload failed: {e:#}"))
                    }
                }
            } else {
                lines.push(format!("{id}: found not running, left not running"));
            }
        }
        for id in self.found.with_process() {
            let was = self.found.state(&id).as_str();
            if now.has_process(&id) {
                let left = now.state(&id).as_str();
                let again = if was == "sleeping" && left != was {
                    " (it sleeps again after its timer)"
                } else {
                    ""
                };
                lines.push(format!("{id}: found {was}, left {left}{again}"));
                continue;
            }
            let loaded = async {
                self.send_to(&id, &load(self.kind, &id)).await?;
                self.wait_for(&id, |s| s == ModelResidency::Loaded, LOAD_LIMIT)
                    .await
            };
            match loaded.await {
                Ok(_) => lines.push(format!(
                    "{id}: found {was}, not running after the probes: loaded again{}",
                    if was == "sleeping" {
                        " (it sleeps again after its timer)"
                    } else {
                        ""
                    }
                )),
                Err(e) => lines.push(format!("{id}: found {was}, loading it again failed: {e:#}")),
            }
        }
        lines
    }
}
