//! What a router or llama-swap cell adds to a managed cell (`llama_cell`): before the
//! start, the config file that carries the cell's `idle_unload` value, written new in
//! the run folder (the router's `--models-preset` INI with each model's
//! `sleep-idle-seconds`, `cell-<N>-router-preset.ini`; llama-swap's YAML with each
//! model's `cmd` and `ttl`, `cell-<N>-llama-swap.yaml`), whose path fills
//! `{models_preset}` / `{swap_config}`; after the stop, kabench's cold count per model
//! (the distinct loads its cold requests waited for) set against the server's own
//! log (router: spawns and wakes; llama-swap: health checks passed), written to `servers/<cell>.check.json`, and every disagreement a
//! run warning (shown in the report).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use crate::llama::cell::{ColdCheck, router_check, swap_check};
use crate::llama::preset::{ModelPreset, Preset};
use crate::llama::swap_config::{CmdArg, SwapConfig, SwapModel};
use crate::llama::{ServerKind, router_log, swap_log};
use crate::run::Recorder;
use crate::scenario::{Cell, ManagedCell};

/// One answered request of a cell, as the log check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Its model.
    pub model: String,
    /// When it was sent (ms since the run's start).
    pub sent_ms: f64,
    /// When its first token (else its end) came.
    pub ready_ms: f64,
    /// Whether kabench counted it cold.
    pub cold: bool,
}

impl Sent {
    /// The fields of a finished row.
    pub fn of(model: &str, row: &crate::folder::RequestRecord) -> Sent {
        Sent {
            model: model.to_string(),
            sent_ms: row.sent_ms.unwrap_or(row.intended_ms),
            ready_ms: row.first_token_ms.unwrap_or(row.end_ms),
            cold: row.cold,
        }
    }
}

/// Per model: the cold requests, and the distinct loads they waited for (a cold
/// request sent before the previous cold one of its model got its first token
/// joined that load: the server loads once for both).
pub fn loads(sent: &[Sent]) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut colds: Vec<&Sent> = sent.iter().filter(|s| s.cold).collect();
    colds.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let (mut cold, mut loads) = (BTreeMap::new(), BTreeMap::new());
    let mut ready: BTreeMap<&str, f64> = BTreeMap::new();
    for s in colds {
        *cold.entry(s.model.clone()).or_insert(0) += 1;
        match ready.get_mut(s.model.as_str()) {
            Some(until) if s.sent_ms < *until => *until = until.max(s.ready_ms),
            _ => {
                *loads.entry(s.model.clone()).or_insert(0) += 1;
                ready.insert(&s.model, s.ready_ms);
            }
        }
    }
    (cold, loads)
}

/// How long llama-swap may take to exit after SIGTERM (it gives each upstream 10 s
/// before killing it; a SIGKILL of llama-swap itself would orphan them).
pub const SWAP_STOP_GRACE: Duration = Duration::from_secs(15);

/// The models of a cell, each once, in stream order.
fn models(cell: &Cell) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &cell.streams {
        if !out.contains(&s.model) {
            out.push(s.model.clone());
        }
    }
    out
}

/// Writes the cell's config file (router preset or llama-swap YAML) in the run folder
/// `dir`; the placeholder it fills and the file's path. Nothing for `llama-server`.
pub fn prepare(
    managed: &ManagedCell,
    cell: &Cell,
    dir: &Path,
) -> Result<Vec<(&'static str, String)>> {
    let what = |e: String| anyhow!("cell {}: {e}", cell.id);
    match managed.kind {
        ServerKind::LlamaServer => Ok(Vec::new()),
        ServerKind::LlamaRouter => {
            let preset = Preset {
                models: models(cell)
                    .into_iter()
                    .map(|id| ModelPreset {
                        id,
                        sleep_idle_seconds: Some(managed.knob),
                    })
                    .collect(),
                ..Preset::default()
            };
            let path =
                crate::llama::cell::write_router_preset(dir, cell.index, &preset).map_err(what)?;
            Ok(vec![("models_preset", path.display().to_string())])
        }
        ServerKind::LlamaSwap => {
            let config = swap_config(managed, cell).map_err(what)?;
            let path =
                crate::llama::cell::write_swap_config(dir, cell.index, &config).map_err(what)?;
            Ok(vec![("swap_config", path.display().to_string())])
        }
    }
}

