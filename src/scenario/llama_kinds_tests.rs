//! The router and llama-swap kinds in a scenario, and the `idle_unload` values each
//! llama.cpp knob refuses (0, fractions), each error naming file, line and key.

use std::path::Path;

use super::{Scenario, ScenarioError, TargetSpec, parse, plan};
use crate::llama::ServerKind;

fn p(text: &str) -> std::result::Result<Scenario, ScenarioError> {
    parse(text, Path::new("scenarios/x.toml"))
}

const BASE: &str = "[[stream]]\nmodel = \"tiny-50m\"\narrival = { kind = \"constant\", rate = \"1/s\" }\n[run]\nrequests = 2\n";

const SERVER: &str = "kind = \"llama-server\"\ncommand = [\"llama-server\", \"-m\", \"{model_path}\", \"--sleep-idle-seconds\", \"{sleep_idle_seconds}\", \"--port\", \"{port}\"]\nmodel_path = \"m.gguf\"\n";
const ROUTER: &str = "kind = \"llama-router\"\ncommand = [\"bin/llama-server\", \"--models-dir\", \"{models_dir}\", \"--models-preset\", \"{models_preset}\", \"--port\", \"{port}\"]\nmodels_dir = \"gguf\"\n";
const SWAP: &str = "kind = \"llama-swap\"\ncommand = [\"llama-swap\", \"-config\", \"{swap_config}\", \"-listen\", \"127.0.0.1:{port}\"]\nmodel_command = [\"llama-server\", \"-m\", \"{model_path}\", \"--port\", \"{port}\", \"--alias\", \"{model_id}\"]\nmodels_dir = \"gguf\"\n";

#[track_caller]
fn fails(text: &str, line: usize, key: &str, says: &str) {
    let e = p(text).expect_err("must fail");
    assert_eq!(e.key.as_deref(), Some(key), "key of: {e}");
    assert_eq!(e.line, Some(line), "line of: {e}");
    assert!(e.message.contains(says), "message of: {e}");
    assert!(
        e.to_string()
            .starts_with(&format!("scenarios/x.toml:{line}:")),
        "{e}"
    );
}

#[test]
fn zero_and_fractions_are_refused_for_each_llama_knob_at_their_key() {
    // [target] starts at line 6; idle_unload is the table's last line.
    for (table, line) in [(SERVER, 10), (ROUTER, 10), (SWAP, 11)] {
        for bad in ["0", "\"0s\"", "\"1.5s\"", "\"300ms\""] {
            fails(
                &format!("{BASE}[target]\n{table}idle_unload = [\"off\", {bad}]\n"),
                line,
                "target.idle_unload[1]",
                "whole seconds of at least 1",
            );
        }
    }
    // Through [sweep] the key is the sweep's.
    fails(
        &format!("{BASE}[[server]]\n{SWAP}[sweep]\nidle_unload = [\"1s\", 0]\n"),
        12,
        "sweep.idle_unload[1]",
        "llama-swap's ttl",
    );
    // Ollama takes 0 (unload at once).
    assert!(
        p(&format!(
            "{BASE}[[server]]\nkind = \"ollama\"\nidle_unload = [0]\n[[server]]\n{ROUTER}idle_unload = [1]\n"
        ))
        .is_ok()
    );
}

