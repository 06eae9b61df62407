//! The one-way data flow, checked: a module never imports a module of a higher layer
//! (STYLE.md, "One-way data flow and the import rule"), and the few imports the layers
//! alone would allow but the design forbids are listed in `FORBIDDEN` (the closed-loop
//! driver never imports the open-loop one; the run side and the report side meet only
//! at the run folder). At the top, `cmd` wires each subcommand and `cli` holds its
//! clap types: `cli` imports nothing of the crate but the typed values its flags parse
//! into (`CLI_IMPORTS`), and `cmd` reads those parsed arguments (the one upward import,
//! in `UPWARD`).

use std::path::Path;

/// Layer of each top-level module, lowest first: units → ollama, folder → scenario,
/// engine → run, plan, doctor, proxy → analysis → recommend → predict, report → fleet
/// → cmd → cli. Beside the scenario sit what reads it alone (workload, shard, traffic),
/// beside the engine what run samples (telemetry).
const LAYERS: &[(&str, u8)] = &[
    ("units", 1),
    ("rng", 1),
    ("ollama", 2),
    ("llama", 2),
    ("folder", 3),
    ("scenario", 4),
    ("engine", 5),
    ("workload", 5),
    ("shard", 5),
    ("traffic", 5),
    ("telemetry", 5),
    ("run", 6),
    ("plan", 6),
    ("doctor", 6),
    ("proxy", 6),
    ("analysis", 7),
    ("recommend", 8),
    ("predict", 9),
    ("report", 9),
    ("fleet", 10),
    ("cmd", 11),
    ("cli", 12),
];

/// What `cli` may import of the crate besides itself: the typed values its flags parse
/// into and the parsers of their written forms. Clap types only; the wiring is `cmd`'s.
const CLI_IMPORTS: &[&str] = &[
    "units",
    "shard::parse_start_at",
    "traffic::trace::parse_slice",
    "traffic::ollama_log::parse_tz",
    "ollama::host::parse_ollama_host",
];

/// Imports of a higher layer the design allows: (module, what it imports, why).
const UPWARD: &[(&str, &str, &str)] = &[(
    "cmd",
    "cli",
    "the wiring takes the parsed arguments, plain data that imports nothing but units",
)];

/// Imports the layers alone would allow but the design forbids: (file or module, what
/// it must not import). A file is named by its path under `src/` without `.rs`, a
/// module by its top-level name; an import is named by its path after `crate::`.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "run/closed_loop",
        "run::open_loop",
        "the closed-loop driver shares only run's per-cell loop and request helpers",
    ),
    (
        "run",
        "analysis",
        "a run writes the folder; reading it is the report side's",
    ),
    ("run", "recommend", "a run writes the folder only"),
    ("run", "report", "a run writes the folder only"),
    (
        "analysis",
        "run",
        "the report side reads only the run folder",
    ),
    (
        "recommend",
        "run",
        "the report side reads only the run folder",
    ),
    ("report", "run", "the report side reads only the run folder"),
    (
        "report",
        "scenario",
        "the report reads what the run recorded in run.json, never the scenario",
    ),
    (
        "report",
        "engine::sim",
        "the report reads the simulated host from run.json",
    ),
    (
        "report",
        "engine::sim_settings",
        "the report reads the simulated host from run.json",
    ),
    (
        "report",
        "engine::sched",
        "the report reads what the scheduler's rules said (fits together?) from run.json",
    ),
    (
        "report",
        "engine::catalogue",
        "the report reads the models' figures from run.json",
    ),
    (
        "report",
        "plan",
        "the path that writes the folder records the planner's verdicts in run.json",
    ),
    (
        "recommend",
        "scenario",
        "the recommendation takes [cost] and [slo] as the run recorded them",
    ),
    (
        "recommend",
        "engine",
        "the recommendation knows nothing of the simulator",
    ),
    (
        "scenario",
        "engine",
        "the scenario holds the engine's settings as typed data; the engine reads them",
    ),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let own = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own_layer) = layer(&own) else {
            continue;
        };
        let file = rel.with_extension("").to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for part in line.split("crate::").skip(1) {
                for (who, what, why) in FORBIDDEN {
                    let mine = file == *who || own == *who;
                    let hits = part.starts_with(what)
                        && !part[what.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_');
                    if mine && hits {
                        violations.push(format!(
                            "src/{}:{}: `{file}` imports `{what}`: {why}",
                            rel.display(),
                            n + 1
                        ));
                    }
                }
                let used: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let used_layer = layer(&used);
                let allowed = UPWARD
                    .iter()
                    .any(|(who, what, _)| own == *who && used == *what);
                if let Some(l) = used_layer
                    && l > own_layer
                    && !allowed
                {
                    violations.push(format!(
                        "src/{}:{}: layer {own_layer} `{own}` uses layer {l} `{used}`",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn cli_holds_only_clap_types_and_the_values_they_parse_into() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut all = Vec::new();
    files(&dir, &mut all);
    assert!(!all.is_empty());
    let mut violations = Vec::new();
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for part in line.split("crate::").skip(1) {
                let ok = CLI_IMPORTS.iter().any(|allowed| {
                    part.starts_with(allowed)
                        && !part[allowed.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if !ok {
                    violations.push(format!(
                        "{}:{}: cli imports `crate::{}`",
                        path.display(),
                        n + 1,
                        part.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                            .next()
                            .unwrap_or(part)
                    ));
                }
            }
            let uses_runtime = ["tokio", "anyhow", "reqwest::Client", "serde_json"]
                .iter()
                .any(|krate| line.contains(&format!("{krate}::")));
            if uses_runtime {
                violations.push(format!(
                    "{}:{}: cli does work, not parsing: {line}",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_closed_loop_driver_never_names_the_open_loop_one() {
    // Also through `super::` or a nested `use crate::run::{…}` the per-line rule misses.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/run/closed_loop.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let uses: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//") && l.contains("open_loop"))
        .collect();
    assert!(
        uses.is_empty(),
        "src/run/closed_loop.rs names open_loop: {uses:?}"
    );
}

#[test]
fn every_module_of_src_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main"].contains(&name.as_str()) {
            continue;
        }
        if layer(&name).is_none() {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a layer in LAYERS: {missing:?}"
    );
}