/// llama-swap's config for the cell: one model per stream model, its command from the
/// `model_command` template and its `ttl` the cell's knob value.
fn swap_config(managed: &ManagedCell, cell: &Cell) -> Result<SwapConfig, String> {
    let ttl = u64::try_from(managed.knob).map_err(|_| format!("ttl {}", managed.knob))?;
    let ids = models(cell);
    let start_port = crate::llama::server::free_ports(ids.len().max(1) as u16)
        .map_err(|e| format!("choosing llama-swap's model ports: {e}"))?;
    let mut out = Vec::new();
    for id in ids {
        crate::llama::id::check_model_id(&id)?;
        let model_path = managed
            .models_dir
            .as_ref()
            .map(|d| d.join(format!("{id}.gguf")).display().to_string())
            .unwrap_or_default();
        let mut cmd = Vec::new();
        for arg in &managed.model_command {
            cmd.push(match arg.as_str() {
                "{port}" => CmdArg::Port,
                "{model_id}" => CmdArg::ModelId,
                _ => {
                    let filled = crate::llama::server::fill(
                        std::slice::from_ref(arg),
                        &[("model_path", model_path.clone())],
                    )
                    .map_err(|e| e.to_string())?;
                    CmdArg::Literal(filled.concat())
                }
            });
        }
        out.push(SwapModel { id, cmd, ttl });
    }
    Ok(SwapConfig {
        health_check_timeout: managed.health_timeout.as_secs().clamp(15, 3600) as u32,
        start_port,
        models: out,
    })
}

/// The grace between SIGTERM and SIGKILL for `kind`.
pub fn stop_grace(kind: ServerKind, default: Duration) -> Duration {
    match kind {
        ServerKind::LlamaSwap => SWAP_STOP_GRACE,
        _ => default,
    }
}

/// The file that holds a cell's log check.
pub fn check_path(dir: &Path, cell: &str) -> PathBuf {
    dir.join(crate::run::llama_cell::SERVERS_DIR)
        .join(format!("{cell}.check.json"))
}

