//! The one-way data flow, checked: a module never imports a module of a higher layer
//! (STYLE.md, "One-way data flow and the import rule"), and the few imports the layers
//! alone would allow but the design forbids are listed in `FORBIDDEN` (the closed-loop
//! driver never imports the open-loop one; the run side and the report side meet only
//! at the run folder).

use std::path::Path;

/// Layer of each top-level module, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("units", 1),
    ("rng", 1),
    ("folder", 2),
    ("scenario", 2),
    ("sched", 2),
    ("catalogue", 2),
    ("sim_settings", 2),
    ("calibrate", 3),
    ("ollama", 2),
    ("workload", 3),
    ("shard", 3),
    ("traffic", 3),
    ("sim", 3),
    ("plan", 3),
    ("telemetry", 4),
    ("run", 5),
    ("analysis", 5),
    ("doctor", 5),
    ("proxy", 5),
    ("recommend", 6),
    ("predict", 6),
    ("report", 7),
    ("fleet", 7),
    ("progress", 8),
    ("cli", 8),
];

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
        "sim",
        "the report reads the simulated host from run.json",
    ),
    (
        "report",
        "sim_settings",
        "the report reads the simulated host from run.json",
    ),
    (
        "recommend",
        "scenario",
        "the recommendation takes [cost] and [slo] as the run recorded them",
    ),
    (
        "recommend",
        "sim",
        "the recommendation knows nothing of the simulator",
    ),
    (
        "recommend",
        "sim_settings",
        "the recommendation knows nothing of the simulator",
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
        // ollama::client sits one layer above ollama::api.
        let own_layer = if rel.ends_with("client.rs") {
            3
        } else {
            own_layer
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
                let used_layer = if used == "ollama" && part.starts_with("ollama::client") {
                    Some(3)
                } else {
                    layer(&used)
                };
                if let Some(l) = used_layer
                    && l > own_layer
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