#[test]
fn router_and_swap_tables_plan_their_knob_per_cell() {
    let s = p(&format!(
        "{BASE}[[server]]\nname = \"router\"\n{ROUTER}idle_unload = [\"1s\", \"off\"]\n[[server]]\nname = \"swap\"\n{SWAP}idle_unload = [\"3s\", \"off\"]\n"
    ))
    .unwrap();
    let TargetSpec::LlamaServer(r) = &s.servers[0].spec else {
        panic!("{:?}", s.servers[0].spec)
    };
    assert_eq!(r.kind, ServerKind::LlamaRouter);
    assert!(r.command[0].ends_with("bin/llama-server") && r.command[0].contains("scenarios"));
    assert_eq!(s.servers[1].kind(), crate::folder::TargetKind::LlamaSwap);
    let plan = plan(&s);
    let knobs: Vec<(ServerKind, i64, String)> = plan
        .cells
        .iter()
        .map(|c| {
            let m = c.server.as_ref().unwrap().managed.as_ref().unwrap();
            (m.kind, m.knob, c.params.labels[super::KNOB_LABEL].clone())
        })
        .collect();
    assert_eq!(
        knobs,
        vec![
            (ServerKind::LlamaRouter, 1, "sleep-idle-seconds".into()),
            (ServerKind::LlamaRouter, -1, "sleep-idle-seconds".into()),
            (ServerKind::LlamaSwap, 3, "ttl".into()),
            (ServerKind::LlamaSwap, 0, "ttl".into()),
        ]
    );
    let m = plan.cells[0]
        .server
        .as_ref()
        .unwrap()
        .managed
        .as_ref()
        .unwrap();
    assert!(
        m.values
            .iter()
            .any(|(k, v)| k == "models_dir" && v.ends_with("gguf"))
    );
    let m = plan.cells[2]
        .server
        .as_ref()
        .unwrap()
        .managed
        .as_ref()
        .unwrap();
    assert_eq!(m.model_command[4], "{port}");
}

#[test]
fn router_and_swap_keys_are_checked_where_written() {
    fails(
        &format!(
            "{BASE}[target]\nkind = \"llama-router\"\ncommand = [\"srv\", \"--models-preset\", \"{{models_preset}}\", \"--sleep-idle-seconds\", \"{{sleep_idle_seconds}}\", \"--port\", \"{{port}}\"]\n"
        ),
        8,
        "target.command",
        "unknown placeholder {sleep_idle_seconds}",
    );
    fails(
        &format!(
            "{BASE}[target]\nkind = \"llama-router\"\ncommand = [\"srv\", \"--port\", \"{{port}}\"]\n"
        ),
        8,
        "target.command",
        "no {models_preset}",
    );
    fails(
        &format!("{BASE}[target]\n{ROUTER}model_path = \"m.gguf\"\n"),
        10,
        "target.model_path",
        "models_dir",
    );
    fails(
        &format!(
            "{BASE}[target]\nkind = \"llama-swap\"\ncommand = [\"llama-swap\", \"-listen\", \"127.0.0.1:{{port}}\"]\n"
        ),
        8,
        "target.command",
        "no {swap_config}",
    );
    fails(
        &format!(
            "{BASE}[target]\nkind = \"llama-swap\"\ncommand = [\"llama-swap\", \"-config\", \"{{swap_config}}\", \"-listen\", \"127.0.0.1:{{port}}\"]\n"
        ),
        7,
        "target.kind",
        "missing key `model_command`",
    );
    fails(
        &format!(
            "{BASE}[target]\nkind = \"llama-swap\"\ncommand = [\"llama-swap\", \"-config\", \"{{swap_config}}\", \"-listen\", \"127.0.0.1:{{port}}\"]\nmodel_command = [\"srv\", \"--port={{port}}\"]\n"
        ),
        9,
        "target.model_command",
        "whole argument",
    );
    fails(
        &format!("{BASE}[target]\n{SERVER}models_dir = \"d\"\n"),
        10,
        "target.models_dir",
        "does not apply to kind = \"llama-server\"",
    );
    fails(
        &format!("{BASE}[target]\nkind = \"ollama\"\nmodels_dir = \"d\"\n"),
        8,
        "target.models_dir",
        "remove it",
    );
}

#[test]
fn an_embedding_stream_is_refused_against_a_llama_server_at_its_api_key() {
    let embed = BASE.replace(
        "model = \"tiny-50m\"\n",
        "model = \"tiny-50m\"\napi = \"embed\"\n",
    );
    for table in [SERVER, ROUTER, SWAP] {
        fails(
            &format!("{embed}[target]\n{table}"),
            3,
            "stream[0].api",
            "api = \"embed\" is not measured against the llama.cpp server",
        );
    }
    // chat and generate are served; Ollama alone takes embed.
    for api in ["chat", "generate"] {
        let text = BASE.replace(
            "model = \"tiny-50m\"\n",
            &format!("model = \"tiny-50m\"\napi = \"{api}\"\n"),
        );
        assert!(p(&format!("{text}[target]\n{SERVER}")).is_ok(), "{api}");
    }
    assert!(p(&format!("{embed}[target]\nkind = \"ollama\"\n")).is_ok());
}