/// Sets the loads kabench's cold requests waited for (per model, see [`loads`])
/// against the server's log `log` (router and llama-swap; nothing for
/// `llama-server`), writes `servers/<cell>.check.json` and warns of every model where
/// they differ.
pub fn check(
    kind: ServerKind,
    cell: &Cell,
    knob: i64,
    log: &Path,
    sent: &[Sent],
    rec: &mut Recorder,
) -> Result<()> {
    if kind == ServerKind::LlamaServer {
        return Ok(());
    }
    let bytes = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let (cold_requests, mut colds) = loads(sent);
    for m in models(cell) {
        colds.entry(m).or_insert(0);
    }
    let (checks, tally): (Vec<ColdCheck>, serde_json::Value) = match kind {
        ServerKind::LlamaRouter => {
            let t = router_log::tally(&router_log::parse(&text));
            let tally = t
                .iter()
                .map(|(m, t)| {
                    (
                        m.clone(),
                        json!({"spawns": t.spawns, "evicted": t.evicted, "sleeps": t.sleeps,
                               "wakes": t.wakes, "failed_exits": t.failed_exits}),
                    )
                })
                .collect::<serde_json::Map<_, _>>();
            (router_check(&colds, &text), tally.into())
        }
        _ => {
            let t = swap_log::tally(&swap_log::parse(&text));
            let tally = t
                .iter()
                .map(|(m, t)| {
                    (
                        m.clone(),
                        json!({"loads": t.loads, "ttl_unloads": t.ttl_unloads,
                               "swapped_out": t.swapped_out}),
                    )
                })
                .collect::<serde_json::Map<_, _>>();
            (swap_check(&colds, &text), tally.into())
        }
    };
    let knob_name = if kind == ServerKind::LlamaRouter {
        "sleep-idle-seconds"
    } else {
        "ttl"
    };
    let mut record = json!({
        "cell": cell.id,
        "kind": kind.as_str(),
        "log": log.file_name().map(|n| n.to_string_lossy().into_owned()),
        "agrees": checks.iter().all(ColdCheck::agrees),
        "models": checks.iter().map(|c| json!({
            "model": c.model, "kabench_cold_requests": cold_requests.get(&c.model).copied().unwrap_or(0),
            "kabench_loads": c.kabench, "log_loads": c.log, "agrees": c.agrees(),
        })).collect::<Vec<_>>(),
        "log_tally": tally,
    });
    record[knob_name] = json!(knob);
    let path = check_path(&rec.dir, &cell.id);
    std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let what = if kind == ServerKind::LlamaRouter {
        "spawns and wakes"
    } else {
        "loads"
    };
    for c in checks.iter().filter(|c| !c.agrees()) {
        rec.writer.meta_mut().warnings.push(format!(
            "cell {}: kabench counted {} load(s) of {} from {} before each request, the server's log {} {what} (servers/{}.log)",
            cell.id,
            c.kabench,
            crate::units::limits::printable(&c.model),
            kind.residency_path(),
            c.log,
            cell.id,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(table: &str) -> crate::scenario::Plan {
        let text = format!(
            "[[stream]]\nmodel = \"tiny-50m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n\
             [[stream]]\nname = \"b\"\nmodel = \"tiny-150m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n\
             [[stream]]\nname = \"c\"\nmodel = \"tiny-50m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n\
             [run]\nrequests = 1\n[target]\n{table}"
        );
        let s = crate::scenario::parse(&text, Path::new("/s/x.toml")).unwrap();
        crate::scenario::plan(&s)
    }

    #[test]
    fn cold_requests_that_overlap_one_load_count_it_once() {
        let s = |m: &str, sent: f64, ready: f64, cold: bool| Sent {
            model: m.into(),
            sent_ms: sent,
            ready_ms: ready,
            cold,
        };
        // a loads at 0 until 4000; its request at 2000 joins that load; b is apart.
        let sent = [
            s("a", 0.0, 4000.0, true),
            s("b", 1000.0, 1200.0, true),
            s("a", 2000.0, 4100.0, true),
            s("a", 5000.0, 5100.0, true),
            s("a", 6000.0, 6050.0, false),
        ];
        let (cold, loads) = loads(&sent);
        assert_eq!(cold["a"], 3);
        assert_eq!(loads["a"], 2);
        assert_eq!((cold["b"], loads["b"]), (1, 1));
    }

    #[test]
    fn the_router_preset_sets_each_model_once_to_the_cells_value() {
        let plan = plan_of(
            "kind = \"llama-router\"\ncommand = [\"r\", \"--models-preset\", \"{models_preset}\", \"--port\", \"{port}\"]\nidle_unload = [\"2s\", \"off\"]\n",
        );
        let dir = tempfile::tempdir().unwrap();
        for (cell, want) in plan.cells.iter().zip(["2", "-1"]) {
            let m = cell.server.as_ref().unwrap().managed.as_ref().unwrap();
            let filled = prepare(m, cell, dir.path()).unwrap();
            assert_eq!(filled[0].0, "models_preset");
            let ini = std::fs::read_to_string(&filled[0].1).unwrap();
            let want = format!(
                "\n[tiny-50m]\nsleep-idle-seconds = {want}\n\n[tiny-150m]\nsleep-idle-seconds = {want}\n"
            );
            assert!(ini.ends_with(&want), "{ini}");
        }
    }

    #[test]
    fn the_swap_config_runs_the_model_command_per_model_with_the_cells_ttl() {
        let plan = plan_of(
            "kind = \"llama-swap\"\ncommand = [\"s\", \"-config\", \"{swap_config}\", \"-listen\", \"127.0.0.1:{port}\"]\nmodel_command = [\"/bin/srv\", \"-m\", \"{model_path}\", \"--port\", \"{port}\", \"--alias\", \"{model_id}\"]\nmodels_dir = \"g g\"\nidle_unload = [\"3s\", \"off\"]\n",
        );
        let dir = tempfile::tempdir().unwrap();
        for (cell, ttl) in plan.cells.iter().zip(["ttl: 3\n", "ttl: 0\n"]) {
            let m = cell.server.as_ref().unwrap().managed.as_ref().unwrap();
            let filled = prepare(m, cell, dir.path()).unwrap();
            assert_eq!(filled[0].0, "swap_config");
            let yaml = std::fs::read_to_string(&filled[0].1).unwrap();
            assert_eq!(yaml.matches(ttl).count(), 2, "{yaml}");
            assert!(
                yaml.contains("cmd: \"'/bin/srv' '-m' '/s/g g/tiny-150m.gguf' '--port' ${PORT} '--alias' ${MODEL_ID}\""),
                "{yaml}"
            );
        }
        assert_eq!(
            stop_grace(ServerKind::LlamaSwap, Duration::from_secs(5)),
            SWAP_STOP_GRACE
        );
    }
}
