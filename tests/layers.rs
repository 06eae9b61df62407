//! The one-way data flow, checked: a module never imports a module of a higher layer
//! (STYLE.md, "One-way data flow and the import rule").

use std::path::Path;

/// Layer of each top-level module, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("units", 1),
    ("record", 2),
    ("scenario", 2),
    ("sched", 2),
    ("catalogue", 2),
    ("sim_settings", 2),
    ("calibrate", 3),
    ("ollama", 2),
    ("workload", 3),
    ("traffic", 3),
    ("sim", 3),
    ("runner", 4),
    ("telemetry", 4),
    ("analysis", 5),
    ("doctor", 5),
    ("proxy", 5),
    ("recommend", 6),
    ("predict", 6),
    ("report", 7),
    ("session", 8),
    ("swarm", 8),
    ("progress", 8),
    ("cli", 8),
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
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for part in line.split("crate::").skip(1) {
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
